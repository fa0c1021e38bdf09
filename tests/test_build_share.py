"""The build's main process only plans and commits: the Parquet tables and the card's catalog
facts come from a worker, shard tasks carry their images as Arrow arrays, and string columns
reach Arrow without a Python step per value; every byte stays what it was."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import pairgen.dataset.tables
import pairgen.scanning.near
import pairgen.writing.builder
from pairgen.dataset import tables as mf
from pairgen.dataset.fingerprints import fingerprint, split_fingerprint
from pairgen.rendering.records import Source
from pairgen.scanning.catalog import normalize_images
from pairgen.spec.config import BuildConfig
from pairgen.writing.builder import build
from pairgen.writing.shardwork import IdStrings, pack_source, task_source


def _config(src: Path, **over) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [24, 24], "build.quiet": True,
            "split.fractions": {"train": 0.5, "val": 0.25, "test": 0.25}}
    return BuildConfig().override({**base, **over})


@pytest.mark.parametrize("values", [
    ["a", "b", "c"], ["a", None, float("nan"), np.float64("nan")], [None, None], [],
    ["a", pd.NA], ["x", 1, 2.5], [np.str_("q"), "r"], ["é", "☃", None],
])
def test_string_columns_convert_as_one_value_at_a_time(values: list) -> None:
    column = pd.Series(values, dtype=object)
    expected = pa.array(mf._as_str_list(column), type=pa.string())
    assert mf._as_str_array(column).equals(expected)


def test_string_and_object_columns_give_the_same_parquet_bytes(tmp_path: Path) -> None:
    paths = [f"c{i % 3}/{i:04d}.png" for i in range(500)]
    as_object = pd.DataFrame({"path": pd.Series(paths, dtype=object),
                              "reason": pd.Series([None if i % 7 else "hidden file" for i in range(500)], dtype=object)})
    as_str = as_object.astype({"path": "str"})
    a = mf.write_table(as_object, tmp_path / "a.parquet", ("path", "reason"))
    b = mf.write_table(as_str, tmp_path / "b.parquet", ("path", "reason"))
    assert a["sha256"] == b["sha256"]
    assert mf.read_table(tmp_path / "a.parquet")["reason"].isna().sum() == sum(1 for i in range(500) if i % 7)


def test_packed_task_source_holds_what_the_plain_one_does() -> None:
    n = 50
    source = Source(root="/r", paths=tuple(f"c/{i}.png" for i in range(n)),
                    sha256=tuple(f"{i:064x}" for i in range(n)))
    columns = {"a_id": np.array([7, 3, 3, 49], np.int64), "b_id": np.array([0, 3, 12, 7], np.int64)}
    plain = task_source(source, columns, ("a_id", "b_id"))
    packed = task_source(source, columns, ("a_id", "b_id"), pack_source(source))
    assert isinstance(packed.paths, IdStrings)
    assert dict(packed.paths) == dict(plain.paths) == {i: f"c/{i}.png" for i in (0, 3, 7, 12, 49)}
    assert dict(packed.sha256) == dict(plain.sha256)
    sent = pickle.loads(pickle.dumps(packed))  # what a worker gets
    assert sent.paths[49] == "c/49.png" and sent.sha256[12] == f"{12:064x}" and len(sent.paths) == 5
    assert pack_source(Source(root="/r", paths={1: "x.png"})) is None  # a mapping stays as it is


def test_tables_and_card_facts_are_made_in_a_worker(tmp_path: Path, make_image_tree, monkeypatch) -> None:
    """With workers, the Parquet tables and the fingerprints are written by a worker process
    (the calls are logged by pid to a file), and they are what this process would make."""
    src = make_image_tree(tmp_path / "src", classes=4, per_class=10)
    log = tmp_path / "calls.log"

    def logged(fn):
        def call(*args, **kwargs):
            with open(log, "a") as f:
                f.write(f"{fn.__name__} {os.getpid()}\n")
            return fn(*args, **kwargs)
        return call

    for module, name in [(pairgen.dataset.tables, "write_table"), (pairgen.dataset.tables, "write_catalog"),
                         (pairgen.writing.builder, "fingerprint"), (pairgen.writing.builder, "split_fingerprint"),
                         (pairgen.writing.builder, "leakage_report"), (pairgen.scanning.near, "cross_split")]:
        monkeypatch.setattr(module, name, logged(getattr(module, name)))
    card = build(_config(src, **{"build.workers": 2}), tmp_path / "w2")
    calls = [line.split() for line in log.read_text().splitlines()]
    assert {name for name, _ in calls} == {"write_table", "write_catalog", "fingerprint", "split_fingerprint",
                                           "leakage_report", "cross_split"}
    assert all(int(pid) != os.getpid() for _, pid in calls)
    log.unlink()
    one = build(_config(src, **{"build.workers": 1}), tmp_path / "w1")
    assert {int(line.split()[1]) for line in log.read_text().splitlines()} == {os.getpid()}  # no worker: here
    catalog = normalize_images(mf.read_table(tmp_path / "w2" / "catalog.parquet"))
    config = BuildConfig.from_dict(card["config"])
    assert card["fingerprint"] == one["fingerprint"] == fingerprint(config, catalog)
    assert card["split_fingerprint"] == split_fingerprint(catalog)
    assert card["files"] == one["files"] and card["splits"] == one["splits"] and card["leakage"] == one["leakage"]
    assert card["near_duplicates"] == one["near_duplicates"] and card["near_duplicates"]["threshold"] > 0


def test_a_split_that_cannot_be_sampled_fails_alike_in_a_worker(tmp_path: Path, make_image_tree) -> None:
    """Sampling runs in the workers: its one-line error is the one the main process raises."""
    from pairgen.errors import SampleError

    src = make_image_tree(tmp_path / "src", classes=3, per_class=6)
    messages = []
    for workers in (1, 2):
        with pytest.raises(SampleError, match="class") as err:
            build(_config(src, **{"split.by": "class", "build.workers": workers}), tmp_path / f"w{workers}")
        messages.append(str(err.value))
        assert not (tmp_path / f"w{workers}").exists()
    assert messages[0] == messages[1] and "need at least 2 classes" in messages[0]
