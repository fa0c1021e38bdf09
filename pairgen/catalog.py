"""Scan a source (folders or a label table) into a :class:`Catalog` of images.

The walk is sorted (folders and files by name, never file-system order) and ``image_id`` is
the row number in sorted relative-path order, so the same tree gives the same catalog on any
machine. Every file is read once: the bytes feed both the sha256 and the header parser (no
pixel decoding). Nothing is lost silently: each file that is not used lands in
``Catalog.skipped`` with the reason.

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

import dataclasses
import functools
import hashlib
import itertools
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np
import pandas as pd

from pairgen.config import ImageConfig, Layout
from pairgen.errors import ImageError, PairgenError, ScanError
from pairgen.headers import read_header
from pairgen.validate import has_control, name_problem
from pairgen.walk import inside as _inside, walk
from pairgen import sourceio

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
IMAGE_COLUMNS = ("image_id", "path", "class_name", "class_id", "split", "folder_split", "side",
                 "key", "sha256", "bytes", "width", "height", "channels")
SKIPPED_COLUMNS = ("path", "reason")
_INT_COLUMNS = ("image_id", "class_id", "bytes", "width", "height", "channels")
_OBJECT_COLUMNS = ("split", "folder_split", "side", "key")
_READ_BLOCK = 512  # files per task: one task per file costs more than reading a small image


@dataclass(frozen=True, eq=False)
class Catalog:
    """The scanned images of one source.

    Attributes:
        root: Absolute path of the source root (for a table: the table's folder).
        layout: How labels were read from the source.
        images: One row per used image; columns :data:`IMAGE_COLUMNS`, in that order.
        skipped: One row per file not used; columns ``path`` (relative posix) and ``reason``.
    """

    root: str
    layout: Layout
    images: pd.DataFrame
    skipped: pd.DataFrame

    @property
    def class_names(self) -> list[str]:
        """Sorted unique class names; ``class_id`` indexes this list."""
        return sorted(self.images["class_name"].unique().tolist())

    def replace(self, **changes: Any) -> "Catalog":
        """A copy with some fields replaced (the catalog itself is frozen)."""
        return dataclasses.replace(self, **changes)


class _Candidate(NamedTuple):
    path: str  # relative posix path
    class_name: str
    folder_split: str | None = None
    side: str | None = None
    key: str | None = None


def scan(src: str | os.PathLike, *, layout: Layout | str = "classes", class_depth: int = 0,
         table: str | os.PathLike | None = None, min_per_class: int = 1,
         max_pixels: int | None = 89_478_485, allow_outside_root: bool = False,
         progress: bool = False, pool: Any = None, check: ImageConfig | None = None,
         undecodable: dict[str, str] | None = None) -> Catalog:
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
        pool: A :class:`pairgen.pool.Pool` to read and hash files with; ``None`` starts one
            process per core for large sources.
        check: Also decode every image with this image config (channels, pixel limit), in the
            same read, and record the ones that fail in ``undecodable``.
        undecodable: Filled with relative path -> reason for images that ``check`` cannot decode.

    Returns:
        The catalog; ``images.split`` is all None until :func:`pairgen.splits.split`.

    Raises:
        ScanError: The source is missing, malformed for its layout, or holds no usable image.
        ConfigError: ``layout`` is not a known layout.
    """
    layout = Layout.from_value(layout, "--layout")
    if table is not None:
        layout = Layout.TABLE
    _check_args(class_depth, min_per_class)
    src_path = Path(src).expanduser()
    if layout is Layout.TABLE:
        root, candidates, skipped = _table_candidates(src_path, table, allow_outside_root)
    else:
        root = _check_root(src_path, layout)
        files, skipped = walk(root, IMAGE_EXTENSIONS, allow_outside_root=allow_outside_root)
        candidates = _label(files, layout, root, class_depth, skipped)
    rows = _read_all(root, candidates, skipped, progress=progress, pool=pool, check=check,
                     undecodable=undecodable)
    rows = _drop_oversized(rows, max_pixels, skipped)
    if layout is Layout.LEFT_RIGHT:
        rows = _pair_sides(rows, skipped)
    rows = _drop_small_classes(rows, min_per_class, skipped)
    if not rows:
        raise ScanError(
            f"no images found in '{src}' with layout '{layout.value}' "
            f"({len(skipped)} file(s) skipped; extensions {'/'.join(IMAGE_EXTENSIONS)}). "
            "Check --src, --layout and --min-per-class.")
    return Catalog(root=str(root), layout=layout, images=_images_frame(rows),
                   skipped=skipped_frame(skipped))


def _check_args(class_depth: int, min_per_class: int) -> None:
    if class_depth < 0:
        raise ScanError(f"--class-depth must be >= 0; received: {class_depth}.")
    if min_per_class < 0:
        raise ScanError(f"--min-per-class must be >= 0; received: {min_per_class}.")


def _check_root(src: Path, layout: Layout) -> Path:
    if not src.exists():
        raise ScanError(f"source '{src}' does not exist. Check --src or [source] path.")
    if not src.is_dir():
        raise ScanError(f"source '{src}' is a file, not a folder. Pass the image folder, "
                        "or --layout table for a CSV/Parquet label table.")
    root = src.resolve()
    if layout is Layout.LEFT_RIGHT:
        missing = [s for s in ("left", "right") if not (root / s).is_dir()]
        if missing:
            raise ScanError(f"source '{src}' has no {' or '.join(m + '/' for m in missing)} folder; "
                            "layout 'left-right' expects root/left/X.ext and root/right/X.ext.")
    if layout is Layout.SPLIT_FOLDERS:
        if not any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(root)):
            raise ScanError(f"source '{src}' has no split folders; layout 'split-folders' expects "
                            "root/<split>/<class>/image (e.g. train/, test/).")
    return root


