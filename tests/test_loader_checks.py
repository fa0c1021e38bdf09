"""Loaders check what they read: shard record counts, the image spec and the format version.

Each case damages a real built dataset the way a careless edit or a broken copy would, and
asserts that ``pairgen.load`` (over a full epoch), ``pairgen.load_numpy`` and ``pairgen
verify`` fail with one line naming the shard or the card, while an intact dataset loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import copy_dataset, image_tree

from pairgen.cli import main
from pairgen.codec.tfrecord import iter_records
from pairgen.dataset.card import FORMAT_VERSION
from pairgen.errors import DatasetError
from pairgen.reading.arrays import load_numpy
from pairgen.reading.checks import dataset_errors
from pairgen.spec.config import BuildConfig
from pairgen.tools.verify import verify
from pairgen.writing.builder import build
from pairgen.writing.shards import ShardFile

tf = pytest.importorskip("tensorflow")

from pairgen.reading.tfdata import load, load_arrays  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("checks")
    src = image_tree(base, classes=4, per_class=20, size=28, channels=1)
    out = {}
    for name, extra in (("raw", {}), ("png", {"image.encoding": "png"}), ("gzip", {"shards.compression": "gzip"})):
        config = BuildConfig().override({
            "source.path": str(src), "image.size": [28, 28], "image.channels": 1, "sample.positives_per_image": 2,
            "sample.negatives_per_image": 2, "shards.records_per_shard": 100, "build.workers": 1,
            "build.quiet": True, **extra})
        build(config, base / name)
        out[name] = base / name
    return out


def _card(path: Path) -> dict:
    return json.loads((path / "dataset.json").read_text())


def _write_card(path: Path, card: dict) -> None:
    (path / "dataset.json").write_text(json.dumps(card, indent=2))


def _epoch(path: Path, **kwargs) -> int:
    return sum(int(label.shape[0]) for _, label in load(path, "train", batch_size=32, **kwargs))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def _drop_last_record(path: Path, compression: str) -> None:
    """Rewrite a shard without its last record, cleanly at a record boundary."""
    records = list(iter_records(path, compression=compression))
    with ShardFile(path, gzipped=compression == "gzip") as shard:
        shard.extend(records[:-1])


@pytest.mark.parametrize("name", ["raw", "png", "gzip"])
def test_intact_datasets_load_every_record(built, name: str) -> None:
    total = _card(built[name])["splits"]["train"]["records"]
    assert len(_card(built[name])["shards"]["train"]) == 3
    assert _epoch(built[name]) == _epoch(built[name], shuffle=True, seed=0) == total
    assert len(load_numpy(built[name], "train")["record_id"]) == total
    assert verify(built[name]).ok


@pytest.mark.parametrize("name", ["raw", "gzip"])
def test_shard_truncated_at_a_record_boundary_fails_loaders_and_verify(built, name: str, tmp_path: Path) -> None:
    path = copy_dataset(built, name, tmp_path)
    entry = _card(path)["shards"]["train"][1]
    _drop_last_record(path / entry["path"], _card(path)["compression"])
    want = f"shard '{path / entry['path']}' holds {entry['records'] - 1} records, dataset.json says {entry['records']}"
    for read in (lambda: _epoch(path), lambda: load_numpy(path, "train"), lambda: load_arrays(path, "train")):
        with pytest.raises(DatasetError) as exc:
            read()
        assert want in _one_line(exc)
    report = verify(path)
    assert not report.ok and any(p.file == entry["path"] and p.kind == "count" for p in report.problems)
    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 1 and f"{entry['path']}: count: holds {entry['records'] - 1:,} records" in result.output


@pytest.mark.parametrize("delta", [1, -1])
@pytest.mark.parametrize("shuffle", [False, True])
def test_card_count_that_differs_from_the_shard_fails_the_epoch(built, tmp_path: Path, delta: int,
                                                                 shuffle: bool) -> None:
    """Same bytes, another count in the card: only counting the records during the epoch sees it."""
    path = copy_dataset(built, "raw", tmp_path)
    card = _card(path)
    entry = card["shards"]["train"][2]
    held = entry["records"]
    entry["records"] += delta
    card["shards"]["train"][2] = entry
    _write_card(path, card)
    want = f"shard '{path / entry['path']}' holds {held} records, dataset.json says {held + delta}"
    with pytest.raises(tf.errors.OpError, match="expected to contain"):
        _epoch(path, shuffle=shuffle, seed=0)
    with pytest.raises(DatasetError) as exc, dataset_errors(path):
        _epoch(path, shuffle=shuffle, seed=0)
    assert want in _one_line(exc)
    with pytest.raises(DatasetError) as exc:
        load_numpy(path, "train")
    assert want in _one_line(exc)
    with pytest.raises(DatasetError) as exc:
        load_arrays(path, "train")
    assert want in _one_line(exc)


def test_trainer_turns_a_count_failure_into_one_line(built, tmp_path: Path) -> None:
    path = copy_dataset(built, "raw", tmp_path)
    card = _card(path)
    card["shards"]["train"][-1]["records"] += 1  # the last: no later shard starts elsewhere
    _write_card(path, card)
    result = CliRunner().invoke(main, ["train", str(path), "--out", str(tmp_path / "run"), "--epochs", "1",
                                       "--width", "4", "--embedding-dim", "8", "--quiet"])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: shard '") and "dataset.json says" in last and result.exception is not None


@pytest.mark.parametrize("name", ["raw", "png"])
def test_image_spec_edited_to_another_shape_of_the_same_size_fails(built, name: str, tmp_path: Path) -> None:
    path = copy_dataset(built, name, tmp_path)
    card = _card(path)
    card["image"].update(height=14, width=56)
    _write_card(path, card)
    for read in (lambda: load(path, "train"), lambda: load_numpy(path, "train")):
        with pytest.raises(DatasetError) as exc:
            read()
        assert "says images are 14x56x1" in _one_line(exc) and "28x28x1" in str(exc.value)
    report = verify(path)
    assert any(p.file == "dataset.json" and p.kind == "invalid" and "14x56x1" in p.detail for p in report.problems)


def test_png_records_that_decode_to_another_shape_fail_even_with_a_consistent_card(built, tmp_path: Path) -> None:
    path = copy_dataset(built, "png", tmp_path)
    card = _card(path)
    card["image"].update(height=14, width=56)
    card["config"]["image"]["size"] = [14, 56]
    _write_card(path, card)
    for read in (lambda: load(path, "train"), lambda: load_numpy(path, "train")):
        with pytest.raises(DatasetError) as exc:
            read()
        assert "does not match the image spec 14x56x1 png" in _one_line(exc) and "record 0" in str(exc.value)
    problems = verify(path).problems
    assert any(p.kind == "mismatch" and "image spec" in p.detail for p in problems)
    assert any(p.file == "dataset.json" and "fingerprint" in p.detail for p in problems)


def test_raw_records_of_another_size_than_the_card_fail(built, tmp_path: Path) -> None:
    path = copy_dataset(built, "raw", tmp_path)
    card = _card(path)
    card["image"].update(height=14, width=14)
    card["config"]["image"]["size"] = [14, 14]
    _write_card(path, card)
    for read in (lambda: load(path, "train"), lambda: load_numpy(path, "train")):
        with pytest.raises(DatasetError) as exc:
            read()
        assert "raw record image has 784 bytes" in _one_line(exc)
    assert any(p.kind == "mismatch" for p in verify(path).problems)


def test_newer_format_version_fails_loaders_and_verify(built, tmp_path: Path) -> None:
    path = copy_dataset(built, "raw", tmp_path)
    card = _card(path)
    card["format_version"] = FORMAT_VERSION + 1
    _write_card(path, card)
    for read in (lambda: load(path, "train"), lambda: load_numpy(path, "train"), lambda: verify(path)):
        with pytest.raises(DatasetError) as exc:
            read()
        assert f"format_version {FORMAT_VERSION + 1}, newer than pairgen" in _one_line(exc)
    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "upgrade pairgen" in result.output


def test_shards_listed_out_of_order_fail_the_loaders(built, tmp_path: Path) -> None:
    path = copy_dataset(built, "raw", tmp_path)
    card = _card(path)
    shards = card["shards"]["train"]
    shards[0], shards[1] = shards[1], shards[0]
    _write_card(path, card)
    for read in (lambda: load(path, "train"), lambda: load_numpy(path, "train")):
        with pytest.raises(DatasetError) as exc:
            read()
        assert f"shard '{path / shards[0]['path']}' starts with record_id" in _one_line(exc)
