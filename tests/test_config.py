"""Config parsing, validation and overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pairgen.errors import ConfigError
from pairgen.spec.config import BuildConfig, Encoding, Kind, Layout, SplitBy, parse_fractions

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "pipelines").glob("*.toml")))
def test_shipped_pipelines_parse(name: str) -> None:
    cfg = BuildConfig.from_toml(ROOT / "pipelines" / name)
    assert Path(cfg.source.path).is_absolute()
    assert cfg.name == name.removesuffix(".toml")


def test_demo_pipeline_resolves_source_relative_to_file() -> None:
    cfg = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml")
    assert Path(cfg.source.path) == ROOT / "datasets" / "mnist-5k"
    assert cfg.kind is Kind.PAIRS and cfg.source.layout is Layout.CLASSES
    assert cfg.image.size == (28, 28) and cfg.image.encoding is Encoding.RAW


def test_override_applies_dotted_keys_and_validates() -> None:
    cfg = BuildConfig().override({"seed": 7, "sample.strategy": "balanced", "image.size": "32x30",
                                  "split.fractions": {"train": 0.5, "test": 0.5}})
    assert cfg.seed == 7 and cfg.sample.strategy == "balanced"
    assert cfg.image.size == (32, 30)
    assert cfg.split.names == ("train", "test")


def test_split_order_survives_json_and_is_hashed() -> None:
    cfg = BuildConfig().override({"split.fractions": {"train": 0.8, "val": 0.1, "test": 0.1}})
    data = json.loads(json.dumps(cfg.to_dict(), sort_keys=True))
    assert BuildConfig.from_dict(data).split.names == ("train", "val", "test")
    swapped = cfg.override({"split.fractions": {"train": 0.8, "test": 0.1, "val": 0.1}})
    assert swapped.canonical_json() != cfg.canonical_json()


def test_hashed_dict_drops_paths_and_run_options() -> None:
    a = BuildConfig().override({"source.path": "/a", "build.workers": 1})
    b = BuildConfig().override({"source.path": "/b", "build.workers": 4})
    assert a.canonical_json() == b.canonical_json()
    assert a.canonical_json() != a.override({"seed": 1}).canonical_json()


def test_round_trip_through_dict() -> None:
    cfg = BuildConfig().override({"augment.enabled": True, "augment.resize": [130, 130],
                                  "augment.crop": [105, 105], "split.by": "class"})
    assert BuildConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.split.by is SplitBy.CLASS


def test_parse_fractions() -> None:
    assert parse_fractions("train=0.8, val=0.1,test=0.1") == (("train", 0.8), ("val", 0.1), ("test", 0.1))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"split.fractions": {"train": 0.8, "test": 0.1}}, "must sum to 1"),
        ({"split.fractions": "train=a"}, "must look like train=0.8"),
        ({"image.channels": 2}, "image.channels must be 1 or 3"),
        ({"image.encoding": "gif"}, "image.encoding must be one of 'raw', 'png', 'jpeg'"),
        ({"image.size": "28by28"}, "image.size must look like 'HxW'"),
        ({"kind": "quads"}, "kind must be one of"),
        ({"sample.strategy": "exhaustive", "kind": "triplets"}, "--strategy must be one of"),
        ({"sample.positive_fraction": 1.5}, r"positive_fraction must be in \[0, 1\]"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"version": "1.0"}, "version must be semantic"),
        ({"augment.resize": [100, 100], "augment.crop": [105, 105]}, "must fit inside augment.resize"),
        ({"split.by": "folders"}, "needs source.layout='split-folders'"),
        ({"source.layout": "zip"}, "source.layout must be one of"),
    ],
)
def test_bad_values_name_the_option(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BuildConfig().override(overrides)


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_text('name = "x"\n[sample]\nstratgy = "balanced"\n')
    with pytest.raises(ConfigError, match=r"p.toml: unknown key 'stratgy' in \[sample\]"):
        BuildConfig.from_toml(p)
    p.write_text('nmae = "x"\n')
    with pytest.raises(ConfigError, match="unknown pipeline key 'nmae'"):
        BuildConfig.from_toml(p)


def test_missing_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        BuildConfig.from_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        BuildConfig.from_toml(bad)
