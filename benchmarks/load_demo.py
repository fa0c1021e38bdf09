"""``pairgen.load`` against in-memory ``from_tensor_slices`` on the demo pairs (issue 23's target: >= 0.8x).

Builds (once, cached under build/bench-load-demo) the demo dataset (``pipelines/mnist-demo.toml``:
32,000 raw 28x28 train pairs in 4 shards), then times whole epochs of its train split, batches
of 256, float32 pixels:

- ``memory``: the split read once into NumPy arrays (``pairgen.load_numpy``) and fed as
  ``tf.data.Dataset.from_tensor_slices(((a, b), label)).batch(256)``, as the reference
  tutorials do (the dataset made once, before timing: each epoch only iterates it);
- ``load``: ``pairgen.load(dir, "train", batch_size=256)`` (raw records copied out of the
  memory-mapped shards into memory when the dataset is made, every record's CRC and every
  shard's record count checked; each batch a ``tf.gather`` and the scaling to float32).

Both datasets are made once (``load`` holds this split's pixels in memory: it fits
``pairgen.reading.mapped.HELD_BYTES``). Each run times ``--epochs`` whole epochs of each, the two
alternating and taking turns going first (memory, load / load, memory / ...), after one untimed
epoch of each; prints each run's pairs/s and the 1-minute load average, then the ratio of the
medians (``load_vs_memory``, target >= 0.8) and, for reference, of the best runs::

    python benchmarks/load_demo.py [--runs 5] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pairgen  # noqa: E402
from pairgen.spec.config import BuildConfig  # noqa: E402
from pairgen.writing.builder import build  # noqa: E402


def demo() -> Path:
    out = ROOT / "build" / "bench-load-demo"
    if not (out / "dataset.json").is_file():
        cfg = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml").override(
            {"build.quiet": True, "build.overwrite": True})
        build(cfg, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed run")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    import tensorflow as tf

    path = demo()
    print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f}", flush=True)
    arrays = pairgen.load_numpy(path, "train")
    n = len(arrays["label"])

    data = ((arrays["a"], arrays["b"]), arrays["label"].astype("float32"))
    datasets = {"memory": tf.data.Dataset.from_tensor_slices(data).batch(args.batch_size),
                "load": pairgen.load(path, "train", batch_size=args.batch_size)}

    for ds in datasets.values():  # warm-up: TensorFlow's traces, the page cache
        assert sum(int(batch[1].shape[0]) for batch in ds) == n
    rates: dict[str, list[float]] = {"memory": [], "load": []}
    for run in range(args.runs):
        names = list(datasets) if run % 2 == 0 else list(datasets)[::-1]
        line = []
        for name in names:
            start = time.perf_counter()
            count = sum(int(batch[1].shape[0]) for _ in range(args.epochs) for batch in datasets[name])
            seconds = time.perf_counter() - start
            assert count == n * args.epochs, (name, count, n)
            rates[name].append(count / seconds)
            line.append(f"{name}={count / seconds:,.0f}/s")
        print(f"run {run + 1}: " + " ".join(line) + f" load_average_1m={os.getloadavg()[0]:.2f}", flush=True)
    for name, values in rates.items():
        print(f"{name}_pairs_per_s=" + ",".join(f"{v:,.0f}" for v in values)
              + f" median={statistics.median(values):,.0f}")
    ratio = statistics.median(rates["load"]) / statistics.median(rates["memory"])
    best = max(rates["load"]) / max(rates["memory"])
    print(f"records={n} epochs_per_run={args.epochs} runs={args.runs} load_vs_memory={ratio:.3f} "
          f"(best runs: {best:.3f}) load_average={'/'.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
