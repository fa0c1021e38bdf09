"""Read records of an images split by record id: an offset index of the shards, ``os.pread``, CRCs checked.

The shards' record offsets are indexed once (each record's 12-byte header read, its length
checksum checked); records are then read with ``os.pread`` (safe to share across forked
DataLoader workers: it moves no file position), every length and data CRC checked, and parsed
column-wise (:func:`pairgen.codec.columnar.parse_framed`, falling back to the per-record parser).
Each record's ``record_id`` and ``class`` are compared with the manifest. GZIP shards cannot be
read by offset. Memory: about 24 bytes per record (shard, offset, length, class id) plus the
records being read. Used by :mod:`pairgen.reading.pk` (P x K batches), :func:`pairgen.load_classes`
and :mod:`pairgen.torch`.
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pairgen.codec import columnar as fastread
from pairgen.codec.example import decode_example
from pairgen.codec.tfrecord import masked_crc
from pairgen.dataset import layout
from pairgen.dataset.card import Card, read_card
from pairgen.dataset.versions import resolve
from pairgen.errors import DatasetError
from pairgen.reading.arrays import named_arrays
from pairgen.reading.checks import check_split, record_images
from pairgen.spec.schema import schema_of

Arrays = dict[str, np.ndarray]
IMAGES_KIND = "images"
CLASS_KEY = "class"
_HEADER = struct.Struct("<QI")


@dataclass(frozen=True)
class RecordIndex:
    """Where each record of a split lies: ``shard`` (index into ``files``), frame ``offset``, data ``length``."""

    files: tuple[str, ...]
    shard: np.ndarray
    offset: np.ndarray
    length: np.ndarray


def _index_shard(path: str, expected: int, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Frame offsets and data lengths of one plain TFRecord file (header CRCs checked)."""
    offsets, lengths = np.empty(expected, np.int64), np.empty(expected, np.int64)
    size, pos, i = os.path.getsize(path), 0, 0
    with open(path, "rb") as f:
        while pos < size:
            header = os.pread(f.fileno(), 12, pos)
            if len(header) < 12 or i >= expected:
                break
            length, crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != crc or pos + 16 + length > size:
                raise DatasetError(f"shard '{path}': record {i} has a damaged header; run `pairgen verify {root}`.")
            offsets[i], lengths[i] = pos, length
            pos, i = pos + 16 + length, i + 1
    if i != expected or pos != size:
        raise DatasetError(f"shard '{path}' does not hold the {expected} records dataset.json lists; "
                           f"run `pairgen verify {root}`.")
    return offsets, lengths


def index_split(card: Card, root: Path, split: str) -> RecordIndex:
    """Index every record of ``split`` (12 bytes read per record).

    Raises:
        DatasetError: If a shard is GZIP-compressed, damaged, or holds another number of records.
    """
    if card.compression != "none":
        raise DatasetError(f"dataset '{root}' has {card.compression} shards, which cannot be read by record "
                           "offset; rebuild it with compression none for class-balanced batches.")
    files = card.shard_paths(root, split)
    counts = [int(e.get("records", -1)) for e in card.shards[split]]
    parts = [_index_shard(f, n, root) for f, n in zip(files, counts)]
    shard = np.repeat(np.arange(len(files), dtype=np.int32), counts)
    offset = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    length = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    return RecordIndex(tuple(files), shard, offset, length)


def _manifest_classes(root: Path, split: str, records: int) -> np.ndarray:
    """The ``class_id`` of every record of the split, by ``record_id`` (from the manifest)."""
    import pyarrow.parquet as pq

    path = root / layout.manifest(split)
    try:
        table = pq.read_table(path, columns=["record_id", "class_id"])
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"manifest '{path}' cannot be read ({exc}); run `pairgen verify {root}`.") from None
    rid = table.column("record_id").to_numpy().astype(np.int64)
    cls = table.column("class_id").to_numpy().astype(np.int64)
    if len(rid) != records or not np.array_equal(np.sort(rid), np.arange(records)):
        raise DatasetError(f"manifest '{path}' does not list records 0..{records - 1} of the shards; "
                           f"run `pairgen verify {root}`.")
    out = np.empty(records, np.int64)
    out[rid] = cls
    return out


