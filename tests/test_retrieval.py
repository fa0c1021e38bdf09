"""Retrieval metrics: against pytorch-metric-learning's AccuracyCalculator and an independent brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pairgen
from pairgen.errors import ConfigError
from pairgen.train import retrieval as R


def brute_force(q: np.ndarray, qc: np.ndarray, g: np.ndarray | None = None, gc: np.ndarray | None = None,
                ks: tuple[int, ...] = (1, 2, 4, 8)) -> dict[str, object]:
    """The definitions, one query at a time: full float64 ranking, ties by gallery index."""
    same = g is None
    g, gc = (q, qc) if g is None else (g, gc)
    q, g = np.asarray(q, np.float64), np.asarray(g, np.float64)
    p1, rp, mapr, recall, scored = [], [], [], {k: [] for k in ks}, 0
    for i in range(len(q)):
        d = ((g - q[i]) ** 2).sum(axis=1)
        idx = np.arange(len(g))
        if same:
            d, idx = np.delete(d, i), np.delete(idx, i)
        ranked = idx[sorted(range(len(idx)), key=lambda j: (d[j], idx[j]))]
        hit = [gc[j] == qc[i] for j in ranked]
        r = sum(hit)
        if r == 0:
            continue
        scored += 1
        p1.append(float(hit[0]))
        rp.append(sum(hit[:r]) / r)
        ap, correct = 0.0, 0
        for pos in range(r):
            if hit[pos]:
                correct += 1
                ap += correct / (pos + 1)
        mapr.append(ap / r)
        for k in ks:
            recall[k].append(float(any(hit[:k])))
    return {"precision_at_1": mean(p1), "r_precision": mean(rp), "map_at_r": mean(mapr),
            "recall_at_k": {k: mean(v) for k, v in recall.items()}, "queries_scored": scored}


def mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def clustered(n: int, classes: int, dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, n)
    return (centres[y] + noise * rng.normal(size=(n, dim))).astype(np.float32), y


def ties_and_singletons() -> tuple[np.ndarray, np.ndarray]:
    """Integer points (exact float32 distances): duplicates within classes, equidistant points of
    other classes, and three classes with a single member."""
    rng = np.random.default_rng(3)
    x = np.concatenate([np.repeat(rng.integers(0, 4, (6, 3)), 5, axis=0),  # 6 classes x 5 copies of one point
                        rng.integers(0, 4, (20, 3)),                        # 20 points in 8 classes
                        np.array([[9, 9, 9], [-9, 9, 9], [9, -9, 9]])]).astype(np.float32)
    y = np.concatenate([np.repeat(np.arange(6), 5), rng.integers(6, 14, 20), [100, 101, 102]])
    return x, y


def _close(ours: dict[str, object], other: dict[str, object], keys: tuple[str, ...]) -> None:
    for key in keys:
        a, b = float(ours[key]), float(other[key])  # type: ignore[arg-type]
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6, (key, a, b)


def test_equals_brute_force_on_clustered_embeddings_with_and_without_gallery() -> None:
    x, y = clustered(400, 12, 8, 1.0, seed=0)
    ours = pairgen.retrieval_metrics(x, y, ks=(3, 50))
    oracle = brute_force(x, y, ks=(1, 2, 3, 4, 8, 50))
    _close(ours, oracle, ("precision_at_1", "r_precision", "map_at_r"))
    assert ours["recall_at_k"] == pytest.approx(oracle["recall_at_k"], abs=1e-12)
    assert ours["queries"] == 400 and ours["queries_scored"] == 400 and ours["same_set"] is True
    ours = pairgen.retrieval_metrics(x[:100], y[:100], gallery=x[100:], gallery_classes=y[100:])
    _close(ours, brute_force(x[:100], y[:100], x[100:], y[100:]), ("precision_at_1", "r_precision", "map_at_r"))
    assert ours["same_set"] is False and ours["gallery"] == 300


def test_ties_break_by_gallery_index_and_lone_queries_are_left_out() -> None:
    x, y = ties_and_singletons()
    ours = pairgen.retrieval_metrics(x, y)
    oracle = brute_force(x, y)
    _close(ours, oracle, ("precision_at_1", "r_precision", "map_at_r"))
    assert ours["recall_at_k"] == pytest.approx(oracle["recall_at_k"], abs=1e-12)
    assert ours["queries_scored"] == oracle["queries_scored"] == len(y) - _singletons(y)
    # by hand: a query, two other-class points at distance 1 (indices 1, 2), one of its class at 1 (3)
    x = np.array([[0.0], [1.0], [-1.0], [1.0], [5.0]])
    m = pairgen.retrieval_metrics(x, np.array([0, 1, 2, 0, 3]))
    # query 0: R = 1, ranked 1, 2, 3 -> precision@1 0, MAP@R 0; query 3: its class' point at 1, after index 1 (d = 0)
    assert m["queries_scored"] == 2 and m["precision_at_1"] == 0.0 and m["recall_at_k"][4] == 1.0


def _singletons(classes: np.ndarray) -> int:
    values, counts = np.unique(classes, return_counts=True)
    return int((counts == 1).sum())


def _all(space: R._Space, k: np.ndarray, **kw: object) -> np.ndarray:
    out = np.full((space.query.shape[0], 40), -1)
    for rows, nbr in R.nearest(space, k, **kw):  # type: ignore[arg-type]
        out[rows, : nbr.shape[1]] = nbr
    return out


@pytest.mark.parametrize("noise", [0.3, 3.0])
def test_chunks_fallbacks_and_skipped_classes_rank_like_the_brute_force(noise: float) -> None:
    x, y = clustered(600, 30, 4, noise, seed=1)
    space = R._space(x, None, "euclidean")
    k = np.random.default_rng(0).integers(0, 40, 600)
    d = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(600), d.shape), d), axis=1)[:, :40]
    expected = np.where(np.arange(40) < k[:, None], order, -1)
    np.testing.assert_array_equal(_all(space, k), expected)
    np.testing.assert_array_equal(_all(space, k, chunk_cells=7 * 600), expected)
    # a tiny column sample makes the threshold guesses poor: rows fall back to their exact k-th value
    np.testing.assert_array_equal(_all(space, k, chunk_cells=50 * 600, sample=5), expected)
    # classes as groups: chunks skip the classes that cannot hold a neighbour
    np.testing.assert_array_equal(_all(space, k, groups=y, query_groups=y, chunk_cells=64 * 600), expected)
    gallery = R._space(x[:100], x[100:], "euclidean")
    d = ((x[:100, None, :].astype(np.float64) - x[None, 100:, :]) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(500), d.shape), d), axis=1)[:, :40]
    expected = np.where(np.arange(40) < k[:100, None], order, -1)
    np.testing.assert_array_equal(_all(gallery, k[:100], groups=y[100:], query_groups=y[:100]), expected)
    np.testing.assert_array_equal(_all(gallery, k[:100]), expected)


def test_cosine_ranks_normalized_embeddings() -> None:
    x, y = clustered(200, 5, 6, 1.0, seed=2)
    unit = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    _close(pairgen.retrieval_metrics(x * 7.0, y, distance="cosine"), brute_force(unit, y),
           ("precision_at_1", "r_precision", "map_at_r"))


def test_neighbours_of_a_few_queries() -> None:
    x = np.array([[0.0], [3.0], [1.0], [10.0], [2.0]])
    np.testing.assert_array_equal(R.neighbours(x, 2, rows=np.array([0, 3])), [[2, 4], [1, 4]])


def test_no_query_with_an_answer_is_nan_and_bad_input_is_one_clear_error() -> None:
    m = pairgen.retrieval_metrics(np.eye(3), [0, 1, 2])
    assert m["queries_scored"] == 0 and math.isnan(m["map_at_r"])
    with pytest.raises(ConfigError, match="one class per embedding"):
        pairgen.retrieval_metrics(np.eye(3), [0, 1])
    with pytest.raises(ConfigError, match="NaN"):
        pairgen.retrieval_metrics(np.full((2, 2), np.nan), [0, 0])
    with pytest.raises(ConfigError, match="distance must be one of"):
        pairgen.retrieval_metrics(np.eye(2), [0, 0], distance="l1")
    with pytest.raises(ConfigError, match="K >= 1"):
        pairgen.retrieval_metrics(np.eye(2), [0, 0], ks=(0,))
    with pytest.raises(ConfigError, match="together"):
        pairgen.retrieval_metrics(np.eye(2), [0, 0], gallery=np.eye(2))


# pytorch-metric-learning as the oracle (the test extra installs it)

def pml_metrics(q: np.ndarray, qc: np.ndarray, g: np.ndarray | None = None, gc: np.ndarray | None = None) -> dict:
    pytest.importorskip("pytorch_metric_learning")
    import torch
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                              knn_func=CustomKNN(LpDistance(normalize_embeddings=False)), device=torch.device("cpu"))
    m = calc.get_accuracy(q, qc) if g is None else calc.get_accuracy(q, qc, g, gc)
    return {"precision_at_1": m["precision_at_1"], "r_precision": m["r_precision"],
            "map_at_r": m["mean_average_precision_at_r"]}


@pytest.mark.parametrize("n,classes,dim,noise", [(600, 15, 16, 0.8), (900, 4, 8, 1.5), (300, 60, 32, 0.3)])
def test_equals_pml_on_clustered_embeddings(n: int, classes: int, dim: int, noise: float) -> None:
    x, y = clustered(n, classes, dim, noise, seed=n)
    _close(pairgen.retrieval_metrics(x, y), pml_metrics(x, y), ("precision_at_1", "r_precision", "map_at_r"))
    q, g = slice(0, n // 4), slice(n // 4, n)
    _close(pairgen.retrieval_metrics(x[q], y[q], gallery=x[g], gallery_classes=y[g]),
           pml_metrics(x[q], y[q], x[g], y[g]), ("precision_at_1", "r_precision", "map_at_r"))


def test_equals_pml_with_duplicates_and_single_member_classes() -> None:
    """Ties whose order cannot change a metric (copies of one point in one class, points of other
    classes only beyond R), and classes with one member (left out), with and without a gallery."""
    rng = np.random.default_rng(5)
    centres = rng.integers(-20, 20, (8, 4))
    x = np.concatenate([np.repeat(centres[:6], 6, axis=0), centres[6:]]).astype(np.float32)
    y = np.r_[np.repeat(np.arange(6), 6), 6, 7]
    ours, pml = pairgen.retrieval_metrics(x, y), pml_metrics(x, y)
    _close(ours, pml, ("precision_at_1", "r_precision", "map_at_r"))
    assert ours["queries_scored"] == 36 and ours["map_at_r"] == 1.0
    cx, cy = clustered(300, 10, 4, 1.0, seed=6)
    x, y = np.concatenate([cx, x]), np.concatenate([cy, y + 10])
    q = np.r_[0:50, 300:338]
    g = np.setdiff1d(np.arange(len(y)), q[::3])  # some classes of the queries have no gallery item
    _close(pairgen.retrieval_metrics(x, y), pml_metrics(x, y), ("precision_at_1", "r_precision", "map_at_r"))
    _close(pairgen.retrieval_metrics(x[q], y[q], gallery=x[g], gallery_classes=y[g]), pml_metrics(x[q], y[q], x[g], y[g]),
           ("precision_at_1", "r_precision", "map_at_r"))


# the search's own paths: groups skipped along the line between centroids, candidates ranked by
# float32 value with float64 only for the close ones, small products without BLAS

def _ranked(space: R._Space, width: int) -> np.ndarray:
    """Every query's first ``width`` gallery indices by float64 distance (of the centered
    embeddings, as the search computes them), then by index: the definition."""
    d = np.stack([np.einsum("ij,ij->i", q - space.gallery, q - space.gallery) for q in space.query])
    if space.same:
        np.fill_diagonal(d, np.inf)
    return np.lexsort((np.broadcast_to(np.arange(d.shape[1]), d.shape), d), axis=1)[:, :width]


def _searched(space: R._Space, k: np.ndarray, **kw: object) -> tuple[np.ndarray, list[int]]:
    """:func:`R.nearest`'s neighbours and the number of gallery columns each search compared."""
    compared: list[int] = []
    rank = R._rank

    def counting(space_: R._Space, prep: R._Prepared, rows: np.ndarray, cols: np.ndarray | None,
                 kq: np.ndarray, **kwargs: object) -> np.ndarray:
        compared.append(space_.gallery.shape[0] if cols is None else cols.shape[0])
        return rank(space_, prep, rows, cols, kq, **kwargs)  # type: ignore[arg-type]

    R._rank = counting  # type: ignore[assignment]
    try:
        out = np.full((space.query.shape[0], int(k.max())), -1)
        for rows, nbr in R.nearest(space, k, **kw):  # type: ignore[arg-type]
            out[rows, : nbr.shape[1]] = nbr
    finally:
        R._rank = rank  # type: ignore[assignment]
    return out, compared


