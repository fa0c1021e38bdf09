"""Shard files tied to their place, damaged shards named by every reader, and runs that fail cleanly.

Real datasets built from OpenCV images, damaged as a careless user would: a train shard and a
val shard of the same size exchanged with ``mv``, or one byte flipped inside a record. Every
reader (``pairgen.load``, ``load_arrays``, ``load_numpy``, ``stream``, the P x K readers,
``pairgen.torch``, ``load_classes``, ``verify`` and ``pairgen train``) must stop with one line
naming the shard and a fix, and a failed training run must leave no run folder behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import copy_dataset, image_tree

import pairgen
from pairgen.cli import main
from pairgen.codec.tfrecord import FirstFrame, frame, index_file, iter_records
from pairgen.dataset.card import FIRST_RECORD, first_record_digest
from pairgen.errors import DatasetError
from pairgen.reading.checks import dataset_errors
from pairgen.reading.pk import pk_batches
from pairgen.spec.config import BuildConfig
from pairgen.tools.verify import verify
from pairgen.writing.builder import build

tf = pytest.importorskip("tensorflow")

from pairgen.reading.pk_tf import load_classes  # noqa: E402
from pairgen.reading.tfdata import load, load_arrays  # noqa: E402

P_K = {"classes_per_batch": 2, "images_per_class": 2}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Images and pairs datasets whose train and val splits have shards of 10 records and equal sizes."""
    base = tmp_path_factory.mktemp("ties")
    src = image_tree(base, classes=4, per_class=10, size=28, channels=1)
    out = {}
    for name, extra in (("images", {"kind": "images"}), ("pairs", {"kind": "pairs"}),
                        ("pairs-gzip", {"kind": "pairs", "shards.compression": "gzip"})):
        config = BuildConfig().override({
            "source.path": str(src), "image.size": [28, 28], "image.channels": 1,
            "split.fractions": {"train": 0.5, "val": 0.5}, "sample.positives_per_image": 1,
            "sample.negatives_per_image": 1, "shards.records_per_shard": 10, "build.workers": 1,
            "build.quiet": True, **extra})
        build(config, base / name)
        out[name] = base / name
    return out


def _shard(path: Path, split: str, index: int) -> Path:
    card = json.loads((path / "dataset.json").read_text())
    return path / card["shards"][split][index]["path"]


def _exchange(path: Path, index: int = 1, *, same_size: bool = True) -> tuple[Path, Path]:
    """``mv`` train shard ``index`` and val shard ``index`` into each other's place."""
    a, b = _shard(path, "train", index), _shard(path, "val", index)
    assert (a.stat().st_size == b.stat().st_size) == same_size  # equal: the case the size check cannot see
    tmp = a.with_name("x")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    return a, b


def _flip(shard: Path, record: int = 5, compression: str = "none") -> None:
    """Flip one byte inside the data of ``record`` (not the first: the loaders read that one at open)."""
    if compression == "gzip":
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
    else:
        offsets = index_file(shard, 100)[0]
        data = bytearray(shard.read_bytes())
        data[int(offsets[record]) + 12 + 100] ^= 0xFF
    shard.write_bytes(bytes(data))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def _count(batches) -> int:
    return sum(1 for _ in batches)


def _torch_stream(path: Path) -> int:
    torch_api = pytest.importorskip("pairgen.torch")
    return _count(torch_api.StreamDataset(path, "train", batch_size=4))


def _torch_pk(path: Path) -> int:
    torch_api = pytest.importorskip("pairgen.torch")
    records = torch_api.ImageRecords(path, "train")
    return sum(len(records.__getitems__(b)["image"]) for b in torch_api.PKBatchSampler(path, "train", **P_K))


def _in_dataset_errors(fn: Callable[[Path], Any]) -> Callable[[Path], Any]:
    def wrapped(path: Path) -> Any:
        with dataset_errors(path):
            return fn(path)
    return wrapped


