"""Seeded split assignment and duplicate-content (leakage) checks.

* ``by="image"``: stratified per class. Each class's images are permuted with ``rng`` and cut
  by the fractions; counts use largest-remainder rounding with the remainders carried from
  class to class, so each class gets ``floor`` or ``ceil`` of its exact share and the totals
  stay within one image of the global target (a split with 10% still gets images when every
  class is small). For a left-right catalog the unit is the identity (``key``), so both sides
  of an identity always land in the same split.
* ``by="class"``: class-disjoint; the classes are permuted and cut by the fractions, and every
  split with a non-zero fraction gets at least one class.
* ``by="folders"``: the split is the source's ``folder_split``.

``dedupe=True`` drops all but the first image (lowest ``image_id``) of each group with
identical bytes *before* splitting. ``image_id`` is never renumbered: ids stay the scan's row
numbers, so they may have gaps after a dedupe but always point at the same file.

``dedupe="near"`` does that, then keeps each near-duplicate group (signatures with cosine
similarity >= ``near_threshold``, joined transitively; :mod:`pairgen.scanning.near`) inside one
split: the split of its first image (lowest ``image_id``). With ``by="image"`` the other
members move to that split (no image is lost; the split sizes shift by those few images).
Where the split is a class's, an identity's or a folder's (``by="class"``, left-right,
``by="folders"``), moving one image would break that rule, so members in another split are
dropped instead (to skipped, with the reason ``near duplicate of <path>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd

from pairgen.errors import SplitError
from pairgen.sampling.rounding import largest_remainder
from pairgen.scanning import near
from pairgen.scanning.catalog import Catalog, skipped_frame
from pairgen.spec.config import NEAR, NEAR_THRESHOLD, Layout, SplitBy, SplitConfig, normalize_fractions

Fractions = Sequence[tuple[str, float]] | Mapping[str, float] | str
DEFAULT_FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))


def split(catalog: Catalog, *, by: SplitBy | str = "image", fractions: Fractions = DEFAULT_FRACTIONS,
          rng: np.random.Generator | None = None, dedupe: bool | str = False,
          near_threshold: float = NEAR_THRESHOLD) -> Catalog:
    """Assign every image of a catalog to a split.

    Args:
        catalog: A scanned catalog.
        by: ``image`` (stratified per class), ``class`` (class-disjoint) or ``folders``.
        fractions: ``(("train", 0.8), ...)``, ``{"train": 0.8, ...}`` or
            ``"train=0.8,val=0.1,test=0.1"``; must sum to 1 (ignored for ``folders``).
        rng: The generator that permutes images/classes; required unless ``by="folders"``.
        dedupe: ``True``/``"exact"``: keep only the first image of each identical-content group
            (moved to skipped); ``"near"``: that, and keep near-duplicate groups in one split.
        near_threshold: The cosine similarity of near duplicates (``dedupe="near"``).

    Returns:
        A new catalog whose ``images.split`` is filled (and, with dedupe, fewer images).

    Raises:
        ConfigError: ``by``, ``fractions`` or ``dedupe`` is invalid.
        SplitError: The split cannot be made (no folder splits, too few classes, no rng), or
            ``dedupe="near"`` was asked of a catalog without signatures.
    """
    cfg = SplitConfig(by=SplitBy.from_value(by, "split.by"), fractions=normalize_fractions(fractions),
                      dedupe=dedupe, near_threshold=near_threshold)
    if cfg.dedupe == NEAR and catalog.signatures is None:
        raise SplitError("split(dedupe='near') needs near-duplicate signatures; scan with "
                         "signatures=True (a build does this itself).")
    images, skipped = catalog.images.copy(), catalog.skipped
    if cfg.dedupe:
        images, dropped = _dedupe(images)
        skipped = skipped_frame([*skipped.itertuples(index=False, name=None), *dropped])
    if cfg.by is SplitBy.FOLDERS:
        assigned = _by_folders(images, catalog.layout)
    else:
        if rng is None:
            raise SplitError(f"split(by={cfg.by.value!r}) needs rng=np.random.default_rng(seed); "
                             "pass the generator derived from your seed.")
        if cfg.by is SplitBy.CLASS or catalog.layout is Layout.LEFT_RIGHT:
            assigned = _by_unit(images, cfg.fractions, rng)
        else:
            assigned = _by_image(images, cfg.fractions, rng)
    images["split"] = pd.Series(list(assigned), index=images.index, dtype=object)
    images = images.reset_index(drop=True)
    if cfg.dedupe == NEAR:
        movable = cfg.by is SplitBy.IMAGE and catalog.layout is not Layout.LEFT_RIGHT
        images, dropped = _near_together(images, catalog.signature_rows(images), cfg.near_threshold, movable)
        skipped = skipped_frame([*skipped.itertuples(index=False, name=None), *dropped])
    return catalog.replace(images=images, skipped=skipped)


def _near_together(images: pd.DataFrame, signatures: Any, threshold: float,
                   movable: bool) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Keep each near-duplicate group in the split of its first image: move or drop the others."""
    group = near.find(images, signatures, threshold).group  # rows are in image_id order
    split_col = images["split"].to_numpy(object)
    home = split_col[group]
    away = home != split_col
    if movable:
        images = images.copy()
        images["split"] = pd.Series(list(home), index=images.index, dtype=object)
        return images, []
    paths = images["path"].to_numpy(object)
    dropped = [(str(paths[r]), f"near duplicate of {paths[group[r]]} (split {home[r]})")
               for r in np.flatnonzero(away)]
    return images[~away].reset_index(drop=True), dropped


