"""The record schema: one frozen description per record kind, the only place names are spelled.

A kind is a tuple of *roles* (the images of one record, in record order) plus whether records
carry a ``label``. Every other name derives from the roles:

================  ==========================  ======================  =========================
role ``r``         pairs (``a``, ``b``)        triplets (``anchor``)   images (unnamed role)
================  ==========================  ======================  =========================
record image      ``r/image`` (bytes)         ``anchor/image``        ``image``
record ints       ``r/id``, ``r/class``       ``anchor/id``, ...      ``id``, ``class``
manifest columns  ``r_id``, class column       ``anchor_id``, ...      ``image_id``, ``class_id``
NumPy arrays      ``r``, ``r_id``, ``r_class``  ``anchor``, ...         ``image``, ``id``, ``class``
================  ==========================  ======================  =========================

Every record also holds ``record_id`` (its manifest row); pair records hold ``label``
(1 = same class). A role's class is read from its manifest *class column*: a triplet's positive
shares the anchor's class, so triplet manifests store ``anchor_class`` and ``negative_class``
only and ``positive/class`` is written from ``anchor_class``.

The ``images`` kind has one role with an empty name: one image per record (for P x K batch
sampling and classification), with the catalog's own column names in its manifest.

Adding a kind means adding a :class:`KindSchema` here and its sampler in
:mod:`pairgen.sampling`; the encoder, readers, verifier, preview and evaluation take their
names from :func:`schema_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pairgen.spec.config import Kind

RECORD_ID = "record_id"
LABEL = "label"
SPLIT = "split"
AUG_SEED = "aug_seed"


@dataclass(frozen=True)
class Role:
    """One image of a record: its name and the manifest column its class id is stored in."""

    name: str  # "" for the single image of a one-image kind: features ``image``, ``id``, ``class``
    class_column: str

    @property
    def _prefix(self) -> str:
        return f"{self.name}/" if self.name else ""

    @property
    def image_key(self) -> str:
        """The record's image feature (bytes): ``a/image`` (``image`` without a name)."""
        return f"{self._prefix}image"

    @property
    def id_key(self) -> str:
        """The record's image-id feature (int64): ``a/id`` (``id``)."""
        return f"{self._prefix}id"

    @property
    def class_key(self) -> str:
        """The record's class-id feature (int64): ``a/class`` (``class``)."""
        return f"{self._prefix}class"

    @property
    def id_column(self) -> str:
        """The manifest column with the catalog ``image_id``: ``a_id`` (``image_id``)."""
        return f"{self.name}_id" if self.name else "image_id"

    @property
    def stores_class(self) -> bool:
        """Whether the manifest has a class column of this role's own (a triplet's positive has not)."""
        return self.class_column == (f"{self.name}_class" if self.name else "class_id")


@dataclass(frozen=True)
class KindSchema:
    """Every name of one record kind: record features, manifest columns and array names."""

    kind: Kind
    roles: tuple[Role, ...]
    labelled: bool
    symmetric: bool = False  # the roles are interchangeable: (a, b) is the same record as (b, a)
    every_image: bool = False  # every image of a split is in one record per augmentation copy

    @property
    def role_names(self) -> tuple[str, ...]:
        """The roles in record order: ``("a", "b")``."""
        return tuple(r.name for r in self.roles)

    @property
    def image_keys(self) -> tuple[str, ...]:
        """Image features (bytes), in role order."""
        return tuple(r.image_key for r in self.roles)

    @property
    def int_keys(self) -> tuple[str, ...]:
        """Int64 features: ``label`` (if labelled), ids, classes, ``record_id``."""
        label = (LABEL,) if self.labelled else ()
        return (*label, *(r.id_key for r in self.roles), *(r.class_key for r in self.roles), RECORD_ID)

    @property
    def features(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(image_keys, int_keys)``, the arguments of the shard readers."""
        return self.image_keys, self.int_keys

    @property
    def feature_types(self) -> dict[str, str]:
        """Feature name to its ``tf.train.Feature`` list type (``"bytes"`` or ``"int64"``)."""
        return {**{k: "bytes" for k in self.image_keys}, **{k: "int64" for k in self.int_keys}}

    @property
    def id_columns(self) -> tuple[str, ...]:
        """Manifest columns whose images make one record, in record order."""
        return tuple(r.id_column for r in self.roles)

    @property
    def class_columns(self) -> tuple[str, ...]:
        """Manifest class columns, each once, in role order."""
        return tuple(dict.fromkeys(r.class_column for r in self.roles))

    @property
    def sample_columns(self) -> tuple[str, ...]:
        """The columns a sampler returns: ids, ``label`` (if labelled), classes."""
        label = (LABEL,) if self.labelled else ()
        return (*self.id_columns, *label, *self.class_columns)

    @property
    def manifest_columns(self) -> tuple[str, ...]:
        """The manifest table's columns, in file order."""
        return (RECORD_ID, *self.sample_columns, SPLIT, AUG_SEED)

    @property
    def feature_columns(self) -> dict[str, str]:
        """Int64 feature to the manifest column it is written from."""
        out = {RECORD_ID: RECORD_ID}
        if self.labelled:
            out[LABEL] = LABEL
        for r in self.roles:
            out[r.id_key] = r.id_column
            out[r.class_key] = r.class_column
        return out

    def encode_fields(self, row: Any, r: int, images: tuple[bytes, ...]) -> dict[str, Any]:
        """The feature values of manifest row ``r`` (``row``: column name to array) with its images."""
        out: dict[str, Any] = {k: v for k, v in zip(self.image_keys, images)}
        for key, column in self.feature_columns.items():
            out[key] = int(row[column][r])
        return out

    @property
    def target(self) -> str | None:
        """The int64 feature a Keras-style ``(x, y)`` element pairs with the images, if any:
        ``label`` for a labelled kind, the class of a one-image kind (``class``), else ``None``."""
        if self.labelled:
            return LABEL
        return self.roles[0].class_key if len(self.roles) == 1 else None

    @property
    def arrays(self) -> tuple[str, ...]:
        """The array names :func:`pairgen.load_numpy` returns, in order."""
        return tuple(array_name(k) for k in (*self.image_keys, *self.int_keys))


def array_name(feature: str) -> str:
    """The array key of a record feature: ``a/image`` -> ``a``, ``a/id`` -> ``a_id``, ``image`` -> ``image``."""
    return feature.replace("/image", "").replace("/", "_")


PAIRS = KindSchema(Kind.PAIRS, (Role("a", "a_class"), Role("b", "b_class")), labelled=True, symmetric=True)
TRIPLETS = KindSchema(
    Kind.TRIPLETS,
    (Role("anchor", "anchor_class"), Role("positive", "anchor_class"), Role("negative", "negative_class")),
    labelled=False,
)
IMAGES = KindSchema(Kind.IMAGES, (Role("", "class_id"),), labelled=False, every_image=True)
SCHEMAS: dict[Kind, KindSchema] = {s.kind: s for s in (PAIRS, TRIPLETS, IMAGES)}


def schema_of(kind: Kind | str) -> KindSchema:
    """The schema of ``kind`` (a :class:`~pairgen.spec.config.Kind` or its value)."""
    return SCHEMAS[Kind(kind)]


# The catalog of a scan (catalog.parquet) and its skipped files (skipped.parquet): their columns, in order.
IMAGE_COLUMNS = ("image_id", "path", "class_name", "class_id", "split", "folder_split", "side",
                 "key", "sha256", "bytes", "width", "height", "channels")
SKIPPED_COLUMNS = ("path", "reason")
