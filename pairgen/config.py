"""Frozen, validated configuration for every stage, and the pipeline TOML format.

A pipeline file is TOML with one table per stage::

    name = "mnist-demo"
    version = "1.0.0"
    seed = 0
    kind = "pairs"                  # pairs | triplets

    [source]
    path = "../datasets/mnist-5k"   # relative to the pipeline file
    layout = "classes"              # classes | left-right | split-folders | table

    [split]
    by = "image"                    # image | class | folders
    fractions = { train = 0.8, val = 0.1, test = 0.1 }

    [sample]
    strategy = "per-image"

    [image]
    size = [28, 28]
    channels = 1
    encoding = "raw"

    [augment]
    enabled = false

    [shards]
    shard_mb = 128

    [build]
    workers = 0                     # 0 = all cores

Every table and key is optional; unknown keys are an error that names the key.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pairgen.errors import ConfigError


class _Choice(str, enum.Enum):
    """A closed set of string choices with a helpful ``from_value``."""

    @classmethod
    def from_value(cls, value: Any, option: str) -> "_Choice":
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value))
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls)
            raise ConfigError(
                f"{option} must be one of {allowed}; received: {option}={value!r}."
            ) from None

    def __str__(self) -> str:
        return self.value


class Layout(_Choice):
    CLASSES = "classes"
    LEFT_RIGHT = "left-right"
    SPLIT_FOLDERS = "split-folders"
    TABLE = "table"


class SplitBy(_Choice):
    IMAGE = "image"
    CLASS = "class"
    FOLDERS = "folders"


class Kind(_Choice):
    PAIRS = "pairs"
    TRIPLETS = "triplets"


class Encoding(_Choice):
    RAW = "raw"
    PNG = "png"
    JPEG = "jpeg"


class Compression(_Choice):
    NONE = "none"
    GZIP = "gzip"


class Executor(_Choice):
    LOCAL = "local"
    RAY = "ray"


class OnError(_Choice):
    SKIP = "skip"
    FAIL = "fail"


class Interpolation(_Choice):
    NEAREST = "nearest"
    LINEAR = "linear"
    AREA = "area"


PAIR_STRATEGIES = ("per-image", "balanced", "per-class", "exhaustive", "left-right", "hard")
TRIPLET_STRATEGIES = ("per-image", "balanced", "left-right", "hard")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _pair(value: Any, option: str) -> tuple[int, int] | None:
    """Parse ``[h, w]``, ``"HxW"`` or ``N`` into ``(h, w)``; ``None`` stays ``None``."""
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{option} must look like 'HxW' (e.g. 28x28); received: {value!r}.") from None
    elif isinstance(value, int):
        nums = [value, value]
    else:
        nums = [int(v) for v in value]
    if len(nums) == 1:
        nums = nums * 2
    _check(len(nums) == 2 and all(n > 0 for n in nums),
           f"{option} must be two positive integers [h, w]; received: {value!r}.")
    return (nums[0], nums[1])


@dataclass(frozen=True)
class SourceConfig:
    """Where the images are and how their labels are laid out."""

    path: str = "datasets/mnist-5k"
    layout: Layout = Layout.CLASSES
    class_depth: int = 0
    table: str | None = None
    min_per_class: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", Layout.from_value(self.layout, "source.layout"))
        _check(self.class_depth >= 0, f"source.class_depth must be >= 0; received: {self.class_depth}.")
        _check(self.min_per_class >= 0, f"source.min_per_class must be >= 0; received: {self.min_per_class}.")


@dataclass(frozen=True)
class SplitConfig:
    """How images are assigned to splits."""

    by: SplitBy = SplitBy.IMAGE
    fractions: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.1), ("test", 0.1))
    dedupe: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "by", SplitBy.from_value(self.by, "split.by"))
        fr = self.fractions
        if isinstance(fr, str):
            fr = parse_fractions(fr)
        elif isinstance(fr, Mapping):
            fr = tuple((str(k), float(v)) for k, v in fr.items())
        else:
            fr = tuple((str(k), float(v)) for k, v in fr)
        object.__setattr__(self, "fractions", fr)
        if self.by is not SplitBy.FOLDERS:
            _check(len(fr) > 0, "split.fractions must name at least one split, e.g. train=0.8,val=0.1,test=0.1.")
            _check(all(v >= 0 for _, v in fr), f"split.fractions must be >= 0; received: {dict(fr)}.")
            total = sum(v for _, v in fr)
            _check(abs(total - 1.0) < 1e-6,
                   f"split.fractions must sum to 1; received: {dict(fr)} (sum {total:g}). "
                   "Fix --splits or [split] fractions.")
            _check(len({k for k, _ in fr}) == len(fr), f"split.fractions repeats a split name: {dict(fr)}.")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.fractions)


def parse_fractions(text: str) -> tuple[tuple[str, float], ...]:
    """Parse ``"train=0.8,val=0.1,test=0.1"`` into ``(("train", 0.8), ...)``."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out.append((name.strip(), float(value)))
        except ValueError:
            raise ConfigError(
                f"--splits must look like train=0.8,val=0.1,test=0.1; received: {text!r}."
            ) from None
    return tuple(out)


