"""One self-contained HTML page about a dataset (``pairgen report``).

The page holds the card (name, version, fingerprints, parent, config), the counts of every
split and its class balance as charts, the positives and negatives (or the triplet roles), a
grid of sample records per split decoded from the shards, the skipped files by reason, the
exact duplicate, label-conflict, leakage and near-duplicate groups with thumbnails, image size and channel
histograms from the catalog and, with ``against``, what :func:`pairgen.tools.inspection.diff`
finds between two datasets.

Self-contained: no script, no font, no stylesheet or image outside the file (thumbnails are
``data:`` URIs, charts inline SVG drawn here), so it opens from disk with no network. Bounded:
the grids read a few records per split from at most a window of each chosen shard, the charts
aggregate (over :data:`MAX_BARS` classes become a histogram of class sizes), and the manifests
are never read (except by ``against``, which is ``pairgen diff``). The same dataset always gives
the same bytes.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from pairgen.codec.images import decode, decode_record_image
from pairgen.codec.sourceio import read_source
from pairgen.dataset import layout
from pairgen.dataset import tables as mf
from pairgen.dataset.card import Card, read_card
from pairgen.dataset.versions import resolve
from pairgen.errors import ConfigError, DatasetError, PairgenError
from pairgen.scanning.catalog import reason_kind
from pairgen.spec.schema import LABEL, schema_of
from pairgen.tools.inspection import diff, inspect, split_order
from pairgen.tools.preview import pick_indices, read_records

MAX_BARS = 40  # more classes than this are charted as a histogram of class sizes
SHARD_WINDOW = 20_000  # sample records come from the first records of a shard, never further in
THUMB = 96  # longest side of a thumbnail, pixels
MAX_SPLITS = 8  # sample grids for at most this many splits
EXAMPLES = 4  # example files per skip reason
POS, NEG, NEUTRAL, MUTED = "#1b8a3a", "#c62828", "#3465a4", "#8a8a8a"
SERIES = ("#3465a4", "#e07b00", "#1b8a3a", "#8e44ad", "#c62828", "#00838f", "#6d4c41", "#546e7a")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}pre{background:#f0f0f0;padding:8px;overflow:auto}
.sub{color:#555}.grid{display:flex;flex-wrap:wrap;gap:10px}.rec{background:#fff;border:2px solid #ccc;border-radius:4px;padding:4px}
.rec.pos{border-color:#1b8a3a}.rec.neg{border-color:#c62828}.tag{font-weight:600;font-size:12px}.tag.pos{color:#1b8a3a}.tag.neg{color:#c62828}
.imgs{display:flex;gap:4px}figure{margin:0;text-align:center}figcaption{font-size:11px;color:#444;max-width:110px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
img.t{image-rendering:pixelated;background:#222;display:block;margin:0 auto}.ok{color:#1b8a3a}.bad{color:#c62828}
.group{display:flex;gap:8px;align-items:flex-end;background:#fff;border:1px solid #ddd;padding:6px;margin:6px 0}
.missing{width:64px;height:64px;display:flex;align-items:center;justify-content:center;background:#eee;color:#777;font-size:10px;text-align:center}
svg{display:block;margin:4px 0}svg text{font:11px system-ui,sans-serif;fill:#333}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _n(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | np.integer) else _e(value)


# --------------------------------------------------------------------------- charts


def bar_chart(rows: Sequence[tuple[str, Sequence[float]]], *, series: Sequence[str] = (), colors: Sequence[str] = (),
              title: str = "", width: int = 640) -> str:
    """An inline SVG of horizontal (stacked) bars: one row per label, one segment per series.

    Args:
        rows: ``(label, values)``, one value per series (all non-negative).
        series: Series names for the legend (no legend for one series).
        colors: One color per series (defaults to :data:`SERIES`).
        title: Text above the bars.
        width: Width of the drawing in pixels.

    Returns:
        An ``<svg>`` element.
    """
    colors = list(colors) or list(SERIES)
    label_w, value_w, bar_h, gap = 150, 90, 16, 4
    top = 18 if title else 2
    legend = 18 if len(series) > 1 else 0
    height = top + legend + len(rows) * (bar_h + gap) + 4
    peak = max((sum(v) for _, v in rows), default=0) or 1
    scale = (width - label_w - value_w) / peak
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    if title:
        parts.append(f'<text x="0" y="12" font-weight="600">{_e(title)}</text>')
    x = label_w
    for i, name in enumerate(series if legend else ()):
        parts.append(f'<rect x="{x}" y="{top + 2}" width="10" height="10" fill="{colors[i % len(colors)]}"/>'
                     f'<text x="{x + 14}" y="{top + 11}">{_e(name)}</text>')
        x += 24 + 7 * len(name)
    for r, (label, values) in enumerate(rows):
        y = top + legend + r * (bar_h + gap)
        short = label if len(label) <= 22 else ".." + label[-20:]
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end"><title>{_e(label)}</title>{_e(short)}</text>')
        x0 = float(label_w)
        for i, value in enumerate(values):
            w = value * scale
            if w > 0:
                parts.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" '
                             f'fill="{colors[i % len(colors)]}"><title>{_e(label)}: {value:,.0f}</title></rect>')
            x0 += w
        total = sum(values)
        parts.append(f'<text x="{x0 + 4:.1f}" y="{y + 12}">{total:,.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_rows(values: np.ndarray, bins: int = 12) -> list[tuple[str, list[float]]]:
    """Integer ``values`` binned for :func:`bar_chart`: one row per distinct value when few, else ranges."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return []
    distinct, per_value = np.unique(values, return_counts=True)
    if len(distinct) <= bins:
        return [(f"{int(k):,}", [float(c)]) for k, c in zip(distinct, per_value)]
    lo, hi = int(values.min()), int(values.max())
    step = max(1, math.ceil((hi - lo + 1) / bins))
    edges = np.arange(lo, hi + step + 1, step)
    binned, _ = np.histogram(values, bins=edges)
    return [(f"{int(a):,}-{int(b) - 1:,}", [float(c)]) for a, b, c in zip(edges[:-1], edges[1:], binned)]


