"""How a build scales with workers, stage by stage, on a 70,000-image MNIST-shaped tree.

1. Writes (once, cached under build/bench-scaling-src) 70,000 synthetic 28x28 gray PNG digits as
   split folders: train/ (56,000), val/ (7,000), test/ (7,000), 10 classes each.
2. Times a serial read + sha256 loop over the same files (the scan's floor; page cache warm).
3. Builds per-image pairs (1 positive + 1 negative per image: 140,000 raw 28x28 records) with
   workers 1, 2 and all cores, timing each stage: scan (read, hash, header and the decode check
   in one read per file), sample (split, sampling, manifests, shard plan), render+write, card.
4. Times ``pairgen scan``'s path (catalog.scan: read, hash, header; no decode) with N workers.
5. Splits the build's scan into its stages: it runs the same scan (same arguments, N workers,
   decode check) once more through ``scan_source``, whose result carries the stage timings,
   and prints the main process's walk, wait and assembly seconds and CPU time, the workers' label, read (read + sha256 + header) and decode
   seconds and CPU time (summed over workers; wall seconds well above CPU seconds mean the
   workers waited for a core), the busy seconds per worker, and the duplicate/label-conflict
   grouping that the card and ``pairgen scan`` run on the catalog.
6. For each build, the main process's CPU seconds against its worker processes' (``getrusage``
   self vs children around the in-process build; workers 0 = no child) and the main process's
   share, with the efficiency Amdahl's law allows at 16 cores for that share.

Prints per N: the stage seconds, ``scan_vs_read_floor`` (build scan / floor),
``scan_only_vs_read_floor`` (pairgen scan / floor), the scan's stages and
``scaling_efficiency`` (t1 / (tN x N)).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pairgen.codec.sourceio import read_source  # noqa: E402
from pairgen.scanning.catalog import ScanOptions, label_conflicts, scan, scan_source, summarize  # noqa: E402
from pairgen.spec.config import BuildConfig  # noqa: E402
from pairgen.workers.pool import Pool  # noqa: E402
from pairgen.workers.progress import Progress  # noqa: E402
from pairgen.writing.builder import build  # noqa: E402

SPLITS = {"train": 5600, "val": 700, "test": 700}  # per class; 10 classes -> 70,000 images


def make_tree(root: Path) -> Path:
    """Write the synthetic digits once; reuse them when already complete."""
    if (root / ".complete").exists():
        return root
    rng = np.random.default_rng(0)
    for split, per_class in SPLITS.items():
        for c in range(10):
            folder = root / split / str(c)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = rng.integers(0, 40, (28, 28), dtype=np.uint8)
                org = (int(rng.integers(2, 10)), int(rng.integers(20, 27)))
                cv2.putText(img, str(c), org, cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.7, 0.9)), 255, 2)
                cv2.imwrite(str(folder / f"{i:05d}.png"), img)
    (root / ".complete").touch()
    return root


def _open_read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_floor(root: Path, read=_open_read) -> tuple[float, int]:
    """Seconds of a plain serial loop reading and sha256-hashing every image (best of two,
    after one untimed pass that brings every file into the page cache)."""
    files = sorted(str(p) for p in root.rglob("*.png"))
    best = float("inf")
    for timed in (False, True, True):
        start = time.perf_counter()
        for path in files:
            hashlib.sha256(read(path)).hexdigest()
        if timed:
            best = min(best, time.perf_counter() - start)
    return best, len(files)


class StageClock(Progress):
    """Records when each build stage starts and ends."""

    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.marks: dict[str, tuple[float, float]] = {}

    @contextlib.contextmanager
    def stage(self, name: str, **kwargs):
        start = time.perf_counter()
        with super().stage(name, **kwargs) as bar:
            yield bar
        self.marks[name] = (start, time.perf_counter())


def timed_build(src: Path, out: Path, workers: int) -> dict[str, float]:
    cfg = BuildConfig().override({
        "source.path": str(src), "source.layout": "split-folders", "split.by": "folders",
        "sample.strategy": "per-image", "image.size": [28, 28], "image.channels": 1, "image.encoding": "raw",
        "build.workers": workers, "build.overwrite": True})
    clock = StageClock()
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    card = build(cfg, out, progress=clock)
    end = time.perf_counter()
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    main_cpu = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    worker_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    (s0, s1), (w0, w1) = clock.marks["scan"], clock.marks["write"]
    records = sum(s["records"] for s in card["splits"].values())
    return {"total": end - start, "scan": s1 - s0, "check": 0.0, "sample": w0 - s1, "render_write": w1 - w0,
            "card": end - w1, "records": records,
            "main_cpu": main_cpu, "worker_cpu": worker_cpu}


def timed_scan(src: Path, workers: int) -> float:
    with Pool(workers=workers) as pool:
        start = time.perf_counter()
        scan(src, layout="split-folders", pool=pool)
        return time.perf_counter() - start


def scan_stages(src: Path, workers: int) -> dict[str, float]:
    """The build's scan (decode check included) once more, split into its stages."""
    image = BuildConfig().override({"image.size": [28, 28], "image.channels": 1}).image
    with Pool(workers=workers) as pool:
        start = time.perf_counter()
        result = scan_source(src, ScanOptions.of("split-folders"), pool=pool, check=image)
        total = time.perf_counter() - start
    catalog, stages = result.catalog, result.timings.as_dict()
    stages["total"] = total
    start = time.perf_counter()
    label_conflicts(catalog.images)
    stages["labels"] = time.perf_counter() - start
    start = time.perf_counter()
    summarize(catalog)
    stages["summary"] = time.perf_counter() - start
    return stages


