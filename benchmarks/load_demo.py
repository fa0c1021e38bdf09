"""``pairgen.load`` against in-memory ``from_tensor_slices`` on the demo pairs (issue 23's target: >= 0.8x).

Builds (once, cached under build/bench-load-demo) the demo dataset (``pipelines/mnist-demo.toml``:
32,000 raw 28x28 train pairs in 4 shards), then times whole epochs of its train split, batches
of 256, float32 pixels:

- ``memory``: the split read once into NumPy arrays (``pairgen.load_numpy``) and fed as
  ``tf.data.Dataset.from_tensor_slices(((a, b), label)).batch(256)``, as the reference
  tutorials do (the dataset made once, before timing: each epoch only iterates it);
- ``load``: ``pairgen.load(dir, "train", batch_size=256)`` (shards read in parallel, one
  ``parse_example`` and ``decode_raw`` per batch, every shard's record count checked).

Both datasets are made once; each run iterates one whole epoch of each. Runs alternate (memory, load, memory, load, ...) after one untimed epoch of each; prints each
run's pairs/s and the ratio of the medians (``load_vs_memory``)::

    python benchmarks/load_demo.py [--runs 5]
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

    rates: dict[str, list[float]] = {"memory": [], "load": []}
    for run in range(args.runs + 1):
        for name, ds in datasets.items():
            start = time.perf_counter()
            count = sum(int(batch[1].shape[0]) for batch in ds)
            seconds = time.perf_counter() - start
            assert count == n, (name, count, n)
            if run:  # the first epoch of each warms up (TensorFlow's traces, page cache)
                rates[name].append(n / seconds)
    for name, values in rates.items():
        print(f"{name}_pairs_per_s=" + ",".join(f"{v:,.0f}" for v in values)
              + f" median={statistics.median(values):,.0f}")
    ratio = statistics.median(rates["load"]) / statistics.median(rates["memory"])
    print(f"records={n} load_vs_memory={ratio:.3f} load_average_1m={os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
