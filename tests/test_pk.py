"""Class-balanced P x K batches: the schedule, the record-offset reader, load_classes and the torch sampler.

The images dataset (raw 16x16 gray, classes of 20, 13, 9, 25, 3 and 16 images) has its train
split rewritten into four shards of about 45%, 10%, 30% and 15% of its records, in the
builder's record order (classes interleaved). Every batch is checked against the manifest
and against ``load_numpy``'s pixels, not only against its labels.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import image_tree, reshard

from pairgen.errors import ConfigError, DatasetError
from pairgen.reading.arrays import load_numpy
from pairgen.reading.pk import PKSplit, batches_per_epoch, consumer_batches, epoch_rng, pk_batches, pk_schedule
from pairgen.spec.config import BuildConfig
from pairgen.writing.builder import build

ROOT = Path(__file__).resolve().parents[1]
COUNTS = [20, 13, 9, 25, 3, 16]
P, K = 3, 4


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pk")
    src = image_tree(base, classes=6, per_class=COUNTS, size=16, channels=1)
    common = {"source.path": str(src), "image.size": [16, 16], "image.channels": 1, "build.workers": 1,
              "build.quiet": True, "seed": 3}
    build(BuildConfig().override({**common, "kind": "images"}), base / "one")
    build(BuildConfig().override({**common, "kind": "images", "image.encoding": "png",
                                  "shards.records_per_shard": 11}), base / "png")
    even = image_tree(base, classes=4, per_class=20, size=16, channels=1, name="even")
    build(BuildConfig().override({**common, "source.path": str(even), "kind": "pairs"}), base / "pairs")
    build(BuildConfig().override({**common, "kind": "images", "shards.compression": "gzip"}), base / "gzip")
    images = reshard(base / "one", base / "images", "train", (0.45, 0.10, 0.30, 0.15))
    return {"images": images, "png": base / "png", "pairs": base / "pairs", "gzip": base / "gzip"}


def _manifest(path: Path, split: str = "train") -> pd.DataFrame:
    return pd.read_parquet(path / "manifests" / f"{split}.parquet").set_index("record_id").sort_index()


def _split(path: Path, **kw) -> PKSplit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PKSplit(path, "train", **{"classes_per_batch": P, "images_per_class": K, **kw})


def _assert_pk(classes: np.ndarray, records: np.ndarray, p: int, k: int) -> None:
    """Every row: p runs of k distinct records, each run one class, the p classes distinct."""
    runs = classes.reshape(len(classes), p, k)
    assert (runs == runs[:, :, :1]).all()
    assert all(len(set(row)) == p for row in runs[:, :, 0].tolist())
    assert all(len(set(run)) == k for run in records.reshape(-1, k).tolist())


# -- the schedule alone -------------------------------------------------------------------------

@pytest.mark.parametrize("counts,p,k", [([20, 13, 9, 25, 3, 16], 3, 4), ([5] * 12, 4, 2),
                                        ([100, 4, 4, 4], 2, 4), ([7, 7, 7], 3, 3)])
def test_schedule_batches_and_epoch(counts: list[int], p: int, k: int) -> None:
    classes = np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts))
    sched = pk_schedule(classes, classes_per_batch=p, images_per_class=k, rng=epoch_rng(0, 0))
    assert sched.shape == (batches_per_epoch(np.bincount(classes), p, k), p * k)
    _assert_pk(classes[sched], sched, p, k)
    eligible = np.flatnonzero(np.bincount(classes)[classes] >= k)
    seen = np.bincount(sched.ravel(), minlength=len(classes))
    assert (seen[eligible] >= 1).all()  # every image of every usable class at least once per epoch
    assert (seen[np.setdiff1d(np.arange(len(classes)), eligible)] == 0).all()  # small classes left out
    groups = -(-np.bincount(classes)[np.bincount(classes) >= k] // k)
    assert len(sched) == max(-(-groups.sum() // p), groups.max())


def test_schedule_repeats_only_top_ups_and_fills() -> None:
    """With class sizes divisible by K and G divisible by P, an epoch is a permutation of the records."""
    classes = np.repeat(np.arange(6), 8)
    sched = pk_schedule(classes, classes_per_batch=3, images_per_class=4, rng=epoch_rng(5, 0))
    assert sorted(sched.ravel().tolist()) == list(range(48))


def test_schedule_same_seed_same_batches_other_seed_or_epoch_other() -> None:
    classes = np.repeat(np.arange(8), 10)
    kw = {"classes_per_batch": 4, "images_per_class": 3}
    first = pk_schedule(classes, rng=epoch_rng(1, 0), **kw)
    np.testing.assert_array_equal(first, pk_schedule(classes, rng=epoch_rng(1, 0), **kw))
    assert not np.array_equal(first, pk_schedule(classes, rng=epoch_rng(2, 0), **kw))
    assert not np.array_equal(first, pk_schedule(classes, rng=epoch_rng(1, 1), **kw))


def test_schedule_needs_p_classes_with_k_images() -> None:
    classes = np.repeat(np.arange(4), [5, 5, 1, 1])
    with pytest.raises(ConfigError, match="needs 3 classes with at least 2 images; the split has 2"):
        pk_schedule(classes, classes_per_batch=3, images_per_class=2, rng=epoch_rng(0, 0))


@pytest.mark.parametrize("n,world,pad", [(10, 3, True), (10, 3, False), (9, 3, True), (2, 4, True)])
def test_consumer_batches_equal_and_complete(n: int, world: int, pad: bool) -> None:
    parts = [consumer_batches(n, rank=r, world_size=world, pad=pad) for r in range(world)]
    assert len({len(x) for x in parts}) == 1
    union = np.concatenate(parts)
    if pad:
        assert set(union.tolist()) == set(range(n))
        assert len(union) - len(set(union.tolist())) == len(union) - n  # only the padding repeats
    else:
        assert sorted(union.tolist()) == list(range(n // world * world))


# -- reading a real images dataset -------------------------------------------------------------

def test_split_has_several_uneven_shards(data: dict[str, Path]) -> None:
    from pairgen.dataset.card import read_card

    counts = [e["records"] for e in read_card(data["images"]).shards["train"]]
    assert len(counts) == 4 and len(set(counts)) == 4


@pytest.mark.parametrize("name", ["images", "png"])
def test_batches_match_manifest_and_pixels(data: dict[str, Path], name: str) -> None:
    path = data[name]
    manifest = _manifest(path)
    want = load_numpy(path, "train")
    with pytest.warns(UserWarning, match="1 of 6 classes have fewer than 4 images"):
        batches = list(pk_batches(path, "train", classes_per_batch=P, images_per_class=K, seed=0))
    assert len(batches) == _split(path).n_batches
    for batch in batches:
        rid = batch["record_id"]
        assert batch["image"].shape == (P * K, 16, 16, 1) and batch["image"].dtype == np.float32
        np.testing.assert_array_equal(batch["class"], manifest["class_id"].to_numpy()[rid])
        np.testing.assert_array_equal(batch["id"], manifest["image_id"].to_numpy()[rid])
        np.testing.assert_array_equal(batch["image"], want["image"][rid])
        _assert_pk(batch["class"][None], rid[None], P, K)
    seen = np.concatenate([b["record_id"] for b in batches])
    small = manifest.index[manifest["class_id"].map(manifest["class_id"].value_counts()) < K]
    assert set(seen.tolist()) == set(manifest.index) - set(small)


def test_seed_and_epoch_decide_the_batches(data: dict[str, Path]) -> None:
    split = _split(data["images"], seed=7)
    ids = lambda s, e: np.stack([b["record_id"] for b in _split(data["images"], seed=s).batches(e)])  # noqa: E731
    np.testing.assert_array_equal(ids(7, 0), split.schedule(0))
    np.testing.assert_array_equal(ids(7, 0), ids(7, 0))
    assert not np.array_equal(ids(7, 0), ids(8, 0))
    assert not np.array_equal(ids(7, 0), ids(7, 1))


def test_bad_arguments_are_one_line_errors(data: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="needs 6 classes with at least 4 images"):
        _split(data["images"], classes_per_batch=6)
    with pytest.raises(ConfigError, match="images_per_class must be an integer >= 2"):
        _split(data["images"], images_per_class=1)
    with pytest.raises(DatasetError, match="holds pairs; class-balanced batches need an images dataset"):
        _split(data["pairs"])
    with pytest.raises(DatasetError, match="gzip shards, which cannot be read by record offset"):
        _split(data["gzip"])
    with pytest.raises(ConfigError, match="rank must be in"):
        pk_batches(data["images"], classes_per_batch=P, images_per_class=K, rank=2, world_size=2)


def test_damaged_record_is_named(data: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from pairgen.dataset.card import read_card

    path = tmp_path / "bad"
    shutil.copytree(data["images"], path)
    split = _split(path)
    second = int(np.flatnonzero(split.index.shard == 1)[1])  # the loaders check each shard's first record
    shard = path / read_card(path).shards["train"][1]["path"]
    raw = bytearray(shard.read_bytes())
    raw[int(split.index.offset[second]) + 40] ^= 0xFF  # inside the record's data
    shard.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=rf"record 1 \(record_id {second}\) fails its data CRC"):
        _split(path).read(np.array([0, second]))


def test_numpy_and_torch_paths_never_import_tensorflow(data: dict[str, Path]) -> None:
    code = (
        "import sys, warnings, torch; warnings.simplefilter('ignore')\n"
        "import pairgen, pairgen.torch\n"
        f"b = next(pairgen.pk_batches({str(data['images'])!r}, classes_per_batch=3, images_per_class=4))\n"
        f"s = pairgen.torch.PKBatchSampler({str(data['images'])!r}, classes_per_batch=3, images_per_class=4)\n"
        f"ds = pairgen.torch.ImageRecords({str(data['images'])!r})\n"
        "batch = next(iter(torch.utils.data.DataLoader(ds, batch_sampler=s, collate_fn=pairgen.torch.collate)))\n"
        "assert batch['image'].shape == (12, 16, 16, 1), batch['image'].shape\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# -- tf.data --------------------------------------------------------------------------------------

def test_load_classes_gives_the_schedule(data: dict[str, Path]) -> None:
    pytest.importorskip("tensorflow")
    import pairgen

    path = data["png"]
    split = _split(path, seed=4)
    with pytest.warns(UserWarning):
        ds = pairgen.load_classes(path, "train", classes_per_batch=P, images_per_class=K, seed=4, epochs=2,
                                  with_ids=True)
    got = list(ds.as_numpy_iterator())
    want = [b for e in (0, 1) for b in split.batches(e)]
    assert len(got) == len(want) == 2 * split.n_batches == int(ds.cardinality())
    for (images, classes, ids), batch in zip(got, want):
        np.testing.assert_array_equal(ids["record_id"], batch["record_id"])
        np.testing.assert_array_equal(classes, batch["class"])
        np.testing.assert_array_equal(ids["id"], batch["id"])
        np.testing.assert_allclose(images, batch["image"])
        _assert_pk(classes[None], ids["record_id"][None], P, K)


def test_load_classes_errors(data: dict[str, Path]) -> None:
    pytest.importorskip("tensorflow")
    import pairgen

    with pytest.raises(DatasetError, match="holds pairs"):
        pairgen.load_classes(data["pairs"], classes_per_batch=2, images_per_class=2)
    with pytest.raises(ConfigError, match="classes_per_batch must be an integer >= 2"):
        pairgen.load_classes(data["images"], classes_per_batch=1, images_per_class=2)
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1 or None"):
        pairgen.load_classes(data["images"], classes_per_batch=2, images_per_class=2, epochs=0)


# -- torch -----------------------------------------------------------------------------------------

def test_torch_sampler_with_workers_and_ranks(data: dict[str, Path]) -> None:
    torch = pytest.importorskip("torch")
    import pairgen.reading.torch as pt

    path = data["images"]
    want = load_numpy(path, "train")
    schedule = _split(path, seed=2).schedule(1)
    ranks = []
    for rank in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = pt.PKBatchSampler(path, "train", classes_per_batch=P, images_per_class=K, seed=2,
                                        rank=rank, world_size=2)
        sampler.set_epoch(1)
        loader = torch.utils.data.DataLoader(pt.ImageRecords(path, "train"), batch_sampler=sampler,
                                             num_workers=2, collate_fn=pt.collate)
        batches = list(loader)
        assert len(batches) == len(sampler) == -(-len(schedule) // 2)
        for batch in batches:
            rid = batch["record_id"].numpy()
            np.testing.assert_array_equal(batch["image"].numpy(), want["image"][rid])
            _assert_pk(batch["class"].numpy()[None], rid[None], P, K)
        ranks.append([tuple(b["record_id"].tolist()) for b in batches])
    expected = [tuple(row) for row in schedule.tolist()]
    assert ranks[0] == expected[0::2] and ranks[1] == (expected[1::2] + expected[:1])[:len(ranks[0])]
    assert set(ranks[0]) | set(ranks[1]) == set(expected)  # complete; disjoint but for the padding batch
    assert len(set(ranks[0]) & set(ranks[1])) == (len(ranks[0]) * 2 - len(expected))


def test_torch_records_work_in_spawned_workers(data: dict[str, Path]) -> None:
    """Spawned DataLoader workers (the default on macOS and Windows) get the dataset by pickling:
    it must reopen its shards there and give the same batches as forked workers."""
    torch = pytest.importorskip("torch")
    import pairgen.reading.torch as pt

    path = data["images"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = pt.PKBatchSampler(path, "train", classes_per_batch=P, images_per_class=K, seed=3)
    want = load_numpy(path, "train")
    loader = torch.utils.data.DataLoader(pt.ImageRecords(path, "train"), batch_sampler=sampler, num_workers=2,
                                         collate_fn=pt.collate, multiprocessing_context="spawn")
    batches = list(loader)
    assert [b["record_id"].tolist() for b in batches] == [list(map(int, ids)) for ids in sampler]
    for batch in batches:
        np.testing.assert_array_equal(batch["image"].numpy(), want["image"][batch["record_id"].numpy()])


def test_more_ranks_than_batches_without_padding_is_refused(data: dict[str, Path]) -> None:
    """Issue 20, case 7: dropping the uneven end must not leave every rank an empty epoch."""
    n = PKSplit(data["images"], "train", classes_per_batch=P, images_per_class=K, seed=0).n_batches
    world = n + 1
    with pytest.raises(ConfigError, match=f"an epoch of {n} P x K batch.*world_size={world}.*0 batches"):
        pk_batches(data["images"], "train", classes_per_batch=P, images_per_class=K, rank=0, world_size=world,
                   pad=False)
    from pairgen.torch import PKBatchSampler

    with pytest.raises(ConfigError, match="gives every consumer 0 batches"):
        PKBatchSampler(data["images"], "train", classes_per_batch=P, images_per_class=K, rank=1, world_size=world,
                       drop_last=True)
    # Padding (the default) gives every rank a batch; as many ranks as batches works without it.
    assert len(list(pk_batches(data["images"], "train", classes_per_batch=P, images_per_class=K, rank=world - 1,
                               world_size=world))) == 1
    assert len(list(pk_batches(data["images"], "train", classes_per_batch=P, images_per_class=K, rank=n - 1,
                               world_size=n, pad=False))) == 1
