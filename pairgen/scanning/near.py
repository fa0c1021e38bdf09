"""Near-duplicate signatures and the search that groups near-duplicate images.

A *signature* is the image's 16x16 gray thumbnail (``cv2.INTER_AREA``, from the scan's one
decode), smoothed with a Gaussian of sigma 1 thumbnail pixel, mean removed, scaled to unit
length and stored as 256 int8 values (each vector scaled so its largest component is +-127).
Resize and blur are one linear map per image size, applied to a block's same-size images as
two matrix products whose arithmetic is exact (:func:`_side_map`), so a signature's bytes
depend on its image only, never on the block it was read in. The smoothing is what lets a resized-and-back or low-quality JPEG copy score above the
closest *distinct* images (measured on the MNIST digits, see the README). Two images are *near duplicates* when the cosine
similarity of their signatures is at least a threshold (:data:`DEFAULT_THRESHOLD`). The
signature does not move with brightness (mean removed) or contrast (unit length), and the
thumbnail averages away JPEG blocks and resize blur; it does move with shifts, crops and
rotations, which are out of its scope.

:func:`near_pairs` finds every pair at or above the threshold without comparing all pairs:
random-projection LSH (``tables`` hash tables of ``bits`` sign bits each, the number of bits
grown with ``log2`` of the number of images so buckets keep a constant expected size),
multi-probe (each image also looks in the buckets that differ in its ``probes`` least
certain bits), then a filter on a 128-bit sign sketch (Hamming distance) and an exact
int8 dot product on what is left. Its cost grows about linearly with the number of images.
A pair whose cosine is well above the threshold is all but certain to share a probed bucket
(``benchmarks/near_duplicates.py`` measures the recall); every pair returned is checked exactly,
so none is false for the threshold. :func:`near_groups` joins pairs transitively (union-find).

A constant image (no pattern after the mean is removed) has an all-zero signature and is never
a near duplicate; identical bytes are found by the content hash instead.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import cv2
import numpy as np
import pandas as pd

from pairgen.spec.config import NEAR_THRESHOLD

SIDE = 16
SIZE = SIDE * SIDE  # bytes per signature
DEFAULT_THRESHOLD = NEAR_THRESHOLD  # calibrated on real digits: README "Near duplicates"
_BLUR = 1.0
_SKETCH_WORDS, _SKETCH_BITS = 2, 63  # 126 sign bits for the Hamming pre-filter
_MAX_BITS = 63  # sign bits per table at most (an int64 code)
_SEED = 20261204  # the projections are fixed: the same signatures always give the same pairs
_AXES = 24  # principal axes of the exact lower-bound filter
_CHUNK = 1 << 15  # rows (or candidate pairs) handled at once: bounds the memory
_DIRECT = 64  # larger images are first shrunk to this many pixels a side (cv2.INTER_AREA)
_WEIGHT_SCALE = 2.0 ** 14  # the thumbnail map's weights are multiples of 1 / _WEIGHT_SCALE


def thumbnail(img: np.ndarray) -> np.ndarray:
    """What the signature needs of one decoded image: its gray pixels, shrunk with
    ``INTER_AREA`` to at most :data:`_DIRECT` pixels a side (smaller images are left as they are).

    Args:
        img: ``(h, w)``, ``(h, w, 1)`` gray or ``(h, w, 3)`` RGB uint8 pixels (as
            :func:`pairgen.codec.images.decode` returns them).

    Returns:
        ``(h', w')`` uint8: what :func:`signatures_of` takes, small enough to keep for a block.
    """
    gray = img if img.ndim == 2 else (img[:, :, 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
    h, w = gray.shape
    if max(h, w) <= _DIRECT:
        return np.ascontiguousarray(gray)
    return cv2.resize(np.ascontiguousarray(gray), (min(w, _DIRECT), min(h, _DIRECT)), interpolation=cv2.INTER_AREA)


@functools.cache
def _smooth_line() -> np.ndarray:
    """``(16, 16)``: a Gaussian blur (sigma 1 pixel, 9 taps, mirrored border as OpenCV's
    ``BORDER_REFLECT``) along one side of a 16x16 thumbnail."""
    taps = np.arange(-4, 5)
    w = np.exp(-0.5 * (taps / _BLUR) ** 2)
    w /= w.sum()
    line = np.zeros((SIDE, SIDE))
    for i in range(SIDE):
        for t, weight in zip(taps, w):
            j = i + t
            j = -j - 1 if j < 0 else (2 * SIDE - 1 - j if j >= SIDE else j)
            line[i, j] += weight
    return line


@functools.cache
def _side_map(n: int) -> np.ndarray:
    """``(16, n)`` float64: the ``INTER_AREA`` resize of a side of ``n`` pixels to 16, then the
    blur, as one matrix whose weights are rounded to multiples of ``2**-14``.

    With such weights and integer pixels every product and partial sum of the two matrix
    products in :func:`signatures_of` is exact (at most 22 significant bits in float32 for the
    first, 36 in float64 for the second), so the result does not depend on the order of the
    additions: an image gets the same signature bytes in any block, with any BLAS."""
    area = cv2.resize(np.eye(n, dtype=np.float64), (n, SIDE), interpolation=cv2.INTER_AREA)
    out = np.rint((_smooth_line() @ area) * _WEIGHT_SCALE) / _WEIGHT_SCALE
    out.flags.writeable = False
    return out


@functools.cache
def _side_map_t32(n: int) -> np.ndarray:
    """``(n, 16)`` float32 (exact): :func:`_side_map` transposed, C-contiguous (a layout that
    BLAS takes directly)."""
    out = np.ascontiguousarray(_side_map(n).T, dtype=np.float32)
    out.flags.writeable = False
    return out


def signatures_of(thumbnails: Sequence[np.ndarray | None]) -> np.ndarray:
    """Signatures of many images at once (a scan block's): shrunk to 16x16 and blurred (one
    exact linear map per image size, see :func:`_side_map`), centred, scaled to int8.

    Args:
        thumbnails: :func:`thumbnail` of each image; ``None`` for an image that could not be
            decoded.

    Returns:
        ``(m, 256)`` int8, each row scaled so its largest component is +-127 (all zero for a
        constant or undecodable image). Each row depends on its image only.
    """
    out = np.zeros((len(thumbnails), SIZE), np.int8)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, small in enumerate(thumbnails):
        if small is not None and small.size:
            by_shape.setdefault(small.shape, []).append(i)
    for (h, w), rows in by_shape.items():
        stack = np.stack([thumbnails[i] for i in rows]).astype(np.float32)  # type: ignore[misc]
        across = stack @ _side_map_t32(w)  # exact in float32
        v = (_side_map(h) @ across.astype(np.float64)).reshape(len(rows), SIZE)  # exact in float64
        v -= v.sum(axis=1, keepdims=True) / SIZE  # exact: a sum of dyadic values, divided by 2**8
        peak = np.abs(v).max(axis=1)
        flat = peak < 1e-3
        scale = np.where(flat, 0.0, 127.0 / np.where(flat, 1.0, peak))
        out[rows] = np.rint(v * scale[:, None]).astype(np.int8)
    return out


def signature(img: np.ndarray) -> np.ndarray:
    """The near-duplicate signature of one decoded image (:func:`thumbnail`, :func:`signatures_of`).

    Returns:
        256 int8 values (all zero for a constant image).
    """
    return signatures_of([thumbnail(img)])[0]


def unit_vectors(signatures: np.ndarray) -> np.ndarray:
    """``signatures`` as float32 rows of unit length (zero rows stay zero)."""
    x = np.asarray(signatures, dtype=np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))
    norm[norm == 0] = 1.0
    return x / norm[:, None]


class Pairs(NamedTuple):
    """Near-duplicate pairs: row positions ``a < b`` and their cosine similarity, sorted by (a, b)."""

    a: np.ndarray
    b: np.ndarray
    similarity: np.ndarray


def _mean_unit(x: np.ndarray) -> np.ndarray:
    """The mean of the unit rows: hyperplanes through it split clustered data more evenly."""
    total = np.zeros(SIZE, np.float64)
    for lo in range(0, len(x), _CHUNK):
        total += unit_vectors(x[lo:lo + _CHUNK]).sum(axis=0, dtype=np.float64)
    return (total / max(len(x), 1)).astype(np.float32)


def _pack(bits: np.ndarray) -> np.ndarray:
    """``(n, t, k)`` booleans (k <= 63) -> ``(n, t)`` int64 codes, bit ``j`` from ``[..., j]``."""
    weights = np.left_shift(np.int64(1), np.arange(bits.shape[-1], dtype=np.int64))
    return bits.astype(np.int64) @ weights


def _load(codes: np.ndarray) -> float:
    """Mean number of rows in a row's bucket (itself included): the candidates one probe costs."""
    counts = np.unique(codes, return_counts=True)[1].astype(np.float64)
    return float((counts * counts).sum() / len(codes))


