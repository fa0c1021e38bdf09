"""`pairgen.stream` against `pairgen.load_numpy`: records/s, and peak RSS on a split larger than RAM use.

1. Throughput. Builds once (cached under build/bench-stream-small) the demo pipeline
   (pipelines/mnist-demo.toml: raw 28x28x1 pairs) with 4,000 records per shard, then reads its
   train split, alternating, `--repeats` times each (best time counts; the machine is shared):

   - `load_numpy`: the whole split into memory (float32), then cut into batches of 256 (views);
   - `stream_noshuffle`: `pairgen.stream(..., batch_size=256)`, one epoch;
   - `stream_shuffle`: the same with `shuffle=True, seed=0` (default 10,000-record buffer).

   It checks that the streams give load_numpy's records and prints records/s and ratios.

2. Memory. Builds once (cached under build/bench-stream-big-src and build/bench-stream-big)
   `--big-records` balanced raw 28x28 pairs from 10,000 synthetic PNGs (train = 90%, 10,000
   records per shard), then streams its train split in a fresh child process per mode and
   prints that process's peak RSS (`ru_maxrss`) next to the split's size on disk.

    python benchmarks/stream_throughput.py [--repeats 3] [--big-records 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pairgen  # noqa: E402
from pairgen.builder import build  # noqa: E402
from pairgen.config import BuildConfig  # noqa: E402

BATCH = 256
CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np, pairgen
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start, n, check = time.perf_counter(), 0, 0
for batch in pairgen.stream({path!r}, "train", batch_size=256, shuffle={shuffle}, seed=0):
    n += len(batch["label"])
    check += int(batch["record_id"].sum())
print(json.dumps({{"records": n, "record_id_sum": check, "seconds": time.perf_counter() - start,
                   "import_rss_mb": base, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def small_dataset(out: Path) -> Path:
    if not (out / "dataset.json").is_file():
        cfg = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml").override(
            {"shards.records_per_shard": 4000, "build.quiet": True})
        build(cfg, out)
    return out


def big_tree(root: Path) -> Path:
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


def big_dataset(out: Path, records: int) -> Path:
    card = out / "dataset.json"
    if card.is_file() and sum(s["records"] for s in json.loads(card.read_text())["splits"].values()) == records:
        return out
    src = big_tree(ROOT / "build" / "bench-stream-big-src")
    cfg = BuildConfig().override({
        "source.path": str(src), "sample.strategy": "balanced", "sample.num_records": records,
        "split.fractions": {"train": 0.9, "val": 0.05, "test": 0.05}, "image.size": [28, 28],
        "image.channels": 1, "image.encoding": "raw", "shards.records_per_shard": 10_000,
        "build.workers": 0, "build.overwrite": True, "build.quiet": True})
    start = time.perf_counter()
    build(cfg, out)
    print(f"big_build_records={records} big_build_seconds={time.perf_counter() - start:.0f}", flush=True)
    return out


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def in_memory(path: Path) -> int:
    arrays = pairgen.load_numpy(path, "train")
    n = len(arrays["label"])
    for i in range(0, n, BATCH):
        batch = {k: v[i:i + BATCH] for k, v in arrays.items()}
    return n if batch else 0


def streamed(path: Path, shuffle: bool) -> np.ndarray:
    ids = [b["record_id"] for b in pairgen.stream(path, "train", batch_size=BATCH, shuffle=shuffle, seed=0)]
    return np.concatenate(ids)


def throughput(path: Path, repeats: int) -> None:
    want = pairgen.load_numpy(path, "train")["record_id"]
    n = len(want)
    best = {"load_numpy": float("inf"), "stream_noshuffle": float("inf"), "stream_shuffle": float("inf")}
    for _ in range(repeats):
        best["load_numpy"] = min(best["load_numpy"], timed(lambda: in_memory(path))[0])
        seconds, ids = timed(lambda: streamed(path, False))
        assert np.array_equal(ids, want)
        best["stream_noshuffle"] = min(best["stream_noshuffle"], seconds)
        seconds, ids = timed(lambda: streamed(path, True))
        assert np.array_equal(np.sort(ids), want) and not np.array_equal(ids, want)
        best["stream_shuffle"] = min(best["stream_shuffle"], seconds)
    shards = len(pairgen.read_card(path)["shards"]["train"])
    print(f"small_split_records={n} shards={shards} batch_size={BATCH} repeats={repeats}")
    for name, seconds in best.items():
        print(f"{name}_records_per_s={n / seconds:,.0f} seconds={seconds:.3f}")
    for name in ("stream_noshuffle", "stream_shuffle"):
        print(f"{name}_vs_load_numpy={best['load_numpy'] / best[name]:.2f}x (records/s ratio)")


def memory(path: Path) -> None:
    card = pairgen.read_card(path)
    split_mb = sum(s["bytes"] for s in card["shards"]["train"]) / 2**20
    records = sum(s["records"] for s in card["shards"]["train"])
    print(f"big_split_records={records} big_split_mb={split_mb:,.0f} shards={len(card['shards']['train'])}")
    for shuffle in (False, True):
        code = CHILD.format(root=str(ROOT), path=str(path), shuffle=shuffle)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(res.stderr[-2000:])
        r = json.loads(res.stdout.strip().splitlines()[-1])
        assert r["records"] == records and r["record_id_sum"] == records * (records - 1) // 2
        name = "shuffle" if shuffle else "noshuffle"
        print(f"stream_{name}_peak_rss_mb={r['peak_rss_mb']:.0f} after_import_rss_mb={r['import_rss_mb']:.0f} "
              f"records_per_s={r['records'] / r['seconds']:,.0f} split_over_peak_rss={split_mb / r['peak_rss_mb']:.1f}x "
              f"load_average_1m={os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-records", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f}", flush=True)
    throughput(small_dataset(ROOT / "build" / "bench-stream-small"), args.repeats)
    if args.big_records:
        memory(big_dataset(ROOT / "build" / "bench-stream-big", args.big_records))


if __name__ == "__main__":
    main()
