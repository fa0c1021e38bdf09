"""Check a dataset directory against its ``dataset.json`` card.

:func:`verify` re-hashes every manifest, table and shard listed in the card, checks that
each shard file starts with its own first record (``exchanged`` when it holds another
shard's: see :func:`pairgen.reading.checks.foreign_records`), counts the records of every
shard by reading its TFRecord framing, compares each record's ids, classes
and label with its manifest row, checks that manifest ids exist in the catalog and that the
labels obey the guarantees (positives share a class and never pair an image with itself,
negatives span two classes, triplet negatives are of another class, no record crosses
splits), recomputes the fingerprint from the card's config and the catalog, and reports any
file under ``manifests/`` or ``shards/`` that the card does not list. ``rebuild_src`` also
rebuilds the dataset from the card's config into a temporary folder and compares every file
byte for byte.

Shards are read in pure Python (:func:`pairgen.codec.tfrecord.iter_records`), so verifying never imports
TensorFlow, and neither does the rebuild check (builds never import it).
"""

from __future__ import annotations

import dataclasses
import filecmp
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pairgen.codec.tfrecord import TFRecordError, iter_records, read_records_at
from pairgen.dataset import layout
from pairgen.dataset import tables as mf
from pairgen.dataset.card import Card, read_card
from pairgen.dataset.fingerprints import fingerprint, split_fingerprint
from pairgen.dataset.versions import resolve
from pairgen.errors import DatasetError, PairgenError
from pairgen.reading.checks import check_image_spec, foreign_records, image_mismatch
from pairgen.spec.config import BuildConfig
from pairgen.spec.schema import schema_of
from pairgen.tools.guarantees import Problem, check_manifest

# --------------------------------------------------------------------------- report


@dataclass
class VerifyReport:
    """What :func:`verify` found."""

    path: str
    name: str
    version: str
    fingerprint: str
    files: int = 0
    shards: int = 0
    records: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """One line: ``OK ...`` or ``FAILED ...`` with counts."""
        head = "OK" if self.ok else f"FAILED ({len(self.problems)} problem(s))"
        return (f"{head} {self.path}: {self.name} {self.version} fingerprint {self.fingerprint[:12]}, "
                f"{self.files} files, {self.shards} shards, {self.records:,} records checked")

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, with ``ok`` and every problem as a dict."""
        out = dataclasses.asdict(self)
        out["ok"] = self.ok
        out["problems"] = [dataclasses.asdict(p) for p in self.problems]
        return out


# --------------------------------------------------------------------------- verify


def verify(path: str | os.PathLike, *, rebuild_src: str | os.PathLike | None = None,
           quick: bool = False) -> VerifyReport:
    """Verify a dataset directory against its card.

    Args:
        path: Dataset directory (``dir``, ``dir@version`` or ``dir@fingerprint-prefix``).
        rebuild_src: If given, also rebuild from the card's config with ``source.path`` set to
            this folder, in a temporary directory, and compare every file byte for byte.
        quick: Skip the record-by-record comparison of shards with manifests (hashes, record
            counts and manifest guarantees are still checked).

    Returns:
        The report; ``report.ok`` is true when nothing is wrong.

    Raises:
        DatasetError: If ``path`` holds no readable ``dataset.json``.
    """
    root = resolve(path)
    card = read_card(root, complete=True)
    report = VerifyReport(str(path), str(card.name), str(card.version), str(card.fingerprint))
    problems = report.problems
    problems += _check_image_spec(card, root)
    for rel, meta in sorted(card.files.items()):
        problems += _check_file(root, rel, meta)
        report.files += 1
    catalog = _read_if_intact(root, layout.CATALOG, problems)
    if catalog is not None:
        problems += _check_fingerprint(card, catalog)
    problems += _extra_files(root, card)
    for split in card.splits:
        manifest = _read_if_intact(root, layout.manifest(split), problems)
        if manifest is not None and catalog is not None:
            problems += check_manifest(manifest, catalog, split, card)
        for entry in card.shards.get(split, []):
            report.shards += 1
            exchanged = _check_tie(root, entry, card)
            problems += exchanged or _check_file(root, entry["path"], entry)
            report.records += _check_shard(root, entry, card, split, None if exchanged else manifest, quick, problems)
    if rebuild_src is not None:
        problems += rebuild_check(root, card, rebuild_src)
    return report


def _check_image_spec(card: Card, root: Path) -> list[Problem]:
    """The card's image spec against its build config (records are checked in ``_check_shard``)."""
    try:
        check_image_spec(card, root)
    except DatasetError as exc:
        return [Problem(layout.CARD, "invalid", str(exc))]
    return []


