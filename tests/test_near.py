"""Near duplicates: signatures from the scan, the hashed search, reports and --dedupe near.

Real digits from datasets/mnist-5k; the copies are made with OpenCV the way copies happen
(JPEG at several qualities, resized down or up and back, brighter or darker, more or less
contrast). Every reported pair is compared with a brute-force search over all pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pairgen.cli import main
from pairgen.dataset import tables as mf
from pairgen.sampling.splits import split
from pairgen.scanning.catalog import scan
from pairgen.scanning.near import (
    DEFAULT_THRESHOLD,
    Pairs,
    near_groups,
    near_pairs,
    signature,
    signatures_of,
    thumbnail,
    unit_vectors,
)
from pairgen.spec.config import BuildConfig, SplitConfig

DIGITS = Path(__file__).resolve().parents[1] / "datasets" / "mnist-5k"
# Digits whose strokes differ enough that no two are near duplicates (a few plain '1's are).
CLASSES = ("3", "5", "8")
PER_CLASS = 12


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)


def _resized(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape
    small = cv2.resize(img, (round(w * factor), round(h * factor)),
                       interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


COPIES = {
    "jpeg30": lambda img: _jpeg(img, 30),
    "jpeg60": lambda img: _jpeg(img, 60),
    "jpeg90": lambda img: _jpeg(img, 90),
    "down0.75": lambda img: _resized(img, 0.75),
    "up1.5": lambda img: _resized(img, 1.5),
    "bright+25": lambda img: np.clip(img.astype(int) + 25, 0, 255).astype(np.uint8),
    "dark-25": lambda img: np.clip(img.astype(int) - 25, 0, 255).astype(np.uint8),
    "contrast0.8": lambda img: np.clip((img.astype(float) - 128) * 0.8 + 128, 0, 255).round().astype(np.uint8),
    "contrast1.2": lambda img: np.clip((img.astype(float) - 128) * 1.2 + 128, 0, 255).round().astype(np.uint8),
}


def _originals() -> dict[str, np.ndarray]:
    out = {}
    for name in CLASSES:
        for path in sorted((DIGITS / name).glob("*.png"))[:PER_CLASS]:
            out[f"{name}/{path.name}"] = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return out


@pytest.fixture(scope="module")
def copied_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Real digits plus one copy of each kind of some of them (copy path -> original path)."""
    root = tmp_path_factory.mktemp("near") / "digits"
    originals = _originals()
    for rel, img in originals.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img)
    copies = {}
    for k, (kind, make) in enumerate(COPIES.items()):
        rel = sorted(originals)[k * 3]
        copy_rel = f"{rel[:-4]}_{kind}.png"
        cv2.imwrite(str(root / copy_rel), make(originals[rel]))
        copies[copy_rel] = rel
    relabelled = sorted(originals)[1]  # a '3' saved again, as JPEG, under the '8' folder
    cv2.imwrite(str(root / "8" / "relabelled.png"), _jpeg(originals[relabelled], 70))
    copies["8/relabelled.png"] = relabelled
    return root, copies


def _brute_force(signatures: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    u = unit_vectors(signatures)
    sims = u @ u.T
    a, b = np.nonzero(np.triu(sims >= threshold, 1))
    return set(zip(a.tolist(), b.tolist()))


def test_copies_are_found_and_distinct_digits_are_not(copied_tree):
    root, copies = copied_tree
    catalog = scan(root, signatures=True)
    sig = catalog.signature_rows()
    assert sig is not None and sig.shape == (len(catalog.images), 256) and sig.dtype == np.int8
    found = near_pairs(sig)
    paths = catalog.images["path"].tolist()
    reported = {frozenset((paths[a], paths[b])) for a, b in zip(found.a, found.b)}
    assert reported == {frozenset(pair) for pair in copies.items()}  # every copy, nothing else
    assert set(zip(found.a.tolist(), found.b.tolist())) == _brute_force(sig, DEFAULT_THRESHOLD)
    assert (found.similarity >= DEFAULT_THRESHOLD).all()


def test_search_matches_brute_force_on_real_digits():
    """Lower the threshold until hundreds of real pairs qualify: the search finds exactly
    the pairs an all-pairs comparison finds (none missed, none false)."""
    paths = sorted(DIGITS.glob("*/*.png"))[::4]
    sig = np.stack([signature(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)) for p in paths])
    for threshold in (0.98, 0.99):
        truth = _brute_force(sig, threshold)
        found = near_pairs(sig, threshold)
        assert len(truth) > 20
        assert set(zip(found.a.tolist(), found.b.tolist())) == truth
        assert np.all(found.a < found.b)


