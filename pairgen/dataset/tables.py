"""Parquet tables of a dataset directory: catalog, skipped files and per-split manifests.

Manifests hold ids and metadata only, never pixels. Tables are written with fixed options
(zstd, no index, fixed row-group size) so the same rows always give the same bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pairgen.errors import DatasetError
from pairgen.spec.config import Kind
from pairgen.spec.schema import IMAGE_COLUMNS, PAIRS, TRIPLETS, schema_of
from pairgen.spec.schema import SKIPPED_COLUMNS as SKIPPED_COLUMNS  # the skipped table, beside the others

PAIR_COLUMNS = PAIRS.manifest_columns
TRIPLET_COLUMNS = TRIPLETS.manifest_columns
CATALOG_COLUMNS = IMAGE_COLUMNS
ROW_GROUP_SIZE = 1 << 20


def manifest_columns(kind: Kind) -> tuple[str, ...]:
    """The manifest column names for ``kind``."""
    return schema_of(kind).manifest_columns


def image_columns(kind: Kind) -> tuple[str, ...]:
    """The id columns whose images make one record, in record order."""
    return schema_of(kind).id_columns


def file_digest(path: str | Path) -> tuple[int, str]:
    """Return ``(size in bytes, sha256 hex)`` of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _arrow_table(df: pd.DataFrame, columns: tuple[str, ...]) -> pa.Table:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(f"table is missing columns {missing}; expected {list(columns)}.")
    arrays = []
    for col in columns:
        values = df[col]
        if values.dtype.kind in "iub":
            arrays.append(pa.array(values.to_numpy(), type=pa.int64()))
        elif values.dtype.kind == "f":
            arrays.append(pa.array(values.to_numpy(), type=pa.float64()))
        else:
            arrays.append(_as_str_array(values))
    return pa.Table.from_arrays(arrays, names=list(columns))


def _as_str_array(values: pd.Series) -> pa.Array:
    """A string column: ``None`` and float NaN become null, anything else ``str(v)``.

    Columns of strings and missing values (the catalog's, the manifests') are converted by
    Arrow without a Python step per value; any other value takes :func:`_as_str_list`.
    """
    out = values.astype(object).to_numpy()
    null = pd.isna(out)
    if (all(issubclass(t, str) for t in set(map(type, out[~null])))
            and all(t is type(None) or issubclass(t, float) for t in set(map(type, out[null])))):
        return pa.array(out, type=pa.string(), from_pandas=True)
    return pa.array(_as_str_list(out), type=pa.string())


def _as_str_list(out: np.ndarray) -> list:
    """An object array's values as ``str``, ``None`` and float NaN as ``None``."""
    return [None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v) for v in out]


def write_table(df: pd.DataFrame, path: str | Path, columns: tuple[str, ...]) -> dict:
    """Write ``df[columns]`` to Parquet deterministically.

    Args:
        df: The rows to write.
        path: Destination file (its folder is created).
        columns: Column order; integer columns become int64, others string.

    Returns:
        ``{"bytes": int, "sha256": str, "records": int}`` of the written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _arrow_table(df, columns)
    pq.write_table(
        table, path, compression="zstd", row_group_size=ROW_GROUP_SIZE,
        write_statistics=True, store_schema=False,
    )
    size, digest = file_digest(path)
    return {"bytes": size, "sha256": digest, "records": len(df)}


SIGNATURE = "signature"  # catalog.parquet's optional column: near-duplicate signatures
SIGNATURE_BYTES = 256


def write_catalog(images: pd.DataFrame, path: str | Path, signatures: np.ndarray | None) -> dict:
    """Write a catalog table; with ``signatures`` (``(rows, 256)`` int8, row for row) they are
    kept in a fixed-size binary column ``signature`` after the :data:`CATALOG_COLUMNS`.

    Returns:
        As :func:`write_table`.
    """
    if signatures is None:
        return write_table(images, path, CATALOG_COLUMNS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _arrow_table(images, CATALOG_COLUMNS)
    flat = pa.array(np.ascontiguousarray(signatures, dtype=np.int8).view(np.uint8).ravel(), type=pa.uint8())
    raw = pa.FixedSizeBinaryArray.from_buffers(pa.binary(SIGNATURE_BYTES), len(images), [None, flat.buffers()[1]])
    table = table.append_column(SIGNATURE, raw)
    pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP_SIZE,
                   write_statistics=True, store_schema=False)
    size, digest = file_digest(path)
    return {"bytes": size, "sha256": digest, "records": len(images)}


def catalog_signatures(frame: pd.DataFrame) -> np.ndarray | None:
    """The ``(rows, 256)`` int8 signatures of a catalog table read back, or ``None`` without them."""
    if SIGNATURE not in frame.columns:
        return None
    data = b"".join(frame[SIGNATURE].tolist())
    return np.frombuffer(data, dtype=np.int8).reshape(len(frame), SIGNATURE_BYTES).copy()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet table written by :func:`write_table`.

    Raises:
        DatasetError: if the file is missing or not Parquet.
    """
    try:
        return pq.read_table(path).to_pandas()
    except FileNotFoundError:
        raise DatasetError(f"'{path}' does not exist; is this a pairgen dataset directory?") from None
    except pa.ArrowInvalid as exc:
        raise DatasetError(f"'{path}' is not a readable Parquet file ({exc}). Rebuild the dataset.") from None
