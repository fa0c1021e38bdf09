"""The scan's reads: blocks of files read in worker processes, results kept column by column.

One task reads one block of files. Each file is read once; the same bytes give its sha256,
its header (size and channels) and, for a build, one decode check. When asked for
near-duplicate signatures the same single decode also gives each image's signature
(:func:`pairgen.scanning.near.signature`); without a check, the file is decoded once for it.
For ``classes`` and ``split-folders`` sources the worker also labels the walked paths, so the main process only
walks folders and joins columns: a block comes back as a few lists and one int64 array, never
as one Python object per row.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from pairgen.codec import sourceio
from pairgen.codec.headers import read_header
from pairgen.codec.images import native_messages_muted
from pairgen.errors import ImageError, PairgenError
from pairgen.scanning.options import DEFAULT_MAX_PIXELS
from pairgen.spec.config import ImageConfig

READ_BLOCK = 512  # files per task: one task per file costs more than reading a small image
TEXT_COLUMNS = ("path", "class_name", "folder_split", "side", "key")
NUMBER_COLUMNS = ("bytes", "width", "height", "channels")
SIGNATURE_SIZE = 256  # bytes of one near-duplicate signature (pairgen.scanning.near.SIZE)

Skipped = list[tuple[str, str]]
# Labels a block of walked relative paths: (paths, skipped) -> candidates (see labels._Candidate).
Labeler = Callable[[list[str], Skipped], list[Any]]


class BlockTask(NamedTuple):
    """One worker task: the files of one block and what to do with them."""

    root: str
    items: list[Any]  # relative paths (labelled by ``label``) or ready candidates
    label: Labeler | None
    check: ImageConfig | None  # also decode each image with this config
    signatures: bool = False  # also compute each image's near-duplicate signature (one decode)


class Block(NamedTuple):
    """One block's results, column by column."""

    text: tuple[list[Any], ...]  # one list per TEXT_COLUMNS entry, in that order
    sha256: list[str]
    numbers: np.ndarray  # (rows, 4) int64: NUMBER_COLUMNS
    undecodable: Skipped  # (path, reason) of read images that the check could not decode
    skipped: Skipped
    seconds: tuple[float, float, float, float]  # label, read + sha256 + header, decode; CPU
    signatures: np.ndarray  # (rows, 256) int8; zeros when not asked for or not decodable


def read_block(task: BlockTask) -> Block:
    """Label (when asked), read, hash, parse and decode-check each file of one block.

    Args:
        task: The block.

    Returns:
        The rows of the files that could be read, in the block's order, and the skipped ones.
    """
    start, cpu = time.perf_counter(), time.process_time()
    skipped: Skipped = []
    candidates = task.items if task.label is None else task.label(task.items, skipped)
    labelled = time.perf_counter()
    kept: list[Any] = []
    sha: list[str] = []
    numbers: list[tuple[int, int, int, int]] = []
    undecodable: Skipped = []
    thumbs: list[np.ndarray | None] = []
    thumbnail, direct = _thumbnailer() if task.signatures else (None, 0)
    decode_s = 0.0
    with native_messages_muted():  # once for the block, not per decode check
        for cand in candidates:
            got = _read_one(task.root, cand.path)
            if isinstance(got, str):
                skipped.append((cand.path, got))
                continue
            data, (width, height, channels) = got
            kept.append(cand)
            sha.append(hashlib.sha256(data).hexdigest())
            numbers.append((len(data), width, height, channels))
            if task.check is not None or task.signatures:
                t = time.perf_counter()
                pixels = _decode(data, cand.path, task.check, (width, height))
                decode_s += time.perf_counter() - t
                if isinstance(pixels, str) and task.check is not None:
                    undecodable.append((cand.path, pixels))
                if thumbnail is not None:
                    if isinstance(pixels, str):
                        thumbs.append(None)
                    else:  # a small image is kept whole, the signatures take its gray plane
                        thumbs.append(pixels if pixels.shape[0] <= direct >= pixels.shape[1] else thumbnail(pixels))
    text = tuple(map(list, zip(*kept))) if kept else tuple([] for _ in TEXT_COLUMNS)
    array = np.array(numbers, dtype=np.int64).reshape(len(numbers), len(NUMBER_COLUMNS))
    end = time.perf_counter()
    seconds = (labelled - start, end - labelled - decode_s, decode_s, time.process_time() - cpu)
    sig = _signatures(thumbs) if thumbs else np.zeros((len(sha), SIGNATURE_SIZE), np.int8)
    return Block(text, sha, array, undecodable, skipped, seconds, sig)


def _read_one(root: str, rel: str) -> tuple[bytes, tuple[int, int, int]] | str:
    """The file's bytes and header, or the reason it cannot be used."""
    try:
        data = sourceio.read_source(os.path.join(root, rel))
    except FileNotFoundError:
        return "file does not exist"
    except OSError as exc:
        return f"unreadable file: {exc.strerror or exc}"
    if not data:
        return "empty file"
    try:
        return data, read_header(data, name=rel)
    except ImageError as exc:
        return f"corrupt image: {exc}"


