"""The trainer's view of a dataset directory: its card, and the data ``fit`` consumes.

Two readers (``TrainConfig.reader``):

* ``tfdata`` streams the shards through :func:`pairgen.tfdata.load`. Pairs come as
  ``((a, b), label)``. Triplets need class ids for online mining, which the loader does not
  yield: the split is then read in manifest order (the loader's unshuffled order) and zipped
  with the manifest's class columns, and shuffled after that.
* ``numpy`` reads each split into memory with :func:`pairgen.reader.load_numpy` (no
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
import pandas as pd

from pairgen.errors import DatasetError
from pairgen.lineage import resolve
from pairgen.reader import load_numpy, read_card

if TYPE_CHECKING:
    import tensorflow as tf

_SHUFFLE_BYTES = 1 << 30  # cap on decoded images held in the triplet shuffle buffer


@dataclass(frozen=True)
class DatasetInfo:
    """What the trainer needs to know about one dataset directory."""

    path: Path
    card: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.card["kind"])

    @property
    def shape(self) -> tuple[int, int, int]:
        img = self.card["image"]
        return int(img["height"]), int(img["width"]), int(img["channels"])

    @property
    def fingerprint(self) -> str:
        return str(self.card.get("fingerprint", ""))

    @property
    def splits(self) -> list[str]:
        return list(self.card["shards"])

    def records(self, split: str) -> int:
        """Records in ``split`` according to the card."""
        return int(sum(int(s.get("records", 0)) for s in self.card["shards"].get(split, [])))

    def summary(self) -> dict[str, Any]:
        """The dataset entry written into a run's ``config.json``."""
        return {"path": str(self.path), "name": self.card.get("name"), "version": self.card.get("version"),
                "fingerprint": self.fingerprint, "kind": self.kind, "image": self.card["image"],
                "splits": {s: self.records(s) for s in self.splits}}


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
    """``tfdata`` or ``numpy`` for a ``TrainConfig.reader`` value (``auto``: tfdata on the TensorFlow backend)."""
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
    if info.kind == "pairs":
        return [arrays["a"], arrays["b"]], arrays["label"].astype(np.float32)
    x = [arrays["anchor"], arrays["positive"], arrays["negative"]]
    classes = np.stack([arrays["anchor_class"], arrays["positive_class"], arrays["negative_class"]], axis=1)
    return x, (classes.astype(np.int32) if mining != "none" else np.zeros_like(classes, np.int32))


def pair_batches(info: DatasetInfo, split: str, *, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """``((a, b), label)`` batches of a pair dataset."""
    from pairgen.tfdata import load

    return load(info.path, split, batch_size=batch_size, shuffle=shuffle, seed=seed)


def triplet_batches(info: DatasetInfo, split: str, *, batch_size: int, shuffle: bool, seed: int,
                    with_classes: bool) -> tf.data.Dataset:
    """``((anchor, positive, negative), y)`` batches of a triplet dataset.

    ``y`` is the class ids ``(batch, 3)`` (anchor, positive = anchor's class, negative) when
    ``with_classes`` (needed by the miners), else zeros.
    """
    import tensorflow as tf

    from pairgen.tfdata import load

    if not with_classes:
        ds = load(info.path, split, batch_size=batch_size, shuffle=shuffle, seed=seed)
        return ds.map(lambda a, p, n: ((a, p, n), tf.zeros((tf.shape(a)[0], 3), tf.int32)))
    classes = triplet_classes(info, split)
    images = load(info.path, split, batch_size=None, shuffle=False, normalize=False)
    ds = tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(classes)))
    if shuffle:
        per_record = 3 * int(np.prod(info.shape))
        buffer = int(min(max(_SHUFFLE_BYTES // per_record, 256), 10_000))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)

    def to_float(imgs: tuple, y: tf.Tensor) -> tuple:
        return tuple(tf.cast(x, tf.float32) * (1.0 / 255.0) for x in imgs), y

    ds = ds.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.apply(tf.data.experimental.assert_cardinality(-(-len(classes) // batch_size))).prefetch(
        tf.data.AUTOTUNE)


def triplet_classes(info: DatasetInfo, split: str) -> np.ndarray:
    """Class ids ``(records, 3)`` of a triplet split in manifest (= loader) order."""
    path = info.path / "manifests" / f"{split}.parquet"
    try:
        frame = pd.read_parquet(path, columns=["record_id", "anchor_class", "negative_class"])
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read manifest '{path}' ({exc}); run `pairgen verify {info.path}`.") from None
    if len(frame) != info.records(split):
        raise DatasetError(f"manifest '{path}' has {len(frame)} rows but the shards hold {info.records(split)} "
                           f"records; run `pairgen verify {info.path}`.")
    frame = frame.sort_values("record_id", kind="stable")
    anchor = frame["anchor_class"].to_numpy(np.int32)
    return np.stack([anchor, anchor, frame["negative_class"].to_numpy(np.int32)], axis=1)


def fit_batches(info: DatasetInfo, split: str, *, batch_size: int, shuffle: bool, seed: int,
                mining: str) -> tf.data.Dataset:
    """Training or validation batches for ``model.fit``, whatever the dataset kind."""
    if info.kind == "pairs":
        return pair_batches(info, split, batch_size=batch_size, shuffle=shuffle, seed=seed)
    return triplet_batches(info, split, batch_size=batch_size, shuffle=shuffle, seed=seed,
                           with_classes=mining != "none")
