"""The Ray executor: a private local Ray, a real two-node cluster by address or RAY_ADDRESS, and
a worker killed mid-build. Every Ray build must give the local build's bytes."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from pairgen.cli import main
from pairgen.errors import BuildError
from pairgen.spec.config import BuildConfig
from pairgen.tools.verify import verify
from pairgen.workers.progress import Progress
from pairgen.writing.builder import build

ray = pytest.importorskip("ray")

_BASE = {"image.size": [24, 24], "augment.enabled": True, "augment.flip": True, "augment.crop": [28, 28],
         "shards.records_per_shard": 9, "split.fractions": {"train": 0.5, "val": 0.25, "test": 0.25}}


class _Notes(Progress):
    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


@pytest.fixture(scope="module")
def cluster():
    """A real two-node Ray cluster (head + a second raylet), shut down after this module."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 << 20})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=80 << 20)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def source(tmp_path_factory, cluster):
    from conftest import image_tree

    root = tmp_path_factory.mktemp("ray")
    src = image_tree(root, classes=4, per_class=8, size=32)
    local = build(BuildConfig().override({**_BASE, "source.path": str(src), "build.workers": 2}), root / "local")
    return root, src, local


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "dataset.json"}


def _same_as_local(card: dict, out: Path, local: dict, local_out: Path) -> None:
    assert card["fingerprint"] == local["fingerprint"] and card["shards"] == local["shards"]
    assert _files(out) == _files(local_out)
    assert verify(out).ok


def test_private_local_ray_matches_local_while_another_cluster_runs(source, monkeypatch) -> None:
    root, src, local = source
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    notes = _Notes()
    card = build(BuildConfig().override({**_BASE, "source.path": str(src), "build.workers": 2,
                                         "build.executor": "ray"}), root / "private", progress=notes)
    assert not ray.is_initialized()  # the build shut down the Ray it started
    assert any("private local Ray with 2 CPUs" in n for n in notes.notes)
    _same_as_local(card, root / "private", local, root / "local")


def test_cluster_by_address_and_by_env_matches_local(source, cluster, monkeypatch) -> None:
    root, src, local = source
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    notes = _Notes()
    card = build(BuildConfig().override({**_BASE, "source.path": str(src), "build.executor": "ray",
                                         "build.ray_address": cluster.address}), root / "addr", progress=notes)
    assert any(f"connected to {cluster.address} (2 CPUs on 2 node(s))" in n for n in notes.notes)
    assert not ray.is_initialized()
    _same_as_local(card, root / "addr", local, root / "local")

    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    args = ["build", "--src", str(src), "--out", str(root / "env"), "--executor", "ray", "--image-size", "24x24",
            "--augment", "--splits", "train=0.5,val=0.25,test=0.25", "--quiet", "--json"]
    pipeline = root / "p.toml"
    pipeline.write_text("[augment]\nflip = true\ncrop = [28, 28]\n[shards]\nrecords_per_shard = 9\n")
    result = CliRunner().invoke(main, [args[0], str(pipeline), *args[1:]])
    assert result.exit_code == 0, result.output
    assert _files(root / "env") == _files(root / "local")
    assert verify(root / "env").ok


class _KillReaderOnWrite(Progress):
    """At the write stage, swaps one source image for a FIFO; kills the Ray worker that opens it.

    The killed task is retried by Ray and reads the restored file. Anyone else who opened the
    FIFO meanwhile gets the real bytes through it.
    """

    def __init__(self, victim: Path) -> None:
        super().__init__(enabled=False)
        self.victim, self.killed, self.error = victim, [], None
        self.thread = threading.Thread(target=self._run, daemon=True)

    @contextlib.contextmanager
    def stage(self, name: str, **kwargs):
        if name == "write":
            self.data = self.victim.read_bytes()
            self.victim.unlink()
            os.mkfifo(self.victim)
            self.thread.start()
        with super().stage(name, **kwargs) as bar:
            yield bar

    def _readers(self) -> list[int]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) == os.getpid():  # this process holds the writing end
                continue
            with contextlib.suppress(OSError):
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(self.victim) for fd in os.listdir(f"/proc/{pid}/fd")):
                    found.append(int(pid))
        return found

    def _run(self) -> None:
        try:
            import errno
            import signal
            import time

            deadline = time.monotonic() + 120
            while True:  # a non-blocking open for writing succeeds once a reader waits on the FIFO
                try:
                    fd = os.open(self.victim, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError as exc:
                    if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            readers = []
            while not readers and time.monotonic() < deadline:
                readers = self._readers()
            for pid in readers:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                os.kill(pid, signal.SIGKILL)
                self.killed.append((pid, cmdline))
            tmp = self.victim.with_suffix(".restore")
            tmp.write_bytes(self.data)
            os.replace(tmp, self.victim)
            os.set_blocking(fd, True)
            with contextlib.suppress(BrokenPipeError):
                os.write(fd, self.data)
            os.close(fd)
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_killed_ray_worker_is_retried_and_the_dataset_verifies(source, cluster, monkeypatch) -> None:
    root, _, local = source
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from conftest import image_tree

    src = image_tree(root, classes=4, per_class=8, size=32, name="src-kill")  # same bytes as `source`
    victim = sorted(src.rglob("*.png"))[5]
    hook = _KillReaderOnWrite(victim)
    card = build(BuildConfig().override({**_BASE, "source.path": str(src), "build.executor": "ray",
                                         "build.ray_address": cluster.address}), root / "killed", progress=hook)
    hook.thread.join(5)
    assert hook.error is None
    assert hook.killed and all(cmd.startswith(b"ray::") for _, cmd in hook.killed)
    assert victim.read_bytes() == hook.data
    _same_as_local(card, root / "killed", local, root / "local")
    assert not [p for p in (root / "killed").rglob("*") if p.name.endswith(".tmp") or p.name == ".parts"]


def test_unreachable_address_is_one_line(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=6)
    cfg = BuildConfig().override({"source.path": str(src), "build.executor": "ray", "build.ray_address": "127.0.0.1:9"})
    with pytest.raises(BuildError, match="cannot reach the Ray cluster at '127.0.0.1:9'") as err:
        build(cfg, tmp_path / "ds")
    assert "\n" not in str(err.value)
    assert not ray.is_initialized()


def test_an_address_where_something_else_answers_fails_fast_in_one_line(tmp_path: Path, make_image_tree) -> None:
    """RAY_ADDRESS naming a port that accepts connections but is no Ray (a proxy, another server)."""
    import socket
    import subprocess
    import sys

    src = make_image_tree(tmp_path, classes=2, per_class=6)
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []  # connections held open, never answered

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    env = {**os.environ, "RAY_ADDRESS": address}
    try:
        done = subprocess.run([sys.executable, "-m", "pairgen", "build", "--src", str(src), "--out", str(tmp_path / "ds"),
                               "--executor", "ray", "--quiet"], capture_output=True, text=True, env=env, timeout=20)
    finally:
        server.close()
        for conn in accepted:
            conn.close()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr  # one line, no Ray warnings
    assert f"cannot reach the Ray cluster at '{address}'" in done.stderr and "RAY_ADDRESS" in done.stderr
    assert not (tmp_path / "ds").exists()
