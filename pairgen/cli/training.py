"""``pairgen train | evaluate | embed``: the click layer over :mod:`pairgen.train`.

Importing this module never imports TensorFlow; each command imports the trainer inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pairgen.cli.common import echo_json, handle_errors, json_option, progress_enabled, quiet_option
from pairgen.extras import quiet_tensorflow_start
from pairgen.train.config import (
    DISTANCES,
    HEADS,
    LOSSES,
    MININGS,
    OPTIMIZERS,
    READERS,
    SCHEDULES,
    SELECT_BY,
    TOWERS,
    TrainConfig,
)

_PATH = click.Path(path_type=Path)
_D = TrainConfig()  # the CLI shows and uses the library's defaults


def _keras_verbosity(quiet: bool) -> int:
    """1 = a progress bar per epoch on a terminal; 2 = one line per epoch in logs; 0 = quiet."""
    if quiet:
        return 0
    return 1 if progress_enabled(False) else 2


def _print_retrieval(m: dict[str, Any]) -> None:
    for name, r in m.get("retrieval", {}).items():
        where = f"{name} vs {r['gallery_split']}" if r["gallery_split"] != name else name
        scored = f"{r['queries_scored']} of {r['queries']} queries, gallery {r['gallery']}, {r['classes']} classes"
        if r["queries_scored"] == 0:
            click.echo(f"retrieval {where}: no query has an image of its class in the gallery ({scored})")
            continue
        recall = "  ".join(f"R@{k} {v:.4f}" for k, v in r["recall_at_k"].items())
        click.echo(f"retrieval {where}: P@1 {r['precision_at_1']:.4f}  R-precision {r['r_precision']:.4f}  "
                   f"MAP@R {r['map_at_r']:.4f}  {recall}  ({scored})")


def _print_metrics(m: dict[str, Any]) -> None:
    ds = m["dataset"]
    click.echo(f"dataset {ds['name']} {ds['version']} ({ds['kind']}, fingerprint {str(ds['fingerprint'])[:12]}), "
               f"split {m['split']}")
    if "pair_accuracy" not in m:  # an images dataset: retrieval only
        click.echo("classes unseen in training" if m["class_disjoint"] else "classes shared with train")
        _print_retrieval(m)
        return
    val = m["threshold_split_metrics"]
    click.echo(f"threshold      {m['threshold']:.4f} on {m['score']} "
               f"(chosen on {m['threshold_split']}, accuracy there {val['accuracy']:.4f})")
    click.echo(f"pair accuracy  {m['pair_accuracy']:.4f}  ({m['pairs']} pairs: {m['positives']} same, "
               f"{m['negatives']} different)")
    click.echo(f"ROC AUC        {m['roc_auc']:.4f}")
    click.echo(f"EER            {m['eer']:.4f}")
    click.echo(f"precision      {m['precision']:.4f}   recall {m['recall']:.4f}  (at the threshold)")
    if "triplet_accuracy" in m:
        click.echo(f"triplet acc.   {m['triplet_accuracy']:.4f}  (d(a,p) < d(a,n))")
    disjoint = "class-disjoint from train" if m["class_disjoint"] else "classes shared with train"
    for name, res in m["one_shot"].items():
        if "skipped" in res:
            click.echo(f"{name} one-shot: skipped ({res['skipped']})")
        else:
            click.echo(f"{name} one-shot accuracy {res['accuracy']:.4f}  ({res['trials']} trials, {disjoint})")
    _print_retrieval(m)
    if m.get("trained_on") and m["trained_on"] != ds["fingerprint"]:
        click.echo(f"note: the model was trained on dataset {m['trained_on'][:12]}, not this one")


@click.command()
@click.argument("dataset", type=_PATH)
@click.option("--out", required=True, type=_PATH, help="Run folder to create.")
@click.option("--model", type=click.Choice(TOWERS), default=_D.model, show_default=True,
              help="Tower: conv-bn (default, compact 3x3 conv + BatchNorm) or a reference tower.")
@click.option("--loss", type=click.Choice(LOSSES), default=_D.loss, show_default=True,
              help="auto = contrastive for pairs, triplet for triplets.")
@click.option("--head", type=click.Choice(HEADS), default=_D.head, show_default=True,
              help="How two embeddings become one output (auto: distance, or absdiff for bce).")
@click.option("--distance", type=click.Choice(DISTANCES), default=_D.distance, show_default=True,
              help="Embedding distance (the triplet loss squares l2).")
@click.option("--embedding-dim", type=click.IntRange(min=1), help="Embedding size [tower's reference size].")
@click.option("--width", type=click.IntRange(min=1), help="First-layer filters/units [tower's reference width].")
@click.option("--margin", type=click.FloatRange(min=0, min_open=True),
              help="Contrastive/triplet margin [0.5; 1.0 for contrastive on towers without unit-length output].")
@click.option("--mining", type=click.Choice(MININGS), default=_D.mining, show_default=True,
              help="Online triplet mining in each batch (auto = batch-hard for triplets).")
@click.option("--epochs", type=click.IntRange(min=1), default=_D.epochs, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=_D.batch_size, show_default=True)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=_D.optimizer, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=_D.learning_rate,
              show_default=True, help="Initial learning rate.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=_D.schedule, show_default=True,
              help="cosine decays the learning rate to 0 over all steps.")
@click.option("--patience", type=click.IntRange(min=0), default=_D.patience, show_default=True,
              help="Early stopping on val loss after N epochs without improvement (0 = off).")
@click.option("--seed", type=click.IntRange(min=0), default=_D.seed, show_default=True)
@click.option("--mixed-precision", is_flag=True, help="float16 compute with float32 weights (GPU).")
@click.option("--jit", is_flag=True, help="Compile the training step with XLA.")
@click.option("--reader", type=click.Choice(READERS), default=_D.reader, show_default=True,
              help="tfdata streams shards; numpy loads splits into memory without TensorFlow (any Keras "
                   "backend); auto = tfdata on the TensorFlow backend.")
@click.option("--steps-per-execution", type=click.IntRange(min=1), default=_D.steps_per_execution,
              show_default=True, help="Training steps per graph call (less per-step overhead, same result; 1 on PyTorch).")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False),
              help="Local ImageNet weight file for --model resnet50 (nothing is downloaded).")
@click.option("--classes-per-batch", type=click.IntRange(min=2),
              help="Images datasets: P distinct classes in every batch [batch size // K].")
@click.option("--images-per-class", type=click.IntRange(min=2),
              help="Images datasets: K images of each class in every batch [4].")
@click.option("--select-by", type=click.Choice(SELECT_BY), default=_D.select_by, show_default=True,
              help="Images datasets: early stopping and the kept weights watch the val loss or the val "
                   "split's MAP@R (measured after every epoch).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@quiet_option
@json_option
@handle_errors
def train(dataset: Path, out: Path, overwrite: bool, quiet: bool, as_json: bool, **settings: Any) -> None:
    """Train a Siamese model on DATASET and write the run folder --out.

    Writes model.keras, embedding.keras, history.csv, metrics.json (test split, threshold
    chosen on val; val and test retrieval metrics), config.json (with the dataset
    fingerprint), curves.png, distances.png, roc.png and retrieval.png. With no options it
    uses the best measured recipe.

    An images dataset (--kind images) trains the tower on class-balanced batches of P classes
    x K images, mining triplets (or contrastive pairs) inside each batch; metrics.json holds
    the val and test retrieval metrics (precision@1, R-precision, MAP@R, Recall@K), and
    `pairgen evaluate RUN PAIRS_DATASET` adds pair metrics on a pairs dataset with the same splits.

    \b
    Example:
        pairgen train build/mnist-demo --out runs/demo
        pairgen train build/mnist-demo --out runs/lenet --model lenet --epochs 5
        pairgen train build/tll --out runs/tll --model resnet50 --weights resnet50_notop.h5
        pairgen train build/digits --out runs/pk --loss triplet --mining batch-hard \\
            --classes-per-batch 8 --images-per-class 4
    """
    quiet_tensorflow_start()
    from pairgen.train.trainer import train as run_training

    config = TrainConfig(**settings)
    metrics = run_training(dataset, out, config, overwrite=overwrite, verbose=0 if as_json else _keras_verbosity(quiet))
    if as_json:
        echo_json(metrics)
        return
    if not quiet and metrics["dataset"]["kind"] == "images":
        click.echo(f"trained {metrics['epochs_run']} epochs of {metrics['batches_per_epoch']} batches of "
                   f"{metrics['classes_per_batch']} classes x {metrics['images_per_class']} images; "
                   f"pair metrics: `{metrics['evaluate']}`")
        _print_retrieval(metrics)
    elif not quiet:
        _print_metrics(metrics)
    click.echo(f"wrote run {out}")


@click.command()
@click.argument("run", type=_PATH)
@click.argument("dataset", type=_PATH)
@click.option("--split", default="test", show_default=True, help="Split to report.")
@click.option("--ways", type=click.IntRange(min=2), multiple=True, default=(5, 20), show_default=True,
              help="N of the N-way one-shot test (repeat for several).")
@click.option("--trials", type=click.IntRange(min=1), default=400, show_default=True,
              help="One-shot trials per N.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the one-shot trials and of the --examples queries.")
@click.option("--gallery", help="Search this split (e.g. train) for the --split queries [each split searches itself].")
@click.option("--examples", type=click.IntRange(min=1), help="Draw N queries and their nearest images to --out.")
@click.option("--out", "examples_out", type=_PATH, help="PNG for --examples.")
@json_option
@handle_errors
def evaluate(run: Path, dataset: Path, split: str, ways: tuple[int, ...], trials: int, seed: int,
             gallery: str | None, examples: int | None, examples_out: Path | None, as_json: bool) -> None:
    """Evaluate RUN on a split of DATASET: accuracy, ROC AUC, EER, one-shot, retrieval.

    Pairs and triplets: the decision threshold is chosen on the val split, never on the
    evaluated split. Every kind (images too): precision@1, R-precision, MAP@R and Recall@K
    of the split's distinct images, each searched among the others (or in --gallery).
    `--json` prints exactly what `pairgen train` wrote to RUN/metrics.json (for a pairs or
    triplets dataset, the test split and default options).

    \b
    Example:
        pairgen evaluate runs/demo build/mnist-demo
        pairgen evaluate runs/omniglot build/omniglot --ways 5 --ways 20 --trials 400 --json
        pairgen evaluate runs/pk build/digits --gallery train --examples 8 --out retrieval.png
    """
    quiet_tensorflow_start()
    from pairgen.train.evaluation import evaluate as run_evaluation

    if (examples is None) != (examples_out is None):
        raise click.UsageError("--examples N and --out FILE go together.")
    metrics = run_evaluation(run, dataset, split=split, ways=ways, trials=trials, seed=seed, gallery=gallery)
    if examples is not None and examples_out is not None:
        from pairgen.train.data import open_dataset
        from pairgen.train.evaluation import load_run
        from pairgen.train.examples import retrieval_examples

        retrieval_examples(load_run(run), open_dataset(dataset), split, examples_out, queries=examples,
                           gallery=gallery, seed=seed)
        click.echo(f"wrote {examples_out}", err=as_json)
    if metrics.get("split_match") is False:
        click.echo(f"warning: {run} was trained on a dataset whose splits differ from those of {dataset} "
                   "(split fingerprints differ), so its training images may be in the evaluated split; "
                   "build both with the same source, [split] config and seed.", err=True)
    if as_json:
        echo_json(metrics)
    else:
        _print_metrics(metrics)


@click.command()
@click.argument("run", type=_PATH)
@click.argument("source", type=_PATH)
@click.option("--out", required=True, type=_PATH, help="Parquet file to write.")
@click.option("--layout", type=click.Choice(["classes", "left-right", "split-folders", "table"]),
              default="classes", show_default=True, help="Layout when SOURCE is an image folder.")
@click.option("--class-depth", type=click.IntRange(min=0), default=0, show_default=True,
              help="Class depth when SOURCE is an image folder.")
@click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="Undecodable images: leave out (listed) or stop.")
@quiet_option
@handle_errors
def embed(run: Path, source: Path, out: Path, layout: str, class_depth: int, on_error: str, quiet: bool) -> None:
    """Embed every image of SOURCE (a dataset dir or an image folder) with RUN's tower.

    Writes one row per catalog image (image_id, path, class_name, class_id, split,
    embedding). Feed it to the next build's hard-negative strategy with
    `[sample] strategy = "hard"` and `embeddings = "embeddings.parquet"`.

    \b
    Example:
        pairgen embed runs/demo build/mnist-demo --out build/embeddings.parquet
        pairgen embed runs/demo datasets/mnist-5k --out mnist-emb.parquet
    """
    quiet_tensorflow_start()
    from pairgen.train.embedding import embed as run_embed

    frame = run_embed(run, source, out, layout=layout, class_depth=class_depth, on_error=on_error,
                      progress=progress_enabled(quiet))
    dim = len(frame["embedding"].iloc[0]) if len(frame) else 0
    click.echo(f"wrote {len(frame)} embeddings of size {dim} to {out}")
    skipped = frame.attrs.get("skipped")
    if skipped is not None and len(skipped):
        click.echo(f"skipped {len(skipped)} source file(s) (listed in the file's metadata under 'skipped'):")
        for path, reason in skipped[["path", "reason"]].head(10).itertuples(index=False):
            click.echo(f"  {path}: {reason}")
        if len(skipped) > 10:
            click.echo(f"  ... and {len(skipped) - 10} more")


COMMANDS = [train, evaluate, embed]
