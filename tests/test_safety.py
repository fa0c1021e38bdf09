"""What a build may replace, one build per output, crash-safe installs, one-line resource faults."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import flip_pipeline

from pairgen.cli import main
from pairgen.dataset import outdir
from pairgen.dataset.card import read_json as read_card
from pairgen.errors import BuildError
from pairgen.spec.config import BuildConfig
from pairgen.tools.verify import verify
from pairgen.writing.builder import build

ROOT = Path(__file__).resolve().parents[1]
_PARENT_PID = os.getpid()


def _config(src: Path, **overrides) -> BuildConfig:
    base = {"source.path": str(src), "image.size": [16, 16], "build.workers": 1, "build.quiet": True,
            "split.fractions": {"train": 0.5, "test": 0.5}}
    base.update(overrides)
    return BuildConfig().override(base)


def _cli_build(src: Path, out: Path | str, *extra: str):
    args = ["build", "--src", str(src), "--out", str(out), "--image-size", "16x16", "--workers", "1",
            "--splits", "train=0.5,test=0.5", "--quiet", *extra]
    return CliRunner().invoke(main, args)


def _one_line_error(res, *needles: str) -> str:
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    text = res.output.strip()
    assert text.startswith("Error: ") and "\n" not in text and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _hidden_siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- overwrite only what is ours ------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--overwrite", "--keep-versions", None])
def test_user_folder_survives_overwrite(tmp_path: Path, make_image_tree, flag: str | None) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    home = tmp_path / "home"
    (home / "thesis").mkdir(parents=True)
    (home / "thesis" / "chapter1.tex").write_text("precious")
    (home / "notes.txt").write_text("also precious")
    before = _digest(home)
    res = _cli_build(src, home, *([flag] if flag else []))
    _one_line_error(res, str(home), "not a pairgen dataset")
    assert _digest(home) == before
    assert _hidden_siblings(tmp_path) == []  # no lock, partial or old folder left


def test_dataset_holding_foreign_files_is_not_replaced(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    out = tmp_path / "ds"
    first = build(_config(src, **{"build.manifest_only": True}), out)
    (out / "my-results.csv").write_text("accuracy,0.93\n")
    res = _cli_build(src, out, "--overwrite", "--manifest-only", "--seed", "5")
    _one_line_error(res, "my-results.csv", "Move them out")
    assert (out / "my-results.csv").read_text() == "accuracy,0.93\n"
    assert read_card(out)["fingerprint"] == first["fingerprint"]


def test_empty_folder_and_dataset_are_replaced(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    out = tmp_path / "ds"
    out.mkdir()
    assert _cli_build(src, out, "--manifest-only").exit_code == 0  # an empty folder needs no flag
    res = _cli_build(src, out, "--manifest-only", "--seed", "3", "--overwrite")
    assert res.exit_code == 0, res.output
    assert read_card(out)["config"]["seed"] == 3 and verify(out).ok
    assert _hidden_siblings(tmp_path) == []


@pytest.mark.parametrize("where", ["same", "inside", "contains"])
@pytest.mark.parametrize("flag", ["--overwrite", "--keep-versions"])
def test_source_survives_overlapping_out(tmp_path: Path, make_image_tree, where: str, flag: str) -> None:
    src = make_image_tree(tmp_path / "data", classes=3, per_class=4, size=16)
    out = {"same": src, "inside": src / "ds", "contains": tmp_path / "data"}[where]
    before = _digest(tmp_path / "data")
    res = _cli_build(src, out, flag)
    _one_line_error(res, "overlaps the source")
    assert _digest(tmp_path / "data") == before
    assert not (src / "ds").exists() and _hidden_siblings(tmp_path) == []


def test_table_source_folder_is_protected(tmp_path: Path, make_image_tree) -> None:
    import pandas as pd

    src = make_image_tree(tmp_path, classes=2, per_class=4, size=16)
    rows = [(str(p.relative_to(src)), p.parent.name) for p in sorted(src.rglob("*.png"))]
    table = src / "labels.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(table, index=False)
    before = _digest(src)
    res = CliRunner().invoke(main, ["build", "--src", str(table), "--layout", "table", "--out", str(src / "out"),
                                    "--image-size", "16x16", "--quiet"])
    _one_line_error(res, "overlaps the source")
    assert _digest(src) == before


# --- one build per output -------------------------------------------------------------------

_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
time.sleep(60)
"""


