"""The click layer: help, version, scan/build output, one-line errors, no TF at start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import pairgen
from pairgen.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_commands_and_version() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("scan", "build"):
        assert name in result.output
    version = runner.invoke(main, ["--version"])
    assert version.exit_code == 0 and pairgen.__version__ in version.output


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_with_example(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and f"pairgen {name}" in result.output


def test_help_does_not_import_tensorflow_or_pandas() -> None:
    code = ("import sys; from pairgen.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('tensorflow', 'pandas', 'cv2', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_scan_summary_json_and_catalog(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=5)
    (src / "class_00" / "notes.txt").write_text("not an image")
    runner = CliRunner()
    text = runner.invoke(main, ["scan", str(src)])
    assert text.exit_code == 0, text.output
    assert "15 in 3 classes" in text.output and "not an image" in text.output
    res = runner.invoke(main, ["scan", str(src), "--json", "--out", str(tmp_path / "cat.parquet")])
    summary = json.loads(res.output)
    assert summary["images"] == 15 and summary["classes"] == 3 and summary["skipped"] == 1
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "cat.parquet")) == 15


def test_build_with_flags_only(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=8)
    out = tmp_path / "ds"
    args = ["build", "--src", str(src), "--out", str(out), "--image-size", "16x16", "--splits",
            "train=0.5,val=0.25,test=0.25", "--strategy", "balanced", "--num-records", "40",
            "--manifest-only", "--seed", "5", "--quiet", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    card = json.loads(res.output)
    assert card["config"]["seed"] == 5 and card["config"]["sample"]["strategy"] == "balanced"
    assert sum(s["records"] for s in card["splits"].values()) == 40
    assert (out / "dataset.json").exists()


def test_flags_override_pipeline(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["build", str(ROOT / "pipelines" / "mnist-demo.toml"), "--out",
                                    str(tmp_path / "d"), "--manifest-only", "--strategy", "per-class",
                                    "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    card = json.loads(res.output)
    assert card["config"]["sample"]["strategy"] == "per-class" and card["name"] == "mnist-demo"
    assert card["splits"]["train"]["records"] == 10 * 2 * 10


@pytest.mark.parametrize(
    "args, message",
    [
        (["scan", "no/such/dir"], "source 'no/such/dir' does not exist"),
        (["build", "--out", "x"], "give a PIPELINE file or --src"),
        (["build", "--src", ".", "--out", "x", "--splits", "train=0.5"], "must sum to 1"),
        (["build", "--src", ".", "--out", "x", "--image-size", "big"], "image.size must look like 'HxW'"),
        (["build", "--src", ".", "--out", "x", "--kind", "triplets", "--strategy", "exhaustive"],
         "--strategy must be one of"),
    ],
)
def test_errors_are_one_line_without_traceback(args: list[str], message: str) -> None:
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1


def test_console_script_error_exit_code(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("pairgen")
    res = subprocess.run([str(exe), "build", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().startswith("Error: source") and "Traceback" not in res.stderr


def test_build_help_lists_the_strategies_of_the_sampler_registries() -> None:
    from pairgen.sampling import IMAGE_SAMPLERS, PAIR_SAMPLERS, TRIPLET_SAMPLERS

    result = CliRunner().invoke(main, ["build", "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if "--strategy" in row)
    assert (f"pairs: {', '.join(PAIR_SAMPLERS)}; triplets: {', '.join(TRIPLET_SAMPLERS)}; "
            f"images: {', '.join(IMAGE_SAMPLERS)}.") in line
