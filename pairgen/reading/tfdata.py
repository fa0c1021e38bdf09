"""Load a pairgen dataset directory as a fast ``tf.data.Dataset``.

The pipeline reads the split's TFRecord shards, optionally shuffles the *serialized*
records, batches them **before** parsing so one vectorized ``tf.io.parse_example`` and one
``decode_raw`` handle a whole batch, and prefetches. That is several times faster than
parsing and decoding record by record, and close to feeding NumPy arrays from memory.
Without ``shuffle``, raw images in plain shards are instead read from the memory-mapped shards
(:func:`_mapped_batches`: the same order and batches, no parsing): a split whose pixels fit
:data:`pairgen.reading.mapped.HELD_BYTES` (1 GiB) is copied into memory once, when ``load`` is
called, and each batch gathered from it in the graph (the dataset then has tf.data's default
graph rewrites off, see :func:`without_rewrites`); a larger one is gathered a batch at a time.

Order: without ``shuffle`` the order is fixed: shards are read in parallel (up to four at a
time) and their records arrive in blocks of the batch size (256 when ``batch_size`` is None)
taken from each open shard in turn; a split with one shard comes in manifest order.
``load_arrays`` always returns manifest order (``record_id`` ascending).

With ``shuffle=True`` and a ``seed`` the order is reproducible: two ``load``
calls with the same seed yield the same sequence (with ``repeat=True`` every epoch is
reshuffled, still reproducibly). ``shuffle=True`` without a seed is allowed but gives a
different order on every call.

Example::

    ds = pairgen.load("build/mnist-demo", "train", batch_size=256, shuffle=True, seed=0)
    model.fit(ds, epochs=10)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from pairgen.dataset.card import read_card
from pairgen.dataset.versions import resolve
from pairgen.errors import DatasetError
from pairgen.extras import require
from pairgen.reading import mapped as mapped_module
from pairgen.reading.checks import dataset_errors
from pairgen.reading.handle import SplitHandle
from pairgen.reading.mapped import ALIGN
from pairgen.reading.recordindex import opened_split
from pairgen.spec.config import Kind
from pairgen.spec.schema import array_name, schema_of

tf = require("tensorflow", extra="tf", feature="pairgen.load (tf.data)",
             instead="read without TensorFlow: pairgen.load_numpy, pairgen train --reader numpy")

__all__ = ["feature_spec", "load", "load_arrays", "read_card"]

# TensorFlow's types, for annotations (``tf`` is imported at run time by ``require``).
Dataset = Any  # tf.data.Dataset
Tensor = Any  # Tensor
FeatureSpec = dict[str, Any]  # name -> tf.io.FixedLenFeature
Finish = Callable[[dict[str, Any]], Any]  # a batch's features -> the dataset's element

_PARSE_BATCH = 256  # records parsed together when the caller wants single examples


def feature_spec(path: str | os.PathLike) -> FeatureSpec:
    """The ``tf.io.parse_example`` feature spec of a dataset's records.

    Args:
        path: Dataset directory, or ``dir@version`` / ``dir@fingerprint-prefix``.

    Returns:
        Feature name to ``FixedLenFeature([], tf.string)`` for images and
        ``FixedLenFeature([], tf.int64)`` for labels, ids and classes.

    Raises:
        DatasetError: If the dataset card is missing or invalid.
    """
    return feature_spec_of(read_card(resolve(path)).kind)


def feature_spec_of(kind: Kind | str) -> FeatureSpec:
    """The ``tf.io.parse_example`` feature spec of a kind's records (see :func:`feature_spec`)."""
    dtypes = {"bytes": tf.string, "int64": tf.int64}
    return {k: tf.io.FixedLenFeature([], dtypes[t]) for k, t in schema_of(kind).feature_types.items()}


