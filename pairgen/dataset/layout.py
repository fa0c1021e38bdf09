"""Every file and folder name of a dataset directory, and of the build's leftovers beside it.

The only module that spells these names: every reader, writer and check asks here, as TFDS's
``naming.py`` owns its file templates. Paths returned are relative to the dataset directory
(as the card's ``files`` and ``shards`` entries are), except :func:`sibling`.

::

    <out>/dataset.json                 CARD
    <out>/catalog.parquet              CATALOG
    <out>/skipped.parquet              SKIPPED
    <out>/manifests/<split>.parquet    manifest(split)
    <out>/shards/<split>-00000-of-00004.tfrecord[.gz]    shard(split, 0, 4, gzip=...)
    <out>/shards/.parts/               PARTS_DIR (only while a build writes)
    <out>/versions/<version>-<fp12>/   VERSIONS_DIR, kept older versions
    <out>/latest                       LATEST
    <out>/.pairgen-temp                TEMP_MARKER (a folder pairgen may delete)
    <parent>/.<name>.lock|.partial|.old    sibling(out, "lock" | "partial" | "old")
"""

from __future__ import annotations

from pathlib import Path

CARD = "dataset.json"
CATALOG = "catalog.parquet"
SKIPPED = "skipped.parquet"
MANIFESTS_DIR = "manifests"
SHARDS_DIR = "shards"
PARTS_DIR = f"{SHARDS_DIR}/.parts"
VERSIONS_DIR = "versions"
LATEST = "latest"
TEMP_MARKER = ".pairgen-temp"
SHARD_SUFFIX = ".tfrecord"
GZIP_SUFFIX = ".gz"

# What a build puts at <out> besides the tables: the names pairgen may replace there.
OWN_NAMES = frozenset({CARD, MANIFESTS_DIR, SHARDS_DIR, VERSIONS_DIR, LATEST, TEMP_MARKER})
SIBLING_TAGS = ("lock", "partial", "old")


def manifest(split: str) -> str:
    """``manifests/<split>.parquet``."""
    return f"{MANIFESTS_DIR}/{split}.parquet"


def shard(split: str, index: int, num_shards: int, *, gzip: bool = False) -> str:
    """``shards/<split>-<index:05d>-of-<num_shards:05d>.tfrecord``, with ``.gz`` for GZIP shards."""
    suffix = SHARD_SUFFIX + (GZIP_SUFFIX if gzip else "")
    return f"{SHARDS_DIR}/{split}-{index:05d}-of-{num_shards:05d}{suffix}"


def sibling(out: Path, tag: str) -> Path:
    """``.<name>.<tag>`` beside ``out``: the build's ``lock``, ``partial`` folder or replaced ``old`` dataset."""
    if tag not in SIBLING_TAGS:
        raise ValueError(f"sibling tag must be one of {', '.join(SIBLING_TAGS)}; received: {tag!r}")
    return out.parent / f".{out.name}.{tag}"
