"""The NumPy record engine: pairgen's records into arrays, column-wise with a per-record fallback.

Every NumPy reader (:func:`pairgen.load_numpy`, :func:`pairgen.stream`, the P x K reader and
:mod:`pairgen.torch`) reads through here. Records come either as whole shard files
(:func:`read_shard`, :func:`read_split`) or as frames read by offset (:func:`read_frames`);
either way they are parsed column-wise by :mod:`pairgen.codec.columnar` (every length and
record CRC checked by :mod:`pairgen.codec.tfrecord`), and whatever that declines (another
record layout, a damaged file) is read record by record by :func:`decode_each`, which accepts
any valid ``tf.train.Example`` and names the exact damage. The arrays are the same either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pairgen.codec import columnar
from pairgen.codec.example import decode_example
from pairgen.codec.images import decode_record_image
from pairgen.codec.tfrecord import HEADER_BYTES, iter_records
from pairgen.errors import DatasetError, PairgenError
from pairgen.reading.checks import spec_text
from pairgen.spec.schema import array_name

Arrays = dict[str, np.ndarray]
Record = dict[str, list]
ImagesOf = Callable[[Record, str, int], Sequence[np.ndarray]]


@dataclass(frozen=True)
class RecordSpec:
    """What the engine needs to know about a split's records: features, image spec, compression."""

    image_keys: tuple[str, ...]
    int_keys: tuple[str, ...]
    shape: tuple[int, int, int]
    encoding: str
    compression: str = "none"

    @property
    def features(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, int, int], str]:
        """``(image_keys, int_keys, shape, encoding)``: the leading arguments of the column reader."""
        return self.image_keys, self.int_keys, self.shape, self.encoding

    def empty(self) -> Arrays:
        """Zero records: images ``uint8 [0, h, w, c]``, ints ``int64 [0]``."""
        return {**{k: np.zeros((0, *self.shape), np.uint8) for k in self.image_keys},
                **{k: np.zeros((0,), np.int64) for k in self.int_keys}}


def count(arrays: Arrays) -> int:
    """Records held by a dict of arrays (all of one length)."""
    return len(next(iter(arrays.values())))


def named_arrays(features: Arrays, image_keys: Sequence[str], int_keys: Sequence[str],
                 normalize: bool) -> Arrays:
    """Feature arrays under :func:`pairgen.load_numpy`'s keys (``a/image`` -> ``a``), pixels scaled as it does.

    ``normalize``: ``float32`` pixels in [0, 1], else the ``uint8`` arrays as given. Every NumPy
    reader (:func:`pairgen.load_numpy`, :func:`pairgen.stream`, the P x K reader) returns this.
    """
    out: Arrays = {}
    for key in image_keys:
        pixels = features[key]
        if normalize:
            pixels = pixels.astype(np.float32)
            pixels *= np.float32(1.0 / 255.0)
        out[array_name(key)] = pixels
    for key in int_keys:
        out[array_name(key)] = features[key]
    return out


def decode_each(items: Iterable[tuple[bytes, str, int]], spec: RecordSpec, images_of: ImagesOf,
                on_missing: Callable[[str, int], DatasetError] | None = None) -> Arrays:
    """The per-record path: decode each serialized ``tf.train.Example`` and stack its features.

    Args:
        items: ``(serialized record, where, index)``: ``where`` (its shard) and ``index`` name it in errors.
        spec: The features to take.
        images_of: Decodes a record's images (one per image key), raising the reader's error.
        on_missing: Builds the error for a record that lacks a feature; ``None`` lets the
            ``KeyError`` through.

    Returns:
        Feature name to array: images ``uint8 [n, h, w, c]``, ints ``int64 [n]``.
    """
    images: dict[str, list[np.ndarray]] = {k: [] for k in spec.image_keys}
    ints: dict[str, list[int]] = {k: [] for k in spec.int_keys}
    for data, where, index in items:
        rec = decode_example(data)
        try:
            for key, image in zip(spec.image_keys, images_of(rec, where, index)):
                images[key].append(image)
            for key in spec.int_keys:
                ints[key].append(int(rec[key][0]))
        except (KeyError, IndexError):
            if on_missing is None:
                raise
            raise on_missing(where, index) from None
    out = {k: np.stack(v) if v else np.zeros((0, *spec.shape), np.uint8) for k, v in images.items()}
    out.update({k: np.asarray(v, np.int64) for k, v in ints.items()})
    return out


def _file_items(files: Sequence[str], compression: str, limit: int | None) -> Iterator[tuple[bytes, str, int]]:
    """``(record, shard, index)`` of the files' records in order, at most ``limit`` of them."""
    left = limit
    for f in files:
        if left is not None and left <= 0:
            return
        for index, data in enumerate(iter_records(f, compression=compression)):
            if left is not None and left <= 0:
                return
            assert data is not None  # read_data=True
            yield data, f, index
            if left is not None:
                left -= 1