def _check_file(root: Path, rel: str, meta: dict[str, Any]) -> list[Problem]:
    path = root / rel
    if not path.is_file():
        return [Problem(rel, "missing", "listed in dataset.json but not on disk")]
    size, digest = mf.file_digest(path)
    want = int(meta["bytes"])
    if size < want:
        return [Problem(rel, "truncated", f"{size:,} of {want:,} bytes")]
    if size > want:
        return [Problem(rel, "changed", f"{size:,} bytes, dataset.json says {want:,}")]
    if digest != meta["sha256"]:
        return [Problem(rel, "changed", f"sha256 {digest[:12]}..., dataset.json says {meta['sha256'][:12]}...")]
    return []


def _check_tie(root: Path, entry: dict[str, Any], card: Card) -> list[Problem]:
    """An ``exchanged`` problem when the shard file starts with another shard's first record."""
    path = root / entry["path"]
    if not path.is_file():
        return []
    try:
        first = read_records_at(path, [0], compression=card.compression).get(0)
    except TFRecordError:
        return []  # reported as damaged by _check_shard
    holds = foreign_records(card, entry, first)
    if holds is None:
        return []
    return [Problem(entry["path"], "exchanged", f"holds {holds} (its first record), not its own; move the "
                                                "file back to its own name or rebuild the dataset")]


def _read_if_intact(root: Path, rel: str, problems: list[Problem]) -> pd.DataFrame | None:
    """Read a Parquet table unless it is missing or unreadable (already reported then)."""
    path = root / rel
    if not path.is_file():
        if not any(p.file == rel for p in problems):
            problems.append(Problem(rel, "missing", "not on disk"))
        return None
    try:
        return mf.read_table(path)
    except PairgenError:
        if not any(p.file == rel for p in problems):
            problems.append(Problem(rel, "corrupt", "not a readable Parquet file"))
        return None


def _check_fingerprint(card: Card, catalog: pd.DataFrame) -> list[Problem]:
    try:
        config = BuildConfig.from_dict(card.config)
    except PairgenError as exc:
        return [Problem(layout.CARD, "invalid", f"config cannot be read ({exc})")]
    actual = fingerprint(config, catalog)
    if actual != card.fingerprint:
        return [Problem(layout.CARD, "changed", f"fingerprint of its config and catalog is "
                        f"{actual[:12]}..., the card says {str(card.fingerprint)[:12]}...")]
    if card.split_fingerprint is None:
        return []
    splits = split_fingerprint(catalog)
    if splits != card.split_fingerprint:
        return [Problem(layout.CARD, "changed", f"split fingerprint of its catalog is "
                        f"{splits[:12]}..., the card says {str(card.split_fingerprint)[:12]}...")]
    return []


