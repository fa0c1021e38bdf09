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
each chunk's squared distances are computed in float32 with one matrix product, a per-row
threshold proven to keep every one of the row's ``k`` nearest (float32 rounding bounded and
allowed for) picks the candidates, and those are ranked on float64 distances.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from pairgen.errors import ConfigError

DEFAULT_KS = (1, 2, 4, 8)
DISTANCES = ("euclidean", "cosine")
_CHUNK_CELLS = 1 << 24  # query rows x gallery items per chunk: 64 MiB of float32 distances
_SAMPLE = 4096  # gallery columns sampled to guess each row's threshold


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
        q, g = _unit(q, "embeddings"), (None if gallery is None else _unit(g, "gallery"))
        g = q if g is None else g
    mean = g.mean(axis=0)
    qc = q - mean
    return _Space(qc, qc if gallery is None else g - mean, gallery is None)


def _unit(x: np.ndarray, name: str) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if (norm == 0).any():
        raise ConfigError(f"{name} holds an all-zero embedding, which has no direction for distance='cosine'.")
    return x / norm


def nearest(space: _Space, k: Iterable[int] | np.ndarray, *, chunk_cells: int = _CHUNK_CELLS,
            sample: int = _SAMPLE) -> Iterator[tuple[int, np.ndarray]]:
    """Exact nearest gallery items of each query, chunk by chunk.

    Args:
        space: Queries and gallery (see :func:`_space`).
        k: How many neighbours each query needs (0 to skip it); at most the gallery's size
            (less one when the query set is the gallery).
        chunk_cells: Query rows x gallery items held at once.
        sample: Gallery columns looked at to guess each row's threshold (a poor guess only
            costs time: the row then takes its exact k-th distance).

    Yields:
        ``(start, neighbours)``: ``neighbours[i, j]`` is the gallery index of query
        ``start + i``'s ``j``-th nearest item (0-based), -1 past that query's ``k``.
    """
    q, g = space.query, space.gallery
    kq = np.asarray(list(k) if not isinstance(k, np.ndarray) else k, dtype=np.int64)
    n = g.shape[0]
    rows = max(1, min(q.shape[0], chunk_cells // n))
    q32, g32 = q.astype(np.float32), g.astype(np.float32)
    g2 = np.einsum("ij,ij->i", g32, g32)
    gmax = float(np.sqrt(np.einsum("ij,ij->i", g, g).max()))
    cols = np.unique(np.linspace(0, n - 1, min(n, sample)).round().astype(np.int64))
    buf = np.empty((rows, n), np.float32)
    for start in range(0, q.shape[0], rows):
        stop = min(q.shape[0], start + rows)
        yield start, _chunk(space, q32[start:stop], g32, g2, gmax, kq[start:stop], start, cols, buf[: stop - start])


def _chunk(space: _Space, q32: np.ndarray, g32: np.ndarray, g2: np.ndarray, gmax: float, kq: np.ndarray,
           start: int, cols: np.ndarray, s: np.ndarray) -> np.ndarray:
    """One chunk of :func:`nearest`: candidates on float32 distances, ranked on float64 ones."""
    b, n = s.shape
    kmax = int(kq.max(initial=0))
    out = np.full((b, kmax), -1, np.int64)
    if kmax == 0:
        return out
    np.matmul(q32, g32.T, out=s)
    s *= -2.0
    s += g2
    s += np.einsum("ij,ij->i", q32, q32)[:, None]
    rows = np.arange(b)
    if space.same:
        s[rows, start + rows] = np.inf
    # |float32 - exact| of every squared distance is below (dim + 4) * 2^-23 * (|q| + max|g|)^2
    # (the rounding of the inputs, the products and the sums); twice that covers both sides.
    qn = np.sqrt(np.einsum("ij,ij->i", space.query[start:start + b], space.query[start:start + b]))
    tol = 2 * (q32.shape[1] + 4) * 2.0 ** -23 * (qn + gmax) ** 2
    big = float(np.finfo(np.float32).max)  # below the inf that hides each query from itself
    thr = np.minimum(_thresholds(s, kq, cols) + 2 * tol, big)
    count = (s <= thr[:, None]).sum(axis=1)
    exact = (count < kq) | (count > 4 * kq + 256)  # a poor guess: take the row's k-th distance itself
    for i in np.flatnonzero(exact & (kq > 0)):
        thr[i] = min(float(np.partition(s[i], kq[i] - 1)[kq[i] - 1]) + 2 * tol[i], big)
    thr[kq == 0] = -np.inf
    r, c = np.nonzero(s <= thr[:, None])
    d = np.empty(r.shape[0], np.float64)
    step = max(1, (1 << 22) // space.query.shape[1])
    for lo in range(0, r.shape[0], step):  # float64 distances of the candidates, a few MiB at a time
        diff = space.query[start + r[lo:lo + step]] - space.gallery[c[lo:lo + step]]
        d[lo:lo + step] = np.einsum("ij,ij->i", diff, diff)
    order = np.lexsort((c, d, r))
    r, c = r[order], c[order]
    first = np.searchsorted(r, rows)
    rank = np.arange(r.shape[0]) - first[r]
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
                      distance: str = "euclidean") -> dict[str, object]:
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
    for start, nbr in nearest(space, kq):
        sums += _scores(nbr, q_codes[start:start + nbr.shape[0]], g_codes, r[start:start + nbr.shape[0]],
                        ks_all, available)
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
    found = np.concatenate([nbr if nbr.shape[1] else np.zeros((nbr.shape[0], k), np.int64)
                            for _, nbr in nearest(space, kq)])
    return found[wanted, :k]
