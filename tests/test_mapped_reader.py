"""Raw images read from memory-mapped shards: the same records as the per-record reader, checked as strictly.

A real images dataset (raw 12x12 RGB from OpenCV-made images) has its train split rewritten into
three shards; every read by the mapped path is compared with the per-record path
(``os.pread`` + parse) and with ``load_numpy``.
"""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import image_tree, reshard

import pairgen.reading.mapped as mapped_module
from pairgen.dataset.card import read_card
from pairgen.errors import DatasetError
from pairgen.reading.arrays import load_numpy
from pairgen.reading.pk import PKSplit, pk_batches
from pairgen.reading.recordindex import ImagesSplit
from pairgen.spec.config import BuildConfig
from pairgen.writing.builder import build

P, K = 3, 4


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("mapped")
    src = image_tree(base, classes=5, per_class=[14, 9, 12, 20, 7], size=12, channels=3)
    build(BuildConfig().override({"source.path": str(src), "image.size": [12, 12], "image.channels": 3,
                                  "build.workers": 1, "build.quiet": True, "seed": 5, "kind": "images"}),
          base / "one")
    return reshard(base / "one", base / "images", "train", (0.5, 0.2, 0.3))


def _pread_only(path: Path) -> ImagesSplit:
    split = ImagesSplit(path, "train")
    split.mapped = None  # the per-record reader
    return split


def _copy(raw: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(raw, tmp_path / "copy"))


def test_mapped_reads_equal_the_per_record_reader_and_load_numpy(raw: Path) -> None:
    split = ImagesSplit(raw, "train")
    assert split.mapped is not None and len(split.index.files) == 3
    ids = np.random.default_rng(0).integers(0, len(split.classes), 200)  # every shard, repeats
    for normalize in (False, True):
        got, want = split.read(ids, normalize=normalize), _pread_only(raw).read(ids, normalize=normalize)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].dtype == want[key].dtype
            np.testing.assert_array_equal(got[key], want[key])
    arrays = load_numpy(raw, "train", normalize=False)
    np.testing.assert_array_equal(split.read(ids, normalize=False)["image"], arrays["image"][ids])
    clone = pickle.loads(pickle.dumps(split))  # a DataLoader worker maps the files itself
    np.testing.assert_array_equal(clone.read(ids[:20], normalize=False)["image"], arrays["image"][ids[:20]])


def test_pages_dropped_for_large_splits_give_the_same_batches(raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    want = list(pk_batches(raw, classes_per_batch=P, images_per_class=K, seed=1))
    monkeypatch.setattr(mapped_module, "RESIDENT_BYTES", 1)  # drop the pages after every batch
    got = list(pk_batches(raw, classes_per_batch=P, images_per_class=K, seed=1))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        for key in b:
            np.testing.assert_array_equal(a[key], b[key])


def test_a_shard_rewritten_after_an_open_is_checked_again(raw: Path, tmp_path: Path) -> None:
    path = _copy(raw, tmp_path)
    split = ImagesSplit(path, "train")
    split.read(np.arange(len(split.classes)))  # every CRC checked once for these files
    shard = path / read_card(path).shards["train"][1]["path"]
    rid = int(np.flatnonzero(split.index.shard == 1)[2])
    data = bytearray(shard.read_bytes())
    data[int(split.index.offset[rid]) + 30] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=rf"shard '.*' is damaged \(record 2 \(record_id {rid}\) fails its data CRC"):
        ImagesSplit(path, "train").read(np.array([rid]))


def test_a_shard_cut_short_while_mapped_is_refused_not_a_crash(raw: Path, tmp_path: Path) -> None:
    path = _copy(raw, tmp_path)
    split, mapped = ImagesSplit(path, "train"), ImagesSplit(path, "train")
    last = np.array([len(split.classes) - 1])
    mapped.read(last)  # this one has the shard mapped already
    shard = path / read_card(path).shards["train"][2]["path"]
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    for reader in (split, mapped):
        with pytest.raises(DatasetError, match="changed since it was indexed; run `pairgen verify"):
            reader.read(last)


