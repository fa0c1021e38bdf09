"""Vectorized reading of pairgen's TFRecord shards into NumPy arrays (no TensorFlow).

Every record of a pairgen split has one fixed layout (:func:`pairgen.codec.example.encode_pair` and
``encode_triplet``): the same features in sorted key order, one value each, where only the
widths of the varints (lengths, ids, classes) differ between records. So a shard is read
field by field for all its records at once instead of record by record:

1. the whole file is read (or decompressed) into memory and framed by
   :func:`pairgen.codec.tfrecord.frame_buffer`: one ``struct`` step per record finds each
   record (its position depends on every length before it), one ``crc32c`` call per record
   checks its data; length checksums, trailing checksums and bounds are compared as arrays;
2. each feature of the schema is parsed for every record with array operations: its key
   bytes, its framing and its varints are checked and decoded column-wise;
3. raw images are gathered with one NumPy copy per feature (rows of a sliding-window view of
   the file at the image offsets); PNG and JPEG images are decoded with OpenCV on a thread
   pool (OpenCV releases the GIL).

Any record that does not have exactly that layout (a file written by another tool, extra
features, several values in a feature) and any damaged file makes :func:`read_shard` return
``None``: the caller then reads that file with the per-record reader, which accepts any valid
``tf.train.Example`` and names the exact damage. The arrays are the same either way.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pairgen.codec.images import decode_record_image, native_messages_muted
from pairgen.codec.tfrecord import TFRecordError, frame_buffer

_DECODE_CHUNK = 256  # encoded images per thread-pool task

Arrays = dict[str, np.ndarray]


class _Mismatch(Exception):
    """The records do not have pairgen's fixed layout (or the file is damaged)."""


def _file_bytes(path: Path, compression: str) -> bytes | None:
    """The file's (decompressed) bytes, or None if it cannot be read or decompressed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return gzip.decompress(data) if compression == "gzip" else data
    except (OSError, EOFError, zlib.error):
        return None


class _Columns:
    """Column-wise protobuf parsing: one position per record, all advanced together."""

    def __init__(self, data: bytes | memoryview | np.ndarray) -> None:
        self.buf = np.frombuffer(data, np.uint8)
        self._windows: dict[int, np.ndarray] = {}

    def gather(self, pos: np.ndarray, width: int) -> np.ndarray:
        """``(len(pos), width)`` bytes: row i is the ``width`` bytes from ``pos[i]`` (a copy)."""
        if not len(pos):
            return np.zeros((0, width), np.uint8)
        if int(pos.max()) + width > len(self.buf):
            raise _Mismatch
        if width not in self._windows:
            self._windows[width] = sliding_window_view(self.buf, width)
        return self._windows[width][pos]

    def expect(self, pos: np.ndarray, const: bytes) -> np.ndarray:
        """Check every record has ``const`` at ``pos``; returns the positions after it."""
        got = self.byte(pos) if len(const) == 1 else self.gather(pos, len(const))
        if not (got == np.frombuffer(const, np.uint8)).all():
            raise _Mismatch
        return pos + len(const)

    def byte(self, pos: np.ndarray) -> np.ndarray:
        """The byte at each position."""
        if len(pos) and int(pos.max()) >= len(self.buf):
            raise _Mismatch
        return self.buf[pos]

    def varint(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The varint at each position, as uint64 (two's complement kept), and the positions after it.

        One byte column at a time, only for the records whose varint goes on: most are 1-3 bytes.
        """
        first = self.byte(pos)
        value = (first & 0x7F).astype(np.uint64)
        width = np.ones(len(pos), np.int64)
        more = np.flatnonzero(first >= 0x80)
        for k in range(1, 10):
            if not len(more):
                return value, pos + width
            nxt = self.byte(pos[more] + k)
            value[more] |= (nxt & 0x7F).astype(np.uint64) << np.uint64(7 * k)
            width[more] += 1
            more = more[nxt >= 0x80]
        if len(more):
            raise _Mismatch  # longer than 10 bytes: not a valid varint
        return value, pos + width

    def size(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A length varint (bounded by the file) and the positions after it."""
        value, pos = self.varint(pos)
        if (value > np.uint64(len(self.buf))).any():
            raise _Mismatch
        return value.astype(np.int64), pos

    def delimited(self, pos: np.ndarray, tag: int) -> tuple[np.ndarray, np.ndarray]:
        """A ``tag``, then a length: returns the payload positions and lengths."""
        size, pos = self.size(self.expect(pos, bytes([tag])))
        return pos, size


def _key_prefix(key: str) -> bytes:
    """Map-entry key field plus the value field's tag (as :mod:`pairgen.codec.example` writes them)."""
    raw = key.encode("utf-8")
    if len(raw) >= 0x80:
        raise _Mismatch
    return b"\x0a" + bytes([len(raw)]) + raw + b"\x12"


def _parse(cols: _Columns, starts: np.ndarray, lengths: np.ndarray, image_keys: Sequence[str],
           int_keys: Sequence[str]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], Arrays]:
    """Image ``(offsets, sizes)`` and int64 values of every feature, checked against the fixed layout."""
    pos, size = cols.delimited(starts, 0x0A)  # Example.features
    if ((pos + size) != starts + lengths).any():
        raise _Mismatch
    images: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ints: Arrays = {}
    for key in sorted([*image_keys, *int_keys], key=lambda k: k.encode("utf-8")):
        body, body_size = cols.delimited(pos, 0x0A)  # one map entry: key, then its Feature
        feature_size, feature = cols.size(cols.expect(body, _key_prefix(key)))
        end = feature + feature_size
        if key in image_keys:
            inner, inner_size = cols.delimited(feature, 0x0A)  # BytesList
            value, value_size = cols.delimited(inner, 0x0A)  # its one value
            images[key] = (value, value_size)
        else:
            inner, inner_size = cols.delimited(feature, 0x1A)  # Int64List
            value, value_size = cols.delimited(inner, 0x0A)  # packed values
            number, after = cols.varint(value)
            if (after != value + value_size).any():  # exactly one value
                raise _Mismatch
            ints[key] = number.view(np.int64)
        if ((value + value_size) != end).any() or ((inner + inner_size) != end).any() \
                or (end != body + body_size).any():
            raise _Mismatch
        pos = end
    if (pos != starts + lengths).any():
        raise _Mismatch
    return images, ints


