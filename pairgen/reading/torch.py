"""A PyTorch ``IterableDataset`` over :func:`pairgen.stream`: shards split across workers and ranks.

Needs the ``pairgen[torch]`` extra; ``import pairgen`` never imports this module (nor PyTorch)::

    import torch, pairgen.torch

    ds = pairgen.torch.StreamDataset("build/mnist-demo", "train", batch_size=256, shuffle=True, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=4)
    for epoch in range(10):
        ds.set_epoch(epoch)                      # reshuffles, like DistributedSampler.set_epoch
        for batch in loader:                     # dict of tensors: a, b (float32 NHWC), label, ...
            ...

The dataset yields whole **batches** (dicts with :func:`pairgen.load_numpy`'s keys, as torch
tensors; images stay ``[n, h, w, c]``: ``x.permute(0, 3, 1, 2)`` for NCHW), cut by
:func:`pairgen.stream` with NumPy. Pass ``batch_size=None`` to the ``DataLoader`` so it does not
batch again: that is far faster than collating single records.

Each DataLoader worker of each rank is one consumer of :func:`pairgen.stream`: consumer
``rank * num_workers + worker_id`` of ``world_size * num_workers``, so all workers of all ranks
together read every record exactly once per epoch (shard files are split between consumers, or
records when there are fewer files than consumers). ``rank`` and ``world_size`` default to those
of ``torch.distributed`` when it is initialized when the dataset is made, else 0 and 1.
Consumers may get different numbers of records (shards of different sizes); with
DistributedDataParallel, pass ``equalize=True, drop_remainder=True`` (every rank then takes
the same number of full batches, skipping the few records beyond the smallest consumer's
count) or wrap the loop in ``model.join()``.

``set_epoch`` must be called before the epoch's iterator is created; with
``persistent_workers=True`` the workers keep the dataset they were started with, so leave it
off when you reshuffle per epoch.

**Class-balanced P x K batches** of an images dataset (``pairgen build --kind images``):
:class:`PKBatchSampler` yields each batch's record ids (``P`` classes x ``K`` images, the
schedule of :mod:`pairgen.reading.pk`) and :class:`ImageRecords` reads a batch of record ids by offset
in whichever DataLoader worker gets it::

    sampler = pairgen.torch.PKBatchSampler("build/digits", "train", classes_per_batch=8,
                                           images_per_class=4, seed=0)
    loader = torch.utils.data.DataLoader(pairgen.torch.ImageRecords("build/digits", "train"),
                                         batch_sampler=sampler, num_workers=2,
                                         collate_fn=pairgen.torch.collate)
    for epoch in range(10):
        sampler.set_epoch(epoch)
        for batch in loader:             # image (32, 28, 28, 1) float32, class, id, record_id
            ...

Each rank's sampler takes batches ``rank, rank + world_size, ...`` of the epoch (the epoch
padded with its first batches to a multiple of ``world_size``, or cut with ``drop_last``), so
ranks take the same number of steps and together read every batch; the workers of a rank
share its batches as DataLoader workers share any batch sampler's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from pairgen.extras import require
from pairgen.reading import pk as pk_reader
from pairgen.reading import streaming as stream_reader
from pairgen.reading.plan import check_rank, consumer_batches, worker_consumer
from pairgen.reading.recordindex import ImagesSplit

__all__ = ["ImageRecords", "PKBatchSampler", "StreamDataset", "collate"]

torch = require("torch", extra="torch", feature="pairgen.torch",
                instead="use pairgen.stream (NumPy batches, no PyTorch)")

# PyTorch's base classes (``torch`` is imported at run time by ``require``, so typed as Any).
IterableDataset: Any = torch.utils.data.IterableDataset
Sampler: Any = torch.utils.data.Sampler
MapDataset: Any = torch.utils.data.Dataset


def _distributed() -> tuple[int, int]:
    """``(rank, world_size)`` of an initialized ``torch.distributed`` process group, else ``(0, 1)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class StreamDataset(IterableDataset):
    """Batches of a pairgen split as dicts of torch tensors, split across workers and ranks.

    Args:
        path: Dataset directory (``dir@version`` and ``dir@fingerprint-prefix`` accepted).
        split: Split name.
        batch_size: Records per batch.
        shuffle: Shuffle shard order and records each epoch (needs ``seed``).
        seed: Seed of the shuffle; every rank must pass the same one.
        rank: This process's rank; defaults from ``torch.distributed`` (else 0).
        world_size: Number of ranks; defaults from ``torch.distributed`` (else 1).
        normalize: ``float32`` pixels in [0, 1] if true, else ``uint8``.
        drop_remainder: Drop each consumer's last batch if smaller than ``batch_size``.
        shuffle_buffer: Records held back for shuffling, per consumer (see :mod:`pairgen.reading.streaming`).
        equalize: Cut every worker of every rank to the smallest one's record count, so that
            all ranks take the same number of steps (with ``drop_remainder``, the same number
            of full batches); the records cut are skipped that epoch.

    Raises:
        ConfigError: If an argument is invalid.
        DatasetError: If the dataset or split cannot be read (checked here, before any worker starts).
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *, batch_size: int,
                 shuffle: bool = False, seed: int | None = None, rank: int | None = None,
                 world_size: int | None = None, normalize: bool = True, drop_remainder: bool = False,
                 shuffle_buffer: int = stream_reader.DEFAULT_SHUFFLE_BUFFER, equalize: bool = False) -> None:
        super().__init__()
        default_rank, default_world = _distributed()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.path, self.split, self.batch_size = path, split, batch_size
        self.shuffle, self.seed, self.normalize = shuffle, seed, normalize
        self.drop_remainder, self.shuffle_buffer, self.equalize = drop_remainder, shuffle_buffer, equalize
        self.epoch = 0
        stream_reader.check_stream_args(batch_size=batch_size, shuffle=shuffle, seed=seed, shard_index=self.rank,
                                  num_shards=self.world_size, shuffle_buffer=shuffle_buffer, epoch=0)
        # Reads the card and checks the split now, so a bad path or shard fails in the main process.
        stream_reader.num_records(path, split, shard_index=self.rank, num_shards=self.world_size, check=True)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order for the next iteration (call it before each epoch)."""
        stream_reader.check_stream_args(batch_size=1, shuffle=False, seed=None, shard_index=0, num_shards=1,
                                  shuffle_buffer=0, epoch=epoch)
        self.epoch = epoch

    def consumer(self) -> tuple[int, int]:
        """``(shard_index, num_shards)`` of the calling worker of this rank."""
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return worker_consumer(self.rank, self.world_size, worker, workers)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        index, count = self.consumer()
        batches = stream_reader.stream(self.path, self.split, batch_size=self.batch_size, shuffle=self.shuffle,
                                 seed=self.seed, shard_index=index, num_shards=count, normalize=self.normalize,
                                 drop_remainder=self.drop_remainder, epoch=self.epoch,
                                 shuffle_buffer=self.shuffle_buffer, equalize=self.equalize)
        for batch in batches:
            yield {key: torch.from_numpy(value) for key, value in batch.items()}


