"""pairgen.load / load_arrays / feature_spec on small datasets written with ShardWriter."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pairgen.codec.example import encode_pair, encode_triplet
from pairgen.errors import DatasetError
from pairgen.spec.config import ShardConfig
from pairgen.writing.shards import ShardWriter, plan_shards

tf = pytest.importorskip("tensorflow")
from pairgen.reading.tfdata import feature_spec, load, load_arrays  # noqa: E402

H, W = 6, 5


def _image(value: int, channels: int) -> np.ndarray:
    """A tiny image whose top-left pixel stores ``value`` (decodable after PNG)."""
    img = np.full((H, W, channels), (value * 37) % 256, np.uint8)
    img[0, 0] = value % 256
    return img


def _encode(img: np.ndarray, encoding: str) -> bytes:
    if encoding == "raw":
        return img.tobytes()
    ok, buf = cv2.imencode(".png", img if img.shape[2] == 3 else img[:, :, 0])
    return buf.tobytes()


def _record(kind: str, i: int, channels: int, encoding: str) -> bytes:
    if kind == "pairs":
        a, b = (_encode(_image(i + k, channels), encoding) for k in (0, 100))
        return encode_pair(a, b, label=int(i % 3 == 0), a_id=i, b_id=i + 100, a_class=i % 4,
                           b_class=(i + 1) % 4, record_id=i)
    imgs = [_encode(_image(i + k, channels), encoding) for k in (0, 100, 200)]
    return encode_triplet(*imgs, anchor_id=i, positive_id=i + 100, negative_id=i + 200,
                          anchor_class=i % 4, positive_class=i % 4, negative_class=(i + 1) % 4,
                          record_id=i)


def make_dataset(root, *, kind="pairs", encoding="raw", channels=1, compression="none",
                 splits=(("train", 37), ("val", 5), ("test", 0)), per_shard=10):
    """Write shards plus a dataset.json with the keys load() reads."""
    config = ShardConfig(records_per_shard=per_shard, compression=compression)
    shards = {}
    for split, n in splits:
        specs = plan_shards(split, n, record_bytes=100, config=config)
        with ShardWriter(root, specs, compression=compression) as writer:
            for i in range(n):
                writer.write(_record(kind, i, channels, encoding))
        shards[split] = writer.close()
    card = {"name": "t", "kind": kind, "compression": compression, "shards": shards,
            "image": {"height": H, "width": W, "channels": channels, "encoding": encoding}}
    (root / "dataset.json").write_text(json.dumps(card))
    return root


@pytest.mark.parametrize("encoding, channels, compression", [
    ("raw", 1, "none"), ("png", 1, "none"), ("png", 3, "gzip"), ("raw", 3, "gzip"),
])
def test_pairs_shapes_dtypes_and_values(tmp_path, encoding, channels, compression):
    make_dataset(tmp_path, encoding=encoding, channels=channels, compression=compression)
    (a, b), label = next(iter(load(tmp_path, "train", batch_size=8)))
    assert a.shape == (8, H, W, channels) and b.shape == (8, H, W, channels)
    assert a.dtype == tf.float32 and label.dtype == tf.float32
    assert float(tf.reduce_max(a)) <= 1.0 and float(tf.reduce_min(a)) >= 0.0
    assert label.numpy().tolist() == [float(i % 3 == 0) for i in range(8)]
    np.testing.assert_allclose(a.numpy()[3], _image(3, channels) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.rint(b.numpy()[2] * 255.0), _image(102, channels))


def test_unbatched_uint8_elements_in_manifest_order(tmp_path):
    make_dataset(tmp_path)
    items = list(load(tmp_path, "train", normalize=False))
    assert len(items) == 37
    (a, b), label = items[11]
    assert a.shape == (H, W, 1) and a.dtype == tf.uint8 and label.shape == ()
    np.testing.assert_array_equal(a.numpy(), _image(11, 1))
    assert [int(x[0][0][0, 0, 0]) for x in items] == list(range(37))


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_triplets_shapes_and_values(tmp_path, encoding):
    make_dataset(tmp_path, kind="triplets", encoding=encoding, channels=3)
    anchor, positive, negative = next(iter(load(tmp_path, "val", batch_size=4, normalize=False)))
    assert anchor.shape == (4, H, W, 3) and anchor.dtype == tf.uint8
    np.testing.assert_array_equal(positive.numpy()[1], _image(101, 3))
    np.testing.assert_array_equal(negative.numpy()[2], _image(202, 3))


def test_seeded_shuffle_is_reproducible_and_shuffles(tmp_path):
    make_dataset(tmp_path)

    def order(seed):
        ds = load(tmp_path, "train", batch_size=5, shuffle=True, seed=seed, normalize=False)
        return [int(v) for (a, _), _ in ds for v in a.numpy()[:, 0, 0, 0]]

    first = order(7)
    assert first == order(7)
    assert sorted(first) == list(range(37))
    assert first != list(range(37))
    assert order(8) != first


def test_repeat_reshuffles_each_epoch_reproducibly(tmp_path):
    make_dataset(tmp_path, splits=(("train", 20),))
    ds = load(tmp_path, batch_size=20, shuffle=True, seed=1, repeat=True, normalize=False)
    epochs = [batch[0][0].numpy()[:, 0, 0, 0].tolist() for batch in ds.take(2)]
    again = [batch[0][0].numpy()[:, 0, 0, 0].tolist() for batch in
             load(tmp_path, batch_size=20, shuffle=True, seed=1, repeat=True, normalize=False).take(2)]
    assert epochs == again
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(20))
    assert epochs[0] != epochs[1]


def test_empty_split_yields_nothing(tmp_path):
    make_dataset(tmp_path)
    assert list(load(tmp_path, "test", batch_size=4)) == []
    arrays = load_arrays(tmp_path, "test")
    assert arrays["a"].shape == (0, H, W, 1) and arrays["label"].shape == (0,)


def test_feature_spec_parses_records(tmp_path):
    make_dataset(tmp_path, kind="triplets")
    spec = feature_spec(tmp_path)
    assert set(spec) == {"anchor/image", "positive/image", "negative/image", "anchor/id",
                         "positive/id", "negative/id", "anchor/class", "positive/class",
                         "negative/class", "record_id"}
    raw = next(iter(tf.data.TFRecordDataset(str(tmp_path / "shards/train-00000-of-00004.tfrecord"))))
    parsed = tf.io.parse_single_example(raw, spec)
    assert int(parsed["negative/id"]) == 200


def test_load_arrays_pairs_with_limit(tmp_path):
    make_dataset(tmp_path, encoding="png")
    arrays = load_arrays(tmp_path, "train", limit=23, normalize=False)
    assert arrays["a"].shape == (23, H, W, 1) and arrays["a"].dtype == np.uint8
    assert arrays["record_id"].tolist() == list(range(23))
    assert arrays["b_id"].tolist() == [i + 100 for i in range(23)]
    assert set(arrays) == {"a", "b", "label", "a_id", "b_id", "a_class", "b_class", "record_id"}


@pytest.mark.parametrize("setup, split, message", [
    ("nodir", "train", "does not exist"),
    ("nojson", "train", "has no dataset.json"),
    ("badjson", "train", "not valid JSON"),
    ("ok", "foo", "has no split 'foo'; it has: train, val, test."),
])
def test_missing_pieces_raise_dataset_error(tmp_path, setup, split, message):
    root = tmp_path / "ds"
    if setup != "nodir":
        root.mkdir()
    if setup == "badjson":
        (root / "dataset.json").write_text("{")
    if setup == "ok":
        make_dataset(root)
    with pytest.raises(DatasetError, match=message):
        load(root, split)


def test_missing_shard_file_raises(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "shards/val-00000-of-00001.tfrecord").unlink()
    with pytest.raises(DatasetError, match="missing; run `pairgen verify"):
        load(tmp_path, "val")


def test_bad_batch_size_raises(tmp_path):
    make_dataset(tmp_path)
    with pytest.raises(DatasetError, match="batch_size"):
        load(tmp_path, batch_size=0)


def test_keras_model_fits_on_pairs(tmp_path):
    import keras

    make_dataset(tmp_path, splits=(("train", 64),), per_shard=0)
    a_in = keras.Input((H, W, 1))
    b_in = keras.Input((H, W, 1))
    diff = keras.layers.Flatten()(keras.layers.Subtract()([a_in, b_in]))
    out = keras.layers.Dense(1, activation="sigmoid")(diff)
    model = keras.Model([a_in, b_in], out)
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    history = model.fit(load(tmp_path, batch_size=16, shuffle=True, seed=0), epochs=1,
                        shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])


def test_cardinality_known_without_repeat(tmp_path):
    make_dataset(tmp_path)
    assert int(load(tmp_path, "train", batch_size=8).cardinality()) == 5
    assert int(load(tmp_path, "train").cardinality()) == 37
    assert int(load(tmp_path, "train", batch_size=8, repeat=True).cardinality()) < 0


def _ids(ds) -> list[int]:
    return [int(v) for (a, _), _ in ds for v in a.numpy()[:, 0, 0, 0]]


def test_unshuffled_order_is_fixed_and_batches_are_full(tmp_path):
    make_dataset(tmp_path)  # train: 37 records in shards of 10, 9, 9, 9
    batches = list(load(tmp_path, "train", batch_size=4, normalize=False))
    assert [int(y.shape[0]) for _, y in batches] == [4] * 9 + [1]
    ids = _ids(batches)
    assert ids[:8] == [0, 1, 2, 3, 10, 11, 12, 13]  # blocks of 4 from each shard in turn
    assert sorted(ids) == list(range(37))
    assert ids == _ids(load(tmp_path, "train", batch_size=4, normalize=False))


def test_single_shard_split_is_in_manifest_order(tmp_path):
    make_dataset(tmp_path, splits=(("train", 30),), per_shard=0)
    assert _ids(load(tmp_path, "train", batch_size=7, normalize=False)) == list(range(30))


@pytest.mark.parametrize("kind, encoding, channels, compression", [
    ("pairs", "raw", 1, "none"), ("pairs", "png", 3, "gzip"), ("triplets", "png", 1, "none"),
    ("triplets", "raw", 3, "gzip")])
def test_load_numpy_equals_load_arrays_without_tensorflow(tmp_path, kind, encoding, channels, compression):
    from pairgen.reading.arrays import load_numpy

    make_dataset(tmp_path, kind=kind, encoding=encoding, channels=channels, compression=compression)
    for normalize in (True, False):
        want = load_arrays(tmp_path, "train", normalize=normalize)
        got = load_numpy(tmp_path, "train", normalize=normalize)
        assert sorted(got) == sorted(want)
        for key in want:
            assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    limited = load_numpy(tmp_path, "train", limit=23)
    assert list(limited["record_id"]) == list(range(23))
    empty = load_numpy(tmp_path, "test")
    assert empty["record_id"].shape == (0,) and empty[next(iter(empty))].shape == (0, H, W, channels)
    with pytest.raises(DatasetError, match="no split 'nope'"):
        load_numpy(tmp_path, "nope")
    with pytest.raises(DatasetError, match="limit must be >= 0"):
        load_numpy(tmp_path, "train", limit=-1)


def test_load_numpy_never_imports_tensorflow(tmp_path):
    import subprocess
    import sys

    make_dataset(tmp_path)
    code = ("import sys, pairgen; arrays = pairgen.load_numpy(sys.argv[1], 'train'); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; print(len(arrays['label']))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "37"
