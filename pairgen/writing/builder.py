"""Orchestration: config -> scan -> split -> sample -> manifests -> shards -> dataset.json.

Random streams all come from ``np.random.SeedSequence(config.seed)``: one child for the split,
one per split for sampling, one per split for the record order, and per split a block of
per-record augmentation seeds, so nothing depends on worker count, scheduling or file-system
order. The build writes into a hidden
sibling directory and renames it into place once ``dataset.json`` (written last) exists.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

import pairgen
from pairgen.dataset import layout, outdir
from pairgen.dataset import tables as mf
from pairgen.dataset.card import FORMAT_VERSION, Card, ImageSpec, write_card
from pairgen.dataset.fingerprints import fingerprint, split_fingerprint
from pairgen.dataset.outdir import install
from pairgen.dataset.versions import parent_of
from pairgen.errors import BuildError, SampleError
from pairgen.rendering.records import Render, Source
from pairgen.sampling.rounding import largest_remainder
from pairgen.sampling.splits import leakage_report, split
from pairgen.scanning import near
from pairgen.scanning.catalog import Catalog, ScanOptions, ScanResult, label_conflicts, reason_kind, scan_source
from pairgen.spec.config import NEAR, BuildConfig, Kind, OnError, SplitBy
from pairgen.spec.interrupts import raise_if_swallowed
from pairgen.spec.schema import schema_of
from pairgen.workers.pool import Pool
from pairgen.workers.progress import Progress
from pairgen.writing.shardwork import write_shards

# SeedSequence spawn keys: one stream per purpose, never shared.
_SPLIT_KEY, _SAMPLE_KEY, _AUG_KEY, _SHUFFLE_KEY = 0, 1, 2, 3


def seed_sequence(seed: int, *key: int) -> np.random.SeedSequence:
    """The seed sequence of one purpose (and split index) under the build seed.

    Args:
        seed: The build seed (``config.seed``).
        *key: The spawn key: a purpose (``_SPLIT_KEY``, ...) and, where it applies, a split index.

    Returns:
        ``SeedSequence(entropy=seed, spawn_key=key)``; the same key always gives the same numbers.
    """
    return np.random.SeedSequence(entropy=seed, spawn_key=key)


def aug_seeds(seed: int, split_index: int, n: int) -> np.ndarray:
    """Per-record augmentation seeds (non-negative int64) for one split.

    Args:
        seed: The build seed.
        split_index: The split's position in the build's split order.
        n: Number of records in the split.

    Returns:
        ``n`` int64 seeds, each the top 63 bits of one word of the split's augmentation stream.
    """
    words = seed_sequence(seed, _AUG_KEY, split_index).generate_state(max(n, 1), dtype=np.uint64)[:n]
    return (words >> np.uint64(1)).astype(np.int64)


def build(config: BuildConfig, out: str | os.PathLike, *, progress: Progress | None = None) -> dict[str, Any]:
    """Build a dataset directory from ``config`` at ``out``.

    Args:
        config: The resolved build config (``BuildConfig.from_toml`` plus overrides).
        out: The dataset directory to create.
        progress: Progress reporter; silent when ``None``.

    Returns:
        The ``dataset.json`` card as a dict.

    Raises:
        BuildError: if ``out`` already holds a dataset and ``config.build.overwrite`` is false,
            holds anything that is not a pairgen dataset, overlaps the source, is being built
            by another process, cannot be written (full disk, read-only), or the source
            cannot be materialized.
    """
    progress = progress or Progress(enabled=False)
    config.augment.check_active()
    config.sample.check_nonempty(config.kind)
    _check_memory(config)
    _check_sampling_memory(config, None)
    given, out = out, outdir.check_out_path(out, _source_dirs(config))
    # An OSError, in this process or a worker (a full disk, a folder turned read-only),
    # becomes one line; any error removes the temporary folder after the workers have stopped.
    with outdir.OutputLock(out, given), outdir.os_errors(given):
        outdir.recover(out)
        outdir.check_replaceable(out, given, replace=config.build.overwrite or config.build.keep_versions)
        with outdir.write_phase(out) as tmp:
            card = _build_locked(config, out, tmp, progress)
            return install(tmp, out, card, keep_versions=config.build.keep_versions)


def _build_locked(config: BuildConfig, out: Path, tmp: Path, progress: Progress) -> dict[str, Any]:
    """The build proper, holding the output lock: read, sample, write into ``tmp``; the workers
    are stopped when it returns."""
    run = config.build
    shared = (str(Path(config.source.table or config.source.path).resolve()), str(_existing_parent(out)))
    with Pool(workers=run.resolved_workers(), executor=run.executor, ray_address=run.ray_address,
              shared_paths=shared, note=progress.note) as pool:
        scanned = _scan(config, progress, pool)
        raise_if_swallowed()  # the steps below run in this process: a Ctrl-C dropped by a callback stops here
        catalog = _check_images(scanned.catalog, config, scanned.undecodable)
        catalog = split(catalog, by=config.split.by, fractions=config.split.fractions,
                        rng=np.random.default_rng(seed_sequence(config.seed, _SPLIT_KEY)), dedupe=config.split.dedupe,
                        near_threshold=config.split.near_threshold)
        config = _resolve_image_size(config, catalog)
        _check_memory(config)
        _check_sampling_memory(config, catalog)
        names = _split_names(config, catalog)
        quotas = _record_quotas(config, catalog, names)
        manifests = _sample_splits(config, catalog, names, quotas, pool)
        _check_positives(config, manifests)
        raise_if_swallowed()
        return _write(config, catalog, manifests, tmp, pool, progress, out)


def _source_dirs(config: BuildConfig) -> list[str]:
    """The folders a build reads: the source root and a label table's folder."""
    return list(outdir.iter_dirs([config.source.path, config.source.table]))


