"""Shared machinery for pair, triplet and image samplers.

Every strategy works on a :class:`ClassIndex`: the images of one split sorted by class once,
with per-class offsets and counts, so that "a random member of class c" is
``offsets[c] + floor(u * counts[c])`` and every draw is a vectorized array operation. A
sampler subclass implements one method (``sample``) that returns positions into that index;
the base class validates the input frame and the parameters, runs the subclass once per split,
checks every guarantee on the result, and assembles the output frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pairgen.errors import ConfigError, SampleError
from pairgen.sampling.rounding import largest_remainder
from pairgen.spec.config import SampleConfig
from pairgen.spec.schema import IMAGES, PAIRS, TRIPLETS

Positions = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class SampleParams:
    """One sampler call's parameters: a ``[sample]`` config's fields as the build resolved them.

    Built only by :meth:`from_kwargs`, which validates through
    :class:`~pairgen.spec.config.SampleConfig`, so the API and the TOML config share one set of rules.
    The two differences are resolved values: ``num_records`` is one split's share (0 for a
    split that gets none) and ``embeddings`` is the array, not the file it was read from.
    """

    positives_per_image: int = 1
    negatives_per_image: int = 1
    num_records: int = 10_000
    positive_fraction: float = 0.5
    per_class: int = 10
    max_pairs_per_class: int = 1000
    unique: bool = False
    hard_k: int = 10
    strict_positives: bool = False
    embeddings: np.ndarray | None = None

    @classmethod
    def from_kwargs(cls, params: dict[str, Any]) -> SampleParams:
        """Validate the known keys (``None`` means default) as ``[sample]`` does; ignore the rest.

        Raises:
            SampleError: a value ``SampleConfig`` would refuse, with its message.
        """
        given = {k: _plain(v) for k, v in params.items() if k in _CONFIG_FIELDS and v is not None}
        try:
            config = SampleConfig(**given)
        except ConfigError as err:
            raise SampleError(str(err)) from None
        return cls.from_config(config, embeddings=params.get("embeddings"))

    @classmethod
    def from_config(cls, config: SampleConfig, embeddings: np.ndarray | None = None) -> SampleParams:
        """The parameters of an already validated ``[sample]`` config (``embeddings``: the array)."""
        return cls(**{name: getattr(config, name) for name in _CONFIG_FIELDS}, embeddings=embeddings)

    def share(self, num_records: int) -> SampleParams:
        """The same parameters with one split's share of ``num_records`` (may be 0)."""
        return dataclasses.replace(self, num_records=int(num_records))


_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(SampleConfig) if f.name not in ("strategy", "embeddings"))


def _plain(value: Any) -> Any:
    """NumPy scalars as Python ones, so ``np.int64(3)`` passes the config's integer check."""
    return value.item() if isinstance(value, np.generic) else value


def uniform_int(rng: np.random.Generator, high: np.ndarray | int,
                size: int | tuple[int, ...] | None = None) -> np.ndarray:
    """A uniform integer in ``0..high-1`` for every element of ``high`` (each >= 1)."""
    if np.ndim(high) == 0:
        return rng.integers(0, int(high), size, dtype=np.int64)
    u = rng.random(np.shape(high))
    # u <= 1 - 2**-53, so u * high rounds to a float below high for any integer high < 2**53:
    # the floor never reaches high and no clipping is needed.
    u *= high
    return u.astype(np.int64)


