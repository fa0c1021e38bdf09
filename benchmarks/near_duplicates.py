"""Near duplicates: recall of injected copies, false alarms, scan cost, search scale.

One run prints ``key=value`` lines, the ratios last:

Scan cost is measured twice: ``pairgen scan`` (read, sha256 and header only, no decode: the
signature adds a decode) and the build's scan (which decodes every image to check it anyway:
the signature reuses that decode).

1. **Quality** on the 5,000 real MNIST digits of datasets/mnist-5k: 1,000 of them get one
   copy each, made with OpenCV (JPEG quality 30-90, resize by x0.7-x1.5 and back, brightness
   +-25, contrast x0.8-x1.2; one family and its parameter drawn per copy) and put in another
   split. ``recall`` is the share of those cross-split (original, copy) pairs that the search
   puts in one group; ``false_alarm_rate`` is the number of pairs reported among the 5,000
   clean digits divided by 5,000. Both at the default threshold, plus a sweep of thresholds.
2. **Scan cost** on the largest real set at hand: the 70,000 Fashion-MNIST images when the
   Debian package ``dataset-fashion-mnist`` is installed (``/usr/share/datasets/fashion-mnist``,
   or ``--fashion DIR``), written once as 28x28 PNGs under build/bench-near-fashion; without
   it, the 5,000 digits written 14 times each with a small brightness change (70,000 files).
   ``pairgen.scan`` of the tree without signatures, then with signatures (same single read,
   one decode) plus the near-duplicate search, side by side, alternating, ``--repeat`` rounds
   (medians of the times and of each round's ratios); then one scan block read with and
   without signatures, alternating. The search's recall on the set: the share of every pair
   at the threshold (found by comparing all pairs) that the search finds.
3. **Search scale**: 1,000,000 synthetic signatures (1,000 smooth random prototypes plus
   noise, 1% of them near copies of others) searched in a fresh process (time and peak
   RSS), and 250,000 of them, alternating for ``--search-rounds`` rounds: the median of each
   round's 4x-images time ratio.

Targets (issue 22): recall >= 0.98, false alarms <= 0.2% of images, scan with signatures
and search <= 1.3x the scan without, 1M search <= 60 s and <= 2 GB, 4x images <= 6x time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pairgen.scanning import near  # noqa: E402
from pairgen.scanning.catalog import scan  # noqa: E402
from pairgen.spec.config import ImageConfig  # noqa: E402

DIGITS = ROOT / "datasets" / "mnist-5k"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def transform(img: np.ndarray, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """One copy of ``img`` as it happens in the wild: one family, its parameter drawn."""
    h, w = img.shape
    kind = int(rng.integers(4))
    if kind == 0:
        q = int(rng.integers(30, 91))
        buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1]
        return f"jpeg{q}", cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if kind == 1:
        f = float(rng.uniform(0.7, 1.5))
        small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                           interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        return f"resize{f:.2f}", cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if kind == 2:
        d = int(rng.integers(-25, 26))
        return f"bright{d:+d}", np.clip(img.astype(np.int16) + d, 0, 255).astype(np.uint8)
    c = float(rng.uniform(0.8, 1.2))
    return f"contrast{c:.2f}", np.clip((img.astype(np.float32) - 128) * c + 128, 0, 255).round().astype(np.uint8)


def quality(copies: int, seed: int) -> dict[str, object]:
    paths = sorted(DIGITS.glob("*/*.png"))
    imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    n = len(imgs)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(n, copies, replace=False))
    made = [transform(imgs[i], rng) for i in chosen]
    sig = np.stack([near.signature(i) for i in imgs] + [near.signature(img) for _, img in made])
    out: dict[str, object] = {"quality_clean_images": n, "quality_injected_copies": copies}
    for threshold in sorted({0.995, 0.997, 0.9975, near.DEFAULT_THRESHOLD, 0.9985, 0.999}):
        found = near.near_pairs(sig, threshold)
        group = near.near_groups(found, len(sig))
        caught = group[chosen] == group[n + np.arange(copies)]
        clean = int(((found.a < n) & (found.b < n)).sum())
        tag = "" if threshold == near.DEFAULT_THRESHOLD else f"_at_{threshold:g}"
        out[f"recall{tag}"] = round(float(caught.mean()), 4)
        out[f"false_alarm_pairs{tag}"] = clean
        out[f"false_alarm_rate{tag}"] = round(clean / n, 5)
        if not tag:
            kinds: dict[str, list[bool]] = {}
            for (name, _), hit in zip(made, caught):
                family = name.rstrip("0123456789.+-")
                kinds.setdefault(family, []).append(bool(hit))
            for family, hits in sorted(kinds.items()):
                out[f"recall_{family}"] = round(float(np.mean(hits)), 4)
            missed = [name for (name, _), hit in zip(made, caught) if not hit]
            out["missed_copies"] = ",".join(missed[:20]) or "-"
    out["threshold"] = near.DEFAULT_THRESHOLD
    return out


def _fashion_images(folder: Path) -> np.ndarray | None:
    files = ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    if not all((folder / f).exists() for f in files):
        return None
    return np.concatenate([np.frombuffer(gzip.open(folder / f).read(), np.uint8, offset=16).reshape(-1, 28, 28)
                           for f in files])


def scan_tree(cache: Path, fashion: Path) -> tuple[Path, str]:
    """A 70,000-image tree of real images (written once)."""
    images = _fashion_images(fashion)
    name = "fashion-mnist" if images is not None else "mnist-5k-x14"
    root = cache / name
    if (root / ".complete").exists():
        return root, name
    if images is None:
        base = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(DIGITS.glob("*/*.png"))]
        images = np.stack([np.clip(img.astype(np.int16) + k, 0, 255).astype(np.uint8)
                           for k in range(14) for img in base])
    for i, img in enumerate(images):
        folder = root / f"c{i % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:05d}.png"), img)
    (root / ".complete").write_text("")
    return root, name


def scan_cost(root: Path, repeat: int) -> dict[str, object]:
    """Scan (read, sha256, header) and build scan (also the decode check), each without and
    with signatures plus the search; side by side, alternating, ``repeat`` rounds: medians of
    the times and of each round's ratios, and the load average after each round."""
    check = ImageConfig(channels=1)
    times: dict[str, list[float]] = {"plain": [], "plain_near": [], "build": [], "build_near": [], "search": []}
    loads = []
    for _ in range(repeat):
        for key, kwargs in (("plain", {}), ("plain_near", {"signatures": True}), ("build", {"check": check}),
                            ("build_near", {"check": check, "signatures": True})):
            t = time.perf_counter()
            catalog = scan(root, **kwargs)
            if catalog.signatures is not None:
                s = time.perf_counter()
                report = near.near_report(catalog.images, catalog.signature_rows(), near.DEFAULT_THRESHOLD)
                times["search"].append(time.perf_counter() - s)
            times[key].append(time.perf_counter() - t)
        loads.append(round(os.getloadavg()[0], 1))
    recall, truth = recall_vs_exhaustive(catalog.signature_rows())
    search = np.array(times["search"]).reshape(repeat, 2)[:, 1]  # the build scan's search
    build, build_near = np.array(times["build"]), np.array(times["build_near"])
    plain, plain_near = np.array(times["plain"]), np.array(times["plain_near"])
    median = {k: float(np.median(v)) for k, v in times.items()}
    return {"scan_images": len(catalog.images), "scan_near_pairs": report["pairs"],
            "scan_near_groups": report["groups"], "scan_rounds": repeat,
            "scan_load_average_1m_per_round": ",".join(map(str, loads)),
            "scan_exhaustive_pairs": truth, "scan_search_recall_vs_exhaustive": recall,
            "search_seconds": round(median["search"], 2),
            **{f"seconds_{k}": round(v, 2) for k, v in median.items() if k != "search"},
            "build_scan_time_ratio": round(float(np.median(build_near / build)), 3),
            "build_scan_time_ratio_without_search": round(float(np.median((build_near - search) / build)), 3),
            "plain_scan_time_ratio": round(float(np.median(plain_near / plain)), 3),
            "plain_scan_time_ratio_without_search": round(
                float(np.median((plain_near - np.array(times["search"]).reshape(repeat, 2)[:, 0]) / plain)), 3),
            **block_cost(root, check)}


