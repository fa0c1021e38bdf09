"""The Ray executor on a real local Ray cluster gives the same bytes as local processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pairgen.builder import build
from pairgen.config import BuildConfig

ray = pytest.importorskip("ray")


def test_ray_executor_matches_local(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=4, per_class=8, size=32)
    base = {"source.path": str(src), "image.size": [24, 24], "augment.enabled": True, "augment.flip": True,
            "augment.crop": [28, 28], "shards.records_per_shard": 9,
            "split.fractions": {"train": 0.5, "val": 0.25, "test": 0.25}}
    local = build(BuildConfig().override({**base, "build.workers": 1}), tmp_path / "local")
    remote = build(BuildConfig().override({**base, "build.workers": 2, "build.executor": "ray"}), tmp_path / "ray")
    assert not ray.is_initialized()  # the build shut down the cluster it started
    assert local["fingerprint"] == remote["fingerprint"]
    assert local["shards"] == remote["shards"]
    for split, shards in local["shards"].items():
        for shard in shards:
            assert (tmp_path / "local" / shard["path"]).read_bytes() == (tmp_path / "ray" / shard["path"]).read_bytes()
