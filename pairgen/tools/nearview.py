"""A montage of the largest near-duplicate groups that cross splits (``pairgen preview --near``).

One row per group, largest first: each image read from the source file the catalog names,
shown in a fixed tile with its split above it (red when it is not the split of the group's
first image) and the end of its path below. The groups come from the signatures kept in
``catalog.parquet`` (:func:`pairgen.scanning.near.cross_split`), so nothing is decoded but the
images drawn.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from pairgen.codec import sourceio
from pairgen.codec.images import decode
from pairgen.dataset import layout
from pairgen.dataset import tables as mf
from pairgen.dataset.card import read_card
from pairgen.dataset.versions import resolve
from pairgen.errors import ConfigError, DatasetError
from pairgen.scanning import near
from pairgen.spec.config import NEAR_THRESHOLD
from pairgen.tools.preview import BACKGROUND, GAP, HEADER, NEG_COLOR, TEXT_COLOR, draw_text

TILE = 96  # pixels per displayed image (longest side)
PER_ROW = 8  # images shown per group at most


def near_montage(path: str | os.PathLike, *, out: str | os.PathLike, count: int = 8,
                 threshold: float | None = None) -> tuple[Path, int]:
    """Write a montage of the ``count`` largest near-duplicate groups that cross splits.

    Args:
        path: The dataset directory.
        out: The PNG (or JPEG) to write.
        count: Groups to show.
        threshold: Cosine similarity (``None``: the build's ``split.near_threshold``).

    Returns:
        The path written and the number of groups drawn (0: an empty note is written).

    Raises:
        DatasetError: The catalog has no signatures, or a source image cannot be read.
        ConfigError: ``count`` < 1 or ``out`` is not .png/.jpg.
    """
    if count < 1:
        raise ConfigError(f"--count must be >= 1; received: {count}.")
    root = resolve(path)
    card = read_card(root)
    catalog = mf.read_table(root / layout.CATALOG)
    signatures = mf.catalog_signatures(catalog)
    if signatures is None:
        raise DatasetError(f"'{root / layout.CATALOG}' has no near-duplicate signatures (built before they "
                           "existed, or manifest-only); rebuild the dataset to get them.")
    chosen = threshold if threshold is not None else card.config.get("split", {}).get("near_threshold", NEAR_THRESHOLD)
    groups = near.cross_split(catalog, signatures, float(chosen), limit=count)["top_groups"]
    source = Path(card.source.get("root", ""))
    rows = [[(_tile(source, p), p, s) for p, s in group[:PER_ROW]] for group in groups]
    canvas = _draw(rows, f"no near-duplicate group crosses splits at cosine >= {chosen:g}")
    out = Path(out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"--out '{out}' must end in .png or .jpg.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(cv2.imencode(out.suffix, canvas)[1].tobytes())
    return out, len(rows)


def _tile(root: Path, rel: str) -> np.ndarray:
    try:
        pixels = decode(sourceio.read_source(str(root / rel)), channels=3, source=rel)
    except OSError as exc:
        raise DatasetError(f"cannot read source image '{root / rel}' ({exc.strerror or exc}); the montage "
                           "draws the source files, so keep the source folder in place.") from None
    h, w = pixels.shape[:2]
    scale = TILE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    shown = cv2.resize(pixels, size, interpolation=cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA)
    tile = np.full((TILE, TILE, 3), BACKGROUND, np.uint8)
    y, x = (TILE - size[1]) // 2, (TILE - size[0]) // 2
    tile[y:y + size[1], x:x + size[0]] = cv2.cvtColor(shown, cv2.COLOR_RGB2BGR)
    return tile


def _draw(rows: list[list[tuple[np.ndarray, str, str]]], empty: str) -> np.ndarray:
    if not rows:
        canvas = np.full((HEADER + 2 * GAP, 420, 3), BACKGROUND, np.uint8)
        draw_text(canvas, empty, (GAP, GAP), 420 - 2 * GAP, TEXT_COLOR)
        return canvas
    cell_h, cell_w = HEADER + TILE + HEADER, TILE + GAP
    width = GAP + max(len(r) for r in rows) * cell_w
    canvas = np.full((GAP + len(rows) * (cell_h + GAP), width, 3), BACKGROUND, np.uint8)
    for i, row in enumerate(rows):
        y = GAP + i * (cell_h + GAP)
        home = row[0][2]
        for j, (tile, path, split) in enumerate(row):
            x = GAP + j * cell_w
            draw_text(canvas, split, (y, x), TILE, TEXT_COLOR if split == home else NEG_COLOR)
            canvas[y + HEADER:y + HEADER + TILE, x:x + TILE] = tile
            draw_text(canvas, path, (y + HEADER + TILE, x), TILE, TEXT_COLOR)
    return canvas
