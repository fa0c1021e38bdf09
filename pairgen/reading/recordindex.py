"""Read records of an images split by record id: an offset index of the shards, CRCs checked.

Raw images in plain shards are gathered from memory-mapped shards (:mod:`pairgen.reading.mapped`);
the rest as below.

The shards' record offsets are indexed once (each record's 12-byte header read, its length
checksum checked); records are then read with ``os.pread`` (safe to share across forked
DataLoader workers: it moves no file position), every length and data CRC checked, and parsed
by the NumPy record engine (:func:`pairgen.reading.engine.read_frames`: column-wise, else record
by record). The split is opened by :class:`pairgen.reading.handle.SplitHandle`; the framing and
its checks are :mod:`pairgen.codec.tfrecord`'s (:func:`~pairgen.codec.tfrecord.index_file`,
:func:`~pairgen.codec.tfrecord.check_frame`).
Each record's ``record_id`` and ``class`` are compared with the manifest. GZIP shards cannot be
read by offset. Memory: about 24 bytes per record (shard, offset, length, class id) plus the
records being read. Used by :mod:`pairgen.reading.pk` (P x K batches), :func:`pairgen.load_classes`
and :mod:`pairgen.torch`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pairgen.codec.tfrecord import FRAME_EXTRA, TFRecordError, check_frame, index_file
from pairgen.dataset import layout
from pairgen.dataset.card import Card
from pairgen.errors import DatasetError
from pairgen.reading import engine
from pairgen.reading.checks import damaged_message, record_images
from pairgen.reading.handle import SplitHandle
from pairgen.reading.mapped import MappedSplit
from pairgen.spec.schema import IMAGES, RECORD_ID

Arrays = dict[str, np.ndarray]
IMAGES_KIND = IMAGES.kind.value
CLASS_KEY = IMAGES.roles[0].class_key


@dataclass(frozen=True)
class RecordIndex:
    """Where each record of a split lies: ``shard`` (index into ``files``), frame ``offset``, data ``length``."""

    files: tuple[str, ...]
    shard: np.ndarray
    offset: np.ndarray
    length: np.ndarray


def _index_shard(path: str, expected: int, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Frame offsets and data lengths of one plain TFRecord file (header CRCs checked)."""
    try:
        offsets, lengths, end = index_file(path, expected)
    except TFRecordError as exc:
        raise DatasetError(damaged_message(path, exc.detail, root)) from None
    if len(offsets) != expected or end != os.path.getsize(path):
        raise DatasetError(f"shard '{path}' does not hold the {expected} records dataset.json lists; "
                           f"run `pairgen verify {root}`.")
    return offsets, lengths


def index_split(handle: SplitHandle) -> RecordIndex:
    """Index every record of the handle's split (12 bytes read per record).

    Raises:
        DatasetError: If a shard is GZIP-compressed, damaged, or holds another number of records.
    """
    card, root = handle.card, handle.root
    if card.compression != "none":
        raise DatasetError(f"dataset '{root}' has {card.compression} shards, which cannot be read by record "
                           "offset; rebuild it with compression none for class-balanced batches.")
    files = handle.files
    counts = [-1 if n is None else n for n in handle.listed]
    parts = [_index_shard(f, n, root) for f, n in zip(files, counts)]
    shard = np.repeat(np.arange(len(files), dtype=np.int32), counts)
    offset = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    length = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    return RecordIndex(tuple(files), shard, offset, length)


_OPENED: OrderedDict[tuple, tuple[RecordIndex, MappedSplit | None, np.ndarray | None]] = OrderedDict()
_OPENED_MAX = 8  # indexes, layouts and manifests this process keeps (about 40 bytes per record each)


def _identity(path: str | os.PathLike) -> tuple:
    """What tells one version of a file from another: path, inode, size and modification time."""
    st = os.stat(path)
    return (str(path), st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def _remember(key: tuple, value: Any) -> None:
    _OPENED[key] = value
    while len(_OPENED) > _OPENED_MAX:
        _OPENED.popitem(last=False)


def opened_split(handle: SplitHandle) -> tuple[RecordIndex, MappedSplit | None]:
    """The split's record index and mapped layout, kept per process for the same shard files.

    Opening a split reads every record's header and, for raw images, parses every record's
    layout; both depend only on the shard files' bytes, so a later open of the same files
    (same paths, inodes, sizes and modification times: the next epoch of ``pk_batches``)
    reuses them. Records are still checked (CRC, ``record_id``, class) every time they are read.
    """
    try:
        key = ("index", tuple(handle.listed), tuple(_identity(f) for f in handle.files))
    except OSError:
        key = None
    if key is not None and key in _OPENED:
        _OPENED.move_to_end(key)
        index, mapped, _ = _OPENED[key]
        return index, mapped
    index = index_split(handle)
    mapped = MappedSplit.open(handle.root, handle.spec, index.files, index.shard, index.offset, index.length)
    if key is not None:
        _remember(key, (index, mapped, None))
    if mapped is not None:
        mapped.close()  # each reader maps the files itself
    return index, mapped


def _manifest_classes(root: Path, split: str, records: int) -> np.ndarray:
    """The ``class_id`` of every record of the split, by ``record_id`` (from the manifest)."""
    import pyarrow.parquet as pq

    path = root / layout.manifest(split)
    try:
        key = ("manifest", records, _identity(path))
    except OSError:
        key = None
    if key is not None and key in _OPENED:
        _OPENED.move_to_end(key)
        return _OPENED[key][2]  # type: ignore[return-value]
    try:
        table = pq.read_table(path, columns=[RECORD_ID, IMAGES.roles[0].class_column])
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"manifest '{path}' cannot be read ({exc}); run `pairgen verify {root}`.") from None
    rid = table.column(RECORD_ID).to_numpy().astype(np.int64)
    cls = table.column(IMAGES.roles[0].class_column).to_numpy().astype(np.int64)
    if len(rid) != records or not np.array_equal(np.sort(rid), np.arange(records)):
        raise DatasetError(f"manifest '{path}' does not list records 0..{records - 1} of the shards; "
                           f"run `pairgen verify {root}`.")
    out = np.empty(records, np.int64)
    out[rid] = cls
    out.flags.writeable = False
    if key is not None:
        _remember(key, (None, None, out))
    return out


