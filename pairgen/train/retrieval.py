"""Retrieval metrics of embeddings, exact and in NumPy: precision@1, R-precision, MAP@R, Recall@K.

Every query's gallery items are ranked by Euclidean distance (computed in float64 from the
embeddings as given; ``distance="cosine"`` ranks by cosine similarity, i.e. the Euclidean
distance of the L2-normalized embeddings), **ties broken by gallery index** (the lower index
ranks first). When the query set is the gallery (no separate gallery given) each query is
left out of its own neighbours by its index, so an exact duplicate of a query still counts.

For a query of class ``c``, ``R`` is the number of gallery items of class ``c`` (minus the
query itself when the query set is the gallery). A query with ``R = 0`` (the only member of
its class, or a class absent from the gallery) has no correct answer and is left out of
every average, as pytorch-metric-learning's ``AccuracyCalculator`` leaves out its "lone"
queries; a result with no query left is NaN. Averages are over queries (not classes).

- **precision@1**: the share of queries whose nearest neighbour is of their class.
- **R-precision**: for each query, the share of its ``R`` nearest neighbours of its class.
- **MAP@R** (Musgrave et al. 2020, "A Metric Learning Reality Check"): for each query,
  ``(1/R) * sum over i <= R of P(i) * rel(i)``, where ``rel(i)`` is 1 when the i-th
  neighbour is of the query's class and ``P(i)`` is the precision of the first ``i``
  neighbours: like average precision, but only the first ``R`` neighbours count.
- **Recall@K** (as in the metric-learning papers and TF Similarity's ``recall@k``): the share
  of queries with at least one neighbour of their class among their ``K`` nearest (all of the
  gallery when it holds fewer than ``K``).

These equal ``AccuracyCalculator(knn_func=CustomKNN(LpDistance(normalize_embeddings=False)))``'s
``precision_at_1``, ``r_precision`` and ``mean_average_precision_at_r`` wherever the order of
tied distances does not matter; where it does, pytorch-metric-learning takes whatever order
``torch.topk`` returns, and pairgen the index order.

The search is exact and never holds a query x gallery matrix: queries go in chunks of rows;
squared distances are computed in float32 by matrix products, a per-row threshold proven to
keep every one of the row's ``k`` nearest (float32 rounding bounded and allowed for) picks
the candidates, and those are ranked as their float64 distances rank them: sorted by float32
value, where two values of a row differ by more than the float32 rounding allows the order
is already the exact one (and the float64 one, whose rounding is 2^-29 times smaller); only
the runs of values too close to tell (ties among them) take float64 distances, and are
ranked by those, then by gallery index.

With 16 or more gallery items per class on average, the queries of one reference class
(that of their nearest centroid) first skip the classes that cannot hold a neighbour: a
class is at least its centroid's distance less its radius away (triangle inequality), and
at least the gap between the query and the class's items along the line between the two
centroids (the items' least and largest projections on that line are computed once per
chunk): the same result, and on well separated classes, even in 128 dimensions where every
class's radius exceeds the distance between centroids, most of the distance products are
never computed. The rows of a chunk that still need most of the gallery search all of it
together, in blocks of columns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pairgen.errors import ConfigError

DEFAULT_KS = (1, 2, 4, 8)
DISTANCES = ("euclidean", "cosine")
_CHUNK_CELLS = 1 << 25  # query rows x gallery items per chunk: 128 MiB of float32 distances
_SAMPLE = 4096  # gallery columns sampled to guess each row's threshold
_BLOCK = 4096  # gallery columns compared at a time once the thresholds are known
_FIRST = 4  # items of the nearest groups (per neighbour wanted) that set a first bound on the distances
_SMALL = 1 << 17  # products of at most this many distances are computed without BLAS
_GROUP_MIN = 16  # items per class on average for the search to skip classes by their centroids


@dataclass(frozen=True)
class _Space:
    """Queries and gallery as float64 (centered on the gallery mean: distances unchanged, rounding smaller)."""

    query: np.ndarray
    gallery: np.ndarray
    same: bool  # the query set is the gallery: leave each query out of its own neighbours


def _matrix(x: object, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ConfigError(f"{name} must be a 2-D array of shape (n, dim) with n, dim >= 1; received shape {a.shape}.")
    if not np.isfinite(a).all():
        raise ConfigError(f"{name} holds NaN or infinite values; fix the model or its inputs.")
    return a


def _labels(x: object, n: int, name: str) -> np.ndarray:
    a = np.asarray(x).reshape(-1)
    if a.shape[0] != n:
        raise ConfigError(f"{name} must have one class per embedding ({n}); received {a.shape[0]}.")
    return a


def _space(embeddings: object, gallery: object | None, distance: str) -> _Space:
    if distance not in DISTANCES:
        raise ConfigError(f"distance must be one of {', '.join(DISTANCES)}; received: distance={distance!r}.")
    q = _matrix(embeddings, "embeddings")
    g = q if gallery is None else _matrix(gallery, "gallery")
    if g.shape[1] != q.shape[1]:
        raise ConfigError(f"gallery embeddings have dimension {g.shape[1]}, the queries {q.shape[1]}; they must match.")
    if distance == "cosine":
        q = _unit(q, "embeddings")
        g = q if gallery is None else _unit(g, "gallery")
    mean = g.mean(axis=0)
    qc = q - mean
    return _Space(qc, qc if gallery is None else g - mean, gallery is None)


def _unit(x: np.ndarray, name: str) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if (norm == 0).any():
        raise ConfigError(f"{name} holds an all-zero embedding, which has no direction for distance='cosine'.")
    return x / norm


@dataclass(frozen=True)
class _Prepared:
    """float32 operands of the distance products, and each query's float32 rounding bound.

    ``qa = [-2 q, 1]`` and ``ga = [g, |g|^2]``, so one product gives ``|g|^2 - 2 q.g``: the
    squared distance less ``|q|^2``, the same for a whole row (it cannot change a row's order).
    """

    qa: np.ndarray
    ga: np.ndarray
    q2: np.ndarray  # float64 |q|^2 of the float32 queries
    tol: np.ndarray  # per query: twice the largest |float32 - exact| of its squared distances

    @classmethod
    def of(cls, space: _Space) -> _Prepared:
        q32, g32 = space.query.astype(np.float32), space.gallery.astype(np.float32)
        gmax = float(np.sqrt(np.einsum("ij,ij->i", space.gallery, space.gallery).max()))
        qn = np.sqrt(np.einsum("ij,ij->i", space.query, space.query))
        # |float32 - exact| of a squared distance is below (dim + 4) * 2^-23 * (|q| + max|g|)^2
        # (the rounding of the inputs, the products and the sums); twice that covers both sides.
        tol = 2 * (q32.shape[1] + 5) * 2.0 ** -23 * (qn + gmax) ** 2
        q64 = q32.astype(np.float64)
        qa = np.hstack([q32 * np.float32(-2.0), np.ones((q32.shape[0], 1), np.float32)])
        ga = np.hstack([g32, np.einsum("ij,ij->i", g32, g32)[:, None]])
        return cls(qa, ga, np.einsum("ij,ij->i", q64, q64), tol)


def nearest(space: _Space, k: Iterable[int] | np.ndarray, *, groups: np.ndarray | None = None,
            query_groups: np.ndarray | None = None, chunk_cells: int = _CHUNK_CELLS,
            sample: int = _SAMPLE) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Exact nearest gallery items of each query, chunk by chunk.

    With ``groups`` (a group code ``0..G-1`` per gallery item, e.g. its class) each chunk of
    queries skips every group that cannot hold one of its neighbours: a group whose centroid
    is ``D`` away and whose items lie within ``rad`` of it is at least ``D - rad`` away
    (triangle inequality), and at least as far as the gap between the query and its items
    along the line from the query's nearest centroid to the group's (see :func:`_pruned`);
    a row's ``k``-th distance is bounded by its ``k`` nearest in the groups nearest its
    centroid. The result is the same; well separated classes make it far faster.

    Args:
        space: Queries and gallery (see :func:`_space`).
        k: How many neighbours each query needs (0 to skip it); at most the gallery's size
            (less one when the query set is the gallery).
        groups: Group code of each gallery item, or ``None`` to compare every pair.
        query_groups: A code per query that orders the chunks (queries of one class
            together: fewer groups per chunk); ``None`` = the given order.
        chunk_cells: Query rows x gallery items held at once.
        sample: Gallery columns looked at to guess each row's threshold (a poor guess only
            costs time: the row then takes its exact k-th distance).

    Yields:
        ``(rows, neighbours)``: ``neighbours[i, j]`` is the gallery index of query
        ``rows[i]``'s ``j``-th nearest item (0-based), -1 past that query's ``k``.
    """
    kq = np.asarray(list(k) if not isinstance(k, np.ndarray) else k, dtype=np.int64)
    n_q, n = space.query.shape[0], space.gallery.shape[0]
    prep = _Prepared.of(space)
    # with groups the distances are compared block by block: only rows x _BLOCK at once, so more rows fit
    # (and rows x groups float64 bounds: a few of them at once)
    centres = None if groups is None else _Groups.of(space.gallery, groups)
    cells = n if centres is None else max(min(n, 4 * _BLOCK), 8 * centres.counts.shape[0])
    rows_per = max(1, min(n_q, chunk_cells // cells))
    order = np.arange(n_q) if query_groups is None else np.argsort(query_groups, kind="stable")
    for start in range(0, n_q, rows_per):
        rows = order[start:start + rows_per]
        if centres is None:
            yield rows, _rank(space, prep, rows, None, kq[rows], sample=sample)
        else:
            yield rows, _pruned(space, prep, centres, rows, kq[rows])


@dataclass(frozen=True)
class _Groups:
    """Gallery items by group: each group's items (sorted), centroid and radius, and the gallery
    ordered by group (for the spans of the groups along the lines between centroids)."""

    items: list[np.ndarray]
    counts: np.ndarray
    centroids: np.ndarray
    c2: np.ndarray
    radius: np.ndarray
    by_group: np.ndarray  # the gallery, group by group
    starts: np.ndarray  # where each non-empty group starts in by_group
    filled: np.ndarray  # the codes of the non-empty groups
    own: np.ndarray  # <g, centroid of g's group> of each row of by_group
    scale: float  # largest |g| times largest |centroid| (bounds the float64 rounding of the spans)

    @classmethod
    def of(cls, gallery: np.ndarray, groups: np.ndarray) -> _Groups:
        order = np.argsort(groups, kind="stable")
        counts = np.bincount(groups)
        bounds = np.r_[0, np.cumsum(counts)]
        items = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        sums = np.zeros((counts.shape[0], gallery.shape[1]))
        np.add.at(sums, groups, gallery)
        centroids = sums / np.maximum(counts, 1)[:, None]
        spread = np.sqrt(((gallery - centroids[groups]) ** 2).sum(axis=1))
        radius = np.zeros(counts.shape[0])
        np.maximum.at(radius, groups, spread)
        by_group = gallery[order]
        own = np.einsum("ij,ij->i", by_group, centroids[groups[order]])
        filled = np.flatnonzero(counts)
        c2 = np.einsum("ij,ij->i", centroids, centroids)
        scale = float(np.sqrt(np.einsum("ij,ij->i", gallery, gallery).max() * c2.max()))
        return cls(items, counts, centroids, c2, radius, by_group, bounds[filled], filled, own, scale)

    def columns(self, chosen: np.ndarray) -> np.ndarray:
        return np.sort(np.concatenate([self.items[i] for i in chosen])) if chosen.size else np.zeros(0, np.int64)

    def spans(self, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For reference groups ``a`` (rows) and every group ``B`` (columns): the least and the
        largest ``<g, c_B - c_a>`` over B's items ``g``, and ``|c_B - c_a|``."""
        n_g, dim = self.centroids.shape
        lo = np.full((refs.shape[0], n_g), np.inf)
        hi = np.full((refs.shape[0], n_g), -np.inf)
        sep = np.empty((refs.shape[0], n_g))
        step = max(1, min(64, (1 << 22) // max(self.by_group.shape[0], n_g)))
        for i in range(0, refs.shape[0], step):
            part = refs[i:i + step]
            along = self.centroids[part] @ self.by_group.T
            np.subtract(self.own, along, out=along)
            lo[i:i + step, self.filled] = np.minimum.reduceat(along, self.starts, axis=1)
            hi[i:i + step, self.filled] = np.maximum.reduceat(along, self.starts, axis=1)
            # |c_B - c_a|^2 from the products, rounded up past their float64 rounding: a larger
            # distance between the centroids only weakens the bound
            cc = self.c2[part][:, None] + self.c2 - 2 * (self.centroids[part] @ self.centroids.T)
            sep[i:i + step] = np.sqrt(np.maximum(cc, 0.0) + 1e-9 * (self.c2[part][:, None] + self.c2))
        return lo, hi, sep


def _pruned(space: _Space, prep: _Prepared, groups: _Groups, rows: np.ndarray, kq: np.ndarray) -> np.ndarray:
    """:func:`_rank` over the groups that can hold a neighbour of ``rows``.

    Each row's reference group ``a`` is the one of its nearest centroid; a group ``B`` cannot
    hold a neighbour when either bound on its items' distances exceeds the row's reach:
    ``|c_B - q| - radius_B`` (triangle inequality), or the gap between ``q`` and B's items
    along the line from ``c_a`` to ``c_B`` (``|q - g| >= |<q - g, u>|`` for the unit ``u``).
    """
    b, n = rows.shape[0], space.gallery.shape[0]
    active = kq > 0
    if not active.any():
        return np.full((b, 0), -1, np.int64)
    q = space.query[rows]
    q2 = np.einsum("ij,ij->i", q, q)
    qc = q @ groups.centroids.T
    lower = qc * -2.0
    lower += groups.c2
    lower += q2[:, None]
    ref = np.argmin(lower, axis=1)
    np.sqrt(np.maximum(lower, 0.0, out=lower), out=lower)
    lower *= 1 - 1e-9
    lower -= groups.radius * (1 + 1e-9)  # float64 rounding of the centroid distances, allowed for
    refs, which = np.unique(ref, return_inverse=True)
    lo, hi, sep = groups.spans(refs)
    # float64 rounding of the spans and of <q, c>, allowed for many times over
    slack = 1e-9 * (groups.scale + np.sqrt(q2 * groups.c2.max()))
    big = float(np.finfo(np.float32).max)
    out = np.full((b, int(kq.max())), -1, np.int64)
    full: list[np.ndarray] = []
    full_thr: list[np.ndarray] = []
    order = np.argsort(which, kind="stable")
    cuts = np.flatnonzero(np.r_[True, which[order][1:] != which[order][:-1], True])
    for start, stop in zip(cuts[:-1], cuts[1:]):  # the rows of one reference group at a time
        idx = order[start:stop][active[order[start:stop]]]
        if not idx.shape[0]:
            continue
        i, k = which[idx[0]], kq[idx]
        # a first bound on each row's k-th distance: its k-th among the groups nearest the
        # reference centroid that hold _FIRST * (k + 1) items (k + 1: the query aside)
        near = np.argsort(sep[i], kind="stable")
        held = np.cumsum(groups.counts[near]) - groups.counts[near]
        s = _sqdist(space, prep, rows[idx], groups.columns(near[held < _FIRST * (int(k.max()) + 1)]))
        bound = np.minimum(_kth(s, k - 1) + 2 * prep.tol[rows[idx]], big)
        reach = np.sqrt(np.maximum(bound + q2[idx], 0.0)) * (1 + 1e-9) + 1e-12
        along = qc[idx] - qc[idx, refs[i]][:, None]  # <q, c_B - c_a>
        gap = np.maximum(lo[i] - along, along - hi[i])
        gap -= slack[idx, None]
        apart = sep[i] > 0
        gap[:, ~apart] = 0.0
        gap /= np.where(apart, sep[i], 1.0)
        gap *= 1 - 1e-9
        np.maximum(gap, lower[idx], out=gap)
        needed = np.flatnonzero((gap <= reach[:, None]).any(axis=0))
        if groups.counts[needed].sum() * 2 > n:  # most of the gallery: searched with the other such rows
            full.append(idx)
            full_thr.append(bound)
        else:
            found = _rank(space, prep, rows[idx], groups.columns(needed), k, thr=bound)
            out[idx, :found.shape[1]] = found
    if full:
        idx = np.concatenate(full)
        found = _rank(space, prep, rows[idx], None, kq[idx], thr=np.concatenate(full_thr))
        out[idx, :found.shape[1]] = found
    return out


def _kth(s: np.ndarray, kth: np.ndarray) -> np.ndarray:
    """Each row's ``kth[row]``-th smallest value (0-based) of ``s``."""
    low, high = int(kth.min()), int(kth.max())
    part = np.partition(s, [low, high] if high > low else low, axis=1)
    if high == low:
        return part[:, low].astype(np.float64)
    # the values of ranks low..high lie between the two, in some order
    return np.sort(part[:, low:high + 1], axis=1)[np.arange(s.shape[0]), kth - low].astype(np.float64)


def _sqdist(space: _Space, prep: _Prepared, rows: np.ndarray, cols: np.ndarray | slice | None) -> np.ndarray:
    """float32 squared distances less |q|^2 of queries ``rows`` to gallery items ``cols`` (indices,
    a slice, or None = all); each query's own item is inf."""
    ga = prep.ga if cols is None else prep.ga[cols]
    if rows.shape[0] * ga.shape[0] <= _SMALL:  # no BLAS threads to wait for (on a busy machine, a long wait)
        s = np.einsum("ik,kj->ij", prep.qa[rows], np.ascontiguousarray(ga.T))
    else:
        s = prep.qa[rows] @ ga.T
    if space.same:  # hide each query from itself
        everything = np.arange(space.gallery.shape[0])
        ids = everything if cols is None else everything[cols]
        pos = np.searchsorted(ids, rows).clip(0, max(ids.shape[0] - 1, 0))
        hit = np.flatnonzero(ids[pos] == rows) if ids.shape[0] else np.zeros(0, np.int64)
        s[hit, pos[hit]] = np.inf
    return s


def _below(s: np.ndarray, thr32: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row, column, value)`` of every entry of ``s`` at or below its row's ``thr32``."""
    at = np.flatnonzero(s <= thr32[:, None])
    r, c = np.divmod(at, s.shape[1])
    return r, c, s.reshape(-1)[at]


def _up32(thr: np.ndarray) -> np.ndarray:
    """float32 thresholds at or above ``thr`` (float64): a float32 value is at or below one exactly
    when it is at or below the other, or equal to the rounded-up threshold (one more candidate)."""
    t = thr.astype(np.float32)
    low = t.astype(np.float64) < thr
    t[low] = np.nextafter(t[low], np.float32(np.inf))
    return t


def _within(space: _Space, prep: _Prepared, rows: np.ndarray, cols: np.ndarray | None,
            thr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row, column, value)`` of every distance at or below its row's ``thr``, a block of columns at
    a time (each block's distances are compared while they are still in the cache)."""
    n = space.gallery.shape[0] if cols is None else cols.shape[0]
    thr32 = _up32(thr)
    found_r, found_c, found_v = [], [], []
    for lo in range(0, n, _BLOCK):
        part = slice(lo, min(n, lo + _BLOCK))
        r, c, v = _below(_sqdist(space, prep, rows, part if cols is None else cols[part]), thr32)
        found_r.append(r)
        found_c.append(c + lo)
        found_v.append(v)
    return np.concatenate(found_r), np.concatenate(found_c), np.concatenate(found_v)


def _rank(space: _Space, prep: _Prepared, rows: np.ndarray, cols: np.ndarray | None, kq: np.ndarray, *,
          thr: np.ndarray | None = None, sample: int = _SAMPLE) -> np.ndarray:
    """The ``kq`` nearest of ``cols`` (None = all) for each query of ``rows``: float32 candidates, float64 ranks.

    ``thr`` bounds each row's k-th float32 squared distance from above (else it is guessed
    from sampled columns and checked). The candidates are sorted by their float32 values;
    two of a row that differ by more than the row's ``tol`` are in the order of their exact
    distances, and so of their float64 distances (whose rounding is 2^-29 times smaller). Only
    runs of candidates closer than that (a tie, or too close to tell) that reach into the
    row's first ``k`` take float64 distances, and are ranked by them, then by gallery index:
    the order of sorting every candidate by its float64 distance and index.
    """
    b = rows.shape[0]
    kmax = int(kq.max(initial=0))
    out = np.full((b, kmax), -1, np.int64)
    if kmax == 0:
        return out
    if thr is None:
        s = _sqdist(space, prep, rows, cols)
        big = float(np.finfo(np.float32).max)  # below the inf that hides each query from itself
        tol = prep.tol[rows]
        picked = np.unique(np.linspace(0, s.shape[1] - 1, min(s.shape[1], sample)).round().astype(np.int64))
        thr = np.minimum(_thresholds(s, kq, picked) + 2 * tol, big)
        count = (s <= thr[:, None]).sum(axis=1)
        exact = np.flatnonzero(((count < kq) | (count > 4 * kq + 256)) & (kq > 0))  # a poor guess:
        if exact.shape[0]:  # take the row's k-th distance itself
            thr[exact] = np.minimum(_kth(s[exact], kq[exact] - 1) + 2 * tol[exact], big)
        thr[kq == 0] = -np.inf
        r, c, v = _below(s, _up32(thr))
        del s
    else:
        r, c, v = _within(space, prep, rows, cols, thr)
    if cols is not None:
        c = cols[c]
    # by row, then by float32 value: one sort of 64-bit keys (the row, then the value's bits as an
    # unsigned integer in the order of the values); equal values are ordered later
    bits = v.view(np.uint32)
    key = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31)).astype(np.uint64) | (r.astype(np.uint64) << 32)
    order = np.argsort(key)
    r, c, v64 = r[order], c[order], v[order].astype(np.float64)
    first = np.searchsorted(r, np.arange(b))
    rank = np.arange(r.shape[0]) - first[r]
    # float32 rounding (tol: twice the largest error), the float64 rounding and subtraction allowed for
    apart = np.ones(r.shape[0], bool)
    apart[1:] = (r[1:] != r[:-1]) | (v64[1:] - v64[:-1] > prep.tol[rows[r[1:]]] * (1 + 2.0 ** -20))
    run = np.cumsum(apart) - 1
    size, start = np.bincount(run), rank[apart]
    wanted = np.flatnonzero(start[run] < kq[r])  # the runs that begin within the row's first k
    r, c, run, rank = r[wanted], c[wanted], run[wanted], rank[wanted]
    close = np.flatnonzero(size[run] > 1)
    d = np.zeros(r.shape[0], np.float64)
    step = max(1, (1 << 22) // space.query.shape[1])
    for lo in range(0, close.shape[0], step):  # float64 distances of the close candidates, a few MiB at a time
        at = close[lo:lo + step]
        diff = space.query[rows[r[at]]] - space.gallery[c[at]]
        d[at] = np.einsum("ij,ij->i", diff, diff)
    # each close run in float64 order, then by index (the runs stay where they are)
    c[close] = c[close[np.lexsort((c[close], d[close], run[close]))]]
    keep = rank < kq[r]
    out[r[keep], rank[keep]] = c[keep]
    return out


def _thresholds(s: np.ndarray, kq: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """A guess of each row's k-th smallest value, from evenly spaced columns (checked by the caller)."""
    n, m = s.shape[1], cols.shape[0]
    if m == n:  # every column sampled: the k-th value itself
        kth = np.maximum(kq, 1) - 1
    else:  # the expected rank of the k-th, plus three standard deviations and a little
        mean = np.maximum(kq, 1) * m / n
        kth = np.minimum(m, np.ceil(mean + 3 * np.sqrt(mean) + 2).astype(np.int64)) - 1
    sub = np.partition(s[:, cols], np.unique(kth), axis=1)
    return sub[np.arange(s.shape[0]), kth].astype(np.float64)


def retrieval_metrics(embeddings: object, classes: object, *, gallery: object | None = None,
                      gallery_classes: object | None = None, ks: Iterable[int] = (),
                      distance: str = "euclidean") -> dict[str, Any]:
    """Precision@1, R-precision, MAP@R and Recall@K of ``embeddings`` (exact; NumPy only).

    The definitions (ties, the query left out of its own neighbours, classes with one
    member) are in this module's docstring and the README's "Retrieval metrics".

    Args:
        embeddings: Query embeddings, shape ``(n, dim)``.
        classes: The class of each query (any comparable values: ints, strings).
        gallery: Gallery embeddings to search, shape ``(m, dim)``; ``None`` = the queries
            themselves (each query left out of its own neighbours).
        gallery_classes: The class of each gallery item (with ``gallery``).
        ks: Recall@K's K values besides 1, 2, 4 and 8.
        distance: ``"euclidean"`` (on the embeddings as given) or ``"cosine"``.

    Returns:
        ``precision_at_1``, ``r_precision``, ``map_at_r`` (floats, NaN when no query has a
        correct answer), ``recall_at_k`` (K to float), ``queries`` (n), ``queries_scored``
        (those with ``R >= 1``), ``gallery`` (m), ``classes`` (distinct query classes),
        ``distance`` and ``same_set`` (whether the queries were their own gallery).

    Raises:
        ConfigError: For arrays of the wrong shape, NaN values, a K below 1, a gallery
            without classes, or an unknown distance.
    """
    ks_all = sorted(set(DEFAULT_KS) | {int(k) for k in ks})
    if ks_all[0] < 1:
        raise ConfigError(f"Recall@K needs K >= 1; received: ks={tuple(ks)}.")
    if (gallery is None) != (gallery_classes is None):
        raise ConfigError("pass gallery and gallery_classes together (or neither).")
    space = _space(embeddings, gallery, distance)
    qc = _labels(classes, space.query.shape[0], "classes")
    gc = qc if gallery is None else _labels(gallery_classes, space.gallery.shape[0], "gallery_classes")
    names, g_codes = np.unique(gc, return_inverse=True)
    pos = np.searchsorted(names, qc).clip(0, names.shape[0] - 1)
    q_codes = np.where(names[pos] == qc, pos, -1)  # -1: a class the gallery does not hold
    r = np.where(q_codes >= 0, np.bincount(g_codes, minlength=names.shape[0])[q_codes.clip(0)], 0)
    r = r - int(space.same)
    available = space.gallery.shape[0] - int(space.same)
    scored = r >= 1
    kq = np.where(scored, np.minimum(np.maximum(r, ks_all[-1]), available), 0)
    sums = np.zeros(3 + len(ks_all))
    groups = g_codes if names.shape[0] * _GROUP_MIN <= g_codes.shape[0] else None
    for rows, nbr in nearest(space, kq, groups=groups, query_groups=q_codes):
        sums += _scores(nbr, q_codes[rows], g_codes, r[rows], ks_all, available)
    count = int(scored.sum())
    mean = [float(x / count) if count else math.nan for x in sums]
    return {"precision_at_1": mean[0], "r_precision": mean[1], "map_at_r": mean[2],
            "recall_at_k": dict(zip(ks_all, mean[3:])), "queries": int(space.query.shape[0]),
            "queries_scored": count, "gallery": int(space.gallery.shape[0]),
            "classes": int(np.unique(qc).shape[0]), "distance": distance, "same_set": space.same}


def _scores(nbr: np.ndarray, q_codes: np.ndarray, g_codes: np.ndarray, r: np.ndarray, ks: list[int],
            available: int) -> np.ndarray:
    """Sums over a chunk's scored queries of precision@1, R-precision, MAP@R and each Recall@K."""
    scored = r >= 1
    nbr, q_codes, r = nbr[scored], q_codes[scored], r[scored]
    if nbr.shape[0] == 0:
        return np.zeros(3 + len(ks))
    hit = (nbr >= 0) & (g_codes[nbr.clip(0)] == q_codes[:, None])
    within = np.arange(nbr.shape[1]) < r[:, None]
    rel = hit & within
    prec = np.cumsum(rel, axis=1) / np.arange(1, nbr.shape[1] + 1)
    out = [hit[:, 0].sum(), (rel.sum(axis=1) / r).sum(), ((prec * rel).sum(axis=1) / r).sum()]
    out += [hit[:, : min(k, available)].any(axis=1).sum() for k in ks]
    return np.asarray(out, np.float64)


def neighbours(embeddings: object, k: int, *, gallery: object | None = None, distance: str = "euclidean",
               rows: np.ndarray | None = None) -> np.ndarray:
    """Gallery indices of the ``k`` nearest items of some queries (ranked as :func:`retrieval_metrics` ranks).

    Args:
        embeddings: Query embeddings ``(n, dim)``.
        k: Neighbours per query (at most the gallery's size, less one without a gallery).
        gallery: Gallery embeddings; ``None`` = the queries, each left out of its own neighbours.
        distance: ``"euclidean"`` or ``"cosine"``.
        rows: The queries wanted (indices into ``embeddings``); ``None`` = all.

    Returns:
        An int64 array ``(len(rows), k)``.
    """
    space = _space(embeddings, gallery, distance)
    available = space.gallery.shape[0] - int(space.same)
    if not 1 <= k <= available:
        raise ConfigError(f"k must be in [1, {available}] (the gallery's size); received: k={k}.")
    kq = np.zeros(space.query.shape[0], np.int64)
    wanted = np.arange(space.query.shape[0]) if rows is None else np.asarray(rows, np.int64)
    kq[wanted] = k
    found = np.zeros((space.query.shape[0], k), np.int64)
    for got, nbr in nearest(space, kq):
        if nbr.shape[1]:
            found[got] = nbr[:, :k]
    return found[wanted]