def _existing_parent(out: Path) -> Path:
    """The nearest folder above ``out`` that exists (what cluster nodes must see to write it)."""
    parent = out.resolve().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _scan(config: BuildConfig, progress: Progress, pool: Pool) -> ScanResult:
    """Scan in the build's workers; unless manifest-only, decode each image in the same read and
    take its near-duplicate signature from that decode (a manifest-only build decodes only for
    ``dedupe = "near"``)."""
    src = config.source
    options = ScanOptions.of(src.layout, class_depth=src.class_depth, table=src.table,
                             min_per_class=src.min_per_class, max_pixels=config.image.max_pixels,
                             allow_outside_root=src.allow_outside_root)
    check = None if config.build.manifest_only else config.image
    signatures = check is not None or config.split.dedupe == NEAR
    with progress.stage("scan", unit="files"):
        return scan_source(src.path, options, pool=pool, check=check, signatures=signatures)


def _check_memory(config: BuildConfig) -> None:
    """Fail before any record is rendered if the records held at once would not fit in memory."""
    from pairgen.rendering.records import CHUNK_RECORDS
    from pairgen.spec.validation import check_record_memory

    if config.image.size is None or config.build.manifest_only:
        return
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): nothing to compare with
        return
    chunks_held = 2 * config.build.resolved_workers() + 1  # the ordered window, plus the one being written
    check_record_memory(size=config.image.size, channels=config.image.channels,
                        images_per_record=len(schema_of(config.kind).roles),
                        records_in_flight=chunks_held * CHUNK_RECORDS, memory_bytes=memory)


# The options that set how many records a strategy draws, named when the count cannot fit.
_COUNT_OPTIONS = {"balanced": "--num-records ([sample] num_records)",
                  "per-class": "[sample] per_class", "exhaustive": "[sample] max_pairs_per_class",
                  "left-right": "--negatives-per-image"}


def _check_sampling_memory(config: BuildConfig, catalog: Catalog | None) -> None:
    """Refuse, before sampling, a record count whose manifests would not fit in memory.

    Checked from the config alone before the scan (``balanced``: ``num_records`` is known) and
    again once the split's class sizes are known.
    """
    from pairgen.sampling.sizing import planned_records, sampling_bytes
    from pairgen.workers.memory import available_memory

    sizes = None if catalog is None else [
        catalog.images.loc[catalog.images["split"] == name, "class_id"].value_counts().to_numpy()
        for name in _split_names(config, catalog)]
    records = planned_records(config.kind, config.sample, sizes)
    if records is None:
        return
    copies = config.augment.copies if config.augment.enabled else 1
    need = sampling_bytes(records * copies)
    room = available_memory()
    if room is None or need <= room:
        return
    if config.kind is Kind.IMAGES:
        option = "--copies"
    else:
        option = _COUNT_OPTIONS.get(config.sample.strategy, "--positives-per-image / --negatives-per-image")
        option += " or --copies" if copies > 1 else ""
    fits = room // sampling_bytes(1) // copies
    raise BuildError(f"this build would sample about {records * copies:,} records and need about "
                     f"{need / 2**30:,.1f} GiB of memory for them; {room / 2**30:,.1f} GiB is available. "
                     f"Lower {option} (about {fits:,} records fit), or build the dataset in parts.")