def exhaustive_pairs(sig: np.ndarray, threshold: float, block: int = 4096) -> set[tuple[int, int]]:
    """Every pair at or above ``threshold``, from all-pairs products (the int8 values' dot
    products and squared norms are integers below 2**24, exact in float32)."""
    x = sig.astype(np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x).astype(np.float64))
    norm[norm == 0] = np.inf  # constant images: never near duplicates
    out: set[tuple[int, int]] = set()
    for lo in range(0, len(x), block):
        for hi in range(lo, len(x), block):
            cos = (x[lo:lo + block] @ x[hi:hi + block].T) / np.outer(norm[lo:lo + block], norm[hi:hi + block])
            a, b = np.nonzero(cos >= threshold)
            a, b = a + lo, b + hi
            out.update(zip(a[a < b].tolist(), b[a < b].tolist()))
    return out


def recall_vs_exhaustive(sig: np.ndarray) -> tuple[float, int]:
    """The share of all pairs at the default threshold (found by comparing every pair) that
    the search finds, and how many there are."""
    truth = exhaustive_pairs(sig, near.DEFAULT_THRESHOLD)
    found = near.near_pairs(sig)
    hits = len(truth & set(zip(found.a.tolist(), found.b.tolist())))
    return round(hits / max(len(truth), 1), 4), len(truth)


