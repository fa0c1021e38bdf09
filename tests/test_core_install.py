"""``pip install pairgen`` without extras: the core works, and the extras are named when missing.

The tests install pairgen (non-editable, from a copy of this checkout) into one fresh virtual
environment under a temporary folder and run the real console script and interpreter there;
the last one adds the ``keras`` extra and jax, still without TensorFlow, and trains.
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
import pytest
from click.testing import CliRunner
from conftest import image_tree

from pairgen.cli import main
from pairgen.reading.arrays import load_numpy

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("tensorflow", "keras", "matplotlib", "ray", "jax", "torch")
BUILD_FLAGS = ["--image-size", "16x16", "--splits", "train=0.5,val=0.25,test=0.25", "--seed", "3",
               "--workers", "2", "--quiet"]

pytestmark = pytest.mark.slow


def _make_venv(tmp: Path) -> tuple[Path, Path]:
    """A fresh venv under ``tmp`` with ``pip install <copy of this checkout>`` (no extras).

    Returns:
        The venv's ``bin`` folder and the source copy (for installing extras later).
    """
    src = tmp / "pairgen-src"  # a copy, so the build never writes build/ or *.egg-info here
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "pairgen", src / "pairgen", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip_install(venv / "bin", str(src), env=_env(tmp))
    return venv / "bin", src


def _pip_install(bin_dir: Path, *requirements: str, env: dict[str, str]) -> None:
    # --no-compile: byte-compiling every installed file takes longer than the install itself;
    # Python compiles the few modules the tests import on first use.
    res = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-compile", *requirements],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]


def _env(tmp: Path, **changes: str) -> dict[str, str]:
    """This process's environment without its venv, with Keras' config dir inside ``tmp``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "KERAS_BACKEND")}
    env["KERAS_HOME"] = str(tmp / "keras-home")
    env.update(changes)
    return env


