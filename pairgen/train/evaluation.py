"""Evaluate a trained run on a dataset split: threshold from val, pair/triplet/one-shot metrics.

The decision threshold is always chosen on the validation split (``train`` when the dataset
has no ``val``), never on the split being evaluated unless that split *is* the validation
split. One-shot trials use the split's distinct images, taken from its records
(:func:`pairgen.reading.tfdata.load_arrays`, or :func:`pairgen.load_numpy` without TensorFlow; first
occurrence of each image id), so they are exactly
the pixels the model sees; with augmented builds that is the first jittered copy.

Each split is read into memory once (uint8) and serves both the pair scores and the one-shot
images; every model call gets exactly the same batch shape (the last batch zero-padded), so
each function is traced or compiled once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairgen.extras import require_keras

require_keras("pairgen evaluate")  # Keras or its backend missing: one line naming the extra, no traceback
import keras  # noqa: E402
import numpy as np
import pandas as pd

from pairgen.dataset import layout
from pairgen.errors import ConfigError, DatasetError
from pairgen.reading.arrays import load_numpy
from pairgen.reading.checks import raise_dataset_errors
from pairgen.train import layers as _layers  # noqa: F401  (registers the custom layers)
from pairgen.train import metrics as M
from pairgen.train.config import HEAD_OUTPUT
from pairgen.train.data import DatasetInfo, open_dataset, require_split, resolve_reader
from pairgen.train.models import pair_model, triplet_model
from pairgen.train.retrieval import retrieval_metrics
from pairgen.train.timing import NO_TIMER, PhaseTimer

DEFAULT_WAYS = (5, 20)
DEFAULT_TRIALS = 400
SCORE_BATCH = 256  # rows per scoring call (one fixed shape)
_HEAD_BATCH = 4096  # embedding pairs per one-shot head call


@dataclass(frozen=True)
class Run:
    """A trained run folder, loaded."""

    path: Path
    tower: keras.Model
    head: keras.Model
    config: dict[str, Any]

    @property
    def output(self) -> str:
        """``distance`` or ``probability``."""
        return HEAD_OUTPUT[self.config["train"]["head"]]

    def to_distance(self, out: np.ndarray) -> np.ndarray:
        """Head outputs as distances (``1 - p`` for probability heads)."""
        out = np.asarray(out, np.float64).reshape(-1)
        return 1.0 - out if self.output == "probability" else out


def load_run(run: str | os.PathLike) -> Run:
    """Load ``RUN/model.keras`` and ``RUN/config.json``.

    Raises:
        ConfigError: If the folder is not a finished run.
    """
    path = Path(run)
    model_file, config_file = path / "model.keras", path / "config.json"
    if not model_file.is_file() or not config_file.is_file():
        raise ConfigError(f"run folder '{path}' has no model.keras/config.json; train one with "
                          f"`pairgen train DATASET --out {path}`.")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    model = keras.models.load_model(model_file, compile=False)
    return Run(path, model.get_layer("tower"), model.get_layer("head"), config)


@dataclass(frozen=True)
class Scores:
    """Distances of one split: pairs (``dist``, ``labels``) and, for triplets, ``d_ap``/``d_an``."""

    dist: np.ndarray
    labels: np.ndarray
    d_ap: np.ndarray | None = None
    d_an: np.ndarray | None = None


def _read_split(info: DatasetInfo, split: str, *, normalize: bool) -> dict[str, np.ndarray]:
    """A split as arrays in manifest order: through tf.data when TensorFlow is there, else pairgen's reader."""
    if resolve_reader("auto") == "tfdata":
        from pairgen.reading.tfdata import load_arrays

        return load_arrays(info.path, split, normalize=normalize)
    return load_numpy(info.path, split, normalize=normalize)


def split_arrays(info: DatasetInfo, split: str, cache: dict[str, dict[str, np.ndarray]] | None = None, *,
                 timer: PhaseTimer = NO_TIMER) -> dict[str, np.ndarray]:
    """A split's arrays (uint8 images), read once: ``cache`` holds the splits already in memory.

    A cached split may hold float32 images in [0, 1] instead (the arrays a trainer fitted on);
    scoring treats both alike.
    """
    if cache is not None and split in cache:
        return cache[split]
    with timer.phase(f"read_{split}" if split in ("train", "val", "test") else "read_other"):
        arrays = _read_split(info, split, normalize=False)
    if cache is not None:
        cache[split] = arrays
    return arrays


