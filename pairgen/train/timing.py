"""Wall-clock seconds of each phase of ``pairgen train``, written to the run's ``timings.json``.

A run's time to result is mostly fixed costs on a fast accelerator (reading, compiling,
evaluating, plotting) and mostly training steps on a CPU; ``timings.json`` says which. It holds::

    phases             seconds per phase, in the order they first ran: read_train, read_val,
                       build_compile, training, write_run, read_test, evaluation, embedding,
                       one_shot, plots (a phase that did not run is absent)
    epoch_seconds      wall time of each epoch (validation included; the first one also
                       compiles the training step)
    total_seconds      from the start of ``train()`` to the end of the report
    training_fraction  training / total_seconds
    started_at, finished_at   Unix times, so a caller that timed the whole process can add
                       what came before (interpreter start, imports) and after (exit)

Timing costs one ``perf_counter`` call per phase; nothing is synchronized or slowed.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class PhaseTimer:
    """Accumulates wall-clock seconds per named phase."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self._start = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.epoch_seconds: list[float] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the ``with`` block and add it to phase ``name`` (phases may repeat)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start

    def report(self) -> dict[str, Any]:
        """The JSON-ready summary (see the module docstring)."""
        total = time.perf_counter() - self._start
        return {"phases": {k: round(v, 4) for k, v in self.phases.items()},
                "epoch_seconds": [round(s, 4) for s in self.epoch_seconds],
                "total_seconds": round(total, 4),
                "training_fraction": round(self.phases.get("training", 0.0) / total, 4) if total else 0.0,
                "started_at": self.started_at, "finished_at": time.time()}

    def write(self, path: str | Path) -> dict[str, Any]:
        """Write :meth:`report` to ``path`` (JSON) and return it."""
        report = self.report()
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return report


class _NoTimer(PhaseTimer):
    """A timer that records nothing (the default of functions that accept one)."""

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        yield


NO_TIMER = _NoTimer()