def _dedupe(images: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    images = images.sort_values("image_id", kind="stable")
    first_path = images.groupby("sha256", sort=False)["path"].transform("first")
    dup = images.duplicated("sha256", keep="first").to_numpy()
    dropped = [(p, f"duplicate content of {f}")
               for p, f in zip(images["path"][dup], first_path[dup])]
    return images[~dup], dropped


def _by_folders(images: pd.DataFrame, layout: Layout) -> np.ndarray:
    folder = images["folder_split"]
    if len(images) and folder.isna().any():
        raise SplitError(f"--split-by folders needs split folders (layout 'split-folders', or a "
                         f"table with a split column); this catalog's layout is '{layout.value}'. "
                         "Use --split-by image or --split-by class.")
    return folder.to_numpy(object)


def apportion(n: int, fractions: Sequence[float] | np.ndarray, carry: np.ndarray | None = None) -> np.ndarray:
    """Split ``n`` items by ``fractions`` with largest-remainder rounding.

    Args:
        n: Number of items.
        fractions: One fraction per split (summing to 1).
        carry: Optional running remainders from earlier groups (updated in place), so that
            rounding spreads fairly across many small groups.

    Returns:
        int64 counts, one per split, summing to ``n``; each is floor or ceil of its share.
    """
    # Shares within 1e-9 of an integer count as that integer; ties go to the split listed first.
    return largest_remainder(np.asarray(fractions, dtype=np.float64) * n, n, carry, tol=1e-9)


def _cut(n: int, counts: np.ndarray, names: Sequence[str]) -> np.ndarray:
    return np.repeat(np.array(names, dtype=object), counts)[:n]


def _by_image(images: pd.DataFrame, fractions: Sequence[tuple[str, float]],
              rng: np.random.Generator) -> np.ndarray:
    names = [k for k, _ in fractions]
    values = [v for _, v in fractions]
    out = np.empty(len(images), dtype=object)
    carry = np.zeros(len(values))
    # Grouped by the int64 class_id column: the keys are class ids.
    positions = cast(dict[int, np.ndarray], images.reset_index(drop=True).groupby("class_id", sort=True).indices)
    for class_id in sorted(positions):
        rows = np.sort(positions[class_id])  # image_id order within the class
        counts = apportion(len(rows), values, carry)
        out[rows[rng.permutation(len(rows))]] = _cut(len(rows), counts, names)
    return out


def _by_unit(images: pd.DataFrame, fractions: Sequence[tuple[str, float]],
             rng: np.random.Generator) -> np.ndarray:
    """Class-disjoint (and left-right identity) split: whole classes go to one split."""
    names = [k for k, _ in fractions]
    values = np.array([v for _, v in fractions])
    units = np.sort(images["class_id"].unique())
    wanted = int((values > 0).sum())
    if len(units) < wanted:
        raise SplitError(f"--split-by class needs at least {wanted} classes for splits "
                         f"{', '.join(n for n, v in fractions if v > 0)}; the catalog has "
                         f"{len(units)}. Use --split-by image or fewer splits.")
    counts = apportion(len(units), values)
    for i in np.flatnonzero((values > 0) & (counts == 0)):  # every asked-for split gets a class
        donor = int(np.argmax(counts))
        counts[donor] -= 1
        counts[i] += 1
    unit_split = dict(zip(units[rng.permutation(len(units))], _cut(len(units), counts, names)))
    return np.array([unit_split[c] for c in images["class_id"]], dtype=object)


def leakage_report(images: pd.DataFrame) -> dict[str, Any]:
    """Find identical content (same sha256) that lands in more than one split.

    Args:
        images: A catalog's images frame with ``split`` filled.

    Returns:
        ``groups`` (number of sha256 groups spanning >1 split), ``images`` (images in those
        groups) and ``examples`` (up to 5 lists of paths, each in ``image_id`` order).
    """
    split_col = images["split"]
    known = images[split_col.notna()].sort_values("image_id", kind="stable")
    spans = known.groupby("sha256", sort=False)["split"].nunique()
    leaked = known[known["sha256"].isin(spans.index[spans > 1])]
    groups = [g["path"].tolist() for _, g in leaked.groupby("sha256", sort=False)]
    groups.sort(key=lambda paths: paths[0])
    return {"groups": len(groups), "images": int(len(leaked)), "examples": groups[:5]}