def test_wide_blobs_skip_the_classes_beyond_the_gap_between_centroids() -> None:
    """In 64 dimensions every class's radius exceeds the distance between centroids less a
    query's distance to its own (the triangle inequality skips nothing), but along the line
    between two centroids the classes lie far apart: each search compares a few classes only."""
    x, y = clustered(1200, 20, 64, 0.5, seed=11)
    space = R._space(x, None, "euclidean")
    k = np.bincount(y)[y] - 1
    k[::7] = 0  # some queries need nothing
    expected = np.where(np.arange(k.max()) < k[:, None], _ranked(space, int(k.max())), -1)
    got, compared = _searched(space, k, groups=y, query_groups=y)
    np.testing.assert_array_equal(got, expected)
    assert max(compared) <= 4 * np.bincount(y).max(), compared  # a few classes, not the 1,200 items
    # the same with a gallery, classes absent from the queries, and queries of classes absent from the gallery
    q, g = (y % 3 == 0) & (y < 15), y % 3 != 0
    space = R._space(x[q], x[g], "euclidean")
    k = np.full(int(q.sum()), 30)
    got, compared = _searched(space, k, groups=np.unique(y[g], return_inverse=True)[1], query_groups=y[q])
    np.testing.assert_array_equal(got, _ranked(space, 30))


