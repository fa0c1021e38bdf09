"""End-to-end builds: manifests, shards, reproducibility, atomicity, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pairgen.codec.example import decode_example
from pairgen.codec.tfrecord import iter_records
from pairgen.dataset import tables as mf
from pairgen.dataset.card import read_json as read_card
from pairgen.errors import BuildError
from pairgen.rendering.records import Render, Source, render_record
from pairgen.spec.config import BuildConfig
from pairgen.writing.builder import build

ROOT = Path(__file__).resolve().parents[1]


def _config(src: Path, **overrides) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [24, 24], "build.workers": 1, "build.quiet": True,
            "split.fractions": {"train": 0.5, "val": 0.25, "test": 0.25}}
    base.update(overrides)
    return BuildConfig().override(base)


def _tree_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != "dataset.json"}


def test_manifest_only_build_writes_tables_and_card(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "src", classes=4, per_class=8)
    card = build(_config(src, **{"build.manifest_only": True}), tmp_path / "ds")
    out = tmp_path / "ds"
    assert sorted(p.name for p in out.iterdir()) == ["catalog.parquet", "dataset.json", "manifests", "skipped.parquet"]
    assert card == read_card(out)
    assert card["shards"] == {} and len(card["fingerprint"]) == 64
    assert set(card["splits"]) == {"train", "val", "test"}
    for split, counts in card["splits"].items():
        table = mf.read_table(out / "manifests" / f"{split}.parquet")
        assert list(table.columns) == list(mf.PAIR_COLUMNS)
        assert len(table) == counts["records"] == 2 * counts["images"]
        assert (table["split"] == split).all()
        assert table["record_id"].tolist() == list(range(len(table)))
        assert card["files"][f"manifests/{split}.parquet"]["records"] == len(table)


def test_same_config_same_bytes_and_other_seed_differs(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "src", classes=3, per_class=8)
    a = build(_config(src, **{"build.manifest_only": True}), tmp_path / "a")
    b = build(_config(src, **{"build.manifest_only": True}), tmp_path / "b")
    c = build(_config(src, **{"build.manifest_only": True, "seed": 1}), tmp_path / "c")
    assert _tree_files(tmp_path / "a") == _tree_files(tmp_path / "b")
    assert a["fingerprint"] == b["fingerprint"] != c["fingerprint"]
    assert a["files"]["manifests/train.parquet"]["sha256"] != c["files"]["manifests/train.parquet"]["sha256"]


def test_refuses_to_overwrite_without_flag(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "src", classes=2, per_class=8)
    cfg = _config(src, **{"build.manifest_only": True})
    build(cfg, tmp_path / "ds")
    with pytest.raises(BuildError, match="already exists. Pass --overwrite"):
        build(cfg, tmp_path / "ds")
    build(cfg.override({"build.overwrite": True, "seed": 3}), tmp_path / "ds")
    assert read_card(tmp_path / "ds")["config"]["seed"] == 3


def test_records_are_in_a_seeded_random_order(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "src", classes=6, per_class=12)
    build(_config(src, **{"build.manifest_only": True}), tmp_path / "ds")
    train = mf.read_table(tmp_path / "ds" / "manifests" / "train.parquet")
    head = train.iloc[: len(train) // 4]
    assert head["a_class"].nunique() == 6  # not grouped by anchor class
    assert not train["a_class"].is_monotonic_increasing


def test_balanced_quota_is_shared_by_split_size(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "src", classes=4, per_class=10)
    card = build(_config(src, **{"build.manifest_only": True, "sample.strategy": "balanced",
                                 "sample.num_records": 101}), tmp_path / "ds")
    records = {k: v["records"] for k, v in card["splits"].items()}
    assert sum(records.values()) == 101
    assert records["train"] > records["val"] > 0


def _shard_examples(out: Path, card: dict, split: str) -> list[dict]:
    recs = []
    for shard in card["shards"][split]:
        recs.extend(decode_example(r) for r in iter_records(out / shard["path"], compression=card["compression"]))
    return recs


def test_shards_match_manifest_and_rematerialize(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "src", classes=3, per_class=8, size=40)
    cfg = _config(src, **{"augment.enabled": True, "augment.resize": [48, 48], "augment.crop": [40, 40],
                          "augment.flip": True, "augment.rotation": 10.0, "augment.copies": 2,
                          "shards.records_per_shard": 7})
    out = tmp_path / "ds"
    card = build(cfg, out)
    catalog = mf.read_table(out / "catalog.parquet")
    source = Source(root=str(src), paths=tuple(catalog.sort_values("image_id")["path"]))
    render = Render(kind=cfg.kind, image=cfg.image, augment=cfg.augment)
    for split in card["splits"]:
        table = mf.read_table(out / "manifests" / f"{split}.parquet")
        examples = _shard_examples(out, card, split)
        assert len(examples) == len(table) == sum(s["records"] for s in card["shards"][split])
        assert [e["label"][0] for e in examples] == table["label"].tolist()
        assert [e["a/id"][0] for e in examples] == table["a_id"].tolist()
        row = table.iloc[len(table) // 2]
        again = render_record(source, render, (int(row.a_id), int(row.b_id)), int(row.aug_seed), {})
        ex = examples[len(table) // 2]
        assert ex["a/image"][0] == again[0] and ex["b/image"][0] == again[1]
        assert len(again[0]) == 24 * 24


def test_workers_and_runs_give_identical_bytes(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "src", classes=4, per_class=8, size=32)
    over = {"augment.enabled": True, "augment.crop": [28, 28], "augment.flip": True, "image.encoding": "png",
            "shards.records_per_shard": 10, "sample.positives_per_image": 2}
    build(_config(src, **over), tmp_path / "w1")
    build(_config(src, **over, **{"build.workers": 2}), tmp_path / "w2")
    files = _tree_files(tmp_path / "w1")
    assert any(k.startswith("shards/") for k in files)
    assert files == _tree_files(tmp_path / "w2")


def test_undecodable_image_is_skipped_with_reason(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "src", classes=2, per_class=9)
    victim = sorted((src).rglob("*.png"))[3]
    data = victim.read_bytes()
    victim.write_bytes(data[:40] + bytes(len(data) - 52) + data[-12:])  # valid header and IEND, corrupt body
    card = build(_config(src), tmp_path / "ds")
    skipped = mf.read_table(tmp_path / "ds" / "skipped.parquet")
    rel = victim.relative_to(src).as_posix()
    catalog = mf.read_table(tmp_path / "ds" / "catalog.parquet")
    assert rel not in set(catalog["path"])
    assert skipped["path"].tolist() == [rel]
    assert skipped["reason"][0].startswith("corrupt image: ") and rel in skipped["reason"][0]
    assert card["source"]["skipped_by_reason"] == {"corrupt image": 1}
    assert card["source"]["images"] == 17
    with pytest.raises(BuildError, match="--on-error skip"):
        build(_config(src, **{"build.on_error": "fail"}), tmp_path / "ds2")


def test_image_size_required_for_mixed_sizes(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "src", classes=2, per_class=8, size=20)
    cv2.imwrite(str(src / sorted(os.listdir(src))[0] / "big.png"), np.zeros((30, 31), np.uint8))
    cfg = _config(src).override({"image.size": []})
    with pytest.raises(BuildError, match="different sizes; pass --image-size"):
        build(cfg, tmp_path / "ds")


def test_killed_build_leaves_no_finished_dataset(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "src", classes=5, per_class=40, size=64)
    out = tmp_path / "ds"
    code = (
        "import sys; from pairgen.writing.builder import build; from pairgen.spec.config import BuildConfig;"
        f"build(BuildConfig().override({{'source.path': {str(src)!r}, 'image.size': [64, 64],"
        "'image.encoding': 'png', 'augment.enabled': True, 'augment.copies': 50, 'augment.rotation': 20.0,"
        f"'build.workers': 1}}), {str(out)!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    partial = tmp_path / ".ds.partial"
    deadline = time.time() + 120
    while not (partial / "shards").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "build finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert not (partial / "dataset.json").exists()
    card = build(_config(src, **{"build.manifest_only": True}), out)  # a new build cleans up
    assert not partial.exists() and card["fingerprint"]


def test_demo_pipeline_builds_and_trains_a_keras_model(tmp_path: Path) -> None:
    import keras

    import pairgen

    cfg = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml").override(
        {"sample.positives_per_image": 1, "sample.negatives_per_image": 1, "build.workers": 2})
    out = tmp_path / "demo"
    card = build(cfg, out)
    assert card["source"]["images"] == 5000 and card["splits"]["train"]["records"] == 8000
    ds = pairgen.load(out, "train", batch_size=128, shuffle=True, seed=0)
    a_in, b_in = keras.Input((28, 28, 1)), keras.Input((28, 28, 1))
    tower = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(16)])
    diff = keras.layers.Subtract()([tower(a_in), tower(b_in)])
    head = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Lambda(keras.ops.abs)(diff))
    model = keras.Model([a_in, b_in], head)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert 0.0 <= history.history["accuracy"][0] <= 1.0
