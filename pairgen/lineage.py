"""Dataset versions at one output path: parent fingerprints, kept versions, ``path@ref``.

Layout of a dataset directory built with ``--keep-versions``::

    <out>/dataset.json, catalog.parquet, manifests/, shards/   the newest version, as always
    <out>/latest                                               text file: "<version>-<fp[:12]>"
    <out>/versions/<version>-<fingerprint[:12]>/               each older version, complete

The newest version always lives at ``<out>`` itself, so every reader that expects a plain
``<out>/dataset.json`` keeps working; older versions are complete dataset directories of
their own. ``latest`` is a small text file, not a symlink, so it works on every file system
and never makes a directory walk loop. Every card records ``parent``: the fingerprint of
the dataset that was at ``<out>`` before it (a rebuild with the same fingerprint keeps the
previous card's parent, because it is the same dataset).

References: ``path@latest`` is ``<out>``; ``path@1.2.0`` is the newest dataset with that
version; ``path@3fa9c1`` is the one whose fingerprint starts with that hex prefix (at least
4 characters; an ambiguous prefix is an error that lists the matches).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pairgen.card import CARD_NAME, probe_card
from pairgen.errors import DatasetError

VERSIONS_DIR = "versions"
LATEST_FILE = "latest"
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
_PREFIX_RE = re.compile(r"^[0-9a-f]{4,64}$")


def version_dir_name(card: dict[str, Any]) -> str:
    """The folder name of a kept version: ``<version>-<fingerprint[:12]>``."""
    return f"{card['version']}-{str(card['fingerprint'])[:12]}"


def parent_of(out: str | os.PathLike, fingerprint: str) -> str | None:
    """The ``parent`` of a dataset with ``fingerprint`` about to be installed at ``out``.

    That is the fingerprint of the dataset now at ``out``, or, when it is the same dataset
    (a rebuild with the same fingerprint), that dataset's own parent; ``None`` if ``out``
    holds no dataset.
    """
    previous = probe_card(Path(out)) if Path(out).is_dir() else None
    if previous is None:
        return None
    return previous.get("parent") if previous.get("fingerprint") == fingerprint else previous.get("fingerprint")


def install(tmp: str | os.PathLike, out: str | os.PathLike, card: dict[str, Any], *,
            keep_versions: bool = False) -> dict[str, Any]:
    """Move a finished build from ``tmp`` to ``out`` and carry over its kept versions.

    The card in ``tmp`` already names its parent (:func:`parent_of`, read under the same
    output lock). With ``keep_versions`` the previous dataset moves to ``out/versions/<version>-<fp[:12]>/``
    (unless it has the same fingerprint). Versions kept earlier are always carried over.
    Every step is a rename on one file system: the old dataset moves aside to ``.<name>.old``,
    the new one takes its place, and only then is the old one kept or removed. A crash in
    between leaves ``.<name>.old``, which the next build puts back or keeps
    (:func:`pairgen.outdir.recover`).

    Args:
        tmp: The finished build directory (holds ``dataset.json``).
        out: The dataset directory to create or replace.
        card: The card written in ``tmp``.
        keep_versions: Keep the previous dataset under ``out/versions/``.

    Returns:
        ``card``.
    """
    from pairgen.outdir import TEMP_MARKER

    tmp, out = Path(tmp), Path(out)
    previous = probe_card(out) if out.is_dir() else None
    old = out.parent / f".{out.name}.old"
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
        (out / LATEST_FILE).write_text(version_dir_name(card) + "\n", encoding="utf-8")
    return card


def _carry_versions(old: Path, out: Path, previous: dict[str, Any] | None, card: dict[str, Any],
                    keep: bool) -> None:
    """Move ``old/versions`` and (with ``keep``) ``old`` itself into ``out/versions``; drop the rest.

    ``old`` is the replaced dataset, already renamed aside; it is deleted only when it is not
    kept, and then by :func:`pairgen.outdir.discard`, which marks it first so that an
    interruption leaves it recognisable.
    """
    from pairgen.outdir import discard

    kept = out / VERSIONS_DIR
    if (old / VERSIONS_DIR).is_dir():
        (old / VERSIONS_DIR).rename(kept)
    if keep and previous is not None and previous.get("fingerprint") != card["fingerprint"]:
        target = kept / version_dir_name(previous)
        if not target.exists():  # if it does, the same version was kept before: the copy there is identical
            kept.mkdir(exist_ok=True)
            (old / LATEST_FILE).unlink(missing_ok=True)
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
    from pairgen.errors import BuildError

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
    (old / LATEST_FILE).unlink(missing_ok=True)
    old.rename(target)
    current = probe_card(out)
    if current is not None:
        (out / LATEST_FILE).write_text(version_dir_name(current) + "\n", encoding="utf-8")
    return target


def list_versions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every dataset at ``path``: the newest first, then kept versions, newest first.

    Kept versions are ordered by following ``parent`` links from the newest; any that the
    chain does not reach come after, newest ``created_at`` first.

    Args:
        path: A dataset directory.

    Returns:
        Dicts with ``version``, ``fingerprint``, ``parent``, ``created_at``, ``path`` and
        ``latest`` (true for ``path`` itself).
    """
    root = Path(path)
    top = probe_card(root)
    kept = root / VERSIONS_DIR
    rest: dict[str, dict[str, Any]] = {}
    for child in sorted(kept.iterdir()) if kept.is_dir() else []:
        card = probe_card(child) if child.is_dir() else None
        if card is not None:
            rest.setdefault(str(card.get("fingerprint")), _entry(card, child, latest=False))
    chain = [_entry(top, root, latest=True)] if top is not None else []
    parent = top.get("parent") if top is not None else None
    while parent in rest:
        chain.append(rest.pop(parent))
        parent = chain[-1]["parent"]
    others = sorted(rest.values(), key=lambda e: (str(e["created_at"] or ""), e["path"]), reverse=True)
    return chain + others


