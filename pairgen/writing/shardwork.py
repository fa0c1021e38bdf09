"""The build's shards: plan, submit to the workers, collect, commit; and the workers' unit of work.

:func:`write_shards` is four steps: :func:`plan_split_shards` (every shard of every split,
pure), :func:`submit` (one job per shard to the pool), :func:`collect` (finished shards as
:class:`ShardDone`, progress on the way) and :func:`commit` (each split's shard list, in plan
order).

Local processes and Ray tasks run the same two functions. :func:`write_records` renders the
rows of one shard (or of one part of a large shard), reading and decoding each source image
once while its decode cache holds, and writes them under a temporary name that it renames
into place; :func:`join_parts` concatenates a shard's parts (compressing them when the
dataset is gzipped). Both return only ``path``, ``records``, ``bytes``, ``sha256`` and
``first_record``, so the process that plans the build never holds record bytes. A worker killed mid-write leaves only
a temporary file, which the build removes; a retried task writes the same bytes again.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from pairgen.dataset.layout import PARTS_DIR, SHARDS_DIR
from pairgen.dataset.tables import image_columns
from pairgen.rendering.records import CHUNK_RECORDS, Render, Source, chunks, make_chunk
from pairgen.spec.config import Compression, ShardConfig
from pairgen.workers.pool import Pool
from pairgen.workers.progress import Progress
from pairgen.writing.shards import ShardFile, ShardSpec, plan_shards

MIN_PART_RECORDS = 2048
CACHE_BYTES = 256 << 20  # decoded images one worker keeps; beyond it the cache starts over
_COPY_BLOCK = 8 << 20
RECORD_OVERHEAD_BYTES = 160  # the size a split without records plans with


@dataclass(frozen=True)
class WriteTask:
    """Render ``columns`` (manifest rows) into ``out_dir/path``; gzip only for a whole shard."""

    out_dir: str
    path: str
    render: Render
    source: Source  # just the images these rows use
    columns: dict[str, np.ndarray]
    gzip: bool


@dataclass(frozen=True)
class JoinTask:
    """Concatenate ``parts`` (relative paths, in order) into the shard ``out_dir/path``."""

    out_dir: str
    path: str
    parts: tuple[str, ...]
    records: int
    gzip: bool


def write_records(task: WriteTask) -> dict[str, Any]:
    """Render the task's rows in order and write them as TFRecord frames to ``task.path``.

    Args:
        task: The rows, the images they use and where to write them.

    Returns:
        ``{"path", "records", "bytes", "sha256", "first_record"}`` of the file written.

    Raises:
        BuildError: If a source image cannot be read or decoded, or changed since the scan.
    """
    count = 0
    cache: dict[Any, Any] = {}  # decoded images by id, shared by the chunks
    with ShardFile(Path(task.out_dir) / task.path, gzipped=task.gzip) as out:
        for chunk in chunks(task.columns, CHUNK_RECORDS):
            recs = make_chunk((task.render, chunk), task.source, cache)
            out.extend(recs)
            count += len(recs)
            if cache and len(cache) * _entry_bytes(cache) > CACHE_BYTES:
                cache.clear()
    return out.commit().entry(task.path, count)


def _entry_bytes(cache: dict) -> int:
    value = next(iter(cache.values()))
    return max(int(getattr(value, "nbytes", None) or len(value)), 1)


def join_parts(task: JoinTask, *parts: dict[str, Any]) -> dict[str, Any]:
    """Concatenate a shard's parts into the shard (through a temporary name), then delete them.

    Args:
        task: The shard and its parts.
        *parts: The parts' results (unused; they order this step after the parts).

    Returns:
        ``{"path", "records", "bytes", "sha256", "first_record"}`` of the shard.
    """
    root = Path(task.out_dir)
    with ShardFile(root / task.path, gzipped=task.gzip) as out:
        for rel in task.parts:
            with open(root / rel, "rb") as f:
                while block := f.read(_COPY_BLOCK):
                    out.add(block)
    for rel in task.parts:
        (root / rel).unlink(missing_ok=True)
    return out.commit().entry(task.path, task.records)


def part_records(total: int, parallelism: int, shards: int) -> int:
    """Rows per task: whole shards when there are at least two per worker, else about two
    tasks per worker (each part re-reads the images it uses, and parts are joined by a copy)."""
    if parallelism <= 1 or shards >= 2 * parallelism:
        return max(total, 1)
    return max(MIN_PART_RECORDS, math.ceil(total / (2 * parallelism)))


class IdStrings(Mapping[int, str]):
    """Strings by image id, as the ids and one Arrow string array: a task carries them as a
    few buffers instead of one pickled object per string; the worker makes its dict on the
    first lookup."""

    def __init__(self, ids: np.ndarray, strings: pa.Array) -> None:
        self.ids, self.strings = ids, strings
        self._dict: dict[int, str] | None = None

    def _lookup(self) -> dict[int, str]:
        if self._dict is None:
            self._dict = dict(zip(self.ids.tolist(), self.strings.to_pylist()))
        return self._dict

    def __getitem__(self, image_id: int) -> str:
        return self._lookup()[image_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> tuple[np.ndarray, pa.Array]:
        return self.ids, self.strings

    def __setstate__(self, state: tuple[np.ndarray, pa.Array]) -> None:
        self.ids, self.strings = state
        self._dict = None


class PackedSource(NamedTuple):
    """A source whose paths and hashes are Arrow arrays indexed by ``image_id`` (made once per
    build by :func:`pack_source`; each task takes its images from it)."""

    paths: pa.Array
    sha256: pa.Array | None


def pack_source(source: Source) -> PackedSource | None:
    """``source``'s paths and hashes as Arrow arrays; ``None`` when they are not a sequence by id."""
    if isinstance(source.paths, Mapping) or isinstance(source.sha256, Mapping):
        return None
    sha = None if source.sha256 is None else pa.array(source.sha256, type=pa.string())
    return PackedSource(pa.array(source.paths, type=pa.string()), sha)


