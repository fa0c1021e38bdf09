"""Read a pairgen dataset into NumPy arrays without TensorFlow.

For trainers on other frameworks (PyTorch, JAX) and for tools that must not pay for
``import tensorflow``: the split's shards are read with pairgen's own TFRecord reader (every
length and record CRC checked). Shards in pairgen's fixed record layout are parsed column-wise
with NumPy (:mod:`pairgen.codec.columnar`, PNG/JPEG decoded by OpenCV on a thread pool); anything
else goes through the per-record pure-Python ``tf.train.Example`` parser
(:func:`pairgen.reading.engine.read_records`).
The arrays are the same, key for key and byte for byte, as :func:`pairgen.reading.tfdata.load_arrays`
returns.

Example::

    arrays = pairgen.load_numpy("build/mnist-demo", "train")
    a, b, label = arrays["a"], arrays["b"], arrays["label"]     # (n, 28, 28, 1) float32, (n,)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*(torch.from_numpy(arrays[k]) for k in ("a", "b", "label"))),
        batch_size=256, shuffle=True)

The split is opened by :class:`pairgen.reading.handle.SplitHandle` (card, schema, shards, checks)
and read by :mod:`pairgen.reading.engine`, as for :func:`pairgen.stream`.
"""

from __future__ import annotations

import os

import numpy as np

from pairgen.errors import DatasetError
from pairgen.reading import engine
from pairgen.reading.checks import shard_damage
from pairgen.reading.handle import SplitHandle


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
    handle = SplitHandle(path, split)
    with shard_damage(handle.root):
        arrays = engine.read_split(handle.files, handle.spec, limit=limit, on_shard=handle.check_count)
    return engine.named_arrays(arrays, handle.image_keys, handle.int_keys, normalize)
