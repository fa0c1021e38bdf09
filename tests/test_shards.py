"""Shard planning, writing (sha256, determinism, gzip) and reading, with and without TF."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest

from pairgen.codec.example import encode_pair
from pairgen.codec.tfrecord import iter_records
from pairgen.errors import BuildError, DatasetError
from pairgen.spec.config import ShardConfig
from pairgen.writing.shards import ShardSpec, ShardWriter, plan_shards, shard_boundaries


def _records(n: int) -> list[bytes]:
    return [encode_pair(bytes([i % 256]) * 16, bytes([(i * 7) % 256]) * 16, label=i % 2,
                        a_id=i, b_id=1000 + i, a_class=i % 3, b_class=(i + i % 2) % 3,
                        record_id=i) for i in range(n)]


def _write(out, records, config: ShardConfig, split: str = "train") -> list[dict]:
    specs = plan_shards(split, len(records), record_bytes=100, config=config)
    with ShardWriter(out, specs, compression=config.compression) as writer:
        for record in records:
            writer.write(record)
    return writer.close()


@pytest.mark.parametrize("n, k, expected", [
    (10, 3, [(0, 4), (4, 7), (7, 10)]),
    (9, 3, [(0, 3), (3, 6), (6, 9)]),
    (1, 1, [(0, 1)]),
    (0, 0, []),
    (5, 5, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
])
def test_shard_boundaries_even_and_contiguous(n, k, expected):
    assert shard_boundaries(n, k) == expected


def test_shard_boundaries_rejects_records_without_shards():
    with pytest.raises(BuildError, match="at least one shard"):
        shard_boundaries(3, 0)


def test_plan_by_size_names_and_counts():
    specs = plan_shards("train", 1000, record_bytes=3 * 1024, config=ShardConfig(shard_mb=1))
    assert len(specs) == 3  # 3000 KiB over 1 MiB shards
    assert [s.path for s in specs] == [f"shards/train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert [(s.start, s.stop) for s in specs] == [(0, 334), (334, 667), (667, 1000)]
    assert all(s.num_shards == 3 and s.split == "train" for s in specs)


def test_plan_records_per_shard_and_gzip_suffix():
    config = ShardConfig(records_per_shard=100, compression="gzip")
    specs = plan_shards("val", 250, record_bytes=10**9, config=config)
    assert [s.num_records for s in specs] == [84, 83, 83]
    assert specs[0].path == "shards/val-00000-of-00003.tfrecord.gz"


def test_plan_small_split_is_one_shard_and_zero_records_is_none():
    assert len(plan_shards("test", 5, record_bytes=10, config=ShardConfig())) == 1
    assert plan_shards("test", 0, record_bytes=10, config=ShardConfig()) == []
    # never more shards than records
    assert len(plan_shards("x", 2, record_bytes=10**9, config=ShardConfig(shard_mb=1))) == 2


def test_plan_rejects_path_like_split_name():
    with pytest.raises(BuildError, match="file name"):
        plan_shards("../evil", 3, record_bytes=10, config=ShardConfig())


def test_writer_reports_sha256_bytes_and_counts(tmp_path):
    records = _records(25)
    shards = _write(tmp_path, records, ShardConfig(records_per_shard=10))
    assert [s["records"] for s in shards] == [9, 8, 8]
    for shard in shards:
        data = (tmp_path / shard["path"]).read_bytes()
        assert shard["bytes"] == len(data)
        assert shard["sha256"] == hashlib.sha256(data).hexdigest()
    read = [r for s in shards for r in iter_records(tmp_path / s["path"], compression="none")]
    assert read == records
    assert sum(1 for _ in iter_records(tmp_path / shards[1]["path"], read_data=False)) == 8


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_output_is_byte_identical_across_writes(tmp_path, compression):
    records = _records(40)
    config = ShardConfig(records_per_shard=15, compression=compression)
    first = _write(tmp_path / "one", records, config)
    second = _write(tmp_path / "two", records, config)
    assert first == second
    if compression == "gzip":
        raw = (tmp_path / "one" / first[0]["path"]).read_bytes()
        assert raw[:2] == b"\x1f\x8b"
        assert list(iter_records(tmp_path / "one" / first[0]["path"], compression="gzip")) == records[:14]


def test_writer_rejects_too_many_and_too_few_records(tmp_path):
    specs = plan_shards("train", 2, record_bytes=10, config=ShardConfig())
    writer = ShardWriter(tmp_path, specs)
    writer.write(b"a")
    writer.write(b"b")
    with pytest.raises(BuildError, match="more records"):
        writer.write(b"c")
    short = ShardWriter(tmp_path / "short", plan_shards("train", 3, record_bytes=10, config=ShardConfig()))
    short.write(b"a")
    with pytest.raises(BuildError, match="holds 3 records but 1"):
        short.close()


def test_writer_rejects_non_contiguous_plan(tmp_path):
    specs = [ShardSpec("t", 0, 2, 0, 2, "shards/a"), ShardSpec("t", 1, 2, 3, 4, "shards/b")]
    with pytest.raises(BuildError, match="not contiguous"):
        ShardWriter(tmp_path, specs)


def test_empty_plan_writes_nothing(tmp_path):
    with ShardWriter(tmp_path, []) as writer:
        pass
    assert writer.close() == []


def test_read_missing_file_raises(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        list(iter_records(tmp_path / "nope.tfrecord"))


def test_importing_records_and_shards_does_not_import_tensorflow():
    code = "import sys, pairgen.writing.shards, pairgen.codec.example; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_non_tensorflow_reader_parses_shards(tmp_path, compression):
    records = _records(12)
    shards = _write(tmp_path, records, ShardConfig(compression=compression))
    path = tmp_path / shards[0]["path"]
    code = textwrap.dedent(f"""
        import json, sys
        from tfrecord.reader import tfrecord_loader
        comp = {("gzip" if compression == "gzip" else None)!r}
        rows = [{{"label": int(r["label"][0]), "a_id": int(r["a/id"][0]), "b_id": int(r["b/id"][0]),
                  "a_image": list(r["a/image"][:2])}}
                for r in tfrecord_loader({str(path)!r}, None, compression_type=comp)]
        print(json.dumps(rows), "tensorflow" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    payload, tf_loaded = out.stdout.strip().rsplit(" ", 1)
    rows = json.loads(payload)
    assert tf_loaded == "False"
    assert [r["label"] for r in rows] == [i % 2 for i in range(12)]
    assert [r["a_id"] for r in rows] == list(range(12))
    assert [r["b_id"] for r in rows] == [1000 + i for i in range(12)]
    assert rows[5]["a_image"] == [5, 5]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_shard_file_is_the_writer_of_shard_writer_and_digests_what_it_wrote(tmp_path, compression):
    from pairgen.writing.shards import ShardFile

    records = _records(12)
    [shard] = _write(tmp_path / "writer", records, ShardConfig(compression=compression))
    with ShardFile(tmp_path / "file" / shard["path"], gzipped=compression == "gzip") as out:
        out.extend(records[:5])
        for record in records[5:]:
            out.write(record)
    data = (tmp_path / "file" / shard["path"]).read_bytes()
    assert data == (tmp_path / "writer" / shard["path"]).read_bytes()
    assert (out.digest.bytes, out.digest.sha256) == (shard["bytes"], shard["sha256"])
    assert [p.name for p in (tmp_path / "file" / "shards").iterdir()] == [shard["path"].split("/")[-1]]


def test_shard_file_leaves_nothing_when_its_block_fails(tmp_path):
    from pairgen.writing.shards import ShardFile

    with pytest.raises(KeyError), ShardFile(tmp_path / "shards" / "x.tfrecord", gzipped=True) as out:
        out.write(b"a")
        raise KeyError("boom")
    assert list((tmp_path / "shards").iterdir()) == []


def test_shard_results_are_committed_in_plan_order_whatever_order_jobs_finish():
    from pairgen.writing.shardwork import PlannedShard, ShardDone, collect, commit

    specs = [ShardSpec("train", 0, 2, 0, 3, "t0"), ShardSpec("train", 1, 2, 3, 5, "t1"), ShardSpec("val", 0, 1, 0, 2, "v0")]
    planned = [PlannedShard(s, {}) for s in specs]
    parts: list[int] = []
    events = [("part", {"records": 2}), ("done", (2, {"path": "v0"})), ("part", {"records": 3}),
              ("done", (0, {"path": "t0"})), ("done", (1, {"path": "t1"}))]
    done = collect(events, parts.append)
    assert parts == [2, 3] and [d.job for d in done] == [2, 0, 1] and isinstance(done[0], ShardDone)
    assert commit(planned, done, ["train", "val", "test"]) == {
        "train": [{"path": "t0"}, {"path": "t1"}], "val": [{"path": "v0"}], "test": []}