def test_a_held_lock_refuses_at_once_naming_the_pid(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(tmp_path / ".ds.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = _cli_build(src, tmp_path / "ds", "--manifest-only")
        _one_line_error(res, f"another pairgen build (pid {holder.pid})", str(tmp_path / "ds"))
        assert not (tmp_path / "ds").exists() and not (tmp_path / ".ds.partial").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: its lock file is simply reused, then removed.
    assert (tmp_path / ".ds.lock").exists()
    assert _cli_build(src, tmp_path / "ds", "--manifest-only").exit_code == 0
    assert _hidden_siblings(tmp_path) == []


def test_two_concurrent_builds_one_succeeds_one_refuses(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=4, per_class=20, size=64)
    out = tmp_path / "ds"
    args = [sys.executable, "-m", "pairgen", "build", str(flip_pipeline(tmp_path)), "--src", str(src),
            "--out", str(out), "--image-size", "64x64",
            "--encoding", "png", "--augment", "--copies", "20", "--workers", "1", "--quiet", "--overwrite"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.pid, *p.communicate(timeout=600), p.returncode) for p in procs]
    codes = sorted(r[3] for r in results)
    assert codes == [0, 1], results
    (winner,) = [r for r in results if r[3] == 0]
    (loser,) = [r for r in results if r[3] == 1]
    assert loser[2].strip() == (f"Error: another pairgen build (pid {winner[0]}) is writing '{out}' now; "
                                "wait for it to finish or choose another --out.")
    assert verify(out).ok
    assert _hidden_siblings(tmp_path) == []


def test_lock_is_not_inherited_by_forked_workers(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with outdir.OutputLock(out, out) as lock:
        pid = os.fork()
        if pid == 0:  # the child must not hold the lock's descriptor
            try:
                os.fstat(lock.fd)
            except OSError:
                os._exit(0)
            os._exit(3)
        assert os.waitpid(pid, 0)[1] == 0
        os.fstat(lock.fd)  # still held here
    assert not (tmp_path / ".ds.lock").exists()


# --- resource faults are one line -----------------------------------------------------------

def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the injected-error tests cover this")


@pytest.fixture
def mounts():
    mounted: list[Path] = []

    def mount(folder: Path, options: str) -> Path:
        _mount_tmpfs(folder, options)
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_disk_leaves_nothing_behind(tmp_path: Path, make_image_tree, mounts) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=8, size=64)
    disk = mounts(tmp_path / "small", "size=256k")
    res = _cli_build(src, disk / "ds", "--image-size", "64x64", "--encoding", "raw")
    _one_line_error(res, "No space left on device", "the disk is full", str(disk / "ds"))
    assert os.listdir(disk) == []


def test_read_only_parent_is_one_line(tmp_path: Path, make_image_tree, mounts) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    disk = mounts(tmp_path / "ro", "ro,size=64k")
    res = _cli_build(src, disk / "ds")
    _one_line_error(res, "Read-only file system", str(disk / "ds"))
    res = _cli_build(src, disk / "a" / "b" / "ds")
    _one_line_error(res, "Read-only file system")
    assert os.listdir(disk) == []


def _enospc_in_worker(task, source=None, cache=None):
    from pairgen.rendering.records import make_chunk

    if os.getpid() != _PARENT_PID:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/worker/shard-00000.tfrecord")
    return make_chunk(task, source, cache)


@pytest.mark.parametrize("where", ["worker", "writer"])
def test_injected_write_error_is_one_line_and_removes_the_partial(tmp_path: Path, make_image_tree,
                                                                  monkeypatch, where: str) -> None:
    from pairgen.writing import shards

    src = make_image_tree(tmp_path, classes=3, per_class=8, size=16)
    if where == "worker":  # rendering in a worker process
        monkeypatch.setattr("pairgen.writing.shardwork.make_chunk", _enospc_in_worker)
    else:  # the worker's shard file
        def full(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        monkeypatch.setattr(shards._Sink, "write", full)
    res = _cli_build(src, tmp_path / "ds", "--workers", "2")
    _one_line_error(res, "No space left on device", "the disk is full", "Nothing was installed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_ray_worker_write_error_is_one_line(tmp_path: Path, make_image_tree, mounts) -> None:
    ray = pytest.importorskip("ray")
    src = make_image_tree(tmp_path, classes=3, per_class=8, size=64)
    disk = mounts(tmp_path / "small", "size=256k")  # Ray workers write the shards: they hit the full disk
    with pytest.raises(BuildError) as info:
        build(_config(src, **{"build.workers": 2, "build.executor": "ray", "image.size": [64, 64],
                              "image.encoding": "raw"}), disk / "ds")
    assert not ray.is_initialized()
    message = str(info.value)
    assert message.startswith(f"building '{disk / 'ds'}' failed: No space left on device") and "\n" not in message
    assert message.endswith(f"the disk is full: free space or choose another --out. Nothing was installed at "
                            f"'{disk / 'ds'}'."), message
    assert os.listdir(disk) == []


def test_missing_parents_are_created_and_removed_again_on_failure(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    res = _cli_build(src, tmp_path / "a" / "b" / "ds", "--manifest-only")
    assert res.exit_code == 0 and verify(tmp_path / "a" / "b" / "ds").ok
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _cli_build(empty, tmp_path / "x" / "y" / "ds")
    assert res.exit_code == 1 and "\n" not in res.output.strip()
    assert not (tmp_path / "x").exists()


def test_out_is_a_file_or_the_current_folder(tmp_path: Path, make_image_tree, monkeypatch) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    (tmp_path / "file.txt").write_text("keep")
    _one_line_error(_cli_build(src, tmp_path / "file.txt", "--overwrite"), "is a file, not a directory")
    assert (tmp_path / "file.txt").read_text() == "keep"
    (tmp_path / "link").symlink_to(tmp_path / "file.txt")
    _one_line_error(_cli_build(src, tmp_path / "link", "--overwrite"), "is a symbolic link")
    assert (tmp_path / "link").is_symlink()
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("keep")
    monkeypatch.chdir(work)
    for out in (".", str(work), str(tmp_path)):
        _one_line_error(_cli_build(src, out, "--overwrite"), "current folder")
    assert sorted(p.name for p in work.iterdir()) == ["keep.txt"]
    assert _hidden_siblings(tmp_path) == []


# --- crash-safe installs --------------------------------------------------------------------

_CRASH = """
import os, pathlib, shutil, sys
from pairgen.writing.builder import build
from pairgen.spec.config import BuildConfig
where = sys.argv[3]
calls = []
real_rename, real_rmtree = pathlib.Path.rename, shutil.rmtree
def rename(self, target):
    calls.append(target)
    if where == "between-renames" and len(calls) == 2:
        os._exit(9)
    return real_rename(self, target)
def rmtree(path, *a, **k):
    if where == "while-removing-old":
        for p in sorted(pathlib.Path(path).rglob("*.parquet"))[:1]:
            p.unlink()
        os._exit(9)
    return real_rmtree(path, *a, **k)
pathlib.Path.rename, shutil.rmtree = rename, rmtree
build(BuildConfig().override({"source.path": sys.argv[1], "image.size": [16, 16], "seed": 7,
      "split.fractions": {"train": 0.5, "test": 0.5}, "build.workers": 1, "build.manifest_only": True,
      "build.overwrite": True}), sys.argv[2])
"""


def _crash(src: Path, out: Path, where: str) -> None:
    done = subprocess.run([sys.executable, "-c", _CRASH, str(src), str(out), where], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr


def test_crash_between_renames_restores_the_old_dataset(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    out = tmp_path / "ds"
    old = build(_config(src, **{"build.manifest_only": True}), out)
    _crash(src, out, "between-renames")
    assert not out.exists() and (tmp_path / ".ds.old" / "dataset.json").exists()  # what a crash leaves
    assert (tmp_path / ".ds.partial" / outdir.TEMP_MARKER).exists()
    res = _cli_build(src, out, "--manifest-only")  # no --overwrite: recovery must not need it
    assert res.exit_code == 1
    assert res.output.splitlines() == [
        f"pairgen: removed '{tmp_path / '.ds.partial'}', the unfinished folder of an interrupted build",
        f"pairgen: restored the previous dataset at '{out}' from '{tmp_path / '.ds.old'}', left by an "
        "interrupted install",
        f"Error: output '{out}' already exists. Pass --overwrite to replace it, --keep-versions to add a new "
        "version beside it, or choose another --out."]
    assert read_card(out)["fingerprint"] == old["fingerprint"] and verify(out).ok
    assert _hidden_siblings(tmp_path) == []


def test_crash_after_install_keeps_the_old_dataset_as_a_version(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    out = tmp_path / "ds"
    old = build(_config(src, **{"build.manifest_only": True}), out)
    new = build(_config(src, seed=7, **{"build.manifest_only": True, "build.overwrite": True}), tmp_path / "new")
    # The state of a crash just after the second rename: the new dataset (still marked) at
    # <out>, the previous one, intact, aside.
    out.rename(tmp_path / ".ds.old")
    (tmp_path / "new").rename(out)
    (out / outdir.TEMP_MARKER).touch()
    lines = outdir.recover(out)
    kept = out / "versions" / f"1.0.0-{old['fingerprint'][:12]}"
    assert lines == [f"kept the previous dataset, left in '{tmp_path / '.ds.old'}' by an interrupted "
                     f"install, at '{kept}'"]
    assert read_card(out)["fingerprint"] == new["fingerprint"] and verify(out).ok
    assert read_card(kept)["fingerprint"] == old["fingerprint"] and verify(kept).ok
    assert not (out / outdir.TEMP_MARKER).exists() and _hidden_siblings(tmp_path) == []


def test_crash_while_removing_the_replaced_dataset_finishes_the_removal(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    out = tmp_path / "ds"
    build(_config(src, **{"build.manifest_only": True}), out)
    _crash(src, out, "while-removing-old")
    assert read_card(out)["config"]["seed"] == 7 and (tmp_path / ".ds.old" / outdir.TEMP_MARKER).exists()
    assert outdir.recover(out) == [f"finished removing '{tmp_path / '.ds.old'}', a replaced dataset whose "
                                   "removal was interrupted"]
    assert verify(out).ok and _hidden_siblings(tmp_path) == [".ds.lock"]  # the crashed build's, unlocked
    assert _cli_build(src, out, "--manifest-only", "--overwrite").exit_code == 0
    assert _hidden_siblings(tmp_path) == []


@pytest.mark.parametrize("name", [".ds.old", ".ds.partial"])
def test_unknown_leftovers_are_reported_never_deleted(tmp_path: Path, make_image_tree, name: str) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    stranger = tmp_path / name
    stranger.mkdir()
    (stranger / "mine.txt").write_text("not pairgen's")
    res = _cli_build(src, tmp_path / "ds", "--overwrite", "--manifest-only")
    _one_line_error(res, str(stranger), "move it away")
    assert (stranger / "mine.txt").read_text() == "not pairgen's"
    assert not (tmp_path / "ds").exists()


def test_failed_second_rename_puts_the_old_dataset_back(tmp_path: Path, make_image_tree, monkeypatch) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=4, size=16)
    out = tmp_path / "ds"
    old = build(_config(src, **{"build.manifest_only": True}), out)
    real, calls = Path.rename, []

    def rename(self, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(target))
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(BuildError, match="Input/output error"):
        build(_config(src, seed=3, **{"build.manifest_only": True, "build.overwrite": True}), out)
    monkeypatch.undo()
    assert read_card(out)["fingerprint"] == old["fingerprint"] and verify(out).ok
    assert _hidden_siblings(tmp_path) == []
