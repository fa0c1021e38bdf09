"""Stream a split as NumPy batches, shard by shard, with bounded memory and without TensorFlow.

For PyTorch, JAX and plain NumPy loops over splits larger than RAM (:mod:`pairgen.torch` wraps
it in a PyTorch ``IterableDataset``). The module is ``pairgen.reading.streaming`` so that the function
``pairgen.stream`` is never shadowed by a submodule of the same name::

    for batch in pairgen.stream("build/mnist-demo", "train", batch_size=256, shuffle=True, seed=0, epoch=e):
        a, b, label = batch["a"], batch["b"], batch["label"]      # (256, 28, 28, 1) float32, (256,)

Batches have the keys and dtypes of :func:`pairgen.load_numpy` for the dataset's kind.

**Reading.** The split is opened by :class:`pairgen.reading.handle.SplitHandle` (the checks of
:func:`pairgen.reading.checks.check_split` run when :func:`stream` is called, before the first
batch). Shards are read one at a time by :func:`pairgen.reading.engine.read_shard` (column-wise,
every length and record CRC checked, record by record for any other layout); each shard's
record count is compared with ``dataset.json`` when it is read.

**Shuffling** (``shuffle=True`` needs an explicit ``seed``: there is no hidden default).
Each epoch draws its generators from ``SeedSequence([seed, epoch])``: the shard order is
permuted, then records pass through a buffer of ``shuffle_buffer`` records: each shard read is
pooled with the buffer, the pool is permuted, and all but ``shuffle_buffer`` records are
emitted (``shuffle_buffer=0`` shuffles within each shard only). The same
``(seed, epoch, shard_index, num_shards)`` always gives the same batches;
another epoch gives another order. With ``shuffle=False`` records come in manifest order.

**Memory.** At most the buffer plus one shard is held, about twice over while the pool is
split: peak ≈ 2 x (``shuffle_buffer`` + largest shard) x record bytes, plus one batch (float32
when normalized) and the shard file's bytes while it is parsed. Without shuffling it is one
shard (file bytes plus arrays) and one batch. It does not grow with the split.

**Sharding across consumers** (processes, hosts, DataLoader workers; decided by
:mod:`pairgen.reading.plan`): consumer ``shard_index`` of ``num_shards`` gets

* every ``num_shards``-th shard file of the epoch's shard order, starting at ``shard_index``,
  when the split has at least ``num_shards`` files (consumers may then get different record
  counts when shards differ in size);
* otherwise the contiguous record range ``[i*N//num_shards, (i+1)*N//num_shards)`` of the
  split's ``N`` records (``i = shard_index``), reading only the files it overlaps.

Either way the consumers together read every record exactly once per epoch, as long as they
all pass the same ``seed`` and ``epoch``. ``drop_remainder`` applies to each consumer's last
batch. ``equalize=True`` cuts every consumer to the smallest consumer's record count (read
from the card), so that all ranks of a distributed job take the same number of steps; the
records cut are then not read that epoch (with ``shuffle``, other ones each epoch).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pairgen.errors import ConfigError, DatasetError
from pairgen.reading import engine
from pairgen.reading.checks import count_message, shard_damage
from pairgen.reading.engine import RecordSpec
from pairgen.reading.handle import SplitHandle
from pairgen.reading.plan import Piece, consumer_pieces, records

DEFAULT_SHUFFLE_BUFFER = 10_000
Arrays = dict[str, np.ndarray]


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value >= high):
        bound = f">= {low}" + (f" and < {high}" if high is not None else "")
        raise ConfigError(f"pairgen.stream: {name} must be an integer {bound}; received: {name}={value!r}.")


def check_stream_args(*, batch_size: int, shuffle: bool, seed: int | None, shard_index: int,
                      num_shards: int, shuffle_buffer: int, epoch: int) -> None:
    """Raise a one-line :class:`ConfigError` for an invalid argument of :func:`stream`."""
    _check_int("batch_size", batch_size, 1)
    _check_int("num_shards", num_shards, 1)
    _check_int("shard_index", shard_index, 0, num_shards)
    _check_int("shuffle_buffer", shuffle_buffer, 0)
    _check_int("epoch", epoch, 0)
    if shuffle and seed is None:
        raise ConfigError("pairgen.stream: shuffle=True needs a seed (the order must be reproducible); "
                          "pass seed=0 or any integer >= 0.")
    if seed is not None:
        _check_int("seed", seed, 0)


def _read_piece(piece: Piece, spec: RecordSpec, root: Path, pool: ThreadPoolExecutor) -> Arrays:
    """A piece's records (feature name to array), the shard's count checked against the card."""
    limit = None if piece.whole else piece.stop
    with shard_damage(root):
        part = engine.read_shard(piece.path, spec, limit=limit, pool=pool)
    count = engine.count(part)
    # A shard cut short by `limit` that still ended early holds fewer records than the card says.
    if count != piece.records and (limit is None or count < limit):
        raise DatasetError(count_message(piece.path, count, piece.records, root))
    if (piece.start, piece.stop) == (0, count):
        return part
    return {k: v[piece.start:piece.stop] for k, v in part.items()}


def _take(arrays: Arrays, index: np.ndarray | slice) -> Arrays:
    return {k: v[index] for k, v in arrays.items()}


def _concat(first: Arrays | None, second: Arrays) -> Arrays:
    if first is None:
        return second
    return {k: np.concatenate([first[k], second[k]]) for k in second}


def shuffle_buffer_iter(parts: Iterable[Arrays], buffer: int, rng: np.random.Generator) -> Iterator[Arrays]:
    """Shuffle a stream of record blocks through a buffer of at most ``buffer`` records.

    Each block is pooled with the buffer, the pool is permuted with ``rng``, and all but
    ``buffer`` of its records are emitted; the rest stay buffered until the next block.
    """
    held: Arrays | None = None
    for part in parts:
        pool = _concat(held, part)
        del part, held  # the pool replaces both: at most pool + its two halves are alive
        perm = rng.permutation(engine.count(pool))
        emit = max(0, len(perm) - buffer)
        held = _take(pool, perm[emit:])
        out = _take(pool, perm[:emit]) if emit else None
        del pool
        if out is not None:
            yield out
            del out
    if held is not None and engine.count(held):
        yield held


def batch_iter(parts: Iterable[Arrays], batch_size: int, drop_remainder: bool) -> Iterator[Arrays]:
    """Re-cut a stream of record blocks into batches of ``batch_size`` (copies, not views).

    Only the last incomplete batch of a block is carried over (copied), never the block.
    """
    rest: Arrays | None = None
    for part in parts:
        n, start = engine.count(part), 0
        if rest is not None:
            start = min(n, batch_size - engine.count(rest))
            rest = _concat(rest, _take(part, slice(0, start)))
            if engine.count(rest) < batch_size:
                continue
            yield rest
        while n - start >= batch_size:
            yield {k: v[start:start + batch_size].copy() for k, v in part.items()}
            start += batch_size
        rest = {k: v[start:].copy() for k, v in part.items()} if start < n else None
        del part  # not held while the next block is read
    if rest is not None and engine.count(rest) and not drop_remainder:
        yield rest


def _epoch_rngs(seed: int, epoch: int, shard_index: int, num_shards: int) -> tuple[np.random.Generator, ...]:
    """The shard-order generator (shared by all consumers) and this consumer's buffer generator."""
    order = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
    buffer = np.random.default_rng(np.random.SeedSequence([seed, epoch, num_shards, shard_index]))
    return order, buffer