def _label(files: list[str], layout: Layout, root: Path, class_depth: int,
           skipped: list[tuple[str, str]]) -> list[_Candidate]:
    out: list[_Candidate] = []
    seen_keys: dict[tuple[str, str], str] = {}
    for rel in files:
        parts = rel.split("/")
        if layout is Layout.CLASSES:
            found = _class_of(parts[:-1], class_depth)
            cand = _Candidate(rel, found) if found is not None else _outside(parts, class_depth)
        elif layout is Layout.SPLIT_FOLDERS:
            cand = _split_folder_candidate(rel, parts, class_depth)
        else:
            cand = _side_candidate(rel, parts, seen_keys)
        if isinstance(cand, _Candidate):
            cand = _check_names(cand)
        if isinstance(cand, _Candidate):
            out.append(cand)
        else:
            skipped.append((rel, cand))
    return out


def _check_names(cand: _Candidate) -> _Candidate | str:
    """The candidate, or the reason its class or split name cannot be used."""
    return _names_problem(cand.class_name, cand.folder_split) or cand


@functools.lru_cache(maxsize=4096)  # one check per class, not per file
def _names_problem(class_name: str, folder_split: str | None) -> str | None:
    problem = name_problem(class_name, nested=True)
    if problem:
        return f"invalid class name: {class_name!r}: {problem}"
    problem = None if folder_split is None else name_problem(folder_split)
    return f"invalid split name: {folder_split!r}: {problem}" if problem else None


def _outside(parts: list[str], class_depth: int) -> str:
    if len(parts) == 1:
        return "outside any class folder: image directly in the source root"
    return f"outside any class folder: above class depth {class_depth}"


def _class_of(folders: list[str], class_depth: int) -> str | None:
    if not folders:
        return None
    if class_depth and len(folders) < class_depth:
        return None
    return "/".join(folders[:class_depth] if class_depth else folders)


def _split_folder_candidate(rel: str, parts: list[str], class_depth: int) -> _Candidate | str:
    if len(parts) < 3:
        return "outside any class folder: split-folders expects <split>/<class>/image"
    found = _class_of(parts[1:-1], class_depth)
    if found is None:
        return f"outside any class folder: above class depth {class_depth}"
    return _Candidate(rel, found, folder_split=parts[0])


def _side_candidate(rel: str, parts: list[str],
                    seen: dict[tuple[str, str], str]) -> _Candidate | str:
    if parts[0] not in ("left", "right") or len(parts) < 2:
        return "outside left/ and right/ folders"
    key = "/".join(parts[1:])
    key = key[: len(key) - len(Path(key).suffix)]
    first = seen.setdefault((parts[0], key), rel)
    if first != rel:
        return f"duplicate stem: '{key}' is already {first}"
    return _Candidate(rel, key, side=parts[0], key=key)


def _table_candidates(src: Path, table: str | os.PathLike | None, allow_outside_root: bool = False,
                      ) -> tuple[Path, list[_Candidate], list[tuple[str, str]]]:
    table_path = Path(table).expanduser() if table is not None else src
    if not table_path.is_file():
        name = "--table" if table is not None else "--src"
        raise ScanError(f"table '{table_path}' does not exist. Check {name} or [source] table.")
    frame = _read_table(table_path)
    missing = [c for c in ("path", "label") if c not in frame.columns]
    if missing:
        raise ScanError(f"table '{table_path}' is missing column(s) {', '.join(missing)}; "
                        f"it needs path,label columns (found: {', '.join(map(str, frame.columns))}).")
    root = table_path.resolve().parent
    splits = frame["split"] if "split" in frame.columns else [None] * len(frame)
    rows: dict[str, list[_Candidate]] = {}
    skipped: list[tuple[str, str]] = []
    for path, label, split in zip(frame["path"], frame["label"], splits):
        rel, reason = _table_path(root, path, allow_outside_root)
        if reason is None:
            cand = _table_candidate(rel, label, split)
            reason = cand if isinstance(cand, str) else None
        if reason is not None:
            skipped.append((rel, reason))
        else:
            rows.setdefault(rel, []).append(cand)
    return root, _one_label_each(rows, skipped), skipped


