"""Every read path on splits of several shards, of even and uneven sizes, each larger than any
block the readers use internally (256 records for tf.data's unbatched parse, 256 for evaluate).

The source images are unique 28x28 gray PNGs and the records hold them unchanged (raw, no
augmentation), so every image a reader yields can be traced back to its source image: the
tests assert that the ids, classes, labels and images of each record belong to each other.

``uneven`` datasets are the built ones with the train split rewritten into shards of about
42%, 35% and 23% of its records (the card updated to match), as a dataset built with other
shard settings would hold them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import image_tree, reshard

from pairgen.codec.images import decode
from pairgen.dataset.card import read_json as read_card
from pairgen.dataset.card import write_card
from pairgen.reading.arrays import load_numpy
from pairgen.spec.config import BuildConfig
from pairgen.writing.builder import build

tf = pytest.importorskip("tensorflow")

from pairgen.reading.tfdata import load, load_arrays  # noqa: E402

ROLES = {"pairs": ("a", "b"), "triplets": ("anchor", "positive", "negative")}
TINY = {"epochs": 1, "width": 4, "embedding_dim": 8, "batch_size": 32}


def _config(src: Path, kind: str) -> BuildConfig:
    return BuildConfig().override({
        "source.path": str(src), "kind": kind, "image.size": [28, 28], "image.channels": 1,
        "sample.positives_per_image": 4 if kind == "triplets" else 2,
        "sample.negatives_per_image": 2, "shards.records_per_shard": 520,
        "build.workers": 1, "build.quiet": True})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("multishard")
    src = image_tree(base, classes=12, per_class=40, size=28, channels=1)
    out: dict[str, object] = {"src": src}
    for kind in ("pairs", "triplets"):
        build(_config(src, kind), base / kind)
        out[kind] = base / kind
        out[f"{kind}-uneven"] = reshard(base / kind, base / f"{kind}-uneven", "train", (0.42, 0.35, 0.23))
    catalog = pd.read_parquet(base / "pairs" / "catalog.parquet").sort_values("image_id")
    pixels = np.stack([decode((src / p).read_bytes(), channels=1) for p in catalog["path"]])
    out["pixels"], out["classes"] = pixels, catalog["class_id"].to_numpy()
    out["lookup"] = {img.tobytes(): i for i, img in enumerate(pixels)}
    assert len(out["lookup"]) == len(pixels)  # every source image is unique
    return out


DATASETS = ["pairs", "pairs-uneven", "triplets", "triplets-uneven"]


def _ids_of(data: dict, images: np.ndarray) -> np.ndarray:
    """The source image id of every image (uint8 or float in [0, 1]); fails on an unknown image."""
    if images.dtype != np.uint8:
        images = np.rint(images * 255.0).astype(np.uint8)
    return np.array([data["lookup"][img.tobytes()] for img in images])


def _shard_sizes(path: Path, split: str = "train") -> list[int]:
    return [int(e["records"]) for e in read_card(path)["shards"][split]]


def test_fixture_splits_have_several_shards_larger_than_the_blocks(data) -> None:
    for name in DATASETS:
        sizes = _shard_sizes(data[name])
        assert len(sizes) == 3 and min(sizes) > 256, (name, sizes)
    assert len(set(_shard_sizes(data["pairs-uneven"]))) == 3


def _check_records(data: dict, kind: str, manifest: pd.DataFrame, images: dict[str, np.ndarray],
                   ids: dict[str, np.ndarray]) -> None:
    """Images, ids, classes and labels of records (any order) belong to each other and to the manifest."""
    rid = ids["record_id"]
    assert sorted(rid.tolist()) == list(range(len(manifest)))
    rows = manifest.set_index("record_id").loc[rid]
    for role in ROLES[kind]:
        assert (_ids_of(data, images[role]) == ids[f"{role}/id"]).all(), role
        assert (ids[f"{role}/id"] == rows[f"{role}_id"].to_numpy()).all(), role
        assert (ids[f"{role}/class"] == data["classes"][ids[f"{role}/id"]]).all(), role
    if kind == "pairs":
        same = ids["a/class"] == ids["b/class"]
        assert (ids["label"] == same).all() and (rows["label"].to_numpy() == ids["label"]).all()
    else:
        assert (ids["anchor/class"] == ids["positive/class"]).all()
        assert (ids["anchor/class"] != ids["negative/class"]).all()


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("shuffle, batch_size", [(False, None), (False, 100), (True, None), (True, 64)])
def test_load_with_ids_keeps_ids_with_their_images(data, name: str, shuffle: bool, batch_size) -> None:
    kind = name.split("-")[0]
    ds = load(data[name], "train", batch_size=batch_size, shuffle=shuffle, seed=5, normalize=False, with_ids=True)
    if batch_size is None:
        ds = ds.batch(1000)
    images: dict[str, list] = {r: [] for r in ROLES[kind]}
    ids: dict[str, list] = {}
    for element in ds.as_numpy_iterator():
        pictures = element[0] if kind == "pairs" else element[:3]
        for role, batch in zip(ROLES[kind], pictures):
            images[role].append(batch)
        for key, value in element[-1].items():
            ids.setdefault(key, []).append(value)
        if kind == "pairs":
            assert (element[1] == element[-1]["label"]).all()
    manifest = pd.read_parquet(data[name] / "manifests" / "train.parquet")
    _check_records(data, kind, manifest, {k: np.concatenate(v) for k, v in images.items()},
                   {k: np.concatenate(v) for k, v in ids.items()})


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_load_labels_and_images_belong_together(data, name: str, shuffle: bool) -> None:
    kind = name.split("-")[0]
    seen = 0
    for element in load(data[name], "train", batch_size=128, shuffle=shuffle, seed=1).as_numpy_iterator():
        if kind == "pairs":
            (a, b), label = element
            same = data["classes"][_ids_of(data, a)] == data["classes"][_ids_of(data, b)]
            assert (label == same).all()
        else:
            cls = [data["classes"][_ids_of(data, x)] for x in element]
            assert (cls[0] == cls[1]).all() and (cls[0] != cls[2]).all()
        seen += len(element[1])
    assert seen == sum(_shard_sizes(data[name]))


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("reader", ["load_numpy", "load_arrays"])
def test_array_readers_return_manifest_order(data, name: str, reader: str) -> None:
    kind = name.split("-")[0]
    arrays = (load_numpy if reader == "load_numpy" else load_arrays)(data[name], "train", normalize=False)
    manifest = pd.read_parquet(data[name] / "manifests" / "train.parquet")
    assert (arrays["record_id"] == np.arange(len(manifest))).all()
    ids = {k if k in ("record_id", "label") else "/".join(k.rsplit("_", 1)): v
           for k, v in arrays.items() if k not in ROLES[kind]}
    _check_records(data, kind, manifest, {r: arrays[r] for r in ROLES[kind]}, ids)


@pytest.mark.parametrize("name", ["triplets", "triplets-uneven"])
@pytest.mark.parametrize("mining", ["batch-hard", "batch-semi-hard", "none"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_trainer_mining_classes_belong_to_their_images(data, name: str, mining: str, shuffle: bool) -> None:
    from pairgen.train.data import fit_batches, open_dataset

    info = open_dataset(data[name])
    seen = 0
    for (anchor, positive, negative), y in fit_batches(info, "train", batch_size=64, shuffle=shuffle, seed=0,
                                                         mining=mining).as_numpy_iterator():
        truth = np.stack([data["classes"][_ids_of(data, x)] for x in (anchor, positive, negative)], axis=1)
        assert (truth[:, 0] == truth[:, 1]).all() and (truth[:, 0] != truth[:, 2]).all()
        assert (y == (truth if mining != "none" else 0)).all()
        seen += len(y)
    assert seen == info.records("train")


@pytest.mark.parametrize("name", ["triplets-uneven", "pairs-uneven"])
@pytest.mark.parametrize("mining", ["batch-hard", "batch-semi-hard", "none"])
def test_numpy_reader_targets_belong_to_their_images(data, name: str, mining: str) -> None:
    from pairgen.train.data import fit_arrays, fit_batches, open_dataset

    info = open_dataset(data[name])
    x, y = fit_arrays(info, "train", mining=mining)
    truth = np.stack([data["classes"][_ids_of(data, images)] for images in x], axis=1)
    if info.kind == "pairs":
        assert (y == (truth[:, 0] == truth[:, 1])).all()
        (a, b), label = next(fit_batches(info, "train", batch_size=len(y), shuffle=True, seed=0,
                                         mining=mining).as_numpy_iterator())
        assert (label == (data["classes"][_ids_of(data, a)] == data["classes"][_ids_of(data, b)])).all()
    else:
        assert (y == (truth if mining != "none" else 0)).all()


def test_preview_reads_each_record_with_its_ids(data, tmp_path: Path) -> None:
    from pairgen.tools.preview import make_grid, pick_indices, preview, read_records

    path = data["triplets-uneven"]
    card = read_card(path)
    sizes = _shard_sizes(path)
    edges = [sizes[0] - 1, sizes[0], sizes[0] + sizes[1] - 1, sizes[0] + sizes[1], sum(sizes) - 1]
    indices = sorted(set(pick_indices(sum(sizes), 12)) | set(edges))
    for index, rec in zip(indices, read_records(path, card, "train", indices)):
        assert rec["record_id"] == [index]
        for role in ROLES["triplets"]:
            image = np.frombuffer(rec[f"{role}/image"][0], np.uint8).reshape(28, 28, 1)
            assert (data["pixels"][rec[f"{role}/id"][0]] == image).all()
    out = preview(path, split="train", count=24, out=tmp_path / "p.png")
    montage = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    picked = pick_indices(sum(sizes), 24)
    grid = make_grid("triplets", len(picked), (28, 28))
    th, tw = grid.tile
    for i, rec in enumerate(read_records(path, card, "train", picked)):
        for s, role in enumerate(ROLES["triplets"]):
            y, x = grid.image_origin(i, s)
            want = cv2.resize(data["pixels"][rec[f"{role}/id"][0]], (tw, th), interpolation=cv2.INTER_NEAREST)
            assert (montage[y:y + th, x:x + tw] == want).all()


@pytest.mark.parametrize("name", DATASETS)
def test_verify_checks_every_record_of_every_shard(data, name: str, tmp_path: Path) -> None:
    from pairgen.tools.verify import verify

    assert verify(data[name]).ok
    swapped = tmp_path / "swapped"
    shutil.copytree(data[name], swapped)
    card = read_card(swapped)
    entries = card["shards"]["train"]
    entries[0], entries[1] = entries[1], entries[0]
    write_card(swapped, card)
    problems = verify(swapped).problems
    assert any(p.kind == "mismatch" and p.file == entries[0]["path"] for p in problems)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pairgen.train import TrainConfig, train

    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, config in (("pairs-uneven", TrainConfig(**TINY)),
                         ("triplets-uneven", TrainConfig(**TINY, mining="batch-semi-hard"))):
        train(data[name], base / name, config, verbose=0)
        out[name] = base / name
    return out


@pytest.mark.parametrize("name", ["pairs-uneven", "triplets-uneven"])
def test_evaluate_scores_each_record_with_its_own_images(data, runs, name: str) -> None:
    from pairgen.train.data import open_dataset
    from pairgen.train.evaluation import load_run, score_split, split_arrays, split_images
    from pairgen.train.models import pair_model, triplet_model

    run, info = load_run(runs[name]), open_dataset(data[name])
    scores = score_split(run, info, "train")
    arrays = load_numpy(data[name], "train")
    x = [arrays[r] for r in ROLES[info.kind]]
    if info.kind == "pairs":
        dist = run.to_distance(np.asarray(pair_model(run.tower, run.head).predict(x, verbose=0)))
        for label in (0, 1):
            np.testing.assert_allclose(np.sort(scores.dist[scores.labels == label]),
                                       np.sort(dist[arrays["label"] == label]), atol=1e-5)
    else:
        both = np.asarray(triplet_model(run.tower, run.head).predict(x, verbose=0))
        np.testing.assert_allclose(np.sort(scores.d_ap), np.sort(run.to_distance(both[:, 0])), atol=1e-5)
        np.testing.assert_allclose(np.sort(scores.d_an), np.sort(run.to_distance(both[:, 1])), atol=1e-5)
    images, classes = split_images(info, split_arrays(info, "train"))
    assert (data["classes"][_ids_of(data, images)] == classes).all()


def test_embed_rows_match_the_records_images(data, runs, tmp_path: Path) -> None:
    from pairgen.train.embedding import embed

    name = "triplets-uneven"
    frame = embed(runs[name], data[name], tmp_path / "e.parquet").set_index("image_id")
    tower = _tower(runs[name])
    arrays = load_numpy(data[name], "train")
    picks = np.r_[0:20, len(arrays["record_id"]) - 20:len(arrays["record_id"])]
    for role in ROLES["triplets"]:
        want = np.stack(frame.loc[arrays[f"{role}_id"][picks], "embedding"].to_numpy())
        np.testing.assert_allclose(tower.predict(arrays[role][picks], verbose=0), want, atol=1e-5)


def _tower(run: Path):
    import keras

    return keras.models.load_model(run / "embedding.keras", compile=False)


def _damage_pixels(path: Path) -> None:
    """Flip bytes inside the PNG's image data: the header still reads, the decode fails."""
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 8
    for i in range(start, min(start + 12, len(data) - 16)):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))


