"""Raw images of plain shards gathered from memory maps: one NumPy copy per shard per batch.

For a split of ``raw`` images in uncompressed shards (the default build), every record has the
same fixed layout (:mod:`pairgen.codec.columnar`), so where each record's pixels lie in its
shard is found once, when the split is opened: each shard is memory-mapped and parsed
column-wise (its ``record_id``, ``class`` and ``id`` values kept, about 32 bytes per record).
A batch of record ids is then read with

- one ``crc32c`` call per record over its bytes in the map, compared as an array with the
  checksums stored in the shard (a damaged record is named as by every other reader), the first
  time the record is read from this version of its file (see below);
- one fancy-index copy of the pixels per shard the batch touches (rows of a sliding-window
  view of the map at the records' image offsets), no system call per record;
- its ``record_id`` and ``class`` values (parsed at open) compared with the manifest by the
  caller (:class:`pairgen.reading.recordindex.ImagesSplit`), as arrays.

The layout and which records' CRCs held are kept for the process
(:func:`pairgen.reading.recordindex.ImagesSplit` reuses them while the shard files keep their
path, inode, size and modification time: the next epoch does not parse or checksum again; a
rewritten or exchanged file is parsed and checked anew).

:meth:`MappedSplit.read_all` copies a whole split into memory instead (the tf.data readers do for
splits whose pixels fit :data:`HELD_BYTES`), shard by shard, each map closed once its records are
copied.

Pages of the maps are the page cache's; for a split larger than :data:`RESIDENT_BYTES` they
are dropped from the process (``madvise(MADV_DONTNEED)``) whenever its resident file-backed
memory has grown by that much since the last drop (``/proc/self/statm``; a page fault may map
a large block of the file around a record), so the resident memory does not grow with the split. A shard that shrinks while mapped is refused before it is read (its size is
compared with the mapped one for every batch). Anything else (PNG/JPEG images, records not in
pairgen's layout) is read record by record by offset (``os.pread``) by the caller.
"""

from __future__ import annotations

import mmap
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pairgen.codec.columnar import record_layout
from pairgen.codec.tfrecord import FRAME_EXTRA, HEADER_BYTES, first_bad_crc
from pairgen.errors import DatasetError
from pairgen.reading.checks import damaged_message
from pairgen.reading.engine import RecordSpec

Arrays = dict[str, np.ndarray]

RESIDENT_BYTES = 1 << 30  # file pages a reader lets accumulate in the process before dropping them
HELD_BYTES = 1 << 30  # pixels of a split the tf.data readers copy into memory once (larger: read batch by batch)
ALIGN = 64  # bytes: arrays of :meth:`MappedSplit.read_all` start here (TensorFlow takes them without a copy)
_MAPPING = threading.Lock()


@dataclass
class _Map:
    """One shard mapped: the map, its bytes as an array and a memoryview, a window per image size."""

    fd: int
    size: int
    mm: mmap.mmap
    buf: np.ndarray
    view: memoryview
    window: np.ndarray

    def close(self) -> None:
        self.view.release()
        del self.window, self.buf
        try:
            self.mm.close()
        except BufferError:  # an array still refers to it: the map goes when that array does
            pass
        os.close(self.fd)


def _shared_bytes() -> int | None:
    """This process's resident file-backed bytes (``/proc/self/statm``), or None without that file."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[2]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return None


def _drop(m: _Map) -> None:
    """Drop a map's pages from this process (they stay in the page cache)."""
    if m.size and hasattr(mmap, "MADV_DONTNEED"):
        m.mm.madvise(mmap.MADV_DONTNEED)


def _map(path: str, image_bytes: int) -> _Map:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        os.close(fd)
        raise
    if size and hasattr(mmap, "MADV_RANDOM"):
        mm.madvise(mmap.MADV_RANDOM)  # records are read out of order: no read-around
    buf = np.frombuffer(mm, np.uint8)
    window = sliding_window_view(buf, image_bytes) if size >= image_bytes else buf[:0].reshape(0, image_bytes)
    return _Map(fd, size, mm, buf, memoryview(mm), window)


def holds(pixel_bytes: int | None) -> bool:
    """Whether the tf.data readers hold a split of ``pixel_bytes`` pixels in memory (at most
    :data:`HELD_BYTES`; ``None``: a split that cannot be read that way)."""
    return pixel_bytes is not None and pixel_bytes <= HELD_BYTES


def aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialized ``uint8`` array whose data starts on an :data:`ALIGN`-byte boundary."""
    n = int(np.prod(shape))
    raw = np.empty(n + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + n].reshape(shape)


@dataclass
class MappedSplit:
    """A split's raw images read from memory-mapped shards (see the module docstring).

    Made by :meth:`open`; ``files``, ``shard``, ``offset`` and ``length`` are the split's record
    index (:class:`pairgen.reading.recordindex.RecordIndex`).
    """

    root: Path
    spec: RecordSpec
    files: tuple[str, ...]
    shard: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    image_offset: dict[str, np.ndarray]
    ints: Arrays
    tail: np.ndarray
    first: np.ndarray  # record id of each shard's first record
    checked: np.ndarray  # records whose data CRC held (shared by readers of the same files)
    split_bytes: int  # the shards' bytes
    _maps: dict[int, _Map] = field(default_factory=dict)
    _gathered: int = 0
    _base: int | None = None

    @classmethod
    def open(cls, root: Path, spec: RecordSpec, files: tuple[str, ...], shard: np.ndarray, offset: np.ndarray,
             length: np.ndarray) -> MappedSplit | None:
        """Map and parse every shard of the split, or return None when it must be read record by record.

        None for PNG/JPEG images, compressed shards, or records not in pairgen's fixed layout
        (the per-record reader names what is wrong with them).
        """
        if spec.encoding != "raw" or spec.compression != "none" or not len(shard):
            return None
        image_bytes = int(np.prod(spec.shape))
        first = np.searchsorted(shard, np.arange(len(files)), side="left").astype(np.int64)
        bounds = [*first.tolist(), len(shard)]
        image_offset = {key: np.empty(len(shard), np.int64) for key in spec.image_keys}
        ints = {key: np.empty(len(shard), np.int64) for key in spec.int_keys}
        tail = np.empty(len(shard), np.uint32)
        last = np.r_[first[1:], len(shard)] - 1
        present = last >= first
        split_bytes = int((offset[last[present]] + length[last[present]] + FRAME_EXTRA).sum())
        out = cls(root, spec, files, shard, offset, length, image_offset, ints, tail, first,
                  np.zeros(len(shard), bool), split_bytes)
        try:
            for s in range(len(files)):
                lo, hi = bounds[s], bounds[s + 1]
                if lo == hi:
                    continue
                m = out._map_of(s)
                starts = offset[lo:hi] + HEADER_BYTES
                layout = record_layout(m.buf, starts, length[lo:hi], spec.image_keys, spec.int_keys)
                if layout is None:
                    out.close()
                    return None
                images, values = layout
                for key in spec.image_keys:
                    where, sizes = images[key]
                    if (sizes != image_bytes).any():
                        out.close()
                        return None  # the per-record reader names the record and its size
                    image_offset[key][lo:hi] = where
                for key in spec.int_keys:
                    ints[key][lo:hi] = values[key]
                ends = starts + length[lo:hi]
                tail[lo:hi] = m.buf[ends[:, None] + np.arange(4)].copy().view("<u4").ravel()
                out.close()  # parsing brought the whole file in: let it go before the next one
        except (OSError, ValueError, DatasetError):
            out.close()
            return None
        return out

    def fresh(self) -> MappedSplit:
        """The same split's layout with maps of its own (opened when first read)."""
        return MappedSplit(self.root, self.spec, self.files, self.shard, self.offset, self.length,
                           self.image_offset, self.ints, self.tail, self.first, self.checked, self.split_bytes)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"] = {}  # maps and descriptors stay in the process that made them
        return state

    def _map_of(self, shard: int) -> _Map:
        m = self._maps.get(shard)
        if m is not None:
            return m
        with _MAPPING:  # tf.data runs reads on several threads
            m = self._maps.get(shard)
            if m is not None:
                return m
            m = _map(self.files[shard], int(np.prod(self.spec.shape)))
            last = (int(self.first[shard + 1]) if shard + 1 < len(self.first) else len(self.shard)) - 1
            if last >= 0 and m.size < int(self.offset[last]) + int(self.length[last]) + FRAME_EXTRA:
                m.close()
                raise self._changed(shard)
            self._maps[shard] = m
            return m

    def _changed(self, shard: int) -> DatasetError:
        return DatasetError(f"shard '{self.files[shard]}' changed since it was indexed; "
                            f"run `pairgen verify {self.root}`.")

    def _mapped_in(self) -> int:
        """File bytes brought into this process since the last release: ``/proc/self/statm``'s shared
        pages (a fault may map a large block around a record); elsewhere a guess from the bytes read."""
        shared = _shared_bytes()
        if shared is None:
            return self._gathered * 32
        if self._base is None:
            self._base = shared
        return shared - self._base

    def release(self) -> None:
        """Drop the maps' pages from this process (they stay in the page cache)."""
        for m in self._maps.values():
            _drop(m)
        self._gathered = 0
        self._base = _shared_bytes()

    def close(self) -> None:
        """Unmap the shards and close their files."""
        for m in self._maps.values():
            m.close()
        self._maps = {}

    def read(self, ids: np.ndarray) -> Arrays:
        """Records ``ids`` as feature arrays (images ``uint8 [n, h, w, c]``, ints ``int64 [n]``), CRCs checked.

        Raises:
            DatasetError: If a record fails its data CRC or a shard shrank since it was mapped.
        """
        shard = self.shard[ids]
        order = np.argsort(shard, kind="stable")
        ranked = shard[order]
        cuts = np.flatnonzero(ranked[1:] != ranked[:-1]) + 1
        shards = ranked[np.concatenate([[0], cuts])].tolist() if len(ids) else []
        bounds = [0, *cuts.tolist(), len(ids)]
        maps = [self._map_of(s) for s in shards]
        for s, m in zip(shards, maps):  # no shard shrank under its map (reading past its end would crash)
            if os.fstat(m.fd).st_size < m.size:
                raise self._changed(s)
        new = ~self.checked[ids]
        if new.any():
            self._check_crcs(ids[new], shard[new], shards, maps)
            self.checked[ids[new]] = True
        features: Arrays = {key: values[ids] for key, values in self.ints.items()}
        shape = self.spec.shape
        for key in self.spec.image_keys:
            where = self.image_offset[key][ids]
            if len(shards) == 1:
                pixels = maps[0].window[where]
            else:
                pixels = np.empty((len(ids), int(np.prod(shape))), np.uint8)
                for m, lo, hi in zip(maps, bounds[:-1], bounds[1:]):
                    rows = order[lo:hi]
                    pixels[rows] = m.window[where[rows]]
            features[key] = pixels.reshape(len(ids), *shape)
        if self.split_bytes > RESIDENT_BYTES and self._mapped_in() >= RESIDENT_BYTES:
            self.release()
        self._gathered += len(ids) * int(np.prod(shape))
        return features

    @property
    def pixel_bytes(self) -> int:
        """Bytes of all the split's pixels (every image of every record)."""
        return len(self.shard) * int(np.prod(self.spec.shape)) * len(self.spec.image_keys)

    def read_all(self) -> Arrays:
        """Every record of the split, in record-id order, checked as :meth:`read` checks them.

        Read shard by shard (a fancy-index copy per shard and image key, into arrays allocated
        once, :data:`ALIGN`-byte aligned), each shard's map closed once its records are copied, so
        the file pages do not pile up in the process: the memory is about :attr:`pixel_bytes`.
        Every record's CRC is checked unless this version of its file was checked before.

        Raises:
            DatasetError: If a record fails its data CRC or a shard shrank since it was indexed.
        """
        n, shape = len(self.shard), self.spec.shape
        images = {key: aligned_empty((n, *shape)) for key in self.spec.image_keys}
        bounds = [*self.first.tolist(), n]
        for s in range(len(self.files)):
            lo, hi = bounds[s], bounds[s + 1]
            if lo == hi:
                continue
            m = self._map_of(s)
            try:
                if os.fstat(m.fd).st_size < m.size:
                    raise self._changed(s)
                ids = np.arange(lo, hi)
                new = ids[~self.checked[lo:hi]]
                if len(new):
                    self._check_crcs(new, self.shard[new], [s], [m])
                    self.checked[new] = True
                for key, out in images.items():
                    out[lo:hi] = m.window[self.image_offset[key][lo:hi]].reshape(hi - lo, *shape)
            finally:
                self._maps.pop(s).close()
        return {**images, **self.ints}

    def _check_crcs(self, ids: np.ndarray, shard: np.ndarray, shards: list[int], maps: list[_Map]) -> None:
        which = np.searchsorted(np.asarray(shards), shard)
        bad = first_bad_crc([m.view for m in maps], which, self.offset[ids] + HEADER_BYTES, self.length[ids],
                            self.tail[ids], release_gil=self.spec.shape[0] * self.spec.shape[1] * self.spec.shape[2] >= 4096)
        if bad is not None:
            rid, s = int(ids[bad]), int(shard[bad])
            local = rid - int(self.first[s])  # its place in the file, as other readers count
            raise DatasetError(damaged_message(self.files[s], f"record {local} (record_id {rid}) fails its data CRC",
                                               self.root))
