"""Pair sampling: the tutorials' per-image ``make_pairs`` against pairgen's vectorized sampler.

Part 1 times both on the same 60,000 labels (10 classes, 28x28 uint8 pixels). The reference
loops over images, recomputes ``np.where`` per image and copies pixels into a pairs array; it
is timed on a prefix of anchors (still searching all 60,000 labels) and reported per second.
Part 2 times 10 million balanced pairs over 1,000,000 images / 10,000 classes in a fresh
subprocess, so its peak RSS does not include part 1's pixel arrays.

    python benchmarks/sampling.py            # prints key=value lines; the last is the speedup
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pairgen.sampling import sample_pairs  # noqa: E402

IMAGES, CLASSES, REFERENCE_PREFIX = 60_000, 10, 5_000


def make_pairs(images: np.ndarray, labels: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The PyImageSearch / keras.io reference, unchanged except for stopping after ``limit`` anchors."""
    pair_images, pair_labels = [], []
    num_classes = len(np.unique(labels))
    idx = [np.where(labels == i)[0] for i in range(0, num_classes)]
    for idx_a in range(limit):
        current = images[idx_a]
        label = labels[idx_a]
        idx_b = np.random.choice(idx[label])  # the reference's own (global) RNG, as published
        pair_images.append([current, images[idx_b]])
        pair_labels.append([1])
        neg_idx = np.where(labels != label)[0]
        pair_images.append([current, images[np.random.choice(neg_idx)]])
        pair_labels.append([0])
    return np.array(pair_images), np.array(pair_labels)


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def part1() -> float:
    gen = np.random.default_rng(0)
    labels = gen.integers(0, CLASSES, IMAGES)
    pixels = gen.integers(0, 256, (IMAGES, 28, 28), dtype=np.uint8)
    images = pd.DataFrame({"image_id": np.arange(IMAGES), "class_id": labels, "split": None})

    ref_s = best_of(1, lambda: make_pairs(pixels, labels, REFERENCE_PREFIX))
    ref_rate = 2 * REFERENCE_PREFIX / ref_s
    ours_s = best_of(5, lambda: sample_pairs(images, strategy="per-image", rng=np.random.default_rng(1)))
    ours_rate = 2 * IMAGES / ours_s
    print(f"reference_note=make_pairs timed on the first {REFERENCE_PREFIX} of {IMAGES} anchors "
          "(np.where over all labels per anchor, pixels copied); pairgen on all anchors, ids only")
    print(f"reference_seconds_{2 * REFERENCE_PREFIX}_pairs={ref_s:.3f}")
    print(f"reference_pairs_per_s={ref_rate:,.0f}")
    print(f"reference_est_seconds_{2 * IMAGES}_pairs={2 * IMAGES / ref_rate:.1f}")
    print(f"pairgen_seconds_{2 * IMAGES}_pairs={ours_s:.4f}")
    print(f"pairgen_pairs_per_s={ours_rate:,.0f}")
    return ours_rate / ref_rate


def part2() -> None:
    n, classes, records = 1_000_000, 10_000, 10_000_000
    gen = np.random.default_rng(0)
    images = pd.DataFrame({"image_id": np.arange(n), "class_id": gen.integers(0, classes, n), "split": None})
    start = time.perf_counter()
    out = sample_pairs(images, strategy="balanced", rng=np.random.default_rng(1), num_records=records)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"balanced_10M_rows={len(out)}")
    print(f"balanced_10M_seconds={seconds:.2f}")
    print(f"balanced_10M_frame_mb={out.memory_usage(deep=True).sum() / 2**20:.0f}")
    print(f"balanced_10M_peak_rss_mb={peak_mb:.0f}")


def main() -> None:
    if sys.argv[1:] == ["--balanced"]:
        part2()
        return
    print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f}")
    speedup = part1()
    sys.stdout.flush()
    subprocess.run([sys.executable, os.path.abspath(__file__), "--balanced"], check=True)
    print(f"sampling_speedup={speedup:.0f}")


if __name__ == "__main__":
    main()
