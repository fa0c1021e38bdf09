"""A build sized past memory is refused before it samples (issue 20, case 3)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import image_tree

from pairgen.cli import main
from pairgen.sampling import sample_pairs, sample_triplets
from pairgen.sampling.sizing import planned_records
from pairgen.spec.config import Kind, SampleConfig
from pairgen.workers.memory import available_memory


def test_balanced_billion_records_is_refused_from_the_config(tmp_path: Path) -> None:
    src = image_tree(tmp_path, classes=4, per_class=30, size=12, channels=1)
    out = tmp_path / "ds"
    start = time.monotonic()
    res = CliRunner().invoke(main, ["build", "--src", str(src), "--strategy", "balanced",
                                    "--num-records", "1000000000", "--out", str(out), "--quiet"])
    assert res.exit_code == 1, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "1,000,000,000 records" in lines[0] and "GiB of memory" in lines[0]
    assert "Lower --num-records" in lines[0]
    assert time.monotonic() - start < 30  # refused from the config: nothing was sampled
    assert not out.exists() and not any(p.name.startswith(".ds") for p in tmp_path.iterdir())


def test_refused_under_a_memory_limit_after_the_scan(tmp_path: Path) -> None:
    """Under ``ulimit -v`` the per-image count (known once the images are) is refused in one line."""
    src = image_tree(tmp_path, classes=4, per_class=50, size=12, channels=1)
    out = tmp_path / "ds"
    limit = 3 * 2**30  # 200 images x 100,001 pairs x 160 B = 3.2 GB: more than the whole limit

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    res = subprocess.run([sys.executable, "-m", "pairgen", "build", "--src", str(src), "--out", str(out),
                          "--positives-per-image", "100000", "--manifest-only", "--quiet", "--workers", "1"],
                         preexec_fn=cap, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "20,000,200 records" in lines[0], res.stderr
    assert "Lower --positives-per-image / --negatives-per-image" in lines[0]
    assert "Traceback" not in res.stderr and not out.exists()


def test_planned_records_match_what_the_samplers_draw() -> None:
    import pandas as pd

    counts = [1, 2, 5, 9, 3]
    classes = np.repeat(np.arange(len(counts)), counts)
    images = pd.DataFrame({"image_id": np.arange(classes.size), "class_id": classes, "split": "train"})
    sizes = [np.array(counts)]
    for kind, fn, strategy, params in [
        (Kind.PAIRS, sample_pairs, "per-class", {"per_class": 3}),
        (Kind.PAIRS, sample_pairs, "exhaustive", {"max_pairs_per_class": 4}),
        (Kind.PAIRS, sample_pairs, "balanced", {"num_records": 77}),
        (Kind.TRIPLETS, sample_triplets, "balanced", {"num_records": 33}),
    ]:
        drawn = len(fn(images, strategy=strategy, rng=np.random.default_rng(0), **params))
        planned = planned_records(kind, SampleConfig(strategy=strategy, **params), sizes)
        assert planned is not None and drawn <= planned
        if strategy != "per-class":  # per-class plans positives for single-image classes too
            assert drawn == planned
    # per-image: exact when every class has 2+ images, an upper bound otherwise.
    full = images[images["class_id"] > 0]
    drawn = len(sample_pairs(full, strategy="per-image", rng=np.random.default_rng(0), positives_per_image=2,
                             negatives_per_image=3))
    assert drawn == planned_records(Kind.PAIRS, SampleConfig(positives_per_image=2, negatives_per_image=3),
                                    [np.array(counts[1:])])


def test_available_memory_is_bounded_by_the_machine() -> None:
    room = available_memory()
    assert room is not None and 0 < room
    total = resource.getpagesize() * __import__("os").sysconf("SC_PHYS_PAGES")
    assert room <= total