def print_stages(n: int, st: dict[str, float]) -> None:
    busy = st["worker_label"] + st["worker_read"] + st["worker_decode"]
    print(f"workers={n} scan_stages total_s={st['total']:.2f} main: walk_s={st['walk']:.2f} "
          f"wait_s={st['wait']:.2f} assemble_s={st['assemble']:.2f} cpu_s={st['main_cpu']:.2f} | workers (sum): "
          f"label_s={st['worker_label']:.2f} read_hash_header_s={st['worker_read']:.2f} "
          f"decode_s={st['worker_decode']:.2f} cpu_s={st['worker_cpu']:.2f} per_worker_s={busy / n:.2f} | "
          f"duplicates_labels_s={st['labels']:.2f} scan_summary_s={st['summary']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="", help="comma-separated worker counts (default: 1,2,all cores)")
    parser.add_argument("--src", type=Path, default=ROOT / "build" / "bench-scaling-src",
                        help="where the synthetic tree is (written there once, then reused)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    counts = sorted({int(w) for w in args.workers.split(",") if w} or {1, 2, cores})
    print(f"machine_cores={cores} load_average_1m={os.getloadavg()[0]:.2f}")
    src = make_tree(args.src)
    floor, files = read_floor(src)
    print(f"files={files} read_floor_seconds={floor:.2f} (serial read + sha256, warm page cache)")
    os_floor, _ = read_floor(src, read_source)
    print(f"files={files} os_read_floor_seconds={os_floor:.2f} (the same loop with pairgen's os.open/os.read "
          f"reader: {floor / os_floor:.2f}x faster than open().read())")
    out = ROOT / "build" / "bench-scaling-out"
    times: dict[int, float] = {}
    for n in counts:
        t = timed_build(src, out, n)
        scan_only = timed_scan(src, n)
        stages = scan_stages(src, n)
        times[n] = t["total"]
        print(f"workers={n} records={t['records']} total_s={t['total']:.2f} scan_s={t['scan']:.2f} "
              f"check_s={t['check']:.2f} (in scan) sample_s={t['sample']:.2f} render_write_s={t['render_write']:.2f} "
              f"card_s={t['card']:.2f} records_per_s={t['records'] / t['total']:,.0f}")
        share = t["main_cpu"] / max(t["main_cpu"] + t["worker_cpu"], 1e-9)
        print(f"workers={n} wall_s={t['total']:.2f} main_process_cpu_s={t['main_cpu']:.2f} "
              f"worker_processes_cpu_s={t['worker_cpu']:.2f} main_cpu_share={share:.3f} "
              f"(getrusage self vs children; Amdahl bound at 16 cores: {1 / (share + (1 - share) / 16) / 16:.2f})")
        print(f"workers={n} scan_vs_read_floor={t['scan'] / floor:.2f} "
              f"scan_only_vs_read_floor={scan_only / floor:.2f} (pairgen scan path: {scan_only:.2f} s)")
        print_stages(n, stages)
    shutil.rmtree(out, ignore_errors=True)
    for n in counts:
        if n > 1 and 1 in times:
            print(f"workers={n} scaling_efficiency={times[1] / (times[n] * n):.2f}")
    print(f"load_average_1m_end={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
