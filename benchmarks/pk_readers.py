"""P x K readers against the in-memory ceiling, on 70,000-image datasets (issue 23's targets).

1. Builds (once, cached under build/) two images datasets from the 5,000 MNIST digits in
   datasets/mnist-5k as 14 flipped copies each (70,000 images, 80/10/10 split: about 56,000
   train records): 28x28 gray and 64x64 RGB, raw pixels, uncompressed shards.
2. For each, times ``--epochs`` epochs of P x K batches (P = K = 8), side by side in one run,
   alternating, ``--repeats`` times:

   - ``numpy_in_memory``: the train split's uint8 pixels and class ids as arrays in memory
     (read before timing), each batch a NumPy fancy-index gather of the schedule's rows;
   - ``pk_batches``: ``pairgen.pk_batches(..., normalize=False)``, one call per epoch (opening
     the split, the schedule, the CRCs and manifest checks included);
   - ``tf_in_memory``: the same pixels as a tensor, the epochs' schedules as
     ``from_tensor_slices``, ``tf.gather`` in a parallel ``map``, pixels scaled to float32,
     prefetch;
   - ``load_classes``: ``pairgen.load_classes(..., epochs=N)`` (float32 pixels; the call included:
     a split that fits ``HELD_BYTES`` is copied into memory then).

   Both NumPy loops compute each epoch's schedule the same way (``PKSplit.schedule``); both
   tf.data pipelines are iterated eagerly (``for batch in ds``). Prints images/s per reader and
   the ratios ``pk_batches_over_numpy`` (target >= 0.15) and ``load_classes_over_tf`` (>= 0.6)
   of the best runs, and ``load_classes_over_tf`` of each repeat (the two ran back to back) with
   their median; then the seconds the ``load_classes`` call itself took (opening the split and,
   for a split held in memory, copying it there) and the median ratio of the epochs alone.

    python benchmarks/pk_readers.py [--epochs 2] [--repeats 5] [--only gray28,rgb64] [--skip-tf]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pairgen  # noqa: E402
from pairgen.reading.pk import PKSplit  # noqa: E402
from pairgen.spec.config import BuildConfig  # noqa: E402
from pairgen.writing.builder import build  # noqa: E402

DATASETS = {"gray28": ((28, 28), 1), "rgb64": ((64, 64), 3)}
P = K = 8


def dataset(name: str) -> Path:
    size, channels = DATASETS[name]
    out = ROOT / "build" / f"bench-pk70k-{name}"
    if not (out / "dataset.json").is_file():
        cfg = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml").override({
            "kind": "images", "augment.enabled": True, "augment.flip": True, "augment.copies": 14,
            "image.size": list(size), "image.channels": channels, "image.encoding": "raw",
            "build.quiet": True, "build.overwrite": True})
        start = time.perf_counter()
        build(cfg, out)
        print(f"built {out.name} in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def readers(path: Path, epochs: int, with_tf: bool, calls: list[float]) -> dict:
    """The readers, each a function that reads ``epochs`` epochs; ``load_classes`` appends the
    seconds its call took (opening the split, copying it into memory) to ``calls``."""
    split = PKSplit(path, "train", classes_per_batch=P, images_per_class=K, seed=0)
    arrays = pairgen.load_numpy(path, "train", normalize=False)
    images, classes = arrays["image"], arrays["class"]

    def numpy_in_memory() -> int:
        n = 0
        for e in range(epochs):
            for row in split.schedule(e):
                batch = images[row], classes[row]
                n += len(batch[0])
        return n

    def pk_batches() -> int:
        n = 0
        for e in range(epochs):
            for batch in pairgen.pk_batches(path, "train", classes_per_batch=P, images_per_class=K, seed=0, epoch=e,
                                            normalize=False):
                n += len(batch["image"])
        return n

    out = {"numpy_in_memory": numpy_in_memory, "pk_batches": pk_batches}
    if with_tf:
        import tensorflow as tf

        pixels, labels = tf.constant(images), tf.constant(classes)

        def tf_in_memory() -> int:
            rows = np.concatenate([split.schedule(e) for e in range(epochs)])
            ds = tf.data.Dataset.from_tensor_slices(rows).map(
                lambda ids: (tf.cast(tf.gather(pixels, ids), tf.float32) / 255.0, tf.gather(labels, ids)),
                num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
            return sum(int(batch[0].shape[0]) for batch in ds)

        def load_classes() -> int:
            start = time.perf_counter()
            ds = pairgen.load_classes(path, "train", classes_per_batch=P, images_per_class=K, seed=0, epochs=epochs)
            calls.append(time.perf_counter() - start)
            return sum(int(batch[0].shape[0]) for batch in ds)

        out.update(tf_in_memory=tf_in_memory, load_classes=load_classes)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=",".join(DATASETS))
    parser.add_argument("--skip-tf", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f}", flush=True)
    for name in args.only.split(","):
        path = dataset(name)
        calls: list[float] = []
        fns = readers(path, args.epochs, not args.skip_tf, calls)
        for fn in fns.values():  # warm-up: page cache, TensorFlow's import and first traces
            fn()
        calls.clear()
        best: dict[str, float] = {}
        count: dict[str, int] = {}
        runs: dict[str, list[float]] = {key: [] for key in fns}
        for _ in range(args.repeats):
            for key, fn in fns.items():
                gc.collect()  # the last run's datasets (tf.data keeps reference cycles) go before the next is made
                start = time.perf_counter()
                count[key] = fn()
                runs[key].append(time.perf_counter() - start)
                best[key] = min(best.get(key, float("inf")), runs[key][-1])
        rates = {key: count[key] / best[key] for key in fns}
        shape = "x".join(map(str, (*DATASETS[name][0], DATASETS[name][1])))
        print(f"{name} ({shape}, {count['numpy_in_memory'] // args.epochs} train images per epoch, P=K={P}, "
              f"{args.epochs} epochs, best of {args.repeats}): "
              + " ".join(f"{key}={rate:,.0f}/s" for key, rate in rates.items()), flush=True)
        line = f"{name} ratio pk_batches_over_numpy={rates['pk_batches'] / rates['numpy_in_memory']:.3f}"
        if "load_classes" in rates:
            line += f" load_classes_over_tf={rates['load_classes'] / rates['tf_in_memory']:.3f}"
            each = [t / lc for t, lc in zip(runs["tf_in_memory"], runs["load_classes"])]
            line += (f" (per repeat: {','.join(f'{r:.2f}' for r in each)}; median {statistics.median(each):.3f})")
            epochs_only = [t / (lc - c) for t, lc, c in zip(runs["tf_in_memory"], runs["load_classes"], calls)]
            line += (f"; the call itself {statistics.median(calls):.2f} s (median), the epochs alone "
                     f"{statistics.median(epochs_only):.3f}x")
        print(line + f" load_average_1m={os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