class PKBatchSampler(Sampler):
    """Batches of record ids of an images split: ``P`` distinct classes x ``K`` images each.

    Args:
        path: Dataset directory of an images dataset (``dir@version`` accepted).
        split: Split name.
        classes_per_batch: ``P``.
        images_per_class: ``K``.
        seed: Seed of the schedule; every rank must pass the same one.
        rank: This process's rank; defaults from ``torch.distributed`` (else 0).
        world_size: Number of ranks; defaults from ``torch.distributed`` (else 1).
        drop_last: Cut each epoch to a multiple of ``world_size`` batches instead of padding it
            with its first batches.

    Raises:
        ConfigError: For invalid arguments, or fewer than ``P`` classes with ``K`` images.
        DatasetError: If the dataset is not an images dataset or cannot be read.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *, classes_per_batch: int,
                 images_per_class: int, seed: int = 0, rank: int | None = None, world_size: int | None = None,
                 drop_last: bool = False) -> None:
        default_rank, default_world = _distributed()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        check_rank(self.rank, self.world_size)
        self.data = pk_reader.PKSplit(path, split, classes_per_batch=classes_per_batch,
                                images_per_class=images_per_class, seed=seed)
        self.pad, self.epoch = not drop_last, 0
        len(self)  # refuses an epoch that would give this rank no batch

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s schedule for the next iteration (call it before each epoch)."""
        pk_reader.check_pk_args(classes_per_batch=self.data.p, images_per_class=self.data.k, seed=self.data.seed,
                          epoch=epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(consumer_batches(self.data.n_batches, rank=self.rank, world_size=self.world_size,
                                        pad=self.pad))

    def __iter__(self) -> Iterator[list[int]]:
        rows = self.data.consumer_schedule(self.epoch, rank=self.rank, world_size=self.world_size, pad=self.pad)
        for row in rows:
            yield row.tolist()


class ImageRecords(MapDataset):
    """The records of an images split by record id, read by offset (map-style dataset).

    ``dataset[i]`` is one record; a DataLoader with a batch sampler calls ``__getitems__``,
    which reads a whole batch at once (pass ``collate_fn=pairgen.torch.collate``).

    Args:
        path: Dataset directory of an images dataset (``dir@version`` accepted).
        split: Split name.
        normalize: ``float32`` pixels in [0, 1] if true, else ``uint8``.

    Raises:
        DatasetError: If the dataset is not an images dataset or cannot be read.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *, normalize: bool = True) -> None:
        self.data = ImagesSplit(path, split)
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.data.classes)

    def __getitems__(self, ids: list[int]) -> dict[str, Any]:
        ids_array = np.asarray(ids, np.int64)
        if len(ids_array) and (ids_array.min() < 0 or ids_array.max() >= len(self)):
            raise IndexError(f"record ids must be in [0, {len(self)}); received {ids_array.min()}..{ids_array.max()}")
        batch = self.data.read(ids_array, normalize=self.normalize)
        return {key: torch.from_numpy(value) for key, value in batch.items()}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {key: value[0] for key, value in self.__getitems__([int(index)]).items()}


def collate(batch: dict[str, Any]) -> dict[str, Any]:
    """The ``collate_fn`` for :class:`ImageRecords` with a batch sampler: the batch as read."""
    return batch
