"""The package's shape: public names, layering, cycles, one owner per constant, no private imports."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pairgen

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pairgen"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
OPTIONAL = ("tfdata", "pk_tf", "torch", "__main__")  # need an extra (or start the CLI)


def _sources() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def test_public_names_are_the_documented_objects_after_every_submodule_is_imported() -> None:
    for info in pkgutil.walk_packages(pairgen.__path__, "pairgen."):
        if info.name.rsplit(".", 1)[-1] in OPTIONAL or info.name.startswith("pairgen.train."):
            continue
        importlib.import_module(info.name)
    for name in pairgen.__all__:
        if name == "__version__":
            continue
        value = getattr(pairgen, name)
        assert not isinstance(value, type(pairgen)), f"pairgen.{name} is a module, not the documented object"
        home = importlib.import_module(pairgen._EXPORTS[name])
        assert value is getattr(home, name)
    assert callable(pairgen.fingerprint) and callable(pairgen.scan) and callable(pairgen.build)


def test_at_most_a_handful_of_modules_at_the_top() -> None:
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "errors.py", "extras.py", "torch.py"]
    # pairgen.torch is the documented home of the PyTorch readers: a one-line re-export
    body = [ln for ln in (PKG / "torch.py").read_text().splitlines() if ln and not ln.startswith(('"""', "#"))]
    assert body == ["from pairgen.reading.torch import *  # noqa: F403"]


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pairgen"):
            found += [f"{path.relative_to(ROOT)}: from {node.module} import {a.name}"
                      for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    return found


def test_no_module_imports_another_modules_underscore_names() -> None:
    assert [line for p in _sources() for line in _private_imports(p)] == []


@pytest.mark.parametrize("pattern, owner", [
    (r"0xA282EAD8", "codec/tfrecord.py"),
    (r'"dataset\.json"', "dataset/layout.py"),
    (r'"catalog\.parquet"', "dataset/layout.py"),
    (r'"skipped\.parquet"', "dataset/layout.py"),
    (r'"manifests"', "dataset/layout.py"),
    (r'manifests/\{|/\{split\}\.parquet', "dataset/layout.py"),
    (r'"\.pairgen-temp"', "dataset/layout.py"),
    (r'(?<![=!])= "versions"|/ "versions"', "dataset/layout.py"),
    (r'(?<![=!])= "latest"|/ "latest"', "dataset/layout.py"),
    (r'"\.tfrecord', "dataset/layout.py"),
    (r'-of-\{', "dataset/layout.py"),
    (r'f"\.\{out\.name\}', "dataset/layout.py"),
])
def test_each_constant_and_file_name_is_defined_in_one_module(pattern: str, owner: str) -> None:
    where = [str(p.relative_to(PKG)) for p in _sources() if re.search(pattern, p.read_text())]
    assert where == [owner]


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is a dev dependency")
def test_lint_imports_fails_on_a_layering_violation_and_on_a_cycle(tmp_path: Path) -> None:
    shutil.copytree(PKG, tmp_path / "pairgen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def lint() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, env=env, text=True,
                              capture_output=True)

    assert lint().returncode == 0
    config = tmp_path / "pairgen" / "spec" / "config.py"
    original = config.read_text()
    # an import inside a function, as the old config -> sampling cycle was written
    config.write_text(original + "\n\ndef _late() -> None:\n    from pairgen.reading import arrays  # noqa: F401\n")
    result = lint()
    assert result.returncode != 0 and "pairgen.spec is not allowed to import pairgen.reading" in result.stdout
    config.write_text(original)
    versions = tmp_path / "pairgen" / "dataset" / "versions.py"
    versions.write_text(versions.read_text() + "\n\ndef _late() -> None:\n    from pairgen.dataset import outdir  # noqa: F401\n")
    result = lint()
    assert result.returncode != 0 and "No cycles are allowed in pairgen.dataset" in result.stdout


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted``, then follow attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_module_path_the_readmes_and_docs_name_exists() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    text = "".join(p.read_text() for p in pages)
    names = sorted(set(re.findall(r"\bpairgen(?:\.[A-Za-z_]\w*)+", text)))
    assert "pairgen.torch.StreamDataset" in names
    missing = []
    for name in names:
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert missing == []
    paths = sorted(set(re.findall(r"\bpairgen/[\w/]+\.py\b", text)))
    assert [p for p in paths if not (ROOT / p).is_file()] == []


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_every_pairgen_name_a_benchmark_imports_exists(script: str) -> None:
    tree = ast.parse((ROOT / "benchmarks" / script).read_text())
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pairgen":
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)
                        and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert missing == []
