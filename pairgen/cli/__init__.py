"""The ``pairgen`` command line: a thin click layer over the library, one module per group.

* :mod:`pairgen.cli.building`: ``scan``, ``build`` (read a source, write a dataset);
* :mod:`pairgen.cli.datasets`: ``verify``, ``inspect``, ``diff``, ``preview``, ``report`` (read a dataset);
* :mod:`pairgen.cli.training`: ``train``, ``evaluate``, ``embed`` (the reference trainer);
* :mod:`pairgen.cli.common`: the error handler and shared options.

Heavy modules (pandas, OpenCV, TensorFlow) are imported inside the commands, so
``pairgen --help`` stays instant.

Ctrl-C exits with status 130 and one line, never a traceback: before a command runs (while
the CLI is imported, while click parses the arguments) it exits at once, as there is nothing
to clean up; inside a command it raises ``KeyboardInterrupt``, which the command cleans up
after (:func:`pairgen.cli.common.handle_errors`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

from pairgen.spec.interrupts import again_soon, sigint_handled_by, swallowed_here, take_deferred


def _interrupted_outside_a_command(signum: int, frame: FrameType | None) -> None:
    if swallowed_here(frame):  # an import's clean-up: come back once it has returned
        again_soon()
        return
    sys.stderr.write("interrupted\n")
    raise SystemExit(130)


@contextlib.contextmanager
def _exit_on_interrupt(*, then_ignore: bool = False) -> Iterator[None]:
    """Ctrl-C exits 130 at once in the body (nothing has started that needs cleaning up).

    One that an import made it put off (:func:`again_soon`) is taken back before Python's own
    handler returns: it exits 130 when the body ends normally, and is dropped when the body
    ends with an exit of its own. With ``then_ignore`` Ctrl-C is ignored afterwards instead:
    for a process that ends with the body, where a late Ctrl-C has nothing left to stop, and
    once Python's shutdown has put the default action back it would kill the process (exit -2).
    """
    with sigint_handled_by(_interrupted_outside_a_command, then=signal.SIG_IGN if then_ignore else None):
        try:
            yield
        finally:
            deferred = take_deferred()
    if deferred:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130)


with _exit_on_interrupt():
    import click

    from pairgen import __version__
    from pairgen.cli import building, datasets, training


class _Main(click.Group):
    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        # Each command takes Ctrl-C over while it runs (handle_errors). Run from a command line
        # (no args given, standalone: click then exits the process), Ctrl-C is ignored once the
        # command is over; callers that pass args (click's CliRunner, scripts) get their handler back.
        ending = args is None and not rest and kwargs.get("standalone_mode", True)
        with _exit_on_interrupt(then_ignore=ending):
            return super().main(args, *rest, **kwargs)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pairgen")
def main() -> None:
    """Reproducible pair and triplet datasets for Siamese networks and metric learning.

    \b
    Example:
        pairgen scan datasets/mnist-5k
        pairgen build pipelines/mnist-demo.toml --out build/mnist-demo
        pairgen inspect build/mnist-demo
    """


for _command in (*building.COMMANDS, *datasets.COMMANDS, *training.COMMANDS):
    main.add_command(_command)

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    main()
