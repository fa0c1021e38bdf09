"""P x K batch-hard training against the default pair recipe, and the P x K readers' speed and memory.

1. Quality. Builds (cached under build/bench-pk-images and build/bench-pk-pairs) the demo digits
   (pipelines/mnist-demo.toml: datasets/mnist-5k, 80/10/10 image split, seed 0) twice: as an
   images dataset and as the demo pairs dataset; both have the same splits (same source, split
   config and seed: checked through the split fingerprints). Then trains, with the same budget
   of image presentations (images passed through the tower while training):

   - **pairs**: `pairgen train` defaults (conv-bn, contrastive margin 0.5, Adam 2e-3 cosine,
     batch 64) for `--pair-epochs` epochs over the train pairs (2 images per pair);
   - **pk_batch-hard**: the same tower and optimizer on P x K batches of the images dataset
     (`--loss triplet --mining batch-hard`, margin 0.5 on the Euclidean distance), for as many
     schedule epochs as give the pairs run's presentations (rounded to whole epochs: both counts
     are printed); **pk_contrastive** the same with `--loss contrastive` over all in-batch pairs
     (`--pk-runs` picks the P x K runs).

   Early stopping is off for both (equal budgets); both keep their best val-loss weights. Both
   runs are scored by `pairgen evaluate` on the pairs dataset's test split (threshold chosen on
   its val split): test pair accuracy and ROC AUC, then each P x K run's ratio to pairs.

2. Throughput on the images dataset's train split (best of `--repeats`, alternating), over
   `--read-epochs` epochs of P x K batches, setup included: in-memory NumPy (`load_numpy` once,
   then each batch gathered from memory with the same schedule), `PKSplit.batches` (the reader
   of `pairgen.pk_batches`: records read by offset), `pairgen.load_classes(..., epochs=N)`
   (tf.data); and one epoch of `pairgen.stream` (batch 256, shuffled) against `load_numpy`.

3. Memory. Builds once (build/bench-pk-big) an images dataset of `--big-copies` augmented copies
   (flips) of 10,000 synthetic 64x64x3 PNGs (raw records, 16 MB shards, 90% train), then reads
   one epoch of its train split in a fresh child process with `pk_batches` (16 x 4) and with
   `stream` (batch 256, shuffled through a 1,000-record buffer) and prints that process's peak
   RSS (`VmHWM`) and the split's bytes on disk over it.

    python benchmarks/pk_quality.py [--pair-epochs 2] [--classes-per-batch 8 --images-per-class 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pairgen  # noqa: E402
from pairgen.dataset.card import read_card  # noqa: E402
from pairgen.reading.pk import PKSplit  # noqa: E402
from pairgen.spec.config import BuildConfig  # noqa: E402
from pairgen.writing.builder import build  # noqa: E402

CHILD = """
import json, sys, time, warnings
sys.path.insert(0, {root!r})
warnings.simplefilter("ignore")
import numpy as np, pairgen, pairgen.reading.pk, pairgen.reading.streaming

def status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

base = status_mb("VmHWM")
start, n = time.perf_counter(), 0
if {mode!r} == "pk":
    batches = pairgen.reading.pk.pk_batches({path!r}, "train", classes_per_batch=16, images_per_class=4, seed=0)
else:
    batches = pairgen.stream({path!r}, "train", batch_size=256, shuffle=True, seed=0, shuffle_buffer=1000)
for batch in batches:
    n += len(batch["record_id"])
print(json.dumps({{"records": n, "seconds": time.perf_counter() - start, "import_rss_mb": base,
                   "peak_rss_mb": status_mb("VmHWM")}}))
