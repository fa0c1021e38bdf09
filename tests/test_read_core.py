"""The reading core: TFRecord framing checks, the split handle and the read plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from pairgen.codec.example import encode_pair
from pairgen.codec.tfrecord import (
    TFRecordError,
    check_frame,
    frame,
    frame_buffer,
    index_file,
    masked_crc,
    masked_crc_array,
)
from pairgen.errors import DatasetError
from pairgen.reading.handle import SplitHandle
from pairgen.reading.plan import Piece, consumer_batches, consumer_pieces, records, split_pieces, worker_consumer
from pairgen.writing.shards import ShardFile

H, W = 3, 2


def test_masked_crc_array_equals_masked_crc() -> None:
    data = [b"", b"a", b"pairgen", bytes(range(256))]
    crcs = np.array([crc32c(d) for d in data], np.uint32)
    assert masked_crc_array(crcs).tolist() == [masked_crc(d) for d in data]


def test_frame_buffer_finds_every_record_and_names_damage() -> None:
    records = [b"x" * n for n in (0, 1, 200, 7)]
    data = b"".join(frame(r) for r in records)
    starts, lengths = frame_buffer(data)
    assert [data[s:s + n] for s, n in zip(starts.tolist(), lengths.tolist())] == records
    assert len(frame_buffer(data, limit=2)[0]) == 2
    damaged = bytearray(data)
    damaged[len(frame(records[0])) + 12] ^= 0xFF  # the data of record 1
    with pytest.raises(TFRecordError) as exc:
        frame_buffer(bytes(damaged))
    assert exc.value.index == 1
    for cut in (1, 5, 13):
        with pytest.raises(TFRecordError):
            frame_buffer(data[:-cut])


def test_index_file_and_check_frame(tmp_path: Path) -> None:
    records = [b"a" * 5, b"b" * 9, b""]
    path = tmp_path / "s.tfrecord"
    with ShardFile(path) as writer:
        writer.extend(records)
    offsets, lengths, end = index_file(path, 10)
    data = path.read_bytes()
    assert lengths.tolist() == [5, 9, 0] and end == len(data)
    for off, n, rec in zip(offsets.tolist(), lengths.tolist(), records):
        check_frame(data[off:off + n + 16], n)
        assert data[off + 12:off + 12 + n] == rec
    assert len(index_file(path, 2)[0]) == 2
    with pytest.raises(TFRecordError) as exc:
        check_frame(data[:5 + 16 - 1], 5)
    assert exc.value.kind == "truncated"
    bad = bytearray(data[:21])
    bad[14] ^= 1
    with pytest.raises(TFRecordError) as exc:
        check_frame(bytes(bad), 5)
    assert exc.value.kind == "corrupt"
    damaged = bytearray(data)
    damaged[int(offsets[1]) + 2] ^= 0xFF  # the length of record 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(TFRecordError) as exc:
        index_file(path, 10)
    assert exc.value.index == 1


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 9), min_size=1, max_size=6), consumers=st.integers(1, 9),
       shuffle=st.booleans())
def test_the_plan_reads_every_record_once_for_any_number_of_consumers(counts: list[int], consumers: int,
                                                                       shuffle: bool) -> None:
    files = [f"s{j}" for j in range(len(counts))]
    order = np.random.default_rng(len(counts)).permutation(len(files)) if shuffle else None
    seen: list[tuple[str, int]] = []
    for i in range(consumers):
        pieces = split_pieces(counts, files, consumer=i, consumers=consumers, order=order)
        for p in pieces:
            assert 0 <= p.skip and p.take >= 0 and p.stop <= p.records == counts[files.index(p.path)]
            seen += [(p.path, r) for r in range(p.skip, p.stop)]
    assert sorted(seen) == sorted((f, r) for f, n in zip(files, counts) for r in range(n))
    equal = [records(consumer_pieces(counts, files, consumer=i, consumers=consumers, order=order, equalize=True))
             for i in range(consumers)]
    assert len(set(equal)) == 1


def test_fewer_files_than_consumers_split_records_contiguously() -> None:
    pieces = [split_pieces([5, 2], ["a", "b"], consumer=i, consumers=3) for i in range(3)]
    assert pieces == [[Piece("a", 5, 0, 2)], [Piece("a", 5, 2, 2)], [Piece("a", 5, 4, 1), Piece("b", 2, 0, 2)]]
    assert pieces[2][0].whole and not pieces[0][0].whole


def test_consumers_of_workers_and_batches() -> None:
    assert [worker_consumer(r, 2, w, 3) for r in range(2) for w in range(3)] == [(i, 6) for i in range(6)]
    assert consumer_batches(5, rank=1, world_size=2, pad=True).tolist() == [1, 3, 0]


def _dataset(root: Path, counts: list[int]) -> Path:
    (root / "shards").mkdir(parents=True)
    entries, rid = [], 0
    for n, count in enumerate(counts):
        path = f"shards/train-{n:05d}-of-{len(counts):05d}.tfrecord"
        with ShardFile(root / path) as writer:
            for _ in range(count):
                writer.write(encode_pair(b"\x00" * (H * W), b"\x01" * (H * W), label=1, a_id=rid, b_id=rid,
                                         a_class=0, b_class=0, record_id=rid))
                rid += 1
        entries.append({"path": path, "records": count})
    card = {"name": "t", "kind": "pairs", "compression": "none", "shards": {"train": entries},
            "image": {"height": H, "width": W, "channels": 1, "encoding": "raw"}}
    (root / "dataset.json").write_text(json.dumps(card))
    return root


def test_split_handle_opens_a_split_once(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", [3, 0, 2])
    handle = SplitHandle(root, "train")
    assert handle.root == root and handle.path == root and handle.split == "train"
    assert [Path(f).name for f in handle.files] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert handle.counts == [3, 0, 2] and handle.listed == [3, 0, 2] and handle.records == 5
    assert handle.spec.shape == (H, W, 1) and handle.spec.image_keys == ("a/image", "b/image")
    handle.check_count(handle.files[0], 3, True)
    handle.check_count(handle.files[0], 1, False)
    with pytest.raises(DatasetError, match="holds 2 records, dataset.json says 3"):
        handle.check_count(handle.files[0], 2, True)
    with pytest.raises(DatasetError, match="has no split 'val'"):
        SplitHandle(root, "val")
    with pytest.raises(DatasetError, match="not wanted"):
        SplitHandle(root, "train", require=lambda root, card: (_ for _ in ()).throw(DatasetError("not wanted")))


def test_split_handle_without_counts(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", [2])
    card = json.loads((root / "dataset.json").read_text())
    del card["shards"]["train"][0]["records"]
    (root / "dataset.json").write_text(json.dumps(card))
    handle = SplitHandle(root, "train", check=False)
    assert handle.listed == [None] and handle.records is None
    with pytest.raises(DatasetError, match="lacks the record count of a shard of split 'train'"):
        _ = handle.counts


class _FakeTFError(Exception):
    """Looks like TensorFlow's error from a failed ``assert_cardinality``."""


_FakeTFError.__module__ = "tensorflow.python.framework.errors_impl"


def test_raise_dataset_errors_takes_the_dataset_as_info(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pairgen.reading.checks import raise_dataset_errors

    root = _dataset(tmp_path / "d", [3])
    card = json.loads((root / "dataset.json").read_text())
    card["shards"]["train"][0]["records"] = 4
    (root / "dataset.json").write_text(json.dumps(card))

    @raise_dataset_errors
    def fit(config: int, info: object, *, fail: Exception) -> None:
        raise fail

    info = SimpleNamespace(path=root, card=None)
    with pytest.raises(DatasetError, match="holds 3 records, dataset.json says 4"):
        fit(0, info, fail=_FakeTFError("expected to contain 4 elements but contained only 3"))
    with pytest.raises(ValueError, match="other"):
        fit(0, info=info, fail=ValueError("other"))
    with pytest.raises(TypeError, match="no 'info' parameter"):
        raise_dataset_errors(lambda dataset: None)
