"""Embed every catalog image with a run's tower and write one Parquet row per image.

SOURCE is either a dataset directory (its ``catalog.parquet``, read from the source root in
``dataset.json``, rendered exactly as the build rendered records, without augmentation) or
an image folder (scanned with :func:`pairgen.scan`, then resized to the tower's input with the
build's default nearest-neighbour fit). The output feeds ``--strategy hard`` of the next
build (``[sample] embeddings = "embeddings.parquet"``).

Output columns: ``image_id``, ``path``, ``class_name``, ``class_id``, ``split`` (str or
null) and ``embedding`` (fixed-size list of float32). The file's metadata records the run
folder, the embedding size and, for a dataset source, the dataset's fingerprint.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from pairgen.extras import require_keras

require_keras("pairgen embed")  # Keras or its backend missing: one line naming the extra, no traceback
import keras  # noqa: E402
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pairgen.dataset.layout import CARD, CATALOG
from pairgen.errors import ConfigError, DatasetError, ImageError
from pairgen.rendering.records import Source, record_pixels
from pairgen.spec.config import AugmentConfig, BuildConfig, ImageConfig
from pairgen.train import layers as _layers  # noqa: F401  (registers the custom layers)

_CHUNK = 256


def _dataset_source(path: Path) -> tuple[str, pd.DataFrame, ImageConfig, AugmentConfig, dict[str, Any]]:
    from pairgen.train.data import open_dataset

    info = open_dataset(path)
    cfg = BuildConfig.from_dict(info.card.config)
    root = str(info.card.source.get("root", ""))
    if not os.path.isdir(root):
        raise DatasetError(f"the source root '{root}' of dataset '{info.path}' is gone; restore it or pass "
                           "the image folder itself as SOURCE.")
    catalog = pd.read_parquet(info.path / CATALOG)
    meta = {"dataset_fingerprint": info.fingerprint, "dataset": str(info.path)}
    return root, catalog, cfg.image, replace(cfg.augment, enabled=False), meta


def _folder_source(path: Path, shape: tuple[int, ...], layout: str, class_depth: int,
                   ) -> tuple[str, pd.DataFrame, ImageConfig, AugmentConfig, dict[str, Any], pd.DataFrame]:
    from pairgen.scanning.catalog import scan

    catalog = scan(path, layout=layout, class_depth=class_depth)
    image = ImageConfig(size=(shape[0], shape[1]), channels=shape[2])
    return (catalog.root, catalog.images, image, AugmentConfig(), {"source": catalog.root},
            catalog.skipped[["path", "reason"]])


def _render(root: str, rel: str, image: ImageConfig, augment: AugmentConfig) -> np.ndarray:
    return record_pixels(Source(root=root, paths={0: rel}), 0, image, augment)


def embed_images(tower: keras.Model, root: str, paths: list[str], image: ImageConfig,
                 augment: AugmentConfig, *, progress: bool = False) -> tuple[np.ndarray, dict[int, str]]:
    """Embed the images ``root/paths``, read and embedded in chunks.

    Returns:
        ``(embeddings, failed)``: ``float32 (len(paths), dim)`` and, for every image that could
        not be decoded, its position in ``paths`` and the reason (its row stays zero).
    """
    from tqdm import tqdm

    want = tuple(int(x) for x in tower.input_shape[1:])
    out = np.zeros((len(paths), int(tower.output_shape[-1])), np.float32)
    failed: dict[int, str] = {}
    for start in tqdm(range(0, len(paths), _CHUNK), disable=not progress, desc="embed", unit="chunk"):
        pixels, rows = [], []
        for i in range(start, min(start + _CHUNK, len(paths))):
            try:
                pixels.append(_render(root, paths[i], image, augment))
                rows.append(i)
            except ImageError as err:
                failed[i] = str(err)
        if not pixels:
            continue
        batch = np.stack(pixels)
        if batch.shape[1:] != want:
            raise ImageError(f"images render to {batch.shape[1:]} but the model expects {want}; "
                             "embed the dataset the model was trained on, or rebuild with matching "
                             "--image-size/--channels.")
        out[rows] = np.asarray(tower.predict_on_batch(batch.astype(np.float32) / 255.0))
    return out, failed


def embed(run: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike, *,
          layout: str = "classes", class_depth: int = 0, on_error: str = "skip", progress: bool = False) -> pd.DataFrame:
    """Embed every image of ``source`` with ``run``'s tower and write ``out`` (Parquet).

    Args:
        run: A run folder (its ``embedding.keras`` is used).
        source: A dataset directory or an image folder.
        out: The Parquet file to write.
        layout: Layout of an image-folder source (``classes``, ``left-right``, ...).
        class_depth: Class depth of an image-folder source.
        on_error: ``skip``: leave out an image that cannot be decoded and report it; ``fail``: stop.
        progress: Show a progress bar.

    Returns:
        The written frame (``embedding`` as a column of float32 arrays). ``frame.attrs["skipped"]``
        lists every source file left out (``path``, ``reason``): those the scan skipped (empty,
        truncated, unreadable, ...) for an image folder, and those that failed to decode; the
        file's metadata keeps the same list under ``skipped``.

    Raises:
        ConfigError: If ``run`` has no embedding model.
        DatasetError, ScanError, ImageError: If the source cannot be read or does not fit the model.
    """
    model_file = Path(run) / "embedding.keras"
    if not model_file.is_file():
        raise ConfigError(f"run folder '{run}' has no embedding.keras; train one with `pairgen train DATASET --out {run}`.")
    tower = keras.models.load_model(model_file, compile=False)
    shape = tuple(int(x) for x in tower.input_shape[1:])
    src = Path(source)
    if (src / CARD).is_file() or "@" in src.name:
        root, catalog, image, augment, meta = _dataset_source(src)
        skipped = pd.DataFrame({"path": pd.Series(dtype=str), "reason": pd.Series(dtype=str)})
    else:
        root, catalog, image, augment, meta, skipped = _folder_source(src, shape, layout, class_depth)
    catalog = catalog.sort_values("image_id", kind="stable").reset_index(drop=True)
    emb, failed = embed_images(tower, root, catalog["path"].tolist(), image, augment, progress=progress)
    if failed and on_error == "fail":
        raise ImageError(f"{next(iter(failed.values()))} ({len(failed)} image(s) failed; pass --on-error skip "
                         "to embed the others and list these).")
    keep = np.ones(len(catalog), bool)
    keep[list(failed)] = False
    skipped = pd.concat([skipped, pd.DataFrame({"path": catalog["path"].to_numpy()[list(failed)],
                                                "reason": [f"corrupt image: {r}" for r in failed.values()]})],
                        ignore_index=True).sort_values("path", kind="stable").reset_index(drop=True)
    frame = catalog.loc[keep, ["image_id", "path", "class_name", "class_id"]].reset_index(drop=True)
    frame["split"] = catalog.loc[keep, "split"].to_numpy() if "split" in catalog else None
    emb = emb[keep]
    meta.update({"run": str(Path(run).resolve()), "embedding_dim": emb.shape[1],
                 "skipped": skipped[["path", "reason"]].astype(str).to_dict("records")})
    write_embeddings(frame, emb, out, meta)
    frame["embedding"] = list(emb)
    frame.attrs["skipped"] = skipped
    return frame


def write_embeddings(frame: pd.DataFrame, emb: np.ndarray, out: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Write ``frame`` plus a fixed-size-list ``embedding`` column, with ``meta`` in the file metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    flat = pa.array(np.ascontiguousarray(emb, np.float32).ravel(), type=pa.float32())
    table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(flat, emb.shape[1]))
    table = table.replace_schema_metadata({"pairgen": json.dumps(meta, sort_keys=True)})
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
