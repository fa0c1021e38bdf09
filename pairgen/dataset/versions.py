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

from pairgen.dataset.card import probe_card
from pairgen.dataset.layout import CARD as CARD_NAME
from pairgen.dataset.layout import VERSIONS_DIR
from pairgen.errors import DatasetError

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
