"""Read a pairgen dataset into NumPy arrays without TensorFlow.

For trainers on other frameworks (PyTorch, JAX) and for tools that must not pay for
``import tensorflow``: the split's shards are read with pairgen's own TFRecord reader (every
length and record CRC checked). Shards in pairgen's fixed record layout are parsed column-wise
with NumPy (:mod:`pairgen.fastread`, PNG/JPEG decoded by OpenCV on a thread pool); anything
else goes through the per-record pure-Python ``tf.train.Example`` parser (:func:`read_records`).
The arrays are the same, key for key and byte for byte, as :func:`pairgen.tfdata.load_arrays`
returns.

Example::

    arrays = pairgen.load_numpy("build/mnist-demo", "train")
    a, b, label = arrays["a"], arrays["b"], arrays["label"]     # (n, 28, 28, 1) float32, (n,)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*(torch.from_numpy(arrays[k]) for k in ("a", "b", "label"))),
        batch_size=256, shuffle=True)

The card helpers here (:func:`read_card`, :func:`image_spec`, :func:`shard_files`) are shared
with the tf.data loader.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pairgen import fastread, version
from pairgen.checks import check_split, count_message, spec_text
from pairgen.errors import DatasetError, PairgenError
from pairgen.imageio import decode_record_image
from pairgen.lineage import resolve
from pairgen.records import (PAIR_IMAGE_KEYS, PAIR_INT_KEYS, TRIPLET_IMAGE_KEYS, TRIPLET_INT_KEYS,
                             decode_example)
from pairgen.tfrecord import iter_records

SCHEMAS = {
    "pairs": (PAIR_IMAGE_KEYS, PAIR_INT_KEYS),
    "triplets": (TRIPLET_IMAGE_KEYS, TRIPLET_INT_KEYS),
}


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``<path>/dataset.json`` and check it has what a loader needs.

    Raises:
        DatasetError: If the directory or card is missing, unreadable or incomplete.
    """
    card = version.read_card(path)
    missing = [k for k in ("kind", "image", "shards") if k not in card]
    if missing or card.get("kind") not in SCHEMAS:
        raise DatasetError(f"'{Path(path) / 'dataset.json'}' lacks {', '.join(missing) or 'a valid kind'}; "
                           "it was not written by pairgen build. Rebuild the dataset.")
    return card


def image_spec(card: dict[str, Any], where: Path) -> tuple[tuple[int, int, int], str]:
    """``((height, width, channels), encoding)`` of a card's records."""
    image = card["image"]
    try:
        shape = (int(image["height"]), int(image["width"]), int(image["channels"]))
        encoding = str(image["encoding"])
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"'{where}/dataset.json' has an incomplete \"image\" entry "
                           "(needs height, width, channels, encoding); rebuild the dataset.") from None
    if encoding not in ("raw", "png", "jpeg"):
        raise DatasetError(f"'{where}/dataset.json' has image encoding {encoding!r}; expected raw, png or jpeg.")
    return shape, encoding


def shard_files(card: dict[str, Any], root: Path, split: str) -> list[str]:
    """The split's shard paths, in order, checked to exist."""
    shards = card["shards"]
    if split not in shards:
        have = ", ".join(shards) or "none"
        raise DatasetError(f"dataset '{root}' has no split {split!r}; it has: {have}.")
    files = [str(root / entry["path"]) for entry in shards[split]]
    for f in files:
        if not os.path.isfile(f):
            raise DatasetError(f"shard '{f}' listed in dataset.json is missing; run `pairgen verify {root}`.")
    return files


def array_name(feature: str) -> str:
    """The array key of a record feature: ``a/image`` -> ``a``, ``a/id`` -> ``a_id``."""
    return feature.replace("/image", "").replace("/", "_")


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
        ``anchor_class``, ``positive_class``, ``negative_class``, ``record_id``.

    Raises:
        DatasetError: If the dataset or split is missing, ``limit`` is negative, or a shard
            is damaged, holds another number of records than the card says, or holds images
            that do not match the card's image spec (see :mod:`pairgen.checks`).
    """
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0 or None; received: limit={limit}.")
    root = resolve(path)
    card = read_card(root)
    shape, encoding = image_spec(card, root)
    files = shard_files(card, root, split)
    image_keys, int_keys = SCHEMAS[card["kind"]]
    check_split(card, root, split, image_keys)
    compression = str(card.get("compression", "none"))
    expected = {str(root / e["path"]): e.get("records") for e in card["shards"][split]}

    def check_count(shard: str, count: int, whole: bool) -> None:
        if whole and expected.get(shard) is not None and count != int(expected[shard]):
            raise DatasetError(count_message(shard, count, int(expected[shard]), root))

    arrays = fastread.read_split(files, image_keys, int_keys, shape, encoding, compression=compression,
                                 limit=limit, fallback=read_records, on_shard=check_count)
    out: dict[str, np.ndarray] = {}
    for key in image_keys:
        pixels = arrays[key]
        if normalize:
            pixels = pixels.astype(np.float32)
            pixels *= np.float32(1.0 / 255.0)
        out[array_name(key)] = pixels
    for key in int_keys:
        out[array_name(key)] = arrays[key]
    return out


def read_records(files: list[str], image_keys: tuple[str, ...], int_keys: tuple[str, ...],
                 shape: tuple[int, int, int], encoding: str, *, compression: str = "none",
                 limit: int | None = None) -> dict[str, np.ndarray]:
    """Read shards record by record: any valid ``tf.train.Example`` layout, every checksum checked.

    The general reader behind :func:`load_numpy` (which reads pairgen's own fixed record layout
    column-wise with :mod:`pairgen.fastread` and comes here for anything else); it names the
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