def _check_images(catalog: Catalog, config: BuildConfig, undecodable: Mapping[str, str]) -> Catalog:
    """Drop (or fail on) catalog images that the scan could not decode, so no record uses one."""
    if config.build.on_error is OnError.FAIL:
        corrupt = catalog.skipped[catalog.skipped["reason"].map(reason_kind) == "corrupt image"]
        if len(corrupt):
            raise BuildError(f"{corrupt['reason'].iloc[0]} ({len(corrupt)} corrupt image(s)). "
                             "Fix or remove the file, or pass --on-error skip.")
    if config.build.manifest_only:
        return catalog
    if not undecodable:
        return catalog
    hit = catalog.images["path"].isin(list(undecodable)).to_numpy()
    bad = [(int(i), undecodable[p]) for i, p in zip(catalog.images["image_id"][hit], catalog.images["path"][hit])]
    if not bad:
        return catalog
    paths = catalog.images.set_index("image_id")["path"]
    if config.build.on_error is OnError.FAIL:
        i, reason = bad[0]
        raise BuildError(f"{reason} ({len(bad)} image(s) failed). Fix or remove the file, or pass --on-error skip.")
    dropped = pd.DataFrame({"path": [paths[i] for i, _ in bad], "reason": [f"corrupt image: {r}" for _, r in bad]})
    keep = ~catalog.images["image_id"].isin([i for i, _ in bad])
    skipped = pd.concat([catalog.skipped, dropped], ignore_index=True).sort_values("path", kind="stable")
    return catalog.replace(images=catalog.images[keep].reset_index(drop=True), skipped=skipped.reset_index(drop=True))


def _resolve_image_size(config: BuildConfig, catalog: Catalog) -> BuildConfig:
    if config.image.size is not None:
        return config
    sizes = catalog.images[["height", "width"]].drop_duplicates()
    if len(sizes) != 1:
        raise BuildError(f"source images have {len(sizes)} different sizes; pass --image-size HxW "
                         "(or set [image] size) so every record has the same shape.")
    h, w = (int(v) for v in sizes.iloc[0])
    from dataclasses import replace
    return config.replace(image=replace(config.image, size=(h, w)))


def _split_names(config: BuildConfig, catalog: Catalog) -> list[str]:
    if config.split.by is SplitBy.FOLDERS:
        return sorted(catalog.images["split"].dropna().unique().tolist())
    return list(config.split.names)


def _record_quotas(config: BuildConfig, catalog: Catalog, names: list[str]) -> dict[str, int]:
    """Split ``sample.num_records`` over the splits in proportion to their images.

    Largest-remainder rounding, so the quotas add up to exactly ``num_records``.
    """
    sizes = np.array([(catalog.images["split"] == n).sum() for n in names], dtype=float)
    if sizes.sum() == 0:
        return {n: 0 for n in names}
    exact = config.sample.num_records * sizes / sizes.sum()
    quota = largest_remainder(exact, config.sample.num_records)
    return {n: int(q) for n, q in zip(names, quota)}


def _sample_splits(config: BuildConfig, catalog: Catalog, names: list[str], quotas: dict[str, int],
                   pool: Pool) -> dict[str, pd.DataFrame]:
    """Each split's manifest, sampled in the workers (one task per split, each sent only its
    split's images); the ``hard`` strategy samples here, its embeddings aligned with the catalog."""
    if config.sample.strategy == "hard":
        return {name: _sample(config, catalog, name, i, quotas[name]) for i, name in enumerate(names)}
    split_col = catalog.images["split"]
    results = {name: pool.submit(_sample_task, (config, catalog.replace(images=catalog.images[split_col == name],
                                                                        signatures=None), name, i, quotas[name]))
               for i, name in enumerate(names)}
    return {name: result() for name, result in results.items()}


def _sample_task(task: tuple[BuildConfig, Catalog, str, int, int]) -> pd.DataFrame:
    return _sample(*task)


