"""`pairgen.load_numpy`: the column-wise reader vs the per-record reader, side by side.

Reads the train split of the demo dataset (pipelines/mnist-demo.toml, built once into
build/mnist-demo: 32,000 pairs of raw 28x28x1 images) with

- `per_record`: `pairgen.reading.engine.read_records` (every record framed, checked and parsed as a
  `tf.train.Example` in Python, images by `np.frombuffer`), then scaled to float32 as
  `load_numpy` scales: what `load_numpy` did before the column-wise reader;
- `load_numpy`: `pairgen.load_numpy(dir, "train")` (column-wise, pairgen.codec.columnar);

checks that both give the same arrays, and prints records/s of each and their ratio. The same
is done for a PNG copy of the split (written once into build/mnist-demo-png; images decoded
one by one in the per-record path, on a thread pool in the column-wise one). Each reader runs
`--repeats` times, alternating, and the best time counts (the machine may be shared).

    python benchmarks/numpy_reader.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

import pairgen
from pairgen.dataset.card import read_card
from pairgen.reading.engine import read_records
from pairgen.spec.schema import schema_of


def demo(out: Path) -> Path:
    if not (out / "dataset.json").is_file():
        subprocess.run([sys.executable, "-m", "pairgen", "build", "pipelines/mnist-demo.toml", "--out", str(out),
                        "--quiet"], check=True)
    return out


def png_copy(src: Path, out: Path) -> Path:
    """The train split of ``src`` re-encoded as PNG records (same ids, labels, order)."""
    if (out / "dataset.json").is_file():
        return out
    from pairgen.codec.example import encode_pair
    from pairgen.spec.config import ShardConfig
    from pairgen.writing.shards import ShardWriter, plan_shards

    arrays = pairgen.load_numpy(src, "train", normalize=False)
    n = len(arrays["record_id"])
    config = ShardConfig(records_per_shard=10_000)
    specs = plan_shards("train", n, record_bytes=300, config=config)
    out.mkdir(parents=True, exist_ok=True)

    def png(img: np.ndarray) -> bytes:
        return cv2.imencode(".png", img[:, :, 0])[1].tobytes()

    with ShardWriter(out, specs, compression="none") as writer:
        for i in range(n):
            writer.write(encode_pair(png(arrays["a"][i]), png(arrays["b"][i]), label=int(arrays["label"][i]),
                                     a_id=int(arrays["a_id"][i]), b_id=int(arrays["b_id"][i]),
                                     a_class=int(arrays["a_class"][i]), b_class=int(arrays["b_class"][i]),
                                     record_id=int(arrays["record_id"][i])))
    card = {"name": "mnist-demo-png", "kind": "pairs", "compression": "none", "shards": {"train": writer.close()},
            "image": {"height": 28, "width": 28, "channels": 1, "encoding": "png"}}
    (out / "dataset.json").write_text(json.dumps(card))
    return out


def per_record(path: Path) -> dict[str, np.ndarray]:
    """load_numpy's arrays through the per-record reader only."""
    card = read_card(path)
    image_keys, int_keys = schema_of(card.kind).features
    raw = read_records(card.shard_paths(path, "train"), image_keys, int_keys, card.image.shape, card.image.encoding,
                       compression=card.compression)
    out = {}
    for key in image_keys:
        pixels = raw[key].astype(np.float32)
        pixels *= np.float32(1.0 / 255.0)
        out[key.replace("/image", "")] = pixels
    out.update({key.replace("/", "_"): raw[key] for key in int_keys})
    return out


def compare(name: str, path: Path, repeats: int) -> None:
    best = {"per_record": float("inf"), "load_numpy": float("inf")}
    readers = {"per_record": lambda: per_record(path), "load_numpy": lambda: pairgen.load_numpy(path, "train")}
    results = {}
    for _ in range(repeats):
        for key, fn in readers.items():
            start = time.perf_counter()
            results[key] = fn()
            best[key] = min(best[key], time.perf_counter() - start)
    want, got = results["per_record"], results["load_numpy"]
    assert sorted(want) == sorted(got)
    for key in want:
        assert want[key].dtype == got[key].dtype and np.array_equal(want[key], got[key]), key
    n = len(got["record_id"])
    print(f"{name}_records={n} per_record_records_per_s={n / best['per_record']:,.0f} "
          f"load_numpy_records_per_s={n / best['load_numpy']:,.0f} "
          f"per_record_seconds={best['per_record']:.3f} load_numpy_seconds={best['load_numpy']:.3f}")
    print(f"{name}_load_numpy_speedup={best['per_record'] / best['load_numpy']:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-png", action="store_true", help="time raw records only")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"machine_cores={os.cpu_count()} load_average_1m={load:.2f}", flush=True)
    raw = demo(Path("build") / "mnist-demo")
    compare("raw_28x28_pairs", raw, args.repeats)
    if not args.no_png:
        compare("png_28x28_pairs", png_copy(raw, Path("build") / "mnist-demo-png"), args.repeats)
    print(f"load_average_1m_after={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
