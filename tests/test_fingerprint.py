"""The dataset card and its fingerprint: what is hashed, and what must not be."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import pytest

import pairgen
from pairgen.codec.tfrecord import iter_records
from pairgen.dataset import tables as mf
from pairgen.dataset.card import read_json as read_card
from pairgen.dataset.fingerprints import fingerprint
from pairgen.scanning.catalog import scan
from pairgen.spec.config import BuildConfig, canonical_json
from pairgen.writing.builder import build

# One changed value per fingerprinted config key (BuildConfig.to_dict(hashed=True) leaves).
CHANGES = {
    "name": "other", "version": "1.0.1", "seed": 1, "kind": "triplets",
    "source.layout": "split-folders", "source.class_depth": 1, "source.min_per_class": 2,
    "split.by": "class", "split.fractions": {"train": 0.5, "val": 0.25, "test": 0.25}, "split.dedupe": True,
    "sample.strategy": "balanced", "sample.positives_per_image": 2, "sample.negatives_per_image": 3,
    "sample.num_records": 500, "sample.positive_fraction": 0.25, "sample.per_class": 5,
    "sample.max_pairs_per_class": 10, "sample.unique": True, "sample.hard_k": 3, "sample.embeddings": "e.parquet",
    "image.size": [28, 28], "image.channels": 3, "image.encoding": "png", "image.jpeg_quality": 80,
    "image.max_pixels": 1000, "augment.enabled": True, "augment.copies": 2, "augment.shared": False,
    "augment.resize": [30, 30], "augment.crop": [20, 20], "augment.interpolation": "linear", "augment.flip": True,
    "augment.rotation": 5.0, "augment.shear": 2.0, "augment.scale": [0.9, 1.1], "augment.translate": 0.1,
    "augment.brightness": 0.1, "augment.contrast": 0.1, "shards.shard_mb": 64.0, "shards.records_per_shard": 100,
    "shards.compression": "gzip",
}


def _config(src: Path, **overrides) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [24, 24], "split.fractions": {"train": 0.5, "test": 0.5},
            "build.workers": 1, "build.quiet": True, "build.manifest_only": True}
    base.update(overrides)
    return BuildConfig().override(base)


def _leaves(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= _leaves(v, key + ".") if isinstance(v, dict) and key != "split.fractions" else {key}
    return out


def test_changes_table_covers_every_fingerprinted_key() -> None:
    assert _leaves(BuildConfig().to_dict(hashed=True)) == set(CHANGES)


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_any_config_value_changes_the_fingerprint(key: str, tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=8)
    images = scan(src).images
    base = _config(src)
    value = CHANGES[key]
    if key == "sample.embeddings":  # hashed by content, so the file must exist
        (tmp_path / value).write_bytes(b"embeddings")
        value = str(tmp_path / value)
    changed = base.override({key: value})
    assert changed.to_dict(hashed=True) != base.to_dict(hashed=True)
    assert fingerprint(changed, images) != fingerprint(base, images)


def test_embeddings_are_hashed_by_content_not_path(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=8)
    images = scan(src).images
    for name, data in (("a.parquet", b"one"), ("b.parquet", b"one"), ("c.parquet", b"two")):
        (tmp_path / name).write_bytes(data)
    fps = [fingerprint(_config(src, **{"sample.embeddings": str(tmp_path / n)}), images)
           for n in ("a.parquet", "b.parquet", "c.parquet")]
    assert fps[0] == fps[1] != fps[2]


def test_run_options_and_paths_are_not_fingerprinted(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=8)
    images = scan(src).images
    base = _config(src)
    other = base.override({"source.path": "/somewhere/else", "build.workers": 7, "build.overwrite": True,
                           "build.keep_versions": True, "build.executor": "ray", "build.quiet": False})
    assert fingerprint(other, images) == fingerprint(base, images)


def test_fingerprint_is_sha256_of_the_documented_payload(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4)
    card = build(_config(src), tmp_path / "ds")
    catalog = mf.read_table(tmp_path / "ds" / "catalog.parquet")
    rows = sorted([p, c, s] for p, c, s in zip(catalog["path"], catalog["class_name"], catalog["sha256"]))
    payload = {"format_version": 1, "config": BuildConfig.from_dict(card["config"]).to_dict(hashed=True),
               "catalog": rows}
    assert card["fingerprint"] == hashlib.sha256(canonical_json(payload).encode("ascii")).hexdigest()
    assert "created_at" not in canonical_json(payload) and str(src) not in canonical_json(payload)


def test_one_source_byte_changes_the_fingerprint(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, ext=".bmp")  # raw pixel bytes stay valid
    before = build(_config(src), tmp_path / "a")
    victim = src / "class_01" / "img_002.bmp"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    victim.write_bytes(bytes(data))
    after = build(_config(src), tmp_path / "b")
    assert after["fingerprint"] != before["fingerprint"]
    cat_a = mf.read_table(tmp_path / "a" / "catalog.parquet").set_index("path")["sha256"]
    cat_b = mf.read_table(tmp_path / "b" / "catalog.parquet").set_index("path")["sha256"]
    assert list(cat_a.index[cat_a != cat_b]) == ["class_01/img_002.bmp"]


def test_seed_changes_the_fingerprint(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=6)
    a = build(_config(src, seed=0), tmp_path / "a")
    b = build(_config(src, seed=1), tmp_path / "b")
    assert a["fingerprint"] != b["fingerprint"]


def test_renamed_source_root_and_other_output_keep_the_fingerprint(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path / "one", classes=3, per_class=6)
    first = build(_config(src), tmp_path / "out1")
    moved = tmp_path / "two" / "renamed-root"
    moved.parent.mkdir()
    shutil.move(str(src), str(moved))
    second = build(_config(moved), tmp_path / "elsewhere" / "out2")
    assert second["fingerprint"] == first["fingerprint"]
    assert second["source"]["root"] != first["source"]["root"]
    for rel in first["files"]:
        assert (tmp_path / "out1" / rel).read_bytes() == (tmp_path / "elsewhere" / "out2" / rel).read_bytes()


def test_card_holds_identity_counts_and_file_digests(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=6)
    (src / "class_00" / "notes.txt").write_text("not an image")
    out = tmp_path / "ds"
    card = build(_config(src, **{"build.manifest_only": False, "shards.records_per_shard": 8}), out)
    assert card == read_card(out)
    assert (card["name"], card["version"], card["format_version"]) == ("dataset", "1.0.0", 1)
    assert card["pairgen_version"] == pairgen.__version__ and len(card["fingerprint"]) == 64
    assert dt.datetime.fromisoformat(card["created_at"]).tzinfo is not None
    assert card["image"] == {"height": 24, "width": 24, "channels": 1, "encoding": "raw"}
    assert card["source"]["images"] == 18 and card["source"]["classes"] == 3 and card["source"]["skipped"] == 1
    assert card["parent"] is None
    for split, counts in card["splits"].items():
        assert counts["positives"] + counts["negatives"] == counts["records"]
        table = mf.read_table(out / "manifests" / f"{split}.parquet")
        assert card["files"][f"manifests/{split}.parquet"]["records"] == len(table) == counts["records"]
        assert sum(e["records"] for e in card["shards"][split]) == counts["records"]
    for rel, meta in card["files"].items():
        assert mf.file_digest(out / rel) == (meta["bytes"], meta["sha256"])
    entries = [e for split in card["shards"].values() for e in split]
    assert len(entries) > 3
    for entry in entries:
        assert mf.file_digest(out / entry["path"]) == (entry["bytes"], entry["sha256"])
        assert sum(1 for _ in iter_records(out / entry["path"], read_data=False)) == entry["records"]
