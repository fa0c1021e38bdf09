"""``pairgen scan`` and ``pairgen build``: the commands that read a source and write a dataset.

Each command parses options, builds a config, calls one library function and prints the
result. Heavy modules (pandas, OpenCV) are imported inside commands, so ``pairgen --help``
stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pairgen.cli.common import (
    Interrupted,
    LazyHelpOption,
    choices,
    echo_json,
    handle_errors,
    json_option,
    progress_enabled,
    quiet_option,
)
from pairgen.spec.config import NEAR_THRESHOLD, Compression, Encoding, Executor, Kind, Layout, OnError, SplitBy


@click.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--layout", type=choices(Layout),
              default="classes", show_default=True, help="How labels are laid out under SRC.")
@click.option("--class-depth", type=click.IntRange(min=0), default=0, show_default=True,
              help="Group classes by the first N folder levels (0 = the image's own folder).")
@click.option("--min-per-class", type=click.IntRange(min=0), default=1, show_default=True,
              help="Skip classes with fewer images (reported).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=89_478_485, show_default=True,
              help="Skip images with more pixels than this (read from the header, never decoded).")
@click.option("--allow-outside-root", is_flag=True, help="Follow symlinks and table paths that leave SRC.")
@click.option("--show-skipped", type=click.IntRange(min=0), default=20, show_default=True,
              help="List this many skipped files with their reasons (--json lists all).")
@click.option("--out", "out", type=click.Path(path_type=Path), help="Write the catalog to this Parquet file.")
@click.option("--near-threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=NEAR_THRESHOLD,
              show_default=True, help="Cosine similarity of near-duplicate signatures (re-encoded, resized, "
              "re-lit copies); see the README's 'Near duplicates'.")
@click.option("--near/--no-near", default=True, show_default=True,
              help="Decode each image once for its near-duplicate signature and report near duplicates "
              "(the scan otherwise reads only file headers: --no-near is several times faster).")
@json_option
@handle_errors
def scan(src: Path, layout: str, class_depth: int, min_per_class: int, max_pixels: int, allow_outside_root: bool,
         show_skipped: int, out: Path | None, near_threshold: float, near: bool, as_json: bool) -> None:
    """Scan SRC and summarize its classes, images, skipped files (with reasons), duplicates and
    near duplicates.

    \b
    Example:
        pairgen scan datasets/mnist-5k
        pairgen scan data/omniglot --class-depth 2 --json
        pairgen scan data/tll --layout left-right --out catalog.parquet
        pairgen scan datasets/mnist-5k --near-threshold 0.995
    """
    from pairgen.dataset import tables as mf
    from pairgen.scanning.catalog import scan as do_scan
    from pairgen.scanning.catalog import summarize

    table = src if layout == "table" else None
    catalog = do_scan(src, layout=layout, class_depth=class_depth, table=table, min_per_class=min_per_class,
                      max_pixels=max_pixels, allow_outside_root=allow_outside_root, signatures=near)
    summary = summarize(catalog, near_threshold)
    if out is not None:
        mf.write_catalog(catalog.images, out, catalog.signature_rows())
        summary["catalog"] = str(out)
    if as_json:
        echo_json(summary)
    else:
        click.echo(_format_scan(summary, show_skipped))


def _printable(text: str) -> str:
    """Text safe to print on one line: control characters become escapes."""
    from pairgen.spec.validation import has_control

    return repr(text)[1:-1] if has_control(text) else text


def _format_scan(s: dict[str, Any], show_skipped: int = 20) -> str:
    pc = s.get("per_class", {})
    lines = [
        f"root:     {s.get('root')}",
        f"layout:   {s.get('layout')}",
        f"images:   {s.get('images'):,} in {s.get('classes'):,} classes "
        f"(per class min {pc.get('min')}, median {pc.get('median')}, max {pc.get('max')})",
        f"skipped:  {s.get('skipped', 0):,}",
    ]
    for reason, count in sorted(s.get("skipped_by_reason", {}).items()):
        lines.append(f"  {count:>7,}  {reason}")
    files = s.get("skipped_files", [])
    for row in files[:show_skipped]:
        lines.append(f"  {_printable(row['path'])}: {_printable(row['reason'])}")
    if len(files) > show_skipped:
        lines.append(f"  ... and {len(files) - show_skipped:,} more (--show-skipped N, or --json for all)")
    conflicts = s.get("label_conflicts", {})
    lines.append(f"label conflicts: {conflicts.get('groups', 0):,} identical-content group(s) under "
                 f"more than one class ({conflicts.get('images', 0):,} images)")
    for group in conflicts.get("examples", [])[:5]:
        lines.append("  " + "  ==  ".join(_printable(p) for p in group))
    dup = s.get("duplicates", {})
    lines.append(f"duplicate-content groups: {dup.get('groups', 0):,}")
    for group in dup.get("examples", [])[:5]:
        lines.append("  " + "  ==  ".join(group))
    near = s.get("near_duplicates")
    if near is not None:
        lines.append(f"near-duplicate groups: {near['groups']:,} ({near['images']:,} images, {near['pairs']:,} "
                     f"pairs at cosine >= {near['threshold']:g}; {near['cross_class_pairs']:,} across classes)")
        for group in near.get("examples", [])[:5]:
            lines.append("  " + "  ~~  ".join(_printable(p) for p in group))
    if "catalog" in s:
        lines.append(f"catalog written to {s['catalog']}")
    return "\n".join(lines)


@click.command()
@click.argument("pipeline", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Dataset directory to create.")
@click.option("--src", help="Source folder (or label table); overrides [source] path.")
@click.option("--layout", type=choices(Layout))
@click.option("--class-depth", type=click.IntRange(min=0))
@click.option("--min-per-class", type=click.IntRange(min=0), help="Skip classes with fewer images (reported).")
@click.option("--allow-outside-root", is_flag=True, default=None,
              help="Follow symlinks and table paths that leave the source folder.")
@click.option("--name", help="Dataset name (default: the pipeline's).")
@click.option("--kind", type=choices(Kind), help="Records: pairs, triplets or images (one per image).")
@click.option("--strategy", cls=LazyHelpOption, help_text=lambda: _strategy_help())
@click.option("--num-records", type=int, help="Records per split for balanced sampling.")
@click.option("--positives-per-image", type=int)
@click.option("--negatives-per-image", type=int)
@click.option("--unique/--no-unique", default=None, help="Drop duplicate and mirrored pairs.")
@click.option("--strict-positives", is_flag=True, default=None,
              help="Refuse a class with one image in a split (default: it serves only as negatives).")
@click.option("--seed", type=int, help="Build seed: the only source of randomness.")
@click.option("--split-by", type=choices(SplitBy))
@click.option("--splits", help="Split fractions, e.g. train=0.8,val=0.1,test=0.1.")
@click.option("--dedupe", type=click.Choice(["exact", "near"]), is_flag=False, flag_value="exact", default=None,
              help="exact (alone: --dedupe): keep one copy of identical-content images; near: that, and keep "
              "each near-duplicate group (resized, re-encoded, re-lit copies) inside one split.")
@click.option("--no-dedupe", "no_dedupe", is_flag=True, default=None, help="Keep identical copies (the default).")
@click.option("--near-threshold", type=click.FloatRange(0.0, 1.0, min_open=True),
              help=f"Cosine similarity of near duplicates (default {NEAR_THRESHOLD}).")
@click.option("--image-size", help="Record image size HxW, e.g. 28x28.")
@click.option("--channels", type=click.Choice(["1", "3"]))
@click.option("--encoding", type=choices(Encoding))
@click.option("--augment/--no-augment", default=None, help="Turn [augment] on or off.")
@click.option("--copies", type=int, help="Augmented copies of every record.")
@click.option("--compression", type=choices(Compression))
@click.option("--workers", type=click.IntRange(min=0), help="Worker processes (0 = all cores).")
@click.option("--executor", type=choices(Executor))
@click.option("--ray-address", help="Run on this existing Ray cluster (host:port or auto); implies --executor ray.")
@click.option("--on-error", type=choices(OnError), help="Undecodable images: skip (reported) or fail.")
@click.option("--manifest-only", is_flag=True, default=None, help="Write catalog and manifests, no shards.")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing dataset at --out.")
@click.option("--keep-versions", is_flag=True, default=None, help="Keep older versions under OUT/versions/.")
@json_option
@quiet_option
@handle_errors
def build(pipeline: Path | None, out: Path, as_json: bool, quiet: bool, **flags: Any) -> None:
    """Build a versioned pair, triplet or images dataset from PIPELINE (TOML) and/or flags.

    Flags override the pipeline file. Without a pipeline, --src is required.

    \b
    Example:
        pairgen build pipelines/mnist-demo.toml --out build/mnist-demo
        pairgen build --src data/faces --kind triplets --split-by class --image-size 64x64 \\
            --channels 3 --encoding png --out build/faces
        pairgen build pipelines/mnist-demo.toml --kind images --out build/mnist-images
    """
    from pairgen.spec.config import BuildConfig, ConfigError, refuse_images_sampling
    from pairgen.workers.progress import Progress
    from pairgen.writing.builder import build as do_build

    if pipeline is None and not flags.get("src"):
        raise ConfigError("give a PIPELINE file or --src SOURCE; see `pairgen build --help`.")
    config = BuildConfig.from_toml(pipeline) if pipeline else BuildConfig()
    config = config.override(_build_overrides(flags, quiet))
    if config.kind is Kind.IMAGES:
        refuse_images_sampling([f"--{key.replace('_', '-')}" for key in _SAMPLING_FLAGS if flags.get(key) is not None],
                               "--kind images" if flags.get("kind") else 'kind = "images"', "from the command line")
    try:
        card = do_build(config, out, progress=Progress(enabled=progress_enabled(quiet)))
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; nothing was written to '{out}'") from None
    if as_json:
        echo_json(card)
        return
    click.echo(f"built {card['name']} {card['version']} ({card['kind']}) at {out}")
    click.echo(f"fingerprint {card['fingerprint']}")
    for name, c in card["splits"].items():
        extra = f", {c['positives']:,} positive / {c['negatives']:,} negative" if "positives" in c else ""
        click.echo(f"  {name:<6} {c['records']:>9,} records from {c['images']:,} images in {c['classes']:,} classes{extra}")
        if c.get("images_without_positive"):
            click.echo(f"  {'':<6} {c['images_without_positive']:>9,} images are alone in their class in this split: "
                       "no positive for them (they serve as negatives)")
    if card["source"]["skipped"]:
        click.echo(f"  skipped {card['source']['skipped']:,} source files (see {out}/skipped.parquet)")
    near = card.get("near_duplicates") or {}
    if near:
        kept = " (kept in one split: --dedupe near)" if near.get("dedupe") else " (--dedupe near keeps them in one split)"
        click.echo(f"  near duplicates across splits: {near['pairs']:,} pairs in {near['groups']:,} groups at cosine >= "
                   f"{near['threshold']:g}{kept if near['pairs'] or near.get('dedupe') else ''}")
    conflicts = card["source"].get("label_conflicts", {})
    if conflicts.get("groups"):
        click.echo(f"  label conflicts: {conflicts['images']:,} images with identical content under more than "
                   f"one class ({conflicts['groups']:,} groups; see pairgen inspect)")


# The build options that set a pair/triplet sampling key (refused for an images dataset).
_SAMPLING_FLAGS = ("num_records", "positives_per_image", "negatives_per_image", "unique", "strict_positives")


def _strategy_help() -> str:
    from pairgen.spec.config import STRATEGIES

    kinds = "; ".join(f"{kind.value}: {', '.join(names)}" for kind, names in STRATEGIES.items())
    return f"Sampling strategy. {kinds}."


def _build_overrides(flags: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Map CLI flags onto dotted config keys."""
    keys = {
        "src": "source.path", "layout": "source.layout", "class_depth": "source.class_depth",
        "min_per_class": "source.min_per_class", "allow_outside_root": "source.allow_outside_root",
        "name": "name", "kind": "kind", "seed": "seed", "strategy": "sample.strategy",
        "num_records": "sample.num_records", "positives_per_image": "sample.positives_per_image",
        "negatives_per_image": "sample.negatives_per_image", "unique": "sample.unique",
        "strict_positives": "sample.strict_positives",
        "split_by": "split.by", "splits": "split.fractions", "near_threshold": "split.near_threshold",
        "image_size": "image.size", "encoding": "image.encoding", "augment": "augment.enabled",
        "copies": "augment.copies", "compression": "shards.compression", "workers": "build.workers",
        "executor": "build.executor", "ray_address": "build.ray_address", "on_error": "build.on_error", "manifest_only": "build.manifest_only",
        "overwrite": "build.overwrite", "keep_versions": "build.keep_versions",
    }
    out = {keys[k]: v for k, v in flags.items() if k in keys and v is not None}
    if flags.get("no_dedupe"):
        out["split.dedupe"] = False
    elif flags.get("dedupe"):
        out["split.dedupe"] = True if flags["dedupe"] == "exact" else flags["dedupe"]
    if flags.get("src"):
        out["source.path"] = str(Path(flags["src"]).resolve())
        if flags.get("layout") == "table":
            out["source.table"] = out["source.path"]
    if flags.get("channels"):
        out["image.channels"] = int(flags["channels"])
    if flags.get("splits"):
        from pairgen.spec.config import parse_fractions

        out["split.fractions"] = dict(parse_fractions(flags["splits"]))
    if flags.get("ray_address") and not flags.get("executor"):
        out["build.executor"] = "ray"
    out["build.quiet"] = quiet
    return out


COMMANDS = [scan, build]
