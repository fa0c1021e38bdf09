"""Read a pairgen dataset into NumPy arrays without TensorFlow.

For trainers on other frameworks (PyTorch, JAX) and for tools that must not pay for
``import tensorflow``: the split's shards are read with pairgen's own TFRecord reader (every
length and record CRC checked). Shards in pairgen's fixed record layout are parsed column-wise
with NumPy (:mod:`pairgen.codec.columnar`, PNG/JPEG decoded by OpenCV on a thread pool); anything
else goes through the per-record pure-Python ``tf.train.Example`` parser (:func:`read_records`).
The arrays are the same, key for key and byte for byte, as :func:`pairgen.reading.tfdata.load_arrays`
returns.

Example::

    arrays = pairgen.load_numpy("build/mnist-demo", "train")
    a, b, label = arrays["a"], arrays["b"], arrays["label"]     # (n, 28, 28, 1) float32, (n,)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*(torch.from_numpy(arrays[k]) for k in ("a", "b", "label"))),
        batch_size=256, shuffle=True)

The card is read by :func:`pairgen.dataset.card.read_card` and the record names come from
:mod:`pairgen.spec.schema`, as for the tf.data loader.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from pairgen.codec import columnar as fastread
from pairgen.codec.example import decode_example
from pairgen.codec.images import decode_record_image
from pairgen.codec.tfrecord import iter_records
from pairgen.dataset.card import read_card
from pairgen.dataset.versions import resolve
from pairgen.errors import DatasetError, PairgenError
from pairgen.reading.checks import check_split, count_message, spec_text
from pairgen.spec.schema import array_name, schema_of


def load_numpy(path: str | os.PathLike, split: str = "train", limit: int | None = None, *,
               normalize: bool = True) -> dict[str, np.ndarray]:
    """Read a split into NumPy arrays, in manifest order, without TensorFlow.

    Args:
        path: Dataset directory (``dir@version`` and ``dir@fingerprint-prefix`` accepted).
        split: Split name.
        limit: Read at most this many records (the first ones); ``None`` reads all.
        normalize: ``float32`` pixels in [0, 1] if true, else ``uint8``.

    Returns:
        For pairs: ``a``, ``b`` (images ``[n, h, w, c]``), ``label``, ``a_id``, ``b_id``,
        ``a_class``, ``b_class``, ``record_id`` (``int64`` ``[n]``). For triplets: ``anchor``,
        ``positive``, ``negative`` and ``anchor_id``, ``positive_id``, ``negative_id``,
        ``anchor_class``, ``positive_class``, ``negative_class``, ``record_id``. For images:
        ``image``, ``id``, ``class``, ``record_id``.

    Raises:
        DatasetError: If the dataset or split is missing, ``limit`` is negative, or a shard
            is damaged, holds another number of records than the card says, or holds images
            that do not match the card's image spec (see :mod:`pairgen.reading.checks`).
    """
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0 or None; received: limit={limit}.")
    root = resolve(path)
    card = read_card(root)
    files = card.shard_paths(root, split)
    schema = schema_of(card.kind)
    image_keys, int_keys = schema.image_keys, schema.int_keys
    check_split(card, root, split)
    expected = {str(root / e["path"]): e.get("records") for e in card.shards[split]}

    def check_count(shard: str, count: int, whole: bool) -> None:
        if whole and expected.get(shard) is not None and count != int(expected[shard]):
            raise DatasetError(count_message(shard, count, int(expected[shard]), root))

    arrays = fastread.read_split(files, image_keys, int_keys, card.image.shape, card.image.encoding,
                                 compression=card.compression,
                                 limit=limit, fallback=read_records, on_shard=check_count)
    return named_arrays(arrays, image_keys, int_keys, normalize)


def named_arrays(features: dict[str, np.ndarray], image_keys: Sequence[str], int_keys: Sequence[str],
                 normalize: bool) -> dict[str, np.ndarray]:
    """Feature arrays under :func:`load_numpy`'s keys (``a/image`` -> ``a``), pixels scaled as it does.

    ``normalize``: ``float32`` pixels in [0, 1], else the ``uint8`` arrays as given. Every NumPy
    reader (:func:`load_numpy`, :func:`pairgen.stream`, the P x K reader) returns this.
    """
    out: dict[str, np.ndarray] = {}
    for key in image_keys:
        pixels = features[key]
        if normalize:
            pixels = pixels.astype(np.float32)
            pixels *= np.float32(1.0 / 255.0)
        out[array_name(key)] = pixels
    for key in int_keys:
        out[array_name(key)] = features[key]
    return out


def read_records(files: list[str], image_keys: tuple[str, ...], int_keys: tuple[str, ...],
                 shape: tuple[int, int, int], encoding: str, *, compression: str = "none",
                 limit: int | None = None) -> dict[str, np.ndarray]:
    """Read shards record by record: any valid ``tf.train.Example`` layout, every checksum checked.

    The general reader behind :func:`load_numpy` (which reads pairgen's own fixed record layout
    column-wise with :mod:`pairgen.codec.columnar` and comes here for anything else); it names the
    record of a damaged shard exactly.

    Returns:
        Feature name to array: images ``uint8 [n, h, w, c]``, ints ``int64 [n]``.

    Raises:
        DatasetError: If a shard is missing or damaged, or an image does not decode to ``shape``.
    """
    images: dict[str, list[np.ndarray]] = {k: [] for k in image_keys}
    ints: dict[str, list[int]] = {k: [] for k in int_keys}
    count = 0
    for f in files:
        if limit is not None and count >= limit:
            break
        for index, data in enumerate(iter_records(f, compression=compression)):
            rec = decode_example(data)
            for key in image_keys:
                images[key].append(_record_image(rec, key, shape, encoding, f, index))
            for key in int_keys:
                ints[key].append(int(rec[key][0]))
            count += 1
            if limit is not None and count >= limit:
                break
    out = {key: np.stack(pixels) if pixels else np.zeros((0, *shape), np.uint8) for key, pixels in images.items()}
    out.update({key: np.asarray(values, np.int64) for key, values in ints.items()})
    return out


def _record_image(rec: dict[str, list], key: str, shape: tuple[int, int, int], encoding: str,
                  path: str, index: int) -> np.ndarray:
    """One image feature of a decoded record; a mismatch with the image spec names the shard and record."""
    try:
        return decode_record_image(rec[key][0], encoding, shape)
    except (PairgenError, KeyError, IndexError) as exc:
        problem = str(exc).rstrip(".") if isinstance(exc, PairgenError) else "missing"
        raise DatasetError(f"shard '{path}' record {index} does not match the image spec "
                           f"{spec_text(shape, encoding)} of dataset.json ({key}: {problem}); "
                           "run `pairgen verify` on the dataset.") from None
