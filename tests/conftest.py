"""Shared fixtures: tiny real image trees written with OpenCV.

Each tree fixture returns a factory; call it with ``tmp_path`` (and options) to write a tree
under ``tmp_path / name`` and get its root back::

    def test_something(make_image_tree, tmp_path):
        root = make_image_tree(tmp_path, classes=3, per_class=4)          # root/class_00/img_000.png
        nested = make_image_tree(tmp_path, nested=True, name="omniglot")  # root/Alphabet_0/character01/...

Images are random noise plus a filled circle, drawn from ``np.random.default_rng(seed)``, so
every image has different bytes and the same call always writes the same files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from pairgen.codec.tfrecord import iter_records
from pairgen.dataset.card import read_json, write_card
from pairgen.writing.shards import ShardSpec, ShardWriter, shard_path


def random_image(rng: np.random.Generator, size: int | tuple[int, int] = 24,
                 channels: int = 3) -> np.ndarray:
    """A uint8 image (h, w) or (h, w, channels) of noise with a filled circle."""
    h, w = (size, size) if isinstance(size, int) else size
    shape = (h, w) if channels == 1 else (h, w, channels)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    color = tuple(int(c) for c in rng.integers(0, 256, size=max(channels, 1)))
    cv2.circle(image, center, max(2, min(h, w) // 4), color if channels > 1 else color[0], -1)
    return image


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write ``image`` to ``path`` (format from the extension), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, image)
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {path.suffix}")
    path.write_bytes(buf.tobytes())
    return path


def _class_names(classes: int | Sequence[str], nested: bool) -> list[str]:
    if not isinstance(classes, int):
        return list(classes)
    if nested:  # Omniglot: two alphabets, characters numbered from 01 within each
        return [f"Alphabet_{i % 2}/character{i // 2 + 1:02d}" for i in range(classes)]
    return [f"class_{i:02d}" for i in range(classes)]


def image_tree(tmp_path: Path, classes: int | Sequence[str] = 3, per_class: int | Sequence[int] = 4,
               size: int = 24, seed: int = 0, ext: str = ".png", nested: bool = False,
               channels: int = 3, name: str = "src") -> Path:
    """Write ``root/<class>/img_NNN<ext>`` (or nested ``root/Alphabet_k/characterNN/``).

    Args:
        tmp_path: Folder to write into; the tree is ``tmp_path / name``.
        classes: Number of classes, or explicit class names (may contain '/').
        per_class: Images per class, or one count per class.
        size: Square image side in pixels.
        seed: Seed of the pixel generator.
        ext: Image extension, e.g. ".png", ".jpg".
        nested: Omniglot-style two-level class names (only when ``classes`` is an int).
        channels: 1 (gray) or 3 (BGR).
        name: Name of the root folder.

    Returns:
        The root folder.
    """
    root = tmp_path / name
    names = _class_names(classes, nested)
    counts = [per_class] * len(names) if isinstance(per_class, int) else list(per_class)
    rng = np.random.default_rng(seed)
    for class_name, count in zip(names, counts):
        for j in range(count):
            write_image(root / class_name / f"img_{j:03d}{ext}", random_image(rng, size, channels))
    root.mkdir(parents=True, exist_ok=True)
    return root


def left_right_tree(tmp_path: Path, identities: int = 4, size: int = 24, seed: int = 0,
                    ext: str = ".png", left_only: Sequence[str] = (), right_only: Sequence[str] = (),
                    name: str = "src") -> Path:
    """Write ``root/left/id_NN<ext>`` and ``root/right/id_NN<ext>`` (Totally-Looks-Like).

    Args:
        tmp_path: Folder to write into; the tree is ``tmp_path / name``.
        identities: Number of complete left/right identities ``id_00``, ``id_01``, ...
        size: Square image side in pixels.
        seed: Seed of the pixel generator.
        ext: Image extension.
        left_only: Extra stems written only under ``left/``.
        right_only: Extra stems written only under ``right/``.
        name: Name of the root folder.

    Returns:
        The root folder.
    """
    root = tmp_path / name
    rng = np.random.default_rng(seed)
    for i in range(identities):
        for side in ("left", "right"):
            write_image(root / side / f"id_{i:02d}{ext}", random_image(rng, size))
    for side, stems in (("left", left_only), ("right", right_only)):
        for stem in stems:
            write_image(root / side / f"{stem}{ext}", random_image(rng, size))
    (root / "left").mkdir(parents=True, exist_ok=True)
    (root / "right").mkdir(parents=True, exist_ok=True)
    return root


def split_folders_tree(tmp_path: Path, splits: Sequence[str] = ("train", "test"),
                       classes: int | Sequence[str] = 3, per_class: int = 4, size: int = 24,
                       seed: int = 0, ext: str = ".png", nested: bool = False,
                       name: str = "src") -> Path:
    """Write ``root/<split>/<class>/img_NNN<ext>`` with the same classes in every split.

    Args:
        tmp_path: Folder to write into; the tree is ``tmp_path / name``.
        splits: Split folder names.
        classes: Number of classes, or explicit class names.
        per_class: Images per class in each split.
        size: Square image side in pixels.
        seed: Seed of the pixel generator (each split gets different pixels).
        ext: Image extension.
        nested: Omniglot-style two-level class names below each split folder.
        name: Name of the root folder.

    Returns:
        The root folder.
    """
    root = tmp_path / name
    for k, split in enumerate(splits):
        image_tree(root, classes=classes, per_class=per_class, size=size, seed=seed * 1000 + k,
                   ext=ext, nested=nested, name=split)
    return root


def flip_pipeline(tmp_path: Path) -> Path:
    """A pipeline file whose augmentation does something (``--augment`` alone is refused)."""
    path = tmp_path / "flip.toml"
    path.write_text("[augment]\nflip = true\n")
    return path


def copy_dataset(built: dict[str, Path], name: str, tmp_path: Path) -> Path:
    """A copy of the dataset ``built[name]`` under ``tmp_path``, to damage without touching the original."""
    return Path(shutil.copytree(built[name], tmp_path / name))


def reshard(src: Path, dst: Path, split: str, fractions: tuple[float, ...]) -> Path:
    """Copy a dataset and rewrite ``split`` into shards of the given fractions of its records."""
    shutil.copytree(src, dst)
    card = read_json(dst)
    records = [data for entry in card["shards"][split] for data in iter_records(src / entry["path"])]
    for entry in card["shards"][split]:
        (dst / entry["path"]).unlink()
    edges = np.r_[0, np.cumsum([int(f * len(records)) for f in fractions[:-1]]), len(records)]
    n = len(fractions)
    specs = [ShardSpec(split, i, n, int(a), int(b), shard_path(split, i, n, "none"))
             for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    with ShardWriter(dst, specs, compression="none") as writer:
        for data in records:
            writer.write(data)
    card["shards"][split] = writer.close()
    write_card(dst, card)
    return dst


@pytest.fixture
def make_image_tree() -> Callable[..., Path]:
    """Factory: ``make_image_tree(tmp_path, classes=3, per_class=4, size=24, seed=0, ext=".png", nested=False)``."""
    return image_tree


@pytest.fixture
def make_left_right_tree() -> Callable[..., Path]:
    """Factory: ``make_left_right_tree(tmp_path, identities=4, left_only=(), right_only=())``."""
    return left_right_tree


@pytest.fixture
def make_split_folders_tree() -> Callable[..., Path]:
    """Factory: ``make_split_folders_tree(tmp_path, splits=("train", "test"), classes=3, per_class=4)``."""
    return split_folders_tree
