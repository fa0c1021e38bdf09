"""The column-wise shard reader (pairgen.codec.columnar) against the per-record reader it speeds up."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pairgen.codec import columnar as fastread
from pairgen.codec.example import encode_example, encode_pair, encode_triplet
from pairgen.errors import DatasetError
from pairgen.reading import engine
from pairgen.reading.arrays import load_numpy
from pairgen.reading.engine import read_records
from pairgen.spec.schema import PAIRS, schema_of
from pairgen.writing.shards import ShardFile

H, W = 7, 5


def _encode(img: np.ndarray, encoding: str) -> bytes:
    if encoding == "raw":
        return img.tobytes()
    ext = ".png" if encoding == "png" else ".jpg"
    ok, buf = cv2.imencode(ext, img if img.shape[2] == 3 else img[:, :, 0])
    assert ok
    return buf.tobytes()


def _record(kind: str, i: int, rng: np.random.Generator, channels: int, encoding: str) -> bytes:
    # ids and classes of every varint width (1 to 10 bytes, negatives included)
    ids = rng.choice([0, 5, 127, 128, 16_383, 16_384, 70_000, 2**40, -1], size=3)
    imgs = [_encode(rng.integers(0, 256, (H, W, channels), dtype=np.uint8), encoding) for _ in range(3)]
    if kind == "pairs":
        return encode_pair(imgs[0], imgs[1], label=i % 2, a_id=int(ids[0]), b_id=int(ids[1]),
                           a_class=int(ids[2]), b_class=i % 10, record_id=i)
    return encode_triplet(*imgs, anchor_id=int(ids[0]), positive_id=int(ids[1]), negative_id=i,
                          anchor_class=int(ids[2]), positive_class=int(ids[2]), negative_class=3, record_id=i)


def _dataset(root: Path, records_per_shard: list[list[bytes]], *, kind: str = "pairs", encoding: str = "raw",
             channels: int = 1, compression: str = "none") -> Path:
    """Write shards holding the given records plus a dataset.json."""
    (root / "shards").mkdir(parents=True)
    entries = []
    for n, records in enumerate(records_per_shard):
        suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
        path = f"shards/train-{n:05d}-of-{len(records_per_shard):05d}{suffix}"
        with ShardFile(root / path, gzipped=compression == "gzip") as shard:
            shard.extend(records)
        entries.append({"path": path, "records": len(records)})
    card = {"name": "t", "kind": kind, "compression": compression, "shards": {"train": entries},
            "image": {"height": H, "width": W, "channels": channels, "encoding": encoding}}
    (root / "dataset.json").write_text(json.dumps(card))
    return root


def _records(kind: str, n: int, encoding: str = "raw", channels: int = 1, start: int = 0) -> list[bytes]:
    rng = np.random.default_rng(start)
    return [_record(kind, start + i, rng, channels, encoding) for i in range(n)]


def _files(root: Path) -> list[str]:
    return [str(root / e["path"]) for e in json.loads((root / "dataset.json").read_text())["shards"]["train"]]


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.parametrize("kind, encoding, channels, compression", [
    ("pairs", "raw", 1, "none"), ("pairs", "raw", 3, "gzip"), ("pairs", "png", 1, "none"),
    ("triplets", "raw", 1, "none"), ("triplets", "png", 3, "gzip"), ("triplets", "jpeg", 3, "none")])
def test_column_reader_equals_the_per_record_reader(tmp_path, kind, encoding, channels, compression):
    shards = [_records(kind, n, encoding, channels, start=s) for n, s in ((40, 0), (1, 40), (23, 41))]
    root = _dataset(tmp_path, shards, kind=kind, encoding=encoding, channels=channels, compression=compression)
    keys = schema_of(kind).features
    for f in _files(root):
        fast = fastread.read_shard(f, *keys, (H, W, channels), encoding, compression=compression)
        assert fast is not None, "pairgen's own records must take the column-wise path"
        _assert_same(fast, read_records([f], *keys, (H, W, channels), encoding, compression=compression))
    whole = read_records(_files(root), *keys, (H, W, channels), encoding, compression=compression)
    assert list(whole["record_id"]) == list(range(64))
    for limit in (None, 0, 5, 40, 41, 50, 64, 100):
        got = engine.read_split(_files(root), engine.RecordSpec(*keys, (H, W, channels), encoding, compression),
                                limit=limit)
        _assert_same(got, {k: v[:limit] for k, v in whole.items()})


def test_load_numpy_scales_exactly_like_the_per_record_path(tmp_path):
    root = _dataset(tmp_path, [_records("pairs", 30)])
    want = read_records(_files(root), *PAIRS.features, (H, W, 1), "raw")
    got = load_numpy(root, "train")
    np.testing.assert_array_equal(got["a"], want["a/image"].astype(np.float32) * np.float32(1 / 255))
    assert got["a"].dtype == np.float32 and got["b_class"].dtype == np.int64
    np.testing.assert_array_equal(load_numpy(root, "train", normalize=False)["b"], want["b/image"])


def test_empty_shard_and_split(tmp_path):
    root = _dataset(tmp_path, [[]])
    assert fastread.read_shard(_files(root)[0], *PAIRS.features, (H, W, 1), "raw")["a/image"].shape == (0, H, W, 1)
    arrays = load_numpy(root, "train")
    assert arrays["a"].shape == (0, H, W, 1) and arrays["record_id"].shape == (0,)


def _foreign(i: int, extra: bool, record_id: int) -> bytes:
    """A valid pair Example that pairgen did not write: an extra feature, or two values in ``label``."""
    img = np.full((H, W, 1), i, np.uint8).tobytes()
    features = {"a/image": img, "b/image": img, "a/id": i, "b/id": i + 1, "a/class": 1, "b/class": 2,
                "record_id": record_id, "label": [1] if extra else [1, 0]}
    if extra:
        features["source"] = b"elsewhere"
    return encode_example(features)


@pytest.mark.parametrize("extra", [True, False])
def test_other_record_layouts_fall_back_to_the_per_record_reader(tmp_path, extra):
    mine = _records("pairs", 6)
    root = _dataset(tmp_path, [mine, [_foreign(i, extra, record_id=6 + i) for i in range(4)]])
    fast, foreign = _files(root)
    assert fastread.read_shard(foreign, *PAIRS.features, (H, W, 1), "raw") is None
    arrays = load_numpy(root, "train", normalize=False)
    assert list(arrays["record_id"]) == list(range(10))
    assert list(arrays["label"][6:]) == [1, 1, 1, 1] and list(arrays["b_id"][6:]) == [1, 2, 3, 4]
    np.testing.assert_array_equal(arrays["a"][6:, 0, 0, 0], np.arange(4))


def _damage(path: Path, offset: int | None = None, truncate: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    if offset is not None:
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data[:truncate] if truncate is not None else data))


@pytest.mark.parametrize("where, message", [
    ({"offset": 40}, "record 0 fails its data CRC"),
    ({"offset": 3}, "length field of record 0 fails its CRC"),
    ({"truncate": -3}, "ends inside record 4"),
    ({"truncate": -1}, "ends inside record 4")])
def test_damaged_shards_raise_the_per_record_readers_error(tmp_path, where, message):
    root = _dataset(tmp_path, [_records("pairs", 5)])
    _damage(Path(_files(root)[0]), **where)
    assert fastread.read_shard(_files(root)[0], *PAIRS.features, (H, W, 1), "raw") is None
    with pytest.raises(DatasetError, match=message):
        load_numpy(root, "train")


def test_wrong_raw_size_and_undecodable_png_are_dataset_errors_naming_the_shard(tmp_path):
    root = _dataset(tmp_path / "raw", [_records("pairs", 3)])
    card = json.loads((root / "dataset.json").read_text())
    card["image"]["height"] = H + 1
    (root / "dataset.json").write_text(json.dumps(card))
    with pytest.raises(DatasetError, match=r"train-00000-of-00001.tfrecord' record 0 .*raw record image has"):
        load_numpy(root, "train")
    bad = encode_pair(b"\x89PNG not really", _encode(np.zeros((H, W, 1), np.uint8), "png"), label=0, a_id=0,
                      b_id=1, a_class=0, b_class=1, record_id=0)
    root = _dataset(tmp_path / "png", [[bad]], encoding="png")
    with pytest.raises(DatasetError, match=r"record 0 .*cannot decode a png record image"):
        load_numpy(root, "train")


def test_a_later_record_of_another_size_names_its_shard_and_record(tmp_path):
    records = _records("pairs", 3)
    short = encode_pair(b"\x00" * (H * W - 1), b"\x00" * (H * W), label=0, a_id=0, b_id=1, a_class=0, b_class=1,
                        record_id=3)
    root = _dataset(tmp_path, [records + [short]])
    with pytest.raises(DatasetError, match=r"tfrecord' record 3 does not match the image spec .*a/image"):
        load_numpy(root, "train")