def stream(path: str | os.PathLike, split: str = "train", *, batch_size: int, shuffle: bool = False,
           seed: int | None = None, shard_index: int = 0, num_shards: int = 1, normalize: bool = True,
           drop_remainder: bool = False, epoch: int = 0, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
           equalize: bool = False) -> Iterator[Arrays]:
    """Iterate over one epoch of a split as NumPy batches, shard by shard, without TensorFlow.

    The dataset and the arguments are checked when this is called; the shards are read as
    the batches are consumed. Call it once per epoch with ``epoch=0, 1, ...``.

    Args:
        path: Dataset directory (``dir@version`` and ``dir@fingerprint-prefix`` accepted).
        split: Split name.
        batch_size: Records per batch (the last batch may be smaller, see ``drop_remainder``).
        shuffle: Shuffle the shard order and the records (through ``shuffle_buffer``).
        seed: Seed of the shuffle; required when ``shuffle`` is true.
        shard_index: This consumer's index, ``0 <= shard_index < num_shards``.
        num_shards: Number of consumers sharing the split (processes x hosts x workers).
        normalize: ``float32`` pixels in [0, 1] if true, else ``uint8``.
        drop_remainder: Drop this consumer's last batch if it is smaller than ``batch_size``.
        epoch: Epoch number; with ``shuffle``, each epoch has its own order.
        shuffle_buffer: Records held back for shuffling (memory, see the module docstring).
        equalize: Give every consumer the smallest consumer's record count this epoch (the
            others skip the rest of theirs), so that all ranks of a distributed job run the
            same number of steps; off, every record is read once per epoch.

    Returns:
        An iterator of dicts with :func:`pairgen.load_numpy`'s keys: images ``[n, h, w, c]``,
        ints ``int64 [n]``.

    Raises:
        ConfigError: If an argument is invalid (including ``shuffle=True`` without a seed).
        DatasetError: If the dataset or split is missing, or a shard is damaged, holds
            another number of records than the card says, or does not match the card's
            image spec (see :mod:`pairgen.reading.checks`); damage found while streaming is raised
            by the iterator.
    """
    check_stream_args(batch_size=batch_size, shuffle=shuffle, seed=seed, shard_index=shard_index,
                      num_shards=num_shards, shuffle_buffer=shuffle_buffer, epoch=epoch)
    handle = SplitHandle(path, split)
    pieces = epoch_pieces(handle, shard_index=shard_index, num_shards=num_shards, epoch=epoch, shuffle=shuffle,
                          seed=seed, equalize=equalize)
    if drop_remainder and 0 < sum(handle.counts) and records(pieces) < batch_size:
        raise ConfigError(
            f"consumer shard_index={shard_index} of num_shards={num_shards} reads {records(pieces):,} record(s) of "
            f"split {split!r} this epoch, fewer than batch_size={batch_size}, and drop_remainder drops them: its "
            "epoch would be empty. Use fewer consumers, a smaller batch_size, or drop_remainder=False.")
    buffer_rng = _epoch_rngs(seed or 0, epoch, shard_index, num_shards)[1]
    return _iterate(pieces, handle.spec, handle.root, batch_size=batch_size, normalize=normalize,
                    drop_remainder=drop_remainder, buffer=shuffle_buffer, rng=buffer_rng if shuffle else None)


