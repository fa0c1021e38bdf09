"""Class-balanced P x K batches of an images dataset, read by record offset (NumPy, no TensorFlow).

Metric-learning losses (batch-hard triplets, in-batch contrastive) want every batch to hold
``P`` distinct classes with ``K`` images each. This module plans such batches from the split's
class ids and reads exactly the records each batch needs from the shards, whatever their
layout::

    for batch in pairgen.reading.pk.pk_batches("build/digits", "train", classes_per_batch=8,
                                       images_per_class=4, seed=0, epoch=e):
        images, classes = batch["image"], batch["class"]      # (32, 28, 28, 1) float32, (32,)

:func:`pairgen.load_classes` (tf.data) and :mod:`pairgen.torch` (``PKBatchSampler``) run on the
same schedule, so all three give the same batches for the same seed and epoch.

**Epoch** (:func:`pk_schedule`, generator ``SeedSequence([seed, epoch])``). Classes with fewer
than ``K`` images in the split are left out (with a warning naming how many). Each remaining
class's records are shuffled and cut into groups of ``K``; a last short group is topped up with
other images of its class. With ``G`` groups in all and the largest class having ``g_max``
groups, the epoch has ``B = max(ceil(G / P), g_max)`` batches (the same number every epoch).
Every group goes into a different batch of its class, classes largest first, each into the
batches with the most free places (ties broken at random), so every batch gets distinct
classes; the ``B x P - G`` places left over are filled with fresh groups (``K`` random images)
of classes not yet in that batch. So **every image appears at least once per epoch**; the only
repeats are the top-ups of short groups and the fill groups. Batches come in random order,
each as ``P`` runs of ``K`` records of one class.

**Reading** is :class:`pairgen.reading.recordindex.ImagesSplit`'s: an offset index of the shards;
raw images in plain shards are gathered from memory-mapped shards (:mod:`pairgen.reading.mapped`:
one copy per shard per batch, every record's CRC checked on its first read), other encodings read
by ``os.pread`` and parsed; ``record_id`` and class compared with the manifest (GZIP shards cannot
be read by offset: rebuild with ``compression = "none"``).

**Memory.** The index and layout (about 40 bytes per record), one epoch's schedule (8 bytes per
batch place, about 8 bytes per record) and the batches being read: :func:`pk_batches` reads
whole batches worth about ``READ_AHEAD_BYTES`` (4 MiB; 1 MiB from memory maps) of records at
once (at least one batch; the decoded images, float32 when normalized: up to 4x the bytes),
:func:`pairgen.load_classes` one batch per prefetched element. Pages of memory-mapped shards
count in the resident memory up to :data:`pairgen.reading.mapped.RESIDENT_BYTES` (1 GiB), then
are dropped: it does not grow with the split's pixels beyond that. Except that
:func:`pairgen.load_classes` holds a split of raw images whose pixels fit
:data:`pairgen.reading.mapped.HELD_BYTES` (1 GiB) in memory, whole, while its dataset lives
(see :mod:`pairgen.reading.pk_tf`).

**Sharing an epoch** between consumers (ranks, hosts; decided by :func:`pairgen.reading.plan.consumer_batches`):
consumer ``rank`` of ``world_size`` takes
batches ``rank, rank + world_size, ...`` of the epoch; with ``pad=True`` (the default) the
epoch is first extended with its own first batches to a multiple of ``world_size``, so every
consumer takes the same number of steps and together they read every batch at least once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from pairgen.errors import ConfigError
from pairgen.reading.plan import check_rank, consumer_batches
from pairgen.reading.recordindex import Arrays, ImagesSplit

__all__ = ["READ_AHEAD_BYTES", "PKSplit", "batches_per_epoch", "check_pk_args", "consumer_batches", "epoch_rng",
           "pk_batches", "pk_schedule"]

READ_AHEAD_BYTES = 4 << 20  # record bytes read and parsed at once by PKSplit.batches (whole batches)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}; received: {name}={value!r}.")


def check_pk_args(*, classes_per_batch: int, images_per_class: int, seed: int, epoch: int = 0) -> None:
    """Raise a one-line :class:`ConfigError` for an invalid P, K, seed or epoch."""
    _check_int("classes_per_batch", classes_per_batch, 2)
    _check_int("images_per_class", images_per_class, 2)
    _check_int("seed", seed, 0)
    _check_int("epoch", epoch, 0)


def class_groups(counts: np.ndarray, images_per_class: int) -> np.ndarray:
    """Groups of ``K`` per class (``ceil(n / K)``; 0 for a class with fewer than ``K`` images)."""
    counts = np.asarray(counts, np.int64)
    return np.where(counts >= images_per_class, -(-counts // images_per_class), 0)


def check_classes(counts: np.ndarray, p: int, k: int, where: str) -> None:
    """Raise a one-line :class:`ConfigError` unless ``P`` classes have at least ``K`` images."""
    usable = int((np.asarray(counts) >= k).sum())
    if usable < p:
        raise ConfigError(f"classes_per_batch={p} needs {p} classes with at least {k} images; {where} has "
                          f"{usable}. Lower classes_per_batch or images_per_class.")


def batches_per_epoch(counts: np.ndarray, classes_per_batch: int, images_per_class: int) -> int:
    """``B = max(ceil(G / P), g_max)``: the number of batches of every epoch (see the module docstring)."""
    groups = class_groups(counts, images_per_class)
    return int(max(-(-int(groups.sum()) // classes_per_batch), int(groups.max(initial=0))))


def _groups_of(members: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A class's records shuffled and cut into ``(ceil(n / k), k)`` groups, the last topped up."""
    order = rng.permutation(members)
    n = len(order)
    short = n % k
    if not short:
        return order.reshape(-1, k)
    top = rng.choice(order[:n - short], k - short, replace=False)
    return np.concatenate([order, top]).reshape(-1, k)


