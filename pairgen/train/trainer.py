"""Train a Siamese model on a pairgen dataset and write a complete run folder.

A run folder holds::

    model.keras       the full Siamese model (pairs: [a, b] -> head output;
                      triplets: [anchor, positive, negative] -> [d(a,p), d(a,n)])
    embedding.keras   the tower alone (image -> embedding), for search and hard mining
    history.csv       loss, val_loss and learning rate per epoch
    metrics.json      what ``pairgen evaluate RUN DATASET --json`` prints for the test split
    config.json       the resolved training settings, the dataset's fingerprint, versions
    curves.png, distances.png, roc.png
    retrieval.png     a few test queries and their nearest test images, green/red by class
    timings.json      seconds per phase (reading, compiling, training, evaluation, plots, ...)
    checkpoints/best.weights.h5   the weights with the lowest val loss (restored at the end;
                      the highest val MAP@R with ``select_by="map-at-r"``)

The folder is written beside ``out`` and renamed into place when the run is complete
(:mod:`pairgen.train.runfolder`): a run that fails or is interrupted leaves nothing behind, and a
run replaced with ``--overwrite`` stays until its successor is whole. A shard found damaged or
exchanged while training ends the run with the one-line error naming it
(:func:`pairgen.reading.checks.raise_dataset_errors`).

The same code runs on CPU, one GPU, or several GPUs (``MirroredStrategy``, TensorFlow
backend). With ``KERAS_BACKEND=jax`` or ``torch`` the reader is ``numpy`` (``auto`` picks it
on every backend but TensorFlow) and it trains on one device without needing TensorFlow.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any, cast

from pairgen.extras import require_keras

require_keras("pairgen train")  # Keras or its backend missing: one line naming the extra, no traceback
import keras  # noqa: E402
import numpy as np
import pandas as pd

import pairgen
from pairgen.errors import ConfigError
from pairgen.reading.arrays import load_numpy
from pairgen.reading.checks import raise_dataset_errors
from pairgen.train import backend, pk, plots
from pairgen.train.config import TrainConfig
from pairgen.train.data import DatasetInfo, fit_batches, fit_inputs, open_dataset, require_split, resolve_reader
from pairgen.train.evaluation import SCORE_BATCH, Run, evaluate_scores, predict_fixed, retrieval, split_images
from pairgen.train.examples import retrieval_examples
from pairgen.train.losses import make_loss
from pairgen.train.metrics import roc_auc, roc_curve
from pairgen.train.models import build_head, build_tower, pair_model, triplet_model, triplet_train_model
from pairgen.train.optimizers import make_optimizer
from pairgen.train.retrieval import retrieval_metrics
from pairgen.train.runfolder import run_folder
from pairgen.train.timing import PhaseTimer

RUN_FILES = ("model.keras", "embedding.keras", "history.csv", "metrics.json", "config.json",
             "curves.png", "distances.png", "roc.png", "retrieval.png", "timings.json")
RUN_NAMES = frozenset((*RUN_FILES, "checkpoints"))  # what --overwrite may replace


class _LogLearningRate(keras.callbacks.Callback):
    """Adds the learning rate at the end of each epoch to the logs (before CSVLogger writes them)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def build_model(config: TrainConfig, shape: tuple[int, int, int],
                steps: int) -> tuple[keras.Model, keras.Model, keras.Model]:
    """Tower, head and the compiled training model of a resolved ``config`` for images of ``shape``.

    ``steps`` is the number of optimizer steps of the whole run (the cosine schedule's length).
    """
    tower = build_tower(config.model, shape, embedding_dim=config.embedding_dim, width=config.width,
                        weights=config.weights)
    head = build_head(config.head, int(tower.output_shape[-1]), distance=config.distance)
    model = triplet_train_model(tower) if config.loss == "triplet" else pair_model(tower, head)
    # --jit asks for XLA. Without it the TensorFlow backend runs a plain tf.function, while
    # JAX must still jit (its jit_compile=False means op-by-op eager execution).
    jit: bool | str = True if config.jit else (False if backend.name() == "tensorflow" else "auto")
    model.compile(optimizer=make_optimizer(config, steps), loss=make_loss(config), jit_compile=jit,
                  steps_per_execution=backend.steps_per_execution(config.steps_per_execution))
    return tower, head, model