def epoch_pieces(handle: SplitHandle, *, shard_index: int, num_shards: int, epoch: int, shuffle: bool,
                 seed: int | None, equalize: bool) -> list[Piece]:
    """The pieces consumer ``shard_index`` of ``num_shards`` reads in ``epoch`` (see :mod:`pairgen.reading.plan`).

    Raises:
        DatasetError: If the card lacks a shard's record count.
    """
    counts = handle.counts
    order_rng = _epoch_rngs(seed or 0, epoch, shard_index, num_shards)[0]
    order = order_rng.permutation(len(handle.files)) if shuffle else None
    return consumer_pieces(counts, handle.files, consumer=shard_index, consumers=num_shards, order=order,
                           equalize=equalize)


def _iterate(pieces: list[Piece], spec: RecordSpec, root: Path, *, batch_size: int, normalize: bool,
             drop_remainder: bool, buffer: int, rng: np.random.Generator | None) -> Iterator[Arrays]:
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        parts: Iterable[Arrays] = (_read_piece(piece, spec, root, pool) for piece in pieces)
        if rng is not None:
            parts = shuffle_buffer_iter(parts, buffer, rng)
        for batch in batch_iter(parts, batch_size, drop_remainder):
            yield engine.named_arrays(batch, spec.image_keys, spec.int_keys, normalize)


def num_records(path: str | os.PathLike, split: str = "train", *, shard_index: int = 0, num_shards: int = 1,
                epoch: int = 0, shuffle: bool = False, seed: int | None = None, equalize: bool = False,
                check: bool = False) -> int:
    """How many records :func:`stream` gives consumer ``shard_index`` of ``num_shards`` in an epoch.

    Read from the card (no shard is opened unless ``check``); with ``shuffle`` and at least
    ``num_shards`` files it depends on the epoch's shard order, so pass the same ``seed`` and
    ``epoch``.

    Args:
        check: Also run the checks :func:`stream` runs when it opens the split
            (:func:`pairgen.reading.checks.check_split`: one record read per shard).

    Raises:
        ConfigError, DatasetError: As :func:`stream`.
    """
    check_stream_args(batch_size=1, shuffle=shuffle, seed=seed, shard_index=shard_index,
                      num_shards=num_shards, shuffle_buffer=0, epoch=epoch)
    handle = SplitHandle(path, split, check=check)
    return records(epoch_pieces(handle, shard_index=shard_index, num_shards=num_shards, epoch=epoch,
                                shuffle=shuffle, seed=seed, equalize=equalize))