def _place(groups: np.ndarray, n_batches: int, p: int,
           rng: np.random.Generator) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Batch slots ``(B, P)`` holding class indices (-1 = free), each class at most once per batch.

    Classes go largest first, each into the batches with the most free places (random ties):
    with ``B >= g_max`` and ``B * P >= G`` this always succeeds. Also returns, per class, the
    ``(batch, place)`` rows it was given.
    """
    slots = np.full((n_batches, p), -1, np.int64)
    free = np.full(n_batches, p, np.int64)
    where: dict[int, np.ndarray] = {}
    order = np.lexsort((rng.random(len(groups)), -groups))  # largest first, random among equals
    for c in order.tolist():
        g = int(groups[c])
        if not g:
            continue
        key = free + rng.random(n_batches) * 0.5  # integer free counts; the noise only breaks ties
        chosen = np.argpartition(-key, g - 1)[:g] if g < n_batches else np.arange(n_batches)
        place = p - free[chosen]
        slots[chosen, place] = c
        free[chosen] -= 1
        where[c] = np.stack([chosen, place], axis=1)
    return slots, where


def pk_schedule(classes: np.ndarray, *, classes_per_batch: int, images_per_class: int,
                rng: np.random.Generator) -> np.ndarray:
    """One epoch of P x K batches over records whose class ids are ``classes``.

    Args:
        classes: Class id of every record (record ``i`` of the split has class ``classes[i]``).
        classes_per_batch: ``P``, distinct classes per batch.
        images_per_class: ``K``, records per class in a batch.
        rng: The epoch's generator.

    Returns:
        ``int64 (B, P * K)``: record indices of each batch, ``P`` runs of ``K`` of one class
        (see the module docstring for ``B`` and the epoch's guarantees).

    Raises:
        ConfigError: If fewer than ``P`` classes have at least ``K`` records.
    """
    p, k = classes_per_batch, images_per_class
    ids, inverse, counts = np.unique(np.asarray(classes), return_inverse=True, return_counts=True)
    check_classes(counts, p, k, "the split")
    groups = class_groups(counts, k)
    members = np.split(np.argsort(inverse.ravel(), kind="stable"), np.cumsum(counts)[:-1])
    n_batches = batches_per_epoch(counts, p, k)
    slots, places = _place(groups, n_batches, p, rng)
    out = np.empty((n_batches, p, k), np.int64)
    for c, where in places.items():
        out[where[:, 0], where[:, 1]] = _groups_of(members[c], k, rng)
    eligible = np.flatnonzero(groups)
    for b, j in np.argwhere(slots < 0).tolist():  # fill places: a class not yet in batch b
        c = int(rng.choice(np.setdiff1d(eligible, slots[b])))
        slots[b, j] = c
        out[b, j] = rng.choice(members[c], k, replace=False)
    out = _shuffle_runs(out, rng)
    return out[rng.permutation(n_batches)].reshape(n_batches, p * k)


def _shuffle_runs(out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each batch's class runs in random order (so a batch does not start with the largest class)."""
    perm = np.argsort(rng.random(out.shape[:2]), axis=1)
    return np.take_along_axis(out, perm[:, :, None], axis=1)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of epoch ``epoch``: ``SeedSequence([seed, epoch])``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))


