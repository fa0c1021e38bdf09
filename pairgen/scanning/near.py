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
the unit signatures, centred on their mean, are projected onto their 24 main axes; random
hyperplanes there give each row a key in each of ``tables`` hash tables (as many sign bits
as leave about ``bucket`` rows in a row's bucket, grown with the number of images); rows that
share a bucket are compared with matrix products on the first 16 axes (a lower bound of their
distance), and the few pairs that pass get the exact cosine of their int8 vectors. Its cost
grows about linearly with the number of images. A pair whose cosine is well above the
threshold is all but certain to share a bucket in some table (``benchmarks/near_duplicates.py``
measures the recall against an exhaustive search); every pair returned is checked exactly, so
none is false for the threshold. :func:`near_groups` joins pairs transitively (union-find).

A constant image (no pattern after the mean is removed) has an all-zero signature and is never
a near duplicate; identical bytes are found by the content hash instead.
"""

from __future__ import annotations

import functools
import threading
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
_MAX_BITS = 63  # sign bits an int64 code can hold
_BITS = 46  # hyperplanes per table: the most sign bits a table takes (crowded data takes 30-45); the
# codes' low 17 bits stay free for a row number, so up to 131,072 rows sort without an argsort
_SEED = 20261204  # the projections are fixed: the same signatures always give the same pairs
_DIMS = 24  # principal axes the rows are hashed on (two orthonormal bases of them a table)
_NEAR_DIMS = 16  # the first of them, on which bucket mates are compared before the exact check
_SAMPLE = 4_000  # rows the principal axes are estimated from
_SLACK = 1e-4  # added to the squared distance at the threshold: covers float32 rounding
_SMALL = 8  # buckets of up to this many rows are compared pair by pair
_LARGE = 512  # buckets of more rows are compared one at a time
_CORE = 4  # rows this many reaches from the centre are compared with every row near them
_CORE_ROWS = 20_000  # ... every pair when there are at most this many of them
_CELLS = 1 << 18  # distances computed at once (1 MiB): memory the allocator reuses
_CHUNK = 1 << 10  # candidate pairs checked at once (1 MiB of floats: memory the allocator reuses)
_ROWS = 1024  # signatures projected at once (1 MiB of floats: memory the allocator reuses)
DIRECT = 64  # larger images are first shrunk to this many pixels a side (cv2.INTER_AREA); smaller go whole
_BATCH_BYTES = 512 * 1024  # a block's thumbnails are signed at most this many float32 bytes at a time
_WEIGHT_SCALE = 2.0 ** 14  # the thumbnail map's weights are multiples of 1 / _WEIGHT_SCALE


def thumbnail(img: np.ndarray) -> np.ndarray:
    """What the signature needs of one decoded image: its gray pixels, shrunk with
    ``INTER_AREA`` to at most :data:`DIRECT` pixels a side (smaller images are left as they are).

    Args:
        img: ``(h, w)``, ``(h, w, 1)`` gray or ``(h, w, 3)`` RGB uint8 pixels (as
            :func:`pairgen.codec.images.decode` returns them).

    Returns:
        ``(h', w')`` uint8: what :func:`signatures_of` takes, small enough to keep for a block.
    """
    gray = img if img.ndim == 2 else (img[:, :, 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
    h, w = gray.shape
    if max(h, w) <= DIRECT:
        return gray  # a view is enough: signatures_of copies it into its batch
    return cv2.resize(np.ascontiguousarray(gray), (min(w, DIRECT), min(h, DIRECT)), interpolation=cv2.INTER_AREA)


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
        thumbnails: :func:`thumbnail` of each image (or the decoded image itself when it is at
            most 64 pixels a side); ``None`` for an image that could not be decoded.

    Returns:
        ``(m, 256)`` int8, each row scaled so its largest component is +-127 (all zero for a
        constant or undecodable image). Each row depends on its image only.
    """
    out = np.zeros((len(thumbnails), SIZE), np.int8)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, small in enumerate(thumbnails):
        if small is not None and small.size:
            by_shape.setdefault(small.shape, []).append(i)
    for shape, same_shape in by_shape.items():
        if len(shape) == 3 and shape[2] != 1:  # small colour images as decoded (see read_block)
            out[same_shape] = signatures_of([thumbnail(thumbnails[i]) for i in same_shape])  # type: ignore[arg-type]
            continue
        h, w = shape[:2]  # (h, w) or (h, w, 1)
        # A few hundred KiB at a time, into arrays kept for the next block: fresh large arrays
        # cost a page fault per 4 KiB, which took most of the time.
        step = max(1, min(128, _BATCH_BYTES // (4 * h * w)))
        work = _scratch(step, h, w)
        for lo in range(0, len(same_shape), step):
            rows = same_shape[lo:lo + step]
            m = len(rows)
            stack, across, wide, v, peak = work.stack[:m], work.across[:m], work.wide[:m], work.v[:m], work.peak[:m]
            np.copyto(stack, np.array([thumbnails[i] for i in rows]).reshape(m, h, w))  # one small uint8 copy
            np.matmul(stack, _side_map_t32(w), out=across)  # exact in float32
            np.copyto(wide, across)
            np.matmul(_side_map(h), wide, out=v.reshape(m, SIDE, SIDE))  # exact in float64
            v -= v.sum(axis=1, keepdims=True) / SIZE  # exact: a sum of dyadic values, divided by 2**8
            np.maximum(v.max(axis=1), -v.min(axis=1), out=peak)
            flat = peak < 1e-3
            scale = np.where(flat, 0.0, 127.0 / np.where(flat, 1.0, peak))
            np.rint(np.multiply(v, scale[:, None], out=v), out=v)
            out[rows] = v
    return out


class _Scratch(NamedTuple):
    stack: np.ndarray  # (rows, h, w) float32
    across: np.ndarray  # (rows, h, 16) float32
    wide: np.ndarray  # (rows, h, 16) float64
    v: np.ndarray  # (rows, 256) float64
    peak: np.ndarray  # (rows,) float64


_SCRATCH = threading.local()


def _scratch(rows: int, h: int, w: int) -> _Scratch:
    """This thread's work arrays for ``rows`` images of ``h`` x ``w`` (the last size asked for
    is kept: a scan's blocks mostly hold images of one size)."""
    kept = getattr(_SCRATCH, "arrays", None)
    if kept is None or kept[0] != (rows, h, w):
        kept = ((rows, h, w), _Scratch(np.empty((rows, h, w), np.float32), np.empty((rows, h, SIDE), np.float32),
                                       np.empty((rows, h, SIDE), np.float64), np.empty((rows, SIZE), np.float64),
                                       np.empty(rows, np.float64)))
        _SCRATCH.arrays = kept
    return kept[1]


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


class _Space(NamedTuple):
    """The rows on the principal axes of their centred unit vectors, hashed."""

    codes: np.ndarray  # (tables, n) int64: each table's 46 sign bits, the first one highest (bit 62)
    radius2: np.ndarray  # (n,) float32 squared distances from the centre on the axes
    left: np.ndarray  # (n + 1, 18) float32 [y, |y|^2, 1] on the first 16 axes; the last row a dummy far from all
    right: np.ndarray  # (n + 1, 18) float32 [-2y, 1, |y|^2]: left[a] . right[b] = |y_a - y_b|^2 there,
    # a lower bound of the full squared distance


def _space(xs: np.ndarray, rng: np.random.Generator, tables: int) -> _Space:
    """Project the unit rows, centred, onto their :data:`_DIMS` main axes (the centre and the
    axes from a fixed sample of at most :data:`_SAMPLE` rows), and hash them there: each
    table's 46 random hyperplanes through the centre give a code whose first bit is the
    highest, so that sorting a table's codes puts every prefix's bucket in one range. One pass
    over a few rows at a time: the int8 rows are never all held as floats."""
    n = len(xs)
    rows = np.sort(rng.choice(n, min(n, _SAMPLE), replace=False))
    sample = unit_vectors(xs[rows])
    center = sample.mean(axis=0)
    sample -= center
    _, vectors = np.linalg.eigh((sample.T @ sample).astype(np.float64))
    axes = np.ascontiguousarray(vectors[:, ::-1][:, :_DIMS].astype(np.float32))
    shift = center @ axes
    # Each table's hyperplanes are two random orthonormal bases of the axes' space: orthogonal
    # directions cut the rows more independently than Gaussian ones.
    bases = np.linalg.qr(rng.standard_normal((2 * tables, _DIMS, _DIMS)))[0]
    proj = np.ascontiguousarray(
        bases.reshape(tables, 2, _DIMS, _DIMS).transpose(2, 0, 1, 3).reshape(_DIMS, tables, 2 * _DIMS)[:, :, :_BITS]
        .reshape(_DIMS, tables * _BITS), dtype=np.float32)
    f = _NEAR_DIMS
    out = _Space(np.empty((tables, n), np.int64), np.empty(n, np.float32),
                 np.empty((n + 1, f + 2), np.float32), np.empty((n + 1, f + 2), np.float32))
    step = _ROWS
    bits = np.zeros((step, tables, 64), bool)  # column 0 stays clear: the codes are >= 0
    for lo in range(0, n, step):
        xf = xs[lo:lo + step].astype(np.float32)
        m = len(xf)
        norm2 = np.einsum("ij,ij->i", xf, xf).astype(np.float64)  # integers below 2**24: exact
        y = (xf @ axes) * (1.0 / np.sqrt(norm2)).astype(np.float32)[:, None] - shift
        out.radius2[lo:lo + m] = np.einsum("ij,ij->i", y, y)
        np.greater((y @ proj).reshape(m, tables, _BITS), 0, out=bits[:m, :, 1:1 + _BITS])
        out.codes[:, lo:lo + m] = np.packbits(bits[:m].reshape(-1)).view(">i8").reshape(m, tables).T
        near, left, right = y[:, :f], out.left[lo:lo + m], out.right[lo:lo + m]
        sq = np.einsum("ij,ij->i", near, near)
        left[:, :f], left[:, f], left[:, f + 1] = near, sq, 1.0
        np.multiply(near, -2.0, out=right[:, :f])
        right[:, f], right[:, f + 1] = 1.0, sq
    out.left[n], out.right[n] = 0.0, 0.0
    out.left[n, f], out.left[n, f + 1] = 1e6, 1.0  # the dummy: 1e6 from every row
    out.right[n, f], out.right[n, f + 1] = 1.0, 1e6
    return out


def _bits_for(ordered: np.ndarray, bucket: float) -> int:
    """The fewest leading bits of sorted codes whose buckets hold at most ``bucket`` rows per
    row on average (the mean number of rows in a row's bucket, itself included: the
    comparisons a row costs).

    Images cluster (digits share a mean shape, many photos share a layout), so sign bits are
    correlated and ``log2(n)`` of them can leave buckets of thousands; bits are added until the
    buckets are small, which keeps the work per row about constant as the number of rows grows.
    Each table counts its own: some hyperplanes split the crowded shapes far better than others."""
    n = len(ordered)
    apart = ordered[1:] ^ ordered[:-1]  # a bucket of k bits ends where the first k bits differ

    def load(k: int) -> float:
        ends = np.flatnonzero(apart >= (1 << (_MAX_BITS - k)))
        sizes = np.diff(np.r_[0, ends + 1, n]).astype(np.float64)
        return float((sizes * sizes).sum() / n)

    lo, hi = 1, _BITS
    while lo < hi:
        mid = (lo + hi) // 2
        if load(mid) <= bucket:
            hi = mid
        else:
            lo = mid + 1
    return lo


def near_pairs(signatures: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *, tables: int = 12,
               bits: int | None = None, bucket: float = 32.0) -> Pairs:
    """Every pair of rows whose signatures' cosine similarity is at least ``threshold``.

    Args:
        signatures: ``(n, 256)`` int8 signatures (:func:`signature`).
        threshold: The cosine similarity at or above which two images are near duplicates.
        tables: Hash tables (random hyperplanes).
        bits: Sign bits per table, at most 46 (``None``: in each table, the fewest that leave
            about ``bucket`` rows in a row's bucket).
        bucket: The mean bucket load aimed at when ``bits`` is ``None``.

    Returns:
        The pairs, each checked exactly (cosine of the int8 vectors), ``a < b``, sorted.
    """
    x = np.ascontiguousarray(signatures, dtype=np.int8).reshape(-1, SIZE)
    live = np.flatnonzero(x.any(axis=1))
    if len(live) < 2:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    xs = x if len(live) == len(x) else x[live]
    n = len(xs)
    rng = np.random.default_rng(_SEED)
    if bits is None and n <= bucket:  # one bucket holds them all: compare every pair once
        bits, tables = 0, 1
    space = _space(xs, rng, tables)
    # Squared distance of unit vectors at the threshold, widened for float32 rounding.
    reach = np.float32(2.0 * (1.0 - threshold) + _SLACK)
    found = [np.zeros(0, np.int64)]
    free = _MAX_BITS - _BITS  # low bits no code uses
    for t in range(tables):
        if n <= 1 << free:  # the row numbers ride in the codes' free bits: one plain sort
            ordered = np.sort(space.codes[t] | np.arange(n))
            order = ordered & ((1 << free) - 1)
            ordered &= ~((1 << free) - 1)
        else:
            order = np.argsort(space.codes[t])
            ordered = space.codes[t][order]
        k = _bits_for(ordered, bucket) if bits is None else min(bits, _BITS)
        found.extend(_bucket_pairs(order, ordered >> (_MAX_BITS - k), space, reach))
    # Hyperplanes through the centre cut a pair near it almost at random: a row closer than
    # _CORE reaches has all its near duplicates closer than _CORE + 1 reaches, and those rows
    # are compared with each other, every pair (a crowd of near copies of one image is there);
    # when they are many, they are searched again around their own centre.
    core = np.flatnonzero(space.radius2 < reach * (_CORE + 1) ** 2)
    if 1 < len(core) and (len(core) <= _CORE_ROWS or len(core) == n):
        found.extend(_bucket_pairs(core, np.zeros(len(core), np.int64), space, reach))
    elif len(core) > 1:
        inner = near_pairs(xs[core], threshold, tables=tables, bucket=bucket)
        found.append(core[inner.a] * n + core[inner.b])  # core is sorted: a < b stays so
    # A pair is found in several tables: check each once.
    key = np.sort(np.concatenate(found))
    key = key[np.r_[True, key[1:] != key[:-1]][:len(key)]]  # unique (np.unique costs twice as much)
    a, b, sim = _check(xs, key // n, key % n, threshold)
    return Pairs(live[a].astype(np.int64), live[b].astype(np.int64), sim.astype(np.float32))


@functools.cache
def _size_classes() -> np.ndarray:
    """Bucket sizes up to :data:`_LARGE` are padded to the next of these (at most 25 % more)."""
    sizes = list(range(2, _SMALL + 1))
    while sizes[-1] < _LARGE:
        sizes.append(min(_LARGE, int(np.ceil(sizes[-1] * 1.25))))
    return np.array(sizes)


@functools.cache
def _upper(s: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(s, 1)


def _bucket_pairs(order: np.ndarray, ordered: np.ndarray, space: _Space, reach: np.float32) -> list[np.ndarray]:
    """``a * n + b`` (a < b) of the rows that share a bucket of one table and are within
    ``reach`` (squared) on the principal axes, a lower bound of their distance.

    ``order`` sorts the rows by bucket, ``ordered`` is their buckets in that order, so a bucket
    is a range of positions. Each pair of a bucket is compared once: buckets of up to
    :data:`_SMALL` rows pair by pair; larger ones as matrix products, many buckets of about one
    size at once (padded with the dummy row); the few largest one at a time, in blocks of rows
    against the rest of their bucket. ``order`` may hold only some of the rows."""
    n = len(space.left) - 1  # the dummy row's number
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rows = np.r_[order, n]  # the position after the last: the dummy row
    out = []
    firsts, seconds = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for s in range(2, _SMALL + 1):
        at = starts[sizes == s]
        i, j = _upper(s)
        firsts.append((at[:, None] + i).ravel())
        seconds.append((at[:, None] + j).ravel())
    a, b = rows[np.concatenate(firsts)], rows[np.concatenate(seconds)]
    d2 = np.einsum("ij,ij->i", np.take(space.left, a, axis=0), np.take(space.right, b, axis=0))
    out.append(_keys(a, b, d2 <= reach, n))
    classes = _size_classes()
    middle = (sizes > _SMALL) & (sizes <= _LARGE)
    mid_starts, mid_sizes = starts[middle], sizes[middle]
    size_class = np.searchsorted(classes, mid_sizes)
    for c in np.unique(size_class):
        p = int(classes[c])
        at, size = mid_starts[size_class == c], mid_sizes[size_class == c]
        span = np.arange(p)
        step = max(1, _CELLS // (p * p))
        for lo in range(0, len(at), step):
            pos = np.where(span < size[lo:lo + step, None], at[lo:lo + step, None] + span, len(order))
            members = rows[pos]
            d2 = np.matmul(np.take(space.left, members, axis=0), np.take(space.right, members, axis=0).transpose(0, 2, 1))
            hit = np.flatnonzero(d2 <= reach)
            which, i, j = hit // (p * p), hit // p % p, hit % p
            upper = i < j
            out.append(_keys(members[which[upper], i[upper]], members[which[upper], j[upper]], None, n))
    for at, size in zip(starts[sizes > _LARGE].tolist(), sizes[sizes > _LARGE].tolist()):
        members = rows[at:at + size]
        left = np.take(space.left, members, axis=0)
        right = np.take(space.right, members, axis=0)
        block = max(1, _CELLS // size)
        for lo in range(0, size, block):
            d2 = left[lo:lo + block] @ right[lo:].T  # this block's rows against themselves and all later rows
            i, j = np.nonzero(d2 <= reach)
            upper = i < j
            out.append(_keys(members[lo + i[upper]], members[lo + j[upper]], None, n))
    return out


def _keys(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None, n: int) -> np.ndarray:
    """``min * n + max`` of the pairs (those ``keep`` marks, when given)."""
    if keep is not None:
        a, b = a[keep], b[keep]
    return np.minimum(a, b) * n + np.maximum(a, b)


def cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-for-row cosine similarity of two sets of int8 signatures (0 where either is all zero).

    The dot products and squared norms are integers below 2**24, exact in float32, so only the
    final division rounds (in float64): the same value however the rows were found.
    """
    xf, yf = np.asarray(x, np.float32), np.asarray(y, np.float32)
    dot = np.einsum("ij,ij->i", xf, yf).astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", xf, xf).astype(np.float64) * np.einsum("ij,ij->i", yf, yf))
    return np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)


def _check(xs: np.ndarray, a: np.ndarray, b: np.ndarray,
           threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs whose cosine (of the int8 vectors, :func:`cosines`) reaches ``threshold``."""
    keep_a, keep_b, keep_s = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float64)]
    for lo in range(0, len(a), _CHUNK):
        ca, cb = a[lo:lo + _CHUNK], b[lo:lo + _CHUNK]
        sim = cosines(xs[ca], xs[cb])
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
