"""The build's worker pool: local processes or Ray tasks, one interface.

Tasks are self-contained (they carry the paths and ids they need), so the same pool serves the
scan (blocks of files to read and hash) and the render (parts of shards to write). Local
workers die with the process that started them, whatever kills it (``SIGKILL`` included):
each sets ``PR_SET_PDEATHSIG`` on Linux and also watches its parent's pid, so an orphan exits
within about a second even where the signal is not available.

Ctrl-C is the main process's alone: a terminal sends SIGINT to the whole process group, and
local workers ignore it from their first instruction on (they start with it blocked). The
main process then stops them at once (:meth:`Pool.close` with ``abort``), without waiting
for their tasks or for a task still being fed to them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, InvalidStateError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool, _threads_wakeups
from typing import Any

import cv2

from pairgen.errors import BuildError
from pairgen.spec.config import Executor
from pairgen.spec.interrupts import blocked_in_children, held_interrupts, ignore_in_worker, raise_if_swallowed

_PR_SET_PDEATHSIG = 1
# One job: parts ``(fn, task)`` run in parallel, then an optional final ``(fn, task)`` step.
Job = tuple[list[tuple[Callable[..., Any], Any]], tuple[Callable[..., Any], Any] | None]
_WATCH_SECONDS = 1.0
_STOP_SECONDS = 5.0  # how long a killed worker may take to be gone


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


def _start_worker(parent: int) -> None:
    """Every local worker's initializer: leave Ctrl-C to the main process; die with it."""
    ignore_in_worker()
    die_with_parent(parent)


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Kill ``pool``'s workers and wait until they and the pool's manager thread are gone.

    The shutdown is requested first, so the manager thread drops the tasks not yet started
    (cancelling them) before it sees the workers die; the other order makes it fail on the
    futures the caller already cancelled, with a traceback on stderr. The thread that feeds
    tasks to the workers may be blocked writing a large task into a pipe that no worker reads
    any more: it must not hold up the exit. Nor may the manager thread, blocked reading the
    rest of a result that a killed worker was writing: closing this process's end of the
    results pipe ends that read.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        _QUIET_THREADS.add(manager)
    call_queue = getattr(pool, "_call_queue", None)
    result_queue = getattr(pool, "_result_queue", None)
    if call_queue is not None:  # before the shutdown, whose clean-up would join that thread
        call_queue.cancel_join_thread()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    sentinels = [p.sentinel for p in processes]
    deadline = time.monotonic() + _STOP_SECONDS
    while sentinels and time.monotonic() < deadline:  # gone before the build removes its files
        for ready in multiprocessing.connection.wait(sentinels, timeout=deadline - time.monotonic()):
            sentinels.remove(ready)
    writer = getattr(result_queue, "_writer", None)
    if writer is not None:  # the workers are gone: no result can come any more
        writer.close()
    if manager is not None:
        manager.join(_STOP_SECONDS)
        if manager.is_alive():  # never wait for it at exit either
            _threads_wakeups.pop(manager, None)


class _QuietThreads:
    """Keep stopped pools' manager threads from printing a traceback (one hook for them all).

    Python 3.11's manager thread may still fail on a future that the shutdown cancelled
    (``InvalidStateError`` in ``terminate_broken``) when it sees the killed workers; the build
    is being stopped on purpose, so that error says nothing. Other threads' errors pass on.
    """

    def __init__(self) -> None:
        self.threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        self.previous: Callable[[Any], Any] | None = None

    def add(self, thread: threading.Thread) -> None:
        if self.previous is None:
            self.previous, threading.excepthook = threading.excepthook, self.hook
        self.threads.add(thread)

    def hook(self, args: Any) -> None:
        if args.thread in self.threads and isinstance(args.exc_value, InvalidStateError):
            return
        assert self.previous is not None
        self.previous(args)


_QUIET_THREADS = _QuietThreads()


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
            pool, self._pool = self._pool, None
            try:
                if abort:
                    _stop_now(pool)
                else:
                    pool.shutdown(wait=True, cancel_futures=True)
            except BaseException:  # Ctrl-C while the workers finish
                _stop_now(pool)
                raise
            finally:
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
            # Held and blocked while they start: every worker is known (to be stopped) before a
            # Ctrl-C is raised here, and none starts with a handler that would print a traceback.
            with held_interrupts(), blocked_in_children():
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(_start_method()),
                                                 initializer=_start_worker, initargs=(os.getpid(),))
                self._pool.submit(int)  # with fork, the first task starts every worker
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

    def submit(self, fn: Callable[[Any], Any], task: Any) -> Callable[[], Any]:
        """Start ``fn(task)`` in a worker now; return a function that waits for its result.

        The task queues behind the ones already submitted, so a side computation (a report)
        runs beside the main work instead of in the main process. Without workers it runs
        when its result is asked for.
        """
        if self.executor is Executor.RAY:
            session = self._ray_session()
            ref = session.submitter(fn)(task)
            return lambda: session.get(ref)
        pool = self._local()
        if pool is None:
            return lambda: fn(task)
        future = pool.submit(fn, task)

        def result() -> Any:
            try:
                return future.result()
            except BrokenProcessPool:
                raise _broken() from None

        return result

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
        raise_if_swallowed()
        window.append(submit(task))
        if len(window) >= limit:
            yield fetch(window.popleft())
    while window:
        raise_if_swallowed()
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
            raise_if_swallowed()
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