def _sample(config: BuildConfig, catalog: Catalog, name: str, index: int, quota: int) -> pd.DataFrame:
    from pairgen.sampling import SAMPLE_BY_KIND, SampleParams

    images = catalog.images[catalog.images["split"] == name]
    columns = mf.manifest_columns(config.kind)
    if images.empty or (quota == 0 and config.sample.strategy == "balanced"):
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in columns}).assign(split=pd.Series(dtype=object))
    sampler = SAMPLE_BY_KIND[config.kind.value]
    embeddings = _load_embeddings(config, catalog) if config.sample.strategy == "hard" else None
    params = SampleParams.from_config(config.sample, embeddings).share(quota)
    rng = np.random.default_rng(seed_sequence(config.seed, _SAMPLE_KEY, index))
    table = sampler(images, strategy=config.sample.strategy, rng=rng, resolved=params)
    copies = config.augment.copies if config.augment.enabled else 1
    if copies > 1:
        table = table.loc[table.index.repeat(copies)].reset_index(drop=True)
    # Samplers emit rows grouped by anchor class; records are written in one seeded random
    # order so that a reader's bounded shuffle buffer sees every class from the start.
    order = np.random.default_rng(seed_sequence(config.seed, _SHUFFLE_KEY, index)).permutation(len(table))
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "record_id", np.arange(len(table), dtype=np.int64))
    table["split"] = name
    table["aug_seed"] = aug_seeds(config.seed, index, len(table))
    return table[list(columns)]


def _check_positives(config: BuildConfig, manifests: dict[str, pd.DataFrame]) -> None:
    """Refuse a pairs or triplets build where no class has two images in any split.

    A class with one image in a split gets no positive (it serves as a negative); when that is
    every class of every split, the records asked for cannot exist.
    """
    if config.kind is Kind.IMAGES:
        return
    s = config.sample
    if config.kind is Kind.TRIPLETS:
        asked, got = s.positives_per_image > 0 or s.strategy == "balanced", sum(len(t) for t in manifests.values())
    else:
        asked = {"per-image": s.positives_per_image > 0, "hard": s.positives_per_image > 0,
                 "balanced": s.positive_fraction > 0}.get(s.strategy, True)
        got = sum(int((t["label"] == 1).sum()) for t in manifests.values())
    if asked and not got and manifests:
        raise SampleError("no class has 2 or more images in any split, so no positive "
                          f"{'triplet' if config.kind is Kind.TRIPLETS else 'pair'} exists. Use a source with "
                          "several images per class, or --split-by class so a class's images stay together.")


def _load_embeddings(config: BuildConfig, catalog: Catalog) -> np.ndarray:
    from pairgen.sampling.hard import load_embeddings

    return load_embeddings(config.sample.embeddings, catalog.images)


def _source(catalog: Catalog) -> Source:
    """Every catalog image's path and scan hash, indexed by ``image_id``."""
    ids = catalog.images["image_id"].to_numpy(np.int64)
    n = int(ids.max()) + 1 if len(ids) else 0
    paths, sha = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    paths[ids] = catalog.images["path"].to_numpy(object)
    sha[ids] = catalog.images["sha256"].to_numpy(object)
    return Source(root=catalog.root, paths=tuple(paths.tolist()), sha256=tuple(sha.tolist()))


def _write(config: BuildConfig, catalog: Catalog, manifests: dict[str, pd.DataFrame], tmp: Path,
           pool: Pool, progress: Progress, out: Path) -> dict[str, Any]:
    """Write the tables, the shards and, once, the card (its parent read from ``out``).

    The Parquet tables and the card's facts about the catalog (fingerprints, leakage, label
    conflicts, split counts, the near-duplicate report) are made by a worker beside the shards;
    this process only plans the shards and writes the card.
    """
    signatures = catalog.signature_rows()
    tables = pool.submit(_tables_and_facts, _TablesTask(config, catalog.images, catalog.skipped, signatures,
                                                        manifests, tmp))
    shards: dict[str, list[dict]] = {}
    if not config.build.manifest_only:
        shards = _write_shards(config, catalog, manifests, tmp, pool, progress)
    files, facts = tables()
    card = _card(config, catalog, files, shards, out, facts)
    write_card(tmp, card)
    return card.to_dict()


class _TablesTask(NamedTuple):
    """What a worker needs to write a build's Parquet tables and take the card's catalog facts."""

    config: BuildConfig
    images: pd.DataFrame
    skipped: pd.DataFrame
    signatures: np.ndarray | None
    manifests: dict[str, pd.DataFrame]
    tmp: Path


