"""The ``hard`` strategy: pairs and triplets mined from a trained model's embeddings.

For each anchor image, a negative is drawn uniformly from its ``hard_k`` nearest neighbours
of *other* classes, and a positive from its ``hard_k`` *farthest* neighbours of its own class,
all in embedding space (squared L2) and within the anchor's split. The embeddings come from
``pairgen embed RUN SOURCE --out embeddings.parquet`` and are set with ``[sample] embeddings``.

Distances are computed in blocks of anchors (``O(n^2 d)`` per split, ``O(block x n)``
memory), so splits of tens of thousands of images are fine.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from pairgen.errors import SampleError
from pairgen.sampling.base import ClassIndex, PairSampler, Positions, SampleParams, TripletSampler, per_anchor

_BLOCK_ENTRIES = 1 << 22  # anchors x images per distance block


def load_embeddings(path: str | os.PathLike | None, images: pd.DataFrame) -> np.ndarray:
    """Read an embeddings Parquet file and align it with a catalog's ``image_id``.

    Rows are matched by ``path`` when both sides have it (so a re-scan that renumbers images
    still lines up), else by ``image_id``.

    Args:
        path: File written by ``pairgen embed``.
        images: The catalog images (``image_id`` and, ideally, ``path``).

    Returns:
        ``float32`` array ``[max image_id + 1, dim]``; row ``i`` is image ``i``'s embedding.

    Raises:
        SampleError: If the file is unset, unreadable, or lacks a catalog image.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path:
        raise SampleError("--strategy hard needs embeddings: set [sample] embeddings = \"embeddings.parquet\" "
                          "(written by `pairgen embed RUN SOURCE --out embeddings.parquet`).")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise SampleError(f"cannot read embeddings file '{path}' ({exc}); write it with `pairgen embed`.") from None
    if "embedding" not in table.column_names:
        raise SampleError(f"embeddings file '{path}' has no 'embedding' column; write it with `pairgen embed`.")
    column = table.column("embedding").combine_chunks()
    vectors = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float32)
    vectors = vectors.reshape(len(column), -1) if len(column) else vectors.reshape(0, 0)
    key = "path" if "path" in table.column_names and "path" in images.columns else "image_id"
    lookup = pd.Series(np.arange(len(column)), index=table.column(key).to_pandas())
    rows = lookup.reindex(images[key].to_numpy()).to_numpy()
    missing = np.isnan(rows.astype(np.float64))
    if missing.any():
        example = images[key].to_numpy()[np.flatnonzero(missing)[0]]
        raise SampleError(f"embeddings file '{path}' has no row for {int(missing.sum())} catalog image(s) "
                          f"(e.g. {key}={example!r}); re-run `pairgen embed RUN SOURCE --out {path}` on this source.")
    ids = images["image_id"].to_numpy(np.int64)
    out = np.zeros((int(ids.max()) + 1 if ids.size else 0, vectors.shape[1]), np.float32)
    out[ids] = vectors[rows.astype(np.int64)]
    return out


def _split_embeddings(index: ClassIndex, params: SampleParams) -> np.ndarray:
    emb = params.embeddings
    if emb is None:
        raise SampleError("--strategy hard needs embeddings: set [sample] embeddings = \"embeddings.parquet\" "
                          "(written by `pairgen embed RUN SOURCE --out embeddings.parquet`).")
    emb = np.asarray(emb, np.float32)
    if emb.ndim != 2 or (index.n and int(index.ids.max()) >= emb.shape[0]):
        raise SampleError(f"embeddings must be an array [n_images, dim] indexed by image_id; received shape "
                          f"{emb.shape} for image ids up to {int(index.ids.max()) if index.n else 0}.")
    return emb[index.ids]


