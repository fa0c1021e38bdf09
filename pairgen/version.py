"""Dataset fingerprints and the ``dataset.json`` card.

The fingerprint is sha256 over the canonical JSON of::

    {"format_version": 1,
     "config": <resolved config without output path, source path or run options>,
     "catalog": [[relative path, class name, sha256], ...]}   # used images, sorted by path

So the same config and the same source bytes give the same fingerprint wherever the source
lives, and any changed byte, config value or seed gives another one. Timestamps, worker counts
and paths on disk are never hashed.

The card (``dataset.json``) also records ``created_at`` and ``pairgen_version`` (not hashed),
the sha256, size and record count of every table and shard, and ``parent``: the fingerprint
of the dataset that was at the same output path before (:mod:`pairgen.lineage`).
:mod:`pairgen.verify` checks a directory against its card.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from pairgen.config import BuildConfig, canonical_json
from pairgen.errors import DatasetError

FORMAT_VERSION = 1
CARD_NAME = "dataset.json"


def fingerprint(config: BuildConfig, images: pd.DataFrame) -> str:
    """Return the dataset fingerprint (64 hex chars).

    Args:
        config: The resolved build config.
        images: The catalog of used images (columns path, class_name, sha256).

    Returns:
        The sha256 hex digest of the canonical JSON described in the module docstring.
    """
    rows = images[["path", "class_name", "sha256"]].sort_values("path", kind="stable")
    payload = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(hashed=True),
        "catalog": rows.to_numpy().tolist(),
    }
    return hashlib.sha256(canonical_json(payload).encode("ascii")).hexdigest()


def read_card(path: str | Path) -> dict[str, Any]:
    """Read ``<path>/dataset.json``.

    Raises:
        DatasetError: if ``path`` is not a finished pairgen dataset directory.
    """
    card = Path(path) / CARD_NAME
    if not card.is_file():
        if not Path(path).exists():
            raise DatasetError(f"dataset '{path}' does not exist. Build it with `pairgen build --out {path}`.")
        raise DatasetError(
            f"'{path}' has no {CARD_NAME}: it is not a finished pairgen dataset "
            "(an interrupted build never writes it). Rebuild with --overwrite."
        )
    try:
        return json.loads(card.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"'{card}' is not valid JSON ({exc}). Rebuild the dataset.") from None


def write_card(path: str | Path, card: dict[str, Any]) -> None:
    """Write the card with sorted keys and a trailing newline."""
    text = json.dumps(card, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (Path(path) / CARD_NAME).write_text(text, encoding="utf-8")
