"""A run folder written whole or not at all.

``pairgen train`` writes the run into a marked temporary folder beside ``--out``
(``.<name>.partial``, holding the ``.pairgen-temp`` marker from its first instant) and renames
it to ``--out`` only when the run has finished. A run that fails or is interrupted removes the
temporary folder (and the parent folders it created, if still empty), so a failed run leaves
nothing behind, and an existing run replaced with ``--overwrite`` stays as it was until the new
one is complete. A marked folder left by a killed run is removed by the next run into the
same ``--out``; nothing unmarked is ever deleted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from pairgen.dataset.layout import TEMP_MARKER, sibling
from pairgen.dataset.outdir import discard, is_ours
from pairgen.errors import ConfigError


def check_out(out: Path, overwrite: bool, own_names: frozenset[str]) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty folder without ``overwrite`` or with foreign files.

    Raises:
        ConfigError: Naming the folder and what to do.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"run folder '{out}' is a file; choose another --out.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"run folder '{out}' already exists and is not empty; pass --overwrite "
                              "or choose another --out.")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in own_names)
        if foreign:
            raise ConfigError(f"--overwrite refuses to clear '{out}': it holds {foreign[0]!r}, which is not "
                              "part of a pairgen run. Choose another --out.")


@contextlib.contextmanager
def run_folder(out: Path, overwrite: bool, own_names: frozenset[str]) -> Iterator[Path]:
    """Yield the temporary folder to write the run into; install it at ``out`` when the block ends cleanly.

    Args:
        out: The run folder to create (or, with ``overwrite``, replace).
        overwrite: Replace an existing run folder (only one holding ``own_names`` alone).
        own_names: The names a run folder holds.

    Raises:
        ConfigError: As :func:`check_out`, or when an unmarked ``.<name>.partial`` is in the way.
    """
    check_out(out, overwrite, own_names)
    tmp = sibling(out, "partial")
    if is_ours(sibling(out, "old")):
        discard(sibling(out, "old"))  # a replaced run whose removal was interrupted
    if is_ours(tmp):
        discard(tmp)  # left by a killed run
    elif os.path.lexists(tmp):
        raise ConfigError(f"'{tmp}' is in the way of the run and was not made by pairgen; move it away.")
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        (tmp / TEMP_MARKER).write_text(f"unfinished pairgen run '{out.name}'\n", encoding="utf-8")
        yield tmp
        _install(tmp, out)
    except BaseException:
        if is_ours(tmp):
            with contextlib.suppress(OSError):
                discard(tmp)
        for folder in created:  # deepest first; stops at the first one in use
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _install(tmp: Path, out: Path) -> None:
    """Rename the finished run to ``out``; a replaced run moves aside first and is removed after."""
    old = sibling(out, "old")
    if out.is_dir() and any(out.iterdir()):
        if os.path.lexists(old):
            raise ConfigError(f"'{old}' is in the way of replacing the run '{out}'; move it away.")
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)
            raise
        (out / TEMP_MARKER).unlink()
        discard(old)  # marks it first, so an interruption leaves it recognisably ours
        return
    if out.is_dir():
        out.rmdir()  # an empty folder: the run takes its place
    tmp.rename(out)
    (out / TEMP_MARKER).unlink()