def _entry(card: dict[str, Any], path: Path, *, latest: bool) -> dict[str, Any]:
    return {"version": card.get("version"), "fingerprint": card.get("fingerprint"),
            "parent": card.get("parent"), "created_at": card.get("created_at"),
            "path": str(path), "latest": latest}


def split_ref(path: str | os.PathLike) -> tuple[Path, str | None]:
    """Split ``"dir@ref"`` into ``(Path("dir"), "ref")``; a plain path gives ``ref=None``.

    An existing directory whose own name contains ``@`` is taken as a plain path.
    """
    text = os.fspath(path)
    head, sep, ref = text.rpartition("@")
    if not sep or not head or "/" in ref or os.sep in ref or Path(text).exists():
        return Path(text), None
    return Path(head), ref


def resolve(path: str | os.PathLike) -> Path:
    """The dataset directory that ``path`` (``dir``, ``dir@version`` or ``dir@fp-prefix``) names.

    Args:
        path: A dataset directory, optionally with ``@latest``, ``@<MAJOR.MINOR.PATCH>`` or
            ``@<fingerprint prefix>`` (4 or more hex characters).

    Returns:
        The directory holding that version's ``dataset.json`` (``dir`` itself for a plain
        path, which is not checked here).

    Raises:
        DatasetError: If the reference is malformed, matches nothing, or a fingerprint
            prefix matches more than one version.
    """
    root, ref = split_ref(path)
    if ref is None:
        return root
    if ref == "latest":
        return root
    versions = list_versions(root)
    if not versions:
        raise DatasetError(f"'{root}' is not a pairgen dataset (no {CARD_NAME}); cannot resolve '@{ref}'.")
    if _VERSION_RE.match(ref):
        matches = [v for v in versions if v["version"] == ref]
    elif _PREFIX_RE.match(ref.lower()):
        matches = [v for v in versions if str(v["fingerprint"]).startswith(ref.lower())]
        if len(matches) > 1:
            names = ", ".join(str(v["fingerprint"])[:16] for v in matches)
            raise DatasetError(f"'{path}': fingerprint prefix {ref!r} matches {len(matches)} versions "
                               f"({names}); give more characters.")
    else:
        raise DatasetError(f"'{path}': '@{ref}' is neither a version (e.g. @1.0.0), 'latest', nor a "
                           "fingerprint prefix (4+ hex characters).")
    if not matches:
        have = ", ".join(f"{v['version']}@{str(v['fingerprint'])[:12]}" for v in versions)
        raise DatasetError(f"'{path}': no version matches '@{ref}'; available: {have}. "
                           "See `pairgen inspect` for the list.")
    return Path(matches[0]["path"])
