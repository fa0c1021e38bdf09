"""Training quality: pairgen's default recipe against the keras-io contrastive example, same pairs.

Builds the demo dataset (``pipelines/mnist-demo.toml``: 5,000 real MNIST digits, 80/10/10
image split, 4 positives + 4 negatives per image), then trains on its train split:

(a) the keras-io "Siamese network with a contrastive loss" model and recipe, expressed with
    pairgen's named options: LeNet-like tower (BatchNorm -> Conv 4 5x5 tanh -> AvgPool ->
    Conv 16 5x5 tanh -> AvgPool -> Flatten -> BatchNorm -> Dense 10 tanh), Euclidean distance
    -> BatchNorm -> Dense 1 sigmoid head trained as a distance with the contrastive loss
    (margin 1), RMSprop at its default 1e-3, batch 16, 10 epochs, no schedule, no early stop;
(b) ``pairgen train`` with no options.

Both are evaluated the same way: test pair accuracy at the threshold chosen on val, and test
ROC AUC. The reference is trained once per seed of ``--seeds`` (default 0 and 1: weight init
and shuffle order) because its head is seed-fragile: when the initial weight of its Dense(1,
sigmoid) on the normalized distance is negative, the output often collapses to a constant 0.5
(loss 0.125) and never recovers, so one seed says little about the recipe. pairgen's default is
stable across seeds and is trained on ``--pairgen-seeds`` (default 0) to keep the whole run
within 10 minutes on 2 CPU cores. The last line is ``quality_gain=<pairgen mean accuracy -
reference mean accuracy>``; the line before it compares with the reference's best seed.

    python benchmarks/train_quality.py                    # builds into a temp folder
    python benchmarks/train_quality.py --dataset build/mnist-demo --keep runs/quality
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pairgen.spec.config import BuildConfig  # noqa: E402
from pairgen.train.config import TrainConfig  # noqa: E402
from pairgen.writing.builder import build  # noqa: E402

REFERENCE = TrainConfig(model="lenet", loss="contrastive", head="bn-sigmoid", margin=1.0, optimizer="rmsprop",
                        learning_rate=1e-3, schedule="constant", batch_size=16, epochs=10, patience=0)


def _dataset(args: argparse.Namespace, work: Path) -> Path:
    if args.dataset:
        return Path(args.dataset)
    cfg = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml").override({"build.quiet": True})
    out = work / "mnist-demo"
    build(cfg, out)
    return out


def _run(name: str, dataset: Path, out: Path, config: TrainConfig) -> dict:
    from pairgen.train.trainer import train

    start = time.perf_counter()
    metrics = train(dataset, out, config, overwrite=True, verbose=0)
    seconds = time.perf_counter() - start
    with open(out / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    print(f"{name}_seed{config.seed}_test_pair_accuracy={metrics['pair_accuracy']:.4f} "
          f"roc_auc={metrics['roc_auc']:.4f} threshold_on_val={metrics['threshold']:.4f} "
          f"epochs={len(history)} last_loss={float(history[-1]['loss']):.4f} seconds={seconds:.0f}", flush=True)
    return metrics


def _runs(name: str, dataset: Path, work: Path, config: TrainConfig, seeds: list[int]) -> tuple[float, float]:
    """Train ``config`` once per seed; print each run and the means; return the mean accuracy."""
    runs = [_run(name, dataset, work / f"{name}-seed{seed}", config.replace(seed=seed)) for seed in seeds]
    acc = [m["pair_accuracy"] for m in runs]
    print(f"{name}_mean_test_pair_accuracy={sum(acc) / len(acc):.4f} "
          f"mean_roc_auc={sum(m['roc_auc'] for m in runs) / len(runs):.4f} best={max(acc):.4f}", flush=True)
    return sum(acc) / len(acc), max(acc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="An already built demo dataset (skips the build).")
    parser.add_argument("--keep", help="Write the run folders here instead of a temp folder.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="Reference seeds (default: 0 1).")
    parser.add_argument("--pairgen-seeds", type=int, nargs="+", default=[0], help="pairgen seeds (default: 0).")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pairgen-quality-") as tmp:
        work = Path(args.keep or tmp)
        dataset = _dataset(args, work)
        from pairgen.train.data import open_dataset

        info = open_dataset(dataset)
        print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f}")
        print(f"dataset={info.card['name']} fingerprint={info.fingerprint[:12]} "
              + " ".join(f"{s}_pairs={info.records(s)}" for s in ("train", "val", "test")), flush=True)
        print("reference=keras-io contrastive: lenet tower, distance->BatchNorm->sigmoid head, "
              "contrastive margin 1, RMSprop 1e-3, batch 16, 10 epochs")
        ref_mean, ref_best = _runs("reference", dataset, work, REFERENCE, args.seeds)
        default = TrainConfig()
        resolved = default.resolve(info.kind)
        print(f"pairgen=defaults: {default.model} tower, contrastive margin {resolved.margin:g}, {default.optimizer} "
              f"{default.learning_rate:g} cosine, batch {default.batch_size}, {default.epochs} epochs")
        ours_mean, ours_best = _runs("pairgen", dataset, work, default, args.pairgen_seeds)
        print(f"total_seconds={time.perf_counter() - start:.0f}")
        print(f"quality_gain_vs_best_reference_seed={ours_mean - ref_best:.4f}")
        print(f"quality_gain={ours_mean - ref_mean:.4f}")


if __name__ == "__main__":
    main()
