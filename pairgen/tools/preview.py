"""Montage PNGs of records decoded from a dataset's shards (OpenCV only, no GUI).

Pairs are drawn side by side in cells framed and tagged green "pos" (label 1) or red "neg"
(label 0); triplets as anchor / positive / negative columns. Every image has its class name
underneath. Records are taken evenly spaced over the split (the first, the last and equal
steps between), so the montage is the same on every call and shows the whole split rather
than its first few records. Small images are enlarged with nearest-neighbour so single
pixels stay visible; large ones are shrunk to fit.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pairgen.codec.example import decode_example
from pairgen.codec.images import decode_record_image
from pairgen.codec.tfrecord import read_records_at
from pairgen.dataset import layout
from pairgen.dataset import tables as mf
from pairgen.dataset.card import Card, read_card
from pairgen.dataset.versions import resolve
from pairgen.errors import ConfigError, DatasetError
from pairgen.reading.checks import check_split
from pairgen.spec.schema import LABEL, KindSchema, schema_of

POS_COLOR = (0, 170, 0)  # BGR green
NEG_COLOR = (0, 0, 220)  # BGR red
BACKGROUND = (32, 32, 32)
TEXT_COLOR = (235, 235, 235)
HEADER, CAPTION, FRAME, GAP, INNER = 16, 16, 2, 6, 2
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Grid:
    """Where everything goes in a montage (all sizes in pixels)."""

    kind: str  # a record kind (pairs, triplets, images)
    count: int
    tile: tuple[int, int]  # (height, width) of one displayed image
    columns: int

    @property
    def schema(self) -> KindSchema:
        return schema_of(self.kind)

    @property
    def slots(self) -> int:
        return len(self.schema.roles)

    @property
    def header(self) -> int:
        """Height of the band above the images: pos / neg, or the role names; none for one image."""
        return HEADER if self.schema.labelled or self.slots > 1 else 0

    @property
    def cell(self) -> tuple[int, int]:
        h, w = self.tile
        return self.header + h + CAPTION + 2 * FRAME, self.slots * w + (self.slots - 1) * INNER + 2 * FRAME

    @property
    def size(self) -> tuple[int, int]:
        ch, cw = self.cell
        rows = math.ceil(self.count / self.columns)
        return GAP + rows * (ch + GAP), GAP + self.columns * (cw + GAP)

    def cell_origin(self, i: int) -> tuple[int, int]:
        ch, cw = self.cell
        return GAP + (i // self.columns) * (ch + GAP), GAP + (i % self.columns) * (cw + GAP)

    def image_origin(self, i: int, slot: int) -> tuple[int, int]:
        """Top-left corner of record ``i``'s image number ``slot`` (0 = a / anchor)."""
        y, x = self.cell_origin(i)
        return y + FRAME + self.header, x + FRAME + slot * (self.tile[1] + INNER)


def tile_size(height: int, width: int) -> tuple[int, int]:
    """Displayed size of one image: at least ~72 px (integer enlargement), at most 160 px."""
    m = max(height, width)
    if m < 72:
        k = -(-72 // m)
        return height * k, width * k
    if m > 160:
        return max(1, round(height * 160 / m)), max(1, round(width * 160 / m))
    return height, width


def make_grid(kind: str, count: int, image_hw: tuple[int, int], columns: int | None = None) -> Grid:
    """The montage grid for ``count`` records: roughly 4:3 landscape unless ``columns`` is given."""
    grid = Grid(kind, count, tile_size(*image_hw), 1)
    if columns is None:
        aspect = grid.slots * (grid.tile[1] + INNER) / (grid.tile[0] + grid.header + CAPTION)
        columns = max(1, min(count, round(math.sqrt(count * 4 / 3 / aspect))))
    return dataclasses.replace(grid, columns=columns)


def pick_indices(total: int, count: int) -> list[int]:
    """``count`` record indices spread evenly over ``range(total)``, first and last included."""
    if count >= total:
        return list(range(total))
    return sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))


def read_records(root: Path, card: Card | dict[str, Any], split: str, indices: list[int]) -> list[dict[str, list]]:
    """Decode the records at ``indices`` (within the split) from its shards, in order."""
    card = Card.of(card, root)
    entries = card.shards.get(split, [])
    out: dict[int, dict[str, list]] = {}
    start = 0
    for entry in entries:
        stop = start + int(entry["records"])
        local = [i - start for i in indices if start <= i < stop]
        if local:
            found = read_records_at(root / entry["path"], local, compression=card.compression)
            out.update({start + i: decode_example(data) for i, data in found.items()})
        start = stop
    missing = [i for i in indices if i not in out]
    if missing:
        raise DatasetError(f"'{root}': record {missing[0]} of split {split!r} is not in its shards; "
                           f"run `pairgen verify {root}`.")
    return [out[i] for i in indices]


