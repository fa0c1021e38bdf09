"""``pairgen report``: one self-contained HTML page per dataset, checked as text and in headless Chromium.

The browser checks (``tests/browser.py``) load each page in a fresh headless Chromium over
the DevTools protocol and record every console error, uncaught exception, browser-logged
error and request; they run when Chromium is installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from browser import chromium_path, open_page, region_is_blank
from click.testing import CliRunner
from conftest import image_tree, write_image

from pairgen.cli import main
from pairgen.dataset import layout
from pairgen.dataset.card import read_card
from pairgen.tools.report import histogram_rows, near_duplicates_html, render_report, report, sample_indices

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pipelines" / "mnist-demo.toml"
MAX_BYTES = 5_000_000
needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed")


def _build(args: list[str]) -> None:
    res = CliRunner().invoke(main, ["build", *args, "--quiet"])
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo, and small pairs (with skipped files, duplicates, leakage), triplets and images datasets."""
    tmp = tmp_path_factory.mktemp("report")
    out = {"demo": tmp / "mnist-demo"}
    _build([str(DEMO), "--out", str(out["demo"])])
    src = image_tree(tmp, classes=4, per_class=6, size=40, seed=3, channels=3)
    (src / "class_00" / "notes.txt").write_text("not an image")
    (src / "class_01" / "cut.png").write_bytes((src / "class_01" / "img_000.png").read_bytes()[:60])
    shutil.copy(src / "class_02" / "img_000.png", src / "class_02" / "img_copy.png")  # a duplicate in one class
    shutil.copy(src / "class_03" / "img_000.png", src / "class_00" / "img_twin.png")  # identical, two classes
    out["pairs"] = tmp / "pairs"
    _build(["--src", str(src), "--image-size", "32x32", "--channels", "3", "--encoding", "png", "--out", str(out["pairs"])])
    out["pairs_seed1"] = tmp / "pairs1"
    _build(["--src", str(src), "--image-size", "32x32", "--channels", "3", "--encoding", "png", "--seed", "1",
            "--out", str(out["pairs_seed1"])])
    big = image_tree(tmp, classes=5, per_class=5, size=200, seed=4, channels=3, ext=".jpg", name="big")
    out["triplets"] = tmp / "triplets"
    _build(["--src", str(big), "--kind", "triplets", "--split-by", "class", "--splits", "train=0.6,test=0.4",
            "--image-size", "200x200", "--channels", "3", "--encoding", "jpeg", "--out", str(out["triplets"])])
    out["images"] = tmp / "images"
    _build(["--src", str(src), "--kind", "images", "--image-size", "24x24", "--channels", "1", "--out", str(out["images"])])
    return out


def _write(ds: Path, tmp_path: Path, name: str, *extra: str) -> Path:
    html_path = tmp_path / f"{name}.html"
    res = CliRunner().invoke(main, ["report", str(ds), "--out", str(html_path), *extra])
    assert res.exit_code == 0, res.output
    assert f"report written to {html_path}" in res.output
    return html_path


def test_demo_report_shows_the_cards_numbers_and_references_nothing_outside(datasets, tmp_path: Path) -> None:
    html_path = _write(datasets["demo"], tmp_path, "demo")
    text = html_path.read_text()
    card = read_card(datasets["demo"])
    assert html_path.stat().st_size < MAX_BYTES
    assert card.fingerprint in text and card.split_fingerprint in text and "mnist-demo 1.0.0" in text
    for split, counts in card.splits.items():
        row = re.search(rf"<tr><th>{split}</th>(.*?)</tr>", text).group(1)
        assert [f"{counts[k]:,}" for k in ("records", "positives", "negatives")] == re.findall(
            r'<td class="n">([\d,]+)</td>', row)[:3]
    # no script, no stylesheet or image fetched from anywhere: every src is a data: URI
    assert "<script" not in text and "<link" not in text and "url(" not in text
    assert set(re.findall(r'src="([a-z]+):', text)) == {"data"}
    assert len(re.findall(r'<div class="rec (?:pos|neg)">', text)) == 3 * 8  # 8 sample pairs per split
    assert render_report(datasets["demo"]) == text.rstrip("\n") + "\n"  # the same bytes every time


def test_pairs_report_lists_skipped_files_duplicates_and_label_conflicts_with_thumbnails(datasets, tmp_path) -> None:
    text = _write(datasets["pairs"], tmp_path, "pairs").read_text()
    skipped = text[text.index('id="skipped"'):text.index('id="duplicates"')]
    assert "not an image (1)" in skipped and "notes.txt" in skipped
    assert "cut.png" in skipped and "does not decode" in skipped  # the truncated file gets no thumbnail
    dups = text[text.index('id="duplicates"'):text.index('id="sizes"')]
    assert "Exact duplicates: 2 group(s) of identical content (4 images)" in dups
    assert "Label conflicts: 1 identical-content group(s) under more than one class (2 images)" in dups
    leaked = read_card(datasets["pairs"]).leakage["images"]
    assert dups.count("data:image/png;base64,") == 4 + 2 + leaked  # both duplicate groups, conflict, leakage
    assert "img_twin.png" in dups and "img_copy.png" in dups


def test_against_renders_what_diff_finds(datasets, tmp_path: Path) -> None:
    text = _write(datasets["pairs"], tmp_path, "vs", "--against", str(datasets["pairs_seed1"])).read_text()
    section = text[text.index('id="diff"'):]
    assert "fingerprints differ" in section and "<code>seed</code>" in section
    assert "records by content" in section and "only A" in section


