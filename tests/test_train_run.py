"""End to end on real MNIST digits: train -> run folder -> evaluate -> embed -> hard negatives.

The dataset is the demo pipeline (pipelines/mnist-demo.toml) over 30 digits per class of
datasets/mnist-5k with one positive and one negative per image (a few hundred pairs), and the
model is a tiny conv-bn tower trained for one epoch.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")

from pairgen.sampling import sample_pairs  # noqa: E402
from pairgen.sampling.hard import load_embeddings  # noqa: E402
from pairgen.spec.config import BuildConfig  # noqa: E402
from pairgen.writing.builder import build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = {"epochs": 1, "width": 4, "embedding_dim": 8, "batch_size": 32}


def _subset(dst: Path, per_class: int) -> Path:
    for folder in sorted((ROOT / "datasets" / "mnist-5k").iterdir()):
        if folder.is_dir():
            (dst / folder.name).mkdir(parents=True)
            for f in sorted(folder.glob("*.png"))[:per_class]:
                shutil.copy(f, dst / folder.name / f.name)
    return dst


def _build(src: Path, out: Path, **overrides) -> Path:
    cfg = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml").override({
        "source.path": str(src), "sample.positives_per_image": 1, "sample.negatives_per_image": 1,
        "build.workers": 1, "build.quiet": True, **overrides})
    build(cfg, out)
    return out


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _subset(tmp_path_factory.mktemp("src") / "mnist", 30)


@pytest.fixture(scope="module")
def demo(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(digits, tmp_path_factory.mktemp("ds") / "demo")


@pytest.fixture(scope="module")
def run(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pairgen.cli.training import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    args = [str(demo), "--out", str(out), "--quiet"] + [x for k, v in TINY.items()
                                                      for x in (f"--{k.replace('_', '-')}", str(v))]
    result = CliRunner().invoke(train, args)
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_every_run_file(run: Path, demo: Path) -> None:
    from pairgen.train.trainer import RUN_FILES

    for name in RUN_FILES:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert (run / "checkpoints" / "best.weights.h5").is_file()
    for png in ("curves.png", "distances.png", "roc.png", "retrieval.png"):
        assert cv2.imread(str(run / png)) is not None
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [0] and {"loss", "val_loss", "learning_rate"} <= set(history.columns)
    config = json.loads((run / "config.json").read_text())
    card = json.loads((demo / "dataset.json").read_text())
    assert config["dataset"]["fingerprint"] == card["fingerprint"]
    assert config["train"]["loss"] == "contrastive" and config["train"]["head"] == "distance"
    assert config["train"]["model"] == "conv-bn" and config["input_shape"] == [28, 28, 1]


def test_saved_models_reload_and_agree(run: Path, demo: Path) -> None:
    import keras

    from pairgen.reading.tfdata import load_arrays
    from pairgen.train import layers  # noqa: F401

    model = keras.models.load_model(run / "model.keras")
    tower = keras.models.load_model(run / "embedding.keras")
    arrays = load_arrays(demo, "test", limit=16)
    dist = model.predict([arrays["a"], arrays["b"]], verbose=0).ravel()
    ea, eb = tower.predict(arrays["a"], verbose=0), tower.predict(arrays["b"], verbose=0)
    assert tower.output_shape == (None, 8)
    np.testing.assert_allclose(dist, np.linalg.norm(ea - eb, axis=1), rtol=1e-4, atol=1e-5)


def test_evaluate_json_matches_metrics_json(run: Path, demo: Path) -> None:
    from pairgen.cli.training import evaluate

    result = CliRunner().invoke(evaluate, [str(run), str(demo), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == json.loads((run / "metrics.json").read_text())
    assert printed["threshold_split"] == "val" and printed["split"] == "test"
    assert 0.0 <= printed["pair_accuracy"] <= 1.0 and 0.0 <= printed["roc_auc"] <= 1.0
    assert printed["one_shot"]["5-way"]["trials"] == 400
    assert "skipped" in printed["one_shot"]["20-way"]  # MNIST has only 10 classes
    assert printed["class_disjoint"] is False
    assert sorted(printed["retrieval"]) == ["test", "val"]
    test = printed["retrieval"]["test"]
    assert test["gallery_split"] == "test" and test["queries"] == test["gallery"] > 0
    assert sorted(test["recall_at_k"]) == ["1", "2", "4", "8"] and 0.0 <= test["map_at_r"] <= 1.0


def test_retrieval_metrics_of_the_trained_tower_equal_the_references(run: Path, demo: Path) -> None:
    """metrics.json's retrieval of the test split, recomputed from the saved tower's embeddings
    by a brute force and (when installed) by pytorch-metric-learning's AccuracyCalculator."""
    import keras
    from test_retrieval import brute_force, pml_metrics

    from pairgen.reading.arrays import load_numpy
    from pairgen.train.data import open_dataset
    from pairgen.train.evaluation import split_images

    images, classes = split_images(open_dataset(demo), load_numpy(demo, "test", normalize=False))
    tower = keras.models.load_model(run / "embedding.keras")
    emb = tower.predict(images.astype(np.float32) / np.float32(255.0), verbose=0, batch_size=256)
    saved = json.loads((run / "metrics.json").read_text())["retrieval"]["test"]
    keys = ("precision_at_1", "r_precision", "map_at_r")
    oracle = brute_force(emb, classes)
    assert {k: saved[k] for k in keys} == pytest.approx({k: oracle[k] for k in keys}, abs=1e-6)
    assert saved["queries"] == len(classes)
    pytest.importorskip("pytorch_metric_learning")
    assert {k: saved[k] for k in keys} == pytest.approx(pml_metrics(emb, classes), abs=1e-6)