def test_spans_are_the_least_and_largest_projection_of_each_group() -> None:
    rng = np.random.default_rng(12)
    g = rng.normal(size=(90, 5))
    codes = rng.integers(0, 7, 90)
    codes[codes == 3] = 4  # an empty group
    groups = R._Groups.of(g, codes)
    lo, hi, sep = groups.spans(np.array([0, 2, 5]))
    for row, a in enumerate([0, 2, 5]):
        for b in range(7):
            along = g[codes == b] @ (groups.centroids[b] - groups.centroids[a])
            assert lo[row, b] == (pytest.approx(along.min(), abs=1e-9) if along.size else np.inf)
            assert hi[row, b] == (pytest.approx(along.max(), abs=1e-9) if along.size else -np.inf)
            assert sep[row, b] >= np.linalg.norm(groups.centroids[b] - groups.centroids[a])
            assert sep[row, b] == pytest.approx(np.linalg.norm(groups.centroids[b] - groups.centroids[a]), abs=1e-4)


def test_distances_too_close_for_float32_rank_by_float64_then_index() -> None:
    """Gallery points whose distances to the query differ by far less than float32 can tell
    (and exact ties, and copies), on both sides of the k-th: the float64 order, then the index."""
    rng = np.random.default_rng(13)
    base = rng.normal(size=(1, 16))
    direction = rng.normal(size=(40, 16))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = 3.0 + np.repeat(np.arange(8), 5) * 1e-11  # 8 shells of 5, 1e-11 apart
    g = base + direction * radius[:, None]
    g = np.concatenate([g, g[:6], base + 50 * direction[:10]])  # copies (ties), and far points
    perm = rng.permutation(g.shape[0])
    g = g[perm]
    for k in (1, 3, 7, 12, 23, 40, 46):
        space = R._space(base, g, "euclidean")
        got, _ = _searched(space, np.array([k]))
        np.testing.assert_array_equal(got, _ranked(space, k))
    # many queries, same set, with groups: the close runs of every row at once
    x = np.concatenate([g, g + 1e-12, g[::-1]])
    y = np.arange(x.shape[0]) % 4
    space = R._space(x, None, "euclidean")
    k = np.full(x.shape[0], 20)
    np.testing.assert_array_equal(_searched(space, k, groups=y, query_groups=y)[0], _ranked(space, 20))
    np.testing.assert_array_equal(_searched(space, k)[0], _ranked(space, 20))


