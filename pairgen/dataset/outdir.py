"""The output folder of a build: what may be replaced, one build at a time, crash-safe leftovers.

Beside ``<out>`` a build uses three hidden siblings, all named after it:

* ``.<name>.lock``: held with ``flock`` for the whole build and holding the builder's pid, so
  a second build into the same ``<out>`` refuses at once. The OS drops the lock when the
  process dies however it dies, so a lock file left by a killed build is simply reused.
* ``.<name>.partial``: the build being written. It carries a ``.pairgen-temp`` marker file
  from its first instant, so pairgen only ever deletes temporary folders it can prove it made.
* ``.<name>.old``: the previous dataset during the few renames of an install.

A build first recovers what an interrupted build left (under the lock, so nothing it looks at
is in use): a marked folder is removed, a previous dataset left in ``.<name>.old`` is put back
at ``<out>`` (or, when a newer dataset is already there, kept under ``<out>/versions/``), and
anything it cannot identify is reported, never deleted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pairgen.dataset.card import probe_card
from pairgen.dataset.layout import LATEST, OWN_NAMES, TEMP_MARKER, VERSIONS_DIR, sibling
from pairgen.dataset.versions import version_dir_name
from pairgen.errors import BuildError
from pairgen.spec.interrupts import held_interrupts, raise_if_swallowed

try:  # POSIX; elsewhere builds run unlocked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_HELD_FDS: set[int] = set()


def check_out_path(out: str | os.PathLike, sources: Iterable[str | os.PathLike]) -> Path:
    """Refuse an ``--out`` that cannot safely be replaced as a whole; return it made absolute.

    Args:
        out: The output folder as given.
        sources: The folders the build reads (source root, a table's folder).

    Returns:
        ``out`` as an absolute path (symbolic links not resolved).

    Raises:
        BuildError: If ``out`` is a file or a symbolic link, is or contains the current folder,
            or is, lies inside, or contains a source folder.
    """
    path = Path(os.path.abspath(out))
    real, cwd = Path(os.path.realpath(path)), Path(os.path.realpath(os.getcwd()))
    if path.is_symlink():
        raise BuildError(f"output '{out}' is a symbolic link; give the folder itself as --out.")
    if path.exists() and not path.is_dir():
        raise BuildError(f"output '{out}' is a file, not a directory. Choose another --out.")
    if real == cwd or real in cwd.parents:
        raise BuildError(f"output '{out}' is (or contains) the current folder; a build replaces --out as "
                         "a whole. Choose a new folder, e.g. --out ./my-dataset.")
    for src in sources:
        root = Path(os.path.realpath(src))
        if real == root or root in real.parents or real in root.parents:
            raise BuildError(f"output '{out}' overlaps the source '{src}' (the same folder, inside it, or "
                             "holding it); pairgen never writes into its input. Choose an --out outside it.")
    return path


def check_replaceable(out: Path, given: str | os.PathLike, *, replace: bool) -> None:
    """Refuse to build into ``out`` unless it is missing, empty, or (with ``replace``) a dataset.

    Raises:
        BuildError: If ``out`` holds anything that is not a pairgen dataset, holds files a
            dataset does not have, or is a dataset and ``replace`` is false.
    """
    entries = sorted(e.name for e in out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    card = probe_card(out)
    if card is None:
        raise BuildError(f"output '{given}' is not empty and is not a pairgen dataset (no valid dataset.json); "
                         "pairgen only replaces its own datasets. Choose another --out.")
    if not replace:
        raise BuildError(f"output '{given}' already exists. Pass --overwrite to replace it, --keep-versions "
                         "to add a new version beside it, or choose another --out.")
    own = OWN_NAMES | {str(k).split("/")[0] for k in card.get("files", {})}
    foreign = [e for e in entries if e not in own]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise BuildError(f"output '{given}' is a pairgen dataset but also holds {shown}, which a rebuild "
                         "would delete. Move them out of it first.")


def discard(path: Path) -> None:
    """Delete a folder pairgen made: mark it first, so a crash mid-way leaves it recognisably ours."""
    if not path.is_dir():
        return
    (path / TEMP_MARKER).touch()
    for child in path.iterdir():
        if child.name == TEMP_MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (path / TEMP_MARKER).unlink()
    path.rmdir()


def is_ours(path: Path) -> bool:
    """True for a temporary folder pairgen made (it holds the marker file)."""
    return path.is_dir() and not path.is_symlink() and (path / TEMP_MARKER).is_file()


def make_partial(out: Path) -> Path:
    """Create the marked temporary folder ``.<name>.partial`` beside ``out``."""
    tmp = sibling(out, "partial")
    tmp.mkdir()
    try:
        (tmp / TEMP_MARKER).write_text(f"unfinished pairgen build of '{out.name}'\n", encoding="utf-8")
    except OSError:
        tmp.rmdir()
        raise
    return tmp


def recover(out: Path) -> list[str]:
    """Clean up after an interrupted build into ``out``; call it holding the lock.

    Returns:
        One line per thing done (also printed to stderr, so nothing happens unseen).

    Raises:
        BuildError: If a leftover beside ``out`` is not something pairgen can identify.
    """
    done = []
    tmp, old = sibling(out, "partial"), sibling(out, "old")
    if is_ours(tmp):
        discard(tmp)
        done.append(f"removed '{tmp}', the unfinished folder of an interrupted build")
    elif os.path.lexists(tmp):
        raise BuildError(f"'{tmp}' is in the way of the build and was not made by pairgen; move it away.")
    if os.path.lexists(old):
        done.append(_recover_old(out, old))
    if (out / TEMP_MARKER).is_file() and probe_card(out) is not None:
        (out / TEMP_MARKER).unlink()
    for line in done:
        print(f"pairgen: {line}", file=sys.stderr)
    return done


def _recover_old(out: Path, old: Path) -> str:
    if is_ours(old):
        discard(old)
        return f"finished removing '{old}', a replaced dataset whose removal was interrupted"
    if old.is_dir() and not old.is_symlink() and not any(old.iterdir()):
        old.rmdir()
        return f"removed '{old}', an empty folder left by an interrupted install"
    card = probe_card(old) if not old.is_symlink() else None
    if card is None:
        raise BuildError(f"'{old}' is in the way of the build and is not a pairgen dataset; move it away.")
    if not os.path.lexists(out):
        old.rename(out)
        return f"restored the previous dataset at '{out}' from '{old}', left by an interrupted install"
    where = adopt(old, out, card)
    return f"kept the previous dataset, left in '{old}' by an interrupted install, at '{where}'"


def install(tmp: str | os.PathLike, out: str | os.PathLike, card: dict[str, Any], *,
            keep_versions: bool = False) -> dict[str, Any]:
    """Move a finished build from ``tmp`` to ``out`` and carry over its kept versions.

    The card in ``tmp`` already names its parent (:func:`parent_of`, read under the same
    output lock). With ``keep_versions`` the previous dataset moves to ``out/versions/<version>-<fp[:12]>/``
    (unless it has the same fingerprint). Versions kept earlier are always carried over.
    Every step is a rename on one file system: the old dataset moves aside to ``.<name>.old``,
    the new one takes its place, and only then is the old one kept or removed. A crash in
    between leaves ``.<name>.old``, which the next build puts back or keeps
    (:func:`recover`). A Ctrl-C that arrives during the install stops it only before the first
    rename (``KeyboardInterrupt``, nothing changed); after that the install completes.

    Args:
        tmp: The finished build directory (holds ``dataset.json``).
        out: The dataset directory to create or replace.
        card: The card written in ``tmp``.
        keep_versions: Keep the previous dataset under ``out/versions/``.

    Returns:
        ``card``.
    """
    tmp, out = Path(tmp), Path(out)
    with held_interrupts() as held:
        previous = probe_card(out) if out.is_dir() else None
        held.check()
        raise_if_swallowed()
        held.drop()  # from here on the new dataset is going in: a Ctrl-C comes too late to stop it
        return _install(tmp, out, card, previous, keep_versions)


def _install(tmp: Path, out: Path, card: dict[str, Any], previous: dict[str, Any] | None,
             keep_versions: bool) -> dict[str, Any]:
    old = sibling(out, "old")
    if out.exists():
        out.rename(old)  # never over an existing .old: the build recovered that before it began
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)
            raise
    else:
        tmp.rename(out)
    (out / TEMP_MARKER).unlink(missing_ok=True)
    if old.exists():
        _carry_versions(old, out, previous, card, keep_versions)
    if (out / VERSIONS_DIR).is_dir():
        (out / LATEST).write_text(version_dir_name(card) + "\n", encoding="utf-8")
    return card


def _carry_versions(old: Path, out: Path, previous: dict[str, Any] | None, card: dict[str, Any],
                    keep: bool) -> None:
    """Move ``old/versions`` and (with ``keep``) ``old`` itself into ``out/versions``; drop the rest.

    ``old`` is the replaced dataset, already renamed aside; it is deleted only when it is not
    kept, and then by :func:`discard`, which marks it first so that an
    interruption leaves it recognisable.
    """
    kept = out / VERSIONS_DIR
    if (old / VERSIONS_DIR).is_dir():
        (old / VERSIONS_DIR).rename(kept)
    if keep and previous is not None and previous.get("fingerprint") != card["fingerprint"]:
        target = kept / version_dir_name(previous)
        if not target.exists():  # if it does, the same version was kept before: the copy there is identical
            kept.mkdir(exist_ok=True)
            (old / LATEST).unlink(missing_ok=True)
            old.rename(target)
            return
    discard(old)


def adopt(old: Path, out: Path, card: dict[str, Any]) -> Path:
    """Keep a previous dataset left beside ``out`` by an interrupted install under ``out/versions``.

    Args:
        old: The leftover dataset folder (``.<name>.old``).
        out: The dataset now installed.
        card: ``old``'s card.

    Returns:
        Where the dataset now is.

    Raises:
        BuildError: If the same version is already kept (then ``old`` is left for the user).
    """
    kept = out / VERSIONS_DIR
    target = kept / version_dir_name(card)
    if target.exists() or card.get("fingerprint") == (probe_card(out) or {}).get("fingerprint"):
        raise BuildError(f"'{old}', left by an interrupted install, holds a dataset that '{out}' already has; "
                         f"delete '{old}' yourself after checking it.")
    if (old / VERSIONS_DIR).is_dir():
        if kept.exists():
            raise BuildError(f"'{old}' (left by an interrupted install) and '{out}' both hold kept versions; "
                             f"move '{old}' away after checking it.")
        (old / VERSIONS_DIR).rename(kept)
    kept.mkdir(exist_ok=True)
    (old / LATEST).unlink(missing_ok=True)
    old.rename(target)
    current = probe_card(out)
    if current is not None:
        (out / LATEST).write_text(version_dir_name(current) + "\n", encoding="utf-8")
    return target


class OutputLock:
    """An exclusive ``flock`` on ``.<name>.lock`` beside ``out``, holding this process's pid.

    Entering creates missing parent folders of ``out`` (and exiting removes those it created,
    if they are still empty), so ``--out a/b/c`` works as users expect.
    """

    def __init__(self, out: Path, given: str | os.PathLike):
        self.out, self.given, self.path = out, given, sibling(out, "lock")
        self.fd: int | None = None
        self.created: list[Path] = []

    def __enter__(self) -> OutputLock:
        try:
            with held_interrupts():  # a Ctrl-C comes once the lock is taken whole...
                self._make_parents()
                if fcntl is not None:
                    self._acquire()
        except OSError as exc:
            self._release()
            raise BuildError(os_error_line(exc, self.given)) from None
        except BaseException:  # ...and, raised before the ``with`` body, gives it back here
            self._release()
            raise
        return self

    def _make_parents(self) -> None:
        self.created = [p for p in [self.out.parent, *self.out.parent.parents] if not p.exists()]
        self.out.parent.mkdir(parents=True, exist_ok=True)

    def _acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise BuildError(f"another pairgen build (pid {pid}) is writing '{self.given}' now; wait for "
                                 "it to finish or choose another --out.") from None
            try:  # the holder before us may have unlinked the file between our open and flock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        _HELD_FDS.add(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))

    def __exit__(self, *exc: Any) -> None:
        with held_interrupts():
            self._release()

    def _release(self) -> None:
        if self.fd is not None:
            # Unlink while still holding the lock; a racing opener notices via the inode check.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            _HELD_FDS.discard(self.fd)
            os.close(self.fd)
            self.fd = None
        for folder in self.created:  # deepest first; stops at the first one in use
            try:
                if folder.exists():
                    folder.rmdir()
            except OSError:
                break
        self.created = []


def _read_pid(fd: int) -> str:
    for _ in range(20):  # the holder writes its pid just after taking the lock
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text:
            return text
        time.sleep(0.05)
    return "unknown"


def _close_in_child() -> None:
    # Forked workers must not keep the build's lock alive after the build itself is gone.
    for fd in list(_HELD_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


_FIXES = {
    errno.ENOSPC: "the disk is full: free space or choose another --out",
    errno.EDQUOT: "the disk quota is used up: free space or choose another --out",
    errno.EROFS: "choose a writable --out",
    errno.EACCES: "check the permissions of that path or choose another --out",
    errno.EPERM: "check the permissions of that path or choose another --out",
}


def os_error_line(exc: OSError, out: str | os.PathLike) -> str:
    """One line for an OS error met while building the dataset ``out``."""
    where = f" ('{exc.filename}')" if exc.filename is not None else ""
    reason = exc.strerror or str(exc).splitlines()[0]
    fix = _FIXES.get(exc.errno or 0, "check that path and choose another --out if needed")
    return f"building '{out}' failed: {reason}{where}; {fix}. Nothing was installed at '{out}'."


@contextlib.contextmanager
def os_errors(out: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` (raised here or re-raised from a worker) into a one-line BuildError."""
    try:
        yield
    except OSError as exc:
        cause = getattr(exc, "cause", None)  # Ray wraps a task's exception; the original is its cause
        raise BuildError(os_error_line(cause if isinstance(cause, OSError) else exc, out)) from None


@contextlib.contextmanager
def write_phase(out: Path) -> Iterator[Path]:
    """Create the marked temporary folder beside ``out``; remove it again if anything fails.

    It is removed on any error or interruption (after the caller's workers have stopped, when
    the caller nests its worker pool inside), so a failed build leaves nothing behind.
    """
    tmp = sibling(out, "partial")
    try:
        with held_interrupts():  # never a folder without its marker; a Ctrl-C comes once both exist
            tmp = make_partial(out)
        yield tmp
    except BaseException:
        with held_interrupts():  # a second Ctrl-C does not cut the clean-up short
            if is_ours(tmp):
                with contextlib.suppress(OSError):
                    discard(tmp)
        raise


def iter_dirs(paths: Iterable[str | os.PathLike | None]) -> Iterator[str]:
    """The folders among ``paths`` (a file stands for its folder); ``None`` entries are skipped."""
    for p in paths:
        if p is None:
            continue
        path = Path(p).expanduser()
        yield str(path.parent if path.is_file() else path)