def image_decoder(shape: tuple[int, int, int], encoding: str, normalize: bool) -> Callable[[Tensor], Tensor]:
    """A function that turns a ``[B]`` string tensor of stored images into ``[B, h, w, c]``.

    Args:
        shape: ``(h, w, c)`` of every image.
        encoding: ``raw``, ``png`` or ``jpeg``.
        normalize: ``float32`` pixels in [0, 1] if true, else ``uint8``.
    """
    h, w, c = shape

    def decode_one(data: Tensor) -> Tensor:
        fn = tf.io.decode_png if encoding == "png" else tf.io.decode_jpeg
        return tf.ensure_shape(fn(data, channels=c), (h, w, c))

    def decode(batch: Tensor) -> Tensor:
        if encoding == "raw":
            pixels = tf.reshape(tf.io.decode_raw(batch, tf.uint8), (-1, h, w, c))
        else:
            signature = tf.TensorSpec((h, w, c), tf.uint8)
            pixels = tf.map_fn(decode_one, batch, fn_output_signature=signature)
        return tf.cast(pixels, tf.float32) * (1.0 / 255.0) if normalize else pixels

    return decode


def as_tensor(array: np.ndarray) -> Tensor:
    """A CPU tensor of a NumPy array, without a copy where TensorFlow can take its buffer.

    A C-contiguous, writable array aligned to :data:`pairgen.reading.mapped.ALIGN` bytes is
    handed over by DLPack (the tensor keeps the array alive); any other is copied
    (``tf.constant``: about 3 s per GiB on the benchmark machine).
    """
    if (array.flags.c_contiguous and array.flags.writeable and array.size
            and array.ctypes.data % ALIGN == 0 and hasattr(array, "__dlpack__")):
        try:
            return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        except (AttributeError, TypeError, ValueError, BufferError, tf.errors.OpError):
            pass
    return tf.constant(array)


def without_rewrites(ds: Dataset) -> Dataset:
    """``ds`` with tf.data's default graph rewrites off (``apply_default_optimizations=False``).

    Making an iterator over a pipeline with rewrites on serializes its graph, copying every
    tensor its functions capture: for a split held in memory (64x64 RGB, 690 MB), 0.3 s and the
    split's size again in memory for each iterator. The pipelines that hold a split set their
    own parallelism and prefetch; the option also applies to transformations added after them.
    """
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    return ds.with_options(options)


def _checked_file(path: Tensor, expected: Tensor | None, compression: str) -> Dataset:
    """One shard's serialized records; reading past its end asserts its record count.

    ``assert_cardinality`` counts in C++ with no per-record function, so the check is free
    (a scan with a per-batch assertion that names the shard cost 10-14% more CPU per epoch).
    Its error names only the counts: :func:`pairgen.reading.checks.dataset_errors` turns it into the
    one-line error naming the shard.
    """
    records = tf.data.TFRecordDataset(path, compression_type=compression)
    return records if expected is None else records.apply(tf.data.experimental.assert_cardinality(expected))


