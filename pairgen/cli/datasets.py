"""The commands that read finished datasets: ``verify``, ``inspect``, ``diff``, ``preview``, ``report``.

Every DIR argument also takes ``DIR@VERSION``, ``DIR@FINGERPRINT-PREFIX`` or ``DIR@latest``.

Exit codes follow ``diff(1)``: ``verify`` exits 0 when the dataset is intact and 1 when it
found problems; ``diff`` exits 0 when the fingerprints are identical and 1 when they differ;
both exit 2 when they cannot run (a missing dataset, a bad argument). ``inspect`` and
``preview`` and ``report`` exit 0 on success and 1 on an error.
"""

from __future__ import annotations

from pathlib import Path

import click

from pairgen.cli.common import echo_json, handle_errors, json_option


@click.command()
@click.argument("path", metavar="DIR")
@click.option("--rebuild-check", "rebuild_src", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also rebuild from SRC with the card's config in a temp dir and compare byte for byte.")
@click.option("--quick", is_flag=True, help="Skip comparing every shard record with its manifest row.")
@json_option
@handle_errors(exit_code=2)
def verify(path: str, rebuild_src: Path | None, quick: bool, as_json: bool) -> None:
    """Check DIR against its dataset.json: hashes, record counts, ids and label guarantees.

    Prints one OK line and exits 0, or names each bad file and what is wrong (missing,
    extra, truncated, changed, corrupt, count, invalid, mismatch, rebuild) and exits 1.

    \b
    Example:
        pairgen verify build/mnist-demo
        pairgen verify build/mnist-demo@1.0.0 --rebuild-check datasets/mnist-5k
    """
    from pairgen.tools.verify import verify as do_verify

    report = do_verify(path, rebuild_src=rebuild_src, quick=quick)
    if as_json:
        echo_json(report.to_dict())
    else:
        for problem in report.problems:
            click.echo(str(problem))
        click.echo(report.summary())
    if not report.ok:
        click.get_current_context().exit(1)


@click.command()
@click.argument("path", metavar="DIR")
@click.option("--near-threshold", type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Recompute near duplicates across splits at this cosine similarity (from catalog.parquet).")
@json_option
@handle_errors
def inspect(path: str, near_threshold: float | None, as_json: bool) -> None:
    """Show what DIR holds: identity, splits, classes, image spec, shards, skips, leakage
    (identical and near-duplicate images across splits).

    \b
    Example:
        pairgen inspect build/mnist-demo
        pairgen inspect build/mnist-demo@db0614ab --json
        pairgen inspect build/mnist-demo --near-threshold 0.995
    """
    from pairgen.tools.inspection import format_inspect
    from pairgen.tools.inspection import inspect as do_inspect

    info = do_inspect(path, near_threshold=near_threshold)
    if as_json:
        echo_json(info)
    else:
        click.echo(format_inspect(info))


@click.command()
@click.argument("a", metavar="DIR_A")
@click.argument("b", metavar="DIR_B")
@json_option
@handle_errors(exit_code=2)
def diff(a: str, b: str, as_json: bool) -> None:
    """Compare two datasets: config, classes, images, records and counts.

    Exits 0 when the fingerprints are identical, 1 when they differ, 2 on an error.

    \b
    Example:
        pairgen diff build/seed0 build/seed1
        pairgen diff build/mnist-demo@1.0.0 build/mnist-demo --json
    """
    from pairgen.tools.inspection import diff as do_diff
    from pairgen.tools.inspection import format_diff

    result = do_diff(a, b)
    if as_json:
        echo_json(result)
    else:
        click.echo(format_diff(result))
    if not result["identical"]:
        click.get_current_context().exit(1)


@click.command()
@click.argument("path", metavar="DIR")
@click.option("--split", default="train", show_default=True, help="Split to show.")
@click.option("--count", type=click.IntRange(min=1), default=24, show_default=True, help="Records to show.")
@click.option("--columns", type=click.IntRange(min=1), help="Cells per row (default: a landscape grid).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option("--near", is_flag=True, help="Instead, show the largest near-duplicate groups that cross splits "
              "(one row per group, --count groups, drawn from the source files).")
@click.option("--near-threshold", type=click.FloatRange(0.0, 1.0, min_open=True),
              help="With --near: cosine similarity (default: the build's).")
@handle_errors
def preview(path: str, split: str, count: int, columns: int | None, out: Path, near: bool,
            near_threshold: float | None) -> None:
    """Write a montage of records decoded from DIR's shards and print its path.

    Pairs are tagged green "pos" / red "neg"; triplets are shown in anchor / positive /
    negative columns; every image has its class name below it. With --near, the montage
    shows near-duplicate groups that cross splits instead, each image under its split.

    \b
    Example:
        pairgen preview build/mnist-demo --split train --count 24 --out build/mnist-demo-preview.png
        pairgen preview build/mnist-demo --near --count 8 --out build/mnist-demo-near.png
    """
    from pairgen.tools.preview import preview as do_preview

    if near:
        from pairgen.tools.nearview import near_montage

        written, groups = near_montage(path, out=out, count=count, threshold=near_threshold)
        click.echo(f"{groups} near-duplicate group(s) across splits drawn to {written}")
        return

    written = do_preview(path, out=out, split=split, count=count, columns=columns)
    click.echo(f"preview written to {written}")


@click.command()
@click.argument("path", metavar="DIR")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="HTML file to write.")
@click.option("--against", metavar="OTHER", help="Also show what `pairgen diff OTHER DIR` says (OTHER may be DIR@VERSION).")
@click.option("--samples", type=click.IntRange(min=1), default=8, show_default=True, help="Sample records per split.")
@handle_errors
def report(path: str, out: Path, against: str | None, samples: int) -> None:
    """Write one self-contained HTML page about DIR and print its path.

    The page shows the card, per-split counts and class balance charts, sample records decoded
    from the shards, skipped files by reason, duplicate and leakage groups with thumbnails and
    the source image sizes. It has no external reference: it opens from disk, offline.

    \b
    Example:
        pairgen report build/mnist-demo --out report.html
        pairgen report build/mnist-demo --against build/mnist-demo@1.0.0 --out report.html
    """
    from pairgen.tools.report import report as do_report

    written = do_report(path, out=out, against=against, samples=samples)
    click.echo(f"report written to {written} ({written.stat().st_size / 1e6:,.2f} MB)")


COMMANDS = [verify, inspect, diff, preview, report]
