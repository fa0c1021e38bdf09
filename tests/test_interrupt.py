"""Ctrl-C in a terminal: SIGINT to the whole process group of a 2-worker ``pairgen build``.

Whatever the moment (start-up, scan, sampling, shard writing, commit), the workers print
nothing, the build cleans up (nothing at ``--out`` nor beside it) and exits 130 at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

RUNS = 50
AT_ONCE = 3  # builds interrupted side by side, to keep the test short
HANG_SECONDS = 15.0  # far above the time a clean interrupt takes, even on a loaded machine
PIPELINE = """\
kind = "pairs"
seed = 0
[sample]
strategy = "per-image"
positives_per_image = 4
negatives_per_image = 4
[image]
size = [48, 48]
channels = 3
encoding = "png"
[augment]
enabled = true
flip = true
copies = 3
[shards]
records_per_shard = 400
"""


@dataclass
class _Run:
    index: int
    out: Path
    err: Path
    delay: float
    proc: subprocess.Popen
    flag: Path
    started: float | None = None  # when the interpreter had started and began to run pairgen
    signalled: float | None = None


def _siblings(out: Path) -> list[Path]:
    return [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def _group_gone(pgid: int) -> bool:
    for _ in range(100):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _start(index: int, tmp_path: Path, src: Path, pipeline: Path, delay: float) -> _Run:
    """``python -m pairgen build ...``, but saying (with a file) when Python's own start-up is over.

    A Ctrl-C while the interpreter itself starts (site, ``.pth`` files) is Python's to handle,
    and so is one before the command line can take it: the random moments count from the
    import of the few-line module that holds its handlers (``pairgen.spec.interrupts``, standard
    library only), right before ``pairgen.cli`` installs them.
    """
    out, err, flag = tmp_path / f"out{index:02d}", tmp_path / f"err{index:02d}.txt", tmp_path / f"go{index:02d}"
    code = (f"import pairgen.spec.interrupts\nopen({str(flag)!r}, 'w').close()\n"
            "from pairgen.cli import main\nmain(prog_name='pairgen')")
    with open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", code, "build", str(pipeline), "--src", str(src),
                                 "--out", str(out), "--workers", "2", "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    return _Run(index, out, err, delay, proc, flag)


def _check(run: _Run, rc: int, hung: bool) -> str:
    """'done', 'interrupted', or what went wrong."""
    err = run.err.read_text(errors="replace")
    lines = err.strip().splitlines()
    where = f"run {run.index} (SIGINT {run.delay:.2f} s after start, rc {rc}): {err[-600:]!r}"
    if hung:
        return f"no exit within {HANG_SECONDS} s of the signal: {where}"
    if not _group_gone(run.proc.pid):
        return f"a worker outlived the build: {where}"
    for word in ("Traceback", "KeyboardInterrupt", "worker process died"):
        if word in err:
            return f"{word!r} on stderr: {where}"
    if rc == 0 and run.signalled is None:
        if not (run.out / "dataset.json").is_file() or _siblings(run.out):
            return f"finished but incomplete: {where}"
        return "done"
    if rc in (0, 130) and (run.out / "dataset.json").is_file() and not _siblings(run.out):
        # The signal came once the install had begun (it finishes) or the build was over: the new
        # dataset, whole, and an exit of 0 (ignored after the command) or 130 (while it printed).
        return f"claims nothing was written: {where}" if "nothing was written" in err else "done"
    if os.path.lexists(run.out) or _siblings(run.out):
        return f"left {[p.name for p in _siblings(run.out)]} / out exists {run.out.exists()}: {where}"
    if rc != 130:
        return f"~exit {rc}, not 130: {where}"
    if len(lines) > 1 or not all(line.startswith("interrupted") for line in lines):
        return f"~not one short line: {where}"
    return "interrupted"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and fork, as in a Linux terminal")
def test_ctrl_c_at_random_moments_of_a_build_exits_130_quietly_and_leaves_nothing(tmp_path: Path,
                                                                                 make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=8, per_class=25, size=48)
    pipeline = tmp_path / "pairs.toml"
    pipeline.write_text(PIPELINE)
    # Start-up to the end of shard writing takes about 2.3 s on two idle cores (14 shards).
    delays = np.random.default_rng(20).uniform(0.0, 2.3, RUNS)
    outcomes: list[str] = []
    waiting = list(range(RUNS))
    running: list[_Run] = []
    while waiting or running:
        while waiting and len(running) < AT_ONCE:
            i = waiting.pop(0)
            running.append(_start(i, tmp_path, src, pipeline, float(delays[i])))
        time.sleep(0.01)
        now = time.monotonic()
        for run in list(running):
            rc = run.proc.poll()
            if run.started is None and run.flag.exists():
                run.started = now
            if rc is None and run.signalled is None and run.started is not None and now - run.started >= run.delay:
                os.killpg(run.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
                run.signalled = now
                continue
            hung = rc is None and run.signalled is not None and now - run.signalled > HANG_SECONDS
            if hung:
                os.killpg(run.proc.pid, signal.SIGKILL)
                rc = run.proc.wait()
            if rc is not None:
                running.remove(run)
                outcomes.append(_check(run, rc, hung))
    failures = [o for o in outcomes if o not in ("done", "interrupted")]
    kinds = Counter(f.split(":")[0] for f in failures)
    assert not failures, (f"{len(failures)} of {RUNS} interrupted builds went wrong {dict(kinds)}:\n"
                          + "\n".join(sorted(failures)[:8]))
    interrupted = outcomes.count("interrupted")
    assert interrupted >= 0.7 * RUNS, f"only {interrupted} of {RUNS} builds were interrupted; lengthen the build"


def test_ctrl_c_is_ignored_once_a_command_line_run_is_over_and_restored_for_callers() -> None:
    """Run from a command line, the process ends with the command: a late Ctrl-C must not kill
    Python's shutdown (exit -2). A caller that passes args (CliRunner) gets its handler back."""
    code = ("import signal, sys\nsys.argv = ['pairgen', '--version']\nfrom pairgen.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n"
            "    print(exc.code, signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "0 True", done.stdout + done.stderr

    from click.testing import CliRunner

    from pairgen.cli import main

    before = signal.getsignal(signal.SIGINT)
    assert CliRunner().invoke(main, ["--version"]).exit_code == 0
    assert signal.getsignal(signal.SIGINT) is before