def _run(bin_dir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = args[0] if args[0] == "python" else "pairgen"
    cmd = [str(bin_dir / exe), *(args[1:] if exe == "python" else args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def _assert_one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 1, and stderr is exactly one ``Error: ...`` line containing every needle."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _importable(bin_dir: Path, env: dict[str, str]) -> list[str]:
    code = f"import importlib.util as u; print(','.join(m for m in {OPTIONAL!r} if u.find_spec(m)))"
    res = _run(bin_dir, "python", "-c", code, env=env)
    assert res.returncode == 0, res.stderr
    return [m for m in res.stdout.strip().split(",") if m]


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A venv with ``pip install pairgen`` (no extras), a real image tree, and the same dataset
    built by this (full) installation for comparison.

    The last test of this file adds the ``keras`` extra to this venv; every test before it
    first asserts that no optional package is importable, so a changed order fails loudly.
    """
    tmp = tmp_path_factory.mktemp("core")
    bin_dir, pairgen_src = _make_venv(tmp)
    src = image_tree(tmp, classes=3, per_class=8, size=24, seed=4)
    reference = tmp / "ref-ds"
    res = CliRunner().invoke(main, ["build", "--src", str(src), "--out", str(reference), *BUILD_FLAGS])
    assert res.exit_code == 0, res.output
    return {"tmp": tmp, "bin": bin_dir, "src": src, "reference": reference, "pairgen_src": pairgen_src}


def test_core_builds_reads_and_previews_without_tensorflow(core: dict[str, Path]) -> None:
    tmp, bin_dir, env = core["tmp"], core["bin"], _env(core["tmp"])
    assert _importable(bin_dir, env) == []
    ds = tmp / "ds"
    res = _run(bin_dir, "build", "--src", str(core["src"]), "--out", str(ds), *BUILD_FLAGS, env=env)
    assert res.returncode == 0, res.stderr
    # The core install builds the very same bytes as the full one.
    ours, ref = (json.loads((d / "dataset.json").read_text())["fingerprint"] for d in (ds, core["reference"]))
    assert ours == ref
    assert _run(bin_dir, "diff", str(ds), str(core["reference"]), env=env).returncode == 0

    res = _run(bin_dir, "verify", str(ds), env=env)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
    res = _run(bin_dir, "inspect", str(ds), "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["fingerprint"] == ref

    png = tmp / "preview.png"
    res = _run(bin_dir, "preview", str(ds), "--count", "6", "--out", str(png), env=env)
    assert res.returncode == 0, res.stderr
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 16 and image.shape[1] > 16

    npz = tmp / "train.npz"
    code = ("import sys, numpy as np, pairgen; a = pairgen.load_numpy(sys.argv[1], 'train'); "
            "np.savez(sys.argv[2], **a); "
            "assert not {'tensorflow', 'keras', 'matplotlib'} & set(sys.modules), sorted(sys.modules)")
    res = _run(bin_dir, "python", "-c", code, str(ds), str(npz), env=env)
    assert res.returncode == 0, res.stderr
    with np.load(npz) as got:
        expected = load_numpy(core["reference"], "train")
        assert sorted(got.files) == sorted(expected) and len(got["label"]) > 0
        for key, value in expected.items():
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_core_names_the_extra_for_tensorflow_keras_and_ray(core: dict[str, Path]) -> None:
    tmp, bin_dir, env = core["tmp"], core["bin"], _env(core["tmp"])
    assert _importable(bin_dir, env) == []
    ds, run = str(core["reference"]), str(tmp / "run")
    for cmd in (["train", ds, "--out", run], ["evaluate", run, ds], ["embed", run, ds, "--out", str(tmp / "e.pq")]):
        _assert_one_line_error(_run(bin_dir, *cmd, env=env), f"pairgen {cmd[0]} needs Keras",
                               "pip install 'pairgen[train]'", "'pairgen[keras]'")
    assert not (tmp / "run").exists()
    _assert_one_line_error(_run(bin_dir, "build", "--src", str(core["src"]), "--out", str(tmp / "ray-ds"),
                                "--executor", "ray", *BUILD_FLAGS, env=env), "pip install 'pairgen[ray]'")

    for code in (f"import pairgen; pairgen.load({ds!r})", "from pairgen.reading.tfdata import load_arrays",
                 f"import pairgen; pairgen.feature_spec({ds!r})"):
        res = _run(bin_dir, "python", "-c", code, env=env)
        assert res.returncode == 1
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("pairgen.errors.MissingDependencyError: pairgen.load (tf.data) needs tensorflow"), last
        assert "pip install 'pairgen[tf]'" in last and "pairgen.load_numpy" in last
        # Raised from None: no ModuleNotFoundError and no "During handling..." chain above it.
        assert "ModuleNotFoundError" not in res.stderr and "During handling" not in res.stderr, res.stderr

    code = ("import pairgen\ntry:\n    pairgen.load('x')\nexcept ImportError as e:\n"
            "    assert isinstance(e, pairgen.PairgenError); print('caught')")
    res = _run(bin_dir, "python", "-c", code, env=env)
    assert res.returncode == 0 and res.stdout.strip() == "caught", res.stderr


def test_keras_extra_trains_on_jax_without_tensorflow(core: dict[str, Path]) -> None:
    """``pairgen[keras]`` plus jax: the trainer runs on Keras' JAX backend with no TensorFlow.

    Runs last in this file: it adds the extra to the core venv.
    """
    tmp, bin_dir, env = core["tmp"], core["bin"], _env(core["tmp"])
    _pip_install(bin_dir, f"{core['pairgen_src']}[keras]", "jax", env=env)
    assert _importable(bin_dir, env) == ["keras", "matplotlib", "jax"]
    ds, run = core["reference"], tmp / "jax-run"

    # Keras' default backend is TensorFlow: the error says so, and how to install either way.
    _assert_one_line_error(_run(bin_dir, "train", str(ds), "--out", str(run), env=env),
                           "'tensorflow' backend", "tensorflow is not installed", "'pairgen[train]'",
                           "KERAS_BACKEND=jax")
    jax_env = _env(tmp, KERAS_BACKEND="jax")
    _assert_one_line_error(_run(bin_dir, "train", str(ds), "--out", str(run), "--reader", "tfdata", env=jax_env),
                           "needs tensorflow", "'pairgen[tf]'", "--reader numpy")
    assert not run.exists()
    res = _run(bin_dir, "train", str(ds), "--out", str(run), "--model", "small-cnn", "--width", "4",
               "--embedding-dim", "8", "--epochs", "1", "--batch-size", "8", "--json", env=jax_env)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads(res.stdout)
    assert 0.0 <= metrics["pair_accuracy"] <= 1.0 and metrics["dataset"]["fingerprint"]
    config = json.loads((run / "config.json").read_text())
    assert config["environment"]["backend"] == "jax" and "tensorflow" not in config["environment"]
    assert config["train"]["reader"] == "numpy"
    assert all((run / name).stat().st_size > 0 for name in ("model.keras", "curves.png", "roc.png"))
    # train scored the saved run with the functions `pairgen evaluate` runs (load_run, evaluate_scores).
    assert json.loads((run / "metrics.json").read_text()) == metrics
    embeddings = tmp / "embeddings.parquet"
    res = _run(bin_dir, "embed", str(run), str(core["src"]), "--out", str(embeddings), "-q", env=jax_env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == f"wrote 24 embeddings of size 8 to {embeddings}"

    # P x K on JAX: an images dataset of the same source, split config and seed, read by the
    # NumPy P x K reader, then scored on the pairs dataset.
    images, pk_run = tmp / "jax-images", tmp / "jax-pk-run"
    res = _run(bin_dir, "build", "--src", str(core["src"]), "--out", str(images), "--kind", "images",
               *BUILD_FLAGS, env=jax_env)
    assert res.returncode == 0, res.stderr
    res = _run(bin_dir, "train", str(images), "--out", str(pk_run), "--model", "small-cnn", "--width", "4",
               "--embedding-dim", "8", "--epochs", "1", "--loss", "triplet", "--mining", "batch-hard",
               "--classes-per-batch", "3", "--images-per-class", "2", "-q", env=jax_env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((pk_run / "config.json").read_text())["environment"]["backend"] == "jax"
    res = _run(bin_dir, "evaluate", str(pk_run), str(ds), "--json", env=jax_env)
    assert res.returncode == 0, res.stderr[-3000:]
    scores = json.loads(res.stdout)
    assert scores["split_match"] is True and 0.0 <= scores["pair_accuracy"] <= 1.0
