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
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from crc32c import crc32c

from pairgen.errors import DatasetError

_MASK_DELTA = 0xA282EAD8
_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")
HEADER_BYTES = 12  # uint64 length + uint32 CRC of the length
FRAME_EXTRA = 16  # header + uint32 CRC of the data: a frame is the data plus this
GZIP_LEVEL = 6  # zlib's default, as TensorFlow's writer uses; fixed so output bytes are stable


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc_array(crcs: np.ndarray) -> np.ndarray:
    """TFRecord's CRC mask applied to an array of CRC-32C values (as :func:`masked_crc` does to one).

    Args:
        crcs: Unmasked CRC-32C values.

    Returns:
        The masked values, ``uint32``.
    """
    crc = np.asarray(crcs).astype(np.uint64)
    return ((((crc >> np.uint64(15)) | (crc << np.uint64(17))) + np.uint64(_MASK_DELTA))
            & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def first_bad_crc(views: Sequence[memoryview], which: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                  stored: np.ndarray, *, release_gil: bool = False) -> int | None:
    """Check many records' data against their stored (masked) CRCs: one ``crc32c`` call per record.

    Args:
        views: Buffers holding the records (memory-mapped shards, say).
        which: Index into ``views`` of each record's buffer.
        starts, lengths: Each record's data offset in its buffer and its length.
        stored: Each record's stored masked CRC (the 4 bytes after its data), ``uint32``.
        release_gil: Let other threads run during each call (worth it for records of several KiB).

    Returns:
        The position (in these arrays) of the first record whose data fails its CRC, or None.
    """
    ends = (np.asarray(starts, np.int64) + np.asarray(lengths, np.int64)).tolist()
    mode = 1 if release_gil else 0
    crcs = np.fromiter((crc32c(views[v][a:b], 0, mode) for v, a, b in zip(np.asarray(which).tolist(),
                                                                  np.asarray(starts).tolist(), ends)),
                       np.uint32, count=len(ends))
    bad = np.flatnonzero(masked_crc_array(crcs) != np.asarray(stored, np.uint32))
    return int(bad[0]) if len(bad) else None


def frame(record: bytes) -> bytes:
    """One record with its length and CRCs, ready to append to a TFRecord file."""
    length = _LEN.pack(len(record))
    return b"".join((length, _CRC.pack(masked_crc(length)), record, _CRC.pack(masked_crc(record))))


class FirstFrame:
    """The data of the first record, picked out of frame bytes appended in blocks of any size.

    A shard writer feeds it every block it appends (:meth:`feed`); once the first frame is
    whole, :attr:`data` holds that record's bytes and later blocks are ignored (no copy).
    """

    def __init__(self) -> None:
        self._head = bytearray()
        self.data: bytes | None = None

    def _need(self) -> int:
        if len(self._head) < HEADER_BYTES:
            return HEADER_BYTES
        return HEADER_BYTES + int(_LEN.unpack_from(self._head)[0])

    def feed(self, block: bytes) -> None:
        """Take what the first frame still lacks from ``block`` (the next bytes of the file)."""
        view = memoryview(block)
        while self.data is None and view:
            take = self._need() - len(self._head)
            self._head += view[:take]
            view = view[take:]
            if len(self._head) >= HEADER_BYTES and len(self._head) == self._need():
                self.data = bytes(self._head[HEADER_BYTES:])
                self._head = bytearray()


class TFRecordError(DatasetError):
    """A shard's TFRecord framing is broken; ``kind`` is ``"truncated"`` or ``"corrupt"``.

    Raised reading a file, it also carries the file (``path``) and what is wrong without it
    (``detail``, e.g. ``record 5 fails its data CRC``), for readers' own one-line messages.
    """

    def __init__(self, message: str, kind: str, index: int | None = None, *, path: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.index = index  # the record at fault, where known
        self.path = path
        self.detail = detail or message


def _file_error(path: Path, detail: str, kind: str, index: int | None = None, *, colon: bool = True) -> TFRecordError:
    """The error of a damaged file: ``'<path>': <detail>`` (``'<path>' <detail>`` without ``colon``)."""
    return TFRecordError(f"'{path}'{':' if colon else ''} {detail}", kind, index, path=str(path), detail=detail)


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
        raise _file_error(path, f"cannot be decompressed ({exc})", "truncated", colon=False) from None


def _frames(f: IO[bytes] | gzip.GzipFile, path: Path, want: Callable[[int], bool], *, stream: bool) -> Iterator[bytes | None]:
    size = None if stream else os.fstat(f.fileno()).st_size
    index = 0
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise _file_error(path, f"ends inside the header of record {index}", "truncated", index, colon=False)
        (length,), (length_crc,) = _LEN.unpack(header[:8]), _CRC.unpack(header[8:])
        if masked_crc(header[:8]) != length_crc:
            raise _file_error(path, f"the length field of record {index} fails its CRC", "corrupt", index)
        read = want(index)
        data: bytes | None
        if read or size is None:
            data = f.read(length)
            complete = len(data) == length
        else:
            data, complete = None, f.tell() + length <= size
            f.seek(length, os.SEEK_CUR)
        tail = f.read(4)
        if not complete or len(tail) < 4:
            raise _file_error(path, f"ends inside record {index}", "truncated", index, colon=False)
        if read and data is not None and masked_crc(data) != _CRC.unpack(tail)[0]:
            raise _file_error(path, f"record {index} fails its data CRC", "corrupt", index)
        yield data if read else None
        index += 1


def _walk(length_at: Callable[[int], int | None], size: int, limit: int | None) -> np.ndarray:
    """Frame offsets of up to ``limit`` records, from position 0 to ``size``.

    The one sequential step of framing (a record's position depends on every length before
    it). ``length_at(pos)`` is the length field of the header at ``pos``, or ``None`` where
    the header is not whole; nothing else is checked here.
    """
    offsets: list[int] = []
    pos, left = 0, -1 if limit is None else limit
    while pos < size and left != 0:
        length = length_at(pos)
        if length is None:
            break
        offsets.append(pos)
        pos += length + FRAME_EXTRA
        left -= 1
    return np.asarray(offsets, np.int64)


def _first_bad_header(offsets: np.ndarray, head: np.ndarray, size: int) -> tuple[np.ndarray, int | None]:
    """Data lengths of the frames, and the first frame whose length fails its CRC or runs past ``size``."""
    length = head[:, :8].copy().view("<u8").ravel()
    distinct, inverse = np.unique(length, return_inverse=True)
    want = masked_crc_array(np.array([crc32c(_LEN.pack(int(n))) for n in distinct], np.uint32))
    crc_ok = want[inverse.ravel()] == head[:, 8:].copy().view("<u4").ravel()
    fits = length <= np.uint64(size)  # before the sum below, which could overflow
    fits &= offsets + length.astype(np.int64) + FRAME_EXTRA <= size
    bad = np.flatnonzero(~(crc_ok & fits))
    return length.astype(np.int64), int(bad[0]) if len(bad) else None


def frame_buffer(data: bytes, *, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame TFRecord bytes held in memory: every length and data CRC checked (as arrays).

    Args:
        data: The bytes of a plain (or decompressed) TFRecord file, or frames read back to back.
        limit: Frame at most this many records (the first ones).

    Returns:
        ``(starts, lengths)``: the offset of each record's data in ``data`` and its length,
        ``int64``, in file order.

    Raises:
        TFRecordError: If a length or data checksum fails, or the bytes end inside a record.
    """
    size = len(data)
    view = memoryview(data)
    unpack = _LEN.unpack_from

    def length_at(pos: int) -> int | None:
        return unpack(data, pos)[0] if pos + HEADER_BYTES <= size else None

    offsets = _walk(length_at, size, limit)
    buf = np.frombuffer(data, np.uint8)
    head = buf[offsets[:, None] + np.arange(HEADER_BYTES)]
    length, bad = _first_bad_header(offsets, head, size)
    end = int(offsets[-1]) + int(length[-1]) + FRAME_EXTRA if len(offsets) else 0
    cut = limit is not None and len(offsets) == limit
    if bad is not None or (end < size and not cut):  # a header that is not whole ends the bytes
        index = bad if bad is not None else len(offsets)
        raise TFRecordError(f"TFRecord bytes: record {index} has a damaged length or ends early", "corrupt", index)
    starts = offsets + HEADER_BYTES
    tails = buf[(starts + length)[:, None] + np.arange(4)].copy().view("<u4").ravel()
    crcs = np.fromiter(map(crc32c, (view[s:s + n] for s, n in zip(starts.tolist(), length.tolist()))),
                       np.uint32, count=len(starts))
    failed = np.flatnonzero(masked_crc_array(crcs) != tails)
    if len(failed):
        index = int(failed[0])
        raise TFRecordError(f"TFRecord bytes: record {index} fails its data CRC", "corrupt", index)
    return starts, length


def index_file(path: str | os.PathLike, limit: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Frame offsets and data lengths of a plain TFRecord file, reading only its 12-byte headers (memory-mapped).

    Every length is checked against its CRC (the data are not read: :func:`check_frame` checks
    them when a frame is read by offset).

    Args:
        path: A plain (uncompressed) TFRecord file.
        limit: Index at most this many records.

    Returns:
        ``(offsets, lengths, end)``: each frame's offset, each record's data length (``int64``),
        and the offset after the last frame indexed (the file size when every record was).

    Raises:
        TFRecordError: If a length fails its CRC or a record runs past the end of the file
            (``index`` names the record).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if not size:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mapped:
            unpack = _LEN.unpack_from

            def length_at(pos: int) -> int | None:
                return int(unpack(mapped, pos)[0]) if pos + HEADER_BYTES <= size else None

            offsets = _walk(length_at, size, limit)
            buf = np.frombuffer(mapped, np.uint8)
            head = buf[offsets[:, None] + np.arange(HEADER_BYTES)] if len(offsets) else np.zeros((0, HEADER_BYTES), np.uint8)
            del buf  # the map closes only when no array refers to it
    length, bad = _first_bad_header(offsets, head, size)
    if bad is not None:
        raise _file_error(Path(path), f"record {bad} has a damaged header", "corrupt", bad)
    end = int(offsets[-1]) + int(length[-1]) + FRAME_EXTRA if len(offsets) else 0
    return offsets, length, end


def check_frame(frame: bytes, length: int) -> None:
    """Check one whole frame (header, data, CRC) read by offset against the indexed data ``length``.

    Raises:
        TFRecordError: ``kind="truncated"`` if the frame is short or its length field is not
            ``length`` (the file changed); ``"corrupt"`` if the data fails its CRC.
    """
    if len(frame) != length + FRAME_EXTRA or _LEN.unpack_from(frame)[0] != length:
        raise TFRecordError("the frame differs from the indexed one", "truncated")
    if masked_crc(frame[HEADER_BYTES:-4]) != _CRC.unpack_from(frame, len(frame) - 4)[0]:
        raise TFRecordError("the record fails its data CRC", "corrupt")
