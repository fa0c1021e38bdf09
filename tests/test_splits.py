"""Split assignment: stratified, class-disjoint, folders, determinism, leakage and dedupe."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from pairgen.errors import ConfigError, SplitError
from pairgen.sampling.splits import apportion, leakage_report, split
from pairgen.scanning.catalog import scan


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture
def catalog(make_image_tree, tmp_path):
    return scan(make_image_tree(tmp_path, classes=6, per_class=10, size=8))


@pytest.mark.parametrize("n, fractions, expected", [
    (10, [0.8, 0.1, 0.1], [8, 1, 1]),
    (4, [0.8, 0.1, 0.1], [3, 1, 0]),
    (7, [0.5, 0.5], [4, 3]),
    (0, [0.7, 0.3], [0, 0]),
    (3, [1.0, 0.0], [3, 0]),
])
def test_apportion_largest_remainder(n, fractions, expected):
    assert apportion(n, fractions).tolist() == expected


def test_apportion_carry_spreads_small_shares():
    carry = np.zeros(3)
    counts = np.array([apportion(4, [0.8, 0.1, 0.1], carry) for _ in range(10)])
    assert (counts.sum(axis=1) == 4).all()
    assert counts.sum(axis=0).tolist() == [32, 4, 4]
    assert ((counts >= [3, 0, 0]) & (counts <= [4, 1, 1])).all()  # floor or ceil per class


def test_by_image_respects_fractions_per_class(catalog):
    images = split(catalog, fractions="train=0.8,val=0.1,test=0.1", rng=_rng()).images
    table = images.groupby(["class_id", "split"]).size().unstack()
    assert table[["train", "val", "test"]].values.tolist() == [[8, 1, 1]] * 6
    assert images["split"].dtype == object
    pd.testing.assert_frame_equal(images.drop(columns="split"), catalog.images.drop(columns="split"))


def test_by_image_small_classes_still_fill_every_split(make_image_tree, tmp_path):
    cat = scan(make_image_tree(tmp_path, classes=10, per_class=4, size=8))
    images = split(cat, fractions={"train": 0.8, "val": 0.1, "test": 0.1}, rng=_rng()).images
    assert images["split"].value_counts().to_dict() == {"train": 32, "val": 4, "test": 4}
    per_class = images.groupby("class_id")["split"].apply(lambda s: (s == "train").sum())
    assert per_class.between(3, 4).all()


def test_by_class_is_disjoint(catalog):
    images = split(catalog, by="class", fractions=(("train", 0.5), ("val", 0.25), ("test", 0.25)),
                   rng=_rng(3)).images
    classes_per_split = images.groupby("split")["class_id"].apply(set)
    assert images.groupby("class_id")["split"].nunique().eq(1).all()
    assert sorted(len(c) for c in classes_per_split) == [1, 2, 3]
    assert set.union(*classes_per_split) == set(range(6))


def test_by_class_gives_every_split_a_class(make_image_tree, tmp_path):
    cat = scan(make_image_tree(tmp_path, classes=3, per_class=2, size=8))
    images = split(cat, by="class", fractions="train=0.98,val=0.01,test=0.01", rng=_rng()).images
    assert sorted(images["split"].unique()) == ["test", "train", "val"]


def test_by_class_too_few_classes(make_image_tree, tmp_path):
    cat = scan(make_image_tree(tmp_path, classes=2, per_class=2, size=8))
    with pytest.raises(SplitError, match="needs at least 3 classes for splits train, val, test; "
                                         "the catalog has 2"):
        split(cat, by="class", rng=_rng())


def test_left_right_identities_never_split(make_left_right_tree, tmp_path):
    cat = scan(make_left_right_tree(tmp_path, identities=20, size=8), layout="left-right")
    for by in ("image", "class"):
        images = split(cat, by=by, rng=_rng(1)).images
        assert images.groupby("key")["split"].nunique().eq(1).all()
        assert images.groupby("split")["key"].nunique().to_dict() == {"train": 16, "val": 2, "test": 2}


def test_by_folders(make_split_folders_tree, tmp_path):
    cat = scan(make_split_folders_tree(tmp_path, splits=("background", "evaluation"), size=8),
               layout="split-folders")
    images = split(cat, by="folders").images
    assert images["split"].tolist() == images["folder_split"].tolist()
    assert set(images["split"]) == {"background", "evaluation"}


def test_by_folders_needs_folder_splits(catalog):
    with pytest.raises(SplitError, match="--split-by folders needs split folders .* layout is 'classes'"):
        split(catalog, by="folders")


def test_bad_arguments(catalog):
    with pytest.raises(ConfigError, match="split.fractions must sum to 1"):
        split(catalog, fractions="train=0.8,val=0.3", rng=_rng())
    with pytest.raises(ConfigError, match="split.by must be one of"):
        split(catalog, by="random", rng=_rng())
    with pytest.raises(SplitError, match="needs rng="):
        split(catalog)


@pytest.mark.parametrize("by", ["image", "class"])
def test_deterministic_for_a_seed(catalog, by):
    a = split(catalog, by=by, rng=_rng(7)).images
    b = split(catalog, by=by, rng=_rng(7)).images
    c = split(catalog, by=by, rng=_rng(8)).images
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])


def test_golden_assignment(make_image_tree, tmp_path):
    cat = scan(make_image_tree(tmp_path, classes=2, per_class=3, size=8))
    images = split(cat, fractions="train=0.5,test=0.5", rng=_rng(0)).images
    # Class 0 gets the rounding tie (2 train, 1 test); the carried remainder hands class 1's to test.
    assert images["split"].tolist() == ["train", "test", "train", "test", "test", "train"]


def _with_duplicates(make_image_tree, tmp_path):
    root = make_image_tree(tmp_path, classes=2, per_class=5, size=8)
    shutil.copy(root / "class_00" / "img_000.png", root / "class_01" / "zz_copy.png")
    shutil.copy(root / "class_00" / "img_000.png", root / "class_01" / "zz_copy2.png")
    return scan(root)


def test_leakage_report_on_duplicated_content(make_image_tree, tmp_path):
    cat = _with_duplicates(make_image_tree, tmp_path)
    images = cat.images.copy()
    images["split"] = ["train"] * len(images)
    assert leakage_report(images) == {"groups": 0, "images": 0, "examples": []}
    images.loc[images["path"] == "class_01/zz_copy.png", "split"] = "test"
    report = leakage_report(images)
    assert report == {"groups": 1, "images": 3, "examples": [[
        "class_00/img_000.png", "class_01/zz_copy.png", "class_01/zz_copy2.png"]]}


def test_dedupe_keeps_first_copy_and_ids(make_image_tree, tmp_path):
    cat = _with_duplicates(make_image_tree, tmp_path)
    out = split(cat, rng=_rng(), dedupe=True)
    assert len(out.images) == len(cat.images) - 2
    assert out.images["sha256"].is_unique
    dropped = out.skipped.set_index("path")["reason"].to_dict()
    assert dropped == {"class_01/zz_copy.png": "duplicate content of class_00/img_000.png",
                       "class_01/zz_copy2.png": "duplicate content of class_00/img_000.png"}
    kept = cat.images[~cat.images["path"].isin(dropped)]
    assert out.images["image_id"].tolist() == kept["image_id"].tolist()  # not renumbered
    assert leakage_report(out.images)["groups"] == 0
    assert len(split(cat, rng=_rng()).images) == len(cat.images)  # no dedupe by default
