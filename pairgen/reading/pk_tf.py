"""``pairgen.load_classes``: class-balanced P x K batches of an images dataset as a ``tf.data.Dataset``.

Every batch holds ``P`` distinct classes with ``K`` images each, in the epoch schedule of
:mod:`pairgen.reading.pk` (same seed, same batches as :func:`pairgen.reading.pk.pk_batches` and
``pairgen.torch.PKBatchSampler``)::

    ds = pairgen.load_classes("build/digits", "train", classes_per_batch=8, images_per_class=4,
                              seed=0, epochs=None)          # None: one epoch after another, forever
    steps = pairgen.reading.pk.PKSplit("build/digits", "train", classes_per_batch=8, images_per_class=4).n_batches
    model.fit(ds, steps_per_epoch=steps, epochs=10)

A Python generator reads the serialized records of a few batches at a time (about 4 MiB) by
offset (``os.pread``, CRCs checked: see :mod:`pairgen.reading.pk`); TensorFlow parses and decodes them
at once (``parse_example``, ``decode_raw`` or ``decode_png``), checks each record's
``record_id`` and class against the schedule, and prefetches. Memory: the record index and one
epoch's schedule (about 32 bytes per record) plus the prefetched chunks of batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from pairgen.errors import ConfigError
from pairgen.extras import require
from pairgen.reading.pk import READ_AHEAD_BYTES, PKSplit, consumer_batches
from pairgen.reading.tfdata import _decoder, _spec_for

tf = require("tensorflow", extra="tf", feature="pairgen.load_classes (tf.data)",
             instead="read without TensorFlow: pairgen.reading.pk.pk_batches or pairgen.torch.PKBatchSampler")


def _check_epochs(epochs: int | None) -> None:
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"epochs must be an integer >= 1 or None (repeat forever); received: epochs={epochs!r}.")


def _serialized(data: PKSplit, first_epoch: int, epochs: int | None, rank: int, world_size: int,
                pad: bool) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(serialized records, record ids, class ids)``, each ``[m, P*K]``: ``m`` batches, epoch after epoch.

    Whole batches worth about :data:`pairgen.reading.pk.READ_AHEAD_BYTES` go through Python at once, so
    TensorFlow parses them in one call (one batch per call costs more than its records).
    """
    record_bytes = float(data.index.length.mean()) if len(data.index.length) else 1.0
    step = max(1, int(READ_AHEAD_BYTES // (data.batch_size * record_bytes)))
    epoch = first_epoch
    while epochs is None or epoch < first_epoch + epochs:
        schedule = data.schedule(epoch)
        take = consumer_batches(len(schedule), rank=rank, world_size=world_size, pad=pad)
        for start in range(0, len(take), step):
            ids = schedule[take[start:start + step]]
            records = np.array(data.read_serialized(ids.ravel()), dtype=object).reshape(ids.shape)
            yield records, ids, data.classes[ids]
        epoch += 1


def load_classes(path: str | os.PathLike, split: str = "train", *, classes_per_batch: int,
                 images_per_class: int, seed: int = 0, normalize: bool = True, epochs: int | None = 1,
                 first_epoch: int = 0, with_ids: bool = False, rank: int = 0, world_size: int = 1,
                 pad: bool = True) -> tf.data.Dataset:
    """Class-balanced batches of an images split: exactly ``P`` classes x ``K`` images each.

    The schedule and its guarantees (every image at least once per epoch; classes with fewer
    than ``K`` images left out with a warning) are those of :mod:`pairgen.reading.pk`.

    Args:
        path: Dataset directory of an images dataset (``dir@version`` accepted).
        split: Split name.
        classes_per_batch: ``P`` (>= 2, at most the split's classes with ``K`` images).
        images_per_class: ``K`` (>= 2).
        seed: Seed of the schedule; epoch ``e`` uses ``SeedSequence([seed, e])``.
        normalize: ``float32`` pixels in [0, 1] if true, else ``uint8``.
        epochs: Epochs to yield one after another; ``None`` repeats forever (each epoch its
            own schedule).
        first_epoch: Number of the first epoch (to resume).
        with_ids: Add a dict of ``id`` (catalog image id) and ``record_id`` as a third element.
        rank, world_size: Take this consumer's share of each epoch (see :mod:`pairgen.reading.pk`).
        pad: Extend each epoch to a multiple of ``world_size`` batches (else drop the remainder).

    Returns:
        Elements ``(images, class_ids)``: ``[P*K, h, w, c]`` and ``int64 [P*K]`` (``P`` runs
        of ``K`` images of one class); with ``with_ids``, ``(images, class_ids, ids)``.

    Raises:
        ConfigError: For invalid arguments, or fewer than ``P`` classes with ``K`` images.
        DatasetError: If the dataset is not an images dataset (a pairs dataset, say) or its
            shards cannot be read by offset (GZIP) or are damaged.
    """
    _check_epochs(epochs)
    consumer_batches(1, rank=rank, world_size=world_size, pad=pad)
    data = PKSplit(path, split, classes_per_batch=classes_per_batch, images_per_class=images_per_class, seed=seed)
    n = data.batch_size
    signature = (tf.TensorSpec((None, n), tf.string), tf.TensorSpec((None, n), tf.int64),
                 tf.TensorSpec((None, n), tf.int64))
    ds = tf.data.Dataset.from_generator(lambda: _serialized(data, first_epoch, epochs, rank, world_size, pad),
                                        output_signature=signature)
    spec = _spec_for(data.card.kind)
    decode = _decoder(data.card.image.shape, data.card.image.encoding, normalize)
    image_key, shape = data.image_keys[0], data.card.image.shape

    def parse(serialized: tf.Tensor, ids: tf.Tensor, classes: tf.Tensor) -> tuple:
        f = tf.io.parse_example(tf.reshape(serialized, (-1,)), spec)
        check = tf.debugging.assert_equal(
            tf.concat([f["record_id"], f["class"]], 0), tf.concat([tf.reshape(ids, (-1,)), tf.reshape(classes, (-1,))], 0),
            message=f"a record of '{data.root}' split {split!r} differs from its manifest row; "
                    f"run `pairgen verify {data.root}`")
        with tf.control_dependencies([check]):
            images = tf.reshape(decode(f[image_key]), (-1, n, *shape))
        out = (images, tf.reshape(f["class"], (-1, n)))
        ids_out = {"id": tf.reshape(f["id"], (-1, n)), "record_id": tf.reshape(f["record_id"], (-1, n))}
        return (*out, ids_out) if with_ids else out

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    if epochs is not None:
        per_epoch = len(consumer_batches(data.n_batches, rank=rank, world_size=world_size, pad=pad))
        ds = ds.apply(tf.data.experimental.assert_cardinality(per_epoch * epochs))
    return ds.prefetch(tf.data.AUTOTUNE)