def block_cost(root: Path, check: ImageConfig, rounds: int = 7) -> dict[str, object]:
    """One scan block (512 files) read in this process: microseconds per image with the decode
    check, without and with the signature, alternating; medians."""
    from pairgen.scanning.blocks import read_block
    from pairgen.scanning.labels import walk_source
    from pairgen.scanning.options import ScanOptions

    task = next(iter(walk_source(root, ScanOptions.of("classes"), check).tasks))
    us: dict[str, list[float]] = {"check": [], "check_signature": []}
    for _ in range(rounds):
        for key, sig in (("check", False), ("check_signature", True)):
            t = time.perf_counter()
            block = read_block(task._replace(signatures=sig))
            us[key].append((time.perf_counter() - t) * 1e6 / len(block.sha256))
    check_us, sig_us = np.array(us["check"]), np.array(us["check_signature"])
    return {"block_us_per_image_check": round(float(np.median(check_us)), 1),
            "block_us_per_image_check_signature": round(float(np.median(sig_us)), 1),
            "block_signature_time_ratio": round(float(np.median(sig_us / check_us)), 3),
            "block_load_average_1m": round(os.getloadavg()[0], 1)}


CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
from near_duplicates import synthetic
from pairgen.scanning import near
n = {n}
sig = synthetic(n)
start = time.perf_counter()
found = near.near_pairs(sig)
seconds = time.perf_counter() - start
k = n // 100
pairs = set(zip(found.a.tolist(), found.b.tolist()))
u, v = near.unit_vectors(sig[:k]), near.unit_vectors(sig[n - k:])
above = (u * v).sum(axis=1) >= near.DEFAULT_THRESHOLD  # injected copies that the threshold admits
hits = [(i, n - k + i) in pairs for i in range(k)]
recall = sum(h for h, a in zip(hits, above) if a) / max(int(above.sum()), 1)
print(json.dumps({{"seconds": seconds, "pairs": len(found.a), "recall": recall, "admitted": int(above.sum()),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    """``n`` int8 signatures: 1,000 smooth random prototypes plus smooth noise (clustered, like
    real images), the last 1% near copies of the first 1%."""
    rng = np.random.default_rng(seed)
    protos = _smooth(rng.standard_normal((1000, 16, 16)).astype(np.float32), 1.5)
    out = np.empty((n, 256), np.int8)
    for lo in range(0, n, 1 << 16):
        m = min(1 << 16, n - lo)
        v = protos[rng.integers(0, 1000, m)] + 0.5 * _smooth(rng.standard_normal((m, 16, 16)).astype(np.float32), 1.0)
        v -= v.mean(axis=1, keepdims=True)
        out[lo:lo + m] = np.rint(v * (127 / np.abs(v).max(axis=1, keepdims=True)))
    k = n // 100
    copies = out[:k].astype(np.float32) + rng.normal(0, 2.0, (k, 256)).astype(np.float32)
    out[n - k:] = np.clip(np.rint(copies), -127, 127)
    return out


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """``(m, 16, 16)`` -> ``(m, 256)``: each 16x16 plane blurred by a Gaussian (separable)."""
    k = np.exp(-0.5 * ((np.arange(16)[:, None] - np.arange(16)[None, :]) / sigma) ** 2).astype(np.float32)
    k /= k.sum(axis=1, keepdims=True)
    return np.matmul(np.matmul(k, x), k.T).reshape(len(x), 256)


def search_scale(n: int) -> dict[str, float]:
    code = CHILD.format(root=str(ROOT), bench=str(Path(__file__).resolve().parent), n=n)
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fashion", type=Path, default=FASHION, help="Fashion-MNIST idx files (Debian package).")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "bench-near")
    parser.add_argument("--repeat", type=int, default=3, help="Alternating scan rounds (medians).")
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--search-rounds", type=int, default=3, help="Alternating 250k / 1M search rounds.")
    parser.add_argument("--parts", default="quality,scan,search", help="Which parts to run (comma-separated).")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"machine_cores={os.cpu_count()} load_average_1m={os.getloadavg()[0]:.2f}")
    if "quality" in parts:
        _show(quality(args.copies, args.seed))
    if "scan" in parts:
        root, name = scan_tree(args.cache, args.fashion)
        _show({"scan_set": name, **scan_cost(root, args.repeat)})
    if "search" not in parts:
        return
    rounds: list[tuple[dict[str, float], dict[str, float], float]] = []
    for _ in range(args.search_rounds):  # alternating, so both sizes see the same load
        quarter = search_scale(args.million // 4)
        big = search_scale(args.million)
        rounds.append((quarter, big, os.getloadavg()[0]))
    big_s = [b["seconds"] for _, b, _ in rounds]
    quarter_s = [q["seconds"] for q, _, _ in rounds]
    big = rounds[0][1]
    _show({"search_rounds": len(rounds),
           "search_load_average_1m_per_round": ",".join(f"{load:.1f}" for _, _, load in rounds),
           "search_1m_seconds_per_round": ",".join(f"{s:.1f}" for s in big_s),
           "search_250k_seconds_per_round": ",".join(f"{s:.1f}" for s in quarter_s),
           "search_1m_seconds": round(float(np.median(big_s)), 1),
           "search_1m_peak_rss_mb": round(max(b["peak_rss_mb"] for _, b, _ in rounds)),
           "search_1m_pairs": big["pairs"], "search_1m_injected_above_threshold": big["admitted"],
           "search_1m_recall_of_those": round(big["recall"], 4),
           "search_250k_seconds": round(float(np.median(quarter_s)), 1),
           "search_4x_time_ratio": round(float(np.median(np.array(big_s) / np.array(quarter_s))), 2)})


def _show(results: dict[str, object]) -> None:
    for key, value in results.items():
        print(f"{key}={value}", flush=True)


if __name__ == "__main__":
    main()
