"""Build throughput vs the per-core floor, and peak memory of a 200,000-pair build.

1. Writes a real-sized synthetic tree once (20,000 JPEGs of 105x105 in 1,000 classes, shapes on
   noise; cached under build/bench-src) and builds per-image pairs with the Omniglot jitter
   (resize 130 -> random crop 105 -> 32x32, flip) encoded as PNG, with ``--workers N``.
2. Measures the floor in the same run: decode + jitter + encode of the same images in one
   plain loop on one core, no pairgen orchestration.
3. Builds 200,000 raw 28x28 pairs from the shipped MNIST digits in a child process and reports
   the peak RSS of that process and of its worker processes.

Prints ``build_efficiency=<build images/s> / (<floor images/s per core> x <workers>)`` last.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pairgen.codec import images as imageio  # noqa: E402
from pairgen.rendering.augment import transform_record  # noqa: E402
from pairgen.spec.config import BuildConfig  # noqa: E402
from pairgen.writing.builder import build  # noqa: E402

CLASSES, PER_CLASS, SIZE = 1000, 20, 105
JITTER = {"augment.enabled": True, "augment.resize": [130, 130], "augment.crop": [105, 105],
          "augment.flip": True, "image.size": [32, 32], "image.encoding": "png", "image.channels": 1}


def make_tree(root: Path) -> Path:
    """Write the synthetic source once; reuse it when already complete."""
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        folder = root / f"class_{c:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            img = rng.integers(0, 64, (SIZE, SIZE), dtype=np.uint8)
            center = tuple(int(v) for v in rng.integers(20, 85, 2))
            cv2.circle(img, center, int(rng.integers(10, 30)), 255, -1)
            cv2.putText(img, str(c % 10), (30, 70), cv2.FONT_HERSHEY_SIMPLEX, 2, 200, 3)
            cv2.imwrite(str(folder / f"{i:02d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    done.touch()
    return root


def floor_images_per_s(root: Path, cfg: BuildConfig, n: int = 4000) -> float:
    """Decode + jitter + encode in one plain loop on this core (the per-core ceiling)."""
    files = sorted(root.rglob("*.jpg"))[:n]
    blobs = [f.read_bytes() for f in files]
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for data in blobs:
        img = imageio.decode(data, channels=1)
        out = transform_record([img], image=cfg.image, augment=cfg.augment, rng=rng)[0]
        imageio.encode(out, "png")
    return len(blobs) / (time.perf_counter() - start)


def rss_child(out: Path) -> dict:
    """Build 200,000 raw MNIST pairs in a child process; report its and its workers' peak RSS."""
    code = f"""
import json, resource, sys
sys.path.insert(0, {str(ROOT)!r})
from pairgen.writing.builder import build
from pairgen.spec.config import BuildConfig
cfg = BuildConfig.from_toml({str(ROOT / 'pipelines' / 'mnist-demo.toml')!r}).override(
    {{"sample.strategy": "balanced", "sample.num_records": 200000, "build.overwrite": True}})
card = build(cfg, {str(out)!r})
print(json.dumps({{"records": sum(s["records"] for s in card["splits"].values()),
    "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "workers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    workers = os.cpu_count() or 1
    print(f"machine_cores={workers} load_average_1m={os.getloadavg()[0]:.2f}")
    src = make_tree(ROOT / "build" / "bench-src")
    cfg = BuildConfig().override({"source.path": str(src), "build.workers": workers,
                                  "build.overwrite": True, **JITTER})
    start = time.perf_counter()
    card = build(cfg, ROOT / "build" / "bench-build")
    seconds = time.perf_counter() - start
    records = sum(s["records"] for s in card["splits"].values())
    images = 2 * records
    build_ips = images / seconds
    floor = floor_images_per_s(src, cfg)
    print(f"source_images={card['source']['images']} records={records} record_images={images} workers={workers}")
    print(f"build_seconds={seconds:.2f} build_records_per_s={records / seconds:,.0f} build_images_per_s={build_ips:,.0f}")
    print(f"floor_images_per_s_per_core={floor:,.0f} (decode jpeg 105x105 + jitter + png 32x32, one loop)")
    rss = rss_child(ROOT / "build" / "bench-rss")
    print(f"rss_build_records={rss['records']} rss_main_mb={rss['self_mb']:.0f} rss_worker_max_mb={rss['workers_mb']:.0f}")
    print(f"bench_self_peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    print(f"build_efficiency={build_ips / (floor * workers):.2f}")


if __name__ == "__main__":
    main()
