"""``pairgen train IMAGES_DATASET`` on P x K batches, then ``pairgen evaluate RUN PAIRS_DATASET``.

Real MNIST digits (30 per class of datasets/mnist-5k), built twice with the demo pipeline's
source, split config and seed: as an images dataset (training) and as a pairs dataset
(evaluation). The models are tiny and train for one epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")

from pairgen.cli import main  # noqa: E402
from pairgen.spec.config import BuildConfig  # noqa: E402
from pairgen.writing.builder import build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--width", "4", "--embedding-dim", "8", "--classes-per-batch", "5",
        "--images-per-class", "4"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pkdigits")
    src = base / "mnist"
    for folder in sorted((ROOT / "datasets" / "mnist-5k").iterdir()):
        if folder.is_dir():
            (src / folder.name).mkdir(parents=True)
            for f in sorted(folder.glob("*.png"))[:30]:
                shutil.copy(f, src / folder.name / f.name)
    out = {}
    for kind in ("images", "pairs"):
        cfg = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml").override({
            "source.path": str(src), "kind": kind, "build.workers": 1, "build.quiet": True,
            "sample.positives_per_image": 1, "sample.negatives_per_image": 1})
        build(cfg, base / kind)
        out[kind] = base / kind
    return out


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("loss", [["--loss", "triplet", "--mining", "batch-hard"],
                                  ["--loss", "triplet", "--mining", "batch-semi-hard"],
                                  ["--loss", "contrastive"]])
def test_train_on_pk_batches_then_evaluate_on_pairs(digits: dict[str, Path], tmp_path: Path,
                                                    loss: list[str]) -> None:
    run = tmp_path / "run"
    res = _cli("train", digits["images"], "--out", run, *TINY, *loss)
    assert res.exit_code == 0, res.output
    assert "pair metrics: `pairgen evaluate" in res.output and "retrieval test: P@1" in res.output
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["classes_per_batch"] == 5 and config["train"]["images_per_class"] == 4
    assert config["train"]["head"] == "distance" and config["train"]["batch_size"] == 20
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["batches_per_epoch"] > 0 and np.isfinite(metrics["loss"])
    assert (run / "embedding.keras").is_file() and (run / "model.keras").is_file()
    res = _cli("evaluate", run, digits["pairs"], "--json", "--ways", "5", "--trials", "20")
    assert res.exit_code == 0, res.output
    scored = json.loads(res.output)
    assert scored["split"] == "test" and 0.0 <= scored["pair_accuracy"] <= 1.0 and scored["pairs"] > 0
    assert scored["split_match"] is True  # same source, split config and seed


def test_a_pk_run_loads_in_a_fresh_process(digits: dict[str, Path], tmp_path: Path) -> None:
    """The saved models carry no compile state: `pairgen evaluate` in a new process scores the run,
    and plain Keras (no pairgen import) loads the tower."""
    run = tmp_path / "run"
    assert _cli("train", digits["images"], "--out", run, *TINY, "--loss", "triplet", "-q").exit_code == 0
    res = subprocess.run([sys.executable, "-m", "pairgen", "evaluate", str(run), str(digits["pairs"]), "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["split_match"] is True
    code = ("import sys, keras; m = keras.models.load_model(sys.argv[1]); "
            "print(m.name, m.output_shape[-1], m.compiled)")
    res = subprocess.run([sys.executable, "-c", code, str(run / "embedding.keras")], capture_output=True,
                         text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split()[-2:] == ["8", "False"]


def test_train_errors_are_one_line(digits: dict[str, Path], tmp_path: Path) -> None:
    assert _cli("train", digits["images"], "--out", tmp_path / "run", *TINY, "-q").exit_code == 0
    cases = [
        (["train", digits["pairs"], "--out", tmp_path / "a", "--classes-per-batch", "4"],
         "need an images dataset"),
        (["train", digits["images"], "--out", tmp_path / "b", "--loss", "bce"], "does not fit an images dataset"),
        (["train", digits["images"], "--out", tmp_path / "c", "--classes-per-batch", "11"],
         "needs 11 classes with at least 4 images"),
        (["train", digits["images"], "--out", tmp_path / "d", "--mining", "none"], "--mining none needs fixed"),
        (["evaluate", tmp_path / "run", digits["images"], "--gallery", "nope"], "--gallery"),
        (["train", digits["pairs"], "--out", tmp_path / "e", "--select-by", "map-at-r"],
         "--select-by map-at-r needs an images dataset"),
    ]
    for args, message in cases:
        res = _cli(*args)
        assert res.exit_code == 1, res.output
        assert message in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output


def test_train_on_the_torch_backend_reads_pk_batches_without_tf_data(digits: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    pytest.importorskip("torch")
    run = tmp_path / "torch-run"
    code = ("import sys\nfrom pairgen.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('pairgen.reading.pk_tf', 'pairgen.reading.tfdata') if m in sys.modules))\n")
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    out = subprocess.run([sys.executable, "-c", code, "train", str(digits["images"]), "--out", str(run), *TINY,
                          "--loss", "contrastive", "-q"], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    # Keras' own seeding imports TensorFlow when it is installed; pairgen's tf.data readers stay out.
    assert out.stdout.strip().splitlines()[-1] == "[]"
    config = json.loads((run / "config.json").read_text())
    assert config["environment"]["backend"] == "torch" and config["train"]["reader"] == "numpy"


def test_pk_run_keeps_the_best_val_map_at_r_and_reports_retrieval(digits: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = _cli("train", digits["images"], "--out", run, *TINY[:1], "2", *TINY[2:], "--loss", "triplet",
               "--select-by", "map-at-r", "--patience", "0", "-q")
    assert res.exit_code == 0, res.output
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 2 and history["val_map_at_r"].between(0, 1).all()
    metrics = json.loads((run / "metrics.json").read_text())
    assert sorted(metrics["retrieval"]) == ["test", "val"]
    # the kept weights are those of the best epoch: the val MAP@R measured after training is its best
    assert metrics["retrieval"]["val"]["map_at_r"] == pytest.approx(history["val_map_at_r"].max(), abs=1e-6)
    assert cv2.imread(str(run / "retrieval.png")) is not None
    res = _cli("evaluate", run, digits["images"], "--json")
    assert res.exit_code == 0, res.output
    scored = json.loads(res.output)
    assert scored["retrieval"] == metrics["retrieval"] and scored["split_match"] is True
    assert "pair_accuracy" not in scored and scored["class_disjoint"] is False
    png = tmp_path / "examples.png"
    res = _cli("evaluate", run, digits["images"], "--gallery", "train", "--examples", "3", "--out", png)
    assert res.exit_code == 0, res.output
    assert "retrieval test vs train: P@1" in res.output and cv2.imread(str(png)).shape[0] > 100
    res = _cli("evaluate", run, digits["pairs"], "--gallery", "train", "--json", "--ways", "5", "--trials", "20")
    assert res.exit_code == 0, res.output
    test = json.loads(res.output)["retrieval"]["test"]
    assert test["gallery_split"] == "train" and test["same_set"] is False and test["gallery"] > test["queries"]
