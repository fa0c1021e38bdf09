"""Pairs/s through ``pairgen.load`` vs in-memory NumPy and vs per-file PNG decoding.

Builds a pair dataset (default 200k pairs of 28x28x1 raw pixels, from the MNIST digits in
``datasets/mnist-5k``) with pairgen's own record encoder and shard writer, then iterates a
fixed number of 256-pair batches after a warm-up through three pipelines:

* ``load``: ``pairgen.load(dir, batch_size=256)`` (TFRecord shards, batched parse).
* ``memory``: the same pairs held as float32 NumPy arrays and fed through
  ``tf.data.Dataset.from_tensor_slices(((a, b), y)).batch(256)``, as reference tutorials do.
* ``per_file``: one PNG file per image, ``tf.io.read_file`` + ``tf.image.decode_png`` per
  image in a ``map`` (``num_parallel_calls=AUTOTUNE``), then ``batch(256)``, as the keras-io
  triplet example does.

The last line is ``load_vs_memory=<ratio>``. Usage::

    python benchmarks/load_throughput.py [--pairs 200000] [--batches 400]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pairgen.codec.example import encode_pair  # noqa: E402
from pairgen.spec.config import ShardConfig  # noqa: E402
from pairgen.writing.shards import ShardWriter, plan_shards  # noqa: E402

BATCH = 256


def read_digits(src: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sorted PNG paths, their pixels [n, 28, 28, 1] and class ids."""
    paths = sorted(str(p) for p in src.rglob("*.png"))
    pixels = np.stack([cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in paths])[..., None]
    names = sorted({Path(p).parent.name for p in paths})
    classes = np.array([names.index(Path(p).parent.name) for p in paths], np.int64)
    return paths, pixels, classes


def make_pairs(classes: np.ndarray, n: int, *, rng: np.random.Generator):
    """Half positives, half negatives, drawn by index (no pixels copied)."""
    order = np.argsort(classes, kind="stable")
    starts = np.searchsorted(classes[order], np.arange(classes.max() + 2))
    a = rng.integers(0, len(classes), n)
    ca = classes[a]
    size = starts[ca + 1] - starts[ca]
    b_pos = order[starts[ca] + rng.integers(0, size)]
    b_neg = rng.integers(0, len(classes), n)
    positive = rng.random(n) < 0.5
    b = np.where(positive, b_pos, b_neg)
    return a, b, (classes[a] == classes[b]).astype(np.int64)


def write_dataset(out: Path, pixels, classes, a, b, labels) -> float:
    """Write the pairs as a pairgen dataset directory; return seconds spent."""
    start = time.perf_counter()
    raw = [img.tobytes() for img in pixels]
    specs = plan_shards("train", len(a), record_bytes=2 * len(raw[0]) + 60, config=ShardConfig())
    with ShardWriter(out, specs, compression="none") as writer:
        for i, (ai, bi, y) in enumerate(zip(a.tolist(), b.tolist(), labels.tolist())):
            writer.write(encode_pair(raw[ai], raw[bi], label=y, a_id=ai, b_id=bi,
                                     a_class=int(classes[ai]), b_class=int(classes[bi]), record_id=i))
    card = {"name": "bench", "kind": "pairs", "compression": "none",
            "image": {"height": 28, "width": 28, "channels": 1, "encoding": "raw"},
            "shards": {"train": writer.close()}}
    (out / "dataset.json").write_text(json.dumps(card))
    return time.perf_counter() - start


def pairs_per_s(ds, batches: int, warmup: int) -> float:
    """Iterate ``warmup`` then ``batches`` batches; return pairs/s over the timed part."""
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    seen = 0
    start = time.perf_counter()
    for _ in range(batches):
        (x, _), y = next(it)
        seen += int(y.shape[0])
    return seen / (time.perf_counter() - start)


def per_file_dataset(tf, paths, a, b, labels):
    def load_image(path):
        image = tf.image.decode_png(tf.io.read_file(path), channels=1)
        return tf.image.convert_image_dtype(image, tf.float32)

    def load_pair(pa, pb, y):
        return (load_image(pa), load_image(pb)), tf.cast(y, tf.float32)

    paths = np.array(paths)
    ds = tf.data.Dataset.from_tensor_slices((paths[a], paths[b], labels))
    return ds.map(load_pair, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH).prefetch(tf.data.AUTOTUNE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--per-file-batches", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--src", default=str(ROOT / "datasets" / "mnist-5k"))
    args = parser.parse_args()
    print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f}")

    paths, pixels, classes = read_digits(Path(args.src))
    a, b, labels = make_pairs(classes, args.pairs, rng=np.random.default_rng(0))
    import tensorflow as tf  # imported before any timing: the import alone takes seconds

    import pairgen

    work = Path(tempfile.mkdtemp(prefix="pairgen-bench-"))
    try:
        seconds = write_dataset(work, pixels, classes, a, b, labels)
        shard_bytes = sum(f.stat().st_size for f in (work / "shards").iterdir())
        print(f"records={args.pairs} images={len(paths)} shard_mb={shard_bytes / 2**20:.1f} "
              f"write_records_per_s={args.pairs / seconds:.0f}")

        ds = pairgen.load(work, "train", batch_size=BATCH)
        load_rate = pairs_per_s(ds, args.batches, args.warmup)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        shuffled = pairgen.load(work, "train", batch_size=BATCH, shuffle=True, seed=0)
        shuffled_rate = pairs_per_s(shuffled, args.batches, args.warmup)

        per_file = per_file_dataset(tf, paths, a, b, labels)
        per_file_rate = pairs_per_s(per_file, args.per_file_batches, args.warmup // 4)

        images = pixels.astype(np.float32) / 255.0
        memory = tf.data.Dataset.from_tensor_slices(((images[a], images[b]), labels.astype(np.float32)))
        memory_rate = pairs_per_s(memory.batch(BATCH), args.batches, args.warmup)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"load_peak_rss_mb={rss_mb:.0f}")
    print(f"load_shuffled_pairs_per_s={shuffled_rate:.0f}")
    print(f"load_pairs_per_s={load_rate:.0f}")
    print(f"memory_pairs_per_s={memory_rate:.0f}")
    print(f"per_file_pairs_per_s={per_file_rate:.0f}")
    print(f"load_vs_per_file={load_rate / per_file_rate:.2f}")
    print(f"load_vs_memory={load_rate / memory_rate:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