class ImagesSplit:
    """The records of one split of an images dataset, read by record id (offset index, CRCs checked).

    Args:
        path: Dataset directory (``dir@version`` and ``dir@fingerprint-prefix`` accepted).
        split: Split name.

    Raises:
        DatasetError: If the dataset is not an images dataset, or its split or shards cannot be read.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train") -> None:
        self.root = resolve(path)
        self.card = card = read_card(self.root)
        if card.kind.value != IMAGES_KIND:
            raise DatasetError(f"dataset '{self.root}' holds {card.kind.value}; class-balanced batches need an "
                               f"images dataset: build one with `pairgen build --kind images`.")
        self.split = split
        card.shard_paths(self.root, split)
        check_split(card, self.root, split)
        self.index = index_split(card, self.root, split)
        self.classes = _manifest_classes(self.root, split, len(self.index.offset))
        schema = schema_of(card.kind)
        self.image_keys, self.int_keys = schema.image_keys, schema.int_keys
        self._fds: dict[int, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fds"] = {}  # file descriptors stay in the process that opened them
        return state

    def _fd(self, shard: int) -> int:
        if shard not in self._fds:
            self._fds[shard] = os.open(self.index.files[shard], os.O_RDONLY)
        return self._fds[shard]

    def close(self) -> None:
        """Close the shard files this object opened."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def read_serialized(self, ids: np.ndarray) -> list[bytes]:
        """The serialized records ``ids`` (record ids of the split), in that order, CRCs checked.

        Raises:
            DatasetError: If a record's length or data checksum fails.
        """
        return [frame[12:-4] for frame in self._frames(ids)]

    def _frames(self, ids: np.ndarray) -> list[bytes]:
        """Whole frames (header, data, CRC) of records ``ids``, read shard by shard in file order."""
        ids = np.asarray(ids, np.int64)
        idx = self.index
        order = np.lexsort((idx.offset[ids], idx.shard[ids]))
        frames: list[bytes] = [b""] * len(ids)
        for i in order.tolist():
            rid = int(ids[i])
            shard, offset, length = int(idx.shard[rid]), int(idx.offset[rid]), int(idx.length[rid])
            frame = os.pread(self._fd(shard), length + 16, offset)
            self._check_frame(frame, length, rid, shard)
            frames[i] = frame
        return frames

    def _check_frame(self, frame: bytes, length: int, rid: int, shard: int) -> None:
        path = self.index.files[shard]
        if len(frame) != length + 16 or _HEADER.unpack_from(frame)[0] != length:
            raise DatasetError(f"shard '{path}' changed since it was indexed (record {rid}); "
                               f"run `pairgen verify {self.root}`.")
        if masked_crc(frame[12:-4]) != struct.unpack_from("<I", frame, len(frame) - 4)[0]:
            raise DatasetError(f"shard '{path}': record {rid} fails its data CRC; run `pairgen verify {self.root}`.")

    def read(self, ids: np.ndarray, *, normalize: bool = True, pool: ThreadPoolExecutor | None = None) -> Arrays:
        """Records ``ids`` as arrays (``image``, ``id``, ``class``, ``record_id``), in that order.

        Raises:
            DatasetError: If a record is damaged or disagrees with the manifest.
        """
        ids = np.asarray(ids, np.int64)
        frames = self._frames(ids)
        shape, encoding = self.card.image.shape, self.card.image.encoding
        parsed = fastread.parse_framed(b"".join(frames), self.image_keys, self.int_keys, shape, encoding, pool=pool)
        if parsed is None:
            parsed = self._parse_slow(frames, ids)
        self._check_parsed(parsed, ids)
        return named_arrays(parsed, self.image_keys, self.int_keys, normalize)

    def _parse_slow(self, frames: list[bytes], ids: np.ndarray) -> Arrays:
        """Per-record parsing of any valid ``tf.train.Example`` layout."""
        images: dict[str, list[np.ndarray]] = {k: [] for k in self.image_keys}
        ints: dict[str, list[int]] = {k: [] for k in self.int_keys}
        for frame, rid in zip(frames, ids.tolist()):
            where = self.index.files[int(self.index.shard[rid])]
            try:
                rec = decode_example(frame[12:-4])
                for key, image in zip(self.image_keys, record_images(rec, self.image_keys, self.card, where,
                                                                     rid, self.root)):
                    images[key].append(image)
                for key in self.int_keys:
                    ints[key].append(int(rec[key][0]))
            except (KeyError, IndexError):
                raise DatasetError(f"shard '{where}' record {rid} lacks a feature of an images record; "
                                   f"run `pairgen verify {self.root}`.") from None
        shape = self.card.image.shape
        out = {k: np.stack(v) if v else np.zeros((0, *shape), np.uint8) for k, v in images.items()}
        out.update({k: np.asarray(v, np.int64) for k, v in ints.items()})
        return out

    def _check_parsed(self, parsed: Arrays, ids: np.ndarray) -> None:
        got_ids, got_classes = parsed["record_id"], parsed[CLASS_KEY]
        bad = np.flatnonzero((got_ids != ids) | (got_classes != self.classes[ids]))
        if len(bad):
            rid = int(ids[bad[0]])
            raise DatasetError(f"record {rid} of split {self.split!r} in '{self.root}' holds record_id "
                               f"{int(got_ids[bad[0]])}, class {int(got_classes[bad[0]])}; the manifest says "
                               f"record {rid}, class {int(self.classes[rid])}. Run `pairgen verify {self.root}`.")
