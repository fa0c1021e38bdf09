"""pairgen inspect and pairgen diff on real builds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import image_tree, random_image, split_folders_tree, write_image

from pairgen.cli import main
from pairgen.dataset import tables as mf
from pairgen.spec.config import BuildConfig
from pairgen.tools.inspection import diff, format_diff, format_inspect, inspect
from pairgen.writing.builder import build


def _config(src: Path, **overrides) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [16, 16], "split.fractions": {"train": 0.5, "test": 0.5},
            "build.workers": 1, "build.quiet": True, "build.manifest_only": True}
    base.update(overrides)
    return BuildConfig().override(base)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    """The same pipeline built with seed 0 (twice, at two paths) and seed 1."""
    base = tmp_path_factory.mktemp("report")
    src = image_tree(base, classes=4, per_class=6, size=16)
    (src / "class_00" / "notes.txt").write_text("not an image")
    out = {"src": src}
    for name, seed in (("seed0", 0), ("seed0-again", 0), ("seed1", 1)):
        build(_config(src, seed=seed), base / name)
        out[name] = base / name
    return out


def test_inspect_reports_identity_splits_classes_and_skips(seeds) -> None:
    info = inspect(seeds["seed0"])
    card = json.loads((seeds["seed0"] / "dataset.json").read_text())
    assert (info["name"], info["version"], info["fingerprint"], info["kind"]) == (
        "dataset", "1.0.0", card["fingerprint"], "pairs")
    assert set(info["splits"]) == {"train", "test"}
    for split, s in info["splits"].items():
        assert s["records"] == s["positives"] + s["negatives"] == card["splits"][split]["records"]
        assert s["positive_fraction"] == pytest.approx(s["positives"] / s["records"], abs=1e-4)
        assert s["class_names"] == ["class_00", "class_01", "class_02", "class_03"]
    assert info["image"] == {"height": 16, "width": 16, "channels": 1, "encoding": "raw"}
    assert info["source"]["skipped_by_reason"] == {"not an image": 1}
    assert info["manifest_only"] and info["shards"]["count"] == 0
    text = format_inspect(info)
    assert card["fingerprint"] in text and "not an image" in text and "class_00" in text


def test_inspect_counts_shards_and_finds_leakage(tmp_path: Path) -> None:
    src = split_folders_tree(tmp_path, splits=("train", "test"), classes=2, per_class=4, size=16)
    shutil.copy(src / "train" / "class_00" / "img_000.png", src / "test" / "class_01" / "img_003.png")
    out = tmp_path / "ds"
    card = build(_config(src, **{"source.layout": "split-folders", "split.by": "folders",
                                 "build.manifest_only": False, "shards.records_per_shard": 5}), out)
    info = inspect(out)
    entries = [e for v in card["shards"].values() for e in v]
    assert info["shards"]["count"] == len(entries) > 2
    assert info["shards"]["bytes"] == sum(e["bytes"] for e in entries)
    assert info["leakage"]["groups"] == 1
    assert info["leakage"]["examples"] == [["test/class_01/img_003.png", "train/class_00/img_000.png"]]
    assert "1 identical-content group(s) across splits" in format_inspect(info)


def test_diff_between_two_seeds(seeds) -> None:
    d = diff(seeds["seed0"], seeds["seed1"])
    assert not d["identical"]
    assert d["config"] == [{"key": "seed", "a": 0, "b": 1, "hashed": True}]
    assert d["images"]["added"] == d["images"]["removed"] == d["images"]["changed"] == 0
    assert d["images"]["unchanged"] == 24
    for split, r in d["records"].items():
        a_records = d["counts"][split]["records"]["a"]
        assert r["common"] + r["only_a"] == a_records
        assert r["common"] + r["only_b"] == d["counts"][split]["records"]["b"]
    assert sum(r["only_a"] for r in d["records"].values()) > 0
    assert "seed: 0 -> 1" in format_diff(d)


def test_diff_of_identical_builds(seeds) -> None:
    d = diff(seeds["seed0"], seeds["seed0-again"])
    assert d["identical"] and d["config"] == []
    assert all(r["only_a"] == r["only_b"] == 0 and r["common"] > 0 for r in d["records"].values())
    assert all(v["delta"] == 0 for counts in d["counts"].values() for v in counts.values())


def test_diff_names_added_removed_and_changed_images_and_classes(seeds, tmp_path: Path) -> None:
    src = Path(shutil.copytree(seeds["src"], tmp_path / "src"))
    (src / "class_03" / "img_000.png").unlink()
    rng = np.random.default_rng(7)
    write_image(src / "class_01" / "img_000.png", random_image(rng, 16))  # new bytes, same path
    for j in range(6):
        write_image(src / "class_09" / f"img_{j:03d}.png", random_image(rng, 16))
    build(_config(src), tmp_path / "b")
    d = diff(seeds["seed0"], tmp_path / "b")
    im = d["images"]
    assert (im["added"], im["removed"], im["changed"]) == (6, 1, 1)
    assert im["examples"]["removed"] == ["class_03/img_000.png"]
    assert im["examples"]["changed"] == ["class_01/img_000.png"]
    assert all(ch["added"] == ["class_09"] and ch["removed"] == [] for ch in d["classes"].values())
    assert d["counts"]["train"]["classes"]["delta"] == 1
    assert d["config"][0]["key"] == "source.path" and not d["config"][0]["hashed"]


def test_records_are_compared_by_image_content(seeds, tmp_path: Path) -> None:
    """Changing one image's bytes moves exactly the records that use it out of "common"."""
    src = Path(shutil.copytree(seeds["src"], tmp_path / "src"))
    write_image(src / "class_01" / "img_000.png", random_image(np.random.default_rng(3), 16))
    build(_config(src), tmp_path / "b")
    d = diff(seeds["seed0"], tmp_path / "b")
    catalog = mf.read_table(seeds["seed0"] / "catalog.parquet").set_index("path")
    image_id, split = catalog.loc["class_01/img_000.png", ["image_id", "split"]]
    table = mf.read_table(seeds["seed0"] / "manifests" / f"{split}.parquet")
    using = int(((table["a_id"] == image_id) | (table["b_id"] == image_id)).sum())
    assert using > 0
    assert d["records"][split] == {"common": len(table) - using, "only_a": using, "only_b": using}
    assert all(r["only_a"] == 0 for s, r in d["records"].items() if s != split)


