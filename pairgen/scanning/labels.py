"""Walk and label: which files a scan reads, and the label each one gets, as block tasks.

:func:`walk_source` is the scan's first step. A ``classes`` or ``split-folders`` tree is walked
lazily and labelled in the workers, block by block, while the walk goes on; a ``left-right``
tree is walked and labelled here first (duplicate stems are found in sorted order); a label
table is read and checked row by row. Either way the result is a stream of
:class:`~pairgen.scanning.blocks.BlockTask` and the list of files skipped so far.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from pairgen.errors import ScanError
from pairgen.scanning.blocks import READ_BLOCK, BlockTask, Skipped
from pairgen.scanning.options import ScanOptions
from pairgen.scanning.walk import inside as _inside
from pairgen.scanning.walk import iter_walk, walk
from pairgen.spec.config import ImageConfig, Layout
from pairgen.spec.validation import has_control, name_problem

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


class _Candidate(NamedTuple):
    path: str  # relative posix path
    class_name: str
    folder_split: str | None = None
    side: str | None = None
    key: str | None = None


class Walked(NamedTuple):
    """The walk's result: the source root, the block tasks to read, and the files skipped so far."""

    root: Path
    tasks: Iterator[BlockTask]  # lazy: a folder tree is walked while the blocks are read
    skipped: Skipped  # filled while ``tasks`` runs, then by the read and the filters


def walk_source(src: Path, options: ScanOptions, check: ImageConfig | None) -> Walked:
    """Find the source's files and their labels, as block tasks for the workers.

    Args:
        src: The source root folder, or the label table (or its folder when ``options.table``).
        options: The layout and how to follow links and group classes.
        check: Also decode every image with this config, in the same read.

    Returns:
        The root (for a table: its folder), the tasks and the skipped list.

    Raises:
        ScanError: The source is missing or malformed for its layout.
    """
    layout, outside_ok = options.layout, options.allow_outside_root
    if layout is Layout.TABLE:
        root, candidates, skipped = _table_candidates(src, options.table, outside_ok)
        return Walked(root, _candidate_tasks(root, candidates, check), skipped)
    root = _check_root(src, layout)
    if layout is Layout.LEFT_RIGHT:  # duplicate stems are found in sorted order, before reading
        files, skipped = walk(root, IMAGE_EXTENSIONS, allow_outside_root=outside_ok)
        candidates = _label(files, layout, root, options.class_depth, skipped)
        return Walked(root, _candidate_tasks(root, candidates, check), skipped)
    skipped = []  # labelled in the workers, read while the walk goes on
    folders = iter_walk(root, IMAGE_EXTENSIONS, skipped, allow_outside_root=outside_ok)
    labeler = functools.partial(_label_paths, layout=layout, class_depth=options.class_depth)
    return Walked(root, (BlockTask(str(root), block, labeler, check) for block in _blocks(folders)), skipped)


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
        cand = _table_candidate(rel, label, split) if reason is None else reason
        if isinstance(cand, str):
            skipped.append((rel, cand))
        else:
            rows.setdefault(rel, []).append(cand)
    return root, _one_label_each(rows, skipped), skipped


# Texts that pandas reads as a missing value in a CSV (its default na_values): a label spelled
# so is a cell that lost its value on the way (a NaN written out as text), never a class.
_NA_TEXTS = frozenset({"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def _table_candidate(rel: str, label: Any, split: Any) -> _Candidate | str:
    text = "" if _missing(label) else str(label).strip()
    if not text:
        return "missing label in the table"
    if text in _NA_TEXTS:
        return f"missing label in the table: {str(label)!r} marks a missing value"
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