def record_layout(data: bytes | memoryview | np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                  image_keys: Sequence[str], int_keys: Sequence[str]
                  ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], Arrays] | None:
    """Where each record's images lie and its int64 values, parsed column-wise, or None.

    Args:
        data: Bytes holding the records (a whole plain shard, memory-mapped or read).
        starts, lengths: Each record's data offset in ``data`` and its length (the framing).
        image_keys, int_keys: The features, as for :func:`read_shard`.

    Returns:
        ``(images, ints)``: per image feature ``(offsets, sizes)`` of its bytes in ``data``;
        per int feature its ``int64`` values. ``None`` when a record is not in pairgen's fixed
        layout (the caller reads it record by record). Data checksums are not checked here.
    """
    try:
        return _parse(_Columns(data), np.asarray(starts, np.int64), np.asarray(lengths, np.int64),
                      image_keys, int_keys)
    except _Mismatch:
        return None


def _raw_images(cols: _Columns, offsets: np.ndarray, sizes: np.ndarray,
                shape: tuple[int, int, int]) -> np.ndarray:
    """Raw pixels ``(n, h, w, c)``: one row copy per record out of a sliding-window view."""
    n_bytes = int(np.prod(shape))
    if (sizes != n_bytes).any():
        raise _Mismatch  # the per-record reader names the record and its size
    if not len(offsets):
        return np.zeros((0, *shape), np.uint8)
    return cols.gather(offsets, n_bytes).reshape(len(offsets), *shape)


def _decode_chunk(data: bytes, offsets: np.ndarray, sizes: np.ndarray, encoding: str,
                  shape: tuple[int, int, int], out: np.ndarray) -> None:
    with native_messages_muted():  # once for the chunk, not per image
        for i, (start, size) in enumerate(zip(offsets.tolist(), sizes.tolist())):
            out[i] = decode_record_image(data[start:start + size], encoding, shape)


def _encoded_images(data: bytes, offsets: np.ndarray, sizes: np.ndarray, encoding: str,
                    shape: tuple[int, int, int], pool: ThreadPoolExecutor) -> np.ndarray:
    """PNG or JPEG images decoded on the thread pool, in record order."""
    out = np.empty((len(offsets), *shape), np.uint8)
    tasks = [pool.submit(_decode_chunk, data, offsets[i:i + _DECODE_CHUNK], sizes[i:i + _DECODE_CHUNK],
                         encoding, shape, out[i:i + _DECODE_CHUNK])
             for i in range(0, len(offsets), _DECODE_CHUNK)]
    for task in tasks:
        task.result()  # re-raises an ImageError of any chunk
    return out


def read_shard(path: str | os.PathLike, image_keys: Sequence[str], int_keys: Sequence[str],
               shape: tuple[int, int, int], encoding: str, *, compression: str = "none",
               limit: int | None = None, pool: ThreadPoolExecutor | None = None) -> Arrays | None:
    """Read one shard column-wise, or return None if it must be read record by record.

    Args:
        path: A TFRecord shard written by pairgen.
        image_keys: Image features (``a/image``, ...), stored once per record.
        int_keys: Int64 features (``label``, ``a/id``, ...), one value per record.
        shape: ``(height, width, channels)`` of every image.
        encoding: ``raw``, ``png`` or ``jpeg``.
        compression: ``none`` or ``gzip``.
        limit: Read at most this many records (the first ones).
        pool: Thread pool that decodes PNG/JPEG images (one is made when needed).

    Returns:
        Feature name to array: images ``uint8 [n, h, w, c]``, ints ``int64 [n]``; ``None``
        when the file is damaged or not in pairgen's fixed record layout.

    Raises:
        ImageError: If a PNG/JPEG image does not decode to ``shape``.
    """
    data = _file_bytes(Path(path), str(compression))
    if data is None:
        return None
    return parse_framed(data, image_keys, int_keys, shape, encoding, limit=limit, pool=pool)


def parse_framed(data: bytes, image_keys: Sequence[str], int_keys: Sequence[str], shape: tuple[int, int, int],
                 encoding: str, *, limit: int | None = None, pool: ThreadPoolExecutor | None = None) -> Arrays | None:
    """Parse TFRecord bytes (framed records, as in a plain shard) column-wise, or return None.

    The body of :func:`read_shard` for bytes already in memory, such as records read by offset
    (:mod:`pairgen.reading.pk`); arguments and result as there.
    """
    try:
        starts, lengths = frame_buffer(data, limit=limit)
        cols = _Columns(data)
        images, ints = _parse(cols, starts, lengths, image_keys, int_keys)
        out: Arrays = {key: ints[key] for key in int_keys}
        for key in image_keys:
            offsets, sizes = images[key]
            if encoding == "raw":
                out[key] = _raw_images(cols, offsets, sizes, shape)
            else:
                with nullcontext(pool) if pool else ThreadPoolExecutor(os.cpu_count() or 1) as workers:
                    out[key] = _encoded_images(data, offsets, sizes, encoding, shape, workers)
    except (_Mismatch, TFRecordError):
        return None
    return out