# --------------------------------------------------------------------------- images


def thumbnail_uri(pixels: np.ndarray) -> str:
    """A ``data:`` URI of an RGB or gray uint8 image, its longest side at most :data:`THUMB` (PNG;
    JPEG for color images larger than 48 px, to keep the page small)."""
    img = pixels if pixels.ndim == 3 else pixels[:, :, None]
    h, w = img.shape[:2]
    if max(h, w) > THUMB:
        k = THUMB / max(h, w)
        img = cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
        img = img if img.ndim == 3 else img[:, :, None]
    bgr = img[:, :, 0] if img.shape[2] == 1 else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    if img.shape[2] == 3 and max(img.shape[:2]) > 48:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_JPEG_OPTIMIZE, 0])
        mime = "image/jpeg"
    else:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        mime = "image/png"
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise DatasetError("cannot encode a thumbnail")
    return f"data:{mime};base64,{base64.b64encode(buf.tobytes()).decode('ascii')}"


def _img(pixels: np.ndarray, caption: str, title: str = "") -> str:
    h, w = pixels.shape[:2]
    k = max(1, 72 // max(h, w))  # small images are shown enlarged (pixelated)
    shown = (h * k, w * k) if max(h, w) * k <= THUMB else (h, w)
    if max(shown) > THUMB:
        s = THUMB / max(shown)
        shown = (max(1, round(shown[0] * s)), max(1, round(shown[1] * s)))
    return (f'<figure><img class="t" src="{thumbnail_uri(pixels)}" width="{shown[1]}" height="{shown[0]}" '
            f'alt="{_e(caption)}" title="{_e(title or caption)}"><figcaption>{_e(caption)}</figcaption></figure>')


def _source_figure(root: Path | None, rel: str, caption: str) -> str:
    """A thumbnail of a source file, or a grey box saying why there is none."""
    why = "source not found"
    if root is not None:
        try:
            pixels = decode(read_source(str(root / rel)), channels=3, source=rel)
            return _img(pixels, caption, rel)
        except OSError:
            why = "file not found"
        except PairgenError:
            why = "does not decode"
    return f'<figure title="{_e(rel)}"><div class="missing">{_e(why)}</div><figcaption>{_e(caption)}</figcaption></figure>'


# --------------------------------------------------------------------------- sections


def sample_indices(sizes: Sequence[int], count: int, window: int = SHARD_WINDOW) -> list[int]:
    """Up to ``count`` record indices of a split whose shards hold ``sizes`` records each.

    The records are spread over shards chosen evenly (first and last included), and within each
    shard over its first ``window`` records, so a sample costs at most ``count * window`` record
    headers whatever the size of the split.
    """
    sizes = [int(s) for s in sizes]
    starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(int).tolist() if sizes else []
    filled = [i for i, s in enumerate(sizes) if s > 0]
    if not filled or count < 1:
        return []
    chosen = [filled[i] for i in pick_indices(len(filled), count)]
    out: list[int] = []
    for j, shard in enumerate(chosen):
        want = count // len(chosen) + (1 if j < count % len(chosen) else 0)
        out += [starts[shard] + i for i in pick_indices(min(sizes[shard], window), want)]
    return sorted(out)


def _card_section(info: dict[str, Any], card: Card) -> str:
    src, img, sh = info["source"], info["image"], info["shards"]
    rows = [
        ("name", info["name"]), ("version", info["version"]), ("kind", info["kind"]),
        ("fingerprint", f"<code>{_e(info['fingerprint'])}</code>"),
        ("split fingerprint", f"<code>{_e(info.get('split_fingerprint') or '-')}</code>"),
        ("parent", f"<code>{_e(info['parent'] or '-')}</code>"),
        ("created", f"{_e(info['created_at'])} with pairgen {_e(info['pairgen_version'])}"),
        ("source", f"<code>{_e(src['root'])}</code> ({_e(src['layout'])}): {_n(src['images'])} images in "
                   f"{_n(src['classes'])} classes, {_n(src['skipped'])} skipped"),
        ("image", f"{img['height']}x{img['width']}x{img['channels']} {_e(img['encoding'])}"),
        ("shards", "none (manifest-only build)" if info["manifest_only"] else
         f"{_n(sh['count'])} files, {sh['bytes'] / 1e6:,.1f} MB ({_e(info['compression'])})"),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v if k in _RAW_ROWS else _e(v)}</td></tr>" for k, v in rows)
    config = json.dumps(card.config, indent=2, sort_keys=True, default=str)
    versions = ""
    if len(info["versions"]) > 1:
        vrows = "".join(f"<tr><td>{_e(v['version'])}</td><td><code>{_e(str(v['fingerprint'])[:12])}</code></td>"
                        f"<td>{_e(v['created_at'])}</td><td>{'latest' if v['latest'] else ''}</td></tr>"
                        for v in info["versions"])
        versions = f"<h3>Versions</h3><table><tr><th>version</th><th>fingerprint</th><th>created</th><th></th></tr>{vrows}</table>"
    return (f'<h2 id="card">Card</h2><table>{body}</table>{versions}'
            f"<details><summary>config (dataset.json)</summary><pre>{_e(config)}</pre></details>")


_RAW_ROWS = {"fingerprint", "split fingerprint", "parent", "source", "image", "created"}


def _splits_section(info: dict[str, Any]) -> str:
    splits = info["splits"]
    labelled = info["kind"] == "pairs"
    keys = ["records", *(["positives", "negatives", "positive_fraction"] if labelled else []),
            "images", "classes", "images_without_positive"]
    keys = [k for k in keys if any(k in s for s in splits.values())]
    head = "".join(f'<th class="n">{_e(k.replace("_", " "))}</th>' for k in keys)
    body = "".join(f'<tr><th>{_e(name)}</th>' + "".join(
        f'<td class="n">{(f"{s[k]:.1%}" if k == "positive_fraction" else _n(s.get(k, 0)))}</td>' for k in keys) + "</tr>"
        for name, s in splits.items())
    table = f'<table id="split-counts"><tr><th>split</th>{head}</tr>{body}</table>'
    if labelled:
        chart = bar_chart([(n, [s.get("positives", 0), s.get("negatives", 0)]) for n, s in splits.items()],
                          series=["positives", "negatives"], colors=[POS, NEG], title="records per split")
    else:
        chart = bar_chart([(n, [s.get("records", 0)]) for n, s in splits.items()], title="records per split")
    roles = schema_of(info["kind"]).role_names
    what = {"pairs": "Each record is two images and a label: 1 (positive) when both are of one class, 0 (negative) otherwise.",
            "triplets": "Each record is three images in the roles " + ", ".join(roles) +
                        ": anchor and positive share a class, the negative is of another class.",
            "images": "Each record is one image and its class (for P x K batches)."}.get(info["kind"], "")
    return f'<h2 id="splits">Splits</h2><p class="sub">{_e(what)}</p>{table}{chart}'


def _balance_section(catalog: pd.DataFrame, splits: list[str]) -> str:
    known = catalog[catalog["split"].notna()]
    per = known.groupby(["class_name", "split"]).size().unstack(fill_value=0)
    per = per.reindex(columns=[s for s in splits if s in per.columns], fill_value=0)
    if per.empty:
        return '<h2 id="balance">Class balance</h2><p>No image is assigned to a split.</p>'
    series = [str(c) for c in per.columns]
    if len(per) <= MAX_BARS:
        rows = [(str(name), [float(v) for v in row]) for name, row in zip(per.index, per.to_numpy())]
        chart = bar_chart(rows, series=series, title=f"images per class ({len(per):,} classes), by split")
    else:
        charts = []
        for s in series:
            sizes = per[s][per[s] > 0].to_numpy()
            charts.append(bar_chart(histogram_rows(sizes), title=f"{s}: classes by number of images "
                                    f"({len(sizes):,} classes; min {sizes.min():,}, median {np.median(sizes):,.0f}, "
                                    f"max {sizes.max():,})", colors=[NEUTRAL]))
        chart = "".join(charts)
    return f'<h2 id="balance">Class balance</h2>{chart}'


def _record_html(rec: dict[str, list], kind: str, card: Card, names: dict[int, str]) -> str:
    schema = schema_of(kind)
    shape = card.image.shape
    figs = []
    for role in schema.roles:
        pixels = decode_record_image(rec[role.image_key][0], card.image.encoding, shape)
        cls = names.get(int(rec[role.class_key][0]), str(rec[role.class_key][0]))
        caption = f"{role.name}: {cls}" if len(schema.roles) > 1 and not schema.labelled else cls
        figs.append(_img(pixels, caption))
    tag, cls_attr = "", ""
    if schema.labelled:
        positive = int(rec[LABEL][0]) == 1
        cls_attr = " pos" if positive else " neg"
        tag = f'<div class="tag{cls_attr}">{"positive (1)" if positive else "negative (0)"}</div>'
    return f'<div class="rec{cls_attr}">{tag}<div class="imgs">{"".join(figs)}</div></div>'


def _samples_section(root: Path, card: Card, names: dict[int, str], splits: list[str], per_split: int) -> str:
    out = ['<h2 id="samples">Sample records</h2>']
    if card.manifest_only or not card.shards:
        return out[0] + "<p>This dataset was built with --manifest-only: it has no shards to show.</p>"
    out.append(f'<p class="sub">Up to {per_split} records per split, spread over its shards, decoded from the shards '
               "(what a loader reads).</p>")
    for split in splits[:MAX_SPLITS]:
        sizes = [int(e["records"]) for e in card.shards.get(split, [])]
        indices = sample_indices(sizes, per_split)
        recs = read_records(root, card, split, indices) if indices else []
        cells = "".join(_record_html(r, card.kind.value, card, names) for r in recs)
        out.append(f'<h3>{_e(split)}</h3><div class="grid" data-split="{_e(split)}">{cells or "no records"}</div>')
    if len(splits) > MAX_SPLITS:
        out.append(f"<p>{len(splits) - MAX_SPLITS} more split(s) not shown.</p>")
    return "".join(out)


def _skipped_section(root: Path, source: Path | None, info: dict[str, Any]) -> str:
    out = ['<h2 id="skipped">Skipped files</h2>']
    path = root / layout.SKIPPED
    skipped = mf.read_table(path) if path.is_file() else pd.DataFrame(columns=["path", "reason"])
    if skipped.empty:
        return out[0] + "<p>None: every file of the source is an image in the dataset.</p>"
    skipped = skipped.sort_values("path", kind="stable")
    kinds = skipped["reason"].map(reason_kind)
    counts = kinds.value_counts().sort_index()
    out.append(bar_chart([(str(k), [float(v)]) for k, v in counts.items()], colors=[MUTED],
                         title=f"{len(skipped):,} skipped files by reason"))
    for kind_name in counts.index:
        rows = skipped[kinds == kind_name].head(EXAMPLES)
        figs = "".join(_source_figure(source, str(p), Path(str(p)).name) for p in rows["path"])
        reasons = "".join(f"<li><code>{_e(p)}</code>: {_e(r)}</li>" for p, r in zip(rows["path"], rows["reason"]))
        out.append(f'<h3>{_e(kind_name)} ({counts[kind_name]:,})</h3><div class="group">{figs}</div><ul>{reasons}</ul>')
    return "".join(out)


def _groups_html(source: Path | None, groups: list[list[str]], catalog: pd.DataFrame) -> str:
    where = dict(zip(catalog["path"].astype(str), catalog["split"].astype(object)))
    out = []
    for group in groups:
        figs = []
        for item in group:
            rel = item.rsplit(" (", 1)[0] if item.endswith(")") and item not in where else item
            split = where.get(rel)
            caption = f"{Path(rel).name} [{split}]" if isinstance(split, str) else Path(rel).name
            figs.append(_source_figure(source, rel, caption))
        out.append(f'<div class="group">{"".join(figs)}</div>')
    return "".join(out)


def _duplicates_section(source: Path | None, catalog: pd.DataFrame, info: dict[str, Any]) -> str:
    dup = catalog[catalog.duplicated("sha256", keep=False)].sort_values("path", kind="stable")
    groups = [g["path"].astype(str).tolist() for _, g in dup.groupby("sha256", sort=False)]
    groups.sort(key=lambda g: g[0])
    leak = info["leakage"]
    conflicts = info["source"].get("label_conflicts", {})
    out = ['<h2 id="duplicates">Duplicates and leakage</h2>',
           f'<h3>Exact duplicates: {len(groups):,} group(s) of identical content ({len(dup):,} images)</h3>',
           _groups_html(source, groups[:EXAMPLES + 1], catalog),
           f'<h3 class="{"bad" if leak.get("groups") else "ok"}">Leakage: {leak.get("groups", 0):,} identical-content '
           f'group(s) across splits ({leak.get("images", 0):,} images)</h3>',
           _groups_html(source, leak.get("examples", []), catalog)]
    if "shared_classes" in leak:
        out.append(f"<p>{leak['shared_classes']:,} class(es) in more than one split.</p>")
    out.append(near_duplicates_html(source, info.get("near_duplicates") or {}, catalog))
    out += [f'<h3 class="{"bad" if conflicts.get("groups") else "ok"}">Label conflicts: {conflicts.get("groups", 0):,} '
            f'identical-content group(s) under more than one class ({conflicts.get("images", 0):,} images)</h3>',
            _groups_html(source, conflicts.get("examples", []), catalog)]
    return "".join(out)


def near_duplicates_html(source: Path | None, near: dict[str, Any], catalog: pd.DataFrame) -> str:
    """The near-duplicates part of the duplicates section, from ``inspect``'s ``near_duplicates``
    (``threshold``, ``pairs``, ``groups``, ``images``, ``top_groups`` as ``[[path, split], ...]``);
    empty when the dataset has no near-duplicate report."""
    if not near:
        return ""
    head = (f'<h3 class="{"bad" if near.get("pairs") else "ok"}">Near duplicates across splits: '
            f'{int(near.get("pairs", 0)):,} pair(s) at cosine similarity >= {near.get("threshold", "?")}, '
            f'{int(near.get("groups", 0)):,} group(s) ({int(near.get("images", 0)):,} images)</h3>')
    groups = [[str(member[0]) for member in group] for group in near.get("top_groups", [])]
    return head + _groups_html(source, groups[:EXAMPLES + 1], catalog)


def _sizes_section(catalog: pd.DataFrame) -> str:
    if catalog.empty:
        return ""
    charts = [
        bar_chart(histogram_rows(catalog["width"].to_numpy()), title="source image width (pixels)", colors=[NEUTRAL]),
        bar_chart(histogram_rows(catalog["height"].to_numpy()), title="source image height (pixels)", colors=[NEUTRAL]),
        bar_chart(histogram_rows(catalog["channels"].to_numpy()), title="source image channels", colors=[NEUTRAL]),
    ]
    return '<h2 id="sizes">Source images</h2><p class="sub">From catalog.parquet: every image of the dataset, before resizing.</p>' + "".join(charts)


def _diff_section(d: dict[str, Any]) -> str:
    a, b = d["a"], d["b"]
    out = ['<h2 id="diff">Compared with another dataset</h2><table>',
           *(f"<tr><th>{k}</th><td>{_e(v['name'])} {_e(v['version'])} <code>{_e(v['fingerprint'][:12])}</code> "
             f"<code>{_e(v['path'])}</code></td></tr>" for k, v in (("A (other)", a), ("B (this)", b))),
           "</table>",
           f'<p class="{"ok" if d["identical"] else "bad"}">'
           f'{"identical fingerprints" if d["identical"] else "fingerprints differ"}'
           + ("" if d.get("split_match") is None else
              "; same images in the same splits" if d["split_match"] else "; the images are split differently")
           + "</p>"]
    if a["kind"] != b["kind"]:
        out.append(f"<p>kind: {_e(a['kind'])} -> {_e(b['kind'])} (records are not compared)</p>")
    if d["config"]:
        rows = "".join(f"<tr><td><code>{_e(c['key'])}</code></td><td><code>{_e(json.dumps(c['a'], default=str))}</code></td>"
                       f"<td><code>{_e(json.dumps(c['b'], default=str))}</code></td><td>{'yes' if c['hashed'] else 'no'}</td></tr>"
                       for c in d["config"])
        out.append(f"<h3>Config</h3><table><tr><th>key</th><th>A</th><th>B</th><th>fingerprinted</th></tr>{rows}</table>")
    else:
        out.append("<h3>Config: same</h3>")
    im = d["images"]
    out.append(f"<h3>Images</h3><p>{im['added']:,} added, {im['removed']:,} removed, {im['changed']:,} changed "
               f"(by content), {im['unchanged']:,} unchanged</p>")
    ex = [f"<li>{mark} <code>{_e(p)}</code></li>" for what, mark in (("added", "+"), ("removed", "-"), ("changed", "~"))
          for p in im["examples"][what]]
    if ex:
        out.append(f"<ul>{''.join(ex)}</ul>")
    nd = d.get("near")
    if nd and (im["changed"] or im["added"]):
        out.append(f"<p>Near duplicates (signatures, cosine &ge; {nd['threshold']:g}): {nd['changed_alike']:,} of the "
                   f"{im['changed']:,} changed images look the same (re-encoded, resized or re-lit); "
                   f"{nd['added_near_a']:,} of the {im['added']:,} added images are near copies of A's.</p>")
        near_ex = [f"<li>= <code>{_e(p)}</code></li>" for p in nd["examples"]["changed_alike"]]
        near_ex += [f"<li>+ <code>{_e(p)}</code> ~ <code>{_e(q)}</code></li>" for p, q in nd["examples"]["added_near_a"]]
        if near_ex:
            out.append(f"<ul>{''.join(near_ex)}</ul>")
    cls = [(s, c) for s, c in d["classes"].items() if c["added"] or c["removed"]]
    if cls:
        rows = "".join(f"<tr><td>{_e(s)}</td><td>+{len(c['added'])} {_e(', '.join(c['added'][:5]))}</td>"
                       f"<td>-{len(c['removed'])} {_e(', '.join(c['removed'][:5]))}</td></tr>" for s, c in cls)
        out.append(f"<h3>Classes</h3><table><tr><th>split</th><th>added</th><th>removed</th></tr>{rows}</table>")
    if d["records"]:
        out.append(bar_chart([(s, [r["common"], r["only_a"], r["only_b"]]) for s, r in d["records"].items()],
                             series=["common", "only A", "only B"], colors=[NEUTRAL, NEG, POS],
                             title="records by content"))
    rows = "".join(f"<tr><td>{_e(split)}</td><td>{_e(k)}</td><td class='n'>{v['a']:,}</td><td class='n'>{v['b']:,}</td>"
                   f"<td class='n'>{v['delta']:+,}</td></tr>" for split, counts in d["counts"].items()
                   for k, v in counts.items())
    out.append(f"<h3>Counts (A -> B)</h3><table><tr><th>split</th><th>count</th><th class='n'>A</th>"
               f"<th class='n'>B</th><th class='n'>delta</th></tr>{rows}</table>")
    return "".join(out)


def render_report(path: str | os.PathLike, *, against: str | os.PathLike | None = None, samples: int = 8) -> str:
    """The HTML text of a dataset's report (see the module docstring for what it holds).

    Args:
        path: Dataset directory (``dir``, ``dir@version`` or ``dir@fingerprint-prefix``).
        against: Another dataset (same forms) to compare with, as ``pairgen diff OTHER DIR``.
        samples: Sample records shown per split.

    Returns:
        A complete HTML document with no external reference.

    Raises:
        DatasetError: If a path is not a finished dataset or a shard cannot be read.
        ConfigError: If ``samples`` < 1.
    """
    if samples < 1:
        raise ConfigError(f"--samples must be >= 1; received: --samples={samples}.")
    root = resolve(path)
    card = read_card(root)
    info = inspect(path)
    catalog = mf.read_table(root / layout.CATALOG)
    names = dict(zip(catalog["class_id"].astype(int).tolist(), catalog["class_name"].astype(str).tolist()))
    source_root = Path(str(info["source"].get("root", "")))
    source = source_root if source_root.is_dir() else None
    splits = split_order(card.splits)
    nav = [("card", "Card"), ("splits", "Splits"), ("balance", "Class balance"), ("samples", "Samples"),
           ("skipped", "Skipped"), ("duplicates", "Duplicates"), ("sizes", "Source images")]
    sections = [
        _card_section(info, card), _splits_section(info), _balance_section(catalog, splits),
        _samples_section(root, card, names, splits, samples), _skipped_section(root, source, info),
        _duplicates_section(source, catalog, info), _sizes_section(catalog),
    ]
    if against is not None:
        sections.append(_diff_section(diff(against, path)))
        nav.append(("diff", "Compared"))
    title = f"{info['name']} {info['version']}"
    links = " · ".join(f'<a href="#{k}">{_e(v)}</a>' for k, v in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}: pairgen report</title><style>{_CSS}</style></head><body><main>"
            f'<h1>{_e(title)} <span class="sub">({_e(info["kind"])})</span></h1>'
            f'<p class="sub">pairgen dataset report of <code>{_e(root)}</code>. {links}</p>'
            + "".join(sections) + "</main></body></html>\n")


def report(path: str | os.PathLike, *, out: str | os.PathLike, against: str | os.PathLike | None = None,
           samples: int = 8) -> Path:
    """Write a dataset's one-file HTML report (``pairgen report``).

    Args:
        path: Dataset directory (``dir``, ``dir@version`` or ``dir@fingerprint-prefix``).
        out: HTML file to write (its folder is created).
        against: Another dataset to compare with (what ``pairgen diff OTHER DIR`` says).
        samples: Sample records shown per split.

    Returns:
        The path written.

    Raises:
        DatasetError: If a path is not a finished dataset or a shard cannot be read.
        ConfigError: If ``samples`` < 1.
    """
    text = render_report(path, against=against, samples=samples)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
