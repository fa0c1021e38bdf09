"""Where a scan's time goes, measured around its steps (never inside them).

One :class:`StageClock` splits this process's wall time into stages: each :meth:`~StageClock.lap`
adds the time since the previous lap to one stage, and :meth:`~StageClock.timed` wraps an
iterator so that the time spent producing its items goes to one stage and the time between
items (the consumer's work) to another. Laps nest freely (a timed iterator consumed inside
another one), because every second goes to exactly one stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ScanTimings:
    """Seconds of each scan stage.

    Attributes:
        walk: This process: walking folders and labelling (or reading the label table).
        wait: This process: waiting for the workers' blocks.
        assemble: This process: joining the blocks and building the frames.
        main_cpu: This process's CPU seconds over the whole scan.
        worker_label: Labelling in the workers, summed over workers.
        worker_read: Reading, sha256 and header parsing, summed over workers.
        worker_decode: The decode check, summed over workers.
        worker_cpu: The workers' CPU seconds (of the three above), summed.
    """

    walk: float = 0.0
    wait: float = 0.0
    assemble: float = 0.0
    main_cpu: float = 0.0
    worker_label: float = 0.0
    worker_read: float = 0.0
    worker_decode: float = 0.0
    worker_cpu: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The stages by name, in field order."""
        return asdict(self)


class StageClock:
    """Wall seconds per stage of this process, plus its CPU time since the clock started."""

    def __init__(self) -> None:
        self._mark, self._cpu = time.perf_counter(), time.process_time()
        self._seconds = {"walk": 0.0, "wait": 0.0, "assemble": 0.0}

    def lap(self, stage: str) -> None:
        """Add the time since the last lap to ``stage``."""
        now = time.perf_counter()
        self._seconds[stage] += now - self._mark
        self._mark = now

    def timed(self, items: Iterable[Any], stage: str, between: str = "assemble") -> Iterator[Any]:
        """Yield ``items``: the time spent producing each goes to ``stage``, the time between to ``between``."""
        iterator = iter(items)
        while True:
            self.lap(between)
            try:
                item = next(iterator)
            except StopIteration:
                self.lap(stage)
                return
            self.lap(stage)
            yield item

    def timings(self, worker_seconds: Sequence[float]) -> ScanTimings:
        """The stages so far, with the workers' summed label, read, decode and CPU seconds."""
        label, read, decode, cpu = (float(s) for s in worker_seconds)
        return ScanTimings(**self._seconds, main_cpu=time.process_time() - self._cpu,
                           worker_label=label, worker_read=read, worker_decode=decode, worker_cpu=cpu)
