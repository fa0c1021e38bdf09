"""Pair strategies: per-image, balanced, per-class, exhaustive and left-right.

Each returns positions into one split's :class:`~pairgen.sampling.base.ClassIndex`; labels
are 1 for a positive (same class) and 0 for a negative (different classes).
"""

from __future__ import annotations

import numpy as np

from pairgen.errors import SampleError
from pairgen.sampling.base import ClassIndex, PairSampler, Positions, SampleParams, per_anchor, uniform_int


def _interleave(blocks: list[np.ndarray]) -> np.ndarray:
    """Row-major merge of equally long column blocks: anchor by anchor, block by block."""
    return np.stack(blocks, axis=1).ravel()


def balanced_draw(index: ClassIndex, is_pos: np.ndarray, rng: np.random.Generator) -> Positions:
    """One pair per row of ``is_pos``, in a single pass over all rows.

    Positive rows: a class with 2+ images drawn uniformly, then two distinct members.
    Negative rows: two distinct classes drawn uniformly, then one member of each.
    """
    n_pos = int(np.count_nonzero(is_pos))
    if n_pos < is_pos.size:
        index.require_negatives("negative pairs")
    eligible = np.flatnonzero(index.counts >= 2)
    if n_pos and eligible.size == 0:
        raise SampleError(f"no class in {index.where} has 2 or more images, so no positive pair exists. "
                          "Raise --min-per-class, use --split-by class, or set positive_fraction=0.")
    if eligible.size == index.num_classes:
        ca = uniform_int(rng, index.num_classes, is_pos.size)
    else:
        k = uniform_int(rng, np.where(is_pos, eligible.size, index.num_classes))
        ca = np.where(is_pos, np.take(eligible, k, mode="clip"), k)
    a = index.member(ca, rng)
    cb = ca if n_pos == is_pos.size else np.where(is_pos, ca, index.other_class(ca, rng))
    # A positive draws among the other count-1 members and steps past the anchor.
    b = np.take(index.offsets, cb) + uniform_int(rng, np.take(index.counts, cb) - is_pos)
    b += is_pos & (b >= a)
    return a, b


def _columns(blocks: list[np.ndarray], rows: int) -> np.ndarray:
    """Equally long blocks as the columns of one ``[rows, len(blocks)]`` array."""
    return np.stack(blocks, axis=1) if blocks else np.zeros((rows, 0), np.int64)


class PerImagePairs(PairSampler):
    """Every image is an anchor with ``positives_per_image`` positives and
    ``negatives_per_image`` negatives (a uniformly random image of another class)."""

    name = "per-image"

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        n_pos, n_neg = params.positives_per_image, params.negatives_per_image
        if n_neg:
            index.require_negatives("negative pairs")
        anchors = index.rows
        has_pos = index.positive_anchors(anchors, params, "positive pairs") if n_pos else None
        if has_pos is not None:  # single-image classes: negatives only
            with_pos = anchors[has_pos]
            pos = _columns([index.other_member(with_pos, rng) for _ in range(n_pos)], with_pos.size)
            neg = _columns([index.other_class_image(anchors, rng) for _ in range(n_neg)], anchors.size)
            return per_anchor(has_pos, (np.repeat(with_pos[:, None], n_pos, axis=1),
                                        np.repeat(anchors[:, None], n_neg, axis=1)), (pos, neg))
        blocks = [index.other_member(anchors, rng) for _ in range(n_pos)]
        blocks += [index.other_class_image(anchors, rng) for _ in range(n_neg)]
        if not blocks:
            return np.arange(0), np.arange(0), np.arange(0)
        a = np.repeat(anchors, len(blocks))
        label = np.tile(np.repeat(np.array([1, 0]), [n_pos, n_neg]), anchors.size)
        return a, _interleave(blocks), label


