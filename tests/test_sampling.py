"""Tests for pairgen.sampling: guarantees, counts, determinism, golden output and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pairgen.errors import SampleError
from pairgen.sampling import PAIR_SAMPLERS, TRIPLET_SAMPLERS, PairSampler, sample_pairs, sample_triplets
from pairgen.sampling.pairs import _triangle_row, exact_mask, within_class_pair_numbers

PARAMS = dict(positives_per_image=2, negatives_per_image=3, num_records=300, positive_fraction=0.4,
              per_class=4, max_pairs_per_class=5)


def frame(sizes: list[int], splits: list[str | None] | None = None) -> pd.DataFrame:
    """Images with ``sizes[c]`` images of class c; splits assigned round-robin per class."""
    class_id = np.repeat(np.arange(len(sizes)), sizes)
    n = class_id.size
    split = [None] * n if splits is None else [splits[i % len(splits)] for i in range(n)]
    return pd.DataFrame({"image_id": np.arange(n) + 100, "class_id": class_id,
                         "class_name": [f"c{c}" for c in class_id], "split": split})


def lr_frame(identities: int, splits: tuple[str, ...] = ("train", "val")) -> pd.DataFrame:
    """A left-right catalog: identity k has a left and a right image, both in one split."""
    k = np.repeat(np.arange(identities), 2)
    return pd.DataFrame({"image_id": np.arange(k.size), "class_id": k,
                         "class_name": [f"id{i}" for i in k], "key": [f"id{i}" for i in k],
                         "side": ["left", "right"] * identities,
                         "split": [splits[i % len(splits)] for i in k]})


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _strategy_params(strategy: str, images: pd.DataFrame) -> dict:
    """``hard`` mines from embeddings; give it random ones (its quality is tested elsewhere)."""
    if strategy != "hard":
        return PARAMS
    dims = np.random.default_rng(99).standard_normal((int(images["image_id"].max()) + 1, 4))
    return {**PARAMS, "embeddings": dims}


def pairs_for(strategy: str, seed: int = 0, **extra) -> tuple[pd.DataFrame, pd.DataFrame]:
    images = lr_frame(12) if strategy == "left-right" else frame([5, 6, 7, 8], ["train", "val"])
    params = {**_strategy_params(strategy, images), **extra}
    return images, sample_pairs(images, strategy=strategy, rng=rng(seed), **params)


def triplets_for(strategy: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    images = lr_frame(12) if strategy == "left-right" else frame([5, 6, 7, 8], ["train", "val"])
    return images, sample_triplets(images, strategy=strategy, rng=rng(seed), **_strategy_params(strategy, images))


def lookup(images: pd.DataFrame, ids: pd.Series, column: str) -> np.ndarray:
    return images.set_index("image_id").loc[ids.to_numpy(), column].to_numpy()


@pytest.mark.parametrize("strategy", sorted(PAIR_SAMPLERS))
def test_pair_guarantees(strategy):
    images, out = pairs_for(strategy)
    assert len(out) > 0
    assert list(out.columns) == ["a_id", "b_id", "label", "a_class", "b_class", "split"]
    assert all(out[c].dtype == np.int64 for c in ["a_id", "b_id", "label", "a_class", "b_class"])
    assert isinstance(out["split"].dtype, pd.CategoricalDtype)
    assert (out.a_id != out.b_id).all()
    assert ((out.a_class == out.b_class) == (out.label == 1)).all()
    assert set(out.label) == {0, 1}
    assert (lookup(images, out.a_id, "class_id") == out.a_class).all()
    assert (lookup(images, out.b_id, "class_id") == out.b_class).all()
    split = out.split.astype(str).to_numpy()
    assert (lookup(images, out.a_id, "split") == split).all()
    assert (lookup(images, out.b_id, "split") == split).all()


@pytest.mark.parametrize("strategy", sorted(TRIPLET_SAMPLERS))
def test_triplet_guarantees(strategy):
    images, out = triplets_for(strategy)
    assert len(out) > 0
    assert list(out.columns) == ["anchor_id", "positive_id", "negative_id", "anchor_class",
                                 "negative_class", "split"]
    assert (out.anchor_id != out.positive_id).all()
    assert (lookup(images, out.positive_id, "class_id") == out.anchor_class).all()
    assert (lookup(images, out.negative_id, "class_id") == out.negative_class).all()
    assert (out.negative_class != out.anchor_class).all()
    split = out.split.astype(str).to_numpy()
    for col in ["anchor_id", "positive_id", "negative_id"]:
        assert (lookup(images, out[col], "split") == split).all()


@pytest.mark.parametrize("strategy", sorted(PAIR_SAMPLERS))
def test_pairs_deterministic(strategy):
    _, first = pairs_for(strategy, seed=3)
    _, again = pairs_for(strategy, seed=3)
    _, other = pairs_for(strategy, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


@pytest.mark.parametrize("strategy", sorted(TRIPLET_SAMPLERS))
def test_triplets_deterministic(strategy):
    _, first = triplets_for(strategy, seed=3)
    _, again = triplets_for(strategy, seed=3)
    _, other = triplets_for(strategy, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_golden_per_image_pairs():
    images = frame([3, 3, 2])
    out = sample_pairs(images, strategy="per-image", rng=rng(0))
    assert out.a_id.tolist() == [100, 100, 101, 101, 102, 102, 103, 103, 104, 104, 105, 105, 106, 106,
                                 107, 107]
    assert out.b_id.tolist() == [102, 105, 100, 107, 100, 107, 104, 100, 105, 107, 104, 100, 107, 104,
                                 106, 101]
    assert out.label.tolist() == [1, 0] * 8
    assert out.split.isna().all()


@pytest.mark.parametrize("pos,neg", [(1, 1), (2, 0), (0, 3), (3, 2)])
def test_per_image_counts(pos, neg):
    images = frame([4, 5, 6], ["train", "val"])
    out = sample_pairs(images, strategy="per-image", rng=rng(), positives_per_image=pos,
                       negatives_per_image=neg)
    assert len(out) == len(images) * (pos + neg)
    assert (out.label == 1).sum() == len(images) * pos
    assert out.a_id.value_counts().eq(pos + neg).all()


@pytest.mark.parametrize("total,fraction", [(1000, 0.5), (999, 0.3), (10, 1.0), (7, 0.0)])
def test_balanced_counts(total, fraction):
    images = frame([2, 3, 40, 5], ["train", "val", "test"])
    out = sample_pairs(images, strategy="balanced", rng=rng(), num_records=total,
                       positive_fraction=fraction)
    assert len(out) == total
    by_split = out.groupby("split", observed=True).size()
    # Records are shared out in proportion to the split sizes (50 images: 17/17/16).
    assert abs(by_split["train"] - total * 17 / 50) <= 1 and abs(by_split["test"] - total * 16 / 50) <= 1
    positives = out.groupby("split", observed=True).label.sum()
    expected = {s: round(k * fraction) for s, k in by_split.items()}
    assert positives.to_dict() == expected


def test_balanced_mixes_labels():
    out = sample_pairs(frame([10] * 5), strategy="balanced", rng=rng(), num_records=400)
    # Positives are spread through the frame, not stacked in one block.
    assert 0.3 < out.label.iloc[:200].mean() < 0.7


def test_per_class_counts():
    images = frame([4, 4, 6], ["train", "val"])
    out = sample_pairs(images, strategy="per-class", rng=rng(), per_class=6)
    counts = out.groupby(["split", "a_class", "label"], observed=True).size()
    assert (counts == 6).all() and len(counts) == 2 * 3 * 2


@pytest.mark.parametrize("cap", [1, 4, 6, 9, 10, 50])
def test_exhaustive_counts_and_cap(cap):
    images = frame([1, 2, 5, 4])  # 0, 1, 10, 6 within-class pairs
    out = sample_pairs(images, strategy="exhaustive", rng=rng(), max_pairs_per_class=cap)
    pos = out[out.label == 1]
    expected = {1: min(1, cap), 2: min(10, cap), 3: min(6, cap)}
    assert pos.a_class.value_counts().to_dict() == expected
    assert (pos.a_id < pos.b_id).all()
    assert not pos.duplicated(["a_id", "b_id"]).any()
    assert (out.label == 0).sum() == len(pos)


def test_exhaustive_all_pairs_when_under_cap():
    out = sample_pairs(frame([4, 1]), strategy="exhaustive", rng=rng(), max_pairs_per_class=100)
    pos = out[out.label == 1]
    assert len(out) == 12
    assert list(zip(pos.a_id, pos.b_id)) == [(100, 101), (100, 102), (101, 102), (100, 103),
                                             (101, 103), (102, 103)]


@pytest.mark.parametrize("counts,cap", [(np.array([300, 2, 40]), 7), (np.array([1000]), 2000)])
def test_within_class_pair_numbers_distinct(counts, cap):
    c, t = within_class_pair_numbers(counts, cap, rng(1))
    m = counts * (counts - 1) // 2
    assert np.bincount(c, minlength=counts.size).tolist() == np.minimum(m, cap).tolist()
    assert (t < m[c]).all() and (t >= 0).all()
    assert len(set(zip(c.tolist(), t.tolist()))) == c.size


def test_triangle_row_inverts_pair_numbers():
    j = np.arange(2, 3000)
    i = np.concatenate([np.arange(k) for k in j])
    jj = np.repeat(j, j)
    t = jj * (jj - 1) // 2 + i
    assert np.array_equal(_triangle_row(t), jj)


@pytest.mark.parametrize("negatives", [0, 1, 3])
def test_left_right_pairs(negatives):
    images = lr_frame(9)
    out = sample_pairs(images, strategy="left-right", rng=rng(), negatives_per_image=negatives)
    assert len(out) == 9 * (1 + negatives)
    side = images.set_index("image_id").side
    assert (side.loc[out.a_id].to_numpy() == "left").all()
    assert (side.loc[out.b_id].to_numpy() == "right").all()
    pos = out[out.label == 1]
    assert pos.a_class.tolist() == sorted(images.class_id.unique().tolist(), key=lambda k: (k % 2, k))


def test_left_right_triplets_never_use_partner():
    images = lr_frame(4, splits=("train",))
    out = sample_triplets(images, strategy="left-right", rng=rng(), negatives_per_image=50)
    assert len(out) == 200
    assert (out.positive_id == out.anchor_id + 1).all()
    assert (out.negative_id // 2 != out.anchor_id // 2).all()
    # Negatives come from either side of the other identities.
    assert set(out.negative_id % 2) == {0, 1}


def test_triplet_counts():
    images = frame([4, 4, 6], ["train", "val"])
    per_image = sample_triplets(images, strategy="per-image", rng=rng(), positives_per_image=3)
    assert len(per_image) == 3 * len(images)
    balanced = sample_triplets(images, strategy="balanced", rng=rng(), num_records=123)
    assert len(balanced) == 123


def test_unique_removes_mirrored_pairs():
    images = frame([3, 3])
    kwargs = dict(strategy="balanced", num_records=200, positive_fraction=0.5)
    full = sample_pairs(images, rng=rng(), **kwargs)
    dedup = sample_pairs(images, rng=rng(), unique=True, **kwargs)
    def key(f):
        return list(zip(np.minimum(f.a_id, f.b_id), np.maximum(f.a_id, f.b_id)))

    assert len(set(key(full))) < len(full)
    assert len(set(key(dedup))) == len(dedup) == 3 + 3 + 9
    first = full.assign(k=key(full)).drop_duplicates("k").drop(columns="k").reset_index(drop=True)
    pd.testing.assert_frame_equal(dedup, first)


def test_unique_triplets_drops_repeats():
    out = sample_triplets(frame([2, 1]), strategy="balanced", rng=rng(), num_records=50, unique=True)
    assert len(out) == 2 and not out.duplicated(["anchor_id", "positive_id", "negative_id"]).any()


def test_split_none_is_one_group_and_splits_never_mix():
    out = sample_pairs(frame([4, 4]), strategy="per-image", rng=rng())
    assert out.split.isna().all() and len(out) == 16
    images = frame([6, 6, 6], ["a", "b", "c"])
    out = sample_pairs(images, strategy="balanced", rng=rng(), num_records=600)
    assert list(out.split.cat.categories) == ["a", "b", "c"]
    assert (lookup(images, out.b_id, "split") == out.split.astype(str).to_numpy()).all()


def test_params_are_tolerant():
    out = sample_pairs(frame([3, 3]), strategy="per-image", rng=rng(), hard_k=5, embeddings=None,
                       num_records=None, something_else="ignored")
    assert len(out) == 12


def test_registry_takes_a_new_strategy():
    class FirstTwo(PairSampler):
        name = "first-two"

        def sample(self, index, params, *, rng):
            return np.array([0]), np.array([1]), np.array([1])

    PAIR_SAMPLERS["first-two"] = FirstTwo
    try:
        out = sample_pairs(frame([2]), strategy="first-two", rng=rng())
    finally:
        del PAIR_SAMPLERS["first-two"]
    assert out[["a_id", "b_id", "label"]].values.tolist() == [[100, 101, 1]]


def test_broken_sampler_is_caught():
    class SelfPairs(PairSampler):
        name = "self"

        def sample(self, index, params, *, rng):
            return np.array([0]), np.array([0]), np.array([1])

    with pytest.raises(RuntimeError, match="self-pair"):
        SelfPairs()(frame([2]), rng=rng())


def test_exact_mask():
    mask = exact_mask(10_001, 4_321, rng())
    assert mask.sum() == 4_321
    assert exact_mask(5, 5, rng()).all() and not exact_mask(5, 0, rng()).any()


def single_in_val() -> pd.DataFrame:
    images = frame([4, 4])
    images["split"] = ["train"] * 3 + ["val"] + ["train"] * 2 + ["val"] * 2
    return images


ERRORS = [
    ("pairs", "per-image", single_in_val(), {"strict_positives": True}, "class 'c0' in split 'val' has 1 image"),
    ("pairs", "per-class", single_in_val(), {"strict_positives": True}, "class 'c0' in split 'val' has 1 image"),
    ("triplets", "per-image", single_in_val(), {"strict_positives": True}, "class 'c0' in split 'val' has 1 image"),
    ("pairs", "per-image", frame([3]), {}, "the images has only 1 class"),
    ("pairs", "per-image", frame([3, 3], ["train", "val"]).assign(class_id=0, class_name="x"), {},
     "split 'train' has only 1 class"),
    ("pairs", "balanced", frame([4]), {}, "only 1 class.*negative pairs need at least 2"),
    ("pairs", "balanced", frame([1, 1]), {}, "no class in the images has 2 or more"),
    ("pairs", "exhaustive", frame([3]), {}, "only 1 class"),
    ("triplets", "balanced", frame([1, 1]), {}, "no class in the images has 2 or more"),
    ("triplets", "balanced", frame([5]), {}, "only 1 class"),
    ("pairs", "left-right", lr_frame(1), {}, "split 'train' has only 1 class"),
    ("triplets", "left-right", lr_frame(1), {}, "split 'train' has only 1 class"),
    ("pairs", "left-right", lr_frame(3).iloc[1:], {}, "identity 'id0' in split 'train' has 1 image"),
    ("pairs", "left-right", lr_frame(3).assign(side="left"), {}, "identity 'id0'.*not one left"),
    ("pairs", "left-right", frame([2, 2]), {}, r"lacks column\(s\) \['side', 'key'\]"),
    ("pairs", "triangle", frame([2, 2]), {}, "--strategy must be one of per-image, balanced"),
    ("triplets", "per-class", frame([2, 2]), {}, "--strategy must be one of .* for triplets"),
    ("pairs", "per-image", frame([2, 2]).drop(columns="split"), {}, "lacks column"),
    ("pairs", "per-image", frame([2, 2]).assign(class_id=1.5), {}, "class_id must be integers"),
    ("pairs", "per-image", frame([2, 2]).assign(image_id=1), {}, "image_id has duplicates"),
    ("pairs", "per-image", frame([2, 2], ["train", None]), {}, "split is missing for some rows"),
    ("pairs", "per-image", frame([2, 2]), {"positives_per_image": -1}, "positives_per_image must be"),
    ("pairs", "balanced", frame([2, 2]), {"positive_fraction": 1.5}, "positive_fraction must be in"),
]


@pytest.mark.parametrize("kind,strategy,images,params,message", ERRORS)
def test_errors(kind, strategy, images, params, message):
    sampler = sample_pairs if kind == "pairs" else sample_triplets
    with pytest.raises(SampleError, match=message):
        sampler(images, strategy=strategy, rng=rng(), **params)


def test_rng_must_be_a_generator():
    with pytest.raises(SampleError, match="rng must be a numpy.random.Generator"):
        sample_pairs(frame([2, 2]), strategy="per-image", rng=0)


def test_error_without_class_names_uses_the_id():
    images = single_in_val().drop(columns="class_name")
    with pytest.raises(SampleError, match="class '0' in split 'val' has 1 image"):
        sample_pairs(images, strategy="per-image", rng=rng(), strict_positives=True)
