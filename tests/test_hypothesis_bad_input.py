"""Random bytes, random trees and random pipeline values through scan -> build -> load.

Whatever comes in, the outcome is either a finished dataset that verifies and loads, or one
line of :class:`PairgenError` with nothing that looks like a finished dataset left behind:
never a traceback, never a hang.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import pairgen
from pairgen.errors import PairgenError
from pairgen.scanning.catalog import scan, summarize
from pairgen.spec.config import BuildConfig
from pairgen.tools.verify import verify
from pairgen.writing.builder import build


def _valid_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for ext, shape in ((".png", (8, 8)), (".png", (8, 8, 3)), (".jpg", (8, 8, 3)), (".bmp", (6, 9)), (".png", (5, 7))):
        out.append(cv2.imencode(ext, rng.integers(0, 256, shape, dtype=np.uint8))[1].tobytes())
    return out


VALID = _valid_images()

# Folder and file names: anything a POSIX file system takes (no '/' or NUL), unicode included.
name_text = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
                    min_size=1, max_size=12).filter(lambda n: n not in (".", "..") and len(n.encode()) < 60)
plain_text = st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=10)
class_name = st.one_of(plain_text, plain_text, plain_text, name_text)
good_image = st.sampled_from(VALID)
file_bytes = st.one_of(
    good_image, good_image, good_image, good_image, good_image, good_image, good_image, good_image,
    st.binary(max_size=64),
    st.tuples(good_image, st.integers(0, 80)).map(lambda t: t[0][: t[1]]),  # truncated
    good_image.map(lambda d: d[:8] + b"\x00" * 16 + d[24:]),  # valid magic, damaged header
)
file_entry = st.tuples(name_text, st.sampled_from([".png", ".png", ".png", ".jpg", ".bmp", ".txt", ""]), file_bytes)
# Each class: a few good images plus random extra files (random bytes, truncated or damaged images).
tree = st.lists(st.tuples(class_name, st.integers(2, 6), st.lists(file_entry, max_size=4)), min_size=1, max_size=4)

junk = st.one_of(st.text(max_size=6), st.integers(-3, 10**6), st.floats(allow_nan=True), st.booleans(),
                 st.lists(st.integers(-1, 40), max_size=3), st.none(),
                 st.dictionaries(name_text, st.one_of(st.floats(0, 1), st.text(max_size=3)), max_size=2))
GOOD = {
    "kind": st.sampled_from(["pairs", "triplets"]),
    "sample.strategy": st.sampled_from(["per-image", "balanced", "per-image", "balanced", "per-class"]),
    "sample.num_records": st.integers(1, 50),
    "sample.unique": st.booleans(),
    "split.by": st.sampled_from(["image", "class"]),
    "split.fractions": st.sampled_from([{"train": 1.0}, {"train": 0.5, "test": 0.5},
                                        {"train": 0.8, "val": 0.1, "test": 0.1}]),
    "split.dedupe": st.booleans(),
    "image.size": st.one_of(st.lists(st.integers(1, 12), min_size=2, max_size=2), st.sampled_from(["6x6", "8x8"])),
    "image.channels": st.sampled_from([1, 3]),
    "image.encoding": st.sampled_from(["raw", "png", "jpeg"]),
    "augment.enabled": st.booleans(),
    "augment.flip": st.booleans(),
    "augment.crop": st.lists(st.integers(1, 8), min_size=2, max_size=2),
    "augment.copies": st.integers(1, 3),
    "seed": st.integers(0, 2**32),
    "source.min_per_class": st.integers(2, 3),
}
bad_values = st.one_of(st.just([]), st.just([]),
                       st.lists(st.tuples(st.sampled_from(sorted(GOOD)), junk), min_size=1, max_size=2))
pipeline = st.tuples(st.fixed_dictionaries({}, optional=GOOD), bad_values).map(lambda t: {**t[0], **dict(t[1])})


def _write_tree(root: Path, classes: list) -> None:
    root.mkdir()
    for k, (class_name, good, extra) in enumerate(classes):
        folder = root / class_name
        try:
            folder.mkdir(exist_ok=True)
        except OSError:  # a name the file system refuses (too long in bytes, ...)
            continue
        files = [(f"good{k}", ".png", VALID[(k + j) % len(VALID)]) for j in range(good)] + extra
        for i, (stem, ext, data) in enumerate(files):
            try:
                (folder / f"{i}{stem}{ext}").write_bytes(data)  # numbered: random stems often repeat
            except OSError:
                continue


def _one_line(exc: PairgenError) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text


def _check_finished(out: Path, card: dict) -> None:
    assert (out / "dataset.json").is_file()
    report = verify(out)
    assert report.ok, [str(p) for p in report.problems]
    for split, counts in card["splits"].items():
        arrays = pairgen.load_numpy(out, split)
        assert len(arrays["record_id"]) == counts["records"]
        if card["kind"] == "pairs" and counts["records"]:
            same = arrays["a_class"] == arrays["b_class"]
            assert np.array_equal(same.astype(np.float32), arrays["label"])


class _Hang(Exception):
    pass


def _alarm(signum, frame):  # pragma: no cover - only when something hangs
    raise _Hang("scan -> build -> load took over 60 s on one example")


@pytest.fixture
def no_hang():
    old = signal.signal(signal.SIGALRM, _alarm)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(classes=tree, overrides=pipeline)
@example(classes=[("a", 4, []), ("b", 4, [("x", ".png", b"")]), ("c\x07", 3, [])],
         overrides={"kind": "triplets", "image.channels": 3, "augment.enabled": True, "augment.flip": True})
@example(classes=[("a", 4, []), ("b", 4, [])], overrides={"augment.enabled": "false", "image.size": [9000, 9000]})
@example(classes=[], overrides={})  # an empty source
def test_random_input_gives_a_dataset_or_one_line_error(no_hang, classes: list, overrides: dict) -> None:
    signal.alarm(60)
    with tempfile.TemporaryDirectory(prefix="pairgen-hyp-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "ds"
        _write_tree(src, classes)
        try:
            summarize(scan(src))
        except PairgenError as exc:
            _one_line(exc)
        base = {"source.path": str(src), "build.workers": 1, "build.quiet": True, "image.size": [8, 8],
                "source.min_per_class": 2, "split.fractions": {"train": 1.0}}
        try:
            card = build(BuildConfig().override({**base, **overrides}), out)
        except PairgenError as exc:
            event(f"error: {type(exc).__name__}")
            _one_line(exc)
            assert not (out / "dataset.json").exists()
            assert sorted(os.listdir(tmp)) == ["src"]  # nothing half-written beside it
        else:
            event("finished dataset")
            _check_finished(out, card)
    signal.alarm(0)