def _table_candidate(rel: str, label: Any, split: Any) -> _Candidate | str:
    if _missing(label):
        return "missing label in the table"
    cand = _Candidate(rel, str(label), None if _missing(split) else str(split))
    return _check_names(cand)


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value))) or str(value) == ""


def _one_label_each(rows: dict[str, list[_Candidate]], skipped: list[tuple[str, str]]) -> list[_Candidate]:
    """One candidate per path; a path listed with two different labels is skipped on every row."""
    out = []
    for rel in sorted(rows):
        cands = rows[rel]
        labels = sorted({(c.class_name, c.folder_split or "") for c in cands})
        if len(labels) > 1:
            shown = ", ".join(repr(c) if not s else f"{c!r} ({s})" for c, s in labels)
            skipped.extend((rel, f"conflicting labels in the table: {shown}") for _ in cands)
            continue
        out.append(cands[0])
        skipped.extend((rel, "listed twice in the table") for _ in cands[1:])
    return out


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable tables
        raise ScanError(f"table '{path}' cannot be read ({exc}). Use a CSV or Parquet file "
                        "with path,label columns.") from None


def _table_path(root: Path, path: Any, allow_outside_root: bool) -> tuple[str, str | None]:
    """(relative posix path, reason to skip or None) of one table row's path.

    The check is lexical first: a path that climbs out of ``root`` (``../``, absolute) is
    refused without any file-system call, so nothing is learnt about files outside the root.
    A path inside the root is then resolved, so a symlink out of the root is refused too.
    """
    if _missing(path):
        return "", "missing path in the table"
    text = str(path).replace("\\", "/")
    if has_control(text):
        return repr(text)[1:-1], "invalid path: it contains a control character"
    p = Path(text)
    rel = Path(os.path.normpath(os.path.relpath(p, root) if p.is_absolute() else p)).as_posix()
    outside = "outside root: the path leaves the table's folder; pass --allow-outside-root to use it"
    if rel == ".." or rel.startswith("../"):
        if p.is_absolute():  # shown (and, when allowed, used) as the table wrote it
            rel = Path(os.path.normpath(text)).as_posix()
        if not allow_outside_root:
            return rel, outside
    elif not allow_outside_root and not _inside(os.path.realpath(root / rel), os.path.realpath(root)):
        return rel, outside
    return rel, _special_file(root / rel)


