"""pairgen.stream on real built datasets whose splits have several shards of uneven sizes.

The pairs dataset (raw 16x16 gray) has its train split rewritten into four shards of about
45%, 10%, 30% and 15% of its records; the triplets dataset (PNG) keeps the builder's shards
(``records_per_shard``). Every test compares what ``stream`` yields with ``load_numpy``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import image_tree, reshard

import pairgen
from pairgen.dataset.card import read_json, write_card
from pairgen.errors import ConfigError, DatasetError, PairgenError
from pairgen.reading.arrays import load_numpy
from pairgen.reading.streaming import num_records, stream
from pairgen.spec.config import BuildConfig
from pairgen.writing.builder import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("stream")
    src = image_tree(base, classes=8, per_class=30, size=16, channels=1)
    common = {"source.path": str(src), "image.size": [16, 16], "image.channels": 1,
              "sample.negatives_per_image": 2, "build.workers": 1, "build.quiet": True}
    build(BuildConfig().override({**common, "kind": "pairs", "sample.positives_per_image": 2}), base / "even")
    build(BuildConfig().override({**common, "kind": "triplets", "sample.positives_per_image": 2,
                                  "image.encoding": "png", "shards.records_per_shard": 90}), base / "triplets")
    pairs = reshard(base / "even", base / "pairs", "train", (0.45, 0.10, 0.30, 0.15))
    return {"pairs": pairs, "triplets": base / "triplets"}


def _concat(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _by_record_id(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(arrays["record_id"], kind="stable")
    return {k: v[order] for k, v in arrays.items()}


def test_splits_have_several_uneven_shards(data: dict[str, Path]) -> None:
    pairs = [e["records"] for e in read_json(data["pairs"])["shards"]["train"]]
    triplets = [e["records"] for e in read_json(data["triplets"])["shards"]["train"]]
    assert len(pairs) == 4 and max(pairs) > 3 * min(pairs)
    assert 3 <= len(triplets) <= 5


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
@pytest.mark.parametrize("batch_size", [1, 37, 100_000])
@pytest.mark.parametrize("normalize", [True, False])
def test_stream_equals_load_numpy(data: dict[str, Path], kind: str, batch_size: int, normalize: bool) -> None:
    want = load_numpy(data[kind], "train", normalize=normalize)
    batches = list(pairgen.stream(data[kind], "train", batch_size=batch_size, normalize=normalize))
    n = len(want["record_id"])
    assert [len(b["record_id"]) for b in batches] == [batch_size] * (n // batch_size) + \
        ([n % batch_size] if n % batch_size else [])
    _assert_same(_concat(batches), want)


def test_drop_remainder_drops_only_the_last_short_batch(data: dict[str, Path]) -> None:
    want = load_numpy(data["pairs"], "val")
    batches = list(stream(data["pairs"], "val", batch_size=16, drop_remainder=True))
    n = len(want["label"]) // 16 * 16
    assert n and all(len(b["label"]) == 16 for b in batches)
    _assert_same(_concat(batches), {k: v[:n] for k, v in want.items()})


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
@pytest.mark.parametrize("buffer", [0, 50, 10_000])
def test_shuffle_is_a_seeded_permutation_reshuffled_per_epoch(data: dict[str, Path], kind: str, buffer: int) -> None:
    want = load_numpy(data[kind], "train")

    def run(seed: int, epoch: int) -> dict[str, np.ndarray]:
        return _concat(list(stream(data[kind], "train", batch_size=64, shuffle=True, seed=seed, epoch=epoch,
                                   shuffle_buffer=buffer)))

    first = run(0, 0)
    _assert_same(_by_record_id(first), want)
    assert not np.array_equal(first["record_id"], want["record_id"])
    _assert_same(run(0, 0), first)
    assert not np.array_equal(run(1, 0)["record_id"], first["record_id"])
    again = run(0, 1)
    assert not np.array_equal(again["record_id"], first["record_id"])
    _assert_same(_by_record_id(again), want)
    _assert_same(run(0, 1), again)


def test_a_small_buffer_mixes_records_of_different_shards(data: dict[str, Path]) -> None:
    card = read_json(data["pairs"])
    edges = np.cumsum([e["records"] for e in card["shards"]["train"]])
    got = _concat(list(stream(data["pairs"], "train", batch_size=64, shuffle=True, seed=3, shuffle_buffer=50)))
    shard_of = np.searchsorted(edges, got["record_id"], side="right")
    # Records of a shard come in a block of its size unless the buffer carries them over.
    assert (np.diff(shard_of) != 0).sum() > len(edges)


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
@pytest.mark.parametrize("consumers", [2, 3, 4, 7])
@pytest.mark.parametrize("shuffle", [False, True])
def test_consumers_read_every_record_exactly_once(data: dict[str, Path], kind: str, consumers: int,
                                                  shuffle: bool) -> None:
    want = load_numpy(data[kind], "train")
    for epoch in (0, 1):
        parts = []
        for index in range(consumers):
            batches = list(stream(data[kind], "train", batch_size=32, shuffle=shuffle, seed=5, epoch=epoch,
                                  shard_index=index, num_shards=consumers, shuffle_buffer=40))
            got = _concat(batches) if batches else {k: v[:0] for k, v in want.items()}
            assert len(got["record_id"]) == num_records(data[kind], "train", shard_index=index, num_shards=consumers,
                                                       shuffle=shuffle, seed=5, epoch=epoch)
            parts.append(got)
        assert all(len(p["record_id"]) for p in parts)
        union = _concat(parts)
        assert len(np.unique(union["record_id"])) == len(union["record_id"]) == len(want["record_id"])
        _assert_same(_by_record_id(union), want)


def test_more_consumers_than_shards_split_records_contiguously(data: dict[str, Path]) -> None:
    want = load_numpy(data["pairs"], "train")["record_id"]
    got = [_concat(list(stream(data["pairs"], "train", batch_size=1000, shard_index=i, num_shards=9)))["record_id"]
           for i in range(9)]
    n = len(want)
    for i, ids in enumerate(got):
        np.testing.assert_array_equal(ids, want[i * n // 9:(i + 1) * n // 9])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"batch_size": 8, "shuffle": True}, "shuffle=True needs a seed"),
    ({"batch_size": 8, "shard_index": 2, "num_shards": 2}, "shard_index must be an integer >= 0 and < 2"),
    ({"batch_size": 8, "num_shards": 0}, "num_shards must be"),
    ({"batch_size": 8, "shuffle": True, "seed": -1}, "seed must be"),
    ({"batch_size": 8, "epoch": -1}, "epoch must be"),
    ({"batch_size": 8, "shuffle_buffer": 2.5}, "shuffle_buffer must be"),
])
def test_bad_arguments_are_one_line_config_errors(data: dict[str, Path], kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        stream(data["pairs"], "train", **kwargs)
    assert "\n" not in str(info.value)


def test_missing_split_and_resized_shard_fail_before_reading(data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="has no split 'nope'"):
        stream(data["pairs"], "nope", batch_size=8)
    ds = shutil.copytree(data["pairs"], tmp_path / "ds")
    shard = ds / read_json(ds)["shards"]["train"][2]["path"]
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=str(shard.name)):
        stream(ds, "train", batch_size=8)


def test_a_corrupted_record_is_named_while_streaming(data: dict[str, Path], tmp_path: Path) -> None:
    ds = shutil.copytree(data["pairs"], tmp_path / "ds")
    shard = ds / read_json(ds)["shards"]["train"][1]["path"]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, a record's checksum no longer matches
    shard.write_bytes(bytes(raw))
    batches = stream(ds, "train", batch_size=8)
    with pytest.raises(PairgenError, match=shard.name):
        for _ in batches:
            pass


def test_a_shard_with_fewer_records_than_the_card_is_named(data: dict[str, Path], tmp_path: Path) -> None:
    ds = shutil.copytree(data["pairs"], tmp_path / "ds")
    card = read_json(ds)
    entry = card["shards"]["train"][3]
    entry["records"] += 1
    write_card(ds, card)
    with pytest.raises(DatasetError, match=f"holds {entry['records'] - 1} records, dataset.json says"):
        list(stream(ds, "train", batch_size=8))


def test_stream_never_imports_tensorflow_or_torch(data: dict[str, Path]) -> None:
    code = ("import sys, json, pairgen\n"
            f"n = sum(len(b['label']) for b in pairgen.stream({str(data['pairs'])!r}, 'train', batch_size=64, "
            "shuffle=True, seed=0, num_shards=2, shard_index=1))\n"
            "print(json.dumps([n, sorted(m for m in ('tensorflow', 'torch', 'pairgen.torch') if m in sys.modules)]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    n, heavy = json.loads(res.stdout)
    assert n == num_records(data["pairs"], "train", shard_index=1, num_shards=2, shuffle=True, seed=0) > 0
    assert heavy == []


def test_import_pairgen_torch_without_torch_names_the_extra() -> None:
    code = "import sys\nsys.modules['torch'] = None\nimport pairgen.reading.torch\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last == ("pairgen.errors.MissingDependencyError: pairgen.torch needs torch, which is not installed: "
                    "pip install 'pairgen[torch]', or use pairgen.stream (NumPy batches, no PyTorch).")
    assert "During handling" not in res.stderr


@pytest.mark.parametrize("consumers", [3, 7])
@pytest.mark.parametrize("shuffle", [False, True])
def test_equalize_gives_every_consumer_the_smallest_count(data: dict[str, Path], consumers: int,
                                                          shuffle: bool) -> None:
    want = _by_record_id(load_numpy(data["pairs"], "train"))
    plain = [num_records(data["pairs"], "train", shard_index=i, num_shards=consumers, shuffle=shuffle, seed=2)
             for i in range(consumers)]
    assert len(set(plain)) > 1  # uneven shards: the consumers' counts differ
    parts = [_concat(list(stream(data["pairs"], "train", batch_size=16, shuffle=shuffle, seed=2, shard_index=i,
                                 num_shards=consumers, equalize=True, drop_remainder=True)))
             for i in range(consumers)]
    least = min(plain) // 16 * 16
    assert [len(p["record_id"]) for p in parts] == [least] * consumers
    union = _concat(parts)
    assert len(np.unique(union["record_id"])) == len(union["record_id"])
    got = _by_record_id(union)
    rows = np.searchsorted(want["record_id"], got["record_id"])
    _assert_same(got, {k: v[rows] for k, v in want.items()})


def test_an_epoch_emptied_by_drop_remainder_is_refused(data: dict[str, Path]) -> None:
    """Issue 20, case 7: more consumers than full batches with equalize + drop_remainder yields nothing."""
    total = num_records(data["pairs"], "val")
    consumers = total // 16 + 1  # every consumer gets fewer than 16 records
    with pytest.raises(ConfigError, match=r"reads \d+ record\(s\) of split 'val'.*fewer than batch_size=16"):
        stream(data["pairs"], "val", batch_size=16, shard_index=0, num_shards=consumers, equalize=True,
               drop_remainder=True)
    # Without drop_remainder the short batch is kept.
    got = list(stream(data["pairs"], "val", batch_size=16, shard_index=0, num_shards=consumers, equalize=True))
    assert len(got) == 1 and 0 < len(got[0]["label"]) < 16
