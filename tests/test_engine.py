"""The build's execution engine: bounded reads, identical bytes for any worker count, sources
that change under a build, and workers that die with their build."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from conftest import flip_pipeline

import pairgen.writing.shardwork
from pairgen.errors import BuildError
from pairgen.spec.config import BuildConfig
from pairgen.tools.verify import verify
from pairgen.workers.progress import Progress
from pairgen.writing.builder import build

_OPENS: dict[str, int] | None = None
_AUDIT_ROOT: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if _OPENS is not None and event == "open" and isinstance(args[0], str) and args[0].startswith(_AUDIT_ROOT[0]):
        _OPENS[args[0]] = _OPENS.get(args[0], 0) + 1


sys.addaudithook(_audit)  # a no-op unless a test turns counting on


def _config(src: Path, **over) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [24, 24], "sample.positives_per_image": 10,
            "sample.negatives_per_image": 10}
    return BuildConfig().override({**base, **over})


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "dataset.json"}


def test_each_source_file_is_read_a_bounded_number_of_times(tmp_path: Path, make_image_tree) -> None:
    global _OPENS
    src = make_image_tree(tmp_path, classes=4, per_class=20, size=24)
    _AUDIT_ROOT[:] = [str(src)]
    _OPENS = {}
    try:
        card = build(_config(src, **{"build.workers": 1, "augment.enabled": True, "augment.flip": True}),
                     tmp_path / "ds")
    finally:
        counts, _OPENS = _OPENS, None
    assert card["splits"]["train"]["records"] > 2 * 512  # several render chunks per split
    assert all(len(card["shards"][s]) == 1 for s in card["splits"])
    images = sorted(str(p) for p in src.rglob("*.png"))
    assert sorted(counts) == images
    # One read in the scan (header, hash and decode check together), at most one for the
    # shard-size estimate, and one per shard task that uses the image.
    assert max(counts.values()) <= 3
    assert sum(counts.values()) <= 2 * len(images) + 64 * 2 * len(card["splits"])


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_bytes_identical_for_1_2_3_workers_with_parts(tmp_path: Path, make_image_tree, monkeypatch,
                                                      compression: str) -> None:
    monkeypatch.setattr(pairgen.writing.shardwork, "MIN_PART_RECORDS", 100)  # big shards split into parts
    src = make_image_tree(tmp_path, classes=4, per_class=20, size=32)
    over = {"augment.enabled": True, "augment.crop": [28, 28], "augment.flip": True, "image.encoding": "png",
            "shards.records_per_shard": 500, "shards.compression": compression}
    cards = {w: build(_config(src, **over, **{"build.workers": w}), tmp_path / f"w{w}") for w in (1, 2, 3)}
    sizes = [s["records"] for s in cards[1]["shards"]["train"]]
    assert len(sizes) >= 3 and len(set(sizes)) > 1  # several shards of uneven size
    shards = sum(len(v) for v in cards[1]["shards"].values())
    total = sum(s["records"] for s in cards[1]["splits"].values())
    assert pairgen.writing.shardwork.part_records(total, 3, shards) < min(sizes)  # 3 workers: in parts, joined
    first = _files(tmp_path / "w1")
    assert any(k.startswith("shards/") for k in first)
    for w in (2, 3):
        assert _files(tmp_path / f"w{w}") == first
        assert cards[w]["shards"] == cards[1]["shards"] and cards[w]["fingerprint"] == cards[1]["fingerprint"]
        assert verify(tmp_path / f"w{w}").ok
        assert not (tmp_path / f"w{w}" / "shards" / ".parts").exists()


class _ChangeBeforeWrite(Progress):
    """Changes one source file on disk when the build reaches its write stage."""

    def __init__(self, victim: Path) -> None:
        super().__init__(enabled=False)
        self.victim = victim

    @contextlib.contextmanager
    def stage(self, name: str, **kwargs):
        if name == "write":
            img = cv2.imread(str(self.victim), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(self.victim), 255 - img)
        with super().stage(name, **kwargs) as bar:
            yield bar


@pytest.mark.parametrize("workers", [1, 2])
def test_source_changed_between_scan_and_render_fails_the_build(tmp_path: Path, make_image_tree,
                                                                 workers: int) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=20, size=24)
    victim = sorted(src.rglob("*.png"))[4]
    before = victim.read_bytes()
    out = tmp_path / "ds"
    with pytest.raises(BuildError, match=f"source image '.*{victim.name}' changed during the build") as err:
        build(_config(src, **{"build.workers": workers}), out, progress=_ChangeBeforeWrite(victim))
    assert "\n" not in str(err.value)
    assert victim.read_bytes() != before  # the file really changed on disk
    assert not out.exists()
    assert not list(tmp_path.glob("**/dataset.json"))


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _start_build_with_workers(tmp_path: Path, make_image_tree, stderr: int) -> tuple[subprocess.Popen, list[int]]:
    """A real 2-worker ``pairgen build`` and its worker pids, once both workers run."""
    src = make_image_tree(tmp_path, classes=10, per_class=60, size=64)
    cmd = [sys.executable, "-m", "pairgen", "build", str(flip_pipeline(tmp_path)), "--src", str(src),
           "--out", str(tmp_path / "ds"), "--workers", "2", "--image-size", "64x64", "--encoding", "png",
           "--augment", "--copies", "20", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
        workers = _children(proc.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the build finished before its workers could be seen"
    time.sleep(0.5)  # mid-build
    return proc, workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_a_build_leaves_no_worker_alive(tmp_path: Path, make_image_tree) -> None:
    proc, workers = _start_build_with_workers(tmp_path, make_image_tree, subprocess.DEVNULL)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(5)
    assert [w for w in workers if _alive(w)] == []
    assert not (tmp_path / "ds").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_interrupt_stops_the_build_and_its_workers(tmp_path: Path, make_image_tree) -> None:
    proc, workers = _start_build_with_workers(tmp_path, make_image_tree, subprocess.PIPE)
    os.kill(proc.pid, signal.SIGINT)  # the main process only, as a supervisor would send it
    _, err = proc.communicate(timeout=60)  # never waits for the workers' whole tasks to finish
    assert proc.returncode != 0
    assert [w for w in workers if _alive(w)] == []
    assert not (tmp_path / "ds").exists()
