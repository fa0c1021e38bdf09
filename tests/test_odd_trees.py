"""Odd trees: undecodable names, symlinks, special files, label conflicts, header-only limits."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import random_image, write_image

from pairgen.cli import main
from pairgen.codec.headers import read_header
from pairgen.codec.images import decode
from pairgen.dataset import tables as mf
from pairgen.errors import ImageError
from pairgen.scanning.catalog import scan, summarize
from pairgen.spec.config import BuildConfig
from pairgen.tools.inspection import format_inspect, inspect
from pairgen.writing.builder import build


def _config(src: Path, **overrides) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [24, 24], "build.workers": 1, "build.quiet": True,
            "split.fractions": {"train": 1.0}}
    base.update(overrides)
    return BuildConfig().override(base)


def _reasons(catalog) -> dict[str, str]:
    return dict(zip(catalog.skipped["path"], catalog.skipped["reason"]))


# --- names that are not UTF-8 ------------------------------------------------------------------


def test_undecodable_names_are_skipped_and_the_build_finishes(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=4)
    png = (src / "class_00" / "img_000.png").read_bytes()
    raw = os.fsencode(src)
    with open(raw + b"/class_00/caf\xe9.png", "wb") as f:  # Latin-1 name: not valid UTF-8
        f.write(png)
    os.mkdir(raw + b"/bad\xff")
    with open(raw + b"/bad\xff/x.png", "wb") as f:
        f.write(png)
    catalog = scan(src)
    reasons = _reasons(catalog)
    assert reasons == {"class_00/caf\\xe9.png": "undecodable name: not valid UTF-8; rename the file or folder",
                       "bad\\xff": "undecodable name: not valid UTF-8; rename the file or folder"}
    assert len(catalog.images) == 8
    card = build(_config(src), tmp_path / "ds")
    assert card["source"]["skipped_by_reason"] == {"undecodable name": 2}
    assert sorted(mf.read_table(tmp_path / "ds" / "skipped.parquet")["path"]) == ["bad\\xff", "class_00/caf\\xe9.png"]
    result = CliRunner().invoke(main, ["scan", str(src)])
    assert result.exit_code == 0 and "class_00/caf\\xe9.png: undecodable name" in result.output


# --- symlinks and special files ------------------------------------------------------------------


def test_symlinked_class_folder_inside_the_root_is_skipped_with_a_reason(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=3)
    (src / "alias").symlink_to(src / "class_00", target_is_directory=True)
    catalog = scan(src)
    assert _reasons(catalog) == {"alias": "symlinked folder: it points inside the source, whose images are "
                                          "scanned under their own folder"}
    assert catalog.class_names == ["class_00", "class_01"]


def test_symlinks_out_of_the_root_need_allow_outside_root(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=3)
    other = make_image_tree(tmp_path, classes=["far"], per_class=3, seed=5, name="elsewhere")
    (src / "linked").symlink_to(other / "far", target_is_directory=True)
    (src / "class_00" / "one.png").symlink_to(other / "far" / "img_000.png")
    catalog = scan(src)
    reasons = _reasons(catalog)
    assert set(reasons) == {"linked", "class_00/one.png"}
    assert all(r.startswith("outside root: a symlink to outside the source; pass --allow-outside-root")
               for r in reasons.values())
    assert catalog.class_names == ["class_00", "class_01"]
    followed = scan(src, allow_outside_root=True)
    assert len(followed.skipped) == 0
    assert followed.class_names == ["class_00", "class_01", "linked"]
    assert "class_00/one.png" in set(followed.images["path"])


def test_symlink_loops_are_walked_once(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=1, per_class=3)
    outside = make_image_tree(tmp_path, classes=["deep"], per_class=2, seed=3, name="out")
    (outside / "deep" / "back").symlink_to(outside, target_is_directory=True)  # out/deep/back -> out
    (src / "ext").symlink_to(outside, target_is_directory=True)
    (src / "class_00" / "up").symlink_to(tmp_path, target_is_directory=True)  # encloses the root
    catalog = scan(src, allow_outside_root=True)
    reasons = _reasons(catalog)
    assert reasons["ext/deep/back"] == "symlink loop: the folder is already scanned as 'ext'"
    assert reasons["class_00/up"].startswith("symlink loop")
    assert sorted(catalog.images["path"]) == ["class_00/img_000.png", "class_00/img_001.png",
                                               "class_00/img_002.png", "ext/deep/img_000.png",
                                               "ext/deep/img_001.png"]


def test_fifo_and_broken_link_are_skipped_without_opening(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=3)
    os.mkfifo(src / "class_00" / "pipe.png")  # opening it would block forever
    (src / "class_01" / "gone.png").symlink_to(src / "class_01" / "nothing.png")
    catalog = scan(src)
    assert _reasons(catalog) == {"class_00/pipe.png": "not a regular file", "class_01/gone.png": "broken symlink"}


# --- tables: paths outside the folder, conflicting labels, invalid labels --------------------------


def _table_tree(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(6):
        write_image(folder / f"img_{i}.png", random_image(rng))
    outside = write_image(tmp_path / "secret.png", random_image(rng))
    return folder, outside


def test_table_paths_outside_the_folder_are_never_read(tmp_path: Path) -> None:
    folder, outside = _table_tree(tmp_path)
    (folder / "escape.png").symlink_to(outside)
    rows = [f"img_{i}.png,{'ab'[i % 2]}" for i in range(6)]
    rows += ["../secret.png,a", f"{outside},b", "/etc/passwd,a", "/nonexistent/x.png,b", "escape.png,a",
             "sub/../../secret.png,b"]
    (folder / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    catalog = scan(folder / "labels.csv", layout="table")
    reasons = _reasons(catalog)
    outside_reason = "outside root: the path leaves the table's folder; pass --allow-outside-root to use it"
    # The same answer for files that exist and files that do not: nothing is probed or read.
    assert reasons == {"../secret.png": outside_reason, outside.as_posix(): outside_reason,
                       "/etc/passwd": outside_reason, "/nonexistent/x.png": outside_reason,
                       "escape.png": outside_reason}
    assert catalog.skipped["path"].tolist().count("../secret.png") == 2  # also as sub/../../secret.png
    assert len(catalog.skipped) == 6 and set(catalog.images["path"]) == {f"img_{i}.png" for i in range(6)}
    allowed = scan(folder / "labels.csv", layout="table", allow_outside_root=True)
    assert "escape.png" in set(allowed.images["path"])
    # Allowed, the three spellings of secret.png are one file, listed with labels a and b.
    assert _reasons(allowed)["../secret.png"] == "conflicting labels in the table: 'a', 'b'"
    assert _reasons(allowed)["/nonexistent/x.png"] == "file does not exist"


def test_table_conflicting_labels_skip_every_row(tmp_path: Path) -> None:
    folder, _ = _table_tree(tmp_path)
    rows = ["img_0.png,a", "img_1.png,a", "img_2.png,b", "img_3.png,b", "img_4.png,a", "img_4.png,b",
            "img_5.png,a", "img_5.png,a", "img_2.png,b", "img_3.png,../../x", "img_1.png,a\tb"]
    (folder / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    catalog = scan(folder / "labels.csv", layout="table")
    skipped = sorted(zip(catalog.skipped["path"], catalog.skipped["reason"]))
    assert skipped == [
        ("img_1.png", "invalid class name: 'a\\tb': it contains a control character"),
        ("img_2.png", "listed twice in the table"),
        ("img_3.png", "invalid class name: '../../x': it is or contains '.' or '..'"),
        ("img_4.png", "conflicting labels in the table: 'a', 'b'"),
        ("img_4.png", "conflicting labels in the table: 'a', 'b'"),
        ("img_5.png", "listed twice in the table"),
    ]
    assert dict(zip(catalog.images["path"], catalog.images["class_name"])) == {
        "img_0.png": "a", "img_1.png": "a", "img_2.png": "b", "img_3.png": "b", "img_5.png": "a"}


def test_split_folder_with_a_control_character_is_not_a_split(tmp_path: Path, make_split_folders_tree) -> None:
    src = make_split_folders_tree(tmp_path)
    bad = src / "te\nst"
    (src / "test").rename(bad)
    catalog = scan(src, layout="split-folders")
    assert set(catalog.skipped["reason"]) == {"invalid split name: 'te\\nst': it contains a control character"}
    assert set(catalog.images["folder_split"]) == {"train"}


# --- identical content under two classes -------------------------------------------------------------


def test_identical_content_under_two_classes_is_a_reported_label_conflict(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=["cat", "dog"], per_class=4)
    (src / "dog" / "copy.png").write_bytes((src / "cat" / "img_001.png").read_bytes())
    conflicts = summarize(scan(src))["label_conflicts"]
    assert conflicts == {"groups": 1, "images": 2, "examples": [["cat/img_001.png (cat)", "dog/copy.png (dog)"]]}
    out = tmp_path / "ds"
    result = CliRunner().invoke(main, ["build", "--src", str(src), "--image-size", "24x24", "--splits", "train=1.0",
                                       "--workers", "1", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert ("label conflicts: 2 images with identical content under more than one class (1 groups; "
            "see pairgen inspect)") in result.output
    card = json.loads((out / "dataset.json").read_text())
    assert card["source"]["label_conflicts"] == conflicts
    info = inspect(out)
    assert info["source"]["label_conflicts"] == conflicts
    assert ("label conflicts 1 identical-content group(s) under more than one class (2 images)"
            in format_inspect(info))
    scan_text = CliRunner().invoke(main, ["scan", str(src)]).output
    assert "cat/img_001.png (cat)  ==  dog/copy.png (dog)" in scan_text


# --- header-only checks: unsupported formats, max_pixels, truncation ------------------------------------


def _jp2_declaring(width: int, height: int) -> bytes:
    ok, buf = cv2.imencode(".jp2", np.zeros((64, 64), np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    at = data.index(b"ihdr") + 4
    data[at:at + 8] = struct.pack(">II", height, width)
    return bytes(data)


def test_jpeg2000_named_png_is_refused_without_decoding(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=3)
    (src / "class_00" / "bomb.png").write_bytes(_jp2_declaring(12000, 12000))
    reasons = _reasons(scan(src))
    assert reasons["class_00/bomb.png"] == ("corrupt image: image 'class_00/bomb.png' is corrupt or not a supported "
                                            "image (its header is not png, jpg, bmp, gif, tif or webp). Convert it "
                                            "to png or jpg, or remove it.")
    code = ("import sys; from pairgen.codec.headers import read_header\n"
            f"try:\n    read_header({str(src / 'class_00' / 'bomb.png')!r})\nexcept ValueError as e:\n    print(e)\n"
            "print('cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "False"  # the header path never even imports the decoder


def _png_declaring(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    return bytes(data)


def test_max_pixels_is_enforced_from_the_header_at_scan(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=3)
    (src / "class_01" / "huge.png").write_bytes(_png_declaring(12000, 12000))
    reasons = _reasons(scan(src, max_pixels=89_478_485))
    assert reasons == {"class_01/huge.png": "too large: 12000x12000 = 144,000,000 pixels, over image.max_pixels "
                                            "(89,478,485); raise it if the file is trusted"}
    small = scan(src, max_pixels=24 * 24)
    assert len(small.images) == 6
    card = build(_config(src, **{"image.max_pixels": 24 * 24}), tmp_path / "ds")
    assert card["source"]["skipped_by_reason"] == {"too large": 1}


def test_truncated_jpeg_is_reported_as_truncated(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=3, ext=".jpg")
    victim = src / "class_00" / "img_001.jpg"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    reason = _reasons(scan(src))["class_00/img_001.jpg"]
    assert reason == ("corrupt image: image 'class_00/img_001.jpg' is corrupt (JPEG is truncated: no end-of-image "
                      "marker after its scan data). Remove or replace the file.")
    with pytest.raises(ImageError, match="JPEG is truncated"):
        decode(data[: len(data) // 2], channels=3, source="x.jpg")
    sos = data.index(b"\xff\xda")
    with pytest.raises(ImageError, match="JPEG is truncated: the file ends before its scan data"):
        read_header(data[:sos - 10])


def test_damaged_pixels_after_a_good_header_are_named_as_such() -> None:
    data = cv2.imencode(".jpg", random_image(np.random.default_rng(0)))[1].tobytes()
    sos = data.index(b"\xff\xda")
    broken = data[:sos] + b"\xff\xd9"  # frame header, then the end marker without any scan
    with pytest.raises(ImageError, match="JPEG is truncated: it ends before its scan data"):
        decode(broken, channels=3, source="x.jpg")


def test_jpeg_with_height_in_dnl_marker_is_refused() -> None:
    data = bytearray(cv2.imencode(".jpg", random_image(np.random.default_rng(0)))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = b"\x00\x00"  # height 0: "defined later by a DNL marker"
    with pytest.raises(ImageError, match="not a supported image .*DNL marker.*cannot be read from the header"):
        read_header(bytes(data), name="dnl.jpg")


def test_exif_orientation_is_not_applied(tmp_path: Path) -> None:
    img = random_image(np.random.default_rng(0), size=(10, 20))
    data = cv2.imencode(".jpg", img)[1].tobytes()
    ifd = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 3, 1, 6) + b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + ifd
    rotated = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    assert read_header(rotated) == (20, 10, 3)
    assert decode(rotated, channels=3).shape == (10, 20, 3)  # as stored, not turned by the EXIF tag


def test_table_row_naming_a_fifo_is_skipped_without_opening(tmp_path: Path) -> None:
    folder, _ = _table_tree(tmp_path)
    os.mkfifo(folder / "pipe.png")
    (folder / "labels.csv").write_text("path,label\nimg_0.png,a\nimg_1.png,a\npipe.png,a\n")
    for allow in (False, True):
        assert _reasons(scan(folder / "labels.csv", layout="table", allow_outside_root=allow)) == {
            "pipe.png": "not a regular file"}


# --- pairgen scan lists what it skipped ------------------------------------------------------------------


def test_scan_lists_skipped_files_with_reasons(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=3)
    for i in range(5):
        (src / "class_00" / f"note_{i}.txt").write_text("x")
    (src / "class_01" / "empty.png").write_bytes(b"")
    text = CliRunner().invoke(main, ["scan", str(src), "--show-skipped", "3"])
    assert text.exit_code == 0
    lines = text.output.splitlines()
    start = lines.index("        5  not an image") + 1
    assert lines[start:start + 5] == ["  class_00/note_0.txt: not an image: extension '.txt'",
                                      "  class_00/note_1.txt: not an image: extension '.txt'",
                                      "  class_00/note_2.txt: not an image: extension '.txt'",
                                      "  ... and 3 more (--show-skipped N, or --json for all)",
                                      "label conflicts: 0 identical-content group(s) under more than one class (0 images)"]
    as_json = json.loads(CliRunner().invoke(main, ["scan", str(src), "--json"]).output)
    assert as_json["skipped_files"] == [{"path": f"class_00/note_{i}.txt", "reason": "not an image: extension '.txt'"}
                                        for i in range(5)] + [{"path": "class_01/empty.png", "reason": "empty file"}]


def test_table_split_names_are_checked_before_use(tmp_path: Path) -> None:
    folder, _ = _table_tree(tmp_path)
    rows = ["img_0.png,a,train", "img_1.png,a,train", "img_2.png,b,../../x", "img_3.png,b,train"]
    (folder / "labels.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    catalog = scan(folder / "labels.csv", layout="table")
    assert _reasons(catalog) == {"img_2.png": "invalid split name: '../../x': it contains a path separator"}


def test_build_allow_outside_root_flag_for_tables(tmp_path: Path) -> None:
    folder, outside = _table_tree(tmp_path)
    write_image(tmp_path / "secret2.png", random_image(np.random.default_rng(9)))
    rows = [f"img_{i}.png,{'ab'[i % 2]}" for i in range(6)] + ["../secret.png,a", "../secret2.png,b"]
    (folder / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    args = ["build", "--src", str(folder / "labels.csv"), "--layout", "table", "--image-size", "24x24",
            "--splits", "train=1.0", "--workers", "1", "--quiet"]
    kept = CliRunner().invoke(main, args + ["--out", str(tmp_path / "inside")])
    assert kept.exit_code == 0, kept.output
    card = json.loads((tmp_path / "inside" / "dataset.json").read_text())
    assert card["source"]["images"] == 6 and card["source"]["skipped_by_reason"] == {"outside root": 2}
    allowed = CliRunner().invoke(main, args + ["--allow-outside-root", "--out", str(tmp_path / "all")])
    assert allowed.exit_code == 0, allowed.output
    card = json.loads((tmp_path / "all" / "dataset.json").read_text())
    assert card["source"]["images"] == 8 and card["config"]["source"]["allow_outside_root"] is True
