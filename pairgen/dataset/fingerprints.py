"""The dataset fingerprint: what makes two datasets the same.

The fingerprint is sha256 over the canonical JSON of::

    {"format_version": 1,
     "config": <resolved config without output path, source path or run options;
                for the images kind, [sample] is only its strategy>,
     "catalog": [[relative path, class name, sha256], ...]}   # used images, sorted by path

So the same config and the same source bytes give the same fingerprint wherever the source
lives, and any changed byte, config value or seed gives another one. Timestamps, worker counts
and paths on disk are never hashed. The card (:mod:`pairgen.dataset.card`) records it;
:mod:`pairgen.tools.verify` checks a directory against its card.

The *split fingerprint* identifies the split assignment alone: sha256 over the canonical JSON
of ``{"splits": [[image sha256, split], ...]}`` for every used image, sorted. The assignment
depends only on the source, the ``[split]`` config and the seed, never on the record kind or
the sampling, so an images dataset and a pairs dataset built from the same source, split
config and seed have the same split fingerprint, and a model trained on one can be evaluated
on the other's test split without leakage. Content hashes rather than paths are hashed
because leakage is about pixels: the same images in the same splits match wherever they live.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from pairgen.dataset.card import FORMAT_VERSION
from pairgen.spec.config import BuildConfig, canonical_json


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


def split_fingerprint(images: pd.DataFrame) -> str:
    """Return the split fingerprint (64 hex chars) of a split catalog.

    Args:
        images: The catalog of used images (columns sha256, split; a missing split counts as "").

    Returns:
        The sha256 hex digest of the sorted ``[content sha256, split]`` rows (module docstring).
    """
    rows = pd.DataFrame({"sha256": images["sha256"].astype(str),
                         "split": images["split"].fillna("").astype(str)})
    rows = rows.sort_values(["sha256", "split"], kind="stable")
    payload = {"splits": rows.to_numpy().tolist()}
    return hashlib.sha256(canonical_json(payload).encode("ascii")).hexdigest()
