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
off when you reshuffle per epoch. A class-balanced P x K batch sampler needs a per-image dataset
kind, which pairgen does not build yet.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from pairgen import streaming as _stream
from pairgen._optional import require

torch = require("torch", extra="torch", feature="pairgen.torch",
                instead="use pairgen.stream (NumPy batches, no PyTorch)")


def _distributed() -> tuple[int, int]:
    """``(rank, world_size)`` of an initialized ``torch.distributed`` process group, else ``(0, 1)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class StreamDataset(torch.utils.data.IterableDataset):
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
        shuffle_buffer: Records held back for shuffling, per consumer (see :mod:`pairgen.streaming`).
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
                 shuffle_buffer: int = _stream.DEFAULT_SHUFFLE_BUFFER, equalize: bool = False) -> None:
        super().__init__()
        default_rank, default_world = _distributed()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.path, self.split, self.batch_size = path, split, batch_size
        self.shuffle, self.seed, self.normalize = shuffle, seed, normalize
        self.drop_remainder, self.shuffle_buffer, self.equalize = drop_remainder, shuffle_buffer, equalize
        self.epoch = 0
        _stream.check_stream_args(batch_size=batch_size, shuffle=shuffle, seed=seed, shard_index=self.rank,
                                  num_shards=self.world_size, shuffle_buffer=shuffle_buffer, epoch=0)
        # Reads the card and checks the split now, so a bad path fails in the main process.
        _stream.num_records(path, split, shard_index=self.rank, num_shards=self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order for the next iteration (call it before each epoch)."""
        _stream.check_stream_args(batch_size=1, shuffle=False, seed=None, shard_index=0, num_shards=1,
                                  shuffle_buffer=0, epoch=epoch)
        self.epoch = epoch

    def consumer(self) -> tuple[int, int]:
        """``(shard_index, num_shards)`` of the calling worker of this rank."""
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.rank * workers + worker, self.world_size * workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        index, count = self.consumer()
        batches = _stream.stream(self.path, self.split, batch_size=self.batch_size, shuffle=self.shuffle,
                                 seed=self.seed, shard_index=index, num_shards=count, normalize=self.normalize,
                                 drop_remainder=self.drop_remainder, epoch=self.epoch,
                                 shuffle_buffer=self.shuffle_buffer, equalize=self.equalize)
        for batch in batches:
            yield {key: torch.from_numpy(value) for key, value in batch.items()}
