"""TFRecord files without TensorFlow: framing, CRC-32C checks, optional GZIP.

A TFRecord file is a sequence of::

    uint64 length (little endian)
    uint32 masked_crc32c(length bytes)
    bytes  data[length]
    uint32 masked_crc32c(data)

and a GZIP TFRecord file is that byte stream inside one gzip member. Writing it here keeps
builds free of TensorFlow (its import alone costs seconds and ~600 MB), and reading it here
lets ``verify`` name a truncated or changed shard exactly. TensorFlow reads these files
as it reads its own; the tests check that.
"""

from __future__ import annotations

import gzip
import os
import struct
from typing import BinaryIO, Iterator

from crc32c import crc32c

from pairgen.errors import DatasetError

_MASK_DELTA = 0xA282EAD8
_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")
GZIP_LEVEL = 6  # zlib's default, as TensorFlow's writer uses; fixed so output bytes are stable


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record with its length and CRCs, ready to append to a TFRecord file."""
    length = _LEN.pack(len(record))
    return b"".join((length, _CRC.pack(masked_crc(length)), record, _CRC.pack(masked_crc(record))))


class Writer:
    """Append framed records to one file, optionally GZIP-compressed (no name, mtime 0)."""

    def __init__(self, path: str | os.PathLike, *, gzip_compressed: bool = False) -> None:
        self._raw = open(path, "wb")
        self._out: BinaryIO = self._raw
        if gzip_compressed:
            self._out = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0,
                                      compresslevel=GZIP_LEVEL)

    def write(self, record: bytes) -> None:
        self._out.write(frame(record))

    def close(self) -> None:
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()


def iter_records(path: str | os.PathLike, *, gzip_compressed: bool = False,
                 check_crc: bool = True) -> Iterator[bytes]:
    """Yield each record of a TFRecord file, checking lengths and CRCs.

    Args:
        path: The file.
        gzip_compressed: Whether the file is one gzip stream.
        check_crc: Verify both CRCs of every record.

    Yields:
        The records' bytes, in file order.

    Raises:
        DatasetError: naming the file and record number if the file is missing, truncated
            or corrupt.
    """
    if not os.path.isfile(path):
        raise DatasetError(f"shard file '{path}' does not exist; run `pairgen verify` on the dataset.")
    with open(path, "rb") as raw:
        stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gzip_compressed else raw
        try:
            yield from _read_frames(stream, str(path), check_crc)
        except (EOFError, OSError, gzip.BadGzipFile) as exc:
            raise DatasetError(f"shard file '{path}' is truncated or not valid gzip ({exc}).") from None


def _read_frames(stream: BinaryIO, name: str, check_crc: bool) -> Iterator[bytes]:
    index = 0
    while True:
        header = _read_exact(stream, 12, name, index, allow_eof=True)
        if header is None:
            return
        length_bytes, (length_crc,) = header[:8], _CRC.unpack(header[8:])
        if check_crc and masked_crc(length_bytes) != length_crc:
            raise DatasetError(f"shard file '{name}' is corrupt: record {index} has a bad length checksum.")
        (length,) = _LEN.unpack(length_bytes)
        body = _read_exact(stream, length + 4, name, index, allow_eof=False)
        data, (data_crc,) = body[:length], _CRC.unpack(body[length:])
        if check_crc and masked_crc(data) != data_crc:
            raise DatasetError(f"shard file '{name}' is corrupt: record {index} has a bad data checksum.")
        yield data
        index += 1


def _read_exact(stream: BinaryIO, n: int, name: str, index: int, *, allow_eof: bool) -> bytes | None:
    data = stream.read(n)
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    if len(data) == n:
        return data
    if allow_eof and not data:
        return None
    raise DatasetError(f"shard file '{name}' is truncated: record {index} is cut off "
                       f"({len(data)} of {n} bytes). Rebuild the dataset.")