class BalancedPairs(PairSampler):
    """``num_records`` pairs (split over the splits by size), ``positive_fraction`` of them
    positive, in a random order."""

    name = "balanced"

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        total = params.num_records
        is_pos = exact_mask(total, int(round(total * params.positive_fraction)), rng)
        a, b = balanced_draw(index, is_pos, rng)
        return a, b, is_pos.astype(np.int64)


def exact_mask(total: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random boolean mask with exactly ``k`` of ``total`` set.

    Bernoulli draws, then a uniform random subset of the surplus flipped back: exactly
    uniform over all masks with ``k`` set, and far cheaper than permuting ``total`` rows.
    """
    mask = rng.random(total) < (k / total if total else 0.0)
    have = int(np.count_nonzero(mask))
    if have != k:
        side = np.flatnonzero(mask if have > k else ~mask)
        mask[rng.choice(side, abs(have - k), replace=False)] = have < k
    return mask


class PerClassPairs(PairSampler):
    """For every class, ``per_class`` positives then ``per_class`` negatives anchored in it."""

    name = "per-class"

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        k = params.per_class
        index.require_negatives("negative pairs")
        has_pos = index.positive_anchors(index.offsets, params, "positive pairs")
        if has_pos is not None:  # single-image classes: negatives only
            pa = index.member(np.repeat(np.flatnonzero(has_pos), k), rng)
            pb = index.other_member(pa, rng)
            na = index.member(np.repeat(np.arange(index.num_classes), k), rng)
            nb = index.other_class_image(na, rng)
            return per_anchor(has_pos, (pa.reshape(-1, k), na.reshape(-1, k)), (pb.reshape(-1, k), nb.reshape(-1, k)))
        c = np.repeat(np.arange(index.num_classes), k)
        pa = index.member(c, rng)
        pb = index.other_member(pa, rng)
        na = index.member(c, rng)
        nb = index.other_class_image(na, rng)
        shape = (index.num_classes, k)
        a = np.hstack([pa.reshape(shape), na.reshape(shape)]).ravel()
        b = np.hstack([pb.reshape(shape), nb.reshape(shape)]).ravel()
        label = np.tile(np.repeat(np.array([1, 0]), [k, k]), index.num_classes)
        return a, b, label


class ExhaustivePairs(PairSampler):
    """Every within-class pair ``i < j`` (a seeded uniform subset of ``max_pairs_per_class``
    where a class has more), then as many balanced negatives."""

    name = "exhaustive"

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        c, t = within_class_pair_numbers(index.counts, params.max_pairs_per_class, rng)
        j = _triangle_row(t)
        i = t - j * (j - 1) // 2
        pa, pb = index.offsets[c] + i, index.offsets[c] + j
        na, nb = balanced_draw(index, np.zeros(pa.size, dtype=bool), rng)
        label = np.repeat(np.array([1, 0]), [pa.size, na.size])
        return np.concatenate([pa, na]), np.concatenate([pb, nb]), label


class LeftRightPairs(PairSampler):
    """Each identity's left and right image are a positive; each left also gets
    ``negatives_per_image`` negatives with the right image of another identity."""

    name = "left-right"
    left_right = True

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        lefts = left_right_lefts(index)
        k = params.negatives_per_image
        if k:
            index.require_negatives("negative pairs")
        ident = np.arange(lefts.size)
        blocks = [lefts + 1]
        for _ in range(k):
            other = uniform_int(rng, np.full(lefts.size, lefts.size - 1))
            blocks.append(lefts[other + (other >= ident)] + 1)
        label = np.tile(np.repeat(np.array([1, 0]), [1, k]), lefts.size)
        return np.repeat(lefts, k + 1), _interleave(blocks), label


def left_right_lefts(index: ClassIndex) -> np.ndarray:
    """Sorted position of each identity's left image (its right image follows it).

    Raises:
        SampleError: if an identity in the split lacks a side or has more than one per side.
    """
    bad = index.counts != 2
    if not bad.any():
        is_right = index.is_right
        if is_right is None:
            raise TypeError("left_right_lefts needs a ClassIndex built with left_right=True (is_right is None).")
        bad = is_right[index.offsets] | ~is_right[index.offsets + 1]
    if bad.any():
        c = int(np.flatnonzero(bad)[0])
        raise SampleError(
            f"identity '{index.name(c)}' in {index.where} has {int(index.counts[c])} image(s), not one left "
            "and one right; left-right needs root/left/X and root/right/X for every X. "
            "Add the missing side or remove the extra file.")
    return index.offsets


def within_class_pair_numbers(counts: np.ndarray, cap: int, rng: np.random.Generator) -> Positions:
    """Dense class and pair number ``t`` (0..k(k-1)/2-1) of every pair kept, sorted by both.

    Classes with at most ``cap`` pairs keep them all; larger classes keep a uniform random
    subset of ``cap`` (sampling without replacement, vectorized over classes).
    """
    m = counts * (counts - 1) // 2
    full = np.flatnonzero(m <= cap)
    c_full, t_full = _ranges(full, m[full])
    small = np.flatnonzero((m > cap) & (m <= 2 * cap))
    c_small, t_small = _ranges(small, m[small])
    # Random keys, keep the cap smallest per class: a uniform subset of a small class.
    keep = _rank_within(c_small, rng.random(c_small.size)) < cap
    c_big, t_big = _draw_distinct(np.flatnonzero(m > 2 * cap), m, cap, rng)
    c = np.concatenate([c_full, c_small[keep], c_big])
    t = np.concatenate([t_full, t_small[keep], t_big])
    order = np.lexsort((t, c))
    return c[order], t[order]


def _draw_distinct(classes: np.ndarray, m: np.ndarray, cap: int, rng: np.random.Generator) -> Positions:
    """The first ``cap`` distinct draws from ``0..m[c]-1`` per class (m[c] > 2 cap)."""
    c_all, t_all = np.arange(0), np.arange(0)
    need = np.full(classes.size, cap)
    while need.any():
        c_new = np.repeat(classes, 2 * need)
        c_all = np.concatenate([c_all, c_new])
        t_all = np.concatenate([t_all, uniform_int(rng, m[c_new])])
        order = np.lexsort((t_all, c_all))
        cs, ts = c_all[order], t_all[order]
        first = np.ones(order.size, dtype=bool)
        first[1:] = (cs[1:] != cs[:-1]) | (ts[1:] != ts[:-1])
        kept = np.sort(order[first])  # first occurrences, in draw order
        kept = kept[_rank_within(c_all[kept], np.arange(kept.size)) < cap]
        c_all, t_all = c_all[kept], t_all[kept]
        have = np.bincount(np.searchsorted(classes, c_all), minlength=classes.size)
        need = cap - have
    return c_all, t_all


def _ranges(classes: np.ndarray, lengths: np.ndarray) -> Positions:
    """``(class, 0..length-1)`` for every class, concatenated."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.repeat(classes, lengths), np.arange(total) - np.repeat(starts, lengths)


def _rank_within(groups: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Rank of each element by ``keys`` inside its group."""
    order = np.lexsort((keys, groups))
    g = groups[order]
    start = np.ones(g.size, dtype=bool)
    start[1:] = g[1:] != g[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(g.size), 0))
    rank = np.empty(g.size, dtype=np.int64)
    rank[order] = np.arange(g.size) - first
    return rank


def _triangle_row(t: np.ndarray) -> np.ndarray:
    """``j`` with ``j(j-1)/2 <= t < (j+1)j/2``: pair number ``t`` is ``(t - j(j-1)/2, j)``."""
    j = ((1 + np.sqrt(1 + 8 * t.astype(np.float64))) // 2).astype(np.int64)
    j -= j * (j - 1) // 2 > t  # fix float rounding either way
    j += (j + 1) * j // 2 <= t
    return j
