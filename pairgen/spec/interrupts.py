"""Ctrl-C (SIGINT) around the few steps that must not be cut in half.

Python turns SIGINT into ``KeyboardInterrupt`` in the main thread, between any two bytecodes.
Most of a build may stop anywhere (its clean-up removes what it wrote), but a handful of
steps must run whole: creating the output lock, the marked temporary folder, the renames that
install a dataset, starting the worker processes. :func:`held_interrupts` holds a Ctrl-C that
arrives during such a step and delivers it right after, to whatever handled it before.

It lives in the lowest stage package (it imports nothing from pairgen), so every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

_AGAIN_SECONDS = 0.005
_raised = [False]  # a Ctrl-C raised by raise_interrupt that no handler has taken yet
_deferred: list[threading.Timer] = []  # Ctrl-Cs that again_soon will send again
_DEFERRED_LOCK = threading.Lock()


class Held:
    """What arrived while interrupts were held (see :func:`held_interrupts`)."""

    def __init__(self) -> None:
        self.arrived = False
        self.dropped = False

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.arrived = True

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` now if a Ctrl-C arrived (before the step changes anything)."""
        if self.arrived and not self.dropped:
            self.dropped = True
            raise KeyboardInterrupt

    def drop(self) -> None:
        """The step has passed its point of no return: a Ctrl-C held so far is not delivered."""
        self.dropped = True


@contextlib.contextmanager
def held_interrupts() -> Iterator[Held]:
    """Hold Ctrl-C off for the ``with`` body; deliver it after a body that ends normally.

    Outside the main thread (where Python never raises ``KeyboardInterrupt``) this does
    nothing. A body that raises is not interrupted on top of its own exception.

    Yields:
        A :class:`Held`: ``check()`` raises at once if a Ctrl-C arrived, ``drop()`` forgets it.
    """
    held = Held()
    with sigint_handled_by(held._record) as previous:
        yield held
    if held.arrived and not held.dropped:
        _deliver(previous)


@contextlib.contextmanager
def sigint_handled_by(handler: Any, *, then: Any = None) -> Iterator[Any]:
    """``handler`` takes Ctrl-C in the ``with`` body (main thread only; elsewhere nothing changes).

    Args:
        handler: The handler for the body.
        then: The handler left in place afterwards (``None``: the one replaced).

    Yields:
        The handler it replaced (``None`` outside the main thread), restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield previous
    finally:
        signal.signal(signal.SIGINT, previous if then is None else then)


def _deliver(handler: Any) -> None:
    if callable(handler):
        handler(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)


def swallowed_here(frame: FrameType | None) -> bool:
    """True where an exception raised by a signal handler would be lost or turned into another one.

    That is a weak-reference callback or a ``__del__`` method, which Python runs whenever an
    object goes away (an import drops its module lock that way, many times per import), and
    any import in progress: an exception inside an extension module's initialisation becomes
    an ``ImportError`` (pandas: "PyCapsule_Import could not import module"). The signal then
    comes again a moment later (:func:`again_soon`), once the import is done.
    """
    if frame is None:
        return False
    if frame.f_code.co_name == "__del__":
        return True
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def again_soon() -> None:
    """Send this process SIGINT again in a few milliseconds (from a timer thread, so that the
    handler that calls this returns first, and with it the code it interrupted).

    Until it is sent, :func:`take_deferred` can take it instead: a handler's scope that ends
    first must not leave it to land after the scope has put Python's own handler back.
    """
    timer: threading.Timer

    def send() -> None:
        with _DEFERRED_LOCK:
            if timer not in _deferred:  # taken by take_deferred
                return
            _deferred.remove(timer)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(_AGAIN_SECONDS, send)
    timer.daemon = True
    with _DEFERRED_LOCK:
        _deferred.append(timer)
    timer.start()


def take_deferred() -> bool:
    """Cancel the Ctrl-C that :func:`again_soon` is about to send again; True if there was one."""
    with _DEFERRED_LOCK:
        pending = list(_deferred)
        _deferred.clear()
    for timer in pending:
        timer.cancel()
    return bool(pending)


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """Python's default Ctrl-C handler (raise ``KeyboardInterrupt``), except where the exception
    would be swallowed (:func:`swallowed_here`): there the signal comes again a moment later."""
    if swallowed_here(frame):
        again_soon()
        return
    _raised[0] = True
    raise KeyboardInterrupt


def raise_if_swallowed() -> None:
    """Raise ``KeyboardInterrupt`` again if one raised by :func:`raise_interrupt` never reached a
    handler: a callback that Python runs while an object goes away (a weak-reference callback,
    a finalizer) prints and drops any exception, and :func:`swallowed_here` cannot name them
    all. Called between the steps of a build, so that such a Ctrl-C stops it a step later."""
    if _raised[0]:
        raise KeyboardInterrupt


def interrupt_pending() -> bool:
    """True while a Ctrl-C raised by :func:`raise_interrupt` has not been taken by a handler."""
    return _raised[0]


def interrupt_handled() -> None:
    """The command has taken the Ctrl-C (see :func:`raise_if_swallowed`)."""
    _raised[0] = False


def forget_escaped_interrupt() -> None:
    """Call after handling a ``KeyboardInterrupt``, before exiting with a status of your own.

    CPython remembers a ``KeyboardInterrupt`` that escaped code run by ``eval``/``exec`` of a
    string (``namedtuple`` does that on import) as never handled, and then ends the process by
    SIGINT instead of with its exit status. Running an empty string clears that mark.
    """
    exec("")  # noqa: S102
    interrupt_handled()


@contextlib.contextmanager
def blocked_in_children() -> Iterator[None]:
    """Block SIGINT in this thread while the body forks, so that a child starts with it blocked.

    A worker process then ignores Ctrl-C from its first instruction on (its initializer
    ignores SIGINT and unblocks it, see :func:`ignore_in_worker`), instead of printing a
    ``KeyboardInterrupt`` traceback when the signal lands before its initializer ran. Without
    ``pthread_sigmask`` (Windows) this does nothing.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def ignore_in_worker() -> None:
    """In a worker process: ignore Ctrl-C (the main process stops the workers), then unblock it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