def _special_file(path: Path) -> str | None:
    """A reason to skip a path that exists but is not a regular file (a FIFO would block a read)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None  # reported when it is read ("file does not exist", "unreadable file")
    return None if stat.S_ISREG(mode) else "not a regular file"


def _read_one(root: Path | str, cand: _Candidate, check: ImageConfig | None = None
              ) -> tuple[_Candidate, dict[str, Any] | str]:
    try:
        data = sourceio.read_source(os.path.join(root, cand.path))
    except FileNotFoundError:
        return cand, "file does not exist"
    except OSError as exc:
        return cand, f"unreadable file: {exc.strerror or exc}"
    if not data:
        return cand, "empty file"
    try:
        width, height, channels = read_header(data, name=cand.path)
    except ImageError as exc:
        return cand, f"corrupt image: {exc}"
    info = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "width": width, "height": height, "channels": channels}
    if check is not None:
        info["undecodable"] = _decode_problem(data, cand.path, check)
    return cand, info


def _decode_problem(data: bytes, rel: str, check: ImageConfig) -> str | None:
    from pairgen.imageio import decode

    try:
        decode(data, channels=check.channels, max_pixels=check.max_pixels, source=rel)
    except PairgenError as exc:
        return str(exc)
    return None


def read_block(task: tuple[str, list[_Candidate], ImageConfig | None]) -> list[tuple[_Candidate, dict[str, Any] | str]]:
    """Read, hash and parse the header of each file of one block (a worker task)."""
    root, block, check = task
    return [_read_one(root, c, check) for c in block]


def _read_all(root: Path, candidates: list[_Candidate], skipped: list[tuple[str, str]], *,
              progress: bool, pool: Any = None, check: ImageConfig | None = None,
              undecodable: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Hash and parse every candidate in worker processes; results keep the candidates' order."""
    from pairgen.pool import Pool

    tasks = ((str(root), candidates[i:i + _READ_BLOCK], check) for i in range(0, len(candidates), _READ_BLOCK))
    own = pool is None
    if own:
        pool = Pool(workers=min(os.cpu_count() or 1, -(-len(candidates) // _READ_BLOCK)))
    rows: list[dict[str, Any]] = []
    try:
        results: Iterable = itertools.chain.from_iterable(pool.imap(read_block, tasks))
        if progress:
            from tqdm import tqdm
            results = tqdm(results, total=len(candidates), desc="scan", unit="img")
        for cand, info in results:
            if isinstance(info, str):
                skipped.append((cand.path, info))
                continue
            problem = info.pop("undecodable", None)
            if problem is not None and undecodable is not None:
                undecodable[cand.path] = problem
            rows.append({**cand._asdict(), **info})
    finally:
        if own:
            pool.close()
    return rows


def _pair_sides(rows: list[dict[str, Any]], skipped: list[tuple[str, str]]) -> list[dict[str, Any]]:
    sides: dict[str, set[str]] = {}
    for row in rows:
        sides.setdefault(row["key"], set()).add(row["side"])
    kept = []
    for row in rows:
        if len(sides[row["key"]]) == 2:
            kept.append(row)
        else:
            other = "right" if row["side"] == "left" else "left"
            skipped.append((row["path"], f"one-sided identity: no usable {other}/{row['key']}.* image"))
    return kept


def _drop_oversized(rows: list[dict[str, Any]], max_pixels: int | None,
                    skipped: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Skip images whose header declares more than ``max_pixels`` pixels (never decoded)."""
    if max_pixels is None:
        return rows
    kept = []
    for row in rows:
        pixels = int(row["width"]) * int(row["height"])
        if pixels > max_pixels:
            skipped.append((row["path"], f"too large: {row['width']}x{row['height']} = {pixels:,} pixels, over "
                                         f"image.max_pixels ({max_pixels:,}); raise it if the file is trusted"))
        else:
            kept.append(row)
    return kept


def _drop_small_classes(rows: list[dict[str, Any]], min_per_class: int,
                        skipped: list[tuple[str, str]]) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["class_name"]] = counts.get(row["class_name"], 0) + 1
    kept = []
    for row in rows:
        n = counts[row["class_name"]]
        if n >= min_per_class:
            kept.append(row)
        else:
            skipped.append((row["path"], f"class below min_per_class: '{row['class_name']}' has "
                                         f"{n} image(s), fewer than {min_per_class}"))
    return kept


def _images_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    rows = sorted(rows, key=lambda r: r["path"])
    frame = pd.DataFrame(rows, columns=[c for c in IMAGE_COLUMNS if c not in ("image_id", "class_id", "split")])
    names = sorted(frame["class_name"].unique().tolist())
    frame["class_id"] = np.searchsorted(np.array(names, dtype=object), frame["class_name"].to_numpy(object))
    frame["image_id"] = np.arange(len(frame))
    frame["split"] = None
    return normalize_images(frame[list(IMAGE_COLUMNS)])


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
    if reason.startswith("duplicate content"):
        return "duplicate content"
    return reason.split(":", 1)[0].strip()


def summarize(catalog: Catalog) -> dict[str, Any]:
    """A JSON-ready summary of a catalog (what ``pairgen scan`` prints).

    Args:
        catalog: A scanned catalog.

    Returns:
        ``root``, ``layout``, ``classes``, ``images``, ``per_class`` (min/median/max images),
        ``skipped``, ``skipped_by_reason`` (count per :func:`reason_kind`), ``skipped_files``
        (every skipped ``path`` and ``reason``), ``duplicates`` (``groups`` and ``images``
        with identical content, up to 5 ``examples`` path lists), ``label_conflicts`` (see
        :func:`label_conflicts`) and ``splits`` (images per split, when split).
    """
    images = catalog.images
    per_class = images.groupby("class_id").size()
    if per_class.empty:
        per_class = pd.Series([0])
    dup = images[images.duplicated("sha256", keep=False)]
    groups = [g["path"].tolist() for _, g in dup.groupby("sha256", sort=False)]
    groups.sort(key=lambda paths: paths[0])
    kinds = catalog.skipped["reason"].map(reason_kind).value_counts()
    splits = images["split"].dropna()
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
        "duplicates": {"groups": len(groups), "images": int(len(dup)), "examples": groups[:5]},
        "splits": {str(k): int(v) for k, v in sorted(splits.value_counts().items())},
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
    spans = images.groupby("sha256", sort=False)["class_name"].nunique()
    hit = images[images["sha256"].isin(spans.index[spans > 1])].sort_values("path", kind="stable")
    groups = [[f"{p} ({c})" for p, c in zip(g["path"], g["class_name"])]
              for _, g in hit.groupby("sha256", sort=False)]
    groups.sort(key=lambda paths: paths[0])
    return {"groups": len(groups), "images": int(len(hit)), "examples": groups[:5]}
