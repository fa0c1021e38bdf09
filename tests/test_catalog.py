"""Scanning sources into catalogs, and header parsing without decoding."""

from __future__ import annotations

import hashlib
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import random_image, write_image

from pairgen.codec.headers import read_header
from pairgen.errors import ConfigError, ImageError, ScanError
from pairgen.scanning.catalog import IMAGE_COLUMNS, Catalog, reason_kind, scan, summarize
from pairgen.spec.config import Layout


def _reasons(catalog: Catalog) -> dict[str, str]:
    return dict(zip(catalog.skipped["path"], catalog.skipped["reason"]))


# --- headers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".gif", ".tif", ".webp"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_header_matches_decoded_shape(tmp_path, ext, channels):
    rng = np.random.default_rng(channels)
    image = random_image(rng, (13, 17), channels)
    if ext == ".gif" and channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)  # OpenCV's GIF writer needs colour
    path = write_image(tmp_path / f"x{ext}", image)
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    expected = (decoded.shape[1], decoded.shape[0], 1 if decoded.ndim == 2 else decoded.shape[2])
    assert read_header(path) == expected
    assert read_header(path.read_bytes()) == expected


@pytest.mark.parametrize("quality", [50, 101])  # lossy VP8 (+VP8X with alpha) and lossless VP8L
def test_header_webp_variants(quality):
    for channels in (3, 4):
        image = random_image(np.random.default_rng(0), (21, 9), channels)
        ok, buf = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality])
        assert ok
        assert read_header(buf.tobytes()) == (9, 21, cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).shape[2])


def test_header_sixteen_bit_png_and_palette_bmp():
    image16 = np.random.default_rng(1).integers(0, 65535, (5, 7, 3)).astype(np.uint16)
    assert read_header(cv2.imencode(".png", image16)[1].tobytes()) == (7, 5, 3)
    gray = np.random.default_rng(2).integers(0, 255, (6, 4), dtype=np.uint8)
    assert read_header(cv2.imencode(".bmp", gray)[1].tobytes()) == (4, 6, 1)


@pytest.mark.parametrize("data, match", [
    (b"", "empty file"),
    (b"hello, world, this is text", "corrupt"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "corrupt"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "corrupt"),
])
def test_header_rejects_invalid_bytes(data, match):
    with pytest.raises(ImageError, match=match):
        read_header(data, name="bad.png")


def test_header_rejects_truncated_png_naming_the_file(tmp_path):
    path = write_image(tmp_path / "a.png", random_image(np.random.default_rng(0)))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ImageError, match=r"a\.png.*truncated"):
        read_header(path)


# --- layouts ---------------------------------------------------------------------------------

def test_flat_classes(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=3, per_class=4, size=20)
    cat = scan(root)
    images = cat.images
    assert list(images.columns) == list(IMAGE_COLUMNS)
    assert cat.root == str(root.resolve()) and cat.layout is Layout.CLASSES
    assert images["image_id"].tolist() == list(range(12))
    assert images["path"].tolist() == sorted(images["path"])
    assert images["class_name"].tolist() == [f"class_{i:02d}" for i in range(3) for _ in range(4)]
    assert images["class_id"].tolist() == [i for i in range(3) for _ in range(4)]
    assert images[["width", "height", "channels"]].drop_duplicates().values.tolist() == [[20, 20, 3]]
    assert images["split"].isna().all() and images["split"].dtype == object
    first = root / images["path"][0]
    assert images["sha256"][0] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert images["bytes"][0] == first.stat().st_size
    assert cat.skipped.empty and cat.class_names == ["class_00", "class_01", "class_02"]


def test_nested_omniglot_tree(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=4, per_class=2, nested=True, channels=1)
    cat = scan(root)
    assert cat.class_names == ["Alphabet_0/character01", "Alphabet_0/character02",
                               "Alphabet_1/character01", "Alphabet_1/character02"]
    assert (cat.images["channels"] == 1).all()
    assert cat.images.groupby("class_id").size().tolist() == [2, 2, 2, 2]


