"""Growth to a million records: time, records/s and peak RSS of 10k, 100k and 1M pair builds.

Writes (once, cached under build/bench-growth-src) 10,000 synthetic 28x28 gray PNGs in 100
classes, then builds ``balanced`` pairs (raw 28x28 records) of each size in a fresh child
process with all cores, and reports that process's peak RSS (the main process) and the peak
RSS of its largest reaped child (the largest worker; with ``--executor ray`` the largest
process of the private Ray). Prints ``rss_growth`` (main RSS at the largest size / at the
smallest) and ``time_growth`` (time at 1M / at 100k) last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from pairgen.writing.builder import build
from pairgen.spec.config import BuildConfig
cfg = BuildConfig().override({{"source.path": {src!r}, "sample.strategy": "balanced", "sample.num_records": {n},
    "image.size": [28, 28], "image.channels": 1, "image.encoding": "raw", "build.workers": 0,
    "build.executor": {executor!r}, "build.overwrite": True}})
start = time.perf_counter()
card = build(cfg, {out!r})
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "records": sum(s["records"] for s in card["splits"].values()),
    "shard_mb": sum(s["bytes"] for v in card["shards"].values() for s in v) / 2**20,
    "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


def make_tree(root: Path) -> Path:
    """10,000 gray 28x28 PNGs in 100 classes, written once."""
    if (root / ".complete").exists():
        return root
    rng = np.random.default_rng(1)
    for c in range(100):
        folder = root / f"class_{c:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(100):
            img = rng.integers(0, 60, (28, 28), dtype=np.uint8)
            cv2.circle(img, tuple(int(v) for v in rng.integers(6, 22, 2)), int(rng.integers(3, 9)), 255, -1)
            cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    (root / ".complete").touch()
    return root


def run(src: Path, n: int, executor: str) -> dict:
    out = ROOT / "build" / f"bench-growth-{executor}-{n}"
    code = CHILD.format(root=str(ROOT), src=str(src), n=n, executor=executor, out=str(out))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated record counts")
    parser.add_argument("--executor", default="local", choices=["local", "ray"])
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f} executor={args.executor}")
    src = make_tree(ROOT / "build" / "bench-growth-src")
    results = {}
    for n in sizes:
        r = results[n] = run(src, n, args.executor)
        print(f"records={r['records']} seconds={r['seconds']:.1f} records_per_s={r['records'] / r['seconds']:,.0f} "
              f"shard_mb={r['shard_mb']:.0f} main_peak_rss_mb={r['main_mb']:.0f} "
              f"largest_child_peak_rss_mb={r['child_mb']:.0f} load_average_1m={os.getloadavg()[0]:.2f}")
    lo, hi = min(sizes), max(sizes)
    if hi > lo:
        print(f"rss_growth={results[hi]['main_mb'] / results[lo]['main_mb']:.2f} (main RSS at {hi:,} / at {lo:,})")
    if 100_000 in results and 1_000_000 in results:
        print(f"time_growth={results[1_000_000]['seconds'] / results[100_000]['seconds']:.2f}")


if __name__ == "__main__":
    main()