def test_small_products_without_blas_equal_the_blas_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = clustered(700, 25, 24, 1.5, seed=14)
    space = R._space(x, None, "cosine")
    k = np.full(700, 30)
    expected = _ranked(space, 30)
    for small in (0, 1 << 40):  # every product with BLAS, then none
        monkeypatch.setattr(R, "_SMALL", small)
        np.testing.assert_array_equal(_searched(space, k, groups=y, query_groups=y)[0], expected)
        np.testing.assert_array_equal(_searched(space, k, chunk_cells=100 * 700)[0], expected)


def test_kth_and_float32_thresholds() -> None:
    rng = np.random.default_rng(15)
    s = rng.normal(size=(50, 40)).astype(np.float32)
    kth = rng.integers(0, 40, 50)
    np.testing.assert_array_equal(R._kth(s, kth), np.sort(s, axis=1)[np.arange(50), kth])
    np.testing.assert_array_equal(R._kth(s, np.full(50, 7)), np.sort(s, axis=1)[:, 7])
    thr = np.array([1.0, 1.0 + 1e-12, -np.inf, -2.5e-40, 3.4e38, 0.1])
    up = R._up32(thr)
    assert up.dtype == np.float32 and (up.astype(np.float64) >= thr).all()
    below = np.nextafter(up, np.float32(-np.inf)).astype(np.float64)
    assert (below[np.isfinite(thr)] < thr[np.isfinite(thr)]).all()  # the least float32 at or above


