"""What is in a dataset (:func:`inspect`) and how two datasets differ (:func:`diff`).

Both read only ``dataset.json``, ``catalog.parquet`` and the manifests (never the shards),
so they are fast on any size of dataset and never import TensorFlow. Both return JSON-ready
dicts; :func:`format_inspect` and :func:`format_diff` turn them into the CLI's text.

``diff`` compares records by content, not by id: a pair is the unordered pair of its two
images' sha256 plus its label, a triplet the ordered sha256 of anchor, positive and
negative. So two builds of the same images from differently named folders share records,
and a record whose image bytes changed is not "in common".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pairgen.dataset import layout
from pairgen.dataset import tables as mf
from pairgen.dataset.card import Card, read_card
from pairgen.dataset.versions import list_versions, resolve, split_ref
from pairgen.errors import PairgenError
from pairgen.scanning import near
from pairgen.spec.config import NEAR, NEAR_THRESHOLD, BuildConfig
from pairgen.spec.schema import LABEL, schema_of

_COUNT_KEYS = ("records", "positives", "negatives", "images", "classes", "images_without_positive")
_EXAMPLES = 5
_SPLIT_ORDER = ("train", "training", "background", "val", "valid", "validation", "dev", "test", "evaluation")


def split_order(names: Any) -> list[str]:
    """Split names in reading order: train, val, test first (dataset.json stores them sorted)."""
    rank = {n: i for i, n in enumerate(_SPLIT_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _catalog(root: Path) -> pd.DataFrame:
    return mf.read_table(root / layout.CATALOG)


def _split_classes(catalog: pd.DataFrame) -> dict[str, list[str]]:
    known = catalog[catalog["split"].notna()]
    return {str(s): sorted(g["class_name"].unique().tolist()) for s, g in known.groupby("split", sort=True)}


def inspect(path: str | os.PathLike, *, near_threshold: float | None = None) -> dict[str, Any]:
    """Summarize a dataset directory.

    Args:
        path: Dataset directory (``dir``, ``dir@version`` or ``dir@fingerprint-prefix``).
        near_threshold: Recompute the near duplicates across splits at this cosine similarity,
            from the signatures kept in ``catalog.parquet`` (``None``: the card's report).

    Returns:
        ``name``, ``version``, ``fingerprint``, ``parent``, ``kind``, ``created_at``,
        ``source`` (root, layout, images, classes, skipped, skipped_by_reason,
        label_conflicts: identical content under more than one class), ``image``
        (height, width, channels, encoding), ``splits`` (per split: records, positives,
        negatives, positive_fraction, images, classes, class_names), ``shards`` (count,
        bytes, per split), ``leakage`` (identical content across splits, and classes shared
        by splits when the split is by class), ``near_duplicates`` (near-duplicate pairs across
        splits, per split pair with examples: :func:`pairgen.scanning.near.cross_split`; empty
        when the catalog has no signatures) and ``versions`` (this path's lineage).

    Raises:
        DatasetError: If ``path`` is not a finished dataset.
    """
    root = resolve(path)
    card = read_card(root)
    catalog = _catalog(root)
    classes = _split_classes(catalog)
    splits = {}
    for name in split_order(card.splits):
        counts = card.splits[name]
        entry: dict[str, Any] = {k: counts[k] for k in _COUNT_KEYS if k in counts}
        if "positives" in counts:
            entry["positive_fraction"] = round(counts["positives"] / counts["records"], 4) if counts["records"] else 0.0
        entry["class_names"] = classes.get(name, [])
        splits[name] = entry
    shards = card.shards
    return {
        "path": str(root), "name": card.name, "version": card.version,
        "fingerprint": card.fingerprint, "split_fingerprint": card.split_fingerprint,
        "parent": card.parent, "kind": card.kind.value, "created_at": card.created_at,
        "pairgen_version": card.pairgen_version,
        "source": card.source, "image": card.image.to_dict(), "compression": card.compression,
        "splits": splits,
        "shards": {"count": sum(len(v) for v in shards.values()),
                   "bytes": sum(int(e["bytes"]) for v in shards.values() for e in v),
                   "per_split": {k: len(v) for k, v in shards.items()}},
        "manifest_only": card.manifest_only,
        "leakage": _leakage(card, classes),
        "near_duplicates": near_leakage(card, catalog, near_threshold),
        "versions": list_versions(split_ref(path)[0]),
    }


def near_leakage(card: Card, catalog: pd.DataFrame, threshold: float | None = None) -> dict[str, Any]:
    """Near-duplicate pairs across the splits of a dataset: the card's report, or recomputed
    from the catalog's signatures at ``threshold`` (also when the card has no report).

    Args:
        card: The dataset's card.
        catalog: Its ``catalog.parquet`` table.
        threshold: The cosine similarity (``None``: the card's, else the build's default).

    Returns:
        As :func:`pairgen.scanning.near.cross_split` (plus the card's ``dedupe``); ``{}``
        when the catalog has no signatures.
    """
    if threshold is None and card.near_duplicates:
        return dict(card.near_duplicates)
    signatures = mf.catalog_signatures(catalog)
    if signatures is None:
        return {}
    chosen = threshold if threshold is not None else card.config.get("split", {}).get("near_threshold", NEAR_THRESHOLD)
    report = near.cross_split(catalog, signatures, float(chosen))
    report["dedupe"] = card.config.get("split", {}).get("dedupe") == NEAR
    return report


def _leakage(card: Card, classes: dict[str, list[str]]) -> dict[str, Any]:
    out = dict(card.leakage)
    if card.config.get("split", {}).get("by") == "class":
        seen: dict[str, list[str]] = {}
        for split, names in classes.items():
            for name in names:
                seen.setdefault(name, []).append(split)
        shared = {k: v for k, v in sorted(seen.items()) if len(v) > 1}
        out["shared_classes"] = len(shared)
        out["shared_class_examples"] = dict(list(shared.items())[:_EXAMPLES])
    return out


def format_inspect(info: dict[str, Any]) -> str:
    """The text ``pairgen inspect`` prints."""
    src, img, sh = info["source"], info["image"], info["shards"]
    lines = [
        f"{info['name']} {info['version']} ({info['kind']})  {info['path']}",
        f"fingerprint  {info['fingerprint']}",
        *([f"splits fp    {info['split_fingerprint']}"] if info.get("split_fingerprint") else []),
        f"parent       {info['parent'] or '-'}",
        f"created      {info['created_at']} with pairgen {info['pairgen_version']}",
        f"source       {src['root']} ({src['layout']}): {src['images']:,} images in {src['classes']:,} classes",
        f"image        {img['height']}x{img['width']}x{img['channels']} {img['encoding']}",
        "shards       none (manifest-only build)" if info["manifest_only"] else
        f"shards       {sh['count']} files, {sh['bytes'] / 1e6:,.1f} MB ({info['compression']})",
        "splits:",
    ]
    for name, s in info["splits"].items():
        balance = (f", {s['positives']:,} pos / {s['negatives']:,} neg ({s['positive_fraction']:.1%} positive)"
                   if "positives" in s else "")
        names = ", ".join(s["class_names"][:6]) + (", ..." if len(s["class_names"]) > 6 else "")
        lines.append(f"  {name:<8}{s['records']:>10,} records{balance}")
        lines.append(f"  {'':<8}{s.get('images', 0):>10,} images in {s.get('classes', 0):,} classes: {names}")
        if s.get("images_without_positive"):
            lines.append(f"  {'':<8}{s['images_without_positive']:>10,} images alone in their class here: "
                         "no positive (negatives only)")
    lines.append(f"skipped      {src['skipped']:,} source files")
    lines += [f"  {n:>8,}  {reason}" for reason, n in sorted(src.get("skipped_by_reason", {}).items())]
    conflicts = src.get("label_conflicts", {})
    lines.append(f"label conflicts {conflicts.get('groups', 0):,} identical-content group(s) under more than "
                 f"one class ({conflicts.get('images', 0):,} images)")
    lines += ["  " + "  ==  ".join(group) for group in conflicts.get("examples", [])]
    leak = info["leakage"]
    lines.append(f"leakage      {leak.get('groups', 0):,} identical-content group(s) across splits "
                 f"({leak.get('images', 0):,} images)")
    lines += ["  " + "  ==  ".join(group) for group in leak.get("examples", [])]
    if "shared_classes" in leak:
        lines.append(f"             {leak['shared_classes']:,} class(es) in more than one split")
    lines += format_near(info.get("near_duplicates") or {})
    if len(info["versions"]) > 1:
        lines.append("versions:")
        lines += [f"  {v['version']:<10}{str(v['fingerprint'])[:12]}  {v['created_at']}  "
                  f"{'(latest) ' if v['latest'] else ''}{v['path']}" for v in info["versions"]]
    return "\n".join(lines)


def format_near(near: dict[str, Any]) -> list[str]:
    """The near-duplicate lines of ``pairgen inspect``: totals, then per split pair with examples."""
    if not near:
        return ["near dups    not computed (no signatures in catalog.parquet; rebuild to get them)"]
    lines = [f"near dups    {near['pairs']:,} near-duplicate pair(s) across splits at cosine >= {near['threshold']:g} "
             f"({near['groups']:,} group(s), {near['images']:,} images)"
             + (" after --dedupe near" if near.get("dedupe") else "")]
    for key, entry in near.get("by_split_pair", {}).items():
        lines.append(f"  {key:<16}{entry['pairs']:>8,} pair(s)")
        lines += [f"    {a}  ~~  {b}  ({sim:.4f})" for a, b, sim in entry.get("examples", [])]
    return lines


# --------------------------------------------------------------------------- diff


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; empty dicts stay leaves."""
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: obj}


def _config_changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    fa, fb = _flatten(a), _flatten(b)
    try:
        hashed = set(_flatten(BuildConfig.from_dict(a).to_dict(hashed=True)))
    except PairgenError:
        hashed = set(fa)
    return [{"key": k, "a": fa.get(k), "b": fb.get(k), "hashed": k in hashed}
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def _image_changes(cat_a: pd.DataFrame, cat_b: pd.DataFrame) -> dict[str, Any]:
    a = cat_a.set_index("path")["sha256"]
    b = cat_b.set_index("path")["sha256"]
    added = sorted(set(b.index) - set(a.index))
    removed = sorted(set(a.index) - set(b.index))
    both = sorted(set(a.index) & set(b.index))
    changed = [p for p in both if a[p] != b[p]]
    return {"added": len(added), "removed": len(removed), "changed": len(changed),
            "unchanged": len(both) - len(changed),
            "examples": {"added": added[:_EXAMPLES], "removed": removed[:_EXAMPLES],
                         "changed": changed[:_EXAMPLES]}}


def _near_changes(cat_a: pd.DataFrame, cat_b: pd.DataFrame, threshold: float) -> dict[str, Any] | None:
    """Which of B's changed and added images are near duplicates of A's (from the catalogs'
    signatures; ``None`` when either catalog has none)."""
    sig_a, sig_b = mf.catalog_signatures(cat_a), mf.catalog_signatures(cat_b)
    if sig_a is None or sig_b is None:
        return None
    path_a = cat_a["path"].to_numpy(object)
    path_b = cat_b["path"].to_numpy(object)
    in_a = pd.Index(path_a).get_indexer(path_b)  # each of B's images' row in A, -1 for a new path
    both = np.flatnonzero(in_a >= 0)
    changed = both[cat_a["sha256"].to_numpy(object)[in_a[both]] != cat_b["sha256"].to_numpy(object)[both]]
    alike = near.cosines(sig_a[in_a[changed]], sig_b[changed]) >= threshold  # as the search judges pairs
    added = np.flatnonzero(in_a < 0)
    # A's images and B's added ones in one search; a pair joining the two sides is an added near copy
    found = near.near_pairs(np.concatenate([sig_a, sig_b[added]]), threshold)
    cross = (found.a < len(cat_a)) & (found.b >= len(cat_a))
    first: dict[int, int] = {}
    for a_row, b_pos in zip(found.a[cross].tolist(), found.b[cross].tolist()):
        first.setdefault(int(added[b_pos - len(cat_a)]), a_row)
    copies = sorted(first, key=lambda r: path_b[r])
    return {"threshold": float(threshold), "changed_alike": int(alike.sum()),
            "added_near_a": len(copies),
            "examples": {"changed_alike": sorted(str(p) for p in path_b[changed[alike]])[:_EXAMPLES],
                         "added_near_a": [[str(path_b[r]), str(path_a[first[r]])] for r in copies[:_EXAMPLES]]}}


def _class_changes(cat_a: pd.DataFrame, cat_b: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    ca, cb = _split_classes(cat_a), _split_classes(cat_b)
    out = {}
    for split in split_order(set(ca) | set(cb)):
        sa, sb = set(ca.get(split, [])), set(cb.get(split, []))
        out[split] = {"added": sorted(sb - sa), "removed": sorted(sa - sb)}
    return out


def _record_keys(root: Path, card: Card, split: str, catalog: pd.DataFrame,
                 codes: pd.Series) -> pd.Series:
    """One row count per record content key (image content codes plus label)."""
    path = root / layout.manifest(split)
    if layout.manifest(split) not in card.files:
        return pd.Series(dtype="int64")
    table = mf.read_table(path)
    code_of = catalog.set_index("image_id")["sha256"].map(codes)
    schema = schema_of(card.kind)
    codes_by_role = np.stack([code_of.reindex(table[c]).to_numpy() for c in schema.id_columns], axis=1)
    if schema.symmetric:  # unordered: (a, b) and (b, a) are the same pair
        codes_by_role = np.sort(codes_by_role, axis=1)
    keys = pd.DataFrame(codes_by_role, columns=list(schema.role_names))
    if schema.labelled:
        keys[LABEL] = table[LABEL].to_numpy()
    return keys.value_counts()


def _record_changes(ra: Path, ca: Card, rb: Path, cb: Card, cat_a: pd.DataFrame,
                    cat_b: pd.DataFrame) -> dict[str, dict[str, int]]:
    if ca.kind != cb.kind:
        return {}
    shas = pd.Index(sorted(set(cat_a["sha256"]) | set(cat_b["sha256"])))
    codes = pd.Series(range(len(shas)), index=shas)
    out = {}
    for split in split_order(set(ca.splits) | set(cb.splits)):
        ka = _record_keys(ra, ca, split, cat_a, codes)
        kb = _record_keys(rb, cb, split, cat_b, codes)
        both = pd.concat([ka.rename("a"), kb.rename("b")], axis=1).fillna(0)
        common = int(both.min(axis=1).sum()) if len(both) else 0
        out[split] = {"common": common, "only_a": int(ka.sum()) - common, "only_b": int(kb.sum()) - common}
    return out


def _count_changes(ca: Card, cb: Card) -> dict[str, dict[str, dict[str, int]]]:
    out = {}
    for split in split_order(set(ca.splits) | set(cb.splits)):
        sa, sb = ca.splits.get(split, {}), cb.splits.get(split, {})
        out[split] = {k: {"a": int(sa.get(k, 0)), "b": int(sb.get(k, 0)), "delta": int(sb.get(k, 0)) - int(sa.get(k, 0))}
                      for k in _COUNT_KEYS if k in sa or k in sb}
    return out


def diff(a: str | os.PathLike, b: str | os.PathLike) -> dict[str, Any]:
    """Compare two datasets.

    Args:
        a: The first dataset directory (``dir``, ``dir@version`` or ``dir@fingerprint-prefix``).
        b: The second one.

    Returns:
        ``identical`` (same fingerprint), ``split_match`` (same split assignment, by split
        fingerprint; ``None`` when a card predates it), ``a`` and ``b`` (path, name, version,
        fingerprint, kind), ``config`` (differing dotted keys with both values and whether the key is
        fingerprinted), ``classes`` (per split: added and removed class names, B against A),
        ``images`` (added / removed / changed / unchanged by relative path and content hash,
        with examples), ``near`` (from the catalogs' near-duplicate signatures, at B's
        ``near_threshold``: ``changed_alike``, the changed images whose new content is a near
        duplicate of the old, e.g. re-encoded; ``added_near_a``, the added images that are near
        duplicates of one of A's images, with examples; ``None`` when a catalog has no
        signatures), ``records`` (per split: common, only_a, only_b, by content) and
        ``counts`` (per split: a, b and delta of records, positives, negatives, images,
        classes).

    Raises:
        DatasetError: If either path is not a finished dataset.
    """
    ra, rb = resolve(a), resolve(b)
    ca, cb = read_card(ra), read_card(rb)
    cat_a, cat_b = _catalog(ra), _catalog(rb)
    return {
        "identical": ca.fingerprint == cb.fingerprint,
        "split_match": split_match(ca, cb),
        "a": _head(ra, ca), "b": _head(rb, cb),
        "config": _config_changes(ca.config, cb.config),
        "classes": _class_changes(cat_a, cat_b),
        "images": _image_changes(cat_a, cat_b),
        "near": _near_changes(cat_a, cat_b, float(cb.config.get("split", {}).get("near_threshold", NEAR_THRESHOLD))),
        "records": _record_changes(ra, ca, rb, cb, cat_a, cat_b),
        "counts": _count_changes(ca, cb),
    }


def split_match(a: Card, b: Card) -> bool | None:
    """Whether two datasets assign the same images to the same splits (``None``: a card lacks it)."""
    if a.split_fingerprint is None or b.split_fingerprint is None:
        return None
    return a.split_fingerprint == b.split_fingerprint


def _head(root: Path, card: Card) -> dict[str, Any]:
    return {"path": str(root), "name": card.name, "version": card.version,
            "fingerprint": card.fingerprint, "kind": card.kind.value}


def format_diff(d: dict[str, Any]) -> str:
    """The text ``pairgen diff`` prints."""
    a, b = d["a"], d["b"]
    lines = [f"A  {a['name']} {a['version']} {a['fingerprint'][:12]}  {a['path']}",
             f"B  {b['name']} {b['version']} {b['fingerprint'][:12]}  {b['path']}",
             "identical fingerprints" if d["identical"] else "fingerprints differ"]
    if a["kind"] != b["kind"]:
        lines.append(f"kind: {a['kind']} -> {b['kind']} (records are not compared)")
    if d.get("split_match") is not None:
        lines.append("splits: same images in the same splits" if d["split_match"]
                     else "splits: the images are split differently")
    lines.append("config:" if d["config"] else "config: same")
    lines += [f"  {c['key']}: {c['a']!r} -> {c['b']!r}{'' if c['hashed'] else '  (not fingerprinted)'}"
              for c in d["config"]]
    im = d["images"]
    lines.append(f"images: {im['added']:,} added, {im['removed']:,} removed, {im['changed']:,} changed "
                 f"(by content), {im['unchanged']:,} unchanged")
    for what, mark in (("added", "+"), ("removed", "-"), ("changed", "~")):
        lines += [f"  {mark} {p}" for p in im["examples"][what]]
    nd = d.get("near")
    if nd and (im["changed"] or im["added"]):
        lines.append(f"near duplicates (signatures, cosine >= {nd['threshold']:g}): {nd['changed_alike']:,} of the "
                     f"{im['changed']:,} changed look the same (re-encoded, resized or re-lit); "
                     f"{nd['added_near_a']:,} of the {im['added']:,} added are near copies of A's images")
        lines += [f"  = {p}" for p in nd["examples"]["changed_alike"]]
        lines += [f"  + {p}  ~ {q}" for p, q in nd["examples"]["added_near_a"]]
    for split, ch in d["classes"].items():
        if ch["added"] or ch["removed"]:
            lines.append(f"classes {split}: +{len(ch['added'])} {', '.join(ch['added'][:_EXAMPLES])}  "
                         f"-{len(ch['removed'])} {', '.join(ch['removed'][:_EXAMPLES])}")
    if d["records"]:
        lines.append(f"records by content  {'common':>10} {'only A':>10} {'only B':>10}")
    lines += [f"  {s:<17} {r['common']:>10,} {r['only_a']:>10,} {r['only_b']:>10,}" for s, r in d["records"].items()]
    lines.append("counts (A -> B):")
    for split, counts in d["counts"].items():
        parts = [f"{k} {v['a']:,} -> {v['b']:,} ({v['delta']:+,})" for k, v in counts.items() if v["delta"]]
        lines.append(f"  {split:<8}" + ("; ".join(parts) or "same"))
    return "\n".join(lines)
