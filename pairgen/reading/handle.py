"""One split of one dataset, opened once: the handle every reader starts from.

:class:`SplitHandle` resolves ``dir@version`` / ``dir@fingerprint-prefix``, reads the card once,
takes the kind's schema (:mod:`pairgen.spec.schema`), lists the split's shard files and record
counts, and runs the loaders' checks of the split once (:func:`pairgen.reading.checks.check_split`).
:func:`pairgen.load_numpy`, :func:`pairgen.stream`, the P x K readers, :mod:`pairgen.torch` and
the tf.data loaders all open their split through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pairgen.dataset import layout
from pairgen.dataset.card import Card, read_card
from pairgen.dataset.versions import resolve
from pairgen.errors import DatasetError
from pairgen.reading.checks import check_split, count_message
from pairgen.reading.engine import RecordSpec
from pairgen.spec.schema import KindSchema, schema_of

Require = Callable[[Path, Card], None]


class SplitHandle:
    """A dataset's split: root, card, schema, shard files and counts, checked once when opened.

    Args:
        path: Dataset directory (``dir@version`` and ``dir@fingerprint-prefix`` accepted).
        split: Split name.
        check: Run :func:`pairgen.reading.checks.check_split` (image spec, shard sizes, first
            records); off for readers that only need the card (record counts).
        require: Called as ``require(root, card)`` before the split is looked up, to refuse a
            dataset of the wrong kind with the reader's own message.

    Raises:
        DatasetError: If the dataset, its card or the split is missing, the dataset was built
            with ``--manifest-only`` (no shards), a listed shard is missing, or a check fails.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *, check: bool = True,
                 require: Require | None = None) -> None:
        self.root: Path = resolve(path)
        self.card: Card = read_card(self.root)
        if require is not None:
            require(self.root, self.card)
        self.split = split
        if self.card.manifest_only:
            raise DatasetError(f"dataset '{self.root}' was built with --manifest-only: it has manifests but no "
                               "shards, so there are no records to read. Rebuild it without --manifest-only "
                               f"(`pairgen build ... --out {self.root} --overwrite`).")
        self.files: list[str] = self.card.shard_paths(self.root, split)
        self.schema: KindSchema = schema_of(self.card.kind)
        if check:
            check_split(self.card, self.root, split)

    @property
    def path(self) -> Path:
        """The resolved dataset directory (as ``root``)."""
        return self.root

    @property
    def image_keys(self) -> tuple[str, ...]:
        """The records' image features."""
        return self.schema.image_keys

    @property
    def int_keys(self) -> tuple[str, ...]:
        """The records' int64 features."""
        return self.schema.int_keys

    @property
    def spec(self) -> RecordSpec:
        """What the NumPy record engine needs: features, image spec, compression."""
        return RecordSpec(self.image_keys, self.int_keys, self.card.image.shape, self.card.image.encoding,
                          self.card.compression)

    @property
    def listed(self) -> list[int | None]:
        """Each shard's record count as the card lists it (``None`` where it lists none)."""
        return [None if e.get("records") is None else int(e["records"]) for e in self.card.shards[self.split]]

    @property
    def counts(self) -> list[int]:
        """Each shard's record count from the card.

        Raises:
            DatasetError: If a shard entry lacks its count.
        """
        try:
            return [int(entry["records"]) for entry in self.card.shards[self.split]]
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"'{self.root / layout.CARD}' lacks the record count of a shard of split "
                               f"{self.split!r}; rebuild the dataset.") from None

    @property
    def records(self) -> int | None:
        """Records of the split according to the card, or ``None`` if a shard entry lacks a count."""
        listed = self.listed
        return None if any(n is None for n in listed) else sum(n for n in listed if n is not None)

    def check_count(self, shard: str, count: int, whole: bool) -> None:
        """Raise unless a shard read to its end (``whole``) held the records the card lists for it.

        Raises:
            DatasetError: The one-line count error naming the shard.
        """
        expected = dict(zip(self.files, self.listed)).get(shard)
        if whole and expected is not None and count != expected:
            raise DatasetError(count_message(shard, count, expected, self.root))