@dataclass(frozen=True)
class SampleConfig:
    """Which pairs or triplets are drawn, and how many."""

    strategy: str = "per-image"
    positives_per_image: int = 1
    negatives_per_image: int = 1
    num_records: int = 10_000  # balanced: total over all splits, shared by their image counts
    positive_fraction: float = 0.5
    per_class: int = 10
    max_pairs_per_class: int = 1000
    unique: bool = False
    hard_k: int = 10
    embeddings: str | None = None

    def __post_init__(self) -> None:
        _check(self.positives_per_image >= 0, "sample.positives_per_image must be >= 0.")
        _check(self.negatives_per_image >= 0, "sample.negatives_per_image must be >= 0.")
        _check(self.num_records > 0, f"sample.num_records must be > 0; received: {self.num_records}.")
        _check(0.0 <= self.positive_fraction <= 1.0,
               f"sample.positive_fraction must be in [0, 1]; received: {self.positive_fraction}.")
        _check(self.per_class > 0, f"sample.per_class must be > 0; received: {self.per_class}.")
        _check(self.max_pairs_per_class > 0, "sample.max_pairs_per_class must be > 0.")
        _check(self.hard_k > 0, f"sample.hard_k must be > 0; received: {self.hard_k}.")

    def check_kind(self, kind: "Kind") -> None:
        allowed = PAIR_STRATEGIES if kind is Kind.PAIRS else TRIPLET_STRATEGIES
        _check(self.strategy in allowed,
               f"--strategy must be one of {', '.join(allowed)} for {kind.value}; "
               f"received: --strategy={self.strategy!r}.")


@dataclass(frozen=True)
class ImageConfig:
    """The fixed shape and encoding of every image in the records."""

    size: tuple[int, int] | None = None
    channels: int = 1
    encoding: Encoding = Encoding.RAW
    jpeg_quality: int = 95
    max_pixels: int = 89_478_485

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _pair(self.size, "image.size"))
        object.__setattr__(self, "encoding", Encoding.from_value(self.encoding, "image.encoding"))
        _check(self.channels in (1, 3), f"image.channels must be 1 or 3; received: {self.channels}.")
        _check(1 <= self.jpeg_quality <= 100, f"image.jpeg_quality must be in 1..100; received: {self.jpeg_quality}.")
        _check(self.max_pixels > 0, "image.max_pixels must be > 0.")


@dataclass(frozen=True)
class AugmentConfig:
    """Jitter (resize, random crop, resize, flip) and affine / photometric distortions."""

    enabled: bool = False
    copies: int = 1
    shared: bool = True
    resize: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    interpolation: Interpolation = Interpolation.NEAREST
    flip: bool = False
    rotation: float = 0.0
    shear: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translate: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "resize", _pair(self.resize, "augment.resize"))
        object.__setattr__(self, "crop", _pair(self.crop, "augment.crop"))
        object.__setattr__(self, "interpolation",
                           Interpolation.from_value(self.interpolation, "augment.interpolation"))
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        _check(self.copies >= 1, f"augment.copies must be >= 1; received: {self.copies}.")
        _check(len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1],
               f"augment.scale must be [min, max] with 0 < min <= max; received: {list(self.scale)}.")
        _check(self.rotation >= 0 and self.shear >= 0, "augment.rotation and augment.shear must be >= 0 (degrees).")
        _check(0 <= self.translate < 1, f"augment.translate must be in [0, 1); received: {self.translate}.")
        _check(0 <= self.brightness < 1 and 0 <= self.contrast < 1,
               "augment.brightness and augment.contrast must be in [0, 1).")
        if self.resize and self.crop:
            _check(self.crop[0] <= self.resize[0] and self.crop[1] <= self.resize[1],
                   f"augment.crop {list(self.crop)} must fit inside augment.resize {list(self.resize)}.")


@dataclass(frozen=True)
class ShardConfig:
    """How records are split into TFRecord files."""

    shard_mb: float = 128.0
    records_per_shard: int = 0
    compression: Compression = Compression.NONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "compression", Compression.from_value(self.compression, "shards.compression"))
        _check(self.shard_mb > 0, f"shards.shard_mb must be > 0; received: {self.shard_mb}.")
        _check(self.records_per_shard >= 0, "shards.records_per_shard must be >= 0.")