def test_a_manifest_that_disagrees_is_named_by_the_mapped_reader(raw: Path) -> None:
    split = ImagesSplit(raw, "train")
    split.classes = split.classes.copy()
    split.classes[3] += 1
    with pytest.raises(DatasetError, match="record 3 of split 'train' .* the manifest says record 3"):
        split.read(np.array([1, 3]))
    with pytest.raises(DatasetError, match="record 3 of split 'train' .* the manifest says record 3"):
        split.read_all()  # what load_classes holds in memory is checked as strictly


def test_read_all_equals_load_numpy_and_is_aligned(raw: Path) -> None:
    split = ImagesSplit(raw, "train")
    arrays, want = split.read_all(), load_numpy(raw, "train", normalize=False)
    assert arrays is not None and arrays.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(arrays[key], want[key])
    assert arrays["image"].ctypes.data % mapped_module.ALIGN == 0 and arrays["image"].flags.c_contiguous
    assert split.pixel_bytes == arrays["image"].nbytes
    assert split.mapped is not None and not split.mapped._maps  # every shard's map closed once copied
    assert _pread_only(raw).read_all() is None


def _damage(path: Path, shard_no: int, place: int) -> int:
    """Flip a pixel of record ``place`` of train shard ``shard_no`` (its layout still parses); returns its record id."""
    split = ImagesSplit(path, "train")
    assert split.mapped is not None
    rid = int(np.flatnonzero(split.index.shard == shard_no)[place])
    shard = path / read_card(path).shards["train"][shard_no]["path"]
    data = bytearray(shard.read_bytes())
    data[int(split.mapped.image_offset["image"][rid]) + 5] ^= 0xFF
    shard.write_bytes(bytes(data))
    return rid


def test_a_split_held_in_memory_is_checked_when_it_is_opened(raw: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    import pairgen

    path = _copy(raw, tmp_path)
    rid = _damage(path, 1, 2)  # not a shard's first record (that one is checked against the card's tie)
    assert ImagesSplit(path, "train").mapped is not None  # read from the maps, not record by record
    message = rf"shard '.*' is damaged \(record 2 \(record_id {rid}\) fails its data CRC"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError, match=message):  # before any batch is read
            pairgen.load_classes(path, "train", classes_per_batch=P, images_per_class=K)
    with pytest.raises(DatasetError, match=message):
        pairgen.load(path, "train", batch_size=4)


def test_as_tensor_takes_aligned_arrays_without_a_copy() -> None:
    pytest.importorskip("tensorflow")
    from pairgen.reading.tfdata import as_tensor

    held = mapped_module.aligned_empty((6, 4, 4, 3))
    held[:] = np.arange(held.size, dtype=np.uint8).reshape(held.shape)
    tensor = as_tensor(held)
    held[0, 0, 0, 0] = 200  # the tensor reads the array's own memory
    assert int(tensor[0, 0, 0, 0]) == 200 and tensor.shape == held.shape
    odd = np.arange(101, dtype=np.uint8)[1:]  # one byte off any alignment: copied, not handed over
    np.testing.assert_array_equal(as_tensor(odd).numpy(), odd)
    readonly = np.arange(8, dtype=np.int64)
    readonly.flags.writeable = False
    np.testing.assert_array_equal(as_tensor(readonly).numpy(), readonly)


