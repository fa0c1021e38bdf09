"""pairgen verify: intact datasets pass; each kind of damage is caught and named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import image_tree

from pairgen.cli import main
from pairgen.codec.tfrecord import TFRecordError, iter_records
from pairgen.dataset import tables as mf
from pairgen.dataset.card import read_json as read_card
from pairgen.dataset.card import write_card
from pairgen.errors import DatasetError
from pairgen.spec.config import BuildConfig
from pairgen.tools.verify import verify
from pairgen.writing.builder import build

SHARD = "shards/train-00000-of-00002.tfrecord"


def _config(src: Path, **overrides) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [16, 16], "split.fractions": {"test": 0.5, "train": 0.5},
            "shards.records_per_shard": 12, "build.workers": 1, "build.quiet": True}
    base.update(overrides)
    return BuildConfig().override(base)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("verify")
    src = image_tree(base, classes=3, per_class=6, size=16)
    build(_config(src), base / "ds")
    return src, base / "ds"


@pytest.fixture
def ds(built, tmp_path: Path) -> Path:
    """A private copy of the built dataset that a test may damage."""
    return Path(shutil.copytree(built[1], tmp_path / "ds"))


def _problems(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in verify(path).problems:
        out.setdefault(p.file, []).append(p.kind)
    return out


def test_intact_dataset_is_ok(built) -> None:
    card = read_card(built[1])
    report = verify(built[1])
    assert report.ok, [str(p) for p in report.problems]
    assert report.records == sum(c["records"] for c in card["splits"].values())
    assert report.shards == sum(len(v) for v in card["shards"].values()) >= 3
    assert report.summary().startswith("OK ") and card["fingerprint"][:12] in report.summary()


def test_flipped_byte_in_a_shard_is_named(ds: Path) -> None:
    path = ds / SHARD
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert _problems(ds)[SHARD][0] == "changed"
    assert set(_problems(ds)) == {SHARD}


def test_truncated_shard_is_named(ds: Path) -> None:
    path = ds / SHARD
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    report = verify(ds)
    kinds = [p.kind for p in report.problems if p.file == SHARD]
    assert kinds == ["truncated", "truncated"]  # fewer bytes than the card says; ends inside a record
    assert any("ends inside record" in p.detail for p in report.problems)


def test_missing_and_extra_files_are_named(ds: Path) -> None:
    (ds / "manifests" / "test.parquet").unlink()
    (ds / "shards" / "stray.tfrecord").write_bytes(b"")
    found = _problems(ds)
    assert found["manifests/test.parquet"] == ["missing"]
    assert found["shards/stray.tfrecord"] == ["extra"]


def _rewrite_manifest(ds: Path, split: str, edit) -> None:
    """Change a manifest and re-hash it in the card, so only the content checks can object."""
    rel = f"manifests/{split}.parquet"
    table = mf.read_table(ds / rel)
    edit(table)
    card = read_card(ds)
    card["files"][rel] = mf.write_table(table, ds / rel, mf.PAIR_COLUMNS)
    write_card(ds, card)


def test_label_that_breaks_the_guarantees_is_named(ds: Path) -> None:
    def flip_first_positive(table):
        i = table.index[table["label"] == 1][0]
        table.loc[i, "label"] = 0

    _rewrite_manifest(ds, "train", flip_first_positive)
    problems = [p for p in verify(ds).problems if p.file == "manifests/train.parquet"]
    assert any(p.kind == "invalid" and "labelled negative (0) within one class" in p.detail for p in problems)
    assert any(p.kind == "count" for p in problems)
    assert any(p.kind == "mismatch" and "label" in p.detail for p in verify(ds).problems if p.file == SHARD)


def test_manifest_id_missing_from_catalog_is_named(ds: Path) -> None:
    def bad_id(table):
        table.loc[0, "b_id"] = 10_000

    _rewrite_manifest(ds, "train", bad_id)
    details = [p.detail for p in verify(ds).problems if p.file == "manifests/train.parquet"]
    assert any("b_id that is not in catalog.parquet" in d for d in details)


def test_edited_card_is_caught(ds: Path) -> None:
    card = read_card(ds)
    card["config"]["seed"] = 99
    card["shards"]["train"][0]["records"] += 1
    write_card(ds, card)
    found = _problems(ds)
    assert "changed" in found["dataset.json"]  # fingerprint no longer matches config + catalog
    assert "count" in found[SHARD]


def test_gzip_shards_are_read_and_truncation_caught(tmp_path: Path, built) -> None:
    out = tmp_path / "gz"
    card = build(_config(built[0], **{"shards.compression": "gzip"}), out)
    assert verify(out).ok
    path = out / card["shards"]["test"][-1]["path"]
    path.write_bytes(path.read_bytes()[:-40])
    assert [p.kind for p in verify(out).problems if p.file.endswith(path.name)][0] == "truncated"
    with pytest.raises(TFRecordError):
        list(iter_records(path, compression="gzip"))


def test_rebuild_check_matches_and_detects_changed_source(tmp_path: Path, built) -> None:
    src, ds = built
    assert verify(ds, rebuild_src=src).ok
    other = Path(shutil.copytree(src, tmp_path / "moved-src"))
    (other / "class_02" / "img_005.png").unlink()
    problems = verify(ds, rebuild_src=other).problems
    assert problems[0].file == "dataset.json" and problems[0].kind == "rebuild"
    assert "catalog.parquet" in {p.file for p in problems}


def test_rebuild_check_with_fractions_not_in_name_order(tmp_path: Path, built) -> None:
    out = tmp_path / "ds"
    build(_config(built[0], **{"split.fractions": {"train": 0.5, "test": 0.5}}), out)
    assert verify(out, rebuild_src=built[0], quick=True).ok


def test_not_a_dataset_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        verify(tmp_path / "nothing")


def test_cli_exit_codes_and_output(ds: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", str(ds)])
    assert ok.exit_code == 0 and ok.output.count("\n") == 1 and ok.output.startswith("OK ")
    (ds / SHARD).write_bytes((ds / SHARD).read_bytes()[:100])
    bad = runner.invoke(main, ["verify", str(ds)])
    assert bad.exit_code == 1
    assert f"{SHARD}: truncated" in bad.output and bad.output.splitlines()[-1].startswith("FAILED")
    as_json = json.loads(runner.invoke(main, ["verify", str(ds), "--json"]).output)
    assert as_json["ok"] is False and as_json["problems"][0]["file"] == SHARD
    missing = runner.invoke(main, ["verify", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
