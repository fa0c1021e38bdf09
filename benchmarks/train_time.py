"""Time to result of `pairgen train`: the whole command, split into phases.

Runs `python -m pairgen train DATASET --out RUN` as a subprocess (the real command, imports and
exit included), then reads the run's `timings.json` (written by the trainer's phase timer),
`metrics.json` and `config.json`, and prints one `name=value` line per figure:

    imports_seconds        process start to the start of train(): interpreter, pairgen, Keras
                           and its backend (TensorFlow, JAX, ...)
    <phase>_seconds        read_train, read_val, build_compile, training, write_run, read_test,
                           evaluation, embedding, one_shot, plots (see pairgen/train/timing.py)
    exit_seconds           end of the report to the end of the process
    whole_command_seconds  wall time of the subprocess
    training_fraction      training_seconds / whole_command_seconds

Datasets: by default the demo (pipelines/mnist-demo.toml, built once into build/mnist-demo).
`--images 70000` builds a full-MNIST-sized dataset instead: a class tree of that many 28x28
digits made by jittering the 5,000 shipped MNIST digits (random shift, rotation and scale),
split 5/7, 1/7, 1/7 by image with one positive and one negative pair per image (100,000 /
20,000 / 20,000 records for 70,000 images, as full MNIST exported as folders gives).
`--source DIR` uses a real class tree (e.g. MNIST as `DIR/<digit>/*.png`) the same way.
Built datasets are cached under build/.

    python benchmarks/train_time.py                                     # demo, default recipe
    KERAS_BACKEND=jax python benchmarks/train_time.py --images 70000    # on a GPU host
    python benchmarks/train_time.py -- --epochs 2 --batch-size 256      # extra `pairgen train` options

Against another checkout (one whose trainer writes no timings.json prints the whole command
and the accuracy only): run this file with that checkout's Python from that checkout's root,
passing `--dataset` and `--out` outside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path.cwd()
PHASES = ("read_train", "read_val", "build_compile", "training", "write_run", "read_test", "evaluation",
          "embedding", "one_shot", "plots")


def _pairgen(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pairgen", *args], check=True, env=env)


def demo_dataset(out: Path) -> Path:
    """The demo dataset, built once."""
    if not (out / "dataset.json").is_file():
        _pairgen("build", str(ROOT / "pipelines" / "mnist-demo.toml"), "--out", str(out), "--quiet")
    return out


def synthetic_tree(out: Path, images: int, seed: int = 0) -> Path:
    """``images`` 28x28 digits in ``out/<digit>/``, jittered copies of the shipped 5,000."""
    import cv2

    done = out.parent / f"{out.name}.complete"  # beside the tree: a scan would report it as a skipped file
    if done.is_file():
        return out
    src = ROOT / "datasets" / "mnist-5k"
    by_class = [sorted(d.glob("*.png")) for d in sorted(src.iterdir()) if d.is_dir()]
    rng = np.random.default_rng(seed)
    for k in range(images):  # classes in turn, each cycling through its digits
        files = by_class[k % len(by_class)]
        f = files[(k // len(by_class)) % len(files)]
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        angle, scale = rng.uniform(-12, 12), rng.uniform(0.9, 1.1)
        m = cv2.getRotationMatrix2D((13.5, 13.5), angle, scale)
        m[:, 2] += rng.uniform(-2, 2, 2)
        img = cv2.warpAffine(img, m, (28, 28), flags=cv2.INTER_LINEAR, borderValue=0)
        folder = out / f.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{k:06d}.png"), img)
    done.write_text(f"{images}\n")
    return out


def tree_dataset(src: Path, out: Path) -> Path:
    """Per-image 1 + 1 pairs over a class tree, split 5/7, 1/7, 1/7 by image, 28x28 raw, built once."""
    if not (out / "dataset.json").is_file():
        _pairgen("build", str(ROOT / "pipelines" / "mnist-demo.toml"), "--src", str(src), "--out", str(out),
                 "--splits", f"train={5 / 7:.6f},val={1 / 7:.6f},test={1 / 7:.6f}",
                 "--positives-per-image", "1", "--negatives-per-image", "1", "--workers", "0", "--quiet")
    return out


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"machine_cores={os.cpu_count()} load_average_1m={load:.2f} cpu={cpu!r}"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_train(dataset: Path, out: Path, extra: list[str]) -> tuple[float, float, float]:
    """Run the command; returns (spawn time, exit time, wall seconds) and prints its CPU seconds."""
    cmd = [sys.executable, "-m", "pairgen", "train", str(dataset), "--out", str(out), "--overwrite", "--quiet", *extra]
    print("command=" + " ".join(cmd[1:]), flush=True)
    cpu = _children_cpu()
    spawned = time.time()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    # CPU seconds (user + system, all threads) depend less on what else runs than wall time does
    print(f"command_cpu_seconds={_children_cpu() - cpu:.1f}")
    return spawned, time.time(), wall


def report(out: Path, spawned: float, ended: float, wall: float) -> None:
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    env, train = config["environment"], config["train"]
    print(f"backend={env.get('backend')} gpus={env.get('gpus')} keras={env.get('keras')} reader={train['reader']} "
          f"batch_size={train['batch_size']} learning_rate={train['learning_rate']:g} "
          f"epochs_run={config['epochs_run']}")
    splits = config["dataset"]["splits"]
    print("records " + " ".join(f"{k}={v}" for k, v in splits.items()))
    timings_file = out / "timings.json"
    if timings_file.is_file():
        t = json.loads(timings_file.read_text())
        phases = t["phases"]
        print(f"imports_seconds={t['started_at'] - spawned:.2f}")
        for name in PHASES + tuple(p for p in phases if p not in PHASES):
            if name in phases:
                print(f"{name}_seconds={phases[name]:.2f}")
        print(f"other_in_train_seconds={t['total_seconds'] - sum(phases.values()):.2f}")
        print(f"exit_seconds={ended - t['finished_at']:.2f}")
        print("epoch_seconds=" + ",".join(f"{s:.1f}" for s in t["epoch_seconds"]))
        print(f"whole_command_seconds={wall:.2f}")
        print(f"training_fraction={phases.get('training', 0.0) / wall:.3f}")
    else:
        print("phases=unavailable (this pairgen writes no timings.json)")
        print(f"whole_command_seconds={wall:.2f}")
    one_shot = metrics.get("one_shot", {}).get("5-way", {}).get("accuracy")
    print(f"test_pair_accuracy={metrics['pair_accuracy']:.4f} roc_auc={metrics['roc_auc']:.4f} "
          f"eer={metrics['eer']:.4f} five_way_one_shot={one_shot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, help="a built dataset [demo, or the --images/--source one]")
    parser.add_argument("--images", type=int, help="build a synthetic MNIST-like tree of this many digits")
    parser.add_argument("--source", type=Path, help="a real class tree of 28x28 digits to build from")
    parser.add_argument("--out", type=Path, default=Path("build/train-time-run"), help="run folder (replaced)")
    parser.add_argument("train_args", nargs="*", help="extra `pairgen train` options, after `--`")
    args = parser.parse_args()
    print(machine(), flush=True)
    if args.dataset:
        dataset = args.dataset
    elif args.source or args.images:
        src = args.source or synthetic_tree(Path("build") / f"synth-mnist-{args.images}", args.images)
        name = f"tree-{src.name}" if args.source else f"synth-mnist-{args.images}-pairs"
        t0 = time.perf_counter()
        dataset = tree_dataset(src, Path("build") / name)
        print(f"dataset_ready_seconds={time.perf_counter() - t0:.1f}")
    else:
        dataset = demo_dataset(Path("build") / "mnist-demo")
    print(f"dataset={dataset}", flush=True)
    spawned, ended, wall = run_train(dataset, args.out, args.train_args)
    report(args.out, spawned, ended, wall)
    print(machine().split(" cpu=")[0] + " (after)")


if __name__ == "__main__":
    main()