def _require_images(root: Path, card: Card) -> None:
    if card.kind.value != IMAGES_KIND:
        raise DatasetError(f"dataset '{root}' holds {card.kind.value}; class-balanced batches need an "
                           f"images dataset: build one with `pairgen build --kind images`.")


class ImagesSplit:
    """The records of one split of an images dataset, read by record id (offset index, CRCs checked).

    Args:
        path: Dataset directory (``dir@version`` and ``dir@fingerprint-prefix`` accepted).
        split: Split name.

    Raises:
        DatasetError: If the dataset is not an images dataset, or its split or shards cannot be read.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train") -> None:
        self.handle = handle = SplitHandle(path, split, require=_require_images)
        self.root, self.card, self.split = handle.root, handle.card, split
        self.index, mapped = opened_split(handle)
        self.mapped = mapped.fresh() if mapped is not None else None
        self.classes = _manifest_classes(self.root, split, len(self.index.offset))
        self.image_keys, self.int_keys = handle.image_keys, handle.int_keys
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
        mapped = getattr(self, "mapped", None)
        if mapped is not None:
            mapped.close()

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
            frame = os.pread(self._fd(shard), length + FRAME_EXTRA, offset)
            self._check_frame(frame, length, rid, shard)
            frames[i] = frame
        return frames

    def _check_frame(self, frame: bytes, length: int, rid: int, shard: int) -> None:
        path = self.index.files[shard]
        try:
            check_frame(frame, length)
        except TFRecordError as exc:
            if exc.kind == "truncated":
                raise DatasetError(f"shard '{path}' changed since it was indexed (record {rid}); "
                                   f"run `pairgen verify {self.root}`.") from None
            local = rid - int(np.argmax(self.index.shard == shard))  # its place in the file, as other readers count
            raise DatasetError(damaged_message(path, f"record {local} (record_id {rid}) fails its data CRC",
                                               self.root)) from None

    def read(self, ids: np.ndarray, *, normalize: bool = True, pool: ThreadPoolExecutor | None = None) -> Arrays:
        """Records ``ids`` as arrays (``image``, ``id``, ``class``, ``record_id``), in that order.

        Raises:
            DatasetError: If a record is damaged or disagrees with the manifest.
        """
        ids = np.asarray(ids, np.int64)
        if self.mapped is not None:
            features = self.mapped.read(ids)
            self._check_parsed(features, ids)
            return engine.named_arrays(features, self.image_keys, self.int_keys, normalize)
        frames = self._frames(ids)
        where = [(self.index.files[int(self.index.shard[rid])], rid) for rid in ids.tolist()]
        parsed = engine.read_frames(frames, self.handle.spec, where=where, images_of=self._images_of,
                                    on_missing=self._missing, pool=pool)
        self._check_parsed(parsed, ids)
        return engine.named_arrays(parsed, self.image_keys, self.int_keys, normalize)

    def read_all(self) -> Arrays | None:
        """Every record of the split as ``uint8`` arrays, in record-id order, checked as :meth:`read` checks them.

        Only for raw images in plain shards (copied out of the memory maps shard by shard, see
        :meth:`pairgen.reading.mapped.MappedSplit.read_all`); None for any other split. The
        images take :attr:`pixel_bytes` of memory.

        Raises:
            DatasetError: If a record is damaged or disagrees with the manifest.
        """
        if self.mapped is None:
            return None
        features = self.mapped.read_all()
        self._check_parsed(features, np.arange(len(self.classes)))
        return engine.named_arrays(features, self.image_keys, self.int_keys, False)

    @property
    def pixel_bytes(self) -> int | None:
        """Bytes of all the split's pixels as :meth:`read_all` holds them (None where it does not apply)."""
        return None if self.mapped is None else self.mapped.pixel_bytes

    def _images_of(self, record: dict[str, list], where: str, rid: int) -> list[np.ndarray]:
        return record_images(record, self.image_keys, self.card, where, rid, self.root)

    def _missing(self, where: str, rid: int) -> DatasetError:
        return DatasetError(f"shard '{where}' record {rid} lacks a feature of an images record; "
                            f"run `pairgen verify {self.root}`.")

    def _check_parsed(self, parsed: Arrays, ids: np.ndarray) -> None:
        got_ids, got_classes = parsed[RECORD_ID], parsed[CLASS_KEY]
        bad = np.flatnonzero((got_ids != ids) | (got_classes != self.classes[ids]))
        if len(bad):
            rid = int(ids[bad[0]])
            raise DatasetError(f"record {rid} of split {self.split!r} in '{self.root}' holds record_id "
                               f"{int(got_ids[bad[0]])}, class {int(got_classes[bad[0]])}; the manifest says "
                               f"record {rid}, class {int(self.classes[rid])}. Run `pairgen verify {self.root}`.")
