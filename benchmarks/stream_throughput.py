"""`pairgen.stream` against `pairgen.load_numpy`: records/s, and peak RSS on a split larger than RAM use.

1. Throughput. Builds once (cached under build/bench-stream-small) the demo pipeline
   (pipelines/mnist-demo.toml: raw 28x28x1 pairs) with 4,000 records per shard, then reads its
   train split, alternating, `--repeats` times each (best time counts; the machine is shared):

   - `load_numpy`: the whole split into memory (float32), then cut into batches of 256 (views);
   - `stream_noshuffle`: `pairgen.stream(..., batch_size=256)`, one epoch;
   - `stream_shuffle`: the same with `shuffle=True, seed=0` (default 10,000-record buffer).

   It checks that the streams give load_numpy's records and prints records/s and ratios.

2. Memory. Builds once (cached under build/bench-stream-big-<size>x<size>x<channels>, with its
   source tree beside it) `--big-records` balanced raw pairs of `--big-size` images from
   10,000 synthetic PNGs (train = 90%, `--big-records-per-shard` records per shard), then
   streams its train split in a fresh child process per mode (shuffle off, shuffle on with
   `--shuffle-buffer`) and prints that process's peak RSS (`VmHWM` of /proc/self/status; not
   `ru_maxrss`, which a child inherits from the parent it was forked from), its peak RSS
   after the imports, and the split's size on disk over the peak RSS.

    python benchmarks/stream_throughput.py [--repeats 3] [--big-records 1000000]
    python benchmarks/stream_throughput.py --skip-throughput --big-records 120000 --big-size 64 \
        --big-channels 3 --big-records-per-shard 500 --shuffle-buffer 500
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
from pairgen.spec.config import BuildConfig  # noqa: E402
from pairgen.writing.builder import build  # noqa: E402

BATCH = 256
CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np, pairgen, pairgen.reading.streaming

def status_mb(field):  # VmHWM is the peak RSS of this process image (ru_maxrss survives exec from the parent)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

base = status_mb("VmHWM")
start, n, check = time.perf_counter(), 0, 0
for batch in pairgen.stream({path!r}, {split!r}, batch_size=256, shuffle={shuffle}, seed=0, shuffle_buffer={buffer}):
    n += len(batch["label"])
    check += int(batch["record_id"].sum())
print(json.dumps({{"records": n, "record_id_sum": check, "seconds": time.perf_counter() - start,
                   "import_rss_mb": base, "peak_rss_mb": status_mb("VmHWM")}}))
"""


def small_dataset(out: Path) -> Path:
    if not (out / "dataset.json").is_file():
        cfg = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml").override(
            {"shards.records_per_shard": 4000, "build.quiet": True})
        build(cfg, out)
    return out


def big_tree(root: Path, size: int, channels: int) -> Path:
    """10,000 synthetic PNGs (size x size, gray or BGR) in 100 classes, written once."""
    if (root / ".complete").exists():
        return root
    rng = np.random.default_rng(1)
    shape = (size, size) if channels == 1 else (size, size, channels)
    for c in range(100):
        folder = root / f"class_{c:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(100):
            img = rng.integers(0, 60, shape, dtype=np.uint8)
            center = tuple(int(v) for v in rng.integers(size // 5, size - size // 5, 2))
            cv2.circle(img, center, int(rng.integers(size // 9, size // 3)), (255, 200, 90)[:channels], -1)
            cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    (root / ".complete").touch()
    return root


def big_dataset(records: int, size: int, channels: int, per_shard: int) -> Path:
    name = f"bench-stream-big-{size}x{size}x{channels}"
    out = ROOT / "build" / name
    card = out / "dataset.json"
    if card.is_file() and sum(s["records"] for s in json.loads(card.read_text())["splits"].values()) == records \
            and json.loads(card.read_text())["shards"]["train"][0]["records"] == per_shard:
        return out
    src = big_tree(ROOT / "build" / f"{name}-src", size, channels)
    cfg = BuildConfig().override({
        "source.path": str(src), "sample.strategy": "balanced", "sample.num_records": records,
        "split.fractions": {"train": 0.9, "val": 0.05, "test": 0.05}, "image.size": [size, size],
        "image.channels": channels, "image.encoding": "raw", "shards.records_per_shard": per_shard,
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


def memory(path: Path, buffer: int) -> None:
    """Peak RSS of a child streaming the small val split, then the large train split."""
    card = pairgen.read_card(path)
    image = card["image"]
    print(f"image={image['height']}x{image['width']}x{image['channels']} raw shuffle_buffer={buffer} "
          f"batch_size={BATCH}")
    for split in ("val", "train"):
        split_mb = sum(s["bytes"] for s in card["shards"][split]) / 2**20
        records = sum(s["records"] for s in card["shards"][split])
        print(f"{split}_split_records={records} {split}_split_mb={split_mb:,.0f} shards={len(card['shards'][split])} "
              f"records_per_shard={card['shards'][split][0]['records']}")
        for shuffle in (False, True):
            code = CHILD.format(root=str(ROOT), path=str(path), split=split, shuffle=shuffle, buffer=buffer)
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(res.stderr[-2000:])
            r = json.loads(res.stdout.strip().splitlines()[-1])
            assert r["records"] == records and r["record_id_sum"] == records * (records - 1) // 2
            name = f"{split}_stream_{'shuffle' if shuffle else 'noshuffle'}"
            print(f"{name}_peak_rss_mb={r['peak_rss_mb']:.0f} after_import_rss_mb={r['import_rss_mb']:.0f} "
                  f"records_per_s={r['records'] / r['seconds']:,.0f} "
                  f"split_over_peak_rss={split_mb / r['peak_rss_mb']:.1f}x load_average_1m={os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-records", type=int, default=1_000_000, help="0 skips the memory part")
    parser.add_argument("--big-size", type=int, default=28, help="image side of the big dataset")
    parser.add_argument("--big-channels", type=int, default=1)
    parser.add_argument("--big-records-per-shard", type=int, default=10_000)
    parser.add_argument("--shuffle-buffer", type=int, default=10_000)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f}", flush=True)
    if not args.skip_throughput:
        throughput(small_dataset(ROOT / "build" / "bench-stream-small"), args.repeats)
    if args.big_records:
        path = big_dataset(args.big_records, args.big_size, args.big_channels, args.big_records_per_shard)
        memory(path, args.shuffle_buffer)


if __name__ == "__main__":
    main()