class PKSplit(ImagesSplit):
    """An images split with its P x K schedule: :meth:`schedule` per epoch, :meth:`batches` to read them.

    Args:
        path: Dataset directory (``dir@version`` and ``dir@fingerprint-prefix`` accepted).
        split: Split name.
        classes_per_batch: ``P``.
        images_per_class: ``K``.
        seed: Seed of every epoch's schedule.

    Raises:
        ConfigError: For invalid P, K or seed, or a split with fewer than P classes of K images.
        DatasetError: If the dataset is not an images dataset, or its split or shards cannot be read.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *, classes_per_batch: int,
                 images_per_class: int, seed: int = 0) -> None:
        check_pk_args(classes_per_batch=classes_per_batch, images_per_class=images_per_class, seed=seed)
        super().__init__(path, split)
        self.p, self.k, self.seed = int(classes_per_batch), int(images_per_class), int(seed)
        ids, counts = np.unique(self.classes, return_counts=True)
        self.excluded = ids[counts < self.k]
        if len(self.excluded):
            warnings.warn(f"split {split!r} of '{self.root}': {len(self.excluded)} of {len(ids)} classes have "
                          f"fewer than {self.k} images and are left out of P x K batches (class ids "
                          f"{self.excluded[:5].tolist()}{', ...' if len(self.excluded) > 5 else ''}).", stacklevel=2)
        check_classes(counts, self.p, self.k, f"split {split!r} of '{self.root}'")
        self.n_batches = batches_per_epoch(counts, self.p, self.k)

    @property
    def batch_size(self) -> int:
        """``P * K``."""
        return self.p * self.k

    def schedule(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s batches, ``int64 (B, P * K)`` record ids (see :func:`pk_schedule`)."""
        check_pk_args(classes_per_batch=self.p, images_per_class=self.k, seed=self.seed, epoch=epoch)
        return pk_schedule(self.classes, classes_per_batch=self.p, images_per_class=self.k,
                           rng=epoch_rng(self.seed, epoch))

    def consumer_schedule(self, epoch: int, *, rank: int = 0, world_size: int = 1, pad: bool = True) -> np.ndarray:
        """This consumer's share of epoch ``epoch``: ``int64 (b, P * K)`` record ids (see :mod:`pairgen.reading.plan`)."""
        schedule = self.schedule(epoch)
        return schedule[consumer_batches(len(schedule), rank=rank, world_size=world_size, pad=pad)]

    def chunks(self, epoch: int, *, rank: int = 0, world_size: int = 1, pad: bool = True) -> Iterator[np.ndarray]:
        """This consumer's batches of epoch ``epoch`` in chunks of whole batches worth about
        :data:`READ_AHEAD_BYTES` (at least one batch): each chunk ``int64 (m, P * K)`` record ids.

        Several batches are read and parsed together: a parser's cost per call outweighs its
        cost per record for batches of a few dozen records.
        """
        rows = self.consumer_schedule(epoch, rank=rank, world_size=world_size, pad=pad)
        record_bytes = float(self.index.length.mean()) if len(self.index.length) else 1.0
        ahead = READ_AHEAD_BYTES if self.mapped is None else READ_AHEAD_BYTES // 4  # gathers cost little per call
        step = max(1, int(ahead // (self.batch_size * record_bytes)))
        for start in range(0, len(rows), step):
            yield rows[start:start + step]

    def batches(self, epoch: int = 0, *, rank: int = 0, world_size: int = 1, pad: bool = True,
                normalize: bool = True) -> Iterator[Arrays]:
        """One epoch of P x K batches as NumPy arrays (this consumer's share, see the module docstring)."""
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for rows in self.chunks(epoch, rank=rank, world_size=world_size, pad=pad):
                arrays = self.read(rows.ravel(), normalize=normalize, pool=pool)
                for i in range(len(rows)):
                    part = slice(i * self.batch_size, (i + 1) * self.batch_size)
                    yield {key: value[part] for key, value in arrays.items()}


def pk_batches(path: str | os.PathLike, split: str = "train", *, classes_per_batch: int, images_per_class: int,
               seed: int = 0, epoch: int = 0, normalize: bool = True, rank: int = 0, world_size: int = 1,
               pad: bool = True) -> Iterator[Arrays]:
    """Iterate over one epoch of class-balanced batches of an images split, without TensorFlow.

    Args:
        path: Dataset directory (``dir@version`` and ``dir@fingerprint-prefix`` accepted).
        split: Split name.
        classes_per_batch: ``P``, distinct classes in every batch (>= 2).
        images_per_class: ``K``, images of each class in every batch (>= 2).
        seed: Seed of the schedule; epoch ``e`` uses ``SeedSequence([seed, e])``.
        epoch: Epoch number (call once per epoch with 0, 1, ...).
        normalize: ``float32`` pixels in [0, 1] if true, else ``uint8``.
        rank: This consumer's number, 0 to ``world_size - 1``: it takes its share of the epoch's batches.
        world_size: How many consumers share the epoch.
        pad: Extend the epoch to a multiple of ``world_size`` (else drop the remainder).

    Returns:
        An iterator of dicts: ``image`` ``[P*K, h, w, c]``, ``id``, ``class``, ``record_id``
        (``int64 [P*K]``), ``P`` runs of ``K`` images of one class.

    Raises:
        ConfigError: For invalid arguments, or a split with fewer than P classes of K images.
        DatasetError: If the dataset is not an images dataset or cannot be read.
    """
    check_pk_args(classes_per_batch=classes_per_batch, images_per_class=images_per_class, seed=seed, epoch=epoch)
    check_rank(rank, world_size)
    data = PKSplit(path, split, classes_per_batch=classes_per_batch, images_per_class=images_per_class, seed=seed)
    consumer_batches(data.n_batches, rank=rank, world_size=world_size, pad=pad)  # refuses an empty share now
    return data.batches(epoch, rank=rank, world_size=world_size, pad=pad, normalize=normalize)