def _callbacks(out: Path, has_val: bool, patience: int,
               val_map: _ValMapAtR | None = None) -> list[keras.callbacks.Callback]:
    monitor, mode = ("val_map_at_r", "max") if val_map is not None else ("val_loss" if has_val else "loss", "min")
    cbs: list[keras.callbacks.Callback] = [
        _LogLearningRate(),
        *([val_map] if val_map is not None else []),  # before the callbacks that read its log entry
        keras.callbacks.CSVLogger(str(out / "history.csv")),
        keras.callbacks.ModelCheckpoint(str(out / "checkpoints" / "best.weights.h5"), monitor=monitor, mode=mode,
                                        save_best_only=True, save_weights_only=True),
        keras.callbacks.TerminateOnNaN(),
    ]
    if patience and has_val:
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience))
    return cbs


class _ValMapAtR(keras.callbacks.Callback):
    """Logs ``val_map_at_r``: MAP@R of the val images (each searched among the others) after each epoch."""

    def __init__(self, images: np.ndarray, classes: np.ndarray) -> None:
        super().__init__()
        self._images, self._classes = images, classes

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            emb = predict_fixed(self.model, [self._images], SCORE_BATCH)
            logs["val_map_at_r"] = float(retrieval_metrics(emb, self._classes)["map_at_r"])


class _EpochTimes(keras.callbacks.Callback):
    """Appends each epoch's wall time (validation included) to a :class:`PhaseTimer`."""

    def __init__(self, timer: PhaseTimer) -> None:
        super().__init__()
        self._timer, self._start = timer, 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._timer.epoch_seconds.append(time.perf_counter() - self._start)