def task_source(source: Source, columns: dict[str, np.ndarray], id_columns: Sequence[str],
                packed: PackedSource | None = None) -> Source:
    """The part of ``source`` that the rows in ``columns`` use (sent with the task); taken from
    ``packed`` (:func:`pack_source` of ``source``) when given."""
    ids = _used_ids(np.concatenate([columns[c] for c in id_columns])) if id_columns else np.zeros(0, np.int64)
    if packed is not None:
        take = pa.array(ids, type=pa.int64())
        sha_of = None if packed.sha256 is None else IdStrings(ids, packed.sha256.take(take))
        return Source(root=source.root, paths=IdStrings(ids, packed.paths.take(take)), sha256=sha_of)
    keys = ids.tolist()
    paths = dict(zip(keys, map(source.paths.__getitem__, keys)))
    sha = dict(zip(keys, map(source.sha256.__getitem__, keys))) if source.sha256 is not None else None
    return Source(root=source.root, paths=paths, sha256=sha)


def _used_ids(ids: np.ndarray) -> np.ndarray:
    """The sorted distinct ``ids`` (non-negative ids marked in one pass, without a sort)."""
    if not len(ids) or ids.min() < 0:
        return np.unique(ids).astype(np.int64)
    seen = np.zeros(int(ids.max()) + 1, dtype=bool)
    seen[ids] = True
    return np.flatnonzero(seen)


def shard_job(spec: ShardSpec, columns: dict[str, np.ndarray], *, out_dir: str, render: Render, source: Source,
              id_columns: Sequence[str], gzipped: bool, per_part: int,
              packed: PackedSource | None = None) -> tuple[list, tuple | None]:
    """The tasks of one shard: one :class:`WriteTask`, or parts plus a :class:`JoinTask`
    (``packed``: as for :func:`task_source`)."""
    rows = {k: v[spec.start:spec.stop] for k, v in columns.items()}
    n = spec.num_records
    if n <= per_part:
        task = WriteTask(out_dir, spec.path, render, task_source(source, rows, id_columns, packed), rows, gzipped)
        return [(write_records, task)], None
    bounds = [(s, min(s + per_part, n)) for s in range(0, n, per_part)]
    name = Path(spec.path).name
    parts, paths = [], []
    for k, (a, b) in enumerate(bounds):
        part_rows = {c: v[a:b] for c, v in rows.items()}
        rel = f"{PARTS_DIR}/{name}.{k:05d}"
        paths.append(rel)
        parts.append((write_records, WriteTask(out_dir, rel, render, task_source(source, part_rows, id_columns, packed),
                                               part_rows, False)))
    return parts, (join_parts, JoinTask(out_dir, spec.path, tuple(paths), n, gzipped))