def test_groups_with_copies_and_single_member_classes_equal_the_brute_force() -> None:
    """Enough items per class for the search by groups: copies of points within and across
    classes (ties), single-member classes, with and without a gallery, and cosine."""
    rng = np.random.default_rng(16)
    x, y = clustered(480, 20, 12, 0.8, seed=16)
    x = np.concatenate([x, x[:40], rng.normal(size=(5, 12)).astype(np.float32)])
    y = np.concatenate([y, rng.integers(0, 20, 40), 100 + np.arange(5)])  # copies, some in other classes
    ours = pairgen.retrieval_metrics(x, y, ks=(16,))
    oracle = brute_force(x, y, ks=(1, 2, 4, 8, 16))
    _close(ours, oracle, ("precision_at_1", "r_precision", "map_at_r"))
    assert ours["recall_at_k"] == pytest.approx(oracle["recall_at_k"], abs=1e-12)
    q = np.arange(0, 525, 5)
    g = np.setdiff1d(np.arange(525), q)
    ours = pairgen.retrieval_metrics(x[q], y[q], gallery=x[g], gallery_classes=y[g])
    _close(ours, brute_force(x[q], y[q], x[g], y[g]), ("precision_at_1", "r_precision", "map_at_r"))
    unit = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    _close(pairgen.retrieval_metrics(x, y, distance="cosine"), brute_force(unit, y),
           ("precision_at_1", "r_precision", "map_at_r"))
