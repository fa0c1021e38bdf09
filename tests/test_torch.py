"""pairgen.torch.StreamDataset through a real torch.utils.data.DataLoader with worker processes.

The dataset is built from a cv2-written tree with the train split in four shards of uneven
size (``records_per_shard``); ranks are simulated by making one dataset per rank, and one test
takes the defaults from a real (single-process, gloo) torch.distributed group.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import image_tree

from pairgen.dataset.card import read_json
from pairgen.errors import ConfigError, DatasetError
from pairgen.reading.arrays import load_numpy
from pairgen.spec.config import BuildConfig
from pairgen.writing.builder import build

torch = pytest.importorskip("torch")

from pairgen.reading.torch import StreamDataset  # noqa: E402


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("torchds")
    src = image_tree(base, classes=6, per_class=30, size=12, channels=3)
    build(BuildConfig().override({
        "source.path": str(src), "kind": "pairs", "image.size": [12, 12], "image.channels": 3,
        "sample.positives_per_image": 2, "sample.negatives_per_image": 2, "shards.records_per_shard": 170,
        "build.workers": 1, "build.quiet": True}), base / "ds")
    return base / "ds"


def _epoch(dataset: StreamDataset, workers: int) -> list[dict[str, torch.Tensor]]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
    return list(loader)


def _arrays(batches: list[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    return {k: torch.cat([b[k] for b in batches]).numpy() for k in batches[0]}


def _assert_same_records(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    order = np.argsort(got["record_id"])
    assert len(np.unique(got["record_id"])) == len(got["record_id"]) == len(want["record_id"])
    for key, value in want.items():
        np.testing.assert_array_equal(got[key][order], value, err_msg=key)


def test_split_has_four_shards(ds: Path) -> None:
    assert len(read_json(ds)["shards"]["train"]) == 4


def test_dataloader_with_two_workers_equals_load_numpy(ds: Path) -> None:
    want = load_numpy(ds, "train")
    batches = _epoch(StreamDataset(ds, "train", batch_size=50), workers=2)
    assert all(isinstance(v, torch.Tensor) for b in batches for v in b.values())
    assert batches[0]["a"].dtype == torch.float32 and batches[0]["label"].dtype == torch.int64
    assert all(len(b["label"]) <= 50 for b in batches)
    _assert_same_records(_arrays(batches), want)


@pytest.mark.parametrize("workers", [0, 2])
def test_two_ranks_of_two_workers_read_every_record_once_per_epoch(ds: Path, workers: int) -> None:
    want = load_numpy(ds, "train")
    ranks = [StreamDataset(ds, "train", batch_size=32, shuffle=True, seed=7, rank=r, world_size=2,
                           shuffle_buffer=64) for r in range(2)]
    orders = []
    for epoch in (0, 1):
        per_rank = []
        for dataset in ranks:
            dataset.set_epoch(epoch)
            per_rank.append(_arrays(_epoch(dataset, workers)))
        assert all(len(part["record_id"]) for part in per_rank)
        union = {k: np.concatenate([p[k] for p in per_rank]) for k in per_rank[0]}
        _assert_same_records(union, want)
        orders.append(union["record_id"])
    assert not np.array_equal(orders[0], orders[1])  # set_epoch reshuffles


def test_same_seed_and_epoch_give_the_same_batches(ds: Path) -> None:
    def run(seed: int) -> np.ndarray:
        dataset = StreamDataset(ds, "train", batch_size=32, shuffle=True, seed=seed, rank=1, world_size=2)
        dataset.set_epoch(3)
        return _arrays(_epoch(dataset, 2))["record_id"]

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_rank_and_world_size_default_from_torch_distributed(ds: Path, tmp_path: Path) -> None:
    assert (StreamDataset(ds, batch_size=8).rank, StreamDataset(ds, batch_size=8).world_size) == (0, 1)
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        dataset = StreamDataset(ds, "train", batch_size=64)
        assert (dataset.rank, dataset.world_size) == (dist.get_rank(), dist.get_world_size()) == (0, 1)
        _assert_same_records(_arrays(_epoch(dataset, 0)), load_numpy(ds, "train"))
    finally:
        dist.destroy_process_group()


def test_bad_arguments_fail_in_the_main_process(ds: Path) -> None:
    with pytest.raises(ConfigError, match="shuffle=True needs a seed"):
        StreamDataset(ds, batch_size=8, shuffle=True)
    with pytest.raises(ConfigError, match="shard_index must be an integer >= 0 and < 2"):
        StreamDataset(ds, batch_size=8, rank=2, world_size=2)
    with pytest.raises(DatasetError, match="has no split 'nope'"):
        StreamDataset(ds, "nope", batch_size=8)
    with pytest.raises(ConfigError, match="epoch must be"):
        StreamDataset(ds, batch_size=8).set_epoch(-1)


def test_equalize_gives_every_rank_the_same_number_of_full_batches(ds: Path) -> None:
    # 3 ranks, 4 shards: one rank reads two shards, so without equalize the ranks' steps differ.
    def steps(equalize: bool) -> list[int]:
        out = []
        for rank in range(3):
            dataset = StreamDataset(ds, "train", batch_size=16, shuffle=True, seed=1, rank=rank, world_size=3,
                                    equalize=equalize, drop_remainder=True)
            batches = _epoch(dataset, 0)
            assert all(len(b["label"]) == 16 for b in batches)
            out.append(len(batches))
        return out

    assert len(set(steps(False))) > 1
    equal = steps(True)
    assert len(set(equal)) == 1 and equal[0] > 0
