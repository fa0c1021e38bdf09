"""Walk a source folder: sorted, symlink-safe, and with a reason for every file not used.

* Names that are not valid UTF-8 are skipped (``undecodable name``), shown with ``\\xNN``
  escapes, so every path that pairgen stores or prints is valid text.
* A symlink that leads outside the root is skipped (``outside root``) without being read,
  unless ``allow_outside_root``; then it is followed, and every real folder is walked at most
  once (``symlink loop``).
* A symlinked folder that points inside the root is skipped (``symlinked folder``): its
  images are scanned once, under their real folder, never under two class names.
* FIFOs, sockets and devices are never opened (``not a regular file``); dangling links are
  ``broken symlink``.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator
from pathlib import Path

_NAME = operator.attrgetter("name")


def walk(root: Path, extensions: tuple[str, ...], *,
         allow_outside_root: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """Sorted relative posix paths of image files, and skipped (path, reason) pairs.

    Args:
        root: The resolved source folder.
        extensions: Lower-case file extensions that count as images.
        allow_outside_root: Follow symlinks that lead outside ``root`` (else skip them).

    Returns:
        ``(files, skipped)``: image paths relative to ``root`` (posix, sorted) and
        ``(relative path, reason)`` for every file or folder not used.
    """
    skipped: list[tuple[str, str]] = []
    files = [rel for folder in iter_walk(root, extensions, skipped, allow_outside_root=allow_outside_root)
             for rel in folder]
    files.sort()
    return files, skipped


def iter_walk(root: Path, extensions: tuple[str, ...], skipped: list[tuple[str, str]], *,
              allow_outside_root: bool = False) -> Iterator[list[str]]:
    """Walk ``root`` one folder at a time, so that reading can start before the walk ends.

    Folders come depth first, each folder's entries sorted by name, so the order is the same
    on every file system (but not globally sorted: ``a/b0.png`` comes before ``a/b/x.png``).

    Args:
        root: The resolved source folder.
        extensions: Lower-case file extensions that count as images.
        skipped: Receives ``(relative path, reason)`` for every file or folder not used.
        allow_outside_root: Follow symlinks that lead outside ``root`` (else skip them).

    Yields:
        The image paths (relative posix) directly in one folder, sorted; folders without
        images yield nothing.
    """
    real_root = os.path.realpath(root)
    seen = {real_root: "."}  # real folder -> the relative path it was walked as
    stack = [("", str(root))]
    while stack:
        prefix, folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=_NAME)
        except OSError as exc:
            skipped.append((prefix.rstrip("/") or ".", f"unreadable folder: {exc.strerror or exc}"))
            continue
        subdirs, files = [], []
        for entry in entries:
            name = entry.name
            # The common case, decided without a stat: a plain file with an image extension.
            if (name.isascii() and not name.startswith(".") and name.lower().endswith(extensions)
                    and entry.is_file(follow_symlinks=False)):
                files.append(prefix + name)
                continue
            kind, rel, reason = _classify(entry, prefix, extensions, real_root, seen, allow_outside_root)
            if kind == "dir":
                subdirs.append((rel + "/", entry.path))
            elif kind == "file":
                files.append(rel)
            else:
                skipped.append((rel, reason))
        stack.extend(reversed(subdirs))
        if files:
            yield files


def shown_name(name: str) -> str:
    """A file name as valid UTF-8 text: undecodable bytes become ``\\xNN`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _classify(entry: os.DirEntry, prefix: str, extensions: tuple[str, ...], real_root: str,
              seen: dict[str, str], allow_outside_root: bool) -> tuple[str, str, str]:
    """``("dir" | "file" | "skip", relative path, reason)`` of one folder entry."""
    name = entry.name
    rel = prefix + name
    try:
        name.encode("utf-8")  # a lone surrogate here is an undecodable byte of the name
    except UnicodeEncodeError:
        return "skip", prefix + shown_name(name), "undecodable name: not valid UTF-8; rename the file or folder"
    try:
        is_dir = entry.is_dir()
        is_file = not is_dir and entry.is_file()
    except OSError as exc:
        return "skip", rel, f"unreadable file: {exc.strerror or exc}"
    if name.startswith("."):
        return "skip", rel, "hidden folder" if is_dir else "hidden file"
    if not is_dir and is_file and not name.lower().endswith(extensions):
        return "skip", rel, f"not an image: extension '{Path(name).suffix}'"
    if entry.is_symlink():
        reason = _symlink_problem(entry, is_dir, real_root, seen, allow_outside_root)
        if reason:
            return "skip", rel, reason
    if is_dir:
        seen.setdefault(os.path.realpath(entry.path), rel)
        return "dir", rel, ""
    if not name.lower().endswith(extensions):
        return "skip", rel, f"not an image: extension '{Path(name).suffix}'"
    if not is_file:
        broken = entry.is_symlink() and not os.path.exists(entry.path)
        return "skip", rel, "broken symlink" if broken else "not a regular file"
    return "file", rel, ""


def inside(path: str, real_root: str) -> bool:
    """True if the real path ``path`` is ``real_root`` or below it."""
    return path == real_root or path.startswith(real_root.rstrip(os.sep) + os.sep)


def _symlink_problem(entry: os.DirEntry, is_dir: bool, real_root: str, seen: dict[str, str],
                     allow_outside_root: bool) -> str | None:
    target = os.path.realpath(entry.path)
    within = inside(target, real_root)
    if not within and not allow_outside_root:
        return "outside root: a symlink to outside the source; pass --allow-outside-root to follow it"
    if not is_dir:
        return None
    if within:
        return ("symlinked folder: it points inside the source, whose images are scanned under "
                "their own folder")
    if target in seen or any(inside(s, target) for s in seen):
        return f"symlink loop: the folder is already scanned as '{seen.get(target, 'an enclosing folder')}'"
    return None