"""


def demo(kind: str) -> Path:
    out = ROOT / "build" / f"bench-pk-{kind}"
    if not (out / "dataset.json").is_file():
        cfg = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml").override(
            {"kind": kind, "build.quiet": True, "build.overwrite": True})
        build(cfg, out)
    return out


def presentations_per_epoch(path: Path, split: PKSplit | None) -> int:
    """Images through the tower per training epoch: 2 per pair, P*K per P x K batch."""
    if split is None:
        return 2 * sum(int(s["records"]) for s in read_card(path).shards["train"])
    return split.n_batches * split.batch_size


def quality(args: argparse.Namespace, images: Path, pairs: Path) -> None:
    from pairgen.train import TrainConfig, evaluate, train

    pk = PKSplit(images, "train", classes_per_batch=args.classes_per_batch, images_per_class=args.images_per_class,
                 seed=0)
    budget = presentations_per_epoch(pairs, None) * args.pair_epochs
    pk_epochs = max(1, round(budget / presentations_per_epoch(images, pk)))
    runs = {"pairs": (pairs, TrainConfig(epochs=args.pair_epochs, patience=0))}
    for run in args.pk_runs.split(","):
        loss = {"contrastive": {"loss": "contrastive"}}.get(run, {"loss": "triplet", "mining": run})
        runs[f"pk_{run}"] = (images, TrainConfig(epochs=pk_epochs, patience=0, classes_per_batch=args.classes_per_batch,
                                                 images_per_class=args.images_per_class, **loss))
    scores = {}
    for name, (data, config) in runs.items():
        start = time.perf_counter()
        train(data, ROOT / "build" / f"bench-pk-run-{name}", config, overwrite=True, verbose=0)
        seconds = time.perf_counter() - start
        m = evaluate(ROOT / "build" / f"bench-pk-run-{name}", pairs, split="test", ways=())
        shown = presentations_per_epoch(pairs, None) if name == "pairs" else presentations_per_epoch(images, pk)
        print(f"{name}_test_pair_accuracy={m['pair_accuracy']:.4f} roc_auc={m['roc_auc']:.4f} "
              f"epochs={config.epochs} presentations={shown * config.epochs} split_match={m['split_match']} "
              f"train_seconds={seconds:.0f}", flush=True)
        scores[name] = m
    for name in [n for n in scores if n != "pairs"]:
        print(f"ratio_{name}_over_pairs_accuracy={scores[name]['pair_accuracy'] / scores['pairs']['pair_accuracy']:.4f} "
              f"auc={scores[name]['roc_auc'] / scores['pairs']['roc_auc']:.4f}", flush=True)


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def throughput(args: argparse.Namespace, images: Path) -> None:
    p, k, epochs = args.classes_per_batch, args.images_per_class, args.read_epochs
    split = PKSplit(images, "train", classes_per_batch=p, images_per_class=k, seed=0)
    n = split.n_batches * split.batch_size * epochs

    def in_memory() -> None:
        arrays = pairgen.load_numpy(images, "train")
        for e in range(epochs):
            for row in split.schedule(e):
                arrays["image"][row], arrays["class"][row]

    def pk_numpy() -> None:
        data = PKSplit(images, "train", classes_per_batch=p, images_per_class=k, seed=0)
        for e in range(epochs):
            for batch in data.batches(e):
                batch["image"]

    def pk_tfdata() -> None:
        ds = pairgen.load_classes(images, "train", classes_per_batch=p, images_per_class=k, seed=0, epochs=epochs)
        for batch in ds.as_numpy_iterator():
            batch[0]

    records = len(split.classes)

    def stream() -> None:
        for batch in pairgen.stream(images, "train", batch_size=256, shuffle=True, seed=0):
            batch["image"]

    def whole() -> None:
        pairgen.load_numpy(images, "train")

    pk_tfdata()  # TensorFlow's import and first trace are not reading
    times: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, fn in (("in_memory", in_memory), ("pk_batches", pk_numpy), ("load_classes", pk_tfdata),
                         ("load_numpy", whole), ("stream", stream)):
            times[name] = min(times.get(name, float("inf")), _best(fn, 1))
    for name in ("in_memory", "pk_batches", "load_classes"):
        print(f"{name}_pk_records_per_s={n / times[name]:.0f} ({epochs} epochs of {split.n_batches} batches of "
              f"{p}x{k}, setup included)")
    print(f"ratio_pk_batches_over_in_memory={times['in_memory'] / times['pk_batches']:.3f} "
          f"ratio_load_classes_over_in_memory={times['in_memory'] / times['load_classes']:.3f}")
    print(f"load_numpy_records_per_s={records / times['load_numpy']:.0f} stream_records_per_s="
          f"{records / times['stream']:.0f} ratio_stream_over_load_numpy={times['load_numpy'] / times['stream']:.3f}",
          flush=True)


def big_dataset(copies: int) -> Path:
    from stream_throughput import big_tree

    out = ROOT / "build" / "bench-pk-big"
    card = out / "dataset.json"
    config = json.loads(card.read_text())["config"] if card.is_file() else {}
    if config and config["augment"]["copies"] == copies and config["shards"]["shard_mb"] == 16:
        return out
    src = big_tree(ROOT / "build" / "bench-stream-big-64x64x3-src", 64, 3)
    cfg = BuildConfig().override({
        "kind": "images", "source.path": str(src), "augment.enabled": True, "augment.flip": True,
        "augment.copies": copies, "split.fractions": {"train": 0.9, "val": 0.05, "test": 0.05},
        "image.size": [64, 64], "image.channels": 3, "image.encoding": "raw", "shards.shard_mb": 16,
        "build.workers": 0,
        "build.overwrite": True, "build.quiet": True})
    start = time.perf_counter()
    build(cfg, out)
    print(f"big_build_seconds={time.perf_counter() - start:.0f}", flush=True)
    return out


def memory(args: argparse.Namespace) -> None:
    path = big_dataset(args.big_copies)
    card = read_card(path)
    size = sum(int(s["bytes"]) for s in card.shards["train"])
    records = sum(int(s["records"]) for s in card.shards["train"])
    for mode in ("pk", "stream"):
        code = CHILD.format(root=str(ROOT), path=str(path), mode=mode)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{mode}_split_records={records} split_mb={size / 2**20:.0f} records_read={res['records']} "
              f"seconds={res['seconds']:.1f} import_rss_mb={res['import_rss_mb']:.0f} "
              f"peak_rss_mb={res['peak_rss_mb']:.0f} split_over_peak_rss={size / 2**20 / res['peak_rss_mb']:.1f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair-epochs", type=int, default=2)
    parser.add_argument("--classes-per-batch", type=int, default=8)
    parser.add_argument("--images-per-class", type=int, default=8)
    parser.add_argument("--pk-runs", default="batch-hard,contrastive",
                        help="P x K runs, comma-separated: batch-hard, batch-semi-hard, contrastive")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--read-epochs", type=int, default=5)
    parser.add_argument("--big-copies", type=int, default=24)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f}", flush=True)
    images, pairs = demo("images"), demo("pairs")
    same = read_card(images).split_fingerprint == read_card(pairs).split_fingerprint
    print(f"images_train_records={len(PKSplit(images, 'train', classes_per_batch=2, images_per_class=2).classes)} "
          f"pairs_train_records={presentations_per_epoch(pairs, None) // 2} same_splits={same}", flush=True)
    if not args.skip_quality:
        quality(args, images, pairs)
    if not args.skip_throughput:
        throughput(args, images)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
