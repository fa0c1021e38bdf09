"""``pairgen.load_classes``: class-balanced P x K batches of an images dataset as a ``tf.data.Dataset``.

Every batch holds ``P`` distinct classes with ``K`` images each, in the epoch schedule of
:mod:`pairgen.reading.pk` (same seed, same batches as :func:`pairgen.reading.pk.pk_batches` and
``pairgen.torch.PKBatchSampler``)::

    ds = pairgen.load_classes("build/digits", "train", classes_per_batch=8, images_per_class=4,
                              seed=0, epochs=None)          # None: one epoch after another, forever
    steps = pairgen.reading.pk.PKSplit("build/digits", "train", classes_per_batch=8, images_per_class=4).n_batches
    model.fit(ds, steps_per_epoch=steps, epochs=10)

No Python generator: the epoch's schedule becomes a ``Dataset`` of batches of record ids
(planned once per epoch), read inside the tf.data graph in a parallel ``map``:

- **held in memory** (raw images in plain shards whose pixels fit
  :data:`pairgen.reading.mapped.HELD_BYTES`, 1 GiB): when ``load_classes`` is called, the
  split is copied out of the memory-mapped shards into one ``uint8`` array
  (:meth:`pairgen.reading.recordindex.ImagesSplit.read_all`: every record's CRC checked unless
  this version of its file was checked before in the process, every ``record_id`` and class
  compared with the manifest), handed to TensorFlow without a copy
  (:func:`pairgen.reading.tfdata.as_tensor`); a batch is then a ``tf.gather`` of its rows
  and the scaling to float32, no Python per batch. Memory: the split's pixels (plus its ids,
  16 bytes per record) for as long as the dataset lives. The dataset has tf.data's default
  graph rewrites off (:func:`pairgen.reading.tfdata.without_rewrites`: they would copy the
  held tensors into every iterator).
- **read batch by batch** (larger splits, other encodings): a few batches at a time (about
  512 KiB) with :meth:`pairgen.reading.recordindex.ImagesSplit.read` inside
  ``tf.numpy_function``: raw images gathered from the memory-mapped shards (other encodings read
  by offset and decoded), every record's CRC checked and its ``record_id`` and class compared
  with the manifest; the graph checks them against the schedule once more, scales the pixels.
  Memory: the record index and one epoch's schedule (about 40 bytes per record) plus the
  chunks in flight.

Both give the same batches; both prefetch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pairgen.errors import ConfigError
from pairgen.extras import require
from pairgen.reading import mapped as mapped_module
from pairgen.reading.checks import MANIFEST_MISMATCH
from pairgen.reading.pk import PKSplit
from pairgen.reading.plan import check_rank, consumer_batches
from pairgen.reading.tfdata import Dataset, Tensor, as_tensor, without_rewrites
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


def scheduled_ids(data: PKSplit, epochs: Epochs) -> Dataset:
    """This consumer's batches of record ids, ``int64 [P*K]`` each, epoch after epoch (no generator).

    Each epoch's schedule is planned once, when the pipeline reaches it (``tf.numpy_function``
    over :meth:`PKSplit.consumer_schedule`), then sliced into batches.
    """
    n = data.batch_size

    def rows(epoch: np.ndarray) -> np.ndarray:
        return data.consumer_schedule(int(epoch), rank=epochs.rank, world_size=epochs.world_size, pad=epochs.pad)

    if epochs.epochs is None:
        numbers = tf.data.Dataset.counter(epochs.first)
    else:
        numbers = tf.data.Dataset.range(epochs.first, epochs.first + epochs.epochs)
    return numbers.flat_map(lambda e: tf.data.Dataset.from_tensor_slices(
        tf.reshape(tf.numpy_function(rows, [e], tf.int64, stateful=False), (-1, n))))


READ_CALLS = tf.data.AUTOTUNE  # reads in flight (a call waits on Python more than it computes)
READ_BYTES = 512 << 10  # record bytes read per call of the reader inside tf.data (whole batches, at least one)


def batches_per_read(data: PKSplit) -> int:
    """Whole batches read per call: about :data:`READ_BYTES` of records (at least one).

    Batches of small images are read a few at a time (a call costs more than a batch of a
    few dozen small records); batches of large images one per call, so no ``unbatch`` copies them.
    """
    record_bytes = float(data.index.length.mean()) if len(data.index.length) else 1.0
    return max(1, int(READ_BYTES // (data.batch_size * record_bytes)))


def chunk_reader(data: PKSplit, *, with_ids: bool) -> Callable[[Tensor], tuple]:
    """A function that reads record ids ``int64 [P*K]`` (a batch) or ``[m, P*K]`` (a chunk) into batches of that shape.

    The records are read by :meth:`PKSplit.read` (raw images gathered from the memory-mapped
    shards, CRCs checked, each record's ``record_id`` and class compared with the manifest),
    inside ``tf.numpy_function``; each record's ``record_id`` and class are then checked
    against the schedule's in the graph.
    """
    shape = data.card.image.shape
    role = data.handle.schema.roles[0]
    names = [array_name(role.image_key), array_name(role.class_key), array_name(role.id_key), array_name(RECORD_ID)]
    classes = tf.constant(data.classes, tf.int64)
    message = (f"a record of '{data.root}' split {data.split!r} {MANIFEST_MISMATCH}; "
               f"run `pairgen verify {data.root}`")

    def read(ids: np.ndarray) -> list[np.ndarray]:
        arrays = data.read(ids.ravel(), normalize=False)
        return [arrays[name] for name in names]

    def parse(ids: Tensor) -> tuple:
        flat = tf.reshape(ids, (-1,))
        lead = tf.shape(ids)
        images, got_classes, got_ids, got_records = tf.numpy_function(
            read, [ids], [tf.uint8, tf.int64, tf.int64, tf.int64], stateful=False)
        check = tf.debugging.assert_equal(tf.concat([got_records, got_classes], 0),
                                          tf.concat([flat, tf.gather(classes, flat)], 0), message=message)
        with tf.control_dependencies([check]):
            images = tf.reshape(images, tf.concat([lead, list(shape)], 0))
        out = (images, tf.reshape(got_classes, lead))
        ids_out = {array_name(role.id_key): tf.reshape(got_ids, lead),
                   array_name(RECORD_ID): tf.reshape(got_records, lead)}
        return (*out, ids_out) if with_ids else out

    return parse


def held_arrays(data: PKSplit) -> dict[str, np.ndarray] | None:
    """The whole split in memory (:meth:`ImagesSplit.read_all`), or None when it is not raw images in
    plain shards or its pixels exceed :data:`pairgen.reading.mapped.HELD_BYTES`."""
    return data.read_all() if mapped_module.holds(data.pixel_bytes) else None


def held_reader(data: PKSplit, arrays: dict[str, np.ndarray], *, with_ids: bool,
                normalize: bool) -> Callable[[Tensor], tuple]:
    """A function that gathers a batch of record ids ``int64 [P*K]`` from the split held as tensors.

    Every record was checked when the split was read into memory (CRC, ``record_id`` and class
    against the manifest), so a batch is only ``tf.gather`` calls (and the scaling to float32).
    """
    role = data.handle.schema.roles[0]
    pixels = as_tensor(arrays[array_name(role.image_key)])
    classes = tf.constant(arrays[array_name(role.class_key)], tf.int64)
    ids = {name: tf.constant(arrays[name], tf.int64) for name in (array_name(role.id_key), array_name(RECORD_ID))}

    def parse(rows: Tensor) -> tuple:
        images = tf.gather(pixels, rows)
        if normalize:
            images = tf.cast(images, tf.float32) * (1.0 / 255.0)
        out = (images, tf.gather(classes, rows))
        return (*out, {name: tf.gather(values, rows) for name, values in ids.items()}) if with_ids else out

    return parse


def scale(images: Tensor, *rest: Any) -> tuple:
    """Pixels as ``float32`` in [0, 1] (the other elements unchanged)."""
    return (tf.cast(images, tf.float32) * (1.0 / 255.0), *rest)


def _read_batches(data: PKSplit, share: Epochs, *, with_ids: bool, normalize: bool) -> Dataset:
    """The batches read from the shards a few at a time (:func:`chunk_reader`), for splits not held in memory."""
    parse = chunk_reader(data, with_ids=with_ids)
    ids, chunk = scheduled_ids(data, share), batches_per_read(data)
    if chunk > 1:
        ids = ids.batch(chunk)
    ds = ids.map(parse, num_parallel_calls=READ_CALLS, deterministic=True)
    if normalize:
        ds = ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.unbatch() if chunk > 1 else ds


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
            the split is opened; for a split held in memory, every record is checked then).
            Damage found while batches are read stops the iteration with
            a TensorFlow error; ``with pairgen.reading.checks.dataset_errors(path):`` around the
            loop turns it into the one-line ``DatasetError`` naming the shard and the fix.
    """
    share = Epochs(first_epoch, epochs, rank, world_size, pad)
    share.check()
    data = PKSplit(path, split, classes_per_batch=classes_per_batch, images_per_class=images_per_class, seed=seed)
    consumer_batches(data.n_batches, rank=rank, world_size=world_size, pad=pad)  # refuses an empty share now
    held = held_arrays(data)
    if held is not None:
        gather = held_reader(data, held, with_ids=with_ids, normalize=normalize)
        del held  # the tensors keep the pixels
        ds = scheduled_ids(data, share).map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = without_rewrites(ds)  # else every iterator copies the held tensors
    else:
        ds = _read_batches(data, share, with_ids=with_ids, normalize=normalize)
    total = share.batches(data.n_batches)
    if total is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(total))
    return ds.prefetch(tf.data.AUTOTUNE)