@pytest.mark.parametrize("held", [True, False])
def test_load_classes_reads_the_mapped_shards_in_the_schedule(raw: Path, held: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorflow")
    import pairgen
    from pairgen.reading import pk_tf

    if not held:
        monkeypatch.setattr(mapped_module, "HELD_BYTES", 0)  # read batch by batch from the maps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = PKSplit(raw, "train", classes_per_batch=P, images_per_class=K, seed=2)
        ds = pairgen.load_classes(raw, "train", classes_per_batch=P, images_per_class=K, seed=2, epochs=2,
                                  with_ids=True, normalize=False)
        forever = pairgen.load_classes(raw, "train", classes_per_batch=P, images_per_class=K, seed=2, epochs=None)
    want = [b for e in (0, 1) for b in split.batches(e, normalize=False)]
    got = list(ds.as_numpy_iterator())
    assert len(got) == len(want) == int(ds.cardinality())
    for (images, classes, ids), batch in zip(got, want):
        assert images.dtype == np.uint8 and images.shape == (P * K, 12, 12, 3)
        np.testing.assert_array_equal(images, batch["image"])
        np.testing.assert_array_equal(classes, batch["class"])
        np.testing.assert_array_equal(ids["record_id"], batch["record_id"])
    endless = list(forever.take(len(want)).as_numpy_iterator())
    assert (pk_tf.held_arrays(split) is not None) == held  # a split this small is held in memory unless told not to
    # a held split's pipeline has tf.data's graph rewrites off (they copy captured tensors into every iterator)
    assert ds.options().experimental_optimization.apply_default_optimizations is (False if held else None)
    for (images, classes), batch in zip(endless, want):
        assert images.dtype == np.float32
        np.testing.assert_allclose(images, batch["image"] / np.float32(255))
        np.testing.assert_array_equal(classes, batch["class"])


@pytest.fixture(scope="module")
def five(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same records in five shards of uneven sizes (more than the four read at a time)."""
    return reshard(raw, tmp_path_factory.mktemp("five") / "images", "train", (0.3, 0.05, 0.25, 0.1, 0.3))


@pytest.mark.parametrize("held", [True, False])
@pytest.mark.parametrize("batch_size", [None, 1, 3, 7, 256])
def test_load_from_the_maps_gives_tensorflows_order_and_batches(five: Path, batch_size: int | None, held: bool,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorflow")
    if not held:
        monkeypatch.setattr(mapped_module, "HELD_BYTES", 0)  # each batch gathered from the maps in Python
    from pairgen.reading.handle import SplitHandle
    from pairgen.reading.tfdata import _PARSE_BATCH, _parsed_batches, load

    handle = SplitHandle(five, "train")
    assert len(handle.files) == 5
    batch = batch_size or _PARSE_BATCH
    want = list(_parsed_batches(handle, batch=batch, shuffle=False, seed=None, repeat=False, normalize=False,
                                shuffle_buffer=1).as_numpy_iterator())  # TensorFlow reads the shards
    got = list(load(five, "train", batch_size=batch_size, normalize=False, with_ids=True).as_numpy_iterator())
    if batch_size is None:
        assert len(got) == sum(len(w["record_id"]) for w in want)
        got_ids = np.array([ids["record_id"] for _, _, ids in got])
        got_images = np.stack([image for image, _, _ in got])
    else:
        assert [len(c) for _, c, _ in got] == [len(w["record_id"]) for w in want]
        got_ids = np.concatenate([ids["record_id"] for _, _, ids in got])
        got_images = np.concatenate([image for image, _, _ in got])
    np.testing.assert_array_equal(got_ids, np.concatenate([w["record_id"] for w in want]))
    np.testing.assert_array_equal(got_images, np.concatenate([w["image"] for w in want]))
    assert sorted(got_ids.tolist()) == list(range(len(got_ids)))


def test_interleave_order_follows_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    from pairgen.reading.tfdata import interleave_order

    for counts, batch in (([5, 0, 3, 9, 2, 4, 1], 2), ([10], 3), ([1, 1, 1, 1, 1], 4), ([0, 0], 1)):
        starts = np.concatenate([[0], np.cumsum(counts)])
        files = tf.data.Dataset.from_tensor_slices((starts[:-1], np.asarray(counts, np.int64)))
        ds = files.interleave(lambda s, n, b=batch: tf.data.Dataset.range(s, s + n).batch(b),
                              cycle_length=max(1, min(len(counts), 4)), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
        want = np.concatenate([b for b in ds.as_numpy_iterator()] or [np.zeros(0, np.int64)])
        np.testing.assert_array_equal(interleave_order(counts, batch, max(1, min(len(counts), 4))), want)
