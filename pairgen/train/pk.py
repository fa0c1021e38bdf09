"""Training on an images dataset from class-balanced P x K batches (online mining in each batch).

``pairgen train IMAGES_DATASET`` fits the tower alone: each batch of ``P`` classes x ``K``
images is embedded and the loss looks at every pair of the batch, using the batch's class ids:

* ``--loss triplet --mining batch-hard | batch-semi-hard``: :class:`~pairgen.train.losses.TripletLoss`
  with every image of the batch as an anchor, mined on the plain Euclidean distance (Hermans
  et al. 2017; Schroff et al. 2015);
* ``--loss contrastive``: :class:`~pairgen.train.losses.InBatchContrastiveLoss` over all
  in-batch pairs, positives and negatives weighted equally.

Batches come from :func:`pairgen.load_classes` on Keras' TensorFlow backend (reader
``tfdata``) or from :class:`pairgen.reading.pk.PKSplit` (reader ``numpy``, any backend, no
TensorFlow); both follow the same schedule (:mod:`pairgen.reading.pk`), one Keras epoch per schedule
epoch (``steps_per_epoch`` = the schedule's batches per epoch). Validation uses the val split's
P x K batches of epoch 0 (the same every epoch), when it has ``P`` classes with ``K`` images.

The run saves the pair model ``[a, b] -> distance`` (head ``distance``) and the tower, so
``pairgen evaluate RUN PAIRS_DATASET`` scores it on a pairs dataset built with the same source,
split config and seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pairgen.dataset import layout
from pairgen.errors import ConfigError
from pairgen.reading.pk import PKSplit, check_classes
from pairgen.train import backend
from pairgen.train.config import TrainConfig
from pairgen.train.data import DatasetInfo
from pairgen.train.losses import make_loss
from pairgen.train.models import build_head, build_tower
from pairgen.train.optimizers import make_optimizer


def _pk(config: TrainConfig) -> tuple[int, int]:
    """``P`` and ``K`` of a config resolved for an images dataset."""
    p, k = config.classes_per_batch, config.images_per_class
    if p is None or k is None:
        raise ConfigError(f"the training config is not resolved (classes_per_batch={p!r}, images_per_class={k!r}); "
                          "call TrainConfig.resolve('images').")
    return p, k


def pk_split(info: DatasetInfo, split: str, config: TrainConfig) -> PKSplit:
    """The P x K view of ``split`` with the run's P, K and seed."""
    p, k = _pk(config)
    return PKSplit(info.path, split, classes_per_batch=p, images_per_class=k, seed=config.seed)


def has_pk_val(info: DatasetInfo, config: TrainConfig) -> bool:
    """Whether the val split can give P x K batches (``P`` classes with ``K`` images)."""
    if info.records(config.val_split) == 0:
        return False
    p, k = _pk(config)
    try:
        check_classes(np.unique(pk_classes(info, config.val_split), return_counts=True)[1], p, k, "val")
    except ConfigError:
        return False
    return True


def pk_classes(info: DatasetInfo, split: str) -> np.ndarray:
    """Class id of every record of ``split``, from its manifest."""
    import pyarrow.parquet as pq

    return pq.read_table(info.path / layout.manifest(split), columns=["class_id"]).column(0).to_numpy()


def _numpy_batches(data: PKSplit) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(images, class ids)`` of epoch 0, 1, ... forever."""
    epoch = 0
    while True:
        for batch in data.batches(epoch):
            yield batch["image"], batch["class"].astype(np.int32)
        epoch += 1


def _val_arrays(data: PKSplit) -> tuple[np.ndarray, np.ndarray]:
    """Epoch 0 of the val split's P x K batches in memory, batch after batch."""
    batches = list(data.batches(0))
    return np.concatenate([b["image"] for b in batches]), np.concatenate([b["class"] for b in batches]).astype(np.int32)


def fit_kwargs(config: TrainConfig, info: DatasetInfo, train: PKSplit, has_val: bool) -> dict[str, Any]:
    """``model.fit`` arguments: P x K training batches (endless), steps per epoch, validation batches."""
    kw: dict[str, Any] = {"steps_per_epoch": train.n_batches, "shuffle": False}
    val = pk_split(info, config.val_split, config) if has_val else None
    if config.reader == "tfdata":
        from pairgen.reading.pk_tf import load_classes

        p, k = _pk(config)

        def classes(split: str, epochs: int | None) -> Any:
            return load_classes(info.path, split, classes_per_batch=p, images_per_class=k, seed=config.seed,
                                epochs=epochs)

        kw["x"] = classes(config.train_split, None)
        kw["validation_data"] = classes(config.val_split, 1) if val is not None else None
    else:
        kw["x"] = _numpy_batches(train)
        if val is not None:
            kw.update(validation_data=_val_arrays(val), validation_batch_size=val.batch_size)
    return kw


def steps_per_execution(requested: int, batches: int) -> int:
    """The largest divisor of ``batches`` up to ``requested``.

    Keras takes whole executions of ``steps_per_execution`` steps from an endless input, so it
    must divide the epoch's batches for one Keras epoch to be one schedule epoch.
    """
    return max(d for d in range(1, min(requested, batches) + 1) if batches % d == 0)


def build_embedding_model(config: TrainConfig, shape: tuple[int, int, int], steps: int,
                          batches: int) -> tuple[keras.Model, keras.Model, keras.Model]:
    """``(fitted, tower, head)``: the model to fit, the tower it shares its layers with, the head.

    ``fitted`` is the tower's graph under another model, compiled with the in-batch loss, so the
    saved tower (``embedding.keras``) and pair model carry no compile state: they load with plain
    ``keras.models.load_model`` in any process, without pairgen's loss classes registered.
    ``steps`` is the number of optimizer steps of the run, ``batches`` the batches per epoch.
    """
    tower = build_tower(config.model, shape, embedding_dim=config.embedding_dim, width=config.width,
                        weights=config.weights)
    head = build_head(config.head, int(tower.output_shape[-1]), distance=config.distance)
    fitted = keras.Model(tower.inputs, tower.outputs, name="pk_embedding")
    jit: bool | str = True if config.jit else (False if backend.name() == "tensorflow" else "auto")
    fitted.compile(optimizer=make_optimizer(config, steps), loss=make_loss(config, in_batch=True), jit_compile=jit,
                   steps_per_execution=steps_per_execution(backend.steps_per_execution(config.steps_per_execution),
                                                           batches))
    return fitted, tower, head


def images_metrics(info: DatasetInfo, config: TrainConfig, history: dict[str, list[float]],
                   out: Path, batches: int) -> dict[str, Any]:
    """What ``metrics.json`` holds for a run on an images dataset (pair metrics come from ``evaluate``)."""
    last = {k: float(v[-1]) for k, v in history.items() if v and k in ("loss", "val_loss") and np.isfinite(v[-1])}
    return {"dataset": {"name": info.card.name or None, "version": info.card.version or None,
                        "fingerprint": info.fingerprint, "kind": info.kind},
            "classes_per_batch": config.classes_per_batch, "images_per_class": config.images_per_class,
            "batches_per_epoch": batches, "epochs_run": len(history.get("loss", [])), **last,
            "evaluate": f"pairgen evaluate {out} PAIRS_DATASET"}
