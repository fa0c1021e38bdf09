"""Turn manifest rows into serialized ``tf.train.Example`` records, in parallel, in order.

Workers never import TensorFlow: they decode with OpenCV, jitter with NumPy, and encode the
Example protobuf in pure Python (:mod:`pairgen.records`). Results come back in task order
through a bounded window, so the shard writer sees the same byte stream whatever the worker
count or executor, and no more than a few chunks of pixels exist at any time.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np

from pairgen import augment as _augment
from pairgen import imageio, records
from pairgen.config import AugmentConfig, Executor, ImageConfig, Kind
from pairgen.errors import BuildError, PairgenError

CHUNK_RECORDS = 512


@dataclass(frozen=True)
class Source:
    """Where the source images are; sent to each worker once."""

    root: str
    paths: tuple[str, ...]  # indexed by image_id ("" for ids not in the catalog)


@dataclass(frozen=True)
class Render:
    """How records are rendered; small, so it travels with every task."""

    kind: Kind
    image: ImageConfig
    augment: AugmentConfig


_SOURCE: Source | None = None


def _start_method() -> str:
    """``fork`` where the OS has it: fast, and safe from unguarded scripts.

    ``spawn`` re-imports the ``__main__`` module in every worker, which breaks (or hangs) a
    script without the ``if __name__ == "__main__":`` idiom. Forking a process that has
    TensorFlow loaded is safe here because workers never call TensorFlow: they only decode,
    jitter and encode with OpenCV and NumPy.
    """
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _init_worker(source: Source) -> None:
    global _SOURCE
    _SOURCE = source


def _source(source: Source | None) -> Source:
    source = source or _SOURCE
    if source is None:
        raise BuildError("worker started without a build source")
    return source


def _read(source: Source, image_id: int, image: ImageConfig) -> np.ndarray:
    rel = source.paths[image_id]
    path = os.path.join(source.root, rel)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BuildError(f"cannot read source image '{path}': {exc.strerror}. "
                         "Was the source changed during the build?") from None
    return imageio.decode(data, channels=image.channels, max_pixels=image.max_pixels, source=rel)


def render_record(source: Source, render: Render, ids: tuple[int, ...], aug_seed: int,
                  cache: dict) -> list[bytes]:
    """Encoded image bytes of one record, exactly reproducible from ``aug_seed`` alone.

    Args:
        source: Where the images are.
        render: Record kind, image spec and augmentation.
        ids: The record's image ids in record order.
        aug_seed: The record's augmentation seed from the manifest.
        cache: Per-chunk cache of decoded (and, without augmentation, encoded) images.

    Returns:
        One encoded image (raw, PNG or JPEG bytes) per id.
    """
    img_cfg, aug_cfg = render.image, render.augment
    if not aug_cfg.enabled:
        out = []
        for i in ids:
            key = ("enc", i)
            if key not in cache:
                pixels = _augment.transform_record([_read(source, i, img_cfg)], image=img_cfg,
                                                   augment=aug_cfg, rng=np.random.default_rng(0))[0]
                cache[key] = imageio.encode(pixels, img_cfg.encoding, jpeg_quality=img_cfg.jpeg_quality)
            out.append(cache[key])
        return out
    decoded = []
    for i in ids:
        if i not in cache:
            cache[i] = _read(source, i, img_cfg)
        decoded.append(cache[i])
    pixels = _augment.transform_record(decoded, image=img_cfg, augment=aug_cfg,
                                       rng=np.random.default_rng(int(aug_seed)))
    return [imageio.encode(p, img_cfg.encoding, jpeg_quality=img_cfg.jpeg_quality) for p in pixels]


def make_chunk(task: tuple[Render, dict[str, np.ndarray]], source: Source | None = None) -> list[bytes]:
    """Serialize one chunk of manifest rows (column name -> array) into Example bytes."""
    render, chunk = task
    source = _source(source)
    cache: dict = {}
    out = []
    pairs = render.kind is Kind.PAIRS
    id_cols = ("a_id", "b_id") if pairs else ("anchor_id", "positive_id", "negative_id")
    for r in range(len(chunk["record_id"])):
        ids = tuple(int(chunk[c][r]) for c in id_cols)
        imgs = render_record(source, render, ids, int(chunk["aug_seed"][r]), cache)
        if pairs:
            out.append(records.encode_pair(
                imgs[0], imgs[1], label=int(chunk["label"][r]), a_id=ids[0], b_id=ids[1],
                a_class=int(chunk["a_class"][r]), b_class=int(chunk["b_class"][r]),
                record_id=int(chunk["record_id"][r])))
        else:
            cls = int(chunk["anchor_class"][r])
            out.append(records.encode_triplet(
                imgs[0], imgs[1], imgs[2], anchor_id=ids[0], positive_id=ids[1], negative_id=ids[2],
                anchor_class=cls, positive_class=cls, negative_class=int(chunk["negative_class"][r]),
                record_id=int(chunk["record_id"][r])))
    return out


def check_chunk(task: tuple[ImageConfig, np.ndarray], source: Source | None = None) -> list[tuple[int, str]]:
    """Decode each image once; return ``(image_id, reason)`` for those that fail."""
    image, ids = task
    source = _source(source)
    bad = []
    for i in ids:
        try:
            _read(source, int(i), image)
        except PairgenError as exc:
            bad.append((int(i), str(exc)))
    return bad


def chunks(columns: dict[str, np.ndarray], size: int = CHUNK_RECORDS) -> Iterator[dict[str, np.ndarray]]:
    """Slice equal-length column arrays into consecutive chunks of ``size`` rows."""
    n = len(next(iter(columns.values()))) if columns else 0
    for start in range(0, n, size):
        yield {k: v[start:start + size] for k, v in columns.items()}


class Pool:
    """Runs a function over tasks with ``workers`` processes (or Ray), yielding results in order.

    ``workers == 1`` with the local executor runs in this process, with the same code path.
    """

    def __init__(self, source: Source, *, workers: int, executor: Executor = Executor.LOCAL):
        self.source, self.workers, self.executor = source, max(1, workers), Executor(executor)
        self._pool: Any = None
        self._ray_source: Any = None
        self._owns_ray = False
        self._cv2_threads = 0

    def __enter__(self) -> "Pool":
        return self

    def _start(self) -> None:
        """Start workers on first use, so a build that needs none starts none."""
        if self.executor is Executor.RAY:
            if self._ray_source is None:
                self._start_ray()
        elif self.workers > 1 and self._pool is None:
            # OpenCV's thread pool does not survive fork: a child that touches it hangs. With one
            # thread in the parent while the workers exist, children inherit no pool at all (and
            # one process per core already uses every core).
            self._cv2_threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(_start_method()),
                                             initializer=_init_worker, initargs=(self.source,))

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            cv2.setNumThreads(self._cv2_threads)
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False

    def _start_ray(self) -> None:
        try:
            import ray
        except ImportError:
            raise BuildError("--executor ray needs Ray: pip install 'pairgen[ray]'.") from None
        if not ray.is_initialized():
            self._owns_ray = True
            ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        self._ray_source = ray.put(self.source)

    def imap(self, fn: Callable[..., Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Apply ``fn(task, source)`` to each task; yield results in task order."""
        self._start()
        if self.executor is Executor.RAY:
            yield from self._imap_ray(fn, tasks)
        elif self._pool is None:
            for task in tasks:
                yield fn(task, self.source)
        else:
            try:
                yield from self._imap_window(lambda t: self._pool.submit(fn, t), lambda f: f.result(), tasks)
            except BrokenProcessPool:
                raise BuildError(
                    "a build worker process died (out of memory, or a script that calls pairgen.build "
                    "without the `if __name__ == \"__main__\":` guard while TensorFlow is imported). "
                    "Guard the script, or pass --workers 1.") from None

    def _imap_ray(self, fn: Callable[..., Any], tasks: Iterable[Any]) -> Iterator[Any]:
        import ray

        remote = ray.remote(num_cpus=1)(fn)
        yield from self._imap_window(lambda t: remote.remote(t, self._ray_source), ray.get, tasks)

    def _imap_window(self, submit: Callable, fetch: Callable, tasks: Iterable[Any]) -> Iterator[Any]:
        window: deque = deque()
        limit = 2 * self.workers
        for task in tasks:
            window.append(submit(task))
            if len(window) >= limit:
                yield fetch(window.popleft())
        while window:
            yield fetch(window.popleft())