def _file_images(spec: RecordSpec) -> ImagesOf:
    def images_of(rec: Record, where: str, index: int) -> list[np.ndarray]:
        return [record_image(rec, key, spec.shape, spec.encoding, where, index) for key in spec.image_keys]

    return images_of


def record_image(rec: Record, key: str, shape: tuple[int, int, int], encoding: str,
                 path: str, index: int) -> np.ndarray:
    """One image feature of a decoded record; a mismatch with the image spec names the shard and record.

    Raises:
        DatasetError: If the feature is missing or does not decode to ``shape``.
    """
    try:
        return decode_record_image(rec[key][0], encoding, shape)
    except (PairgenError, KeyError, IndexError) as exc:
        problem = str(exc).rstrip(".") if isinstance(exc, PairgenError) else "missing"
        raise DatasetError(f"shard '{path}' record {index} does not match the image spec "
                           f"{spec_text(shape, encoding)} of dataset.json ({key}: {problem}); "
                           "run `pairgen verify` on the dataset.") from None


def read_records(files: list[str], image_keys: tuple[str, ...], int_keys: tuple[str, ...],
                 shape: tuple[int, int, int], encoding: str, *, compression: str = "none",
                 limit: int | None = None) -> Arrays:
    """Read shards record by record: any valid ``tf.train.Example`` layout, every checksum checked.

    The general reader behind the column-wise path (which reads pairgen's own fixed record
    layout and comes here for anything else); it names the record of a damaged shard exactly.

    Returns:
        Feature name to array: images ``uint8 [n, h, w, c]``, ints ``int64 [n]``.

    Raises:
        DatasetError: If a shard is missing or damaged, or an image does not decode to ``shape``.
    """
    spec = RecordSpec(tuple(image_keys), tuple(int_keys), shape, encoding, compression)
    return decode_each(_file_items(files, compression, limit), spec, _file_images(spec))


def read_shard(path: str, spec: RecordSpec, *, limit: int | None = None,
               pool: ThreadPoolExecutor | None = None) -> Arrays:
    """One shard file (its first ``limit`` records), column-wise or else record by record.

    Raises:
        DatasetError: If the shard is damaged or its images do not match the image spec.
    """
    part = columnar.read_shard(path, *spec.features, compression=spec.compression, limit=limit, pool=pool)
    if part is None:
        part = read_records([path], *spec.features, compression=spec.compression, limit=limit)
    return part


def read_split(files: Sequence[str], spec: RecordSpec, *, limit: int | None = None,
               on_shard: Callable[[str, int, bool], None] | None = None) -> Arrays:
    """Read shards in order into one set of arrays, each through :func:`read_shard`.

    Args:
        files: The split's shard paths, in order.
        spec: The features to take, the image spec and the compression.
        limit: Read at most this many records (the first ones).
        on_shard: Called as ``on_shard(path, records_read, whole)`` after each shard, where
            ``whole`` is false when ``limit`` cut the shard short (for the loaders' count check).

    Returns:
        Feature name to array (images ``uint8``, ints ``int64``), records in file order.
    """
    parts: list[Arrays] = []
    left = limit
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for f in files:
            if left is not None and left <= 0:
                break
            part = read_shard(f, spec, limit=left, pool=pool)
            parts.append(part)
            n = count(part)
            if on_shard is not None:
                on_shard(f, n, left is None or n < left)
            if left is not None:
                left -= n
    return concat(parts, spec)


def concat(parts: Sequence[Arrays], spec: RecordSpec) -> Arrays:
    """Parts of a split, one after another (no copy for a single part; :meth:`RecordSpec.empty` for none)."""
    if not parts:
        return spec.empty()
    return {k: parts[0][k] if len(parts) == 1 else np.concatenate([p[k] for p in parts])
            for k in (*spec.image_keys, *spec.int_keys)}


def read_frames(frames: Sequence[bytes], spec: RecordSpec, *, where: Sequence[tuple[str, int]],
                images_of: ImagesOf, on_missing: Callable[[str, int], DatasetError],
                pool: ThreadPoolExecutor | None = None) -> Arrays:
    """Whole frames read by offset (CRCs already checked), column-wise or else record by record.

    Args:
        frames: Each record's frame (header, data, CRC), in the order wanted.
        spec: The features to take.
        where: ``(shard, record id)`` of each frame, for the per-record path's errors.
        images_of, on_missing: As for :func:`decode_each`.
        pool: Thread pool that decodes PNG/JPEG images.
    """
    parsed = columnar.parse_framed(b"".join(frames), *spec.features, pool=pool)
    if parsed is not None:
        return parsed
    items = ((frame[HEADER_BYTES:-4], shard, rid) for frame, (shard, rid) in zip(frames, where))
    return decode_each(items, spec, images_of, on_missing)