def _extra_files(root: Path, card: Card) -> list[Problem]:
    listed = _listed(card)
    out = []
    for folder in (layout.MANIFESTS_DIR, layout.SHARDS_DIR):
        if not (root / folder).is_dir():
            continue
        for p in sorted((root / folder).rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and rel not in listed:
                out.append(Problem(rel, "extra", "on disk but not listed in dataset.json"))
    return out


def _check_shard(root: Path, entry: dict[str, Any], card: Card, split: str,
                 manifest: pd.DataFrame | None, quick: bool, problems: list[Problem]) -> int:
    """Count a shard's records (and compare them with the manifest); return the count."""
    rel, path = entry["path"], root / entry["path"]
    if not path.is_file():
        return 0
    entries = card.shards[split]
    start = sum(int(e["records"]) for e in entries[: entries.index(entry)])
    compare = None if quick or manifest is None else _RecordComparer(card, manifest, start)
    count = 0
    try:
        for data in iter_records(path, compression=card.compression,
                                   read_data=compare is not None):
            message = compare.check(count, data) if compare is not None else None
            if message:
                problems.append(Problem(rel, "mismatch", message))
                compare = None  # one mismatch names the shard; keep counting its records
            count += 1
    except TFRecordError as exc:
        problems.append(Problem(rel, exc.kind, f"{exc} (after {count:,} readable records)"))
        return count
    if count != int(entry["records"]):
        problems.append(Problem(rel, "count", f"holds {count:,} records, dataset.json says {int(entry['records']):,}"))
    return count


# --------------------------------------------------------------------------- rebuild check


def rebuild_check(root: str | os.PathLike, card: Card, src: str | os.PathLike) -> list[Problem]:
    """Rebuild the dataset from ``src`` with the card's config and compare byte for byte.

    Args:
        root: The dataset directory being verified.
        card: Its card.
        src: The source folder to rebuild from (replaces ``source.path``; a label table keeps
            its file name inside this folder).

    Returns:
        Problems: a different fingerprint, and every file that differs or exists in only
        one of the two (``dataset.json`` itself differs only in ``created_at`` and is skipped).

    Raises:
        PairgenError: If the rebuild itself fails (for example the source is missing).
    """
    from pairgen.writing.builder import build

    config = BuildConfig.from_dict(card.config)
    src = Path(src).resolve()
    table = str(src / Path(config.source.table).name) if config.source.table else None
    config = config.replace(
        source=dataclasses.replace(config.source, path=str(src), table=table),
        build=dataclasses.replace(config.build, overwrite=True, keep_versions=False, quiet=True))
    with tempfile.TemporaryDirectory(prefix="pairgen-rebuild-") as tmp:
        fresh = Card.from_dict(build(config, Path(tmp) / "dataset"), tmp)
        problems = []
        if fresh.fingerprint != card.fingerprint:
            problems.append(Problem(layout.CARD, "rebuild", f"a rebuild from '{src}' has fingerprint "
                                    f"{fresh.fingerprint[:12]}..., this dataset {card.fingerprint[:12]}... "
                                    "(the source bytes or config differ)"))
        for rel in sorted(_listed(card) | _listed(fresh)):
            mine, theirs = Path(root) / rel, Path(tmp) / "dataset" / rel
            if not theirs.is_file():
                problems.append(Problem(rel, "rebuild", "not produced by the rebuild"))
            elif not mine.is_file():
                problems.append(Problem(rel, "rebuild", "produced by the rebuild but missing here"))
            elif not filecmp.cmp(mine, theirs, shallow=False):
                problems.append(Problem(rel, "rebuild", f"differs from the rebuild from '{src}'"))
    return problems


def _listed(card: Card) -> set[str]:
    return set(card.files) | {e["path"] for entries in card.shards.values() for e in entries}


class _RecordComparer:
    """Compares decoded shard records with the manifest rows they were made from."""

    def __init__(self, card: Card, manifest: pd.DataFrame, start: int) -> None:
        schema = schema_of(card.kind)
        self.fields = schema.feature_columns
        self.columns = {c: manifest[c].to_numpy() for c in set(self.fields.values()) if c in manifest}
        self.start, self.rows = start, len(manifest)
        self.card = card
        self.image_keys = schema.image_keys

    def check(self, index: int, data: bytes | None) -> str | None:
        from pairgen.codec.example import decode_example

        row = self.start + index
        if row >= self.rows:
            return f"record {index} has no manifest row (the manifest has {self.rows:,})"
        try:
            features = decode_example(data or b"")
        except PairgenError:
            return f"record {index} is not a valid tf.train.Example"
        for key, column in self.fields.items():
            got = features.get(key) or [None]
            want = int(self.columns[column][row]) if column in self.columns else None
            if got[0] != want:
                return f"record {index} has {key}={got[0]}, manifest row {row} says {column}={want}"
        _, problem = image_mismatch(features, self.image_keys, self.card)
        if problem is not None:
            return f"record {index} does not match the image spec of dataset.json ({problem})"
        return None