def _as_float(images: np.ndarray) -> np.ndarray:
    """Model input: uint8 pixels scaled to [0, 1] exactly as the loaders scale them; floats as they are."""
    if images.dtype != np.uint8:
        return images
    out = images.astype(np.float32)
    out *= np.float32(1.0 / 255.0)
    return out


def predict_fixed(model: keras.Model, inputs: Sequence[np.ndarray], batch: int) -> np.ndarray:
    """``model`` outputs for all rows of ``inputs``, always in batches of exactly ``batch`` rows.

    The last batch is padded with zeros (and its padding dropped from the output), so one
    compiled function of one input shape serves every call: no retracing, no recompiling.
    """
    n = len(inputs[0])
    outs = []
    for start in range(0, n, batch):
        part = [_as_float(x[start:start + batch]) for x in inputs]
        real = len(part[0])
        if real < batch:
            part = [np.concatenate([p, np.zeros((batch - real, *p.shape[1:]), p.dtype)]) for p in part]
        out = model.predict_on_batch(part if len(part) > 1 else part[0])
        outs.append(np.asarray(keras.ops.convert_to_numpy(out))[:real])
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def _roles(info: DatasetInfo) -> tuple[str, ...]:
    return info.schema.role_names


@raise_dataset_errors
def score_split(run: Run, info: DatasetInfo, split: str, *, arrays: dict[str, np.ndarray] | None = None,
                scorer: keras.Model | None = None) -> Scores:
    """Distances of every record of ``split``; a triplet gives a positive (a, p) and a negative (a, n) pair.

    Args:
        run: The loaded run.
        info: The dataset.
        split: Split to score.
        arrays: The split's arrays if already in memory (else it is read).
        scorer: The run's pair or triplet scoring model, to reuse one compiled function.
    """
    require_split(info, split, "--split")
    arrays = split_arrays(info, split) if arrays is None else arrays
    scorer = scorer or _scorer(run, info)
    out = predict_fixed(scorer, [arrays[r] for r in _roles(info)], SCORE_BATCH)
    if info.kind == "pairs":
        return Scores(run.to_distance(out), arrays["label"].astype(np.int64))
    d_ap, d_an = run.to_distance(out[:, 0]), run.to_distance(out[:, 1])
    labels = np.r_[np.ones(d_ap.size, np.int64), np.zeros(d_an.size, np.int64)]
    return Scores(np.r_[d_ap, d_an], labels, d_ap, d_an)


def _scorer(run: Run, info: DatasetInfo) -> keras.Model:
    return pair_model(run.tower, run.head) if info.kind == "pairs" else triplet_model(run.tower, run.head)


def split_images(info: DatasetInfo, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct images and their class ids: an images split's records, or a pairs or triplets
    split's images taken from its records (first occurrence of each id, in id order)."""
    if info.kind == "images":
        return arrays["image"], arrays["class"]
    roles = _roles(info)
    ids = np.concatenate([arrays[f"{r}_id"] for r in roles])
    classes = np.concatenate([arrays[f"{r}_class"] for r in roles])
    first = np.unique(ids, return_index=True)[1]
    n = len(arrays["record_id"])
    role, row = first // n, first % n  # ids are concatenated role by role
    images = np.empty((len(first), *arrays[roles[0]].shape[1:]), arrays[roles[0]].dtype)
    for i, r in enumerate(roles):
        images[role == i] = arrays[r][row[role == i]]
    return images, classes[first]


def retrieval(run: Run, info: DatasetInfo, split: str, *, gallery: str | None = None,
              arrays: dict[str, dict[str, np.ndarray]] | None = None,
              timer: PhaseTimer = NO_TIMER) -> dict[str, Any]:
    """:func:`pairgen.retrieval_metrics` of the tower's embeddings of ``split``'s distinct images.

    Args:
        run: The loaded run.
        info: The dataset.
        split: The query split.
        gallery: The split searched (``None`` = the query split itself, each query left out
            of its own neighbours).
        arrays: Splits already in memory (split name to arrays); others are read and added.
        timer: Where the embedding and search time go.

    Returns:
        The metrics (NaN as ``None``, Recall@K keys as strings: JSON as it is written) with
        ``split`` and ``gallery_split``.
    """
    arrays = {} if arrays is None else arrays
    q_img, q_cls = split_images(info, split_arrays(info, split, arrays, timer=timer))
    with timer.phase("embedding"):
        q_emb = predict_fixed(run.tower, [q_img], SCORE_BATCH)
        g_emb, g_cls = None, None
        if gallery is not None:
            g_img, g_cls = split_images(info, split_arrays(info, gallery, arrays, timer=timer))
            g_emb = predict_fixed(run.tower, [g_img], SCORE_BATCH)
    with timer.phase("retrieval"):
        m = retrieval_metrics(q_emb, q_cls, gallery=g_emb, gallery_classes=g_cls)
    m["recall_at_k"] = {str(k): v for k, v in m["recall_at_k"].items()}
    out = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in m.items()}
    out["recall_at_k"] = {k: (None if np.isnan(v) else v) for k, v in m["recall_at_k"].items()}
    out.update(split=split, gallery_split=gallery or split)
    return out


