"""The dataset card, ``dataset.json``: a frozen, validated :class:`Card`, read and written here only.

A card records what a dataset is (``name``, ``version``, ``fingerprint``, ``kind``, the
resolved ``config``), what its records hold (``image``: height, width, channels, encoding;
``compression``), every table and shard with its sha256, size and record count (``files``,
``shards``; each shard entry also has ``first_record``, the digest of its first record, see
:func:`first_record_digest`, absent in cards written before it), per-split counts (``splits``), the scan summary (``source``, ``leakage``) and its
lineage (``parent``: the fingerprint of the dataset that was at the same output path before,
see :mod:`pairgen.dataset.versions`) and ``split_fingerprint``, which identifies the split assignment
alone (:func:`pairgen.split_fingerprint`). ``created_at`` and ``pairgen_version``
are informative; the fingerprint (:mod:`pairgen.dataset.fingerprints`) hashes neither.

Every reader goes through :func:`read_card`, which checks what a loader needs (``kind``,
``image``, ``shards``, a readable ``format_version``); ``pairgen verify`` asks for a complete
card (``complete=True``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pairgen.dataset.layout import CARD as CARD_NAME
from pairgen.dataset.layout import sibling
from pairgen.errors import DatasetError
from pairgen.spec.config import Encoding, Kind

FORMAT_VERSION = 1
FIRST_RECORD = "first_record"  # a shard entry's digest of its first record (see first_record_digest)

_LOADER_KEYS = ("kind", "image", "shards")
_COMPLETE_KEYS = ("name", "version", "fingerprint", "kind", "config", "splits", "files", "shards")


@dataclass(frozen=True)
class ImageSpec:
    """The fixed shape and encoding of every image in a dataset's records."""

    height: int
    width: int
    channels: int
    encoding: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)``."""
        return (self.height, self.width, self.channels)

    @classmethod
    def from_dict(cls, image: Any, where: str | os.PathLike) -> ImageSpec:
        """Parse a card's ``image`` entry.

        Raises:
            DatasetError: If a key is missing or the encoding is not raw, png or jpeg.
        """
        try:
            spec = cls(int(image["height"]), int(image["width"]), int(image["channels"]), str(image["encoding"]))
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"'{where}/{CARD_NAME}' has an incomplete \"image\" entry "
                               "(needs height, width, channels, encoding); rebuild the dataset.") from None
        if spec.encoding not in {e.value for e in Encoding}:
            raise DatasetError(f"'{where}/{CARD_NAME}' has image encoding {spec.encoding!r}; "
                               "expected raw, png or jpeg.")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Card:
    """A dataset card. Build one with keywords or :meth:`from_dict`; :meth:`to_dict` gives the JSON."""

    kind: Kind
    image: ImageSpec
    shards: dict[str, list[dict[str, Any]]]
    name: str = ""
    version: str = ""
    fingerprint: str = ""
    format_version: int = FORMAT_VERSION
    pairgen_version: str = ""
    created_at: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    compression: str = "none"
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    leakage: dict[str, Any] = field(default_factory=dict)
    near_duplicates: dict[str, Any] = field(default_factory=dict)  # near-duplicate pairs across splits
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifest_only: bool = False
    parent: str | None = None
    split_fingerprint: str | None = None  # see pairgen.dataset.fingerprints; None in cards written before it

    @classmethod
    def from_dict(cls, data: Any, where: str | os.PathLike, *, complete: bool = False) -> Card:
        """Validate the parsed JSON of ``<where>/dataset.json``.

        Args:
            data: The parsed JSON.
            where: The dataset directory (for messages).
            complete: Also require everything ``pairgen verify`` checks (name, version,
                fingerprint, config, splits, files).

        Raises:
            DatasetError: If a required key is missing, the kind or image entry is invalid, or
                the format version is newer than this pairgen reads.
        """
        data = data if isinstance(data, dict) else {}
        required = _COMPLETE_KEYS + ("image",) if complete else _LOADER_KEYS
        missing = [k for k in required if k not in data]
        if missing or data.get("kind") not in {k.value for k in Kind}:
            raise DatasetError(f"'{Path(where) / CARD_NAME}' lacks {', '.join(missing) or 'a valid kind'}; "
                               "it was not written by pairgen build. Rebuild the dataset.")
        check_format(data.get("format_version", FORMAT_VERSION), where)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.update(kind=Kind(data["kind"]), image=ImageSpec.from_dict(data["image"], where))
        return cls(**values)

    @classmethod
    def of(cls, card: Card | Mapping[str, Any], where: str | os.PathLike) -> Card:
        """``card`` itself, or a card parsed from its JSON data (see :meth:`from_dict`)."""
        return card if isinstance(card, Card) else cls.from_dict(dict(card), where)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data (the keys of ``dataset.json``)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(kind=self.kind.value, image=self.image.to_dict())
        return out

    def replace(self, **changes: Any) -> Card:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def shard_paths(self, root: str | os.PathLike, split: str) -> list[str]:
        """The split's shard paths under ``root``, in order, checked to exist.

        Raises:
            DatasetError: If the card has no such split or a listed shard is missing.
        """
        if split not in self.shards:
            have = ", ".join(self.shards) or "none"
            raise DatasetError(f"dataset '{root}' has no split {split!r}; it has: {have}.")
        files = [str(Path(root) / entry["path"]) for entry in self.shards[split]]
        for f in files:
            if not os.path.isfile(f):
                raise DatasetError(f"shard '{f}' listed in {CARD_NAME} is missing; run `pairgen verify {root}`.")
        return files


def first_record_digest(record: bytes) -> str:
    """A shard entry's ``first_record``: the first 16 hex digits of the sha256 of its first record.

    It ties each shard file to its place in the card: a file exchanged with another shard (of
    this split, another split or another dataset) starts with another record, which readers see
    by reading that one record (:func:`pairgen.reading.checks.check_split`).
    """
    return hashlib.sha256(record).hexdigest()[:16]


def check_format(version: Any, where: str | os.PathLike) -> None:
    """Raise unless ``format_version`` is a positive integer at most the one this pairgen writes.

    Raises:
        DatasetError: If ``version`` is newer, or not a positive integer.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DatasetError(f"'{Path(where) / CARD_NAME}' has an invalid format_version {version!r}; "
                           "rebuild the dataset.")
    if version > FORMAT_VERSION:
        from pairgen import __version__

        raise DatasetError(f"'{Path(where) / CARD_NAME}' has format_version {version}, newer than pairgen "
                           f"{__version__} reads (up to {FORMAT_VERSION}); upgrade pairgen to read it.")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``<path>/dataset.json``, unvalidated.

    Raises:
        DatasetError: If ``path`` does not exist, has no card or the card is not JSON.
    """
    card = Path(path) / CARD_NAME
    if not card.is_file():
        raise DatasetError(_missing_card(Path(path)))
    try:
        return json.loads(card.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"'{card}' is not valid JSON ({exc}). Rebuild the dataset.") from None


def _missing_card(path: Path) -> str:
    """Why ``path`` holds no card, and the command that fixes it."""
    if not os.path.lexists(path):
        old = sibling(path, "old")
        if not old.is_symlink() and probe_card(old) is not None:
            return (f"dataset '{path}' does not exist, but the dataset it held is kept in '{old}' (a build "
                    f"was interrupted while installing its replacement). The next `pairgen build --out {path}` "
                    f"puts it back first, or move it back by hand: mv '{old}' '{path}'.")
        return f"dataset '{path}' does not exist. Build it with `pairgen build --out {path}`."
    if path.is_dir() and not any(path.iterdir()):
        return (f"'{path}' has no {CARD_NAME}: it is an empty folder, not a pairgen dataset. "
                f"Build one into it with `pairgen build --out {path}`.")
    return (f"'{path}' has no {CARD_NAME}: it is not a pairgen dataset (a build never leaves one half-written "
            "there), and `pairgen build` does not write into a folder that holds other files. Give the folder "
            "of a dataset, or build one into a new or empty folder (`pairgen build --out NEW_FOLDER`).")


def probe_card(path: str | os.PathLike) -> dict[str, Any] | None:
    """The raw card at ``path`` if the folder looks like a pairgen dataset, else ``None``; never raises.

    For deciding what a folder is (may ``--overwrite`` replace it? which kept version is it?),
    where any card, also one of an older or newer format, counts: a JSON object with
    ``fingerprint`` and ``format_version``. Readers of a dataset's contents use :func:`read_card`.
    """
    try:
        card = json.loads((Path(path) / CARD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) and "fingerprint" in card and "format_version" in card else None


def read_card(path: str | os.PathLike, *, complete: bool = False) -> Card:
    """Read and validate ``<path>/dataset.json`` (see :meth:`Card.from_dict`).

    Raises:
        DatasetError: If ``path`` is not a finished pairgen dataset directory.
    """
    return Card.from_dict(read_json(path), path, complete=complete)


def write_card(path: str | os.PathLike, card: Card | Mapping[str, Any]) -> None:
    """Write ``<path>/dataset.json`` with sorted keys and a trailing newline."""
    data = card.to_dict() if isinstance(card, Card) else dict(card)
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (Path(path) / CARD_NAME).write_text(text, encoding="utf-8")
