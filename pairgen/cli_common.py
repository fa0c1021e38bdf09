"""Shared pieces of the click commands: error handling and common options.

Kept free of heavy imports so that ``pairgen --help`` stays instant.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from pairgen.errors import PairgenError


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a :class:`PairgenError` into a one-line ``click.ClickException`` (exit 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PairgenError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None

    return wrapper


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def quiet_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars.")(func)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def progress_enabled(quiet: bool) -> bool:
    """Progress bars only on a terminal and never with --quiet."""
    return not quiet and sys.stderr.isatty()
