"""Scan a source (folders or a label table) into a :class:`Catalog` of images.

The walk is sorted (folders and files by name, never file-system order) and ``image_id`` is
the row number in sorted relative-path order, so the same tree gives the same catalog on any
machine. Every file is read once, in blocks of files spread over worker processes
(:mod:`pairgen.scanning.blocks`): the bytes feed the sha256, the header parser and, for a build, one
decode check. The main process walks the folders while the workers read, and joins their
results column by column. Nothing is lost silently: each file that is not used lands in
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
import itertools
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from pairgen.errors import ScanError
from pairgen.scanning.blocks import READ_BLOCK, BlockTask, Columns, read_block
from pairgen.scanning.walk import inside as _inside
from pairgen.scanning.walk import iter_walk, walk
from pairgen.spec.config import ImageConfig, Layout
from pairgen.spec.schema import IMAGE_COLUMNS, SKIPPED_COLUMNS
from pairgen.spec.validation import has_control, name_problem

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
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
    """

    root: str
    layout: Layout
    images: pd.DataFrame
    skipped: pd.DataFrame

    @property
    def class_names(self) -> list[str]:
        """Sorted unique class names; ``class_id`` indexes this list."""
        return sorted(self.images["class_name"].unique().tolist())

    def replace(self, **changes: Any) -> Catalog:
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
         undecodable: dict[str, str] | None = None, timings: dict[str, float] | None = None) -> Catalog:
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
            same read, and record the ones that fail in ``undecodable``.
        undecodable: Filled with relative path -> reason for images that ``check`` cannot decode.
        timings: Filled with the seconds of each stage: ``walk``, ``wait`` and ``assemble``
            (this process: walking and labelling, waiting for workers, joining their results
            and building the frames; ``main_cpu`` is this process's CPU time) and
            ``worker_label``, ``worker_read`` (read, sha256, header), ``worker_decode`` and
            ``worker_cpu`` (the CPU time of the other three), summed over all workers.

    Returns:
        The catalog; ``images.split`` is all None until :func:`pairgen.sampling.splits.split`.

    Raises:
        ScanError: The source is missing, malformed for its layout, or holds no usable image.
        ConfigError: ``layout`` is not a known layout.
    """
    layout = Layout.from_value(layout, "--layout")
    if table is not None:
        layout = Layout.TABLE
    _check_args(class_depth, min_per_class)
    clock = _Clock(timings)
    src_path = Path(src).expanduser()
    if layout is Layout.TABLE:
        root, candidates, skipped = _table_candidates(src_path, table, allow_outside_root)
        tasks = _candidate_tasks(root, candidates, check)
    elif layout is Layout.LEFT_RIGHT:  # duplicate stems are found in sorted order, before reading
        root = _check_root(src_path, layout)
        files, skipped = walk(root, IMAGE_EXTENSIONS, allow_outside_root=allow_outside_root)
        tasks = _candidate_tasks(root, _label(files, layout, root, class_depth, skipped), check)
    else:  # labelled in the workers, read while the walk goes on
        root = _check_root(src_path, layout)
        skipped = []
        folders = iter_walk(root, IMAGE_EXTENSIONS, skipped, allow_outside_root=allow_outside_root)
        labeler = functools.partial(_label_paths, layout=layout, class_depth=class_depth)
        tasks = (BlockTask(str(root), block, labeler, check) for block in _blocks(folders))
    clock.lap("walk")
    columns = _read_all(clock.timed(tasks, "walk"), skipped, progress=progress, pool=pool, clock=clock)
    if undecodable is not None:
        undecodable.update(columns.undecodable)
    images = _drop_small_classes(_drop_unpaired(_drop_oversized(columns.frame(), max_pixels, skipped), skipped),
                                 min_per_class, skipped)
    if images.empty:
        raise ScanError(
            f"no images found in '{src}' with layout '{layout.value}' "
            f"({len(skipped)} file(s) skipped; extensions {'/'.join(IMAGE_EXTENSIONS)}). "
            "Check --src, --layout and --min-per-class.")
    catalog = Catalog(root=str(root), layout=layout, images=_images_frame(images), skipped=skipped_frame(skipped))
    clock.lap("assemble")
    clock.workers(columns.seconds)
    return catalog


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


def _label_paths(paths: list[str], skipped: list[tuple[str, str]], *, layout: Layout,
                 class_depth: int) -> list[_Candidate]:
    """Label one block of walked paths (``classes`` or ``split-folders``: no state across files)."""
    return _label(paths, layout, Path(), class_depth, skipped)


def _blocks(folders: Iterable[list[str]]) -> Iterator[list[str]]:
    """Walked paths in blocks of :data:`READ_BLOCK` (the last one may be shorter)."""
    block: list[str] = []
    for files in folders:
        block.extend(files)
        if len(block) >= READ_BLOCK:
            full = len(block) - len(block) % READ_BLOCK
            yield from (block[i:i + READ_BLOCK] for i in range(0, full, READ_BLOCK))
            block = block[full:]
    if block:
        yield block


def _candidate_tasks(root: Path, candidates: list[_Candidate], check: ImageConfig | None) -> Iterator[BlockTask]:
    for i in range(0, len(candidates), READ_BLOCK):
        yield BlockTask(str(root), candidates[i:i + READ_BLOCK], None, check)


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


class _Clock:
    """Seconds per scan stage, kept in ``timings`` when the caller asks for them."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.mark, self.cpu = time.perf_counter(), time.process_time()
        if timings is not None:
            timings.update(dict.fromkeys(("walk", "wait", "assemble", "main_cpu", "worker_label", "worker_read",
                                          "worker_decode", "worker_cpu"), 0.0))

    def lap(self, stage: str) -> None:
        """Add the time since the last lap to ``stage``."""
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[stage] += now - self.mark
        self.mark = now

    def timed(self, items: Iterable[Any], stage: str) -> Iterator[Any]:
        """Yield ``items``, adding the time spent producing each one to ``stage``."""
        iterator = iter(items)
        while True:
            self.lap("assemble")  # what ran since the last item: joining results
            try:
                item = next(iterator)
            except StopIteration:
                self.lap(stage)
                return
            self.lap(stage)
            yield item

    def workers(self, seconds: np.ndarray) -> None:
        """Record the workers' summed label, read, decode and CPU seconds, and this process's CPU."""
        if self.timings is not None:
            for stage, value in zip(("worker_label", "worker_read", "worker_decode", "worker_cpu"), seconds):
                self.timings[stage] = float(value)
            self.timings["main_cpu"] = time.process_time() - self.cpu


def _read_all(tasks: Iterable[BlockTask], skipped: list[tuple[str, str]], *, progress: bool,
              pool: Any = None, clock: _Clock) -> Columns:
    """Run the block tasks in worker processes; the columns keep the tasks' order."""
    from pairgen.workers.pool import Pool

    tasks = iter(tasks)
    own = pool is None
    if own:  # one block is read here; more start one process per core
        first = list(itertools.islice(tasks, 2))
        tasks = itertools.chain(first, tasks)
        pool = Pool(workers=(os.cpu_count() or 1) if len(first) > 1 else 1)
    columns = Columns()
    bar = None
    try:
        if progress:
            from tqdm import tqdm
            bar = tqdm(desc="scan", unit="img")
        results = iter(pool.imap(read_block, tasks))
        while True:
            clock.lap("assemble")
            block = next(results, None)
            clock.lap("wait")
            if block is None:
                break
            columns.add(block, skipped)
            if bar is not None:
                bar.update(len(block.sha256) + len(block.skipped))
    finally:
        if bar is not None:
            bar.close()
        if own:
            pool.close()
    return columns


def _drop_oversized(images: pd.DataFrame, max_pixels: int | None, skipped: list[tuple[str, str]]) -> pd.DataFrame:
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


def _drop_unpaired(images: pd.DataFrame, skipped: list[tuple[str, str]]) -> pd.DataFrame:
    """Left-right: skip each image whose identity has no usable image on the other side."""
    if images.empty or images["side"].isna().all():
        return images
    paired = (images.groupby("key", sort=False)["side"].transform("nunique") == 2).to_numpy()
    for path, side, key in zip(images["path"][~paired], images["side"][~paired], images["key"][~paired]):
        other = "right" if side == "left" else "left"
        skipped.append((path, f"one-sided identity: no usable {other}/{key}.* image"))
    return images[paired]


def _drop_small_classes(images: pd.DataFrame, min_per_class: int, skipped: list[tuple[str, str]]) -> pd.DataFrame:
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
    groups, examples = _example_groups(dup["sha256"], dup["path"].tolist())
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
        "duplicates": {"groups": groups, "images": int(len(dup)), "examples": examples},
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