@dataclass(frozen=True)
class RunConfig:
    """How the build runs. Nothing here changes the output, so none of it is fingerprinted."""

    workers: int = 0
    executor: Executor = Executor.LOCAL
    ray_address: str | None = None  # an existing Ray cluster (else RAY_ADDRESS, else a private local Ray)
    on_error: OnError = OnError.SKIP
    manifest_only: bool = False
    overwrite: bool = False
    keep_versions: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "executor", Executor.from_value(self.executor, "build.executor"))
        object.__setattr__(self, "on_error", OnError.from_value(self.on_error, "build.on_error"))
        _check(self.workers >= 0, f"--workers must be >= 0 (0 = all cores); received: {self.workers}.")

    def resolved_workers(self) -> int:
        return self.workers or (os.cpu_count() or 1)


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs. ``to_dict(hashed=True)`` is what the fingerprint covers."""

    name: str = "dataset"
    version: str = "1.0.0"
    seed: int = 0
    kind: Kind = Kind.PAIRS
    source: SourceConfig = field(default_factory=SourceConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    build: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind.from_value(self.kind, "kind"))
        _check(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
               f"seed must be a non-negative integer; received: seed={self.seed!r}.")
        parts = str(self.version).split(".")
        _check(len(parts) == 3 and all(p.isdigit() for p in parts),
               f"version must be semantic (MAJOR.MINOR.PATCH); received: version={self.version!r}.")
        self.sample.check_kind(self.kind)
        if self.split.by is SplitBy.FOLDERS:
            _check(self.source.layout is Layout.SPLIT_FOLDERS,
                   "split.by='folders' needs source.layout='split-folders'; "
                   f"received: layout={self.source.layout.value!r}.")

    def replace(self, **changes: Any) -> "BuildConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self, *, hashed: bool = False) -> dict[str, Any]:
        """A JSON-ready dict. ``hashed=True`` drops what does not change the output."""
        out = _plain(dataclasses.asdict(self))
        if hashed:
            out.pop("build")
            out["source"].pop("path")
            out["source"].pop("table")
            if self.sample.embeddings:  # hash what the embeddings are, not where they are
                out["sample"]["embeddings"] = _file_sha256(self.sample.embeddings)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> "BuildConfig":
        """Build a config from a nested dict (a parsed pipeline file or ``dataset.json``)."""
        data = dict(data)
        tables = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in tables:
                raise ConfigError(f"unknown pipeline key {key!r}; valid keys: {', '.join(tables)}.")
            sub = _SECTIONS.get(key)
            if sub is None:
                kwargs[key] = value
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"[{key}] must be a table; received: {value!r}.")
            kwargs[key] = _section(sub, key, value)
        cfg = cls(**kwargs)
        if base_dir is not None:
            cfg = cfg.with_base_dir(base_dir)
        return cfg

    def with_base_dir(self, base_dir: Path) -> "BuildConfig":
        """Resolve relative source, table and embeddings paths against ``base_dir`` (the pipeline's folder)."""
        src = self.source
        path = src.path if os.path.isabs(src.path) else os.path.normpath(os.path.join(base_dir, src.path))
        table = src.table
        if table and not os.path.isabs(table):
            table = os.path.normpath(os.path.join(base_dir, table))
        sample = self.sample
        if sample.embeddings and not os.path.isabs(sample.embeddings):
            sample = dataclasses.replace(sample, embeddings=os.path.normpath(os.path.join(base_dir, sample.embeddings)))
        return self.replace(source=dataclasses.replace(src, path=path, table=table), sample=sample)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "BuildConfig":
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"pipeline file '{p}' does not exist. Check the path.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"pipeline file '{p}' is not valid TOML: {exc}.") from None
        try:
            return cls.from_dict(data, base_dir=p.parent)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None

    def override(self, dotted: Mapping[str, Any]) -> "BuildConfig":
        """Apply ``{"sample.strategy": "balanced", "seed": 3}`` style overrides (CLI flags)."""
        data = self.to_dict()
        for key, value in dotted.items():
            if value is None:
                continue
            section, _, name = key.rpartition(".")
            target = data[section] if section else data
            target[name] = value
        return BuildConfig.from_dict(data)

    def canonical_json(self) -> str:
        return canonical_json(self.to_dict(hashed=True))


_SECTIONS = {
    "source": SourceConfig,
    "split": SplitConfig,
    "sample": SampleConfig,
    "image": ImageConfig,
    "augment": AugmentConfig,
    "shards": ShardConfig,
    "build": RunConfig,
}


def _section(cls: type, name: str, values: Mapping[str, Any]) -> Any:
    valid = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in valid:
            raise ConfigError(f"unknown key {key!r} in [{name}]; valid keys: {', '.join(sorted(valid))}.")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"[{name}] has a value of the wrong type: {exc}.") from None


def _plain(obj: Any) -> Any:
    """JSON-ready values. Split fractions stay an ordered list of ``[name, fraction]``: the
    order decides which images go where, and JSON objects are written with sorted keys."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _file_sha256(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        raise ConfigError(f"sample.embeddings file '{path}' does not exist; make it with `pairgen embed`.") from None


def canonical_json(obj: Any) -> str:
    """Sorted-key, compact JSON: the only form that is ever hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
