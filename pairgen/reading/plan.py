"""The read plan: which pieces of which shards each consumer reads (the one place that decides).

A :class:`Piece` is ``take`` records of one shard file after skipping ``skip`` (as TFDS's
``FileInstruction``). Consumers (processes, hosts, DataLoader workers, ranks) share an epoch in
one of two ways, both decided here:

* **records** (:func:`consumer_pieces`, for :func:`pairgen.stream` and
  ``pairgen.torch.StreamDataset``): consumer ``i`` of ``n`` gets every ``n``-th shard file of the
  epoch's shard order, starting at ``i``, when the split has at least ``n`` files; otherwise the
  contiguous record range ``[i*N//n, (i+1)*N//n)`` of the split's ``N`` records. ``equalize``
  cuts every consumer to the smallest consumer's record count;
* **batches** (:func:`consumer_batches`, for the P x K readers): consumer ``rank`` of
  ``world_size`` takes batches ``rank, rank + world_size, ...`` of the epoch, padded with the
  epoch's first batches to a multiple of ``world_size`` (or cut to one).

:func:`worker_consumer` numbers the DataLoader workers of all ranks as consumers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pairgen.errors import ConfigError


@dataclass(frozen=True)
class Piece:
    """``take`` records of shard file ``path`` after its first ``skip``; the card says it holds ``records``."""

    path: str
    records: int
    skip: int
    take: int

    @property
    def start(self) -> int:
        """First record read (``skip``)."""
        return self.skip

    @property
    def stop(self) -> int:
        """One past the last record read (``skip + take``)."""
        return self.skip + self.take

    @property
    def whole(self) -> bool:
        """Whether the piece reads the shard to its end."""
        return self.stop >= self.records


def split_pieces(counts: Sequence[int], files: Sequence[str], *, consumer: int, consumers: int,
                 order: np.ndarray | None = None) -> list[Piece]:
    """The pieces of a split that consumer ``consumer`` of ``consumers`` reads in one epoch.

    Args:
        counts: Records of each shard file, as the card lists them.
        files: The shard paths, in the card's order.
        consumer: This consumer, ``0 <= consumer < consumers``.
        consumers: Number of consumers.
        order: The epoch's shard order (a permutation of ``range(len(files))``); ``None`` is
            the card's order.

    Returns:
        The consumer's pieces, in reading order (see the module docstring).
    """
    order = np.arange(len(files)) if order is None else order
    if len(files) >= consumers:
        return [Piece(files[j], counts[j], 0, counts[j]) for j in order[consumer::consumers].tolist()]
    total = sum(counts)
    lo, hi = consumer * total // consumers, (consumer + 1) * total // consumers
    edges = np.r_[0, np.cumsum(counts)].tolist()
    pieces = {}
    for j in range(len(files)):
        first, last = max(lo, edges[j]), min(hi, edges[j + 1])
        if first < last:
            pieces[j] = Piece(files[j], counts[j], first - edges[j], last - first)
    return [pieces[j] for j in order.tolist() if j in pieces]


def truncate(pieces: Sequence[Piece], records: int) -> list[Piece]:
    """The first ``records`` records of ``pieces``, in order."""
    out: list[Piece] = []
    for piece in pieces:
        if records <= 0:
            break
        take = min(records, piece.take)  # an empty shard is kept (its count is still checked)
        out.append(Piece(piece.path, piece.records, piece.skip, take))
        records -= take
    return out


def consumer_pieces(counts: Sequence[int], files: Sequence[str], *, consumer: int, consumers: int,
                    order: np.ndarray | None = None, equalize: bool = False) -> list[Piece]:
    """:func:`split_pieces`, cut to the smallest consumer's record count when ``equalize`` is set."""
    pieces = split_pieces(counts, files, consumer=consumer, consumers=consumers, order=order)
    if not equalize:
        return pieces
    least = min(records(split_pieces(counts, files, consumer=i, consumers=consumers, order=order))
                for i in range(consumers))
    return truncate(pieces, least)


def records(pieces: Sequence[Piece]) -> int:
    """Records read by ``pieces``."""
    return sum(p.take for p in pieces)


def consumer_batches(n_batches: int, *, rank: int, world_size: int, pad: bool) -> np.ndarray:
    """The batch indices consumer ``rank`` of ``world_size`` takes from an epoch of ``n_batches``.

    With ``pad`` the epoch is extended with its first batches to a multiple of ``world_size``;
    without it, the last ``n_batches % world_size`` batches are dropped (equal counts either way).

    Raises:
        ConfigError: If ``rank`` is not in ``[0, world_size)``, or if dropping the uneven end
            would leave every consumer without a batch (fewer batches than consumers).
    """
    check_rank(rank, world_size)
    if not pad and 0 < n_batches < world_size:
        raise ConfigError(
            f"an epoch of {n_batches} P x K batch(es) shared by world_size={world_size} consumers without "
            "padding gives every consumer 0 batches; pad the epoch (pad=True, drop_last=False), use at most "
            f"{n_batches} consumer(s), or lower P or K.")
    total = -(-n_batches // world_size) * world_size if pad else n_batches // world_size * world_size
    return (np.arange(total) % max(n_batches, 1))[rank::world_size]


def check_rank(rank: int, world_size: int) -> None:
    """Raise a one-line :class:`ConfigError` unless ``0 <= rank < world_size``."""
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size={world_size}); received: rank={rank!r}.")


def worker_consumer(rank: int, world_size: int, worker: int, num_workers: int) -> tuple[int, int]:
    """``(consumer, consumers)`` of DataLoader worker ``worker`` of ``num_workers`` on rank ``rank`` of ``world_size``."""
    return rank * num_workers + worker, world_size * num_workers