def test_triplets_and_images_reports_show_their_roles(datasets, tmp_path: Path) -> None:
    trip = _write(datasets["triplets"], tmp_path, "triplets").read_text()
    assert Path(tmp_path / "triplets.html").stat().st_size < MAX_BYTES
    assert "anchor: class_" in trip and "positive: class_" in trip and "negative: class_" in trip
    assert "data:image/jpeg;base64," in trip  # 200x200 color records become small JPEG thumbnails
    images = _write(datasets["images"], tmp_path, "images").read_text()
    assert "Each record is one image and its class" in images
    assert 'class="rec pos"' not in images


def test_report_never_reads_the_manifests_and_samples_a_bounded_window(datasets, tmp_path: Path) -> None:
    copy = tmp_path / "no-manifests"
    shutil.copytree(datasets["pairs"], copy)
    shutil.rmtree(copy / layout.manifest("train").split("/")[0])
    assert "Sample records" in render_report(copy)
    # a 1,000,000-record split in 100 shards: 8 records from 8 shards, each within its first records
    sizes = [10_000] * 100
    picked = sample_indices(sizes, 8, window=500)
    assert len(picked) == 8 and len({i // 10_000 for i in picked}) == 8
    assert all(i % 10_000 < 500 for i in picked) and picked[0] == 0 and picked[-1] // 10_000 == 99
    assert sample_indices([0, 3, 0], 8) == [0, 1, 2]


def test_report_refuses_a_bad_samples_count_in_one_line(datasets, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1 and "missing" in res.output
    with pytest.raises(ValueError, match="--samples must be >= 1"):
        report(datasets["pairs"], out=tmp_path / "r.html", samples=0)


@pytest.fixture(scope="module")
def browser_check_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    page = tmp_path_factory.mktemp("bad") / "bad.html"
    write_image(page.parent / "dot.png", np.full((8, 8, 3), 200, np.uint8))
    page.write_text('<html><body><p>hello</p><img src="dot.png"><img src="http://192.0.2.1/x.png">'
                    '<script>console.error("boom"); undefined_function();</script></body></html>')
    return page


@needs_chromium
def test_the_browser_check_sees_console_errors_exceptions_and_requests(browser_check_page: Path) -> None:
    view = open_page(browser_check_page.as_uri(), settle=1.0)
    assert "hello" in view.text
    assert any("console.error: boom" in e for e in view.errors)
    assert any("undefined_function" in e for e in view.errors)
    assert "http://192.0.2.1/x.png" in view.external_requests()
    assert any(u.endswith("/dot.png") for u in view.external_requests())  # a file beside the page counts too


@needs_chromium
@pytest.mark.parametrize("name", ["demo", "pairs", "triplets", "images"])
def test_report_renders_in_chromium_without_errors_or_requests(datasets, tmp_path: Path, name: str) -> None:
    html_path = _write(datasets[name], tmp_path, name)
    view = open_page(html_path.as_uri())
    assert view.errors == []
    assert view.external_requests() == []
    assert view.images and all(i["complete"] and i["naturalWidth"] > 0 for i in view.images)
    shown = [i for i in view.images if i["y"] + i["height"] <= view.screenshot.shape[0]]
    assert shown and not any(region_is_blank(view.screenshot, i) for i in shown)
    if name == "demo":
        card = read_card(datasets["demo"])
        assert f"fingerprint\t{card.fingerprint}" in view.text
        assert re.search(r"train\t32,000\t16,000\t16,000\t50\.0%\t4,000\t10", view.text)
        assert re.search(r"test\t4,000\t2,000\t2,000", view.text)
        # the class balance chart is drawn: its blue train bars are on screen
        blue = np.all(np.abs(view.screenshot.astype(int) - [164, 101, 52]) < 8, axis=2)
        assert blue.sum() > 2000
        assert cv2.imdecode(np.frombuffer(view.png, np.uint8), cv2.IMREAD_COLOR).shape == view.screenshot.shape


def test_many_classes_are_charted_as_a_histogram_of_class_sizes(tmp_path: Path) -> None:
    src = image_tree(tmp_path, classes=45, per_class=[2 + i % 3 for i in range(45)], size=8)
    out = tmp_path / "many"
    _build(["--src", str(src), "--splits", "train=0.5,test=0.5", "--manifest-only", "--out", str(out)])
    text = render_report(out)
    balance = text[text.index('id="balance"'):text.index('id="samples"')]
    assert "train: classes by number of images (45 classes" in balance and "class_44" not in balance
    assert "built with --manifest-only" in text
    assert histogram_rows(np.array([28, 28, 32])) == [("28", [2.0]), ("32", [1.0])]
    assert histogram_rows(np.arange(100), bins=4) == [(f"{a}-{a + 24}", [25.0]) for a in (0, 25, 50, 75)]


def test_near_duplicate_groups_get_thumbnails_when_the_card_reports_them(tmp_path: Path) -> None:
    src = image_tree(tmp_path, classes=2, per_class=2, size=16)
    catalog = pd.DataFrame({"path": ["class_00/img_000.png", "class_01/img_001.png"], "split": ["train", "test"]})
    near = {"threshold": 0.97, "pairs": 1, "groups": 1, "images": 2,
            "top_groups": [[["class_00/img_000.png", "train"], ["class_01/img_001.png", "test"]]]}
    text = near_duplicates_html(src, near, catalog)
    assert "1 pair(s) at cosine similarity >= 0.97, 1 group(s) (2 images)" in text
    assert text.count("data:image/png;base64,") == 2 and "img_001.png [test]" in text
    assert near_duplicates_html(src, {}, catalog) == ""