def test_evaluate_prints_readable_metrics(run: Path, demo: Path) -> None:
    from pairgen.cli.training import evaluate

    result = CliRunner().invoke(evaluate, [str(run), str(demo), "--split", "val", "--ways", "3", "--trials", "50"])
    assert result.exit_code == 0, result.output
    for text in ("pair accuracy", "ROC AUC", "EER", "chosen on val", "3-way one-shot accuracy"):
        assert text in result.output


def test_evaluate_errors_are_one_line(run: Path, demo: Path, tmp_path: Path) -> None:
    from pairgen.cli.training import evaluate

    missing = CliRunner().invoke(evaluate, [str(tmp_path), str(demo)])
    assert missing.exit_code == 1 and "has no model.keras" in missing.output
    bad_split = CliRunner().invoke(evaluate, [str(run), str(demo), "--split", "holdout"])
    assert bad_split.exit_code == 1 and "holdout" in bad_split.output and "Traceback" not in bad_split.output


def test_embed_then_hard_negatives_are_harder_than_per_image(run: Path, demo: Path, tmp_path: Path) -> None:
    from pairgen.cli.training import embed

    out = tmp_path / "emb.parquet"
    result = CliRunner().invoke(embed, [str(run), str(demo), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    catalog = pd.read_parquet(demo / "catalog.parquet")
    assert list(frame["image_id"]) == sorted(catalog["image_id"]) and len(frame["embedding"].iloc[0]) == 8
    emb = load_embeddings(out, catalog)
    images = catalog[catalog["split"] == "train"]

    def negative_distance(strategy: str) -> float:
        pairs = sample_pairs(images, strategy=strategy, rng=np.random.default_rng(0), hard_k=5, embeddings=emb)
        neg = pairs[pairs["label"] == 0]
        return float(np.linalg.norm(emb[neg["a_id"]] - emb[neg["b_id"]], axis=1).mean())

    assert negative_distance("hard") < 0.8 * negative_distance("per-image")


def test_embed_an_image_folder_matches_the_dataset_source(run: Path, demo: Path, digits: Path,
                                                          tmp_path: Path) -> None:
    from pairgen.train.embedding import embed

    from_folder = embed(run, digits, tmp_path / "a.parquet")
    from_dataset = embed(run, demo, tmp_path / "b.parquet")
    assert list(from_folder["path"]) == list(from_dataset["path"])
    np.testing.assert_allclose(np.stack(from_folder["embedding"]), np.stack(from_dataset["embedding"]), atol=1e-5)


def test_triplet_dataset_trains_with_mining_and_mixed_precision(digits: Path, tmp_path: Path) -> None:
    import keras

    from pairgen.train import TrainConfig, train

    data = _build(digits, tmp_path / "triplets", kind="triplets")
    config = TrainConfig(**TINY, mining="batch-hard", mixed_precision=True)
    metrics = train(data, tmp_path / "run", config, verbose=0)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after training
    test_triplets = json.loads((data / "dataset.json").read_text())["splits"]["test"]["records"]
    assert 0.0 <= metrics["triplet_accuracy"] <= 1.0 and metrics["pairs"] == 2 * test_triplets
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["loss"] == "triplet" and config["train"]["mining"] == "batch-hard"


def test_train_refuses_an_existing_run_without_overwrite(run: Path, demo: Path) -> None:
    from pairgen.cli.training import train

    result = CliRunner().invoke(train, [str(demo), "--out", str(run), "--epochs", "1"])
    assert result.exit_code == 1 and "--overwrite" in result.output


def test_steps_per_execution_changes_speed_not_the_model(demo: Path, tmp_path: Path) -> None:
    import keras

    from pairgen.train import TrainConfig, train

    weights = []
    for spe in (1, 4):  # 4 does not divide the 15 steps of an epoch: the last call runs fewer
        train(demo, tmp_path / f"spe{spe}", TrainConfig(**{**TINY, "epochs": 2}, steps_per_execution=spe), verbose=0)
        weights.append(keras.saving.load_model(tmp_path / f"spe{spe}" / "embedding.keras").get_weights())
        assert json.loads((tmp_path / f"spe{spe}" / "config.json").read_text())["train"]["steps_per_execution"] == spe
    for one, four in zip(*weights):
        np.testing.assert_allclose(one, four, rtol=1e-5, atol=1e-6)


def test_numpy_reader_trains_pairs_and_triplets_without_tf_data(demo: Path, digits: Path, tmp_path: Path) -> None:
    from pairgen.train import TrainConfig, train

    metrics = train(demo, tmp_path / "pairs", TrainConfig(**TINY, reader="numpy"), verbose=0)
    assert 0.0 <= metrics["pair_accuracy"] <= 1.0
    assert all((tmp_path / "pairs" / name).is_file() for name in ("model.keras", "embedding.keras", "roc.png"))
    card = json.loads((tmp_path / "pairs" / "config.json").read_text())
    assert card["train"]["reader"] == "numpy" and card["environment"]["backend"] == "tensorflow"
    history = pd.read_csv(tmp_path / "pairs" / "history.csv")
    assert len(history) == 1 and np.isfinite(history["val_loss"]).all()
    data = _build(digits, tmp_path / "triplets", kind="triplets")
    metrics = train(data, tmp_path / "triplets-run", TrainConfig(**TINY, reader="numpy", mining="batch-hard"),
                    verbose=0)
    assert 0.0 <= metrics["triplet_accuracy"] <= 1.0


def test_evaluate_through_pairgens_reader_matches_tf_data(run: Path, demo: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The path taken when TensorFlow is not installed (pairgen.load_numpy) gives the same metrics."""
    from pairgen.train import evaluation

    want = json.loads((run / "metrics.json").read_text())
    monkeypatch.setattr(evaluation, "resolve_reader", lambda reader: "numpy")
    monkeypatch.setitem(sys.modules, "pairgen.reading.tfdata", None)  # any use of the tf.data loader would fail
    got = json.loads(json.dumps(evaluation.evaluate(run, demo)))
    assert got == want


def test_run_records_the_split_fingerprint_and_evaluate_says_when_splits_differ(
        run: Path, demo: Path, digits: Path, tmp_path: Path) -> None:
    from pairgen.cli.training import evaluate

    recorded = json.loads((run / "config.json").read_text())["dataset"]["split_fingerprint"]
    assert recorded == json.loads((demo / "dataset.json").read_text())["split_fingerprint"]
    same = CliRunner().invoke(evaluate, [str(run), str(demo), "--json", "--ways", "3", "--trials", "20"])
    assert same.exit_code == 0 and same.stderr == "" and json.loads(same.stdout)["split_match"] is True
    # Same source and split config, another seed: other test images, possibly seen in training.
    reseeded = _build(digits, tmp_path / "seed1", seed=1)
    other = CliRunner().invoke(evaluate, [str(run), str(reseeded), "--json", "--ways", "3", "--trials", "20"])
    assert other.exit_code == 0, other.output
    assert json.loads(other.stdout)["split_match"] is False
    assert len(other.stderr.strip().splitlines()) == 1 and "splits differ" in other.stderr
    # The images dataset of the demo's source, split config and seed shares the demo's splits:
    # evaluate scores retrieval on its test images, the same images as the pairs' test split's.
    images = _build(digits, tmp_path / "images", kind="images")
    assert json.loads((images / "dataset.json").read_text())["split_fingerprint"] == recorded
    scored = CliRunner().invoke(evaluate, [str(run), str(images), "--json"])
    assert scored.exit_code == 0 and scored.stderr == "", scored.output
    scored_test = json.loads(scored.stdout)["retrieval"]["test"]
    assert json.loads(scored.stdout)["split_match"] is True and scored_test["queries"] > 0
    # A run written before split fingerprints: nothing is said, split_match is null.
    old = tmp_path / "old-run"
    shutil.copytree(run, old)
    config = json.loads((old / "config.json").read_text())
    del config["dataset"]["split_fingerprint"]
    (old / "config.json").write_text(json.dumps(config))
    quiet = CliRunner().invoke(evaluate, [str(old), str(reseeded), "--ways", "3", "--trials", "20"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and "pair accuracy" in quiet.stdout
    assert _split_match(old, reseeded) is None


def _split_match(run: Path, dataset: Path) -> bool | None:
    from pairgen.train.evaluation import evaluate as run_evaluation

    return run_evaluation(run, dataset, ways=(3,), trials=20)["split_match"]


_TF_START_LINES = ("oneDNN custom operations are on", "failed call to cuInit", "absl::InitializeLog",
                   "Could not find cuda drivers", "cpu_feature_guard", "This TensorFlow binary is optimized")


@pytest.mark.slow
def test_quiet_train_prints_no_tensorflow_start_up_lines(demo: Path, tmp_path: Path) -> None:
    """A CPU-only ``pairgen train --quiet`` (``evaluate`` and ``embed`` start TensorFlow the same way)."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    tiny = [x for k, v in TINY.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    done = subprocess.run([sys.executable, "-m", "pairgen", "train", str(demo), "--out", str(tmp_path / "run"),
                           "--quiet", *tiny], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if any(s in line for s in _TF_START_LINES)], done.stderr


def test_only_tensorflow_start_up_lines_are_left_out(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    from pairgen.extras import _TF_START_LINES as start_lines
    from pairgen.extras import _stderr_without

    with _stderr_without(start_lines):
        os.write(2, b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see ...\n")
        os.write(2, b"a real problem\n")
        os.write(2, b"W0000 00:00:1.0 1 cpu_feature_guard.cc:1] This TensorFlow binary is optimized ...\n")
    assert capfd.readouterr().err == "a real problem\n"
