"""The trainer's model on any Keras 3 backend, fed from NumPy arrays, several seeds at a time.

pairgen's towers, layers and losses are written with ``keras.ops`` only, so they run unchanged
on the JAX and PyTorch backends. This script builds the model exactly as ``pairgen train``
does (:func:`pairgen.train.trainer.build_model`) and measures it on whatever machine it runs
(a GPU machine whose image has JAX but no TensorFlow, say):

1. reads a built pair dataset into NumPy arrays with ``pairgen.load_numpy`` (pairgen's own
   TFRecord reader, no TensorFlow);
2. trains a recipe once per seed (``--recipe default``: ``conv-bn`` tower, contrastive margin
   0.5, Adam 2e-3 with cosine decay, batch 64, 8 epochs; ``--recipe keras-io``: the reference
   of ``train_quality.py``), keeping the best val-loss weights as ``pairgen train`` does, with
   ``model.fit`` on those arrays, and scores it as ``pairgen evaluate`` does (threshold chosen
   on val; test pair accuracy and ROC AUC);
3. times training steps of heavier towers (``--throughput-models``) on the same pairs.

    KERAS_BACKEND=jax python benchmarks/train_backend.py --dataset build/mnist-demo
    KERAS_BACKEND=jax python benchmarks/train_backend.py --dataset build/mnist-demo \
        --recipe keras-io --seeds 0 1 2 3 4 5 6 7 8 9 --throughput-models
    python benchmarks/train_backend.py --dataset build/mnist-demo     # tensorflow backend

``pairgen train`` itself also runs on these backends (``--reader numpy``); this script skips
its run folder, plots and one-shot evaluation, to compare recipes over many seeds quickly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
from train_quality import REFERENCE  # noqa: E402

from pairgen.dataset.card import read_card  # noqa: E402
from pairgen.errors import DatasetError  # noqa: E402
from pairgen.reading.arrays import load_numpy  # noqa: E402
from pairgen.train import metrics as M  # noqa: E402
from pairgen.train.config import TrainConfig  # noqa: E402
from pairgen.train.trainer import build_model  # noqa: E402

RECIPES = {"default": TrainConfig().resolve("pairs"), "keras-io": REFERENCE.resolve("pairs")}


def read_pairs(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, label)`` of a pair split, images as float32 in [0, 1], in record order (no TensorFlow)."""
    if read_card(root)["kind"] != "pairs":
        raise DatasetError(f"'{root}' is not a pair dataset; build it with --kind pairs.")
    arrays = load_numpy(root, split)
    return arrays["a"], arrays["b"], arrays["label"].astype(np.float32)


def _device() -> str:
    kind = keras.backend.backend()
    if kind == "jax":
        import jax

        return ", ".join(sorted({d.device_kind for d in jax.devices()}))
    if kind == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"{len(gpus)} GPU(s)" if gpus else "cpu"


def quality(data: dict, config: TrainConfig, name: str) -> float:
    """Train ``config`` on the train split; score on test with the threshold from val; return accuracy."""
    (a, b, y), val, test = data["train"], data["val"], data["test"]
    steps = -(-len(y) // config.batch_size) * config.epochs
    keras.utils.set_random_seed(config.seed)
    _, _, model = build_model(config, a.shape[1:], steps)
    # best val-loss weights, as pairgen train keeps them; patience 0 = never stop early
    stop = keras.callbacks.EarlyStopping(patience=config.patience or config.epochs, restore_best_weights=True)
    start = time.perf_counter()
    hist = model.fit([a, b], y, batch_size=config.batch_size, epochs=config.epochs, shuffle=True, verbose=0,
                     validation_data=([val[0], val[1]], val[2]), callbacks=[stop])
    seconds = time.perf_counter() - start
    epochs = len(hist.history["loss"])
    dist = {split: model.predict([s[0], s[1]], batch_size=1024, verbose=0).reshape(-1)
            for split, s in (("val", val), ("test", test))}
    threshold = M.choose_threshold(dist["val"], val[2])
    accuracy = M.pair_metrics(dist["test"], test[2], threshold)["accuracy"]
    print(f"{name}_seed{config.seed} test_pair_accuracy={accuracy:.4f} "
          f"test_roc_auc={M.roc_auc(dist['test'], test[2]):.4f} threshold_on_val={threshold:.4f} "
          f"last_loss={hist.history['loss'][-1]:.4f} train_seconds={seconds:.1f} epochs_run={epochs} "
          f"train_pairs_per_second={len(y) * epochs / seconds:,.0f}", flush=True)
    return accuracy


def throughput(data: dict, models: list[str], batch_size: int, steps: int) -> None:
    """Pairs per second of ``fit`` steps for each tower (after one warm-up epoch compiles it)."""
    a, b, y = (x[: batch_size * steps] for x in data["train"])
    for name in models:
        config = TrainConfig(model=name, batch_size=batch_size, epochs=1).resolve("pairs")
        keras.utils.set_random_seed(0)
        _, _, model = build_model(config, a.shape[1:], steps * 3)
        model.fit([a, b], y, batch_size=batch_size, epochs=1, verbose=0)  # compile + warm up
        start = time.perf_counter()
        model.fit([a, b], y, batch_size=batch_size, epochs=2, verbose=0)
        seconds = time.perf_counter() - start
        print(f"throughput model={name} batch={batch_size} train_pairs_per_second={2 * len(y) / seconds:,.0f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="A built raw-encoded pair dataset (e.g. build/mnist-demo).")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--throughput-models", nargs="*", default=["conv-bn", "eca-resnet18"])
    parser.add_argument("--throughput-batch", type=int, default=256)
    parser.add_argument("--throughput-steps", type=int, default=100)
    args = parser.parse_args()
    root = Path(args.dataset)
    start = time.perf_counter()
    data = {s: read_pairs(root, s) for s in ("train", "val", "test")}
    print(f"keras={keras.__version__} backend={keras.backend.backend()} device={_device()} "
          f"cores={os.cpu_count()}")
    print(f"dataset={read_card(root)['name']} " + " ".join(f"{s}_pairs={len(v[2])}" for s, v in data.items())
          + f" read_seconds={time.perf_counter() - start:.1f}", flush=True)
    recipe = RECIPES[args.recipe]
    print(f"recipe={args.recipe}: {recipe.model} tower, {recipe.head} head, contrastive margin {recipe.margin:g}, "
          f"{recipe.optimizer} {recipe.learning_rate:g} {recipe.schedule}, batch {recipe.batch_size}, "
          f"{recipe.epochs} epochs", flush=True)
    acc = [quality(data, recipe.replace(seed=seed), args.recipe) for seed in args.seeds]
    print(f"{args.recipe}_seeds={len(acc)} mean_test_pair_accuracy={np.mean(acc):.4f} std={np.std(acc):.4f} "
          f"min={min(acc):.4f} max={max(acc):.4f} below_0.9={sum(a < 0.9 for a in acc)}", flush=True)
    throughput(data, args.throughput_models, args.throughput_batch, args.throughput_steps)
    print(f"total_seconds={time.perf_counter() - start:.0f}")


if __name__ == "__main__":
    main()