def _tables_and_facts(task: _TablesTask) -> tuple[dict[str, dict], dict[str, Any]]:
    """Write the catalog, skipped and manifest tables into ``task.tmp``; return their file
    entries and the card's facts about the catalog and manifests (:func:`_card`), with the
    near-duplicate pairs across splits of the catalog's ``signatures`` (row for row) when
    there are signatures."""
    config, images, tmp = task.config, task.images, task.tmp
    files = {
        layout.CATALOG: mf.write_catalog(images, tmp / layout.CATALOG, task.signatures),
        layout.SKIPPED: mf.write_table(task.skipped, tmp / layout.SKIPPED, mf.SKIPPED_COLUMNS),
    }
    for name, table in task.manifests.items():
        files[layout.manifest(name)] = mf.write_table(
            table, tmp / layout.manifest(name), mf.manifest_columns(config.kind))
    facts = {
        "fingerprint": fingerprint(config, images),
        "split_fingerprint": split_fingerprint(images),
        "leakage": leakage_report(images),
        "label_conflicts": label_conflicts(images),
        "splits": _split_counts(config, images, task.manifests),
    }
    if task.signatures is not None:
        facts["near_duplicates"] = near.cross_split(images[["path", "split", "sha256", "class_id"]], task.signatures,
                                                    config.split.near_threshold)
    return files, facts


def _write_shards(config: BuildConfig, catalog: Catalog, manifests: dict[str, pd.DataFrame], tmp: Path,
                  pool: Pool, progress: Progress) -> dict[str, list[dict]]:
    """Render and write every split's shards in the workers (see :func:`shardwork.write_shards`)."""
    render = Render(kind=config.kind, image=config.image, augment=config.augment)
    return write_shards(manifests, render=render, source=_source(catalog), shards=config.shards,
                        out_dir=tmp, pool=pool, progress=progress)


def _split_counts(config: BuildConfig, images: pd.DataFrame, manifests: dict[str, pd.DataFrame]) -> dict:
    counts = {}
    for name, table in manifests.items():
        imgs = images[images["split"] == name]
        entry = {"records": int(len(table)), "images": int(len(imgs)), "classes": int(imgs["class_id"].nunique())}
        if schema_of(config.kind).labelled:
            entry["positives"] = int((table["label"] == 1).sum())
            entry["negatives"] = int((table["label"] == 0).sum())
        if config.kind is not Kind.IMAGES:
            sizes = imgs["class_id"].value_counts()
            entry["images_without_positive"] = int((sizes == 1).sum())
        counts[name] = entry
    return counts


def _card(config: BuildConfig, catalog: Catalog, files: dict, shards: dict[str, list[dict]], out: Path,
          facts: dict[str, Any]) -> Card:
    """The card of the dataset written, with its parent: the dataset now at ``out``; ``facts``
    are :func:`_tables_and_facts`'s (a near-duplicate report only when there were signatures)."""
    assert config.image.size is not None, "the image size is resolved before the card is written"
    h, w = config.image.size
    near_duplicates = ({**facts["near_duplicates"], "dedupe": config.split.dedupe == NEAR}
                       if "near_duplicates" in facts else {})
    reasons = catalog.skipped["reason"].map(reason_kind).value_counts().sort_index()
    fp = facts["fingerprint"]
    return Card(
        name=config.name,
        version=config.version,
        fingerprint=fp,
        format_version=FORMAT_VERSION,
        pairgen_version=pairgen.__version__,
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        kind=config.kind,
        config=config.to_dict(),
        source={
            "root": catalog.root, "layout": catalog.layout.value,
            "images": int(len(catalog.images)), "classes": int(catalog.images["class_id"].nunique()),
            "skipped": int(len(catalog.skipped)), "skipped_by_reason": {str(k): int(v) for k, v in reasons.items()},
            "label_conflicts": facts["label_conflicts"],
        },
        image=ImageSpec(h, w, config.image.channels, config.image.encoding.value),
        compression=config.shards.compression.value,
        splits=facts["splits"],
        leakage=facts["leakage"],
        near_duplicates=near_duplicates,
        files=files,
        shards=shards,
        manifest_only=config.build.manifest_only,
        parent=parent_of(out, fp),
        split_fingerprint=facts["split_fingerprint"],
    )
