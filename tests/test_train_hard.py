"""The ``hard`` sampling strategy on hand-made embeddings (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pairgen.errors import SampleError
from pairgen.sampling import sample_pairs, sample_triplets
from pairgen.sampling.hard import load_embeddings

# Class 0 at 0, 1, 2, 10; class 1 at 3, 20, 30 (1-D embeddings, image_id = row).
VALUES = np.array([0.0, 1.0, 2.0, 10.0, 3.0, 20.0, 30.0])
CLASSES = np.array([0, 0, 0, 0, 1, 1, 1])


def _images(split: list | None = None) -> pd.DataFrame:
    return pd.DataFrame({"image_id": np.arange(7, dtype=np.int64), "class_id": CLASSES.astype(np.int64),
                         "split": split or [None] * 7, "path": [f"c{c}/{i}.png" for i, c in enumerate(CLASSES)]})


def _pairs(k: int, seed: int = 0, **params) -> pd.DataFrame:
    return sample_pairs(_images(), strategy="hard", rng=np.random.default_rng(seed), hard_k=k,
                        embeddings=VALUES[:, None], **params)


def test_k1_picks_the_nearest_negative_and_the_farthest_positive() -> None:
    pairs = _pairs(1)
    neg = pairs[pairs["label"] == 0].set_index("a_id")["b_id"]
    pos = pairs[pairs["label"] == 1].set_index("a_id")["b_id"]
    assert neg.to_dict() == {0: 4, 1: 4, 2: 4, 3: 4, 4: 2, 5: 3, 6: 3}
    assert pos.to_dict() == {0: 3, 1: 3, 2: 3, 3: 0, 4: 6, 5: 4, 6: 4}


def test_draws_stay_among_the_k_nearest_and_labels_hold() -> None:
    pairs = _pairs(2, positives_per_image=2, negatives_per_image=2)
    assert len(pairs) == 7 * 4
    assert ((pairs["label"] == 1) == (pairs["a_class"] == pairs["b_class"])).all()
    assert not (pairs["a_id"] == pairs["b_id"]).any()
    # Anchor 0's two nearest other-class images are 3.0 (id 4) and 20.0 (id 5).
    negatives_of_0 = set(pairs[(pairs["a_id"] == 0) & (pairs["label"] == 0)]["b_id"])
    assert negatives_of_0 == {4, 5}


def test_same_seed_same_pairs_other_seed_can_differ() -> None:
    a = _pairs(3, negatives_per_image=3, seed=5)
    pd.testing.assert_frame_equal(a, _pairs(3, negatives_per_image=3, seed=5))
    assert any(not a.equals(_pairs(3, negatives_per_image=3, seed=s)) for s in range(6, 12))


def test_hard_negatives_are_closer_than_random_ones() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 25)
    emb = rng.standard_normal((labels.size, 6)) + 0.8 * np.eye(8, 6)[labels]
    images = pd.DataFrame({"image_id": np.arange(labels.size), "class_id": labels, "split": None})

    def mean_negative_distance(strategy: str) -> float:
        pairs = sample_pairs(images, strategy=strategy, rng=np.random.default_rng(1), hard_k=5, embeddings=emb)
        neg = pairs[pairs["label"] == 0]
        return float(np.linalg.norm(emb[neg["a_id"]] - emb[neg["b_id"]], axis=1).mean())

    assert mean_negative_distance("hard") < 0.7 * mean_negative_distance("per-image")


def test_hard_triplets_use_far_positive_and_near_negative() -> None:
    t = sample_triplets(_images(), strategy="hard", rng=np.random.default_rng(0), hard_k=1,
                        embeddings=VALUES[:, None])
    row = t[t["anchor_id"] == 6].iloc[0]
    assert (row["positive_id"], row["negative_id"]) == (4, 3)
    assert (t["anchor_class"] != t["negative_class"]).all()


def test_sampling_stays_inside_each_split() -> None:
    split = ["train", "train", "val", "val", "train", "val", "train"]
    pairs = sample_pairs(_images(split), strategy="hard", rng=np.random.default_rng(0), hard_k=1,
                         embeddings=VALUES[:, None], positives_per_image=0, negatives_per_image=2)
    where = dict(zip(range(7), split))
    assert all(where[a] == where[b] == s for a, b, s in zip(pairs["a_id"], pairs["b_id"], pairs["split"]))


def test_missing_embeddings_is_a_clear_error() -> None:
    with pytest.raises(SampleError, match="needs embeddings"):
        sample_pairs(_images(), strategy="hard", rng=np.random.default_rng(0))
    with pytest.raises(SampleError, match="indexed by image_id"):
        sample_pairs(_images(), strategy="hard", rng=np.random.default_rng(0), embeddings=np.zeros((3, 2)))


def _write(path: Path, frame: pd.DataFrame, emb: np.ndarray) -> Path:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    flat = pa.array(emb.astype(np.float32).ravel())
    pq.write_table(table.append_column("embedding", pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])), path)
    return path


def test_load_embeddings_aligns_by_path(tmp_path: Path) -> None:
    images = _images()
    shuffled = images.iloc[::-1].reset_index(drop=True).assign(image_id=np.arange(7)[::-1] + 100)
    emb = np.stack([shuffled["image_id"].to_numpy(float), np.ones(7)], axis=1)
    path = _write(tmp_path / "e.parquet", shuffled[["image_id", "path"]], emb)
    out = load_embeddings(path, images)
    # Catalog row i gets the vector written for the same path, whose id in the file is 100 + i.
    assert out.shape == (7, 2) and np.array_equal(out[:, 0], 100 + np.arange(7))


def test_load_embeddings_names_a_missing_image(tmp_path: Path) -> None:
    images = _images()
    path = _write(tmp_path / "e.parquet", images[["image_id", "path"]].iloc[:5], np.zeros((5, 2)))
    with pytest.raises(SampleError, match=r"no row for 2 catalog image\(s\).*pairgen embed"):
        load_embeddings(path, images)
    with pytest.raises(SampleError, match="needs embeddings"):
        load_embeddings(None, images)
