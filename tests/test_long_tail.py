"""Long-tail identities (issue 20, case 5): classes with one image build by default.

An LFW-shaped tree: 200 identities with one image, 60 with two, 30 with three, 10 with twenty.
Positives come only from classes with two or more images in a split; single-image classes
serve as negatives; ``--strict-positives`` keeps the old refusal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import image_tree

from pairgen.cli import main
from pairgen.dataset import layout
from pairgen.errors import SampleError
from pairgen.sampling import sample_pairs, sample_triplets

LFW_COUNTS = [1] * 200 + [2] * 60 + [3] * 30 + [20] * 10


@pytest.fixture(scope="module")
def lfw_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    names = [f"id_{i:03d}" for i in range(len(LFW_COUNTS))]
    return image_tree(tmp_path_factory.mktemp("lfw"), classes=names, per_class=LFW_COUNTS, size=12, channels=1)


def _build(src: Path, out: Path, *flags: str) -> CliRunner:
    res = CliRunner().invoke(main, ["build", "--src", str(src), "--out", str(out), "--quiet", "--json",
                                    "--image-size", "12x12", "--channels", "1", *flags])
    return res


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
@pytest.mark.parametrize("split_by", ["image", "class"])
def test_lfw_shaped_tree_builds_by_default(lfw_tree: Path, tmp_path: Path, kind: str, split_by: str) -> None:
    out = tmp_path / "ds"
    res = _build(lfw_tree, out, "--kind", kind, "--split-by", split_by)
    assert res.exit_code == 0, res.output
    card = json.loads(res.output)
    catalog = pd.read_parquet(out / "catalog.parquet").set_index("image_id")
    split_of = catalog["split"]
    positives = 0
    for name, counts in card["splits"].items():
        m = pd.read_parquet(out / layout.manifest(name))
        a, b = ("a_id", "b_id") if kind == "pairs" else ("anchor_id", "positive_id")
        pos = m if kind == "triplets" else m[m["label"] == 1]
        # Every positive: two different images, both of this split, of one identity (its folder).
        assert (pos[a] != pos[b]).all()
        assert (split_of.loc[pos[a]].to_numpy() == name).all() and (split_of.loc[pos[b]].to_numpy() == name).all()
        folder_a = catalog.loc[pos[a], "path"].str.split("/").str[0].to_numpy()
        folder_b = catalog.loc[pos[b], "path"].str.split("/").str[0].to_numpy()
        assert (folder_a == folder_b).all()
        positives += len(pos)
        # The card counts the images alone in their class in the split: no positive anchors them.
        in_split = catalog[split_of == name]
        alone = in_split["class_id"].map(in_split["class_id"].value_counts()) == 1
        assert counts["images_without_positive"] == int(alone.sum()) > 0
        if kind == "pairs":  # every image is still an anchor: of negatives at least
            assert set(m["a_id"]) == set(in_split.index)
            assert counts["positives"] == len(pos) and counts["negatives"] == (m["label"] == 0).sum()
            # Single-image identities still serve as negatives.
            singles = set(in_split.index[alone])
            assert singles & set(m.loc[m["label"] == 0, "b_id"]) or len(in_split) < 20
        else:
            assert not set(m["anchor_id"]) & set(in_split.index[alone])
            assert (catalog.loc[m["negative_id"], "class_id"].to_numpy()
                    != catalog.loc[m["anchor_id"], "class_id"].to_numpy()).all()
    assert positives > 0
    inspected = CliRunner().invoke(main, ["inspect", str(out)])
    assert inspected.exit_code == 0 and "alone in their class here: no positive" in inspected.output


def test_build_summary_says_how_many_images_get_no_positive(lfw_tree: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["build", "--src", str(lfw_tree), "--out", str(tmp_path / "ds"), "--quiet",
                                    "--image-size", "12x12", "--channels", "1", "--manifest-only"])
    assert res.exit_code == 0, res.output
    assert "images are alone in their class in this split: no positive for them" in res.output


def test_strict_positives_keeps_the_refusal_with_advice_that_works(lfw_tree: Path, tmp_path: Path) -> None:
    res = _build(lfw_tree, tmp_path / "ds", "--strict-positives", "--manifest-only")
    assert res.exit_code == 1 and not (tmp_path / "ds").exists()
    line = [x for x in res.output.splitlines() if x.strip()]
    assert len(line) == 1 and "has 1 image" in line[0] and "--strict-positives" in line[0]
    # The advice: both options together build under the strict rule.
    res = _build(lfw_tree, tmp_path / "ds2", "--strict-positives", "--min-per-class", "2", "--split-by", "class",
                 "--manifest-only")
    assert res.exit_code == 0, res.output
    assert all(c["images_without_positive"] == 0 for c in json.loads(res.output)["splits"].values())


def test_no_class_with_two_images_anywhere_is_refused(tmp_path: Path) -> None:
    src = image_tree(tmp_path, classes=60, per_class=1, size=12, channels=1)
    res = _build(src, tmp_path / "ds", "--manifest-only")
    assert res.exit_code == 1 and "no class has 2 or more images in any split" in res.output
    assert not (tmp_path / "ds").exists()
    # Asking for negatives only is fine: nothing is missing.
    res = _build(src, tmp_path / "ds", "--manifest-only", "--positives-per-image", "0")
    assert res.exit_code == 0, res.output


def _frame(counts: list[int]) -> pd.DataFrame:
    classes = np.repeat(np.arange(len(counts)), counts)
    return pd.DataFrame({"image_id": np.arange(classes.size), "class_id": classes, "split": "train",
                         "class_name": [f"c{c}" for c in classes]})


@pytest.mark.parametrize("strategy", ["per-image", "per-class", "hard"])
def test_pair_strategies_give_singles_negatives_only(strategy: str) -> None:
    images = _frame([1, 1, 3, 4, 1, 2])
    emb = np.random.default_rng(1).normal(size=(len(images), 4)).astype(np.float32)
    out = sample_pairs(images, strategy=strategy, rng=np.random.default_rng(0), positives_per_image=2,
                       negatives_per_image=1, per_class=2, embeddings=emb)
    single_classes = {0, 1, 4}
    pos = out[out["label"] == 1]
    assert not set(pos["a_class"]) & single_classes and (pos["a_id"] != pos["b_id"]).all()
    assert (pos["a_class"] == pos["b_class"]).all()
    neg = out[out["label"] == 0]
    assert (neg["a_class"] != neg["b_class"]).all() and set(neg["a_class"]) >= single_classes
    if strategy != "per-class":  # anchor by anchor: 2 positives then 1 negative, or 1 negative alone
        per_anchor = out.groupby("a_id", sort=False)["label"].apply(list)
        for a_id, labels in per_anchor.items():
            expected = [0] if images.loc[a_id, "class_id"] in single_classes else [1, 1, 0]
            assert labels == expected


def test_triplets_skip_single_anchors_and_strict_refuses() -> None:
    images = _frame([1, 3, 1, 2])
    out = sample_triplets(images, strategy="per-image", rng=np.random.default_rng(0), positives_per_image=2)
    assert set(out["anchor_class"]) == {1, 3} and len(out) == 2 * 5
    with pytest.raises(SampleError, match="class 'c0' in split 'train' has 1 image.*--strict-positives"):
        sample_triplets(images, strategy="per-image", rng=np.random.default_rng(0), strict_positives=True)


def test_without_single_classes_the_draws_are_unchanged() -> None:
    """The lenient path only starts where a class has one image: other builds keep their bytes."""
    images = _frame([3, 4, 2])
    a = sample_pairs(images, strategy="per-image", rng=np.random.default_rng(5), positives_per_image=2)
    b = sample_pairs(images, strategy="per-image", rng=np.random.default_rng(5), positives_per_image=2,
                     strict_positives=True)
    pd.testing.assert_frame_equal(a, b)
