"""Turn manifest rows into serialized ``tf.train.Example`` records.

Workers never import TensorFlow: they decode with OpenCV, jitter with NumPy, and encode the
Example protobuf in pure Python (:mod:`pairgen.codec.example`). Every source image read here is
hashed and compared with the catalog's sha256, so a file that changed after the scan fails
the build instead of putting new pixels under an old label. The files that workers write
are in :mod:`pairgen.writing.shardwork`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pairgen.codec import example, sourceio
from pairgen.codec import images as imageio
from pairgen.errors import BuildError
from pairgen.rendering import augment as _augment
from pairgen.spec.config import AugmentConfig, Encoding, ImageConfig, Kind
from pairgen.spec.schema import schema_of

CHUNK_RECORDS = 512


@dataclass(frozen=True)
class Source:
    """Where the source images are; sent to each worker once."""

    root: str
    paths: Sequence[str] | Mapping[int, str]  # indexed by image_id
    sha256: Sequence[str] | Mapping[int, str] | None = None  # the scan's hashes; None: unchecked


@dataclass(frozen=True)
class Render:
    """How records are rendered; small, so it travels with every task."""

    kind: Kind
    image: ImageConfig
    augment: AugmentConfig


def _read(source: Source, image_id: int, image: ImageConfig) -> np.ndarray:
    rel = source.paths[image_id]
    path = os.path.join(source.root, rel)
    try:
        data = sourceio.read_source(path)
    except OSError as exc:
        raise BuildError(f"cannot read source image '{path}': {exc.strerror}. Was the source changed or "
                         "moved since the scan?") from None
    if source.sha256 is not None and hashlib.sha256(data).hexdigest() != source.sha256[image_id]:
        raise BuildError(f"source image '{path}' changed during the build (its content no longer matches "
                         "the sha256 taken by the scan); nothing was written to --out. Rebuild once the "
                         "source is stable.")
    return imageio.decode(data, channels=image.channels, max_pixels=image.max_pixels, source=rel)


def plain_pixels(source: Source, image_id: int, image: ImageConfig, augment: AugmentConfig) -> np.ndarray:
    """One image brought to the dataset's size without jitter (``augment`` gives the interpolation)."""
    plain = augment if not augment.enabled else replace(augment, enabled=False)
    return _augment.transform_record([_read(source, image_id, image)], image=image, augment=plain,
                                     rng=np.random.default_rng(0))[0]


def record_pixels(source: Source, image_id: int, image: ImageConfig, augment: AugmentConfig) -> np.ndarray:
    """The pixels an un-augmented record holds for one image, as a reader decodes them.

    The same rendering as :func:`render_record`; for JPEG records the encoding's loss is
    included (the image is encoded and decoded again), so a model sees what it trained on.
    """
    pixels = plain_pixels(source, image_id, image, augment)
    if image.encoding is Encoding.JPEG:
        data = imageio.encode(pixels, image.encoding, jpeg_quality=image.jpeg_quality)
        pixels = imageio.decode_record_image(data, image.encoding, pixels.shape)
    return pixels


def render_record(source: Source, render: Render, ids: tuple[int, ...], aug_seed: int,
                  cache: dict) -> list[bytes]:
    """Encoded image bytes of one record, exactly reproducible from ``aug_seed`` alone.

    Args:
        source: Where the images are.
        render: Record kind, image spec and augmentation.
        ids: The record's image ids in record order.
        aug_seed: The record's augmentation seed from the manifest.
        cache: Per-chunk cache of decoded (and, without augmentation, encoded) images.

    Returns:
        One encoded image (raw, PNG or JPEG bytes) per id.
    """
    img_cfg, aug_cfg = render.image, render.augment
    if not aug_cfg.enabled:
        out = []
        for i in ids:
            key = ("enc", i)
            if key not in cache:
                pixels = plain_pixels(source, i, img_cfg, aug_cfg)
                cache[key] = imageio.encode(pixels, img_cfg.encoding, jpeg_quality=img_cfg.jpeg_quality)
            out.append(cache[key])
        return out
    decoded = []
    for i in ids:
        if i not in cache:
            cache[i] = _read(source, i, img_cfg)
        decoded.append(cache[i])
    rendered = _augment.transform_record(decoded, image=img_cfg, augment=aug_cfg,
                                         rng=np.random.default_rng(int(aug_seed)))
    return [imageio.encode(p, img_cfg.encoding, jpeg_quality=img_cfg.jpeg_quality) for p in rendered]


def make_chunk(task: tuple[Render, dict[str, np.ndarray]], source: Source, cache: dict | None = None) -> list[bytes]:
    """Serialize one chunk of manifest rows (column name -> array) into Example bytes.

    Args:
        task: The render settings and the rows (column name -> equal-length arrays).
        source: Where the images are (and their scan hashes).
        cache: Decoded images kept between chunks (each image is read once while it holds).

    Returns:
        One serialized ``tf.train.Example`` per row, in row order.
    """
    render, chunk = task
    cache = {} if cache is None else cache
    out = []
    id_cols = schema_of(render.kind).id_columns
    with imageio.native_messages_muted():  # once for the chunk, not per image decoded
        for r in range(len(chunk["record_id"])):
            ids = tuple(int(chunk[c][r]) for c in id_cols)
            imgs = render_record(source, render, ids, int(chunk["aug_seed"][r]), cache)
            out.append(example.encode_record(render.kind, chunk, r, imgs))
    return out


def chunks(columns: dict[str, np.ndarray], size: int = CHUNK_RECORDS) -> Iterator[dict[str, np.ndarray]]:
    """Slice equal-length column arrays into consecutive chunks of ``size`` rows."""
    n = len(next(iter(columns.values()))) if columns else 0
    for start in range(0, n, size):
        yield {k: v[start:start + size] for k, v in columns.items()}