def one_shot(run: Run, info: DatasetInfo, split: str, *, ways: Sequence[int], trials: int, seed: int,
             arrays: dict[str, np.ndarray] | None = None, timer: PhaseTimer = NO_TIMER) -> dict[str, Any]:
    """N-way one-shot accuracy for each N in ``ways`` (Koch et al.'s protocol).

    ``arrays`` are the split's arrays if already in memory (else the split is read).

    Returns:
        ``{"5-way": {"accuracy", "trials"}, ...}``; an N that the split cannot support is
        ``{"skipped": reason}``.
    """
    out: dict[str, Any] = {}
    if not ways:
        return out
    images, classes = split_images(info, split_arrays(info, split) if arrays is None else arrays)
    with timer.phase("embedding"):
        emb = predict_fixed(run.tower, [images], SCORE_BATCH)
    n_classes = int(np.unique(classes).size)
    with timer.phase("one_shot"):
        for n in ways:
            rng = np.random.default_rng(np.random.SeedSequence([seed, n]))
            trial = M.one_shot_trials(classes, ways=n, trials=trials, rng=rng)
            if trial is None:
                reason = f"split '{split}' has {n_classes} classes (needs {n}, one with 2+ images)"
                out[f"{n}-way"] = {"skipped": reason}
                continue
            query, cands, target = trial
            q = np.repeat(emb[query], n, axis=0)
            dist = run.to_distance(predict_fixed(run.head, [q, emb[cands.ravel()]], _HEAD_BATCH))
            out[f"{n}-way"] = {"accuracy": M.one_shot_accuracy(dist.reshape(-1, n), target), "trials": int(trials)}
    return out


def _classes(info: DatasetInfo, split: str) -> set[int]:
    frame = pd.read_parquet(info.path / layout.manifest(split), columns=list(info.schema.class_columns))
    return set(np.unique(frame.to_numpy()).tolist())


def _summary(scores: Scores, threshold: float) -> dict[str, Any]:
    out = M.pair_metrics(scores.dist, scores.labels, threshold)
    out["roc_auc"] = M.roc_auc(scores.dist, scores.labels)
    out["eer"] = M.equal_error_rate(scores.dist, scores.labels)
    if scores.d_ap is not None and scores.d_an is not None:
        out["triplet_accuracy"] = M.triplet_accuracy(scores.d_ap, scores.d_an)
    return out


def _metrics(run: Run, info: DatasetInfo, split: str, thr_split: str, scores: dict[str, Scores]) -> dict[str, Any]:
    """Pair metrics of ``split`` at the threshold chosen on ``thr_split``, and the dataset's identity."""
    threshold = M.choose_threshold(scores[thr_split].dist, scores[thr_split].labels)
    result = _summary(scores[split], threshold)
    result["pair_accuracy"] = result.pop("accuracy")
    val = _summary(scores[thr_split], threshold)
    result.update({
        "threshold": threshold, "threshold_split": thr_split,
        "score": "distance" if run.output == "distance" else "1 - p(same)",
        "threshold_split_metrics": {k: val[k] for k in ("accuracy", "roc_auc", "eer", "pairs")},
        **_identity(run, info, split),
    })
    return result


def _identity(run: Run, info: DatasetInfo, split: str) -> dict[str, Any]:
    """The evaluated split, the dataset, what the run was trained on, and whether the split's classes are new."""
    trained = _classes(info, "train") if info.records("train") else set()
    return {"split": split,
            "dataset": {"name": info.card.name or None, "version": info.card.version or None,
                        "fingerprint": info.fingerprint, "kind": info.kind},
            "trained_on": run.config.get("dataset", {}).get("fingerprint"),
            "split_match": split_match(run, info),
            "class_disjoint": bool(trained) and not (_classes(info, split) & trained)}


def split_match(run: Run, info: DatasetInfo) -> bool | None:
    """Whether the run's training dataset and ``info`` split the same images the same way.

    Compares split fingerprints (:func:`pairgen.split_fingerprint`); ``None`` when
    the run or the dataset predates them, so nothing can be said.
    """
    trained = run.config.get("dataset", {}).get("split_fingerprint")
    here = info.card.split_fingerprint
    return None if trained is None or here is None else trained == here