def _serialized_batches(files: list[str], counts: list[int], compression: str, *,
                        batch: int, shuffle: bool, seed: int | None, repeat: bool,
                        shuffle_buffer: int, ordered: bool = False) -> Dataset:
    """Batches of serialized records, read in parallel from up to 4 shards at a time.

    ``ordered`` reads the shards one after another instead: manifest order, a bit slower.
    Every shard's record count is checked against ``counts`` when the shard ends.
    """
    cycle = max(1, min(len(files), 4))
    checked = all(n >= 0 for n in counts)
    names = tf.data.Dataset.from_tensor_slices((tf.constant(files, tf.string, shape=(len(files),)),
                                                tf.constant(counts, tf.int64, shape=(len(files),))))

    def shard(f: Tensor, n: Tensor) -> Dataset:
        return _checked_file(f, n if checked else None, compression)

    if ordered:
        ds = names.flat_map(shard)
        return (ds.repeat() if repeat else ds).batch(batch)
    if not shuffle:
        # Each shard is batched where it is read, so no per-record work crosses threads;
        # rebatch() evens out the short batch at the end of each shard.
        ds = names.interleave(lambda f, n: shard(f, n).batch(batch), cycle_length=cycle,
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.rebatch(batch) if len(files) > 1 else ds
        return ds.repeat() if repeat else ds
    ds = names.shuffle(max(len(files), 1), seed=seed).interleave(
        shard, cycle_length=cycle, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return (ds.repeat() if repeat else ds).batch(batch)


def _parsed_batches(handle: SplitHandle, *, batch: int,
                    shuffle: bool, seed: int | None, repeat: bool, normalize: bool,
                    shuffle_buffer: int, keys: tuple[str, ...] | None = None,
                    ordered: bool = False, finish: Finish | None = None) -> Dataset:
    """Batches of parsed feature dicts (only ``keys``, default all), images decoded, then ``finish``ed if given."""
    card = handle.card
    counts = [-1 if n is None else n for n in handle.listed]  # -1: not checked
    compression = "GZIP" if card.compression == "gzip" else ""
    ds = _serialized_batches(handle.files, counts, compression, batch=batch, shuffle=shuffle,
                             seed=seed, repeat=repeat, shuffle_buffer=shuffle_buffer, ordered=ordered)
    spec = feature_spec_of(card.kind)
    spec = {k: v for k, v in spec.items() if keys is None or k in keys}
    image_keys = [k for k in handle.image_keys if k in spec]
    decode = image_decoder(card.image.shape, card.image.encoding, normalize)

    def parse(serialized: Tensor) -> Any:
        features = tf.io.parse_example(serialized, spec)
        for key in image_keys:
            features[key] = decode(features[key])
        return features if finish is None else finish(features)

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


MAPPED_READ_CALLS = tf.data.AUTOTUNE  # gathers in flight (a call waits on Python more than it computes)


def interleave_order(counts: list[int], batch: int, cycle: int) -> np.ndarray:
    """Record ids in the order of :func:`_serialized_batches` without shuffle: blocks of ``batch``
    records taken from up to ``cycle`` shards in turn (the parallel ``Dataset.interleave``'s
    order: a shard found ended on its turn gives its place to the next shard not yet read,
    which is read from the following turn on; tested against TensorFlow).
    """
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    pending = iter(range(len(counts)))
    slots: list[int | None] = [next(pending, None) for _ in range(cycle)]
    taken = [0] * len(counts)
    blocks: list[np.ndarray] = []
    while any(f is not None for f in slots):
        for s in range(cycle):
            f = slots[s]
            if f is None:
                continue
            if taken[f] < counts[f]:
                n = min(batch, counts[f] - taken[f])
                blocks.append(np.arange(starts[f] + taken[f], starts[f] + taken[f] + n))
                taken[f] += n
            else:  # found ended on its turn: the next shard takes the place, read from the next turn
                slots[s] = next(pending, None)
    return np.concatenate(blocks) if blocks else np.zeros(0, np.int64)


def _mapped_batches(handle: SplitHandle, *, batch: int, repeat: bool, normalize: bool,
                    keys: tuple[str, ...] | None, finish: Finish | None = None) -> Dataset | None:
    """:func:`_parsed_batches` without shuffle for raw images in plain shards, gathered from memory maps.

    The records come in the same order and batches as from the shards read by TensorFlow
    (:func:`interleave_order`). A split whose pixels fit :data:`pairgen.reading.mapped.HELD_BYTES`
    is copied into memory once, now (:meth:`pairgen.reading.mapped.MappedSplit.read_all`: every
    record's CRC checked unless this version of its file was checked before in this process),
    and each batch is a ``tf.gather`` from those tensors; a larger split has each batch
    gathered from the memory-mapped shards by :meth:`~pairgen.reading.mapped.MappedSplit.read`
    (every record's CRC checked the first time it is read) inside ``tf.numpy_function``. The
    pixels are scaled in the graph, and each batch's dict of features passed through ``finish``
    in the same step if given. Every shard's record count is checked when the split is
    opened. Returns None where this does not apply (other encodings, GZIP shards, records not in
    pairgen's layout, a shard that does not match the card: the TensorFlow reader then reads it
    and names the problem).

    Raises:
        DatasetError: If a record of a split held in memory fails its CRC.
    """
    card = handle.card
    if card.image.encoding != "raw" or card.compression != "none" or any(n is None for n in handle.listed):
        return None
    try:
        layout = opened_split(handle)[1]
    except DatasetError:
        return None
    if layout is None:
        return None
    mapped = layout.fresh()
    counts = [int(n) for n in handle.listed if n is not None]
    order = interleave_order(counts, batch, max(1, min(len(counts), 4)))
    total = len(order)
    if not total:
        return None
    spec = handle.spec
    names = [k for k in (*spec.image_keys, *spec.int_keys) if keys is None or k in keys]
    types = [tf.uint8 if k in spec.image_keys else tf.int64 for k in names]
    shape = card.image.shape
    order_t = tf.constant(order, tf.int64)
    held = None
    if mapped_module.holds(mapped.pixel_bytes):
        arrays = mapped.read_all()
        held = [as_tensor(arrays[k]) if k in spec.image_keys else tf.constant(arrays[k], tf.int64) for k in names]
        del arrays

    def gather(ids: np.ndarray) -> list[np.ndarray]:
        features = mapped.read(ids)
        return [features[k] for k in names]

    def read(i: Tensor) -> Any:
        ids = order_t[i * batch:tf.minimum((i + 1) * batch, total)]
        if held is None:
            values = tf.numpy_function(gather, [ids], types, stateful=False)
        else:
            values = [tf.gather(t, ids) for t in held]
        out = {}
        for key, value in zip(names, values):
            if key in spec.image_keys:
                value = tf.ensure_shape(value, (None, *shape))
                value = tf.cast(value, tf.float32) * (1.0 / 255.0) if normalize else value
            else:
                value = tf.ensure_shape(value, (None,))
            out[key] = value
        return out if finish is None else finish(out)

    steps = tf.data.Dataset.range(-(-total // batch))
    steps = steps.repeat() if repeat else steps
    if held is None:
        return steps.map(read, num_parallel_calls=MAPPED_READ_CALLS, deterministic=True)
    return without_rewrites(steps.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))


def _check_args(batch_size: int | None, shuffle_buffer: int) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
        raise DatasetError(f"batch_size must be a positive integer or None; received: batch_size={batch_size!r}.")
    if shuffle_buffer <= 0:
        raise DatasetError(f"shuffle_buffer must be > 0; received: shuffle_buffer={shuffle_buffer!r}.")


def load(path: str | os.PathLike, split: str = "train", *, batch_size: int | None = None,
         shuffle: bool = False, seed: int | None = None, repeat: bool = False,
         normalize: bool = True, shuffle_buffer: int = 10_000, with_ids: bool = False) -> Dataset:
    """Load one split of a pairgen dataset as a ``tf.data.Dataset``.

    Before reading, the card's format version and image spec, the shards' sizes and the first
    record of every shard are checked; while reading, every shard's record count is checked
    when the shard ends (see :mod:`pairgen.reading.checks`; when raw records are gathered from
    memory maps, without ``shuffle``, when the split is opened, and each record's CRC on its
    first read: for a split held in memory, all of them during this call).

    Args:
        path: Dataset directory (the one holding ``dataset.json``), or ``dir@version`` /
            ``dir@fingerprint-prefix`` for a version kept with ``--keep-versions``.
        split: Split name, e.g. ``train``, ``val`` or ``test``.
        batch_size: Examples per batch; ``None`` yields single examples (parsing is still
            batched internally for speed). The last batch may be smaller.
        shuffle: Shuffle shard order and records (through a ``shuffle_buffer`` window).
        seed: Seed for a reproducible shuffle; ``None`` shuffles differently on every call.
        repeat: Repeat forever (reshuffling each epoch when ``shuffle``).
        normalize: ``float32`` pixels in [0, 1] if true, else the stored ``uint8``.
        shuffle_buffer: Number of serialized records in the shuffle window.
        with_ids: Add a dict of the record's ``int64`` features as the last element:
            ``record_id``, ``label``, ``a/id``, ``b/id``, ``a/class``, ``b/class`` for pairs;
            ``record_id`` and ``anchor/``, ``positive/``, ``negative/`` ``id`` and ``class``
            for triplets; ``record_id``, ``id`` and ``class`` for images.

    Returns:
        For pairs, elements ``((a, b), label)``; for triplets ``(anchor, positive,
        negative)``; for images ``(image, class)``, as ``keras.utils.image_dataset_from_directory``
        gives ``(x, y)``; with ``with_ids``, an ids dict is added last (``((a, b), label, ids)``,
        ``(anchor, positive, negative, ids)``, ``(image, class, ids)``). Images have shape
        ``(h, w, c)`` (plus a leading batch axis when ``batch_size`` is set); ``label`` is
        ``float32`` (1 = same class); ``class`` is the ``int64`` catalog ``class_id``.

    Raises:
        DatasetError: If the directory, ``dataset.json`` or the split is missing, an argument
            is invalid, or a check fails before reading (a shard file exchanged with another
            included; a damaged record of a split held in memory). A shard whose record count differs from the card, or that is damaged,
            stops the iteration with TensorFlow's error, which names no shard;
            ``with pairgen.reading.checks.dataset_errors(path):`` around the loop turns it into the
            one-line ``DatasetError`` naming the shard and the fix.
    """
    _check_args(batch_size, shuffle_buffer)
    handle = SplitHandle(path, split)
    schema = handle.schema
    image_keys, int_keys = schema.image_keys, schema.int_keys
    keys = (*image_keys, *int_keys) if with_ids else (*image_keys, *filter(None, [schema.target]))
    batch = batch_size or _PARSE_BATCH
    element = _element_fn(handle.card.kind, int_keys if with_ids else ())  # in the reading step: no map of its own
    ds = None if shuffle else _mapped_batches(handle, batch=batch, repeat=repeat, normalize=normalize, keys=keys,
                                              finish=element)
    if ds is None:
        ds = _parsed_batches(handle, batch=batch, shuffle=shuffle, seed=seed, repeat=repeat, normalize=normalize,
                             shuffle_buffer=shuffle_buffer, keys=keys, finish=element)
    if batch_size is None:
        ds = ds.unbatch()
    total = handle.records
    if not repeat and total is not None:
        # A known length lets Keras show progress and end epochs without warnings.
        length = total if batch_size is None else -(-total // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(length))
    return ds.prefetch(tf.data.AUTOTUNE)


def _element_fn(kind: Kind, id_keys: tuple[str, ...]) -> Callable[[dict[str, Tensor]], tuple]:
    """Parsed features -> ``load``'s elements, with a dict of ``id_keys`` last if any.

    A kind with a target gives ``(x, y)``: ``((a, b), label)`` for pairs (``label`` as
    ``float32``), ``(image, class)`` for images (``class`` as ``int64``); any other kind its
    images.
    """
    schema = schema_of(kind)
    target = schema.target

    def element(f: dict[str, Tensor]) -> tuple:
        out = tuple(f[k] for k in schema.image_keys)
        if target is not None:
            y = tf.cast(f[target], tf.float32) if schema.labelled else f[target]
            out = (out[0] if len(out) == 1 else out, y)
        return (*out, {k: f[k] for k in id_keys}) if id_keys else out

    return element


def load_arrays(path: str | os.PathLike, split: str = "train", limit: int | None = None, *,
                normalize: bool = True) -> dict[str, np.ndarray]:
    """Read a split into NumPy arrays, in manifest order (for evaluation tools).

    Args:
        path: Dataset directory (``dir@version`` and ``dir@fingerprint-prefix`` accepted).
        split: Split name.
        limit: Read at most this many records (the first ones); ``None`` reads all.
        normalize: ``float32`` pixels in [0, 1] if true, else ``uint8``.

    Returns:
        The arrays :func:`pairgen.load_numpy` returns for the split: the same keys, dtypes and
        values (tested equal), read through tf.data.

    Raises:
        DatasetError: If the dataset or split is missing, ``limit`` is negative, or a check of
            what is read fails (see :func:`load`).
    """
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0 or None; received: limit={limit}.")
    handle = SplitHandle(path, split)
    ds = _parsed_batches(handle, batch=1024, shuffle=False, seed=None,
                         repeat=False, normalize=normalize, shuffle_buffer=1, ordered=True)
    if limit is not None:
        ds = ds.unbatch().take(limit).batch(1024)
    shape = handle.card.image.shape
    spec = feature_spec_of(handle.card.kind)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in spec}
    with dataset_errors(handle.root):
        for batch in ds.as_numpy_iterator():
            for key, value in batch.items():
                parts[key].append(value)
    out = {}
    for key, chunks in parts.items():
        name = array_name(key)
        if chunks:
            out[name] = np.concatenate(chunks)
        elif spec[key].dtype == tf.string:
            out[name] = np.zeros((0, *shape), np.float32 if normalize else np.uint8)
        else:
            out[name] = np.zeros((0,), np.int64)
    return out