def test_class_depth_groups_by_first_levels(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=4, per_class=2, nested=True)
    write_image(root / "Alphabet_0" / "loose.png", random_image(np.random.default_rng(9)))
    cat = scan(root, class_depth=1)
    assert cat.class_names == ["Alphabet_0", "Alphabet_1"]
    assert cat.images.groupby("class_name").size().to_dict() == {"Alphabet_0": 5, "Alphabet_1": 4}
    cat2 = scan(root, class_depth=2)
    assert len(cat2.class_names) == 4
    assert _reasons(cat2) == {"Alphabet_0/loose.png": "outside any class folder: above class depth 2"}


def test_left_right_pairs_by_stem(make_left_right_tree, tmp_path):
    root = make_left_right_tree(tmp_path, identities=3, left_only=["lonely"], right_only=["solo"])
    cat = scan(root, layout="left-right")
    images = cat.images
    assert len(images) == 6 and cat.layout is Layout.LEFT_RIGHT
    assert (images["class_name"] == images["key"]).all()
    assert images.groupby("key")["side"].apply(sorted).tolist() == [["left", "right"]] * 3
    reasons = _reasons(cat)
    assert reasons["left/lonely.png"].startswith("one-sided identity: no usable right/lonely")
    assert reasons["right/solo.png"].startswith("one-sided identity: no usable left/solo")


def test_left_right_corrupt_side_makes_partner_one_sided(make_left_right_tree, tmp_path):
    root = make_left_right_tree(tmp_path, identities=3)
    (root / "right" / "id_01.png").write_bytes(b"not a png")
    reasons = _reasons(scan(root, layout="left-right"))
    assert reasons["right/id_01.png"].startswith("corrupt image")
    assert reasons["left/id_01.png"].startswith("one-sided identity")


def test_split_folders_share_class_ids(make_split_folders_tree, tmp_path):
    root = make_split_folders_tree(tmp_path, splits=("train", "test"), classes=3, per_class=2,
                                   nested=True)
    cat = scan(root, layout="split-folders")
    images = cat.images
    assert set(images["folder_split"]) == {"train", "test"}
    assert images["split"].isna().all()
    train = images[images["folder_split"] == "train"]
    test = images[images["folder_split"] == "test"]
    assert sorted(set(train["class_name"])) == sorted(set(test["class_name"])) == cat.class_names
    assert dict(zip(train["class_name"], train["class_id"])) == dict(zip(test["class_name"], test["class_id"]))
    assert cat.class_names[0] == "Alphabet_0/character01"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_layout(make_image_tree, tmp_path, fmt):
    root = make_image_tree(tmp_path, classes=2, per_class=3)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    labels = ["cat" if "class_00" in f else "dog" for f in files]
    frame = pd.DataFrame({"path": files[::-1] + ["missing.png"], "label": labels[::-1] + ["cat"]})
    table = root / f"labels.{fmt}"
    frame.to_csv(table, index=False) if fmt == "csv" else frame.to_parquet(table)
    for cat in (scan(table, layout="table"), scan(root, table=table)):
        assert cat.layout is Layout.TABLE and cat.root == str(root.resolve())
        assert cat.images["path"].tolist() == files  # sorted, whatever the table's row order
        assert cat.images["class_name"].tolist() == labels
        assert _reasons(cat) == {"missing.png": "file does not exist"}


def test_table_split_column_sets_folder_split(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=1, per_class=2)
    table = root / "t.csv"
    table.write_text("path,label,split\nclass_00/img_000.png,a,train\nclass_00/img_001.png,a,test\n")
    assert scan(table, layout="table").images["folder_split"].tolist() == ["train", "test"]


# --- order and ids ---------------------------------------------------------------------------

def test_ids_independent_of_creation_order(tmp_path):
    rng = np.random.default_rng(0)
    pixels = {name: random_image(rng) for name in ["b/2.png", "a/1.png", "b/1.png", "a/10.png", "a/3.png"]}
    for tree, order in (("fwd", list(pixels)), ("rev", list(pixels)[::-1])):
        for name in order:
            write_image(tmp_path / tree / name, pixels[name])
    fwd = scan(tmp_path / "fwd").images
    rev = scan(tmp_path / "rev").images
    pd.testing.assert_frame_equal(fwd, rev)
    assert fwd["path"].tolist() == ["a/1.png", "a/10.png", "a/3.png", "b/1.png", "b/2.png"]


