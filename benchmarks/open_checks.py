"""What the loaders' checks cost when a split is opened, with and without the shards' ``first_record`` tie.

Builds (under build/bench-open-checks) the demo dataset (pipelines/mnist-demo.toml: 4 train
shards) and a many-shard dataset from the same source (``records_per_shard`` = 160: 200 train
shards), raw and GZIP, then times ``SplitHandle(path, "train")`` three ways, best
of ``--repeats``:

* ``card``: ``check=False`` (the card and the shard list only);
* ``checks_before``: the checks with the shards' ``first_record`` removed from the card (what
  opening a split cost before the tie: image spec, shard sizes, first record decoded);
* ``checks_now``: the checks with the tie (the first record's sha256 compared too).

Prints seconds and ``tie_overhead`` = checks_now / checks_before (page cache warm).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pairgen.dataset.card import FIRST_RECORD  # noqa: E402
from pairgen.reading.handle import SplitHandle  # noqa: E402
from pairgen.spec.config import BuildConfig  # noqa: E402
from pairgen.writing.builder import build  # noqa: E402


def datasets(base: Path) -> dict[str, Path]:
    """The demo and a 200-shard dataset, raw and gzip (built once)."""
    out = {}
    demo = BuildConfig.from_toml(ROOT / "pipelines" / "mnist-demo.toml")
    variants = {"demo": {}, "demo-200-shards": {"shards.records_per_shard": 160}}
    for name, extra in variants.items():
        for compression in ("none", "gzip"):
            path = base / f"{name}-{compression}"
            if not (path / "dataset.json").is_file():
                build(demo.override({**extra, "shards.compression": compression, "build.quiet": True,
                                     "build.overwrite": True}), path)
            out[f"{name} ({compression})"] = path
    return out


def without_tie(path: Path, base: Path) -> Path:
    """A copy of the dataset whose card lacks every shard's ``first_record`` (shards linked, not copied)."""
    bare = base / (path.name + "-bare")
    shutil.rmtree(bare, ignore_errors=True)
    bare.mkdir()
    for child in path.iterdir():
        if child.name != "dataset.json":
            (bare / child.name).symlink_to(child)
    card = json.loads((path / "dataset.json").read_text())
    for entries in card["shards"].values():
        for entry in entries:
            entry.pop(FIRST_RECORD, None)
    (bare / "dataset.json").write_text(json.dumps(card))
    return bare


def best(path: Path, repeats: int, *, check: bool) -> float:
    """The fastest of ``repeats`` opens of the train split."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        SplitHandle(path, "train", check=check)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench-open-checks")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f}")
    for name, path in datasets(args.out).items():
        bare = without_tie(path, args.out)
        shards = len(SplitHandle(path, "train", check=False).files)
        card = best(path, args.repeats, check=False)
        before = best(bare, args.repeats, check=True)
        now = best(path, args.repeats, check=True)
        print(f"{name:28s} {shards:4d} train shards  card {card * 1e3:7.2f} ms  checks_before {before * 1e3:7.2f} ms  "
              f"checks_now {now * 1e3:7.2f} ms  tie_overhead {now / before:5.2f}x")


if __name__ == "__main__":
    main()