READERS: dict[str, Callable[[Path], Any]] = {
    "load_numpy": lambda p: pairgen.load_numpy(p, "train"),
    "stream": lambda p: _count(pairgen.stream(p, "train", batch_size=4)),
    "torch.StreamDataset": _torch_stream,
    "load": lambda p: _count(load(p, "train", batch_size=4)),
    "load_arrays": lambda p: load_arrays(p, "train"),
    "pk_batches": lambda p: _count(pk_batches(p, "train", **P_K)),
    "torch.PKBatchSampler": _torch_pk,
    "load_classes": _in_dataset_errors(lambda p: _count(load_classes(p, "train", **P_K))),
}
PK_ONLY = {"pk_batches", "torch.PKBatchSampler", "load_classes"}


# --------------------------------------------------------------------------- case 2: exchanged shards


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_a_train_shard_exchanged_with_a_val_shard(built, tmp_path, reader: str) -> None:
    path = copy_dataset(built, "images", tmp_path)
    train_shard, _ = _exchange(path)
    with pytest.raises(DatasetError) as info:
        READERS[reader](path)
    text = _one_line(info)
    assert f"shard '{train_shard}' holds the records of shard 'shards/val-00001-of-00002.tfrecord'" in text
    assert "move each file back to its own name or rebuild the dataset" in text and "--overwrite" in text


@pytest.mark.parametrize("name", ["pairs", "pairs-gzip"])
@pytest.mark.parametrize("reader", sorted(set(READERS) - PK_ONLY))
def test_exchanged_pair_shards_are_refused(built, tmp_path, name: str, reader: str) -> None:
    path = copy_dataset(built, name, tmp_path)
    _exchange(path, index=0, same_size=name == "pairs")  # both start at record_id 0: only the tie tells them apart
    with pytest.raises(DatasetError, match=r"holds the records of shard 'shards/val-00000-of-00004"):
        READERS[reader](path)


def test_verify_names_the_exchanged_shards(built, tmp_path) -> None:
    path = copy_dataset(built, "images", tmp_path)
    _exchange(path)
    problems = {(p.file, p.kind): p.detail for p in verify(path).problems}
    assert problems[("shards/train-00001-of-00002.tfrecord", "exchanged")].startswith(
        "holds the records of shard 'shards/val-00001-of-00002.tfrecord'")
    assert problems[("shards/val-00001-of-00002.tfrecord", "exchanged")].startswith(
        "holds the records of shard 'shards/train-00001-of-00002.tfrecord'")
    res = CliRunner().invoke(main, ["verify", str(path)])
    assert res.exit_code != 0 and "exchanged" in res.output


