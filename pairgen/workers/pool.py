"""The build's worker pool: local processes or Ray tasks, one interface.

Tasks are self-contained (they carry the paths and ids they need), so the same pool serves the
scan (blocks of files to read and hash) and the render (parts of shards to write). Local
workers die with the process that started them, whatever kills it (``SIGKILL`` included):
each sets ``PR_SET_PDEATHSIG`` on Linux and also watches its parent's pid, so an orphan exits
within about a second even where the signal is not available.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import cv2

from pairgen.errors import BuildError
from pairgen.spec.config import Executor

_PR_SET_PDEATHSIG = 1
# One job: parts ``(fn, task)`` run in parallel, then an optional final ``(fn, task)`` step.
Job = tuple[list[tuple[Callable[..., Any], Any]], tuple[Callable[..., Any], Any] | None]
_WATCH_SECONDS = 1.0


def _start_method() -> str:
    """``fork`` where the OS has it: fast, and safe from unguarded scripts.

    ``spawn`` re-imports the ``__main__`` module in every worker, which breaks (or hangs) a
    script without the ``if __name__ == "__main__":`` idiom. Forking a process that has
    TensorFlow loaded is safe here because workers never call TensorFlow: they only read,
    decode, jitter and encode with OpenCV and NumPy.
    """
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(_WATCH_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int) -> None:
    """Make this worker process exit when ``parent`` (the build's process) dies.

    Args:
        parent: The pid of the process that started the worker.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the pid watch below still applies
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="pairgen-parent-watch", daemon=True).start()


def _broken() -> BuildError:
    return BuildError(
        "a build worker process died (out of memory, or a script that calls pairgen.build "
        "without the `if __name__ == \"__main__\":` guard while TensorFlow is imported). "
        "Guard the script, or pass --workers 1.")


class Pool:
    """Runs ``fn(task)`` over tasks with ``workers`` local processes, or as Ray tasks.

    ``workers == 1`` with the local executor runs in this process, with the same code path.
    Workers start on first use, so a build that needs none starts none.
    """

    def __init__(self, *, workers: int, executor: Executor = Executor.LOCAL, ray_address: str | None = None,
                 shared_paths: tuple[str, ...] = (), note: Callable[[str], None] | None = None):
        self.workers, self.executor = max(1, workers), Executor(executor)
        self.ray_address, self.shared_paths = ray_address, shared_paths
        self._note = note or (lambda message: None)
        self._pool: ProcessPoolExecutor | None = None
        self._ray: Any = None
        self._cv2_threads = 0

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(abort=exc_type is not None)

    def close(self, *, abort: bool = False) -> None:
        """Stop the workers (and a private Ray); a connected cluster is only disconnected.

        Args:
            abort: The build failed or was interrupted: stop the workers at once instead of
                letting their current tasks finish.
        """
        if self._pool is not None:
            if abort:
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            cv2.setNumThreads(self._cv2_threads)
        if self._ray is not None:
            self._ray.close()
            self._ray = None

    @property
    def parallelism(self) -> int:
        """How many tasks run at once (the cluster's CPUs for Ray)."""
        if self.executor is Executor.RAY:
            return self._ray_session().cpus
        return self.workers

    def _ray_session(self) -> Any:
        if self._ray is None:
            from pairgen.workers.raycluster import RaySession

            self._ray = RaySession.open(self.ray_address, workers=self.workers, shared_paths=self.shared_paths,
                                        note=self._note)
        return self._ray

    def _local(self) -> ProcessPoolExecutor | None:
        if self.workers > 1 and self._pool is None:
            # OpenCV's thread pool does not survive fork: a child that touches it hangs. With one
            # thread in the parent while the workers exist, children inherit no pool at all (and
            # one process per core already uses every core).
            self._cv2_threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(_start_method()),
                                             initializer=die_with_parent, initargs=(os.getpid(),))
        return self._pool

    def imap(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Apply ``fn`` to each task; yield the results in task order (a bounded window in flight)."""
        if self.executor is Executor.RAY:
            session = self._ray_session()
            yield from _window(session.submitter(fn), session.get, tasks, 2 * session.cpus)
            return
        pool = self._local()
        if pool is None:
            yield from map(fn, tasks)
            return
        try:
            yield from _window(lambda t: pool.submit(fn, t), Future.result, tasks, 2 * self.workers)
        except BrokenProcessPool:
            raise _broken() from None

    def run_jobs(self, jobs: list[Job]) -> Iterator[tuple[str, Any]]:
        """Run each job's parts, then its ``final`` step (``fn(task, *part_results)``), if any.

        Yields ``("part", result)`` as parts finish and ``("done", (job_index, result))`` as jobs
        complete (the final step's result, or the single part's), in completion order.
        """
        if self.executor is Executor.RAY:
            yield from self._ray_session().run_jobs(jobs)
            return
        pool = self._local()
        if pool is None:
            yield from _serial_jobs(jobs)
            return
        try:
            yield from _local_jobs(pool, jobs)
        except BrokenProcessPool:
            raise _broken() from None


def _window(submit: Callable, fetch: Callable, tasks: Iterable[Any], limit: int) -> Iterator[Any]:
    window: deque = deque()
    for task in tasks:
        window.append(submit(task))
        if len(window) >= limit:
            yield fetch(window.popleft())
    while window:
        yield fetch(window.popleft())


def _serial_jobs(jobs: list[Job]) -> Iterator[tuple[str, Any]]:
    for index, (parts, final) in enumerate(jobs):
        results = []
        for fn, task in parts:
            results.append(fn(task))
            yield "part", results[-1]
        yield "done", (index, final[0](final[1], *results) if final is not None else results[0])


def _local_jobs(pool: ProcessPoolExecutor, jobs: list[Job]) -> Iterator[tuple[str, Any]]:
    results: dict[int, list[Any]] = {}
    pending: dict[Future, tuple[int, int]] = {}  # future -> (job, part index or -1 for final)
    for index, (parts, _) in enumerate(jobs):
        results[index] = [None] * len(parts)
        for k, (fn, task) in enumerate(parts):
            pending[pool.submit(fn, task)] = (index, k)
    left = {index: len(parts) for index, (parts, _) in enumerate(jobs)}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index, k = pending.pop(future)
                result = future.result()
                if k < 0:
                    yield "done", (index, result)
                    continue
                yield "part", result
                results[index][k] = result
                left[index] -= 1
                if left[index] == 0:
                    final, parts = jobs[index][1], results.pop(index)
                    if final is None:
                        yield "done", (index, parts[0])
                    else:
                        pending[pool.submit(final[0], final[1], *parts)] = (index, -1)
    finally:
        for future in pending:
            future.cancel()