def remove_leftovers(out_dir: str | os.PathLike) -> None:
    """Delete the parts folder and temporary files that killed workers may have left."""
    shards = Path(out_dir) / SHARDS_DIR
    shutil.rmtree(Path(out_dir) / PARTS_DIR, ignore_errors=True)
    if shards.is_dir():
        for tmp in shards.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


class PlannedShard(NamedTuple):
    """One shard to write: its plan and its split's manifest columns (the spec picks the rows)."""

    spec: ShardSpec
    columns: dict[str, np.ndarray]


class ShardDone(NamedTuple):
    """A finished shard job: its index in the plan and the file it wrote."""

    job: int
    shard: dict[str, Any]  # {"path", "records", "bytes", "sha256", "first_record"}


def write_shards(manifests: Mapping[str, pd.DataFrame], *, render: Render, source: Source, shards: ShardConfig,
                 out_dir: Path, pool: Pool, progress: Progress) -> dict[str, list[dict[str, Any]]]:
    """Write every split's shards: plan them, run their jobs in ``pool``, collect, list them in order.

    Args:
        manifests: Each split's manifest (split order is the card's order).
        render: How records are rendered.
        source: The images the manifests use, by ``image_id``.
        shards: Shard size and compression.
        out_dir: The dataset folder being written (the shards go to ``out_dir/shards``).
        pool: The build's workers.
        progress: Shows a bar over the records written and notes the time taken.

    Returns:
        Per split, one ``{"path", "records", "bytes", "sha256", "first_record"}`` per shard, in shard order.
    """
    planned = plan_split_shards(manifests, render=render, source=source, config=shards)
    total = sum(p.spec.num_records for p in planned)
    started = time.perf_counter()
    with progress.stage("write", total=total, unit="rec") as bar:
        done = collect(submit(planned, out_dir=out_dir, pool=pool, render=render, source=source,
                              gzipped=shards.compression is Compression.GZIP), bar.update)
    remove_leftovers(out_dir)
    progress.note(f"wrote {total:,} records in {time.perf_counter() - started:.1f} s")
    return commit(planned, done, list(manifests))


def plan_split_shards(manifests: Mapping[str, pd.DataFrame], *, render: Render, source: Source,
                      config: ShardConfig) -> list[PlannedShard]:
    """Every shard of every split, in split order and then shard order (sized by sample records)."""
    planned = []
    for name, table in manifests.items():
        columns = {c: table[c].to_numpy() for c in table.columns if c != "split"}
        record_bytes = record_size(source, render, columns)
        planned += [PlannedShard(spec, columns)
                    for spec in plan_shards(name, len(table), record_bytes=record_bytes, config=config)]
    return planned


def record_size(source: Source, render: Render, columns: dict[str, np.ndarray]) -> float:
    """Average serialized record size, from the split's first records (deterministic)."""
    n = len(columns["record_id"])
    if n == 0:
        return float(RECORD_OVERHEAD_BYTES)
    recs = make_chunk((render, {k: v[: min(n, 64)] for k, v in columns.items()}), source)
    return float(sum(len(r) for r in recs)) / len(recs)


def submit(planned: Sequence[PlannedShard], *, out_dir: Path, pool: Pool, render: Render, source: Source,
           gzipped: bool) -> Iterator[tuple[str, Any]]:
    """Hand one job per planned shard to ``pool``; its events as the jobs' parts and jobs finish."""
    per_part = part_records(sum(p.spec.num_records for p in planned), pool.parallelism, len(planned))
    id_columns = image_columns(render.kind)
    packed = pack_source(source)
    return pool.run_jobs([shard_job(p.spec, p.columns, out_dir=str(out_dir), render=render, source=source,
                                    id_columns=id_columns, gzipped=gzipped, per_part=per_part, packed=packed)
                          for p in planned])


def collect(events: Iterable[tuple[str, Any]], advance: Callable[[int], object]) -> list[ShardDone]:
    """The finished shards, in completion order; ``advance`` gets each finished part's record count."""
    done = []
    for kind, value in events:
        if kind == "part":
            advance(value["records"])
        else:
            done.append(ShardDone(*value))
    return done


def commit(planned: Sequence[PlannedShard], done: Iterable[ShardDone],
           names: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each split's shard files in plan order (jobs finish in any order); splits without shards too."""
    by_job = {d.job: d.shard for d in done}
    shards: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i, p in enumerate(planned):
        shards[p.spec.split].append(by_job[i])
    return shards