def _decode(data: bytes, rel: str, check: ImageConfig | None, size: tuple[int, int]) -> np.ndarray | str:
    """The decoded pixels (with the check's channels, else gray), or why they cannot be decoded."""
    from pairgen.codec.images import decode

    try:
        if check is None:
            return decode(data, channels=1, source=rel, size=size, max_pixels=DEFAULT_MAX_PIXELS)
        return decode(data, channels=check.channels, max_pixels=check.max_pixels, source=rel, size=size)
    except PairgenError as exc:
        return str(exc)


def _thumbnailer() -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """The function that keeps what a signature needs of a decoded image, and the side up to
    which an image goes to the signatures whole instead (looked up once a block)."""
    from pairgen.scanning.near import DIRECT, thumbnail

    return thumbnail, DIRECT


def _signatures(thumbs: list[np.ndarray | None]) -> np.ndarray:
    """The block's signatures, computed together (an undecodable image, ``None``, gets an
    all-zero signature: never a near duplicate)."""
    from pairgen.scanning.near import signatures_of

    return signatures_of(thumbs)


class Columns:
    """Block results joined in the main process (list extends and one array per block)."""

    def __init__(self) -> None:
        self.text: tuple[list[Any], ...] = tuple([] for _ in TEXT_COLUMNS)
        self.sha256: list[str] = []
        self.numbers: list[np.ndarray] = []
        self.undecodable: Skipped = []
        self.signatures: list[np.ndarray] = []
        self.seconds = np.zeros(4)  # summed Block.seconds
        self._sorted: np.ndarray | None = None  # the path order, once all blocks are in

    def add(self, block: Block, skipped: Skipped) -> None:
        """Append one block's rows; its skipped files go to ``skipped``."""
        for column, values in zip(self.text, block.text):
            column.extend(values)
        self.sha256.extend(block.sha256)
        self.numbers.append(block.numbers)
        self.undecodable.extend(block.undecodable)
        self.signatures.append(block.signatures)
        skipped.extend(block.skipped)
        self.seconds += block.seconds
        self._sorted = None

    def _order(self) -> np.ndarray:
        if self._sorted is None:
            paths = self.text[0]
            order = sorted(range(len(paths)), key=paths.__getitem__)  # near-sorted: about one pass
            self._sorted = np.array(order, dtype=np.intp)
        return self._sorted

    def signature_matrix(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The signatures, ``(rows, 256)`` int8, of :meth:`frame`'s rows ``rows`` (default: all),
        in that order: one copy when the blocks came in path order and all rows are kept."""
        sig = np.concatenate(self.signatures) if self.signatures else np.zeros((0, SIGNATURE_SIZE), np.int8)
        order = self._order()
        if rows is not None:
            order = order[rows]
        if len(order) == len(sig) and (np.diff(order) == 1).all():
            return sig
        return np.take(sig, order, axis=0)

    def frame(self) -> pd.DataFrame:
        """The rows sorted by path: the text columns, ``sha256`` and the number columns."""
        order = self._order()
        numbers = np.concatenate(self.numbers) if self.numbers else np.zeros((0, len(NUMBER_COLUMNS)), np.int64)
        data: dict[str, Any] = {name: _take(values, order) for name, values in zip(TEXT_COLUMNS, self.text)}
        data["sha256"] = _take(self.sha256, order)
        for k, name in enumerate(NUMBER_COLUMNS):
            data[name] = numbers[order, k] if len(order) else numbers[:, k]
        return pd.DataFrame({name: pd.Series(values, dtype=values.dtype) for name, values in data.items()})


def _take(values: Sequence[Any], order: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out[order] if len(order) else out


def read_blocks(tasks: Iterable[BlockTask], *, pool: Any = None,
                progress: bool = False) -> Generator[Block, None, None]:
    """Run the block tasks in worker processes; yield their blocks in task order.

    Args:
        tasks: The blocks to read (consumed lazily, while earlier blocks are read).
        pool: A :class:`pairgen.workers.pool.Pool`; ``None``: one block is read here, more
            start one process per core (closed when the generator ends or is closed).
        progress: Show a tqdm bar of the files read.

    Yields:
        Each task's :class:`Block`.
    """
    from pairgen.workers.pool import Pool

    tasks = iter(tasks)
    own = pool is None
    if own:
        first = list(itertools.islice(tasks, 2))
        tasks = itertools.chain(first, tasks)
        pool = Pool(workers=(os.cpu_count() or 1) if len(first) > 1 else 1)
    bar = None
    try:
        if progress:
            from tqdm import tqdm
            bar = tqdm(desc="scan", unit="img")
        for block in pool.imap(read_block, tasks):
            yield block
            if bar is not None:
                bar.update(len(block.sha256) + len(block.skipped))
    finally:
        if bar is not None:
            bar.close()
        if own:
            pool.close()


def join_blocks(blocks: Iterable[Block], skipped: Skipped) -> Columns:
    """Join blocks column by column, in order; their skipped files go to ``skipped``."""
    columns = Columns()
    for block in blocks:
        columns.add(block, skipped)
    return columns