def evaluate_scores(run: Run, info: DatasetInfo, split: str, *, ways: Sequence[int] = DEFAULT_WAYS,
                    trials: int = DEFAULT_TRIALS, seed: int = 0,
                    arrays: dict[str, dict[str, np.ndarray]] | None = None,
                    timer: PhaseTimer = NO_TIMER) -> tuple[dict[str, Any], dict[str, Scores]]:
    """:func:`evaluate` on a loaded run, also returning the scores (for plots).

    ``arrays`` maps split names to arrays already in memory (e.g. the ones a trainer fitted
    on); every other split is read once and added to it.
    """
    arrays = {} if arrays is None else arrays
    thr_split = "val" if info.records("val") else "train"
    require_split(info, thr_split, "--split")
    require_split(info, split, "--split")
    data = {s: split_arrays(info, s, arrays, timer=timer) for s in dict.fromkeys((thr_split, split))}
    with timer.phase("evaluation"):
        scorer = _scorer(run, info)
        scores = {s: score_split(run, info, s, arrays=a, scorer=scorer) for s, a in data.items()}
        result = _metrics(run, info, split, thr_split, scores)
    result["one_shot"] = one_shot(run, info, split, ways=ways, trials=trials, seed=seed, arrays=data[split],
                                  timer=timer)
    result["retrieval"] = {s: retrieval(run, info, s, arrays=arrays, timer=timer) for s in data}
    return result, scores


def evaluate(run: str | os.PathLike, dataset: str | os.PathLike, *, split: str = "test",
             ways: Sequence[int] = DEFAULT_WAYS, trials: int = DEFAULT_TRIALS, seed: int = 0,
             gallery: str | None = None) -> dict[str, Any]:
    """Evaluate the run folder ``run`` on ``split`` of ``dataset``.

    Args:
        run: A folder written by ``pairgen train``.
        dataset: A dataset directory (``dir@version`` accepted): pairs, triplets or images.
        split: The split to report.
        ways: N values of the N-way one-shot test (pairs and triplets).
        trials: One-shot trials per N.
        seed: Seed of the one-shot trials.
        gallery: Search this split for the queries of ``split`` (retrieval only; ``None`` =
            each split searched against itself).

    Returns:
        A JSON-ready dict. Pairs and triplets: ``pair_accuracy``, ``roc_auc``, ``eer``,
        ``precision``, ``recall``, counts, ``threshold`` (chosen on ``threshold_split``),
        ``triplet_accuracy`` for triplet data, ``one_shot`` per N. Every kind: ``retrieval``
        (split name to :func:`retrieval`'s metrics: the threshold split and ``split``, or
        ``split`` against ``gallery``), ``class_disjoint``, ``split_match`` (whether the run
        was trained on a dataset with this dataset's split assignment; ``None`` when a run or
        card predates split fingerprints) and the dataset's identity.

    Raises:
        ConfigError: If ``run`` is not a run folder or its input shape does not fit the dataset.
        DatasetError: If the dataset or a split is missing.
    """
    if trials <= 0:
        raise ConfigError(f"--trials must be > 0; received: --trials {trials}.")
    loaded = load_run(run)
    info = open_dataset(dataset)
    want = tuple(int(x) for x in loaded.tower.input_shape[1:])
    if want != info.shape:
        raise DatasetError(f"dataset '{info.path}' has {info.shape[0]}x{info.shape[1]}x{info.shape[2]} images but "
                           f"run '{loaded.path}' expects {want[0]}x{want[1]}x{want[2]}; rebuild the dataset "
                           "with matching --image-size/--channels.")
    require_split(info, split, "--split")
    if gallery is not None:
        require_split(info, gallery, "--gallery")
    if info.kind == "images" or gallery is not None:
        arrays: dict[str, dict[str, np.ndarray]] = {}
        result = _identity(loaded, info, split) if info.kind == "images" else \
            evaluate_scores(loaded, info, split, ways=ways, trials=trials, seed=seed, arrays=arrays)[0]
        result["retrieval"] = {split: retrieval(loaded, info, split, gallery=gallery, arrays=arrays)}
        if gallery is None and info.kind == "images":
            other = "val" if info.records("val") and split != "val" else None
            if other:
                result["retrieval"][other] = retrieval(loaded, info, other, arrays=arrays)
        return result
    return evaluate_scores(loaded, info, split, ways=ways, trials=trials, seed=seed)[0]
