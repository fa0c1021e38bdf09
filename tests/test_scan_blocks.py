"""The scan's block reads: one read per file, and the same catalog whatever the worker count,
block size or walk order."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import random_image, write_image

import pairgen.scanning.labels
from pairgen.scanning.catalog import ScanOptions, scan, scan_source
from pairgen.spec.config import BuildConfig
from pairgen.workers.pool import Pool
from pairgen.writing.builder import build

_OPENS: dict[str, int] | None = None
_AUDIT_ROOT: list[str] = [""]


def _audit(event: str, args: tuple) -> None:
    if _OPENS is not None and event == "open" and isinstance(args[0], str) and args[0].startswith(_AUDIT_ROOT[0]):
        _OPENS[args[0]] = _OPENS.get(args[0], 0) + 1


sys.addaudithook(_audit)  # a no-op unless a test turns counting on


def _odd_tree(tmp_path: Path) -> Path:
    """Nested classes whose depth-first walk order is not the sorted order, with files to skip."""
    import numpy as np

    rng = np.random.default_rng(3)
    root = tmp_path / "src"
    for rel in ("cls/img.png", "cls/sub0.png", "cls/sub/a.png", "cls/sub/b.png", "cls/sub/c.png",
                "other/x.jpg", "other/y.png", "solo/one.png", "top.png"):
        write_image(root / rel, random_image(rng, 20))
    for k in range(40):  # enough files for several blocks
        write_image(root / "many" / f"{k:03d}.png", random_image(rng, 16))
    (root / "cls" / "notes.txt").write_text("not an image")
    (root / "cls" / "empty.png").write_bytes(b"")
    (root / "cls" / ".hidden.png").write_bytes(b"x")
    data = (root / "many" / "007.png").read_bytes()  # valid header and end, damaged pixels
    (root / "many" / "007.png").write_bytes(data[:40] + bytes(len(data) - 52) + data[-12:])
    (root / "other" / "cut.png").write_bytes((root / "other" / "y.png").read_bytes()[:30])
    return root


def _scan(root: Path, workers: int, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    check = BuildConfig().image
    with Pool(workers=workers) as pool:
        result = scan_source(root, ScanOptions.of(**kwargs), pool=pool, check=check)
    return result.catalog.images, result.catalog.skipped, dict(result.undecodable)


@pytest.mark.parametrize("block", [3, 512])
def test_catalog_is_the_same_for_any_worker_count_and_block_size(tmp_path: Path, monkeypatch,
                                                                 block: int) -> None:
    root = _odd_tree(tmp_path)
    monkeypatch.setattr(pairgen.scanning.labels, "READ_BLOCK", block)
    images, skipped, undecodable = _scan(root, 1, min_per_class=2)
    # Sorted by path, not in walk order ("cls/sub/..." sorts before "cls/sub0.png").
    assert images["path"].tolist() == sorted(images["path"])
    assert images["path"].tolist()[:5] == ["cls/img.png", "cls/sub/a.png", "cls/sub/b.png", "cls/sub/c.png",
                                           "cls/sub0.png"]
    assert images["image_id"].tolist() == list(range(len(images)))
    assert dict(zip(skipped["path"], skipped["reason"].str.split(":").str[0])) == {
        "cls/.hidden.png": "hidden file", "cls/empty.png": "empty file", "cls/notes.txt": "not an image",
        "other/cut.png": "corrupt image",
        "solo/one.png": "class below min_per_class", "top.png": "outside any class folder"}
    assert list(undecodable) == ["many/007.png"] and "damaged" in undecodable["many/007.png"]
    for workers in (2, 3):
        other = _scan(root, workers, min_per_class=2)
        pd.testing.assert_frame_equal(other[0], images)
        pd.testing.assert_frame_equal(other[1], skipped)
        assert other[2] == undecodable


@pytest.mark.parametrize("layout", ["classes", "split-folders", "left-right", "table"])
def test_scan_reads_each_file_once(tmp_path: Path, make_image_tree, make_split_folders_tree,
                                   make_left_right_tree, layout: str) -> None:
    global _OPENS
    if layout == "classes":
        root = src = make_image_tree(tmp_path, classes=3, per_class=5)
    elif layout == "split-folders":
        root = src = make_split_folders_tree(tmp_path)
    elif layout == "left-right":
        root = src = make_left_right_tree(tmp_path, identities=5)
    else:
        root = make_image_tree(tmp_path, classes=3, per_class=5)
        rows = [(p.relative_to(tmp_path).as_posix(), p.parent.name) for p in sorted(root.rglob("*.png"))]
        src = tmp_path / "labels.csv"
        src.write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows))
    images = sorted(str(p) for p in root.rglob("*.png"))
    _AUDIT_ROOT[0] = str(root)
    _OPENS = {}
    try:
        catalog = scan(src, layout=layout, table=src if layout == "table" else None, check=BuildConfig().image)
    finally:
        counts, _OPENS = _OPENS, None
    assert len(catalog.images) == len(images)
    assert counts == {p: 1 for p in images}  # header, sha256 and decode check from one read


def test_build_bytes_identical_across_workers_with_many_scan_blocks(tmp_path: Path, make_image_tree,
                                                                    monkeypatch) -> None:
    monkeypatch.setattr(pairgen.scanning.labels, "READ_BLOCK", 7)  # the scan spreads over many tasks
    src = make_image_tree(tmp_path, classes=4, per_class=20, size=20, nested=True)
    cfg = BuildConfig().override({"source.path": str(src), "image.size": [20, 20], "image.encoding": "png"})
    cards = {w: build(cfg.override({"build.workers": w}), tmp_path / f"w{w}") for w in (1, 2)}
    files = {w: {p.relative_to(tmp_path / f"w{w}").as_posix(): p.read_bytes()
                 for p in sorted((tmp_path / f"w{w}").rglob("*")) if p.is_file() and p.name != "dataset.json"}
             for w in cards}
    assert any(k.startswith("shards/") for k in files[1]) and "catalog.parquet" in files[1]
    assert files[2] == files[1]
    assert cards[2]["fingerprint"] == cards[1]["fingerprint"]


def test_scan_source_returns_the_catalog_the_undecodable_images_and_the_stage_timings(tmp_path: Path) -> None:
    root = _odd_tree(tmp_path)
    result = scan_source(root, ScanOptions.of(min_per_class=2), check=BuildConfig().image)
    assert result.catalog.images["path"].tolist() == scan(root, min_per_class=2).images["path"].tolist()
    assert list(result.undecodable) == ["many/007.png"]
    stages = result.timings.as_dict()
    assert list(stages) == ["walk", "wait", "assemble", "main_cpu", "worker_label", "worker_read",
                            "worker_decode", "worker_cpu"]
    assert all(v >= 0 for v in stages.values()) and stages["worker_read"] > 0
