"""Progress bars per build stage (tqdm), silent when not a terminal or with --quiet."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass


class Progress:
    """Creates one tqdm bar per stage; every method is a no-op when disabled."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    @contextlib.contextmanager
    def stage(self, name: str, *, total: int | None = None, unit: str = "it") -> Iterator:
        if not self.enabled:
            yield _Silent()
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=f"{name:>6}", unit=unit, unit_scale=True, leave=True,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            yield bar

    def note(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr)
