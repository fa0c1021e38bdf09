"""TFRecord shard planning, writing and reading.

Plan first, then write: :func:`plan_shards` turns a record count into frozen
:class:`ShardSpec` objects, and :class:`ShardWriter` fills them in order. Every shard file,
in a build's workers and in tests alike, is written by one :class:`ShardFile`: records framed
by :func:`pairgen.codec.tfrecord.frame`, GZIP with the build's fixed settings, hashed while
written, renamed into place on commit. TensorFlow is never imported.

A split with zero records gets zero shards (an empty list); the split is still listed in
``dataset.json`` so readers see that it exists and is empty.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairgen.codec.tfrecord import GZIP_LEVEL, FirstFrame, frame
from pairgen.dataset import layout
from pairgen.dataset.card import FIRST_RECORD, first_record_digest
from pairgen.errors import BuildError
from pairgen.spec.config import Compression, ShardConfig

MIB = 1 << 20


@dataclass(frozen=True)
class ShardSpec:
    """One planned shard: records ``[start, stop)`` of a split go to ``path``.

    Attributes:
        split: Split name (``train``, ``val``, ...).
        index: Shard number, from 0.
        num_shards: Number of shards of the split.
        start: First record (inclusive), counted within the split.
        stop: Last record (exclusive).
        path: File path relative to the dataset directory,
            ``shards/<split>-00000-of-00003.tfrecord`` (``.tfrecord.gz`` with gzip).
    """

    split: str
    index: int
    num_shards: int
    start: int
    stop: int
    path: str

    @property
    def num_records(self) -> int:
        """Records in the shard: ``stop - start``."""
        return self.stop - self.start


def shard_path(split: str, index: int, num_shards: int, compression: Compression | str) -> str:
    """The relative path of one shard file.

    Args:
        split: Split name.
        index: Shard number, from 0.
        num_shards: Number of shards of the split.
        compression: ``"none"`` or ``"gzip"``.

    Returns:
        ``shards/<split>-<index:05d>-of-<num_shards:05d>.tfrecord`` plus ``.gz`` for gzip.
    """
    comp = Compression.from_value(compression, "shards.compression")
    return layout.shard(split, index, num_shards, gzip=comp is Compression.GZIP)


def shard_boundaries(num_records: int, num_shards: int) -> list[tuple[int, int]]:
    """Split ``range(num_records)`` into ``num_shards`` contiguous, near-equal ranges.

    Shard sizes differ by at most one and the larger ones come first. Boundaries are computed
    from the totals alone (``i * n // k``), never by accumulating sizes, so they are exact.

    Args:
        num_records: Number of records, >= 0.
        num_shards: Number of shards, >= 1 (>= 0 when ``num_records`` is 0).

    Returns:
        ``[(start, stop), ...]`` with one entry per shard.

    Raises:
        BuildError: If the counts are negative or there are records but no shards.
    """
    if num_records < 0 or num_shards < 0 or (num_records > 0 and num_shards == 0):
        raise BuildError(
            f"cannot split {num_records} records into {num_shards} shards; "
            "both must be >= 0 and records need at least one shard."
        )
    if num_shards == 0:
        return []
    # Larger shards first: ceil-based boundaries give sizes like 4, 3, 3 for 10 / 3.
    edges = [num_records - (num_shards - i) * num_records // num_shards
             for i in range(num_shards + 1)]
    return list(zip(edges[:-1], edges[1:]))


def count_shards(num_records: int, *, record_bytes: float, config: ShardConfig) -> int:
    """How many shards ``num_records`` records need under ``config``.

    Args:
        num_records: Number of records in the split.
        record_bytes: Average serialized size of one record, in bytes.
        config: ``records_per_shard`` if > 0, else ``shard_mb`` (MiB per shard).

    Returns:
        0 for zero records, else at least 1 and never more than ``num_records``.
    """
    if num_records <= 0:
        return 0
    if config.records_per_shard > 0:
        shards = math.ceil(num_records / config.records_per_shard)
    else:
        shards = math.ceil(num_records * max(record_bytes, 0.0) / (config.shard_mb * MIB))
    return min(max(shards, 1), num_records)


def plan_shards(split: str, num_records: int, *, record_bytes: float,
                config: ShardConfig) -> list[ShardSpec]:
    """Plan the shard files of one split.

    Args:
        split: Split name; it becomes part of every file name.
        num_records: Number of records in the split.
        record_bytes: Average serialized size of one record, in bytes (used with
            ``shard_mb``; ignored when ``config.records_per_shard`` > 0).
        config: Shard size and compression.

    Returns:
        One :class:`ShardSpec` per file, covering ``range(num_records)`` in order; an empty
        list when ``num_records`` is 0.

    Raises:
        BuildError: If ``num_records`` is negative or ``split`` is not a plain name.
    """
    if num_records < 0:
        raise BuildError(f"split {split!r} has a negative record count ({num_records}).")
    if not split or "/" in split or "\\" in split or split.startswith("."):
        raise BuildError(f"split name {split!r} cannot be used in a file name; use letters, digits, - or _.")
    n = count_shards(num_records, record_bytes=record_bytes, config=config)
    return [
        ShardSpec(split, i, n, start, stop, shard_path(split, i, n, config.compression))
        for i, (start, stop) in enumerate(shard_boundaries(num_records, n))
    ]


def _is_gzip(compression: Compression | str) -> bool:
    return Compression.from_value(compression, "shards.compression") is Compression.GZIP


@dataclass(frozen=True)
class FileDigest:
    """What was written to one file: its size on disk, the sha256 of those bytes and, for a
    shard with records, the digest of its first record (:func:`pairgen.dataset.card.first_record_digest`)."""

    bytes: int
    sha256: str
    first_record: str | None = None

    def entry(self, path: str, records: int) -> dict[str, Any]:
        """The card's description of the shard: ``{"path", "records", "bytes", "sha256", "first_record"}``
        (never its bytes; ``first_record`` only when the shard has a record)."""
        out: dict[str, Any] = {"path": path, "records": records, "bytes": self.bytes, "sha256": self.sha256}
        if self.first_record is not None:
            out[FIRST_RECORD] = self.first_record
        return out


class _Sink:
    """The file on disk, hashing every byte that reaches it (the compressed ones when gzipped)."""

    def __init__(self, path: Path) -> None:
        self.path, self.size = path, 0
        self._file, self._sha = open(path, "wb"), hashlib.sha256()

    def write(self, data: bytes) -> int:  # GzipFile calls this with compressed bytes
        if self._file.closed:  # an aborted GzipFile flushing its trailer when collected
            return 0
        self._sha.update(data)
        self.size += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> FileDigest:
        self._file.close()
        return FileDigest(self.size, self._sha.hexdigest())


class ShardFile:
    """One TFRecord file being written: framed records, optional GZIP, digested as written.

    The file is written under a hidden temporary name beside ``path`` and renamed into place
    by :meth:`commit`, so a failed or killed writer never leaves a partial file under the
    shard's name (:meth:`abort`, or leaving the ``with`` block by an exception, deletes it).
    GZIP output has no file name, mtime 0 and level ``GZIP_LEVEL``: the same records give
    the same bytes.

    Example::

        with ShardFile(out_dir / spec.path, gzipped=True) as shard:
            shard.extend(records)
        shard.digest   # FileDigest(bytes=..., sha256=...)
    """

    def __init__(self, path: str | os.PathLike, *, gzipped: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp")
        self._sink = _Sink(self.tmp)
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._sink, mtime=0,
                                 compresslevel=GZIP_LEVEL) if gzipped else None
        self._first = FirstFrame()
        self.digest: FileDigest | None = None

    def __enter__(self) -> ShardFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def write(self, record: bytes) -> None:
        """Append one serialized record, framed."""
        self.add(frame(record))

    def extend(self, records: Iterable[bytes]) -> None:
        """Append serialized records, framed, in order."""
        self.add(b"".join(frame(r) for r in records))

    def add(self, data: bytes) -> None:
        """Append bytes that are already TFRecord frames (compressed on the way when gzipped)."""
        self._first.feed(data)
        if self._gz is not None:
            self._gz.write(data)
        else:
            self._sink.write(data)

    def commit(self) -> FileDigest:
        """Finish the file, rename it to ``path`` and return its digest (again if called twice)."""
        if self.digest is None:
            if self._gz is not None:
                self._gz.close()
            digest = self._sink.close()
            os.replace(self.tmp, self.path)
            first = self._first.data
            self.digest = dataclasses.replace(
                digest, first_record=None if first is None else first_record_digest(first))
        return self.digest

    def abort(self) -> None:
        """Close and delete the temporary file; nothing appears under ``path``."""
        if self.digest is None:
            self._sink.close()
            self.tmp.unlink(missing_ok=True)


class ShardWriter:
    """Write serialized records into planned shard files, in order.

    Example::

        specs = plan_shards("train", len(rows), record_bytes=1700, config=ShardConfig())
        with ShardWriter(out_dir, specs, compression="none") as writer:
            for record in records:
                writer.write(record)
        shards = writer.close()   # [{"path", "records", "bytes", "sha256", "first_record"}, ...]

    Output is byte-identical for the same records, with or without gzip (the gzip header
    carries no timestamp or file name), and to the files a build writes (both use
    :class:`ShardFile`).
    """

    def __init__(self, out_dir: str | os.PathLike, specs: Sequence[ShardSpec], *,
                 compression: Compression | str = Compression.NONE) -> None:
        self._out_dir = Path(out_dir)
        self._specs = list(specs)
        self._gzip = _is_gzip(compression)
        for i, spec in enumerate(self._specs):
            expected = self._specs[i - 1].stop if i else spec.start
            if spec.start != expected or spec.stop < spec.start:
                raise BuildError(f"shard plan is not contiguous at {spec.path}; plan it with plan_shards().")
        self._shard = -1
        self._count = 0
        self._file: ShardFile | None = None
        self._digests: list[FileDigest] = []
        self._results: list[dict[str, Any]] | None = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            if self._file is not None:
                self._file.abort()
                self._file = None
            self._results = []
        else:
            self.close()

    def _close_file(self) -> None:
        if self._file is not None:
            self._digests.append(self._file.commit())
            self._file = None

    def _open_next(self) -> None:
        self._close_file()
        self._shard += 1
        self._file = ShardFile(self._out_dir / self._specs[self._shard].path, gzipped=self._gzip)

    def _advance(self) -> None:
        """Open every shard whose range starts at the current record (empty ones too)."""
        while (self._shard + 1 < len(self._specs)
               and (self._shard < 0 or self._count >= self._specs[self._shard].stop)):
            self._open_next()

    def write(self, record: bytes) -> None:
        """Append one serialized record to the current shard.

        Args:
            record: A serialized ``tf.train.Example``.

        Raises:
            BuildError: If more records arrive than the plan holds, or after ``close()``.
        """
        if self._results is not None:
            raise BuildError("ShardWriter is closed; create a new one to write more records.")
        self._advance()
        if self._file is None or self._count >= self._specs[self._shard].stop:
            total = self._specs[-1].stop if self._specs else 0
            raise BuildError(f"got more records than the shard plan holds ({total}); re-plan the shards.")
        self._file.write(record)
        self._count += 1

    def close(self) -> list[dict[str, Any]]:
        """Finish the last shard and describe every file written.

        Returns:
            One dict per shard, in order: ``path`` (relative), ``records``, ``bytes`` and
            ``sha256`` of the file on disk, and ``first_record`` (see :class:`FileDigest`).
            Calling it again returns the same list.

        Raises:
            BuildError: If fewer records were written than planned.
        """
        if self._results is not None:
            return self._results
        self._advance()
        self._close_file()
        total = self._specs[-1].stop if self._specs else 0
        if self._count != total:
            self._results = []
            raise BuildError(f"shard plan holds {total} records but {self._count} were written.")
        self._results = [d.entry(spec.path, spec.num_records) for spec, d in zip(self._specs, self._digests)]
        return self._results
