"""`pairgen report`: seconds to write the page and its size, for the demo dataset and larger ones.

Times the whole command (`python -m pairgen report DIR --out FILE`, interpreter start and imports
included, as a user runs it) `--repeats` times and prints the best and the worst, with the
page's size. The dataset is the demo (pipelines/mnist-demo.toml, built once into
build/mnist-demo: 40,000 pairs) unless DIR arguments are given, e.g. a 1,000,000-record build:

    python benchmarks/report_time.py
    pairgen build pipelines/mnist-demo.toml --positives-per-image 100 --negatives-per-image 100 \\
        --out build/mnist-1m
    python benchmarks/report_time.py build/mnist-1m

Targets: under 10 s for the demo and under 5 MB for any dataset.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pairgen.dataset.card import read_card


def demo(out: Path) -> Path:
    if not (out / "dataset.json").is_file():
        subprocess.run([sys.executable, "-m", "pairgen", "build", "pipelines/mnist-demo.toml", "--out", str(out),
                        "--quiet"], check=True)
    return out


def measure(path: Path, repeats: int) -> dict[str, object]:
    card = read_card(path)
    records = sum(int(s["records"]) for s in card.splits.values())
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pairgen", "report", str(path), "--out", str(page)], check=True,
                           stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
        size = page.stat().st_size
    return {"dataset": str(path), "records": records, "best_s": round(min(times), 2), "worst_s": round(max(times), 2),
            "bytes": size, "under_10_s": max(times) < 10, "under_5_mb": size < 5_000_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", type=Path, help="Dataset directories (default: the demo).")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths = args.datasets or [demo(Path("build/mnist-demo"))]
    for path in paths:
        print(json.dumps(measure(path, args.repeats)))


if __name__ == "__main__":
    main()
