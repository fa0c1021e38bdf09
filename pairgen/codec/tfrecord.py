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
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

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


class TFRecordError(DatasetError):
    """A shard's TFRecord framing is broken; ``kind`` is ``"truncated"`` or ``"corrupt"``."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def iter_records(path: str | os.PathLike, *, compression: str = "none",
                 read_data: bool = True) -> Iterator[bytes | None]:
    """Yield each record of a TFRecord file, checking its framing and checksums.

    Every length field is checked against its masked CRC-32C, and so is every record that is
    read, so a damaged file is reported (naming the record) instead of misread.

    Args:
        path: The file.
        compression: ``"none"`` or ``"gzip"`` (the whole file is one gzip stream).
        read_data: Yield each record's bytes; if false yield ``None`` and seek over the data
            (counting records this way reads only 16 bytes per record of a plain file).

    Yields:
        The records' bytes (or ``None``), in file order.

    Raises:
        DatasetError: If the file does not exist.
        TFRecordError: If the file ends inside a record or a checksum fails.
    """
    yield from _records(Path(path), str(compression), lambda i: read_data)


def read_records_at(path: str | os.PathLike, indices: Iterable[int], *,
                    compression: str = "none") -> dict[int, bytes]:
    """Read only the records at ``indices`` (0-based) of a TFRecord file.

    Returns:
        Index to serialized record, for every wanted index that the file holds.

    Raises:
        DatasetError: If the file does not exist.
        TFRecordError: If the framing is broken before the last wanted record.
    """
    wanted = {int(i) for i in indices}
    out: dict[int, bytes] = {}
    if not wanted:
        return out
    for i, data in enumerate(_records(Path(path), str(compression), wanted.__contains__)):
        if data is not None:
            out[i] = data
            if len(out) == len(wanted):
                break
    return out


def _records(path: Path, compression: str, want: Callable[[int], bool]) -> Iterator[bytes | None]:
    if not path.is_file():
        raise DatasetError(f"shard file '{path}' does not exist; run `pairgen verify` on the dataset.")
    gz = compression == "gzip"
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            yield from _frames(f, path, want, stream=gz)
    except (EOFError, OSError, zlib.error) as exc:
        raise TFRecordError(f"'{path}' cannot be decompressed ({exc})", "truncated") from None


def _frames(f: BinaryIO, path: Path, want: Callable[[int], bool], *, stream: bool) -> Iterator[bytes | None]:
    size = None if stream else os.fstat(f.fileno()).st_size
    index = 0
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise TFRecordError(f"'{path}' ends inside the header of record {index}", "truncated")
        (length,), (length_crc,) = _LEN.unpack(header[:8]), _CRC.unpack(header[8:])
        if masked_crc(header[:8]) != length_crc:
            raise TFRecordError(f"'{path}': the length field of record {index} fails its CRC", "corrupt")
        read = want(index)
        if read or size is None:
            data: bytes | None = f.read(length)
            complete = len(data) == length
        else:
            data, complete = None, f.tell() + length <= size
            f.seek(length, os.SEEK_CUR)
        tail = f.read(4)
        if not complete or len(tail) < 4:
            raise TFRecordError(f"'{path}' ends inside record {index}", "truncated")
        if read and masked_crc(data) != _CRC.unpack(tail)[0]:
            raise TFRecordError(f"'{path}': record {index} fails its data CRC", "corrupt")
        yield data if read else None
        index += 1