def _pick(scores: np.ndarray, valid: np.ndarray, k: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """For each row, ``draws`` columns among the ``k`` lowest ``scores`` (distinct while enough exist)."""
    kk = min(k, scores.shape[1])
    cand = np.argpartition(scores, kk - 1, axis=1)[:, :kk]
    avail = np.minimum(valid, kk)
    keys = rng.random(cand.shape)
    # Excluded images score inf; they sort last, so each row's first ``avail`` keys are eligible.
    keys[~np.isfinite(np.take_along_axis(scores, cand, axis=1))] = np.inf
    order = np.argsort(keys, axis=1)
    cols = np.arange(draws)[None, :] % np.maximum(avail, 1)[:, None]
    return np.take_along_axis(cand, np.take_along_axis(order, cols, axis=1), axis=1)


def hard_positions(index: ClassIndex, emb: np.ndarray, anchors: np.ndarray, *, k: int, n_pos: int,
                   n_neg: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hard positive ``[len(anchors), n_pos]`` and negative ``[len(anchors), n_neg]`` positions.

    Positives: among each anchor's ``k`` farthest same-class images (never itself);
    negatives: among its ``k`` nearest other-class images.
    """
    sq = np.einsum("ij,ij->i", emb, emb)
    pos_out = np.zeros((anchors.size, n_pos), np.int64)
    neg_out = np.zeros((anchors.size, n_neg), np.int64)
    block = max(1, _BLOCK_ENTRIES // max(index.n, 1))
    for start in range(0, anchors.size, block):
        a = anchors[start:start + block]
        dist = sq[a][:, None] - 2.0 * (emb[a] @ emb.T) + sq[None, :]
        same = index.dense[a][:, None] == index.dense[None, :]
        size = index.counts[index.dense[a]]
        if n_neg:
            neg_out[start:start + a.size] = _pick(np.where(same, np.inf, dist), index.n - size, k, n_neg, rng)
        if n_pos:
            far = np.where(same, -dist, np.inf)
            far[np.arange(a.size), a] = np.inf  # never the anchor itself
            pos_out[start:start + a.size] = _pick(far, size - 1, k, n_pos, rng)
    return pos_out, neg_out


class HardPairs(PairSampler):
    """Per anchor image: ``positives_per_image`` hard positives and ``negatives_per_image``
    hard negatives (``hard_k`` farthest same-class / nearest other-class neighbours)."""

    name = "hard"

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        n_pos, n_neg = params.positives_per_image, params.negatives_per_image
        if n_neg:
            index.require_negatives("negative pairs")
        if n_pos + n_neg == 0 or index.n == 0:
            return np.arange(0), np.arange(0), np.arange(0)
        emb = _split_embeddings(index, params)
        anchors = index.rows
        has_pos = index.positive_anchors(anchors, params, "positive pairs") if n_pos else None
        if has_pos is not None:  # single-image classes: negatives only
            with_pos = anchors[has_pos]
            pos, _ = hard_positions(index, emb, with_pos, k=params.hard_k, n_pos=n_pos, n_neg=0, rng=rng)
            _, neg = hard_positions(index, emb, anchors, k=params.hard_k, n_pos=0, n_neg=n_neg, rng=rng)
            return per_anchor(has_pos, (np.repeat(with_pos[:, None], n_pos, axis=1),
                                        np.repeat(anchors[:, None], n_neg, axis=1)), (pos, neg))
        pos, neg = hard_positions(index, emb, anchors, k=params.hard_k, n_pos=n_pos, n_neg=n_neg, rng=rng)
        label = np.tile(np.repeat(np.array([1, 0]), [n_pos, n_neg]), anchors.size)
        return np.repeat(anchors, n_pos + n_neg), np.hstack([pos, neg]).ravel(), label


class HardTriplets(TripletSampler):
    """Per anchor image: ``positives_per_image`` triplets, each with a hard positive and a hard negative."""

    name = "hard"

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        k = params.positives_per_image
        if k == 0 or index.n == 0:
            return np.arange(0), np.arange(0), np.arange(0)
        index.require_negatives("triplet negatives")
        has_pos = index.positive_anchors(index.rows, params, "triplet positives")
        emb = _split_embeddings(index, params)
        anchors = index.rows if has_pos is None else index.rows[has_pos]
        pos, neg = hard_positions(index, emb, anchors, k=params.hard_k, n_pos=k, n_neg=k, rng=rng)
        return np.repeat(anchors, k), pos.ravel(), neg.ravel()