def test_preview_refuses_exchanged_shards(built, tmp_path) -> None:
    from pairgen.tools.preview import preview

    path = copy_dataset(built, "images", tmp_path)
    _exchange(path)
    with pytest.raises(DatasetError, match="holds the records of shard 'shards/val-00001"):
        preview(path, out=tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_a_shard_from_another_dataset_is_refused(built, tmp_path) -> None:
    path = copy_dataset(built, "images", tmp_path)
    shutil.copy(_shard(built["pairs"], "train", 1), _shard(path, "train", 1))
    with pytest.raises(DatasetError, match="holds records of another shard or dataset.*restore the file"):
        pairgen.load_numpy(path, "train")


def test_a_card_without_first_record_still_loads(built, tmp_path) -> None:
    """Datasets built before the tie have no first_record: they open and read as before."""
    path = copy_dataset(built, "images", tmp_path)
    card = json.loads((path / "dataset.json").read_text())
    for entries in card["shards"].values():
        for entry in entries:
            del entry[FIRST_RECORD]
    (path / "dataset.json").write_text(json.dumps(card))
    assert len(pairgen.load_numpy(path, "train")["image"]) == card["splits"]["train"]["records"]
    assert verify(path).ok


@pytest.mark.parametrize("name", ["images", "pairs-gzip"])
def test_first_record_is_the_digest_of_each_shards_first_record(built, name: str) -> None:
    card = json.loads((built[name] / "dataset.json").read_text())
    entries = [e for split in card["shards"].values() for e in split]
    for entry in entries:
        first = next(iter_records(built[name] / entry["path"], compression=card["compression"]))
        assert entry[FIRST_RECORD] == first_record_digest(first)
    assert len({e[FIRST_RECORD] for e in entries}) == len(entries)


@pytest.mark.parametrize("block", [1, 5, 13, 1 << 20])
def test_first_frame_is_found_in_blocks_of_any_size(block: int) -> None:
    records = [b"", b"x" * 300, b"y"] if block == 1 else [b"a" * 40, b"b" * 7]
    data = b"".join(frame(r) for r in records)
    first = FirstFrame()
    for start in range(0, len(data), block):
        first.feed(data[start:start + block])
    assert first.data == records[0]


# --------------------------------------------------------------------------- case 8: damage named by every reader


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_names_a_damaged_shard_and_the_fix(built, tmp_path, reader: str) -> None:
    path = copy_dataset(built, "images", tmp_path)
    shard = _shard(path, "train", 1)
    _flip(shard)
    with pytest.raises(DatasetError) as info:
        _in_dataset_errors(READERS[reader])(path)
    text = _one_line(info)
    assert text.startswith(f"shard '{shard}' is damaged (record 5 ")
    assert "restore the file from a copy or rebuild the dataset (`pairgen build ... --out" in text


@pytest.mark.parametrize("name, compression", [("pairs", "none"), ("pairs-gzip", "gzip")])
def test_load_names_a_flipped_byte_inside_dataset_errors(built, tmp_path, name: str, compression: str) -> None:
    path = copy_dataset(built, name, tmp_path)
    shard = _shard(path, "train", 2)
    _flip(shard, compression=compression)
    with pytest.raises(DatasetError) as info, dataset_errors(path):
        for _ in load(path, "train", batch_size=4, shuffle=True, seed=0):
            pass
    assert _one_line(info).startswith(f"shard '{shard}' is damaged (")


def test_errors_not_caused_by_the_data_pass_through(built) -> None:
    with pytest.raises(ZeroDivisionError), dataset_errors(built["pairs"]):
        for _ in load(built["pairs"], "train", batch_size=4):
            1 / 0  # noqa: B018


# --------------------------------------------------------------------------- case 4: training fails cleanly


TRAIN = ["--epochs", "1", "--width", "4", "--embedding-dim", "8", "--classes-per-batch", "2",
         "--images-per-class", "2", "--quiet"]


def _train(path: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["train", str(path), "--out", str(out), *TRAIN, *extra])


def _left_beside(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir())


def test_training_on_exchanged_shards_fails_in_one_line_and_leaves_no_run(built, tmp_path) -> None:
    path = copy_dataset(built, "images", tmp_path)
    train_shard, _ = _exchange(path)
    runs = tmp_path / "runs"
    res = _train(path, runs / "new" / "r1")
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"shard '{train_shard}' holds the records of shard" in lines[0]
    assert not runs.exists()  # nor the parent folders the run would have created


@pytest.mark.parametrize("reader", ["tfdata", "numpy"])
def test_a_shard_damaged_mid_training_ends_in_one_line_and_keeps_the_old_run(built, tmp_path, reader: str) -> None:
    path = copy_dataset(built, "images", tmp_path)
    shard = _shard(path, "train", 1)
    _flip(shard)  # found only when P x K batches read that record, inside model.fit
    out = tmp_path / "runs" / "r1"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text("{\"old\": true}\n")  # an earlier run that --overwrite would replace
    res = _train(path, out, "--reader", reader, "--overwrite")
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert lines[0].startswith(f"Error: shard '{shard}' is damaged (record 5 ")
    assert _left_beside(out) == ["r1"] and sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    assert (out / "metrics.json").read_text() == "{\"old\": true}\n"