def _bits_for(codes: np.ndarray, bucket: float) -> int:
    """The fewest low bits of ``codes`` whose buckets hold at most ``bucket`` rows per row on average.

    Images cluster (digits share a mean shape, many photos share a layout), so sign bits are
    correlated and ``log2(n)`` of them can leave buckets of thousands; bits are added until the
    buckets are small, which keeps the work per row about constant as the number of rows grows."""
    lo, hi = 1, _MAX_BITS
    while lo < hi:
        mid = (lo + hi) // 2
        if _load(codes & ((1 << mid) - 1)) <= bucket:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _max_hamming(threshold: float) -> int:
    """Sketch bits two vectors at ``threshold`` may differ in: the mean plus 6 standard deviations."""
    p = float(np.arccos(np.clip(threshold, -1.0, 1.0)) / np.pi)
    bits = _SKETCH_BITS * _SKETCH_WORDS
    return int(np.ceil(bits * p + 6.0 * np.sqrt(bits * p * (1 - p)) + 1))


def _principal_axes(xs: np.ndarray, center: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(256, 24)``: the main axes of the centred unit rows (from a fixed sample of at most 20,000
    rows). Distances within their span never exceed the full distances, so a pair farther apart
    there than the threshold allows is dropped without losing a true pair."""
    rows = np.sort(rng.choice(len(xs), min(len(xs), 20_000), replace=False))
    u = unit_vectors(xs[rows]) - center
    _, vectors = np.linalg.eigh((u.T @ u).astype(np.float64))
    return np.ascontiguousarray(vectors[:, ::-1][:, :_AXES].astype(np.float32))


class _Encoded(NamedTuple):
    keys: np.ndarray  # (n, tables, 1 + probes) int64: each table's bucket, then the probed ones
    sketch: np.ndarray  # (n, 2) int64: 2 x 63 sign bits of uncentred projections
    low: np.ndarray  # (n, 24) float32: coordinates on the principal axes


def _first_codes(xs: np.ndarray, center: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """``(n,)`` int64: the first table's 63 sign bits (bit j = projection j > 0), to choose
    how many bits the tables use (:func:`_bits_for`)."""
    out = np.empty(len(xs), np.int64)
    for lo in range(0, len(xs), _CHUNK):
        c = unit_vectors(xs[lo:lo + _CHUNK]) - center
        out[lo:lo + len(c)] = _pack(c @ proj[:, :_MAX_BITS] > 0)
    return out


def _encode(xs: np.ndarray, center: np.ndarray, used: np.ndarray, sketch: np.ndarray, axes: np.ndarray,
            tables: int, k: int, probes: int) -> _Encoded:
    """One pass over the rows in chunks: each table's bucket (its ``k`` bits, ``used`` holds
    their projections) and the buckets with one of the row's ``probes`` least certain bits
    (smallest projections) flipped; the sketch and the principal coordinates."""
    n = len(xs)
    probes = min(probes, k)  # a tiny set may need fewer bits than probes
    out = _Encoded(np.empty((n, tables, 1 + probes), np.int64), np.empty((n, _SKETCH_WORDS), np.int64),
                   np.empty((n, _AXES), np.float32))
    for lo in range(0, n, _CHUNK):
        u = unit_vectors(xs[lo:lo + _CHUNK])
        c = u - center
        m = len(u)
        projected = (c @ used).reshape(m, tables, k)
        own = _pack(projected > 0)
        out.keys[lo:lo + m, :, 0] = own
        if probes:
            weakest = np.argpartition(np.abs(projected), probes - 1, axis=2)[:, :, :probes]
            out.keys[lo:lo + m, :, 1:] = own[:, :, None] ^ np.left_shift(np.int64(1), weakest)
        out.sketch[lo:lo + m] = _pack((u @ sketch > 0).reshape(m, _SKETCH_WORDS, _SKETCH_BITS))
        out.low[lo:lo + m] = c @ axes
    return out


def near_pairs(signatures: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *, tables: int = 6,
               bits: int | None = None, probes: int = 3, bucket: float = 8.0) -> Pairs:
    """Every pair of rows whose signatures' cosine similarity is at least ``threshold``.

    Args:
        signatures: ``(n, 256)`` int8 signatures (:func:`signature`).
        threshold: The cosine similarity at or above which two images are near duplicates.
        tables: LSH hash tables.
        bits: Sign bits per table (``None``: the fewest that leave about ``bucket`` rows in a
            row's bucket).
        probes: Extra buckets probed per table (the least certain bits flipped one at a time).
        bucket: The mean bucket load aimed at when ``bits`` is ``None``.

    Returns:
        The pairs, each checked exactly (cosine of the int8 vectors), ``a < b``, sorted.
    """
    x = np.ascontiguousarray(signatures, dtype=np.int8).reshape(-1, SIZE)
    live = np.flatnonzero(x.any(axis=1))
    if len(live) < 2:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    xs = x[live]
    rng = np.random.default_rng(_SEED)
    center = _mean_unit(xs)
    proj = rng.standard_normal((SIZE, tables * _MAX_BITS), dtype=np.float32)
    sketch_proj = rng.standard_normal((SIZE, _SKETCH_BITS * _SKETCH_WORDS), dtype=np.float32)
    axes = _principal_axes(xs, center, rng)
    k = bits or _bits_for(_first_codes(xs, center, proj), bucket)
    # Of each table's 63 projections only the first k are computed.
    used = np.ascontiguousarray(proj.reshape(SIZE, tables, _MAX_BITS)[:, :, :k].reshape(SIZE, tables * k))
    enc = _encode(xs, center, used, sketch_proj, axes, tables, k, probes)
    limit = _max_hamming(threshold)
    reach = float(2.0 * (1.0 - threshold)) + 1e-5  # squared distance of unit vectors at the threshold
    found = [np.zeros(0, np.int64)]
    for t in range(tables):
        found.extend(_candidates(enc.keys[:, t], enc, limit, reach))
    # A pair is found in several tables and from either side: check each once.
    key = np.unique(np.concatenate(found))
    a, b, sim = _check(xs, key // len(xs), key % len(xs), threshold)
    return Pairs(live[a].astype(np.int64), live[b].astype(np.int64), sim.astype(np.float32))


def _candidates(keys: np.ndarray, enc: _Encoded, limit: int, reach: float) -> list[np.ndarray]:
    """``a * n + b`` (a < b) of the rows that share a probed bucket of one table, have close
    sketches and are within ``reach`` (squared) on the principal axes, a lower bound of their
    distance.

    The rows are sorted once by their bucket and everything is done in that order: a bucket is
    a range of positions, the queries of a chunk come bucket by bucket (so their own buckets are
    found by a search over increasing keys, and the pairs of a bucket lie close together in
    memory), and within a row's own bucket only the later rows are taken (each pair once)."""
    n = len(keys)
    order = np.argsort(keys[:, 0], kind="stable")
    queries = keys[order]
    ordered = np.ascontiguousarray(queries[:, 0])
    first_word, second_word = enc.sketch[order, 0], enc.sketch[order, 1]
    low = enc.low[order]
    out = []
    for lo in range(0, n, _CHUNK):
        chunk = queries[lo:lo + _CHUNK]
        m, width = chunk.shape
        first = np.empty((m, width), np.int64)
        last = np.empty((m, width), np.int64)
        first[:, 0] = np.arange(lo + 1, lo + m + 1)  # the rest of its own bucket
        last[:, 0] = np.searchsorted(ordered, chunk[:, 0], side="right")
        for j in range(1, width):  # the probed neighbouring buckets
            first[:, j] = np.searchsorted(ordered, chunk[:, j], side="left")
            last[:, j] = np.searchsorted(ordered, chunk[:, j], side="right")
        # Every position of every [first, last) range, and its query (runs of a query's rows).
        counts = (last - first).ravel()
        b = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(first.ravel() - (np.cumsum(counts) - counts), counts)
        per_query = counts.reshape(m, width).sum(axis=1)
        # The sketch's first word alone must already be within the limit: a cheap first cut.
        a = np.repeat(np.arange(lo, lo + m), per_query)
        first_apart = np.bitwise_count(first_word[a] ^ first_word[b])
        close = first_apart <= limit
        a, b = a[close], b[close]
        apart = first_apart[close] + np.bitwise_count(second_word[a] ^ second_word[b])
        a, b = a[apart <= limit], b[apart <= limit]
        d = low[a] - low[b]
        near = np.einsum("ij,ij->i", d, d) <= reach
        a, b = order[a[near]], order[b[near]]
        out.append(np.minimum(a, b) * n + np.maximum(a, b))
    return out


def _check(xs: np.ndarray, a: np.ndarray, b: np.ndarray,
           threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs whose exact cosine (of the int8 vectors) reaches ``threshold``."""
    keep_a, keep_b, keep_s = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for lo in range(0, len(a), _CHUNK):
        ca, cb = a[lo:lo + _CHUNK], b[lo:lo + _CHUNK]
        ua, ub = unit_vectors(xs[ca]), unit_vectors(xs[cb])
        sim = np.einsum("ij,ij->i", ua, ub)
        hit = sim >= threshold
        keep_a.append(ca[hit])
        keep_b.append(cb[hit])
        keep_s.append(sim[hit])
    return np.concatenate(keep_a), np.concatenate(keep_b), np.concatenate(keep_s)


def near_groups(pairs: Pairs, n: int) -> np.ndarray:
    """Join pairs transitively: each row's group is the smallest row position connected to it.

    Args:
        pairs: Pairs of row positions (:func:`near_pairs`).
        n: Number of rows.

    Returns:
        ``n`` int64 group ids; a row in no pair is its own group.
    """
    parent = np.arange(n, dtype=np.int64)
    a, b = pairs.a, pairs.b
    # Vectorised union-find: point each pair's larger root at the smaller one until stable.
    while len(a):
        ra, rb = _roots(parent, a), _roots(parent, b)
        differ = ra != rb
        if not differ.any():
            break
        lo, hi = np.minimum(ra[differ], rb[differ]), np.maximum(ra[differ], rb[differ])
        np.minimum.at(parent, hi, lo)
        a, b = a[differ], b[differ]
    return _roots(parent, np.arange(n, dtype=np.int64))


def _roots(parent: np.ndarray, idx: np.ndarray) -> np.ndarray:
    r = parent[idx]
    while True:
        nxt = parent[r]
        if np.array_equal(nxt, r):
            return r
        r = nxt


class NearDuplicates(NamedTuple):
    """The near-duplicate pairs of an images frame (row positions) and each row's group."""

    pairs: Pairs
    group: np.ndarray  # per row: the smallest row position joined to it (itself when alone)


def find(images: pd.DataFrame, signatures: np.ndarray, threshold: float) -> NearDuplicates:
    """Near-duplicate pairs and groups of an images frame, its signatures row for row.

    Pairs of byte-identical images (same ``sha256``) are left out of ``pairs``: the content
    hash reports those; they still join groups.
    """
    found = near_pairs(signatures, threshold)
    group = near_groups(found, len(images))
    sha = images["sha256"].to_numpy(object)
    other = sha[found.a] != sha[found.b]
    return NearDuplicates(Pairs(found.a[other], found.b[other], found.similarity[other]), group)


def near_report(images: pd.DataFrame, signatures: np.ndarray, threshold: float, *,
                limit: int = 5) -> dict[str, Any]:
    """What ``pairgen scan`` reports about near duplicates.

    Args:
        images: A catalog's images frame.
        signatures: Their signatures, row for row.
        threshold: The cosine similarity of near duplicates.
        limit: Example groups listed.

    Returns:
        ``threshold``, ``pairs`` (near-duplicate pairs that are not byte-identical),
        ``groups`` and ``images`` (groups joined by those pairs, and their images),
        ``cross_class_pairs`` (pairs whose two images have different classes) and
        ``examples`` (the ``limit`` largest groups' paths, each in ``image_id`` order).
    """
    near = find(images, signatures, threshold)
    members = _members(near)
    paths = images["path"].to_numpy(object)
    classes = images["class_id"].to_numpy()
    groups = sorted(members.values(), key=lambda rows: (-len(rows), paths[rows[0]]))
    return {
        "threshold": float(threshold),
        "pairs": int(len(near.pairs.a)),
        "groups": len(groups),
        "images": int(sum(len(g) for g in groups)),
        "cross_class_pairs": int((classes[near.pairs.a] != classes[near.pairs.b]).sum()),
        "examples": [[str(paths[r]) for r in rows] for rows in groups[:limit]],
    }


def _members(near: NearDuplicates) -> dict[int, list[int]]:
    """Each group with a near-duplicate pair: its rows, in row order."""
    rows = np.unique(np.concatenate([near.pairs.a, near.pairs.b]))
    keep = np.isin(near.group, np.unique(near.group[rows]))
    out: dict[int, list[int]] = {}
    for row in np.flatnonzero(keep).tolist():
        out.setdefault(int(near.group[row]), []).append(row)
    return out


def cross_split(images: pd.DataFrame, signatures: np.ndarray, threshold: float, *,
                limit: int = 5) -> dict[str, Any]:
    """Near-duplicate pairs whose two images are in different splits (leakage).

    Args:
        images: A split catalog's images frame (``split`` filled).
        signatures: Their signatures, row for row.
        threshold: The cosine similarity of near duplicates.
        limit: Examples per split pair, and groups listed.

    Returns:
        ``threshold``, ``pairs`` (cross-split pairs, byte-identical ones left out),
        ``by_split_pair`` (``"test/train"`` -> ``{"pairs", "examples": [[path, path, cosine]]}``,
        the two split names sorted), ``groups`` and ``images`` (groups spanning more than one
        split) and ``top_groups`` (the ``limit`` largest of them, as ``[[path, split], ...]``).
    """
    near = find(images, signatures, threshold)
    split = images["split"].fillna("").astype(str).to_numpy(object)
    paths = images["path"].to_numpy(object)
    a, b, sim = near.pairs
    crossing = split[a] != split[b]
    a, b, sim = a[crossing], b[crossing], sim[crossing]
    first, second = np.minimum(split[a], split[b]), np.maximum(split[a], split[b])
    by_pair: dict[str, Any] = {}
    for key in sorted({f"{x}/{y}" for x, y in zip(first, second)}):
        hit = np.flatnonzero([f"{x}/{y}" == key for x, y in zip(first, second)])
        best = hit[np.argsort(-sim[hit], kind="stable")][:limit]
        by_pair[key] = {"pairs": int(len(hit)),
                        "examples": [[str(paths[a[i]]), str(paths[b[i]]), round(float(sim[i]), 5)] for i in best]}
    spanning = [rows for rows in _members(near).values() if len({split[r] for r in rows}) > 1]
    spanning.sort(key=lambda rows: (-len(rows), paths[rows[0]]))
    return {
        "threshold": float(threshold),
        "pairs": int(len(a)),
        "by_split_pair": by_pair,
        "groups": len(spanning),
        "images": int(sum(len(g) for g in spanning)),
        "top_groups": [[[str(paths[r]), str(split[r])] for r in rows] for rows in spanning[:limit]],
    }