def _read_fit_split(info: DatasetInfo, split: str, timer: PhaseTimer,
                    arrays: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Read a split into memory once (numpy reader); kept in ``arrays`` for the evaluation."""
    with timer.phase(f"read_{split}" if split in ("train", "val") else "read_other"):
        arrays[split] = load_numpy(info.path, split)
    return arrays[split]


@raise_dataset_errors
def _fit(config: TrainConfig, info: DatasetInfo, out: Path, verbose: int, strategy: Any,
         timer: PhaseTimer, arrays: dict[str, dict[str, np.ndarray]]) -> tuple[keras.Model, keras.Model, int]:
    """Build under ``strategy``, fit and restore the best weights; returns tower, head and the epochs run.

    With the numpy reader the splits read for fitting are left in ``arrays`` (split name to
    the :func:`pairgen.load_numpy` arrays) so the evaluation does not read them again.
    """
    if info.kind == "images":
        return _fit_images(config, info, out, verbose, strategy, timer)
    has_val = info.records(config.val_split) > 0
    steps = -(-info.records(config.train_split) // config.batch_size) * config.epochs
    callbacks = _callbacks(out, has_val, config.patience) + [_EpochTimes(timer)]
    if config.reader == "numpy":
        x, y = fit_inputs(info, _read_fit_split(info, config.train_split, timer, arrays), mining=config.mining)
        val = fit_inputs(info, _read_fit_split(info, config.val_split, timer, arrays),
                         mining=config.mining) if has_val else None
        kw: dict[str, Any] = {"x": x, "y": y, "batch_size": config.batch_size, "validation_data": val,
                              "shuffle": True}
    else:
        batches = functools.partial(fit_batches, info, batch_size=config.batch_size, seed=config.seed,
                                    mining=config.mining)
        with timer.phase("read_train"):  # builds the streaming pipelines; the reading happens in fit
            train_ds = batches(config.train_split, shuffle=True)
            val_ds = batches(config.val_split, shuffle=False) if has_val else None
        kw = {"x": train_ds, "validation_data": val_ds, "shuffle": False}
    with timer.phase("build_compile"), strategy.scope():
        tower, head, model = build_model(config, info.shape, steps)
    return tower, head, _train(model, config, out, verbose, callbacks, kw, timer)


def _fit_images(config: TrainConfig, info: DatasetInfo, out: Path, verbose: int, strategy: Any,
                timer: PhaseTimer) -> tuple[keras.Model, keras.Model, int]:
    """:func:`_fit` for an images dataset: the tower on P x K batches (see :mod:`pairgen.train.pk`)."""
    with timer.phase("read_train"):  # indexes the shards; the reading happens in fit
        train_split = pk.pk_split(info, config.train_split, config)
        has_val = pk.has_pk_val(info, config)
        kw = pk.fit_kwargs(config, info, train_split, has_val)
        val_map = None
        if config.select_by == "map-at-r":
            if not info.records(config.val_split):
                raise ConfigError(f"--select-by map-at-r needs a '{config.val_split}' split; this dataset has none. "
                                  "Use --select-by loss or build with a val split.")
            val_map = _ValMapAtR(*split_images(info, load_numpy(info.path, config.val_split)))
    callbacks = _callbacks(out, has_val or val_map is not None, config.patience, val_map) + [_EpochTimes(timer)]
    with timer.phase("build_compile"), strategy.scope():
        fitted, tower, head = pk.build_embedding_model(config, info.shape, train_split.n_batches * config.epochs,
                                                            train_split.n_batches)
    return tower, head, _train(fitted, config, out, verbose, callbacks, kw, timer)


def _train(model: keras.Model, config: TrainConfig, out: Path, verbose: int, callbacks: list[Any],
           kw: dict[str, Any], timer: PhaseTimer) -> int:
    """Fit ``model``, then restore the best checkpoint's weights if one was kept; the epochs run."""
    with timer.phase("training"):
        history = model.fit(epochs=config.epochs, verbose=verbose, callbacks=callbacks, **kw)
        best = out / "checkpoints" / "best.weights.h5"
        if best.is_file():
            model.load_weights(str(best))
    return len(history.history.get("loss", []))


def _environment(strategy_replicas: int) -> dict[str, Any]:
    return {"pairgen": pairgen.__version__, **backend.versions(), "gpus": backend.gpu_count(),
            "replicas": strategy_replicas}


def train(dataset: str | os.PathLike, out: str | os.PathLike, config: TrainConfig | None = None, *,
          overwrite: bool = False, verbose: int = 2) -> dict[str, Any]:
    """Train on ``dataset`` and write the run folder ``out``.

    Args:
        dataset: A dataset directory from ``pairgen build`` (``dir@version`` accepted).
        out: The run folder to create.
        config: Training settings; ``None`` = the defaults (the best measured recipe).
        overwrite: Replace an existing run folder.
        verbose: Keras verbosity: 1 = a progress bar per epoch, 2 = one line per epoch, 0 = silent.

    Returns:
        The metrics written to ``metrics.json`` (see :func:`pairgen.train.evaluation.evaluate`).

    Raises:
        ConfigError: For settings that do not fit the dataset, or an existing ``out``.
        DatasetError: If the dataset or its train split is missing.
    """
    timer = PhaseTimer()
    info = open_dataset(dataset)
    config = (config or TrainConfig()).resolve(info.kind)
    config = config.replace(reader=resolve_reader(config.reader),
                            steps_per_execution=backend.steps_per_execution(config.steps_per_execution))
    require_split(info, config.train_split, "--train-split")
    out = Path(out)
    with run_folder(out, overwrite, RUN_NAMES) as tmp:  # installed at `out` only when the run is complete
        (tmp / "checkpoints").mkdir()
        keras.utils.set_random_seed(config.seed)  # weight init and dropout draw from Keras' global seed
        previous = keras.mixed_precision.global_policy()
        if config.mixed_precision:  # float16 on GPUs; CPUs support bfloat16 far better
            gpu = backend.gpu_count() > 0
            keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
        strategy = backend.strategy()
        arrays: dict[str, dict[str, np.ndarray]] = {}
        try:
            tower, head, epochs_run = _fit(config, info, tmp, verbose, strategy, timer, arrays)
        finally:
            keras.mixed_precision.set_global_policy(previous)
        with timer.phase("write_run"):
            run = _write_run(tmp, config, info, tower, head, epochs_run, strategy.num_replicas_in_sync)
        metrics = (_report_images(run, info, config, out) if info.kind == "images"
                   else _report(run, info, arrays, timer))
        timer.write(tmp / "timings.json")
    return metrics


def _write_run(out: Path, config: TrainConfig, info: DatasetInfo, tower: keras.Model, head: keras.Model,
               epochs_run: int, replicas: int) -> Run:
    """Save the models and ``config.json``; returns the run as :func:`load_run` would load it."""
    triplets = config.loss == "triplet" and info.kind != "images"  # images runs save the pair model
    saved = triplet_model(tower, head) if triplets else pair_model(tower, head)
    saved.save(out / "model.keras")
    tower.save(out / "embedding.keras")
    card = {"train": config.to_dict(), "dataset": info.summary(), "input_shape": list(info.shape),
            "embedding_dim": int(tower.output_shape[-1]), "epochs_run": epochs_run,
            "environment": _environment(replicas)}
    text = json.dumps(card, indent=2, sort_keys=True) + "\n"
    (out / "config.json").write_text(text, encoding="utf-8")
    return Run(out, tower, head, json.loads(text))


def _report_images(run: Run, info: DatasetInfo, config: TrainConfig, out: Path) -> dict[str, Any]:
    """metrics.json and curves.png of a run on an images dataset (``pairgen evaluate`` scores pairs);
    ``out`` is where the run will be (``run.path`` is the folder being written)."""
    history = pd.read_csv(run.path / "history.csv")
    train_split = pk.pk_split(info, config.train_split, config)
    columns = cast(dict[str, list[float]], history.to_dict(orient="list"))  # history.csv's header: str names
    metrics = pk.images_metrics(info, config, columns, out, train_split.n_batches)
    arrays: dict[str, dict[str, np.ndarray]] = {}
    splits = [s for s in (config.val_split, "test") if info.records(s)]
    metrics["retrieval"] = {s: retrieval(run, info, s, arrays=arrays) for s in dict.fromkeys(splits)}
    (run.path / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    plots.plot_history(history, run.path / "curves.png")
    if splits:
        retrieval_examples(run, info, splits[-1], run.path / "retrieval.png", arrays=arrays)
    return metrics


def _report(run: Run, info: DatasetInfo, arrays: dict[str, dict[str, np.ndarray]], timer: PhaseTimer) -> dict[str, Any]:
    """Evaluate the trained run as ``pairgen evaluate`` does (splits in memory reused), then write metrics and plots."""
    out = run.path
    split = "test" if info.records("test") else ("val" if info.records("val") else "train")
    keep = {split, "val" if info.records("val") else "train"}
    for name in [n for n in arrays if n not in keep]:
        del arrays[name]  # e.g. the train arrays: not evaluated, free their memory now
    metrics, scores = evaluate_scores(run, info, split, arrays=arrays, timer=timer)
    with timer.phase("write_run"):
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    with timer.phase("plots"):
        plots.plot_history(pd.read_csv(out / "history.csv"), out / "curves.png")
        thr_split = metrics["threshold_split"]
        plots.plot_distances(scores[thr_split].dist, scores[thr_split].labels, metrics["threshold"],
                             out / "distances.png", xlabel=metrics["score"], title=f"{thr_split} pairs")
        curves = {}
        for name, s in scores.items():
            fpr, tpr, _ = roc_curve(s.dist, s.labels)
            curves[name] = (fpr, tpr, roc_auc(s.dist, s.labels))
        plots.plot_roc(curves, out / "roc.png")
        retrieval_examples(run, info, split, out / "retrieval.png", arrays=arrays)
    return metrics
