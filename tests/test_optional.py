"""Optional dependencies: the extras in pyproject.toml, the one-line errors, core import hygiene."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import pairgen
from pairgen.errors import MissingDependencyError, PairgenError
from pairgen.extras import EXTRAS, keras_backend, require

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "matplotlib", "ray", "torch")


def _names(requirements: list[str]) -> set[str]:
    """Distribution names of requirement strings like ``"tensorflow>=2.16"``."""
    out = set()
    for req in requirements:
        name = req.split(";")[0].strip()
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        out.add(name.lower())
    return out


def test_pyproject_core_and_extras_match_the_documented_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _names(project["dependencies"])
    assert core == {"numpy", "pandas", "pyarrow", "opencv-python-headless", "click", "tqdm", "crc32c"}
    extras = project["optional-dependencies"]
    for extra, packages in EXTRAS.items():
        assert _names(extras[extra]) == set(packages), extra
    # `make test` installs .[dev]: everything every extra adds, plus the test tools.
    assert set().union(*EXTRAS.values()) <= _names(extras["dev"])


def test_require_names_the_extra_in_one_line() -> None:
    with pytest.raises(MissingDependencyError) as info:
        require("pairgen_absent_module.sub", extra="tf", feature="pairgen.load (tf.data)", instead="use load_numpy")
    message = str(info.value)
    assert message == ("pairgen.load (tf.data) needs pairgen_absent_module, which is not installed: "
                       "pip install 'pairgen[tf]', or use load_numpy.")
    assert "\n" not in message
    assert isinstance(info.value, PairgenError) and isinstance(info.value, ImportError)
    assert info.value.__suppress_context__


def test_require_does_not_hide_a_broken_installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An installed package that fails to import one of *its* dependencies is a broken install:
    # the original error (with its traceback) is what the user needs, not "not installed".
    (tmp_path / "pairgen_broken_pkg.py").write_text("import pairgen_missing_dependency_of_it\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="pairgen_missing_dependency_of_it") as info:
        require("pairgen_broken_pkg", extra="tf", feature="x")
    assert not isinstance(info.value, PairgenError)


def test_require_returns_the_module() -> None:
    assert require("json", extra="tf", feature="x") is json


def test_keras_backend_follows_env_then_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert keras_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    assert keras_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert keras_backend() == "torch"


def _core_modules() -> list[str]:
    """Every pairgen module the core uses: all but the tf.data loaders, the PyTorch dataset and the trainer."""
    names = [m.name for m in pkgutil.walk_packages(pairgen.__path__, "pairgen.")]
    optional = ("pairgen.reading.tfdata", "pairgen.reading.pk_tf", "pairgen.reading.torch", "pairgen.torch",
                "pairgen.__main__")
    core = sorted(n for n in names if n not in optional and not n.startswith("pairgen.train."))
    return core + ["pairgen.train", "pairgen.train.config"]


def test_core_modules_never_import_heavy_optional_packages() -> None:
    modules = _core_modules()
    assert {"pairgen.cli", "pairgen.cli.datasets", "pairgen.cli.training", "pairgen.writing.builder", "pairgen.reading.arrays",
            "pairgen.tools.preview", "pairgen.tools.verify", "pairgen.tools.inspection",
            "pairgen.reading.streaming"} <= set(modules)
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []


def test_public_api_exports_the_error() -> None:
    assert pairgen.MissingDependencyError is MissingDependencyError
