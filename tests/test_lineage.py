"""Versions at one --out path: parent fingerprints, --keep-versions, latest, path@ref."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pairgen.cli import main
from pairgen.dataset.card import read_json as read_card
from pairgen.dataset.card import write_card
from pairgen.dataset.versions import list_versions, resolve, split_ref
from pairgen.errors import DatasetError
from pairgen.spec.config import BuildConfig
from pairgen.tools.inspection import inspect
from pairgen.tools.verify import verify
from pairgen.writing.builder import build


def _config(src: Path, **overrides) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [16, 16], "split.fractions": {"test": 0.5, "train": 0.5},
            "build.workers": 1, "build.quiet": True, "build.manifest_only": True, "build.overwrite": True}
    base.update(overrides)
    return BuildConfig().override(base)


@pytest.fixture
def three(tmp_path: Path, make_image_tree) -> tuple[Path, list[dict]]:
    """Three kept builds at one path: 1.0.0 seed 0, 1.0.0 seed 1, 1.1.0 seed 2."""
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    out = tmp_path / "ds"
    cards = [build(_config(src, seed=seed, version=version, **{"build.keep_versions": True}), out)
             for seed, version in ((0, "1.0.0"), (1, "1.0.0"), (2, "1.1.0"))]
    return out, cards


def test_keep_versions_layout_parents_and_latest(three) -> None:
    out, (first, second, third) = three
    assert [c["parent"] for c in (first, second, third)] == [None, first["fingerprint"], second["fingerprint"]]
    assert read_card(out)["fingerprint"] == third["fingerprint"]  # the newest lives at <out> itself
    kept = sorted(p.name for p in (out / "versions").iterdir())
    assert kept == sorted([f"1.0.0-{first['fingerprint'][:12]}", f"1.0.0-{second['fingerprint'][:12]}"])
    for card in (first, second):
        folder = out / "versions" / f"1.0.0-{card['fingerprint'][:12]}"
        assert read_card(folder)["fingerprint"] == card["fingerprint"]
        assert not (folder / "versions").exists() and not (folder / "latest").exists()
        assert verify(folder).ok
    assert (out / "latest").read_text().strip() == f"1.1.0-{third['fingerprint'][:12]}"
    assert [v["fingerprint"] for v in list_versions(out)] == [c["fingerprint"] for c in (third, second, first)]
    assert verify(out).ok


def test_resolve_version_fingerprint_prefix_and_latest(three) -> None:
    out, (first, second, third) = three
    assert resolve(f"{out}@latest") == out == resolve(out)
    assert resolve(f"{out}@1.1.0") == out
    assert resolve(f"{out}@1.0.0") == out / "versions" / f"1.0.0-{second['fingerprint'][:12]}"  # newest 1.0.0
    assert resolve(f"{out}@{first['fingerprint'][:8]}") == out / "versions" / f"1.0.0-{first['fingerprint'][:12]}"
    assert resolve(f"{out}@{third['fingerprint'].upper()[:10]}") == out
    assert inspect(f"{out}@{first['fingerprint'][:8]}")["fingerprint"] == first["fingerprint"]
    assert verify(f"{out}@1.0.0").fingerprint == second["fingerprint"]


def test_resolve_errors_name_the_choices(three) -> None:
    out, (first, _, _) = three
    with pytest.raises(DatasetError, match="no version matches '@2.0.0'; available: 1.1.0@"):
        resolve(f"{out}@2.0.0")
    with pytest.raises(DatasetError, match="neither a version"):
        resolve(f"{out}@not-a-ref")
    twin = out / "versions" / "twin"
    shutil.copytree(out / "versions" / f"1.0.0-{first['fingerprint'][:12]}", twin)
    card = read_card(twin)
    card["fingerprint"] = first["fingerprint"][:8] + "0" * 56
    write_card(twin, card)
    with pytest.raises(DatasetError, match="matches 2 versions"):
        resolve(f"{out}@{first['fingerprint'][:8]}")


def test_without_keep_versions_the_old_dataset_goes_but_parent_stays(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    out = tmp_path / "ds"
    a = build(_config(src, seed=0), out)
    b = build(_config(src, seed=1), out)
    assert b["parent"] == a["fingerprint"]
    assert sorted(p.name for p in out.iterdir()) == ["catalog.parquet", "dataset.json", "manifests", "skipped.parquet"]
    assert not list(tmp_path.glob(".ds.*"))  # no partial or old directory left behind


def test_identical_rebuild_is_not_a_new_version(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    out = tmp_path / "ds"
    keep = {"build.keep_versions": True}
    a = build(_config(src, seed=0, **keep), out)
    b = build(_config(src, seed=1, **keep), out)
    c = build(_config(src, seed=1, **keep), out)
    assert c["fingerprint"] == b["fingerprint"] and c["parent"] == a["fingerprint"]
    assert [p.name for p in (out / "versions").iterdir()] == [f"1.0.0-{a['fingerprint'][:12]}"]
    d = build(_config(src, seed=2), out)  # kept versions survive a build without --keep-versions
    assert d["parent"] == b["fingerprint"]
    assert [p.name for p in (out / "versions").iterdir()] == [f"1.0.0-{a['fingerprint'][:12]}"]
    assert (out / "latest").read_text().strip() == f"1.0.0-{d['fingerprint'][:12]}"


def test_split_ref_keeps_existing_paths_with_at(tmp_path: Path) -> None:
    odd = tmp_path / "name@1.0.0"
    odd.mkdir()
    assert split_ref(odd) == (odd, None)
    assert split_ref(tmp_path / "ds@abc123") == (tmp_path / "ds", "abc123")
    assert split_ref("plain/path") == (Path("plain/path"), None)


def test_cli_commands_accept_refs(three) -> None:
    out, (first, _, third) = three
    runner = CliRunner()
    res = runner.invoke(main, ["inspect", f"{out}@{first['fingerprint'][:8]}", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["fingerprint"] == first["fingerprint"]
    text = runner.invoke(main, ["inspect", str(out)]).output
    assert "versions:" in text and first["fingerprint"][:12] in text and "(latest)" in text
    diff = runner.invoke(main, ["diff", f"{out}@1.0.0", f"{out}@latest", "--json"])
    assert diff.exit_code == 1
    assert {c["key"] for c in json.loads(diff.output)["config"]} == {"seed", "version"}
    assert runner.invoke(main, ["verify", f"{out}@{third['fingerprint'][:6]}"]).exit_code == 0


def test_load_and_feature_spec_accept_version_and_fingerprint_refs(tmp_path: Path, make_image_tree) -> None:
    import numpy as np

    import pairgen

    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    out = tmp_path / "ds"
    over = {"build.manifest_only": False, "build.keep_versions": True}
    old = build(_config(src, seed=0, **over), out)
    new = build(_config(src, seed=1, version="2.0.0", kind="triplets", **over), out)

    def labels(ref: str) -> list[float]:
        return [float(y) for _, y in pairgen.load(ref, "train").as_numpy_iterator()]

    by_version, by_prefix = labels(f"{out}@1.0.0"), labels(f"{out}@{old['fingerprint'][:8]}")
    assert by_version == by_prefix and len(by_version) == old["splits"]["train"]["records"]
    assert np.isin(by_version, [0.0, 1.0]).all()
    assert "label" in pairgen.feature_spec(f"{out}@1.0.0")
    assert "anchor/image" in pairgen.feature_spec(f"{out}@{new['fingerprint'][:8]}")
    triplets = list(pairgen.load(f"{out}@latest", "train").as_numpy_iterator())
    assert len(triplets) == new["splits"]["train"]["records"] and len(triplets[0]) == 3
