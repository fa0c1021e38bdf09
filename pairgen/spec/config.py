"""Frozen, validated configuration for every stage, and the pipeline TOML format.

A pipeline file is TOML with one table per stage::

    name = "mnist-demo"
    version = "1.0.0"
    seed = 0
    kind = "pairs"                  # pairs | triplets | images

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pairgen.errors import ConfigError
from pairgen.spec.validation import (
    check_bool,
    check_int,
    check_number,
    check_size,
    check_split_name,
    check_str,
    received,
)


class _Choice(str, enum.Enum):
    """A closed set of string choices with a helpful ``from_value``."""

    @classmethod
    def from_value(cls, value: Any, option: str) -> Self:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            allowed = ", ".join(repr(m.value) for m in cls)
            raise ConfigError(f"{option} must be a string, one of {allowed}; {received(option, value)}.")
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
    IMAGES = "images"


# The strategy names of each record kind, in the order ``--help`` lists them. The samplers'
# registries (:mod:`pairgen.sampling`) implement exactly these; a test checks that they agree.
STRATEGIES: dict[Kind, tuple[str, ...]] = {
    Kind.PAIRS: ("per-image", "balanced", "per-class", "exhaustive", "left-right", "hard"),
    Kind.TRIPLETS: ("per-image", "balanced", "left-right", "hard"),
    Kind.IMAGES: ("per-image",),
}


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


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _pair(value: Any, option: str) -> tuple[int, int] | None:
    """Parse ``[h, w]``, ``"HxW"`` or ``N`` into ``(h, w)``; ``None`` stays ``None``.

    Each side must be an integer in ``1..MAX_SIDE`` (a float, boolean or string side is an error).
    """
    if value is None or value == [] or value == () or value == "":
        return None
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{option} must look like 'HxW' (e.g. 28x28); received: {value!r}.") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        nums = [value, value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        nums = list(value)
    else:
        raise ConfigError(f"{option} must be two integers [h, w] or 'HxW'; {received(option, value)}.")
    if len(nums) == 1:
        nums = nums * 2
    _check(len(nums) == 2 and all(n > 0 for n in nums),
           f"{option} must be two positive integers [h, w]; received: {value!r}.")
    check_size((nums[0], nums[1]), option)
    return (nums[0], nums[1])


@dataclass(frozen=True)
class SourceConfig:
    """Where the images are and how their labels are laid out."""

    path: str = "datasets/mnist-5k"
    layout: Layout = Layout.CLASSES
    class_depth: int = 0
    table: str | None = None
    min_per_class: int = 1
    allow_outside_root: bool = False

    def __post_init__(self) -> None:
        check_str(self.path, "source.path")
        object.__setattr__(self, "layout", Layout.from_value(self.layout, "source.layout"))
        check_int(self.class_depth, "source.class_depth", 0, 256)
        check_str(self.table, "source.table", optional=True)
        check_int(self.min_per_class, "source.min_per_class", 0, 10**9)
        check_bool(self.allow_outside_root, "source.allow_outside_root")


#: Cosine similarity of near-duplicate signatures (pairgen.scanning.near), calibrated on real
#: digits: see the README section "Near duplicates".
NEAR_THRESHOLD = 0.998
NEAR = "near"


@dataclass(frozen=True)
class SplitConfig:
    """How images are assigned to splits.

    ``dedupe``: ``False``; ``True`` (or ``"exact"``) keeps one copy of identical bytes;
    ``"near"`` also keeps each near-duplicate group (cosine >= ``near_threshold``) in one split.
    ``near_threshold`` is fingerprinted only with ``dedupe = "near"``: elsewhere it only
    changes what is reported.
    """

    by: SplitBy = SplitBy.IMAGE
    fractions: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.1), ("test", 0.1))
    dedupe: bool | str = False
    near_threshold: float = NEAR_THRESHOLD

    def __post_init__(self) -> None:
        object.__setattr__(self, "by", SplitBy.from_value(self.by, "split.by"))
        if self.dedupe == "exact":
            object.__setattr__(self, "dedupe", True)
        if self.dedupe != NEAR:
            try:
                check_bool(self.dedupe, "split.dedupe")
            except ConfigError as exc:
                raise ConfigError(f"{exc} Or \"near\" (also keep near duplicates in one split).") from None
        _check(isinstance(self.near_threshold, (int, float)) and not isinstance(self.near_threshold, bool)
               and 0.0 < self.near_threshold <= 1.0,
               f"split.near_threshold must be a cosine similarity in (0, 1]; received: {self.near_threshold!r}. "
               f"The default is {NEAR_THRESHOLD}.")
        object.__setattr__(self, "near_threshold", float(self.near_threshold))
        fr = normalize_fractions(self.fractions)
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


def normalize_fractions(value: Any) -> tuple[tuple[str, float], ...]:
    """``{name = fraction}``, ``[[name, fraction], ...]`` or ``"a=0.8,b=0.2"``, strictly typed."""
    if isinstance(value, str):
        items = list(parse_fractions(value))
    elif isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
        items = [tuple(v) for v in value]
    else:
        raise ConfigError("split.fractions must be a table like { train = 0.8, val = 0.1, test = 0.1 }; "
                          f"{received('split.fractions', value)}.")
    for name, fraction in items:
        check_split_name(name)
        check_number(fraction, f"split.fractions.{name}", 0, 1)
    return tuple((name, float(fraction)) for name, fraction in items)


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
    # Refuse a split where a class has one image (it cannot anchor a positive) instead of
    # letting such images serve only as negatives. Never changes a build that succeeds.
    strict_positives: bool = False

    def __post_init__(self) -> None:
        check_str(self.strategy, "sample.strategy")
        check_int(self.positives_per_image, "sample.positives_per_image", 0, 100_000)
        check_int(self.negatives_per_image, "sample.negatives_per_image", 0, 100_000)
        check_int(self.num_records, "sample.num_records", 1, 10**9)
        check_number(self.positive_fraction, "sample.positive_fraction", 0, 1)
        check_int(self.per_class, "sample.per_class", 1, 10**9)
        check_int(self.max_pairs_per_class, "sample.max_pairs_per_class", 1, 10**9)
        check_bool(self.unique, "sample.unique")
        check_int(self.hard_k, "sample.hard_k", 1, 100_000)
        check_str(self.embeddings, "sample.embeddings", optional=True)
        check_bool(self.strict_positives, "sample.strict_positives")

    def check_kind(self, kind: Kind) -> None:
        allowed = STRATEGIES[kind]
        if len(allowed) == 1:
            _check(self.strategy in allowed,
                   f"--strategy {self.strategy!r} does not apply to {kind.value} datasets: their only "
                   f"strategy is {allowed[0]!r} (the default). Remove --strategy / [sample] strategy.")
        _check(self.strategy in allowed,
               f"--strategy must be one of {', '.join(allowed)} for {kind.value}; "
               f"received: --strategy={self.strategy!r}.")

    def check_nonempty(self, kind: Kind) -> None:
        """Refuse per-image counts that leave the strategy nothing to draw (an empty dataset).

        Checked when a build starts, not when a config is read, so the card of an older dataset
        still loads.

        Raises:
            ConfigError: naming the options (and ``[sample]`` keys) that are 0.
        """
        keys = _COUNT_KEYS.get((kind, self.strategy), ())
        if not keys or any(getattr(self, key) for key in keys):
            return
        flags = " and ".join("--" + key.replace("_", "-") for key in keys)
        toml = ", ".join(keys)
        if len(keys) > 1:
            raise ConfigError(f"{flags} ([sample] {toml}) are both 0, so the {kind.value} strategy "
                              f"{self.strategy!r} draws no record and the dataset would be empty. "
                              "Set at least one of them to 1 or more.")
        raise ConfigError(f"{flags} ([sample] {toml}) is 0, so the {kind.value} strategy {self.strategy!r} "
                          "draws no record and the dataset would be empty. Set it to 1 or more.")


# The [sample] keys only pairs and triplets use: an images dataset samples nothing.
SAMPLING_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SampleConfig) if f.name != "strategy")


def refuse_images_sampling(given: list[str], source: str, fix: str) -> None:
    """Refuse pair/triplet sampling keys set for an images dataset (they would be ignored).

    Args:
        given: The keys or options as the user spelled them (``--positives-per-image``).
        source: Where the kind ``images`` came from, for the message (``--kind images``).
        fix: What to remove them from (``from the command line``).

    Raises:
        ConfigError: naming ``given``, unless it is empty.
    """
    if not given:
        return
    names = ", ".join(given)
    verb = "does" if len(given) == 1 else "do"
    raise ConfigError(f"{names} {verb} not apply to images datasets ({source}): they do not sample, they hold "
                      f"one record per image. Remove {names} {fix}.")


# The per-image counts each strategy draws from (a strategy not listed uses neither).
_COUNT_KEYS: dict[tuple[Kind, str], tuple[str, ...]] = {
    (Kind.PAIRS, "per-image"): ("positives_per_image", "negatives_per_image"),
    (Kind.PAIRS, "hard"): ("positives_per_image", "negatives_per_image"),
    (Kind.TRIPLETS, "per-image"): ("positives_per_image",),
    (Kind.TRIPLETS, "hard"): ("positives_per_image",),
    (Kind.TRIPLETS, "left-right"): ("negatives_per_image",),
}


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
        check_int(self.channels, "image.channels")
        _check(self.channels in (1, 3), f"image.channels must be 1 or 3; received: {self.channels}.")
        check_int(self.jpeg_quality, "image.jpeg_quality", 1, 100)
        check_int(self.max_pixels, "image.max_pixels", 1, 1 << 40)
        check_size(self.size, "image.size", self.channels)


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
        for key in ("enabled", "shared", "flip"):
            check_bool(getattr(self, key), f"augment.{key}")
        check_int(self.copies, "augment.copies", 1, 1000)
        _check(isinstance(self.scale, (list, tuple)) and len(self.scale) == 2,
               f"augment.scale must be [min, max]; {received('augment.scale', self.scale)}.")
        for s in self.scale:
            check_number(s, "augment.scale", 0, 100, open_lo=True)
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        _check(self.scale[0] <= self.scale[1],
               f"augment.scale must be [min, max] with 0 < min <= max; received: {list(self.scale)}.")
        check_number(self.rotation, "augment.rotation", 0, 360)
        check_number(self.shear, "augment.shear", 0, 90, open_hi=True)
        for key in ("translate", "brightness", "contrast"):
            check_number(getattr(self, key), f"augment.{key}", 0, 1, open_hi=True)
        if self.resize and self.crop:
            _check(self.crop[0] <= self.resize[0] and self.crop[1] <= self.resize[1],
                   f"augment.crop {list(self.crop)} must fit inside augment.resize {list(self.resize)}.")

    def check_active(self) -> None:
        """Refuse ``enabled`` with nothing random to do (it would write every record unchanged).

        Checked when a build starts, not when a config is read, so the card of an older dataset
        still loads.

        Raises:
            ConfigError: naming the ``[augment]`` keys to set.
        """
        _check(not self.enabled or self.is_random(),
               "augment.enabled is true (--augment) but no random transform is set, so every record "
               "would be written unchanged. Set at least one of [augment] crop, flip, rotation, shear, "
               "scale, translate, brightness, contrast (the Omniglot jitter: resize = [130, 130], "
               "crop = [105, 105], flip = true), or drop --augment / enabled = true.")

    def is_random(self) -> bool:
        """True if some transform draws random values (a resize alone does not)."""
        return bool(self.crop or self.flip or self.rotation or self.shear or self.translate
                    or self.brightness or self.contrast or tuple(self.scale) != (1.0, 1.0))


@dataclass(frozen=True)
class ShardConfig:
    """How records are split into TFRecord files."""

    shard_mb: float = 128.0
    records_per_shard: int = 0
    compression: Compression = Compression.NONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "compression", Compression.from_value(self.compression, "shards.compression"))
        check_number(self.shard_mb, "shards.shard_mb", 0, 1_000_000, open_lo=True)
        check_int(self.records_per_shard, "shards.records_per_shard", 0, 10**9)


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
        check_int(self.workers, "build.workers", 0, 1024)
        for key in ("manifest_only", "overwrite", "keep_versions", "quiet"):
            check_bool(getattr(self, key), f"build.{key}")

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
        check_str(self.name, "name")
        check_str(self.version, "version")
        check_size(self.augment.resize, "augment.resize", self.image.channels)
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

    def replace(self, **changes: Any) -> BuildConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self, *, hashed: bool = False) -> dict[str, Any]:
        """A JSON-ready dict. ``hashed=True`` drops what does not change the output."""
        out = _plain(dataclasses.asdict(self))
        if hashed:
            out.pop("build")
            out["source"].pop("path")
            out["source"].pop("table")
            out["source"].pop("allow_outside_root")  # which files were used is hashed with the catalog
            out["sample"].pop("strict_positives")  # it only refuses: a build it allows is the same without it
            if self.split.dedupe != NEAR:  # the threshold then only changes reports
                out["split"].pop("near_threshold")
            if self.kind is Kind.IMAGES:  # one record per image: no pair or triplet parameter is used
                out["sample"] = {"strategy": self.sample.strategy}
            elif self.sample.embeddings:  # hash what the embeddings are, not where they are
                out["sample"]["embeddings"] = _file_sha256(self.sample.embeddings)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> BuildConfig:
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

    def with_base_dir(self, base_dir: Path) -> BuildConfig:
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
    def from_toml(cls, path: str | os.PathLike) -> BuildConfig:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"pipeline file '{p}' does not exist. Check the path.") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"pipeline file '{p}' is not UTF-8 text (byte {exc.start}); "
                              "save it as UTF-8 TOML.") from None
        except OSError as exc:
            raise ConfigError(f"pipeline file '{p}' cannot be read: {exc.strerror or exc}.") from None
        except tomllib.TOMLDecodeError as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"pipeline file '{p}' is not valid TOML: {detail}.") from None
        try:
            config = cls.from_dict(data, base_dir=p.parent)
            sample = data.get("sample", {})
            if config.kind is Kind.IMAGES:
                refuse_images_sampling([f"sample.{key}" for key in sample if key in SAMPLING_KEYS],
                                       'kind = "images"', "from the [sample] table")
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None
        return config

    def override(self, dotted: Mapping[str, Any]) -> BuildConfig:
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
