"""The ``images`` record kind (one record per image per split) and split fingerprints.

Every dataset here is a real build from PNGs written with cv2 (conftest). Images datasets are
compared with pairs datasets built from the same source, split config and seed: they must
assign every image to the same split and record the same ``split_fingerprint``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import image_tree, split_folders_tree

import pairgen
from pairgen.cli import main
from pairgen.dataset.card import read_card
from pairgen.dataset.fingerprints import split_fingerprint
from pairgen.dataset.tables import read_table
from pairgen.errors import ConfigError
from pairgen.reading.arrays import load_numpy
from pairgen.reading.streaming import stream
from pairgen.spec.config import BuildConfig
from pairgen.spec.schema import IMAGES, schema_of
from pairgen.tools.verify import check_manifest, verify
from pairgen.writing.builder import build

AUGMENT = {"augment.enabled": True, "augment.copies": 3, "augment.flip": True, "augment.brightness": 0.2}


def _config(src: Path, **over) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [16, 16], "image.channels": 1, "build.workers": 1,
            "build.quiet": True}
    return BuildConfig().override({**base, **over})


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_tree(tmp_path_factory.mktemp("images"), classes=5, per_class=[9, 7, 12, 6, 8], size=20, channels=1)


@pytest.fixture(scope="module")
def images(src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "images"
    build(_config(src, kind="images", **{"shards.records_per_shard": 10}), out)
    return out


@pytest.fixture(scope="module")
def augmented(src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "augmented"
    build(_config(src, kind="images", **AUGMENT, **{"image.encoding": "png", "shards.records_per_shard": 25}), out)
    return out


def test_schema_names() -> None:
    schema = schema_of("images")
    assert schema is IMAGES
    assert schema.image_keys == ("image",)
    assert schema.int_keys == ("id", "class", "record_id")
    assert schema.manifest_columns == ("record_id", "image_id", "class_id", "split", "aug_seed")
    assert schema.arrays == ("image", "id", "class", "record_id")
    assert schema.feature_columns == {"record_id": "record_id", "id": "image_id", "class": "class_id"}
    assert schema.target == "class"


def test_one_record_per_image_per_split(images: Path) -> None:
    card = read_card(images)
    catalog = read_table(images / "catalog.parquet")
    assert card.kind.value == "images" and "positives" not in card.splits["train"]
    for split in ("train", "val", "test"):
        manifest = read_table(images / "manifests" / f"{split}.parquet")
        assert list(manifest.columns) == list(IMAGES.manifest_columns)
        want = catalog[catalog["split"] == split].set_index("image_id")["class_id"]
        assert sorted(manifest["image_id"]) == sorted(want.index)  # every image of the split, once
        np.testing.assert_array_equal(manifest["class_id"], want.reindex(manifest["image_id"]).to_numpy())
        assert (manifest["record_id"] == np.arange(len(manifest))).all()
        assert card.splits[split]["records"] == card.splits[split]["images"] == len(manifest)
    train = read_table(images / "manifests" / "train.parquet")
    # Records are in one seeded random order, not grouped by class or image id.
    assert not (np.diff(train["image_id"].to_numpy()) > 0).all()


def test_cli_build_verify_inspect_preview_diff(src: Path, images: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    built = runner.invoke(main, ["build", "--src", str(src), "--kind", "images", "--image-size", "16x16",
                                 "--channels", "1", "--workers", "1", "--quiet", "--out", str(out)])
    assert built.exit_code == 0, built.output
    assert "(images)" in built.output and "records from" in built.output
    ok = runner.invoke(main, ["verify", str(out)])
    assert ok.exit_code == 0 and ok.output.startswith("OK"), ok.output
    info = json.loads(runner.invoke(main, ["inspect", str(out), "--json"]).output)
    assert info["kind"] == "images" and info["split_fingerprint"] == read_card(out).split_fingerprint
    assert "splits fp" in runner.invoke(main, ["inspect", str(out)]).output
    png = tmp_path / "preview.png"
    shown = runner.invoke(main, ["preview", str(out), "--count", "6", "--out", str(png)])
    assert shown.exit_code == 0, shown.output
    picture = cv2.imread(str(png))
    assert picture is not None and picture.shape[0] > 16 and picture.shape[1] > 3 * 16
    diff = json.loads(runner.invoke(main, ["diff", str(images), str(out), "--json"]).output)
    assert diff["split_match"] is True and diff["a"]["kind"] == diff["b"]["kind"] == "images"
    assert all(r["only_a"] == r["only_b"] == 0 for r in diff["records"].values())


def test_strategy_other_than_per_image_is_one_line_error(src: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not apply to images datasets"):
        _config(src, kind="images", **{"sample.strategy": "balanced"})
    result = CliRunner().invoke(main, ["build", "--src", str(src), "--kind", "images", "--strategy", "hard",
                                       "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "--strategy 'hard' does not apply to images datasets" in result.output


def test_every_reader_returns_the_same_records(images: Path, augmented: Path) -> None:
    for path in (images, augmented):
        for split in ("train", "test"):
            want = load_numpy(path, split)
            assert sorted(want) == ["class", "id", "image", "record_id"]
            assert want["image"].dtype == np.float32 and want["image"].shape[1:] == (16, 16, 1)
            batches = list(stream(path, split, batch_size=4))
            got = {k: np.concatenate([b[k] for b in batches]) for k in want}
            for key in want:
                np.testing.assert_array_equal(got[key], want[key], err_msg=key)
            manifest = read_table(path / "manifests" / f"{split}.parquet")
            np.testing.assert_array_equal(want["id"], manifest["image_id"])
            np.testing.assert_array_equal(want["class"], manifest["class_id"])


def test_tf_readers_match_load_numpy(images: Path) -> None:
    pytest.importorskip("tensorflow")
    from pairgen.reading.tfdata import load_arrays

    want = load_numpy(images, "train")
    arrays = load_arrays(images, "train")
    assert sorted(arrays) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(arrays[key], want[key], err_msg=key)
    x, y = next(iter(pairgen.load(images, "train", batch_size=len(want["id"]))))  # Keras-style (image, class)
    np.testing.assert_array_equal(x.numpy(), want["image"])
    assert y.dtype.name == "int64"
    np.testing.assert_array_equal(y.numpy(), want["class"])
    image, cls, ids = next(iter(pairgen.load(images, "train", with_ids=True)))
    assert image.shape == (16, 16, 1) and sorted(ids) == ["class", "id", "record_id"]
    assert int(cls) == int(ids["class"]) == want["class"][0]


def test_torch_stream_dataset_reads_an_images_dataset(augmented: Path) -> None:
    torch = pytest.importorskip("torch")
    from pairgen.reading.torch import StreamDataset

    want = load_numpy(augmented, "train")
    loader = torch.utils.data.DataLoader(StreamDataset(augmented, "train", batch_size=8), batch_size=None,
                                         num_workers=2)
    batches = list(loader)
    got = {k: torch.cat([b[k] for b in batches]).numpy() for k in batches[0]}
    order = np.argsort(got["record_id"])
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key][order], want[key], err_msg=key)


def test_augmented_copies_have_their_own_seeds_and_pixels(augmented: Path) -> None:
    manifest = read_table(augmented / "manifests" / "train.parquet")
    counts = manifest["image_id"].value_counts()
    assert (counts == 3).all()
    assert manifest["aug_seed"].is_unique
    arrays = load_numpy(augmented, "train", normalize=False)
    first = int(manifest["image_id"].iloc[0])
    copies = arrays["image"][arrays["id"] == first]
    assert len(copies) == 3 and len({c.tobytes() for c in copies}) > 1  # jittered differently
    assert verify(augmented).ok


@pytest.mark.parametrize("workers", [1, 2])
def test_augmented_build_is_byte_identical_across_worker_counts(src: Path, augmented: Path, tmp_path: Path,
                                                                workers: int) -> None:
    out = tmp_path / f"w{workers}"
    build(_config(src, kind="images", **AUGMENT, **{"image.encoding": "png", "shards.records_per_shard": 25,
                                                    "build.workers": workers}), out)
    assert read_card(out).fingerprint == read_card(augmented).fingerprint
    files = sorted(p.relative_to(augmented) for p in augmented.rglob("*") if p.is_file() and p.name != "dataset.json")
    assert any(str(f).startswith("shards/") for f in files)
    for rel in files:
        assert (out / rel).read_bytes() == (augmented / rel).read_bytes(), rel


def test_other_seed_gives_other_images_dataset(src: Path, images: Path, tmp_path: Path) -> None:
    card = build(_config(src, kind="images", seed=1, **{"shards.records_per_shard": 10}), tmp_path / "s1")
    assert card["fingerprint"] != read_card(images).fingerprint
    assert card["split_fingerprint"] != read_card(images).split_fingerprint


def test_pair_sampling_settings_do_not_change_an_images_fingerprint(src: Path, images: Path,
                                                                    tmp_path: Path) -> None:
    """An images build uses no pair/triplet parameter, so none of them is hashed."""
    over = {"sample.positives_per_image": 3, "sample.negatives_per_image": 2, "sample.num_records": 77,
            "shards.records_per_shard": 10}
    card = build(_config(src, kind="images", **over), tmp_path / "other-params")
    assert card["fingerprint"] == read_card(images).fingerprint
    for name in ("manifests/train.parquet", "catalog.parquet"):
        assert (tmp_path / "other-params" / name).read_bytes() == (images / name).read_bytes()
    pairs = [build(_config(src, kind="pairs", **{"sample.positives_per_image": 0, "sample.negatives_per_image": k}),
                   tmp_path / f"p{k}")["fingerprint"] for k in (1, 2)]
    assert pairs[0] != pairs[1]


def _assignment(path: Path) -> pd.Series:
    catalog = read_table(path / "catalog.parquet")
    return catalog.set_index("path")["split"].sort_index()


def _manifest_images(path: Path, split: str) -> set[int]:
    manifest = read_table(path / "manifests" / f"{split}.parquet")
    ids = [manifest[c] for c in schema_of(read_card(path).kind).id_columns]
    return set(np.unique(np.concatenate(ids)).tolist())


@pytest.mark.parametrize("split_by", ["image", "class", "folders"])
def test_images_and_pairs_share_splits(tmp_path: Path, split_by: str) -> None:
    if split_by == "folders":
        root = split_folders_tree(tmp_path, splits=("train", "val", "test"), classes=4, per_class=6, size=16)
        over = {"source.layout": "split-folders", "split.by": "folders"}
    else:
        shape = {"classes": 6, "per_class": 20} if split_by == "image" else {"classes": 20, "per_class": 4}
        root = image_tree(tmp_path, **shape, size=16, channels=1)
        over = {"split.by": split_by}
    over = {**over, "seed": 11, "image.channels": 1 if split_by != "folders" else 3}
    made = {kind: build(_config(root, kind=kind, **over), tmp_path / kind) for kind in ("images", "pairs", "triplets")}
    fps = {kind: card["split_fingerprint"] for kind, card in made.items()}
    assert len(set(fps.values())) == 1 and len(fps["images"]) == 64
    base = _assignment(tmp_path / "images")
    for kind in ("pairs", "triplets"):
        pd.testing.assert_series_equal(_assignment(tmp_path / kind), base)
    for split in ("train", "val", "test"):
        # Every image a pairs record uses is an image of the same split in the images dataset.
        assert _manifest_images(tmp_path / "pairs", split) <= _manifest_images(tmp_path / "images", split)
    other = build(_config(root, kind="pairs", **{**over, "seed": 12}), tmp_path / "other")
    if split_by != "folders":  # folders splits come from the source and ignore the seed
        assert other["split_fingerprint"] != fps["pairs"]
    else:
        assert other["split_fingerprint"] == fps["pairs"]


def test_split_fingerprint_is_content_and_split_only() -> None:
    a = pd.DataFrame({"sha256": ["b" * 64, "a" * 64, "c" * 64], "split": ["train", "test", None],
                      "path": ["x/1.png", "x/2.png", "x/3.png"]})
    moved = a.assign(path=["y/9.png", "y/8.png", "y/7.png"]).iloc[::-1]
    assert split_fingerprint(a) == split_fingerprint(moved)  # paths and row order do not matter
    assert split_fingerprint(a) != split_fingerprint(a.assign(split=["train", "val", None]))


def test_verify_reports_a_changed_split_fingerprint(images: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(images, copy)
    data = json.loads((copy / "dataset.json").read_text())
    data["split_fingerprint"] = "0" * 64
    (copy / "dataset.json").write_text(json.dumps(data))
    report = verify(copy)
    assert not report.ok and any("split fingerprint" in p.detail for p in report.problems)
    del data["split_fingerprint"]  # a card written before split fingerprints: nothing to check
    (copy / "dataset.json").write_text(json.dumps(data))
    assert verify(copy).ok


def test_verify_finds_a_missing_or_repeated_image(images: Path) -> None:
    card = read_card(images)
    catalog = read_table(images / "catalog.parquet")
    manifest = read_table(images / "manifests" / "train.parquet")
    assert check_manifest(manifest, catalog, "train", card) == []
    repeated = manifest.copy()
    repeated.loc[1, ["image_id", "class_id"]] = repeated.loc[0, ["image_id", "class_id"]].to_numpy()
    problems = check_manifest(repeated, catalog, "train", card)
    assert any("every image of the split once" in p.detail for p in problems), problems
    dropped = manifest.iloc[:-1]
    problems = check_manifest(dropped, catalog, "train", card)
    assert any("every image of the split once" in p.detail for p in problems), problems


def test_train_takes_an_images_dataset_as_p_x_k_batches() -> None:
    from pairgen.train.config import TrainConfig

    resolved = TrainConfig().resolve("images")
    assert (resolved.loss, resolved.mining, resolved.head) == ("triplet", "batch-hard", "distance")
    assert (resolved.classes_per_batch, resolved.images_per_class, resolved.batch_size) == (16, 4, 64)
    with pytest.raises(ConfigError, match="does not fit an images dataset"):
        TrainConfig(loss="bce").resolve("images")


def test_sample_images_gives_every_image_once_per_split() -> None:
    frame = pd.DataFrame({"image_id": np.arange(10, dtype=np.int64),
                          "class_id": np.array([0, 0, 1, 1, 1, 2, 2, 0, 1, 2], dtype=np.int64),
                          "split": ["train", "test"] * 5})
    out = pairgen.sample_images(frame, rng=np.random.default_rng(0))
    assert list(out.columns) == ["image_id", "class_id", "split"]
    assert list(out["split"]) == ["test"] * 5 + ["train"] * 5  # grouped by split, sorted by name
    assert list(out["image_id"]) == [1, 3, 5, 7, 9, 0, 2, 4, 6, 8]
    np.testing.assert_array_equal(out["class_id"], frame.set_index("image_id")["class_id"].reindex(out["image_id"]))
    with pytest.raises(pairgen.SampleError, match="--strategy must be one of per-image for images"):
        pairgen.sample_images(frame, strategy="balanced", rng=np.random.default_rng(0))
