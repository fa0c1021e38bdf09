"""Scan a source (folders or a label table) into a :class:`Catalog` of images.

The walk is sorted (folders and files by name, never file-system order) and ``image_id`` is
the row number in sorted relative-path order, so the same tree gives the same catalog on any
machine. Every file is read once, in blocks of files spread over worker processes
(:mod:`pairgen.scanning.blocks`): the bytes feed the sha256, the header parser and, for a build, one
decode check. The main process walks the folders while the workers read, and joins their
results column by column. Nothing is lost silently: each file that is not used lands in
``Catalog.skipped`` with the reason.

A scan is four steps, composed by :func:`scan_source` (and :func:`scan`, which returns just
the catalog): walk and label (:func:`pairgen.scanning.labels.walk_source`), read the blocks
(:func:`pairgen.scanning.blocks.read_blocks`), keep the usable images (:func:`usable_images`)
and assemble the :class:`Catalog`. A :class:`~pairgen.scanning.timing.StageClock` wrapped
around the steps times them; nothing inside a step measures time.

Layouts:

* ``classes``: every folder that directly holds images is a class named by its path relative
  to the root (``Latin/character07``); ``class_depth=N`` groups by the first N levels instead.
* ``left-right``: ``root/left/X.ext`` and ``root/right/X.ext`` form identity ``X``.
* ``split-folders``: ``root/<split>/<class>/...``; the first level is ``folder_split``.
* ``table``: a CSV or Parquet file with ``path,label`` columns (and optionally ``split``);
  paths are relative to the table's folder.

Odd trees: a name that is not valid UTF-8 is skipped (``undecodable name``); a symlink that
leads outside the root is skipped (``outside root``) unless ``allow_outside_root``, and then
followed with loop protection; a symlinked folder that points inside the root is skipped
(its images are scanned under their real folder); special files (FIFOs, devices) are skipped,
never opened. A table row whose path leaves the table's folder is skipped (``outside root``)
without touching the file; a path listed with two different labels is skipped on every row
(``conflicting labels``). Class and split names are validated as data (no ``..``, no control
characters). Images over ``max_pixels`` (read from the header) are skipped (``too large``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pairgen.errors import ScanError
from pairgen.scanning.blocks import Columns, Skipped, join_blocks, read_blocks
from pairgen.scanning.labels import IMAGE_EXTENSIONS, Walked, walk_source
from pairgen.scanning.near import DEFAULT_THRESHOLD, near_report
from pairgen.scanning.options import DEFAULT_MAX_PIXELS, ScanOptions
from pairgen.scanning.timing import ScanTimings, StageClock
from pairgen.spec.config import ImageConfig, Layout
from pairgen.spec.schema import IMAGE_COLUMNS, SKIPPED_COLUMNS

__all__ = ["IMAGE_COLUMNS", "IMAGE_EXTENSIONS", "Catalog", "ScanOptions", "ScanResult", "ScanTimings",
           "label_conflicts", "normalize_images", "reason_kind", "scan", "scan_source", "skipped_frame",
           "summarize", "usable_images"]

_INT_COLUMNS = ("image_id", "class_id", "bytes", "width", "height", "channels")
_OBJECT_COLUMNS = ("split", "folder_split", "side", "key")


@dataclass(frozen=True, eq=False)
class Catalog:
    """The scanned images of one source.

    Attributes:
        root: Absolute path of the source root (for a table: the table's folder).
        layout: How labels were read from the source.
        images: One row per used image; columns :data:`IMAGE_COLUMNS`, in that order.
        skipped: One row per file not used; columns ``path`` (relative posix) and ``reason``.
        signatures: Near-duplicate signatures (:mod:`pairgen.scanning.near`), ``(n, 256)`` int8
            indexed by ``image_id`` (rows of dropped images stay, unused); ``None`` when the
            scan did not compute them.
    """

    root: str
    layout: Layout
    images: pd.DataFrame
    skipped: pd.DataFrame
    signatures: np.ndarray | None = None

    def signature_rows(self, images: pd.DataFrame | None = None) -> np.ndarray | None:
        """The signatures of ``images`` (default: this catalog's images), row for row."""
        if self.signatures is None:
            return None
        ids = (self.images if images is None else images)["image_id"].to_numpy(np.int64)
        if len(ids) == len(self.signatures) and (np.diff(ids) == 1).all() and (not len(ids) or ids[0] == 0):
            view = self.signatures.view()  # all of them, in order: no copy, and none written through
            view.flags.writeable = False
            return view
        return self.signatures[ids]

    @property
    def class_names(self) -> list[str]:
        """Sorted unique class names; ``class_id`` indexes this list."""
        return sorted(self.images["class_name"].unique().tolist())

    def replace(self, **changes: Any) -> Catalog:
        """A copy with some fields replaced (the catalog itself is frozen)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ScanResult:
    """What a scan returns besides the catalog.

    Attributes:
        catalog: The scanned images and the skipped files.
        undecodable: Relative path -> reason, for catalog images that the decode check
            (``check``) could not decode; empty without a check.
        timings: Seconds of each stage of the scan.
    """

    catalog: Catalog
    undecodable: Mapping[str, str]
    timings: ScanTimings


def scan(src: str | os.PathLike, *, layout: Layout | str = "classes", class_depth: int = 0,
         table: str | os.PathLike | None = None, min_per_class: int = 1,
         max_pixels: int | None = DEFAULT_MAX_PIXELS, allow_outside_root: bool = False,
         progress: bool = False, pool: Any = None, check: ImageConfig | None = None,
         signatures: bool = False) -> Catalog:
    """Scan a source folder or label table into a :class:`Catalog`.

    Args:
        src: The source root folder (for ``layout="table"``: the table file, or the folder
            the table's paths are relative to when ``table`` is given).
        layout: ``classes``, ``left-right``, ``split-folders`` or ``table``.
        class_depth: For ``classes``/``split-folders``: 0 = each image folder is a class;
            N > 0 = group by the first N folder levels.
        table: The CSV/Parquet label table (``layout="table"``; implies it when given).
        min_per_class: Classes with fewer used images are skipped, with a reason.
        max_pixels: Images with more pixels (from the header) are skipped, with a reason
            (``None``: no limit).
        allow_outside_root: Follow symlinks and table paths that lead outside the root
            (otherwise they are skipped with reason ``outside root``, never read).
        progress: Show a tqdm bar while reading files.
        pool: A :class:`pairgen.workers.pool.Pool` to read and hash files with; ``None`` starts one
            process per core for large sources.
        check: Also decode every image with this image config (channels, pixel limit), in the
            same read; :func:`scan_source` returns the images that fail.
        signatures: Also compute each image's near-duplicate signature from the same single
            decode (``Catalog.signatures``).

    Returns:
        The catalog; ``images.split`` is all None until :func:`pairgen.sampling.splits.split`.

    Raises:
        ScanError: The source is missing, malformed for its layout, or holds no usable image.
        ConfigError: ``layout`` is not a known layout.
    """
    options = ScanOptions.of(layout, class_depth=class_depth, table=table, min_per_class=min_per_class,
                             max_pixels=max_pixels, allow_outside_root=allow_outside_root)
    return scan_source(src, options, progress=progress, pool=pool, check=check, signatures=signatures).catalog


def scan_source(src: str | os.PathLike, options: ScanOptions, *, progress: bool = False, pool: Any = None,
                check: ImageConfig | None = None, signatures: bool = False) -> ScanResult:
    """Scan a source: walk and label, read the blocks, keep the usable images, assemble.

    Args:
        src: As for :func:`scan`.
        options: The layout, labelling and filtering options (:meth:`ScanOptions.of`).
        progress: Show a tqdm bar while reading files.
        pool: As for :func:`scan`.
        check: Also decode every image with this image config, in the same read.
        signatures: Also compute near-duplicate signatures from that one decode.

    Returns:
        The catalog, the images the check could not decode and the stage timings.

    Raises:
        ScanError: The source is missing, malformed for its layout, or holds no usable image.
    """
    clock = StageClock()
    walked = walk_source(Path(src).expanduser(), options, check)
    tasks = (task._replace(signatures=True) for task in walked.tasks) if signatures else walked.tasks
    clock.lap("walk")
    with contextlib.closing(read_blocks(clock.timed(tasks, "walk"), pool=pool, progress=progress)) as blocks:
        columns = join_blocks(clock.timed(blocks, "wait"), walked.skipped)
    catalog = _assemble(src, walked, columns, options, signatures)
    clock.lap("assemble")
    return ScanResult(catalog, dict(columns.undecodable), clock.timings(columns.seconds.tolist()))


def _assemble(src: str | os.PathLike, walked: Walked, columns: Columns, options: ScanOptions,
              signatures: bool) -> Catalog:
    """The catalog of the usable images read (their skipped files noted in ``walked.skipped``)."""
    skipped = walked.skipped
    images = usable_images(columns.frame(), options, skipped)
    # usable_images keeps the frame's index: the kept rows' positions in path order, and so
    # in image_id order, since ids are given to the kept rows in that order.
    sig = columns.signature_matrix(images.index.to_numpy()) if signatures else None
    if images.empty:
        raise ScanError(
            f"no images found in '{src}' with layout '{options.layout.value}' "
            f"({len(skipped)} file(s) skipped; extensions {'/'.join(IMAGE_EXTENSIONS)}). "
            "Check --src, --layout and --min-per-class.")
    return Catalog(root=str(walked.root), layout=options.layout, images=_images_frame(images),
                   skipped=skipped_frame(skipped), signatures=sig)


def usable_images(images: pd.DataFrame, options: ScanOptions, skipped: Skipped) -> pd.DataFrame:
    """The images read that the catalog keeps; each dropped one goes to ``skipped`` with its reason.

    Args:
        images: The rows read (:meth:`Columns.frame`), sorted by path.
        options: ``max_pixels`` and ``min_per_class``.
        skipped: Receives ``(path, reason)`` for images over the pixel limit, one-sided
            left-right identities and images of classes below ``min_per_class``.

    Returns:
        The kept rows, in the same order.
    """
    images = _drop_oversized(images, options.max_pixels, skipped)
    images = _drop_unpaired(images, skipped)
    return _drop_small_classes(images, options.min_per_class, skipped)


def _drop_oversized(images: pd.DataFrame, max_pixels: int | None, skipped: Skipped) -> pd.DataFrame:
    """Skip images whose header declares more than ``max_pixels`` pixels (never decoded)."""
    if max_pixels is None:
        return images
    pixels = images["width"].to_numpy(np.uint64) * images["height"].to_numpy(np.uint64)  # no int64 overflow
    over = pixels > np.uint64(max_pixels)
    for path, w, h in zip(images["path"][over], images["width"][over], images["height"][over]):
        n = int(w) * int(h)
        skipped.append((path, f"too large: {w}x{h} = {n:,} pixels, over "
                              f"image.max_pixels ({max_pixels:,}); raise it if the file is trusted"))
    return images[~over] if over.any() else images


def _drop_unpaired(images: pd.DataFrame, skipped: Skipped) -> pd.DataFrame:
    """Left-right: skip each image whose identity has no usable image on the other side."""
    if images.empty or images["side"].isna().all():
        return images
    paired = (images.groupby("key", sort=False)["side"].transform("nunique") == 2).to_numpy()
    for path, side, key in zip(images["path"][~paired], images["side"][~paired], images["key"][~paired]):
        other = "right" if side == "left" else "left"
        skipped.append((path, f"one-sided identity: no usable {other}/{key}.* image"))
    return images[paired]


def _drop_small_classes(images: pd.DataFrame, min_per_class: int, skipped: Skipped) -> pd.DataFrame:
    counts = images["class_name"].map(images["class_name"].value_counts()).to_numpy()
    small = counts < min_per_class
    for path, name, n in zip(images["path"][small], images["class_name"][small], counts[small]):
        skipped.append((path, f"class below min_per_class: '{name}' has "
                              f"{n} image(s), fewer than {min_per_class}"))
    return images[~small] if small.any() else images


def _images_frame(images: pd.DataFrame) -> pd.DataFrame:
    """The catalog frame of rows already sorted by path: ids, dtypes and column order."""
    images = images.reset_index(drop=True)
    codes, names = pd.factorize(images["class_name"].to_numpy(object))  # hashing; sort only the names
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    images["class_id"] = rank[codes]
    images["image_id"] = np.arange(len(images), dtype=np.int64)
    images["split"] = pd.Series([None] * len(images), dtype=object)
    for col in _INT_COLUMNS:
        images[col] = images[col].astype("int64")
    for col in ("path", "class_name", "sha256"):  # the dtype normalize_images gives
        images[col] = images[col].astype(str)
    return images[list(IMAGE_COLUMNS)]


def normalize_images(frame: pd.DataFrame) -> pd.DataFrame:
    """Give an images frame the catalog dtypes (int64 ids/sizes, object for nullable strings).

    Args:
        frame: A frame with the :data:`IMAGE_COLUMNS` (e.g. read back from Parquet).

    Returns:
        A new frame with the columns in catalog order and a fresh RangeIndex.
    """
    out = frame.loc[:, list(IMAGE_COLUMNS)].reset_index(drop=True).copy()
    for col in _INT_COLUMNS:
        out[col] = out[col].astype("int64")
    for col in _OBJECT_COLUMNS:
        out[col] = pd.Series([None if pd.isna(v) else str(v) for v in out[col]], dtype=object)
    for col in ("path", "class_name", "sha256"):
        out[col] = out[col].astype(str)
    return out


def skipped_frame(rows: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """A skipped frame (``path``, ``reason``) sorted by path, then reason.

    Args:
        rows: ``(relative posix path, reason)`` pairs.

    Returns:
        The frame, with a fresh RangeIndex.
    """
    frame = pd.DataFrame(list(rows), columns=list(SKIPPED_COLUMNS))
    frame = frame.astype({"path": str, "reason": str})
    return frame.sort_values(["path", "reason"], kind="stable").reset_index(drop=True)


def reason_kind(reason: str) -> str:
    """The category of a skip reason: the text before ':' (``"corrupt image"``).

    Args:
        reason: A reason from ``Catalog.skipped``.

    Returns:
        The category, e.g. ``"not an image"``, ``"duplicate content"``, ``"hidden file"``.
    """
    for kind in ("duplicate content", "near duplicate"):
        if reason.startswith(kind):
            return kind
    return reason.split(":", 1)[0].strip()


def summarize(catalog: Catalog, near_threshold: float | None = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """A JSON-ready summary of a catalog (what ``pairgen scan`` prints).

    Args:
        catalog: A scanned catalog.
        near_threshold: The cosine similarity of near duplicates (``None``: not reported).

    Returns:
        ``root``, ``layout``, ``classes``, ``images``, ``per_class`` (min/median/max images),
        ``skipped``, ``skipped_by_reason`` (count per :func:`reason_kind`), ``skipped_files``
        (every skipped ``path`` and ``reason``), ``duplicates`` (``groups`` and ``images``
        with identical content, up to 5 ``examples`` path lists), ``label_conflicts`` (see
        :func:`label_conflicts`), ``splits`` (images per split, when split) and, when the
        catalog has signatures, ``near_duplicates`` (:func:`pairgen.scanning.near.near_report`).
    """
    images = catalog.images
    per_class = images.groupby("class_id").size()
    if per_class.empty:
        per_class = pd.Series([0])
    dup = images[images.duplicated("sha256", keep=False)]
    groups, examples = _example_groups(dup["sha256"], dup["path"].tolist())
    kinds = catalog.skipped["reason"].map(reason_kind).value_counts()
    splits = images["split"].dropna()
    near = catalog.signature_rows()
    extra = {} if near is None or near_threshold is None else {
        "near_duplicates": near_report(images, near, near_threshold)}
    return {
        "root": catalog.root,
        "layout": catalog.layout.value,
        "classes": int(images["class_id"].nunique()),
        "images": int(len(images)),
        "per_class": {"min": int(per_class.min()), "median": float(per_class.median()),
                      "max": int(per_class.max())},
        "skipped": int(len(catalog.skipped)),
        "skipped_by_reason": {str(k): int(v) for k, v in sorted(kinds.items())},
        "skipped_files": catalog.skipped[["path", "reason"]].to_dict("records"),
        "label_conflicts": label_conflicts(images),
        "duplicates": {"groups": groups, "images": int(len(dup)), "examples": examples},
        "splits": {str(k): int(v) for k, v in sorted(splits.value_counts().items())},
        **extra,
    }


def label_conflicts(images: pd.DataFrame) -> dict[str, Any]:
    """Identical content (same sha256) under more than one class: such an image would make
    negative pairs of itself. Reported, not dropped; the labels are the user's to fix.

    Args:
        images: A catalog's images frame.

    Returns:
        ``groups`` (sha256 groups spanning >1 class), ``images`` (images in them) and
        ``examples`` (up to 5 lists of ``"path (class)"``, sorted).
    """
    dup = images[images.duplicated("sha256", keep=False)]  # only these can span two classes
    spans = dup.groupby("sha256", sort=False)["class_name"].nunique()
    hit = dup[dup["sha256"].isin(spans.index[spans > 1])].sort_values("path", kind="stable")
    labels = [f"{p} ({c})" for p, c in zip(hit["path"], hit["class_name"])]
    groups, examples = _example_groups(hit["sha256"], labels)
    return {"groups": groups, "images": int(len(hit)), "examples": examples}


def _example_groups(keys: pd.Series, labels: list[str], limit: int = 5) -> tuple[int, list[list[str]]]:
    """The number of groups of equal ``keys``, and the labels of the ``limit`` groups whose first
    label sorts first (each group's labels in frame order); only those groups are listed."""
    codes, uniques = pd.factorize(keys.to_numpy(object))
    first = np.unique(codes, return_index=True)[1]  # each group's first row
    chosen = sorted(range(len(uniques)), key=lambda g: labels[first[g]])[:limit]
    return len(uniques), [[labels[i] for i in np.flatnonzero(codes == g)] for g in chosen]