def test_extensions_are_case_insensitive(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=1, per_class=1, ext=".JPG")
    write_image(root / "class_00" / "x.TIFF", random_image(np.random.default_rng(3)))
    assert scan(root).images["path"].tolist() == ["class_00/img_000.JPG", "class_00/x.TIFF"]


# --- skipped ---------------------------------------------------------------------------------

def test_skipped_reasons(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=2, per_class=3)
    (root / "class_00" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (root / "class_00" / "readme.txt").write_text("labels")
    (root / "class_01" / "empty.jpg").write_bytes(b"")
    (root / "class_01" / ".hidden.png").write_bytes(b"x")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(b"x")
    shutil.copy(root / "class_00" / "img_000.png", root / "stray.png")
    cat = scan(root)
    reasons = _reasons(cat)
    assert reasons["class_00/corrupt.png"].startswith("corrupt image: image 'class_00/corrupt.png'")
    assert reasons["class_00/readme.txt"] == "not an image: extension '.txt'"
    assert reasons["class_01/empty.jpg"] == "empty file"
    assert reasons["class_01/.hidden.png"] == "hidden file"
    assert reasons[".cache"] == "hidden folder"
    assert reasons["stray.png"] == "outside any class folder: image directly in the source root"
    assert len(cat.images) == 6 and len(reasons) == 6
    assert cat.skipped["path"].tolist() == sorted(cat.skipped["path"])


def test_min_per_class_skips_small_classes(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=3, per_class=[3, 1, 2])
    cat = scan(root, min_per_class=2)
    assert cat.class_names == ["class_00", "class_02"]
    assert cat.images["class_id"].tolist() == [0, 0, 0, 1, 1]
    assert _reasons(cat) == {"class_01/img_000.png": "class below min_per_class: 'class_01' has "
                                                     "1 image(s), fewer than 2"}


def test_summarize_counts_and_duplicates(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=2, per_class=[2, 3])
    shutil.copy(root / "class_00" / "img_000.png", root / "class_01" / "copy.png")
    (root / "class_00" / "a.txt").write_text("x")
    (root / "class_00" / "b.txt").write_text("x")
    info = summarize(scan(root))
    assert info["classes"] == 2 and info["images"] == 6
    assert info["per_class"] == {"min": 2, "median": 3.0, "max": 4}
    assert info["skipped"] == 2 and info["skipped_by_reason"] == {"not an image": 2}
    assert info["duplicates"] == {"groups": 1, "images": 2,
                                  "examples": [["class_00/img_000.png", "class_01/copy.png"]]}
    assert reason_kind("duplicate content of a/b.png") == "duplicate content"


# --- errors ----------------------------------------------------------------------------------

def test_error_missing_source(tmp_path):
    with pytest.raises(ScanError, match=r"source '.*nope' does not exist\. Check --src or \[source\] path\."):
        scan(tmp_path / "nope")


def test_error_no_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    with pytest.raises(ScanError, match="no images found in .*1 file\\(s\\) skipped"):
        scan(tmp_path)


def test_error_table_missing_columns(tmp_path):
    (tmp_path / "t.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(ScanError, match=r"missing column\(s\) path, label; it needs path,label"):
        scan(tmp_path / "t.csv", layout="table")


def test_error_table_missing_file(tmp_path):
    with pytest.raises(ScanError, match="table '.*t.csv' does not exist"):
        scan(tmp_path, table=tmp_path / "t.csv")


def test_error_left_right_without_sides(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=["left"], per_class=1)
    with pytest.raises(ScanError, match=r"no right/ folder; layout 'left-right' expects"):
        scan(root, layout="left-right")


def test_error_split_folders_without_split_folders(tmp_path):
    write_image(tmp_path / "src" / "x.png", random_image(np.random.default_rng(0)))
    with pytest.raises(ScanError, match="has no split folders"):
        scan(tmp_path / "src", layout="split-folders")


def test_error_bad_layout_and_depth(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=1, per_class=1)
    with pytest.raises(ConfigError, match="--layout must be one of"):
        scan(root, layout="flat")
    with pytest.raises(ScanError, match="--class-depth must be >= 0"):
        scan(root, class_depth=-1)