def test_signature_ignores_brightness_and_contrast_and_is_zero_for_flat_images():
    img = cv2.imread(str(sorted((DIGITS / "3").glob("*.png"))[0]), cv2.IMREAD_GRAYSCALE)
    base = unit_vectors(signature(img)[None])[0]
    lifted = unit_vectors(signature((img // 2 + 60).astype(np.uint8))[None])[0]
    assert float(base @ lifted) > 0.999
    rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    assert np.array_equal(signature(rgb), signature(img))
    assert not signature(np.full((20, 30), 7, np.uint8)).any()
    assert len(near_pairs(np.zeros((5, 256), np.int8)).a) == 0


@pytest.mark.parametrize("rows", [2, 3, 9])
def test_tiny_sets_are_compared_whole(rows):
    img = cv2.imread(str(sorted((DIGITS / "3").glob("*.png"))[0]), cv2.IMREAD_GRAYSCALE)
    sig = np.stack([signature(np.roll(img, k, axis=1)) for k in range(rows)])
    sig[-1] = signature(_jpeg(img, 90))
    found = near_pairs(sig)
    assert set(zip(found.a.tolist(), found.b.tolist())) == _brute_force(sig, DEFAULT_THRESHOLD) == {(0, rows - 1)}


def _noisy_copies(img: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """``count`` copies of ``img``, each pixel moved by up to 3 grey levels (sensor noise)."""
    rng = np.random.default_rng(seed)
    return [np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def test_a_crowd_of_near_copies_around_the_centre_is_found_whole():
    """Nearly every image a copy of one: the copies sit at the centre of the hashing, where
    hyperplanes cut them at random, and every pair among them must still be found."""
    paths = sorted(DIGITS.glob("*/*.png"))
    base = cv2.imread(str(paths[0]), cv2.IMREAD_GRAYSCALE)
    others = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths[1::200]]
    sig = np.stack([signature(img) for img in _noisy_copies(base, 900, 0) + others])
    truth = _brute_force(sig, DEFAULT_THRESHOLD)
    assert len(truth) > 400_000
    found = near_pairs(sig)
    assert set(zip(found.a.tolist(), found.b.tolist())) == truth


def test_a_large_crowd_around_the_centre_is_searched_again_around_its_own(monkeypatch):
    """More rows near the centre than are compared pair by pair: they are searched again, and
    the copies at the heart of that search are compared whole."""
    import pairgen.scanning.near as near_module

    monkeypatch.setattr(near_module, "_CORE_ROWS", 100)
    test_a_crowd_of_near_copies_around_the_centre_is_found_whole()


def test_crowds_of_every_size_match_brute_force():
    """Clusters of 3, 40, 150 and 700 noisy copies of four digits among 1,000 distinct digits:
    buckets of every size (pair by pair, in padded batches, one at a time in blocks)."""
    paths = sorted(DIGITS.glob("*/*.png"))
    imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths[::5]]
    crowd = [copy for k, size in enumerate((3, 40, 150, 700)) for copy in _noisy_copies(imgs[k * 7], size, k)]
    sig = np.stack([signature(img) for img in imgs + crowd])
    truth = _brute_force(sig, DEFAULT_THRESHOLD)
    found = near_pairs(sig)
    assert len(truth) > 250_000
    assert set(zip(found.a.tolist(), found.b.tolist())) == truth
    a, b = found.a[:500], found.b[:500]
    x = sig.astype(np.int64)
    exact = (x[a] * x[b]).sum(axis=1) / np.sqrt((x[a] ** 2).sum(axis=1) * (x[b] ** 2).sum(axis=1))
    assert np.allclose(found.similarity[:500], exact, rtol=0, atol=1e-7)  # integer dot products, one rounding


def test_groups_are_transitive():
    pairs = Pairs(np.array([3, 0, 5]), np.array([4, 3, 6]), np.ones(3, np.float32))
    assert near_groups(pairs, 8).tolist() == [0, 1, 2, 0, 0, 5, 5, 7]


def test_signatures_survive_catalog_parquet_and_any_worker_count(copied_tree, tmp_path):
    from pairgen.workers.pool import Pool

    root, _ = copied_tree
    with Pool(workers=2) as pool:
        two = scan(root, signatures=True, pool=pool)
    with Pool(workers=1) as pool:
        one = scan(root, signatures=True, pool=pool)
    assert np.array_equal(one.signatures, two.signatures)
    mf.write_catalog(two.images, tmp_path / "catalog.parquet", two.signature_rows())
    mf.write_table(two.images, tmp_path / "plain.parquet", mf.CATALOG_COLUMNS)
    back = mf.read_table(tmp_path / "catalog.parquet")
    assert np.array_equal(mf.catalog_signatures(back), two.signature_rows())
    pd.testing.assert_frame_equal(back[list(mf.CATALOG_COLUMNS)], mf.read_table(tmp_path / "plain.parquet"))
    assert mf.catalog_signatures(mf.read_table(tmp_path / "plain.parquet")) is None


@pytest.mark.parametrize("by", ["image", "class"])
def test_dedupe_near_keeps_each_group_in_one_split(copied_tree, by):
    root, copies = copied_tree
    catalog = scan(root, signatures=True)
    for seed in range(20):  # the first seed whose plain split puts some copy apart from its original
        plain = split(catalog, by=by, fractions="train=0.5,test=0.5", rng=np.random.default_rng(seed))
        before = dict(zip(plain.images["path"], plain.images["split"]))
        if any(before[c] != before[o] for c, o in copies.items()):
            break
    else:
        pytest.fail("no seed splits a copy from its original")
    kept = split(catalog, by=by, fractions="train=0.5,test=0.5", rng=np.random.default_rng(seed), dedupe="near")
    where = dict(zip(kept.images["path"], kept.images["split"]))
    for copy, original in copies.items():
        assert copy not in where or where[copy] == where[original]
    if by == "image":  # moved, none lost
        assert len(kept.images) == len(catalog.images)
    else:  # a class's split cannot change: the copy is dropped, with the reason
        gone = kept.skipped[kept.skipped["reason"].str.startswith("near duplicate of")]
        assert set(gone["path"]) == {c for c, o in copies.items() if before[c] != before[o]}
    assert kept.images["image_id"].isin(catalog.images["image_id"]).all()


def test_threshold_is_fingerprinted_only_with_dedupe_near():
    assert "near_threshold" not in BuildConfig().to_dict(hashed=True)["split"]
    near = BuildConfig(split=SplitConfig(dedupe="near", near_threshold=0.99)).to_dict(hashed=True)["split"]
    assert near["near_threshold"] == 0.99 and near["dedupe"] == "near"
    assert SplitConfig(dedupe="exact").dedupe is True
    with pytest.raises(ValueError, match="split.dedupe must be a boolean.*near"):
        SplitConfig(dedupe="nearly")
    with pytest.raises(ValueError, match="near_threshold must be a cosine similarity"):
        SplitConfig(near_threshold=1.5)


def test_cli_scan_build_inspect_report_near_duplicates(copied_tree, tmp_path):
    root, copies = copied_tree
    runner = CliRunner()
    res = runner.invoke(main, ["scan", str(root), "--json"])
    assert res.exit_code == 0, res.output
    near = json.loads(res.output)["near_duplicates"]
    assert near["pairs"] == len(copies) and near["groups"] == len(copies) and near["cross_class_pairs"] == 1
    text = runner.invoke(main, ["scan", str(root)]).output
    assert f"near-duplicate groups: {len(copies)}" in text
    assert "near_duplicates" not in json.loads(runner.invoke(main, ["scan", str(root), "--json", "--no-near"]).output)

    args = ["build", "--src", str(root), "--kind", "images", "--splits", "train=0.5,test=0.5", "--seed", "3",
            "--workers", "1", "--quiet"]
    res = runner.invoke(main, [*args, "--out", str(tmp_path / "plain")])
    assert res.exit_code == 0, res.output
    assert "near duplicates across splits:" in res.output
    card = json.loads((tmp_path / "plain" / "dataset.json").read_text())
    crossing = card["near_duplicates"]["pairs"]
    assert crossing > 0 and card["near_duplicates"]["dedupe"] is False
    shown = runner.invoke(main, ["inspect", str(tmp_path / "plain")]).output
    assert f"near dups    {crossing} near-duplicate pair(s) across splits" in shown
    assert "test/train" in shown and "  ~~  " in shown
    res = runner.invoke(main, ["preview", str(tmp_path / "plain"), "--near", "--count", "3",
                               "--out", str(tmp_path / "near.png")])
    assert res.exit_code == 0 and res.output.startswith(f"{min(3, card['near_duplicates']['groups'])} near-duplicate")
    montage = cv2.imread(str(tmp_path / "near.png"))
    assert montage is not None and montage.shape[0] > 96 and montage.std() > 10  # rows of real digits

    res = runner.invoke(main, [*args, "--dedupe", "near", "--out", str(tmp_path / "near")])
    assert res.exit_code == 0, res.output
    info = json.loads(runner.invoke(main, ["inspect", str(tmp_path / "near"), "--json"]).output)
    assert info["near_duplicates"]["pairs"] == 0 and info["near_duplicates"]["dedupe"] is True
    again = json.loads(runner.invoke(main, ["inspect", str(tmp_path / "near"), "--json",
                                            "--near-threshold", "0.9"]).output)["near_duplicates"]
    assert again["threshold"] == 0.9
    assert runner.invoke(main, ["verify", str(tmp_path / "near")]).exit_code == 0


def test_diff_tells_re_encoded_and_copied_images_from_new_ones(tmp_path):
    """B re-encodes one of A's images in place, adds a resized copy of another and a new digit."""
    from pairgen.tools.inspection import diff, format_diff
    from pairgen.writing.builder import build

    root = tmp_path / "a"
    originals = _originals()
    for rel, img in originals.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img)
    config = BuildConfig().override({"source.path": str(root), "kind": "images", "build.workers": 1,
                                     "build.quiet": True, "split.fractions": {"train": 0.5, "test": 0.5}})
    build(config, tmp_path / "A")
    names = sorted(originals)
    cv2.imwrite(str(root / names[0]), _jpeg(originals[names[0]], 60))  # same path, new bytes, same look
    cv2.imwrite(str(root / names[1]), originals[names[30]])  # same path, another digit
    cv2.imwrite(str(root / "5" / "copy.png"), _resized(originals[names[5]], 0.75))
    other = cv2.imread(str(sorted((DIGITS / "5").glob("*.png"))[PER_CLASS]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(root / "5" / "new.png"), other)
    build(config.override({"source.path": str(root)}), tmp_path / "B")
    d = diff(tmp_path / "A", tmp_path / "B")
    assert (d["images"]["changed"], d["images"]["added"]) == (2, 2)
    near = d["near"]
    assert near["threshold"] == DEFAULT_THRESHOLD
    assert (near["changed_alike"], near["added_near_a"]) == (1, 1)
    assert near["examples"] == {"changed_alike": [names[0]], "added_near_a": [["5/copy.png", names[5]]]}
    text = format_diff(d)
    assert "1 of the 2 changed look the same" in text and "1 of the 2 added are near copies" in text
    assert f"  + 5/copy.png  ~ {names[5]}" in text
    from pairgen.tools.report import report

    page = report(tmp_path / "B", out=tmp_path / "report.html", against=tmp_path / "A").read_text()
    assert "1 of the 2 changed images look the same" in page and "5/copy.png" in page


def test_a_signature_depends_on_its_image_only_not_on_the_block():
    """Blocks differ with the number of workers: the same image must get the same bytes in a
    block of any size and mix of image sizes (the block's matrix products are exact)."""
    rng = np.random.default_rng(5)
    digits = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((DIGITS / "8").glob("*.png"))[:40]]
    images = digits + [_resized(img, 1.5) for img in digits[:6]] + [
        cv2.cvtColor(cv2.resize(img, (300, 170)), cv2.COLOR_GRAY2RGB) for img in digits[6:10]] + [
        rng.integers(0, 256, (9, 13), dtype=np.uint8), np.full((20, 30), 7, np.uint8)]
    alone = np.stack([signature(img) for img in images])
    together = signatures_of([thumbnail(img) for img in images])
    assert np.array_equal(together, alone)
    order = rng.permutation(len(images))
    for lo in range(0, len(images), 7):  # other blocks, shuffled
        rows = order[lo:lo + 7]
        assert np.array_equal(signatures_of([thumbnail(images[i]) for i in rows]), alone[rows])
    assert signatures_of([None, thumbnail(images[0])])[0].tolist() == [0] * 256  # undecodable: zeros
    # A scan block hands small images over as decoded, (h, w, 1) or (h, w, 3): the same bytes.
    decoded = [img[:, :, None] if k % 2 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) for k, img in enumerate(digits[:9])]
    assert np.array_equal(signatures_of(decoded + [None, thumbnail(images[-3])]),
                          np.concatenate([alone[:9], np.zeros((1, 256), np.int8), alone[-3:-2]]))
    # The exact map agrees with OpenCV's float resize and a blur of the thumbnail to a rounding step.
    img = digits[0]
    small = cv2.resize(img.astype(np.float32), (16, 16), interpolation=cv2.INTER_AREA)
    v = cv2.GaussianBlur(small, (9, 9), 1.0, borderType=cv2.BORDER_REFLECT).ravel()
    v -= v.mean()
    assert np.abs(np.rint(v * 127 / np.abs(v).max()) - alone[0]).max() <= 1
