"""A picture of retrieval: a few queries of a split and their nearest gallery images (``retrieval.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pairgen.errors import ConfigError
from pairgen.train import plots
from pairgen.train.data import DatasetInfo, require_split
from pairgen.train.evaluation import SCORE_BATCH, Run, predict_fixed, split_arrays, split_images
from pairgen.train.retrieval import neighbours
from pairgen.train.timing import NO_TIMER, PhaseTimer


def retrieval_examples(run: Run, info: DatasetInfo, split: str, out: str | Path, *, queries: int = 8, k: int = 6,
                       gallery: str | None = None, seed: int = 0,
                       arrays: dict[str, dict[str, np.ndarray]] | None = None,
                       timer: PhaseTimer = NO_TIMER) -> Path:
    """Draw ``queries`` images of ``split`` (drawn with ``seed``), each with its ``k`` nearest, to ``out``.

    Args:
        run: The loaded run.
        info: The dataset.
        split: Where the queries come from.
        out: The PNG to write.
        queries: How many queries (rows).
        k: Neighbours per query.
        gallery: The split searched (``None`` = ``split``, each query left out of its own neighbours).
        seed: Seed of the query draw.
        arrays: Splits already in memory (split name to arrays); others are read and added.
        timer: Where the time goes.

    Returns:
        The written path.

    Raises:
        ConfigError: If ``queries`` or ``k`` is below 1.
    """
    if queries < 1 or k < 1:
        raise ConfigError(f"--examples and the neighbours per query must be >= 1; received {queries} and {k}.")
    arrays = {} if arrays is None else arrays
    require_split(info, split, "--split")
    q_img, q_cls = split_images(info, split_arrays(info, split, arrays, timer=timer))
    g_img, g_cls = q_img, q_cls
    if gallery is not None:
        require_split(info, gallery, "--gallery")
        g_img, g_cls = split_images(info, split_arrays(info, gallery, arrays, timer=timer))
    with timer.phase("plots"):
        rows = np.sort(np.random.default_rng(seed).choice(len(q_img), size=min(queries, len(q_img)), replace=False))
        q_emb = predict_fixed(run.tower, [q_img], SCORE_BATCH)
        g_emb = None if gallery is None else predict_fixed(run.tower, [g_img], SCORE_BATCH)
        k = min(k, len(g_img) - (1 if gallery is None else 0))
        found = neighbours(q_emb, k, gallery=g_emb, rows=rows)
        title = f"{split} queries, nearest in {gallery or split} (green: same class, red: another)"
        return plots.plot_retrieval(q_img[rows], q_cls[rows], g_img[found], g_cls[found], out, title=title)
