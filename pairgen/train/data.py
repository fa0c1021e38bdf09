"""The trainer's view of a dataset directory: its card, and the data ``fit`` consumes.

Two readers (``TrainConfig.reader``):

* ``tfdata`` streams the shards through :func:`pairgen.reading.tfdata.load`. Pairs come as
  ``((a, b), label)``. Triplets need class ids for online mining: they come with each record
  (``load(..., with_ids=True)``), never from the manifest, so they belong to their images
  whatever order the shards are read in.
* ``numpy`` reads each split into memory with :func:`pairgen.reading.arrays.load_numpy` (no
  TensorFlow), for the JAX and PyTorch backends of Keras: ``([a, b], label)`` or
  ``([anchor, positive, negative], class ids)``; ``fit`` shuffles them each epoch.

``auto`` picks ``tfdata`` on Keras' TensorFlow backend, else ``numpy``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pairgen.dataset.card import Card, read_card
from pairgen.dataset.versions import resolve
from pairgen.errors import DatasetError
from pairgen.reading.arrays import load_numpy
from pairgen.spec.schema import LABEL, TRIPLETS, KindSchema, schema_of

if TYPE_CHECKING:
    import tensorflow as tf

@dataclass(frozen=True)
class DatasetInfo:
    """A dataset directory and its card: what the trainer needs to know about it."""

    path: Path
    card: Card

    @property
    def kind(self) -> str:
        return self.card.kind.value

    @property
    def schema(self) -> KindSchema:
        return schema_of(self.card.kind)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.card.image.shape

    @property
    def fingerprint(self) -> str:
        return self.card.fingerprint

    @property
    def splits(self) -> list[str]:
        return list(self.card.shards)

    def records(self, split: str) -> int:
        """Records in ``split`` according to the card."""
        return int(sum(int(s.get("records", 0)) for s in self.card.shards.get(split, [])))

    def summary(self) -> dict[str, Any]:
        """The dataset entry written into a run's ``config.json`` (``split_fingerprint`` when the card has one)."""
        out = {"path": str(self.path), "name": self.card.name or None, "version": self.card.version or None,
               "fingerprint": self.fingerprint, "kind": self.kind, "image": self.card.image.to_dict(),
               "splits": {s: self.records(s) for s in self.splits}}
        if self.card.split_fingerprint is not None:
            out["split_fingerprint"] = self.card.split_fingerprint
        return out


def open_dataset(path: str | os.PathLike) -> DatasetInfo:
    """Resolve ``path`` (``dir``, ``dir@version`` or ``dir@fingerprint-prefix``) and read its card.

    Raises:
        DatasetError: If it is not a finished pairgen dataset.
    """
    root = resolve(path)
    return DatasetInfo(root, read_card(root))


def require_split(info: DatasetInfo, split: str, option: str) -> None:
    """Raise unless the dataset has a non-empty ``split``."""
    if info.records(split) == 0:
        have = ", ".join(f"{s} ({info.records(s)})" for s in info.splits) or "none"
        raise DatasetError(f"dataset '{info.path}' has no records in split {split!r} (it has: {have}); "
                           f"pass another {option} or rebuild with --splits.")


def resolve_reader(reader: str) -> str:
    """``tfdata`` or ``numpy`` for a ``TrainConfig.reader`` value (``auto``: tfdata on the TensorFlow backend).

    Raises:
        MissingDependencyError: For ``tfdata`` without TensorFlow (before any run folder is made).
    """
    if reader == "tfdata":
        import pairgen.reading.tfdata  # noqa: F401  (names the pairgen[tf] extra when TensorFlow is missing)
    if reader != "auto":
        return reader
    import keras  # the TensorFlow backend implies TensorFlow is installed

    return "tfdata" if keras.backend.backend() == "tensorflow" else "numpy"


def fit_arrays(info: DatasetInfo, split: str, *, mining: str) -> tuple[list[np.ndarray], np.ndarray]:
    """``(inputs, targets)`` of a split in memory: ``[a, b]`` and float32 labels for pairs,
    ``[anchor, positive, negative]`` and class ids ``(n, 3)`` (zeros without mining) for triplets."""
    return fit_inputs(info, load_numpy(info.path, split), mining=mining)


def fit_inputs(info: DatasetInfo, arrays: dict[str, np.ndarray], *,
               mining: str) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`fit_arrays` of a split already read with :func:`pairgen.load_numpy`."""
    schema = info.schema
    x = [arrays[name] for name in schema.role_names]
    if schema.labelled:
        return x, arrays[LABEL].astype(np.float32)
    classes = np.stack([arrays[f"{name}_class"] for name in schema.role_names], axis=1)
    return x, (classes.astype(np.int32) if mining != "none" else np.zeros_like(classes, np.int32))


def pair_batches(info: DatasetInfo, split: str, *, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """``((a, b), label)`` batches of a pair dataset."""
    from pairgen.reading.tfdata import load

    return load(info.path, split, batch_size=batch_size, shuffle=shuffle, seed=seed)


def triplet_batches(info: DatasetInfo, split: str, *, batch_size: int, shuffle: bool, seed: int,
                    with_classes: bool) -> tf.data.Dataset:
    """``((anchor, positive, negative), y)`` batches of a triplet dataset.

    ``y`` is the class ids ``(batch, 3)`` of the anchor, positive and negative, read from
    each record itself (``load(..., with_ids=True)``), when ``with_classes`` (needed by the
    miners), else zeros.
    """
    import tensorflow as tf

    from pairgen.reading.tfdata import load

    ds = load(info.path, split, batch_size=batch_size, shuffle=shuffle, seed=seed, with_ids=with_classes)
    # parallel by name: a split held in memory runs without tf.data's rewrites, which would add it
    return ds.map(_classes_target if with_classes else _zeros_target, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)


def _classes_target(anchor: tf.Tensor, positive: tf.Tensor, negative: tf.Tensor, ids: dict) -> tuple:
    """A triplet batch with the records' own class ids ``(batch, 3)`` as the target."""
    import tensorflow as tf

    roles = [r.class_key for r in TRIPLETS.roles]
    return (anchor, positive, negative), tf.cast(tf.stack([ids[r] for r in roles], axis=1), tf.int32)


def _zeros_target(anchor: tf.Tensor, positive: tf.Tensor, negative: tf.Tensor) -> tuple:
    import tensorflow as tf

    return (anchor, positive, negative), tf.zeros((tf.shape(anchor)[0], 3), tf.int32)


def fit_batches(info: DatasetInfo, split: str, *, batch_size: int, shuffle: bool, seed: int,
                mining: str) -> tf.data.Dataset:
    """Training or validation batches for ``model.fit``, whatever the dataset kind."""
    if info.kind == "pairs":
        return pair_batches(info, split, batch_size=batch_size, shuffle=shuffle, seed=seed)
    return triplet_batches(info, split, batch_size=batch_size, shuffle=shuffle, seed=seed,
                           with_classes=mining != "none")
