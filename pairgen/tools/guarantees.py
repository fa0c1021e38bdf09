"""The guarantees of a dataset's manifests, each a small pure function returning its problems.

:func:`check_manifest` checks one split's manifest: record order, split membership, ids that
exist in the catalog, then (once every id resolves) images of the split only, labels 0 or 1,
stored classes that match the catalog, the classes the schema shares between roles, the
samplers' pair and triplet rules and, for ``images``, every image once per augmentation copy;
and finally the record counts of the card. The names and roles come from
:mod:`pairgen.spec.schema`; the pair and triplet rules are those ``PairSampler.finish`` and
``TripletSampler.finish`` enforce while sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from pairgen.dataset import layout
from pairgen.dataset.card import Card
from pairgen.spec.config import Kind
from pairgen.spec.schema import LABEL, KindSchema, schema_of


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file, a kind and the details."""

    file: str
    kind: str  # missing, extra, truncated, changed, corrupt, count, invalid, mismatch, rebuild
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.kind}: {self.detail}"


class _Records(NamedTuple):
    """One manifest's records as arrays: what each guarantee below reads."""

    rel: str  # the manifest's file, named in every problem
    schema: KindSchema
    record_id: np.ndarray
    ids: dict[str, np.ndarray]  # id column -> image ids, in role order
    label: np.ndarray | None  # labelled kinds only

    def flag(self, mask: Any, what: str) -> list[Problem]:
        """One problem naming how many records ``mask`` marks and the first one; none if it marks none."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return []
        first = int(self.record_id[np.flatnonzero(mask)[0]])
        return [Problem(self.rel, "invalid", f"{int(mask.sum()):,} record(s) {what} (first: record_id {first})")]


def check_manifest(manifest: pd.DataFrame, catalog: pd.DataFrame, split: str,
                   card: Card) -> list[Problem]:
    """Check one split's manifest against the catalog, the label guarantees and the card.

    Args:
        manifest: The split's manifest table.
        catalog: The dataset's ``catalog.parquet``.
        split: The split name.
        card: The dataset card (for ``kind`` and the split's counts).

    Returns:
        One problem per broken rule, with the number of records and the first ``record_id``.
    """
    rel, schema = layout.manifest(split), schema_of(card.kind)
    lacking = [c for c in schema.manifest_columns if c not in manifest.columns]
    if lacking:
        return [Problem(rel, "invalid", f"lacks columns {lacking}")]
    rec = _Records(rel, schema, manifest["record_id"].to_numpy(),
                   {c: manifest[c].to_numpy() for c in schema.id_columns},
                   manifest[LABEL].to_numpy() if schema.labelled else None)
    images = catalog.set_index("image_id")
    placed = (_record_order(rec) + _split_column(rec, manifest, split)
              + _ids_in_catalog(rec, images.index.to_numpy()))
    if placed:
        return placed
    cls = {c: images["class_id"].reindex(v).to_numpy() for c, v in rec.ids.items()}
    return (_images_in_split(rec, images["split"], split) + _label_values(rec)
            + _stored_classes(rec, manifest, cls) + _shared_classes(rec, cls) + _kind_rules(rec, cls)
            + _every_image(rec, catalog, split, card)
            + _check_counts(rel, manifest, card.splits.get(split, {}), schema.labelled))


def _record_order(rec: _Records) -> list[Problem]:
    return rec.flag(rec.record_id != np.arange(len(rec.record_id)), "out of order (record_id must be 0..n-1)")


def _split_column(rec: _Records, manifest: pd.DataFrame, split: str) -> list[Problem]:
    return rec.flag(manifest["split"].to_numpy() != split, f"not in split {split!r}")


def _ids_in_catalog(rec: _Records, image_ids: np.ndarray) -> list[Problem]:
    return [p for col, values in rec.ids.items()
            for p in rec.flag(~np.isin(values, image_ids), f"with a {col} that is not in catalog.parquet")]


def _images_in_split(rec: _Records, image_split: pd.Series, split: str) -> list[Problem]:
    """No record crosses splits: every image it uses is in the manifest's split."""
    return [p for col, values in rec.ids.items()
            for p in rec.flag(image_split.reindex(values).to_numpy() != split,
                              f"whose {col} image is in another split")]


def _label_values(rec: _Records) -> list[Problem]:
    if rec.label is None:
        return []
    return rec.flag(~np.isin(rec.label, [0, 1]), "with a label other than 0 or 1")


def _stored_classes(rec: _Records, manifest: pd.DataFrame, cls: dict[str, np.ndarray]) -> list[Problem]:
    """Each class column that a role owns (:attr:`Role.stores_class`) is its image's catalog class."""
    own = [r for r in rec.schema.roles if r.stores_class]
    differs = np.logical_or.reduce([manifest[r.class_column].to_numpy() != cls[r.id_column] for r in own])
    return rec.flag(differs, f"whose {'/'.join(r.class_column for r in own)} disagree with the catalog")


def _shared_classes(rec: _Records, cls: dict[str, np.ndarray]) -> list[Problem]:
    """Roles that the schema gives another role's class column (a triplet's positive) have that class."""
    owners = {r.class_column: r for r in rec.schema.roles if r.stores_class}
    return [p for r in rec.schema.roles if not r.stores_class
            for p in rec.flag(cls[r.id_column] != cls[owners[r.class_column].id_column],
                              f"whose {r.name} is not of the {owners[r.class_column].name}'s class")]


def _kind_rules(rec: _Records, cls: dict[str, np.ndarray]) -> list[Problem]:
    """The samplers' guarantees beyond the schema (``PairSampler`` and ``TripletSampler.finish``)."""
    if rec.schema.kind is Kind.PAIRS:
        return _pair_rules(rec, cls)
    if rec.schema.kind is Kind.TRIPLETS:
        return _triplet_rules(rec, cls)
    return []


def _pair_rules(rec: _Records, cls: dict[str, np.ndarray]) -> list[Problem]:
    """A pair is labelled 1 exactly when its images share a class, and never pairs an image with itself."""
    same, positive, negative = cls["a_id"] == cls["b_id"], rec.label == 1, rec.label == 0
    return (rec.flag(positive & ~same, "labelled positive (1) across two classes")
            + rec.flag(positive & (rec.ids["a_id"] == rec.ids["b_id"]), "pairing an image with itself")
            + rec.flag(negative & same, "labelled negative (0) within one class"))


def _triplet_rules(rec: _Records, cls: dict[str, np.ndarray]) -> list[Problem]:
    """A triplet's positive is another image than its anchor; its negative is of another class."""
    return (rec.flag(rec.ids["positive_id"] == rec.ids["anchor_id"], "whose positive is the anchor image itself")
            + rec.flag(cls["negative_id"] == cls["anchor_id"], "whose negative is of the anchor's class"))


def _every_image(rec: _Records, catalog: pd.DataFrame, split: str, card: Card) -> list[Problem]:
    """For a kind whose schema says so (``images``): every image of the split once per copy."""
    if not rec.schema.every_image:
        return []
    return rec.flag(_coverage(rec.ids[rec.schema.id_columns[0]], catalog, split, card) != 0,
                    "breaking 'every image of the split once per augmentation copy'")


def _coverage(ids: np.ndarray, catalog: pd.DataFrame, split: str, card: Card) -> np.ndarray:
    """Per manifest row: how far its image's record count is from the expected copies (0 = right).

    The rows are all flagged (1) when a catalog image of the split has no record at all.
    """
    augment = card.config.get("augment", {})
    copies = int(augment.get("copies", 1)) if augment.get("enabled") else 1
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    expected = np.sort(catalog.loc[catalog["split"] == split, "image_id"].to_numpy())
    if not np.array_equal(uniq, expected):
        return np.ones(ids.size, dtype=np.int64)
    return counts[inverse] - copies


def _check_counts(rel: str, manifest: pd.DataFrame, counts: dict[str, Any], labelled: bool) -> list[Problem]:
    actual = {"records": len(manifest)}
    if labelled:
        actual["positives"] = int((manifest[LABEL] == 1).sum())
        actual["negatives"] = int((manifest[LABEL] == 0).sum())
    return [Problem(rel, "count", f"has {v:,} {k}, dataset.json says {int(counts[k]):,}")
            for k, v in actual.items() if k in counts and int(counts[k]) != v]