def test_embed_leaves_out_and_lists_damaged_empty_and_truncated_files(data, runs, tmp_path: Path) -> None:
    """Issue 20, case 9: one bad file does not abort the run, and no file is left out unreported."""
    import json as _json

    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from pairgen.cli import main

    src = tmp_path / "src"
    shutil.copytree(data["src"], src)
    files = sorted(src.rglob("*.png"))
    damaged, empty, truncated = files[3], files[50], files[100]
    _damage_pixels(damaged)
    empty.write_bytes(b"")
    truncated.write_bytes(truncated.read_bytes()[:60])
    out = tmp_path / "e.parquet"
    res = CliRunner().invoke(main, ["embed", str(runs["pairs-uneven"]), str(src), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert f"wrote {len(files) - 3} embeddings" in res.output and "skipped 3 source file(s)" in res.output
    bad = {p.relative_to(src).as_posix() for p in (damaged, empty, truncated)}
    for rel in bad:
        assert f"  {rel}: " in res.output
    table = pq.read_table(out)
    assert not bad & set(table.column("path").to_pylist()) and table.num_rows == len(files) - 3
    listed = _json.loads(table.schema.metadata[b"pairgen"])["skipped"]
    assert {row["path"] for row in listed} == bad and all(row["reason"] for row in listed)
    # --on-error fail stops at the damaged image, in one line naming it.
    res = CliRunner().invoke(main, ["embed", str(runs["pairs-uneven"]), str(src), "--out", str(tmp_path / "f.pq"),
                                    "--quiet", "--on-error", "fail"])
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and damaged.name in lines[0] and "--on-error skip" in lines[0]
