"""Time and peak memory of `pairgen.retrieval_metrics` on 100,000 clustered embeddings, beside PML's.

The embeddings: `--n` points of dimension `--dim` in `--classes` classes, each a Gaussian blob
(unit-variance centres, noise sigma `--noise`), float32, seed 0. The default noise 0.5 makes
well separated blobs (every metric 1.0); `--hard` (noise 1.5) overlapping ones (MAP@R 0.35
on the default size), where the largest difference from pml means something. Each scorer runs in a fresh
child process (BLAS limited to `--threads` threads) that makes the same embeddings, scores them
once and prints its wall time and CPU time while scoring (`ru_utime + ru_stime`: on a machine
shared with other jobs the wall time grows, the CPU time hardly) and its peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`):

- **pairgen**: `pairgen.retrieval_metrics(x, y)` (exact, float64 ranking, Recall@1/2/4/8 too);
- **pml** (when pytorch-metric-learning is installed): `AccuracyCalculator(include=(precision_at_1,
  r_precision, mean_average_precision_at_r), k="max_bin_count", knn_func=CustomKNN(
  LpDistance(normalize_embeddings=False), batch_size=--pml-batch))` on CPU, its batched exact
  search (its default `k=None` would rank the whole gallery: an n x n result).

Then the two results side by side and the ratio lines. The machine's load average (1, 5 and
15 minutes, `os.getloadavg()`) is printed after each scorer: other jobs on the same cores slow
the wall time.

    python benchmarks/retrieval.py [--n 100000 --dim 128 --classes 1000] [--hard | --noise 0.5] [--no-pml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
sys.path.insert(0, {root!r})
import numpy as np
rng = np.random.default_rng(0)
centres = rng.normal(size=({classes}, {dim}))
y = rng.integers(0, {classes}, {n})
x = (centres[y] + {noise} * rng.normal(size=({n}, {dim}))).astype(np.float32)
if {scorer!r} == "pairgen":
    import pairgen
    c, t = cpu(), time.perf_counter()
    m = pairgen.retrieval_metrics(x, y)
    seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
    out = {{k: m[k] for k in ("precision_at_1", "r_precision", "map_at_r")}}
    out["recall_at_8"] = m["recall_at_k"][8]
else:
    import torch
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN
    torch.set_num_threads({threads})
    calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                              k="max_bin_count", device=torch.device("cpu"),
                              knn_func=CustomKNN(LpDistance(normalize_embeddings=False), batch_size={pml_batch}))
    c, t = cpu(), time.perf_counter()
    m = calc.get_accuracy(x, y)
    seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
    out = {{"precision_at_1": m["precision_at_1"], "r_precision": m["r_precision"],
           "map_at_r": m["mean_average_precision_at_r"]}}
out["seconds"] = seconds
out["cpu_seconds"] = cpu_seconds
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run(scorer: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    code = CHILD.format(root=str(ROOT), scorer=scorer, n=args.n, dim=args.dim, classes=args.classes,
                        noise=args.noise, threads=args.threads, pml_batch=args.pml_batch)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--hard", action="store_true", help="noise 1.5: overlapping classes, MAP@R 0.35 at the default size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pml-batch", type=int, default=1024)
    p.add_argument("--no-pml", action="store_true")
    args = p.parse_args()
    if args.hard:
        args.noise = 1.5
    print(f"{args.n} embeddings of dim {args.dim}, {args.classes} classes, noise {args.noise}, "
          f"{args.threads} threads")
    ours = run("pairgen", args)
    print(f"pairgen  {ours['seconds']:8.1f} s  CPU {ours['cpu_seconds']:7.1f} s  peak RSS {ours['peak_rss_mb']:7.0f} MB  "
          f"P@1 {ours['precision_at_1']:.6f}  R-prec {ours['r_precision']:.6f}  MAP@R {ours['map_at_r']:.6f}  "
          f"R@8 {ours['recall_at_8']:.6f}")
    print(f"         load average {load()}")
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        args.no_pml = True
        print("pml      not installed (pip install pytorch-metric-learning)")
    if args.no_pml:
        return
    pml = run("pml", args)
    print(f"pml      {pml['seconds']:8.1f} s  CPU {pml['cpu_seconds']:7.1f} s  peak RSS {pml['peak_rss_mb']:7.0f} MB  "
          f"P@1 {pml['precision_at_1']:.6f}  R-prec {pml['r_precision']:.6f}  MAP@R {pml['map_at_r']:.6f}")
    print(f"         load average {load()}")
    print(f"ratio time pairgen/pml {ours['seconds'] / pml['seconds']:.2f}x")
    print(f"ratio CPU time pairgen/pml {ours['cpu_seconds'] / pml['cpu_seconds']:.2f}x")
    print(f"ratio peak RSS pairgen/pml {ours['peak_rss_mb'] / pml['peak_rss_mb']:.2f}x")
    diff = max(abs(ours[k] - pml[k]) for k in ("precision_at_1", "r_precision", "map_at_r"))
    print(f"largest difference from pml {diff:.2e}")


if __name__ == "__main__":
    main()