@dataclass(frozen=True)
class ClassIndex:
    """One split's images sorted by class: the structure every strategy samples from."""

    split: str | None
    ids: np.ndarray        # image_id at each sorted position
    classes: np.ndarray    # class_id at each sorted position
    dense: np.ndarray      # dense class number (0..C-1) at each sorted position
    class_ids: np.ndarray  # class_id of each dense class
    offsets: np.ndarray    # first sorted position of each dense class
    counts: np.ndarray     # images in each dense class
    rows: np.ndarray       # sorted position of each input row, in input order
    is_right: np.ndarray | None  # side == "right" at each sorted position (left-right only)
    names: dict[int, str]  # class_id -> display name, for error messages

    @classmethod
    def build(cls, split: str | None, ids: np.ndarray, classes: np.ndarray,
              is_right: np.ndarray | None, names: dict[int, str]) -> ClassIndex:
        """Sort once by class (left before right inside a class) and compute the offsets."""
        order = np.argsort(classes, kind="stable") if is_right is None else np.lexsort((is_right, classes))
        sorted_classes = classes[order]
        class_ids, offsets, counts = np.unique(sorted_classes, return_index=True, return_counts=True)
        rows = np.empty_like(order)
        rows[order] = np.arange(order.size)
        dense = np.repeat(np.arange(class_ids.size, dtype=np.int64), counts)
        return cls(split, ids[order], sorted_classes, dense, class_ids, offsets.astype(np.int64),
                   counts.astype(np.int64), rows, None if is_right is None else is_right[order], names)

    @property
    def n(self) -> int:
        return int(self.ids.size)

    @property
    def num_classes(self) -> int:
        return int(self.class_ids.size)

    def name(self, dense_class: int) -> str:
        class_id = int(self.class_ids[dense_class])
        return self.names.get(class_id, str(class_id))

    @property
    def where(self) -> str:
        return "the images" if self.split is None else f"split '{self.split}'"

    def member(self, c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random member of each dense class in ``c``."""
        return np.take(self.offsets, c) + uniform_int(rng, np.take(self.counts, c))

    def other_member(self, pos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Another member of the class of each position, never the position itself."""
        c = np.take(self.dense, pos)
        q = np.take(self.offsets, c) + uniform_int(rng, np.take(self.counts, c) - 1)
        q += q >= pos
        return q

    def other_class_image(self, pos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random image of the split outside the class of each position."""
        c = np.take(self.dense, pos)
        size = np.take(self.counts, c)
        r = uniform_int(rng, self.n - size)
        r += (r >= np.take(self.offsets, c)) * size
        return r

    def other_class(self, c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random dense class different from each class in ``c``."""
        d = uniform_int(rng, self.num_classes - 1, c.shape)
        d += d >= c
        return d

    def require_positives(self, what: str) -> None:
        """Raise if any class has a single image (it cannot form a positive)."""
        single = np.flatnonzero(self.counts < 2)
        if single.size:
            raise SampleError(
                f"class '{self.name(int(single[0]))}' in {self.where} has 1 image; {what} need at least 2 "
                f"({single.size} such class(es)) with --strict-positives. Without it, single-image classes "
                "serve only as negatives; or keep only classes of 2+ images in every split with "
                "--min-per-class 2 and --split-by class together.")

    def positive_anchors(self, anchors: np.ndarray, params: SampleParams, what: str) -> np.ndarray | None:
        """Which ``anchors`` can have a positive: ``None`` when all can (the common case).

        A class with one image in the split cannot anchor a positive; such images still serve as
        negatives. With ``strict_positives`` the split is refused instead (:meth:`require_positives`).
        """
        if params.strict_positives:
            self.require_positives(what)
            return None
        ok = np.take(self.counts, np.take(self.dense, anchors)) >= 2
        return None if ok.all() else ok

    def require_negatives(self, what: str) -> None:
        """Raise if the split has fewer than two classes (no negative exists)."""
        if self.num_classes < 2:
            only = f" ('{self.name(0)}')" if self.num_classes else ""
            raise SampleError(
                f"{self.where} has only {self.num_classes} class(es){only}; {what} need at least 2 classes. "
                "Use a source with more classes, change --splits, or ask for no negatives.")


def per_anchor(has_pos: np.ndarray, anchor: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray],
               ) -> Positions:
    """Records group by group: a group's positives (where ``has_pos``), then its negatives.

    ``anchor`` and ``other`` are ``(positives, negatives)`` position arrays shaped
    ``[groups with has_pos, n_pos]`` and ``[groups, n_neg]``. Returns ``(anchor, other, label)``
    in group order, which is what the strategies emit when every group has positives.
    """
    n_pos, n_neg = anchor[0].shape[1], anchor[1].shape[1]
    per = np.where(has_pos, n_pos + n_neg, n_neg).astype(np.int64)
    starts = np.cumsum(per) - per
    pos_at = (starts[has_pos][:, None] + np.arange(n_pos)).ravel()
    neg_at = ((starts + np.where(has_pos, n_pos, 0))[:, None] + np.arange(n_neg)).ravel()
    a, b, label = (np.empty(int(per.sum()), np.int64) for _ in range(3))
    a[pos_at], a[neg_at] = anchor[0].ravel(), anchor[1].ravel()
    b[pos_at], b[neg_at] = other[0].ravel(), other[1].ravel()
    label[pos_at], label[neg_at] = 1, 0
    return a, b, label


def check_images(images: pd.DataFrame, *, left_right: bool) -> None:
    """Check that ``images`` has the columns and values a sampler needs.

    Raises:
        SampleError: naming the missing column or the bad value.
    """
    needed = ["image_id", "class_id", "split"] + (["side", "key"] if left_right else [])
    missing = [c for c in needed if c not in images.columns]
    if missing:
        raise SampleError(f"images frame lacks column(s) {missing}; it needs {needed} "
                          "(pass Catalog.images from pairgen.scan / pairgen.split).")
    for col in ("image_id", "class_id"):
        if not pd.api.types.is_integer_dtype(images[col].dtype):
            raise SampleError(f"images.{col} must be integers; received dtype {images[col].dtype}.")
    if images["image_id"].duplicated().any():
        raise SampleError("images.image_id has duplicates; every image needs a unique id.")
    if left_right:
        sides = set(images["side"].dropna().unique()) - {"left", "right"}
        if sides or images["side"].isna().any():
            raise SampleError("images.side must be 'left' or 'right' for the left-right strategy; "
                              f"received: {sorted(map(str, sides)) or [None]}. Scan with --layout left-right.")


def split_groups(images: pd.DataFrame) -> list[tuple[str | None, np.ndarray]]:
    """Row numbers of each split value, in sorted split-name order (all ``None`` = one group)."""
    codes, names = pd.factorize(images["split"], sort=True, use_na_sentinel=True)
    codes = np.asarray(codes)
    if names.size == 0:
        return [(None, np.arange(len(images)))]
    if (codes < 0).any():
        raise SampleError("images.split is missing for some rows but set for others; "
                          "run pairgen.split on the whole catalog first.")
    if names.size == 1:
        return [(str(names[0]), np.arange(len(images)))]
    return [(str(name), np.flatnonzero(codes == k)) for k, name in enumerate(names)]


def build_indexes(images: pd.DataFrame, *, left_right: bool) -> list[ClassIndex]:
    """One :class:`ClassIndex` per split."""
    ids = images["image_id"].to_numpy(np.int64)
    classes = images["class_id"].to_numpy(np.int64)
    is_right = (images["side"] == "right").to_numpy(bool) if left_right else None
    names = _class_names(images, left_right)
    out = []
    for split, rows in split_groups(images):
        out.append(ClassIndex.build(split, ids[rows], classes[rows],
                                    None if is_right is None else is_right[rows], names))
    return out


def _class_names(images: pd.DataFrame, left_right: bool) -> dict[int, str]:
    col = "key" if left_right else "class_name"
    if col not in images.columns:
        return {}
    pairs = images[["class_id", col]].drop_duplicates("class_id")
    return dict(zip(pairs["class_id"].to_numpy(np.int64).tolist(), pairs[col].astype(str)))


def allocate(total: int, sizes: list[int]) -> list[int]:
    """Split ``total`` over groups in proportion to ``sizes`` (largest remainder, ties by order)."""
    sizes_arr = np.asarray(sizes, dtype=np.float64)
    if total == 0 or sizes_arr.sum() == 0:
        return [0] * len(sizes)
    return largest_remainder(total * sizes_arr / sizes_arr.sum(), total).tolist()


def split_column(splits: list[str | None], lengths: list[int]) -> pd.Categorical:
    """The output ``split`` column: a Categorical (1 byte per row instead of an 8-byte pointer)."""
    cats = [s for s in dict.fromkeys(splits) if s is not None]
    dtype = np.int8 if len(cats) < 127 else np.int32
    codes = np.repeat(np.array([cats.index(s) if s is not None else -1 for s in splits], dtype=dtype),
                      lengths)
    return pd.Categorical.from_codes(codes, categories=pd.Index(cats, dtype=object))


def first_unique(keys: list[np.ndarray]) -> np.ndarray:
    """Row numbers of the first occurrence of each distinct key tuple, in row order."""
    if keys[0].size == 0:
        return np.arange(0)
    order = np.lexsort(keys[::-1])
    same = np.ones(order.size - 1, dtype=bool)
    for key in keys:
        sorted_key = key[order]
        same &= sorted_key[1:] == sorted_key[:-1]
    # lexsort is stable, so the first row of each run of equal keys is the first occurrence.
    new = np.ones(order.size, dtype=bool)
    new[1:] = ~same
    return np.sort(order[new])


class Sampler:
    """Base class: validates input and parameters, runs ``sample`` per split, checks the result.

    Subclasses set ``name`` (and ``left_right = True`` if they need ``side``/``key``) and
    implement :meth:`sample`.
    """

    name: ClassVar[str] = ""
    left_right: ClassVar[bool] = False
    columns: ClassVar[tuple[str, ...]] = ()

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        """Return position arrays into ``index`` (one split). Implemented by each strategy."""
        raise NotImplementedError

    def shares(self, indexes: list[ClassIndex], params: SampleParams) -> list[SampleParams]:
        """Per-split parameters; ``num_records`` is divided in proportion to split size."""
        counts = allocate(params.num_records, [ix.n for ix in indexes])
        return [params.share(k) for k in counts]

    def __call__(self, images: pd.DataFrame, *, rng: np.random.Generator, resolved: SampleParams | None = None,
                 **params: Any) -> pd.DataFrame:
        """Sample ``images``; parameters as keywords, or ``resolved`` (the build's, already checked)."""
        if not isinstance(rng, np.random.Generator):
            raise SampleError(f"rng must be a numpy.random.Generator; received: {type(rng).__name__}.")
        check_images(images, left_right=self.left_right)
        p = resolved if resolved is not None else SampleParams.from_kwargs(params)
        indexes = build_indexes(images, left_right=self.left_right)
        parts = []
        for index, share in zip(indexes, self.shares(indexes, p)):
            pos = self.sample(index, share, rng=rng)
            parts.append(self.finish(index, [np.asarray(x, dtype=np.int64) for x in pos]))
        cols = {name: _concat([part[name] for part in parts]) for name in self.columns}
        lengths = [len(part[self.columns[0]]) for part in parts]
        if p.unique:
            keep = self.unique_rows(cols)
            if keep.size < sum(lengths):
                lengths = np.bincount(np.repeat(np.arange(len(parts)), lengths)[keep],
                                      minlength=len(parts)).tolist()
                cols = {k: v[keep] for k, v in cols.items()}
        return pd.DataFrame({**cols, "split": split_column([ix.split for ix in indexes], lengths)}, copy=False)

    def finish(self, index: ClassIndex, pos: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Turn one split's positions into output columns, checking every guarantee."""
        raise NotImplementedError

    def unique_rows(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        """Rows kept by ``unique=True`` (first occurrences, in order)."""
        raise NotImplementedError


class PairSampler(Sampler):
    """Base of pair strategies: ``sample`` returns ``(a_pos, b_pos, label)``."""

    columns = PAIRS.sample_columns

    def finish(self, index: ClassIndex, pos: list[np.ndarray]) -> dict[str, np.ndarray]:
        a, b, label = pos
        a_class, b_class = np.take(index.classes, a), np.take(index.classes, b)
        if (a == b).any():
            raise broken(self.name, "a self-pair")
        if not np.array_equal(label == 1, a_class == b_class) or ((label != 0) & (label != 1)).any():
            raise broken(self.name, "a pair whose label disagrees with its classes")
        return {"a_id": np.take(index.ids, a), "b_id": np.take(index.ids, b), "label": label,
                "a_class": a_class, "b_class": b_class}

    def unique_rows(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        a, b = cols["a_id"], cols["b_id"]
        return first_unique([np.minimum(a, b), np.maximum(a, b)])


class TripletSampler(Sampler):
    """Base of triplet strategies: ``sample`` returns ``(anchor_pos, positive_pos, negative_pos)``."""

    columns = TRIPLETS.sample_columns

    def finish(self, index: ClassIndex, pos: list[np.ndarray]) -> dict[str, np.ndarray]:
        a, p, n = pos
        a_class, n_class = np.take(index.classes, a), np.take(index.classes, n)
        if (a == p).any():
            raise broken(self.name, "a triplet whose positive is its anchor")
        if not np.array_equal(a_class, np.take(index.classes, p)):
            raise broken(self.name, "a triplet whose positive has another class")
        if (a_class == n_class).any():
            raise broken(self.name, "a triplet whose negative has the anchor's class")
        return {"anchor_id": np.take(index.ids, a), "positive_id": np.take(index.ids, p),
                "negative_id": np.take(index.ids, n),
                "anchor_class": a_class, "negative_class": n_class}

    def unique_rows(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        return first_unique([cols["anchor_id"], cols["positive_id"], cols["negative_id"]])


class ImageSampler(Sampler):
    """Base of images strategies: ``sample`` returns ``(image_pos,)``, one record per position."""

    columns = IMAGES.sample_columns

    def finish(self, index: ClassIndex, pos: list[np.ndarray]) -> dict[str, np.ndarray]:
        (p,) = pos
        return {"image_id": np.take(index.ids, p), "class_id": np.take(index.classes, p)}

    def unique_rows(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        return first_unique([cols["image_id"]])


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def broken(strategy: str, what: str) -> RuntimeError:
    """An internal guarantee failed: a bug in a sampler, never a user error."""
    return RuntimeError(f"sampler '{strategy}' produced {what}; this is a bug in pairgen.sampling.")
