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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from pairgen.errors import ConfigError
from pairgen.extras import require
from pairgen.reading.checks import MANIFEST_MISMATCH
from pairgen.reading.pk import PKSplit
from pairgen.reading.plan import check_rank, consumer_batches
from pairgen.reading.tfdata import Dataset, Tensor, feature_spec_of, image_decoder
from pairgen.spec.schema import RECORD_ID, array_name

tf = require("tensorflow", extra="tf", feature="pairgen.load_classes (tf.data)",
             instead="read without TensorFlow: pairgen.reading.pk.pk_batches or pairgen.torch.PKBatchSampler")


@dataclass(frozen=True)
class Epochs:
    """Which epochs one consumer reads: ``epochs`` from ``first`` (``None``: forever), its share of each."""

    first: int
    epochs: int | None
    rank: int
    world_size: int
    pad: bool

    def check(self) -> None:
        """Raise a one-line :class:`ConfigError` for invalid epochs or an invalid rank."""
        epochs = self.epochs
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
            raise ConfigError(f"epochs must be an integer >= 1 or None (repeat forever); received: epochs={epochs!r}.")
        check_rank(self.rank, self.world_size)

    def numbers(self) -> Iterator[int]:
        """The epoch numbers, in order."""
        epoch = self.first
        while self.epochs is None or epoch < self.first + self.epochs:
            yield epoch
            epoch += 1

    def batches(self, n_batches: int) -> int | None:
        """Batches this consumer reads in all (``None`` when it reads forever)."""
        if self.epochs is None:
            return None
        return len(consumer_batches(n_batches, rank=self.rank, world_size=self.world_size, pad=self.pad)) * self.epochs


def serialized_chunks(data: PKSplit, epochs: Epochs) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(serialized records, record ids, class ids)``, each ``[m, P*K]``: ``m`` batches, epoch after epoch.

    Whole batches worth about :data:`pairgen.reading.pk.READ_AHEAD_BYTES` go through Python at once, so
    TensorFlow parses them in one call (one batch per call costs more than its records).
    """
    for epoch in epochs.numbers():
        for ids in data.chunks(epoch, rank=epochs.rank, world_size=epochs.world_size, pad=epochs.pad):
            records = np.array(data.read_serialized(ids.ravel()), dtype=object).reshape(ids.shape)
            yield records, ids, data.classes[ids]


def record_chunks(data: PKSplit, epochs: Epochs) -> Dataset:
    """:func:`serialized_chunks` as a ``tf.data.Dataset`` of ``(string, int64, int64)`` ``[m, P*K]`` tensors."""
    n = data.batch_size
    signature = (tf.TensorSpec((None, n), tf.string), tf.TensorSpec((None, n), tf.int64),
                 tf.TensorSpec((None, n), tf.int64))
    return tf.data.Dataset.from_generator(lambda: serialized_chunks(data, epochs), output_signature=signature)


def chunk_parser(data: PKSplit, *, normalize: bool, with_ids: bool) -> Callable[[Tensor, Tensor, Tensor], tuple]:
    """A function that parses a chunk of :func:`record_chunks` into ``[m, P*K, ...]`` batches.

    Each record's ``record_id`` and class are checked against the schedule's.
    """
    n, shape = data.batch_size, data.card.image.shape
    role = data.handle.schema.roles[0]
    image_key, class_key, id_key = role.image_key, role.class_key, role.id_key
    spec = feature_spec_of(data.card.kind)
    decode = image_decoder(shape, data.card.image.encoding, normalize)
    message = (f"a record of '{data.root}' split {data.split!r} {MANIFEST_MISMATCH}; "
               f"run `pairgen verify {data.root}`")

    def parse(serialized: Tensor, ids: Tensor, classes: Tensor) -> tuple:
        f = tf.io.parse_example(tf.reshape(serialized, (-1,)), spec)
        check = tf.debugging.assert_equal(
            tf.concat([f[RECORD_ID], f[class_key]], 0), tf.concat([tf.reshape(ids, (-1,)), tf.reshape(classes, (-1,))], 0),
            message=message)
        with tf.control_dependencies([check]):
            images = tf.reshape(decode(f[image_key]), (-1, n, *shape))
        out = (images, tf.reshape(f[class_key], (-1, n)))
        ids_out = {array_name(id_key): tf.reshape(f[id_key], (-1, n)),
                   array_name(RECORD_ID): tf.reshape(f[RECORD_ID], (-1, n))}
        return (*out, ids_out) if with_ids else out

    return parse


def load_classes(path: str | os.PathLike, split: str = "train", *, classes_per_batch: int,
                 images_per_class: int, seed: int = 0, normalize: bool = True, epochs: int | None = 1,
                 first_epoch: int = 0, with_ids: bool = False, rank: int = 0, world_size: int = 1,
                 pad: bool = True) -> Dataset:
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
        rank: This consumer's number, 0 to ``world_size - 1``: it takes its share of each epoch
            (see :mod:`pairgen.reading.pk`).
        world_size: How many consumers share each epoch.
        pad: Extend each epoch to a multiple of ``world_size`` batches (else drop the remainder).

    Returns:
        Elements ``(images, class_ids)``: ``[P*K, h, w, c]`` and ``int64 [P*K]`` (``P`` runs
        of ``K`` images of one class); with ``with_ids``, ``(images, class_ids, ids)``.

    Raises:
        ConfigError: For invalid arguments, or fewer than ``P`` classes with ``K`` images.
        DatasetError: If the dataset is not an images dataset (a pairs dataset, say) or its
            shards cannot be read by offset (GZIP), are damaged or were exchanged (checked when
            the split is opened). Damage found while batches are read stops the iteration with
            a TensorFlow error; ``with pairgen.reading.checks.dataset_errors(path):`` around the
            loop turns it into the one-line ``DatasetError`` naming the shard and the fix.
    """
    share = Epochs(first_epoch, epochs, rank, world_size, pad)
    share.check()
    data = PKSplit(path, split, classes_per_batch=classes_per_batch, images_per_class=images_per_class, seed=seed)
    consumer_batches(data.n_batches, rank=rank, world_size=world_size, pad=pad)  # refuses an empty share now
    parse = chunk_parser(data, normalize=normalize, with_ids=with_ids)
    ds = record_chunks(data, share).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    total = share.batches(data.n_batches)
    if total is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(total))
    return ds.prefetch(tf.data.AUTOTUNE)
