"""Shared pieces of the click commands: error handling and common options.

Kept free of heavy imports so that ``pairgen --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from pairgen.errors import PairgenError
from pairgen.spec.interrupts import forget_escaped_interrupt, interrupt_pending, raise_interrupt, sigint_handled_by

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C that a command has cleaned up after; ``line`` says what it left (printed as is)."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


def handle_errors(func: Callable[..., Any] | None = None, *, exit_code: int = 1) -> Any:
    """Turn a :class:`PairgenError` into a one-line ``click.ClickException`` and Ctrl-C into
    one line on stderr and exit status 130 (no traceback).

    Use as ``@handle_errors`` (errors exit 1) or ``@handle_errors(exit_code=2)`` for commands
    whose exit 1 means a result ("problems found", "datasets differ"), like ``diff(1)``.
    """
    if func is None:
        return functools.partial(handle_errors, exit_code=exit_code)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _interrupts_raise():
                return func(*args, **kwargs)
        except PairgenError as exc:
            error = click.ClickException(str(exc))
            # click types exit_code as a ClassVar; this per-instance override changes only this error.
            error.exit_code = exit_code  # type: ignore[misc]
            raise error from None
        except KeyboardInterrupt as exc:
            click.echo(exc.line if isinstance(exc, Interrupted) else "interrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED_EXIT) from None
        except Exception:
            if not interrupt_pending():  # a Ctrl-C turned into another error on its way out
                raise
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED_EXIT) from None
        finally:
            # Every way out: a Ctrl-C taken here, or held and then too late, must not end the process by SIGINT.
            forget_escaped_interrupt()

    return wrapper


def _interrupts_raise() -> contextlib.AbstractContextManager[None]:
    """Ctrl-C raises ``KeyboardInterrupt`` in the body, so that the command cleans up after it."""
    return sigint_handled_by(raise_interrupt)


def choices(enum_type: type[enum.Enum]) -> click.Choice:
    """A ``click.Choice`` of a config enum's values, so the CLI offers what the config accepts."""
    return click.Choice([str(m.value) for m in enum_type])


class LazyHelpOption(click.Option):
    """An option whose help text is made only when help is shown (``help_text``: a callable).

    For help that lists a registry whose import is not free (the sampler registry needs
    pandas): ``pairgen --help`` and every command that is run, not asked for help, skip it.
    """

    def __init__(self, *args: Any, help_text: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._help_text = help_text

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = self._help_text()
        return super().get_help_record(ctx)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def quiet_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars.")(func)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def progress_enabled(quiet: bool) -> bool:
    """Progress bars only on a terminal and never with --quiet."""
    return not quiet and sys.stderr.isatty()
