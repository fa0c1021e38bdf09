"""pairgen preview: montages of pairs and triplets decoded from real shards."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import image_tree

from pairgen.cli import main
from pairgen.codec.images import decode_record_image
from pairgen.dataset.card import read_json as read_card
from pairgen.errors import ConfigError, DatasetError
from pairgen.spec.config import BuildConfig
from pairgen.spec.schema import schema_of
from pairgen.tools.preview import FRAME, NEG_COLOR, POS_COLOR, make_grid, pick_indices, preview, read_records
from pairgen.writing.builder import build


def _config(src: Path, **overrides) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [20, 20], "split.fractions": {"test": 0.5, "train": 0.5},
            "shards.records_per_shard": 7, "build.workers": 1, "build.quiet": True}
    base.update(overrides)
    return BuildConfig().override(base)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("preview")
    src = image_tree(base, classes=3, per_class=6, size=20)
    build(_config(src), base / "pairs")
    build(_config(src, kind="triplets", **{"image.channels": 3, "image.encoding": "png"}), base / "triplets")
    build(_config(src, **{"build.manifest_only": True}), base / "manifest-only")
    build(_config(src, kind="images"), base / "images")
    return {"pairs": base / "pairs", "triplets": base / "triplets", "manifest-only": base / "manifest-only",
            "images": base / "images"}


def _expected_tile(data: bytes, card: dict, tile: tuple[int, int]) -> np.ndarray:
    image = card["image"]
    shape = (image["height"], image["width"], image["channels"])
    pixels = cv2.resize(decode_record_image(data, image["encoding"], shape), (tile[1], tile[0]),
                        interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR) if pixels.ndim == 2 else pixels


@pytest.mark.parametrize("kind, slots", [("pairs", ("a", "b")), ("triplets", ("anchor", "positive", "negative")),
                                         ("images", ("",))])
def test_montage_shows_the_records_from_the_shards(datasets, tmp_path: Path, kind: str, slots) -> None:
    path, card = datasets[kind], read_card(datasets[kind])
    out = preview(path, split="train", count=8, out=tmp_path / "p.png")
    montage = cv2.imread(str(out), cv2.IMREAD_COLOR)
    total = card["splits"]["train"]["records"]
    indices = pick_indices(total, 8)
    records = read_records(path, card, "train", indices)
    grid = make_grid(kind, len(records), (20, 20))
    assert montage.shape[:2] == grid.size
    th, tw = grid.tile
    for i, rec in enumerate(records):
        for s, _name in enumerate(slots):
            y, x = grid.image_origin(i, s)
            np.testing.assert_array_equal(montage[y:y + th, x:x + tw],
                                          _expected_tile(rec[schema_of(kind).roles[s].image_key][0], card,
                                                         grid.tile))


def test_single_image_records_have_no_header_band() -> None:
    images, pairs = make_grid("images", 6, (20, 20), columns=3), make_grid("pairs", 6, (20, 20), columns=3)
    assert images.header == 0 and pairs.header > 0
    assert images.image_origin(0, 0)[0] == images.cell_origin(0)[0] + FRAME
    assert images.cell[0] == pairs.cell[0] - pairs.header


def test_pairs_are_framed_green_pos_and_red_neg(datasets, tmp_path: Path) -> None:
    path, card = datasets["pairs"], read_card(datasets["pairs"])
    out = preview(path, split="train", count=12, out=tmp_path / "p.png")
    montage = cv2.imread(str(out), cv2.IMREAD_COLOR)
    records = read_records(path, card, "train", pick_indices(card["splits"]["train"]["records"], 12))
    grid = make_grid("pairs", len(records), (20, 20))
    labels = {rec["label"][0] for rec in records}
    assert labels == {0, 1}
    for i, rec in enumerate(records):
        y, x = grid.cell_origin(i)
        color = POS_COLOR if rec["label"][0] == 1 else NEG_COLOR
        h = grid.cell[0]
        assert tuple(int(v) for v in montage[y + h // 2, x + FRAME // 2]) == color


def test_pick_indices_spread_over_the_split() -> None:
    assert pick_indices(100, 5) == [0, 25, 50, 74, 99]
    assert pick_indices(3, 10) == [0, 1, 2]


def test_preview_errors(datasets, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no split 'nope'"):
        preview(datasets["pairs"], split="nope", out=tmp_path / "p.png")
    with pytest.raises(DatasetError, match="--manifest-only"):
        preview(datasets["manifest-only"], out=tmp_path / "p.png")
    with pytest.raises(ConfigError, match="must end in .png"):
        preview(datasets["pairs"], out=tmp_path / "p.gif")


def test_cli_writes_png_and_prints_its_path(datasets, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "preview.png"
    result = CliRunner().invoke(main, ["preview", str(datasets["triplets"]), "--split", "test", "--count", "4",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and cv2.imread(str(out)) is not None
    bad = CliRunner().invoke(main, ["preview", str(datasets["pairs"]), "--split", "nope", "--out", str(out)])
    assert bad.exit_code == 1 and "no split 'nope'" in bad.output