def test_cli_inspect_and_diff(seeds) -> None:
    runner = CliRunner()
    text = runner.invoke(main, ["inspect", str(seeds["seed0"])])
    assert text.exit_code == 0 and "fingerprint" in text.output and "train" in text.output
    as_json = json.loads(runner.invoke(main, ["inspect", str(seeds["seed0"]), "--json"]).output)
    assert as_json["splits"]["train"]["records"] > 0
    same = runner.invoke(main, ["diff", str(seeds["seed0"]), str(seeds["seed0-again"])])
    assert same.exit_code == 0 and "identical fingerprints" in same.output
    other = runner.invoke(main, ["diff", str(seeds["seed0"]), str(seeds["seed1"]), "--json"])
    assert other.exit_code == 1 and json.loads(other.output)["config"][0]["key"] == "seed"
    broken = runner.invoke(main, ["diff", str(seeds["seed0"]), str(seeds["src"])])
    assert broken.exit_code == 2 and "dataset.json" in broken.output


def test_diff_of_pairs_and_triplets_skips_records(seeds, tmp_path: Path) -> None:
    build(_config(seeds["src"], kind="triplets"), tmp_path / "t")
    d = diff(seeds["seed0"], tmp_path / "t")
    assert not d["identical"] and d["records"] == {}
    assert {"key": "kind", "a": "pairs", "b": "triplets", "hashed": True} in d["config"]
    assert "records are not compared" in format_diff(d)