def _check(card: Card, root: Path, split: str, count: int) -> int:
    if count < 1:
        raise ConfigError(f"--count must be >= 1; received: --count={count}.")
    if split not in card.splits:
        raise DatasetError(f"dataset '{root}' has no split {split!r}; it has: {', '.join(card.splits)}.")
    if not card.shards:
        raise DatasetError(f"dataset '{root}' was built with --manifest-only and has no shards to preview; "
                           "rebuild it without --manifest-only.")
    total = sum(int(e["records"]) for e in card.shards.get(split, []))
    if total == 0:
        raise DatasetError(f"split {split!r} of '{root}' has no records to preview; choose another --split.")
    return total


def preview(path: str | os.PathLike, *, out: str | os.PathLike, split: str = "train", count: int = 24,
            columns: int | None = None) -> Path:
    """Write a montage PNG (or JPEG) of ``count`` records of one split.

    Args:
        path: Dataset directory (``dir``, ``dir@version`` or ``dir@fingerprint-prefix``).
        out: Image file to write (``.png`` recommended; its folder is created).
        split: Split to show.
        count: Number of records (fewer when the split is smaller).
        columns: Cells per row; chosen for a landscape montage when ``None``.

    Returns:
        The path written.

    Raises:
        DatasetError: If the dataset, split or shards are missing or the split is empty.
        ConfigError: If ``count`` < 1 or ``out`` has an extension OpenCV cannot write.
    """
    root = resolve(path)
    card = read_card(root)
    total = _check(card, root, split, count)
    check_split(card, root, split)  # the loaders' checks: exchanged shards, image spec, first records
    indices = pick_indices(total, count)
    recs = read_records(root, card, split, indices)
    names = _class_names(root)
    shape = card.image.shape
    grid = make_grid(card.kind.value, len(recs), shape[:2], columns)
    canvas = render(recs, grid, shape=shape, encoding=card.image.encoding, class_names=names)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(out.suffix or ".png", canvas) if out.suffix.lower() in (".png", ".jpg", ".jpeg") else (False, None)
    if not ok or buf is None:
        raise ConfigError(f"--out '{out}' must end in .png or .jpg.")
    out.write_bytes(buf.tobytes())
    return out


def _class_names(root: Path) -> dict[int, str]:
    catalog = mf.read_table(root / layout.CATALOG)
    pairs = catalog[["class_id", "class_name"]].drop_duplicates("class_id")
    return dict(zip(pairs["class_id"].astype(int).tolist(), pairs["class_name"].astype(str).tolist()))


def render(records: list[dict[str, list]], grid: Grid, *, shape: tuple[int, int, int], encoding: str,
           class_names: dict[int, str]) -> np.ndarray:
    """Draw decoded records (``decode_example`` dicts) into a BGR uint8 montage."""
    canvas = np.full((*grid.size, 3), BACKGROUND, dtype=np.uint8)
    th, tw = grid.tile
    schema = grid.schema
    for i, rec in enumerate(records):
        y, x = grid.cell_origin(i)
        ch, cw = grid.cell
        if schema.labelled:  # a framed pos / neg header; unlabelled kinds name each image instead
            color = POS_COLOR if rec[LABEL][0] == 1 else NEG_COLOR
            cv2.rectangle(canvas, (x, y), (x + cw - 1, y + ch - 1), color, FRAME)
            draw_text(canvas, "pos" if rec[LABEL][0] == 1 else "neg", (y + FRAME, x + FRAME), cw - 2 * FRAME, color)
        for s, role in enumerate(schema.roles):
            iy, ix = grid.image_origin(i, s)
            pixels = decode_record_image(rec[role.image_key][0], encoding, shape)
            canvas[iy:iy + th, ix:ix + tw] = _display(pixels, grid.tile)
            if not schema.labelled and grid.header:
                draw_text(canvas, role.name, (iy - grid.header, ix), tw, TEXT_COLOR)
            label = class_names.get(int(rec[role.class_key][0]), str(rec[role.class_key][0]))
            draw_text(canvas, label, (iy + th, ix), tw, TEXT_COLOR)
    return canvas


def _display(pixels: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    h, w = pixels.shape[:2]
    if (h, w) != tile:
        interp = cv2.INTER_NEAREST if tile[0] >= h else cv2.INTER_AREA
        pixels = cv2.resize(pixels, (tile[1], tile[0]), interpolation=interp)
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        pixels = cv2.cvtColor(pixels.reshape(tile), cv2.COLOR_GRAY2BGR)
    return pixels


def draw_text(canvas: np.ndarray, text: str, top_left: tuple[int, int], width: int, color: tuple[int, int, int]) -> None:
    """Centered one-line text in a 16 px band; a long text keeps its end (``..character07``)."""
    scale = 0.4
    while text and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width - 2:
        text = ".." + text[3:] if len(text) > 3 else text[1:]
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    y, x = top_left
    cv2.putText(canvas, text, (x + max(0, (width - tw) // 2), y + (HEADER + th) // 2), _FONT, scale, color, 1,
                cv2.LINE_AA)
