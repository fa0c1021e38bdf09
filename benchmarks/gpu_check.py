"""Does the input keep an accelerator fed? For a machine with many cores and a GPU.

On the machine (after ``pip install -e .[tf]`` in a fresh checkout, page cache warm)::

    python benchmarks/gpu_check.py [--steps 300] [--skip-readers]

1. Prints the machine: cores, TensorFlow's GPUs.
2. Runs ``benchmarks/pk_readers.py`` and ``benchmarks/load_demo.py`` (their ratio lines; with
   many cores the tf.data readers can use them, the in-memory references mostly one).
3. Trains the default tower (``conv-bn``) with a batch-hard-like step (embedding, mean loss)
   on P x K batches of the 70,000-image 28x28 dataset for ``--steps`` steps, fed (a) from a
   tensor already on the device (the model's own ceiling) and (b) by ``pairgen.load_classes``;
   prints images/s of each and ``fed_ratio`` = (b) / (a). ``fed_ratio`` near 1 means the input
   keeps the accelerator busy; well under 1 means training waits on reading.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def train_rate(steps: int) -> None:
    import numpy as np
    import tensorflow as tf
    from pk_readers import K, P, dataset

    import pairgen
    from pairgen.train.models import build_tower

    path = dataset("gray28")
    tower = build_tower("conv-bn", (28, 28, 1))
    optimizer = tf.keras.optimizers.Adam(1e-3)

    @tf.function
    def step(images, classes):
        with tf.GradientTape() as tape:
            emb = tower(images, training=True)
            same = tf.cast(classes[:, None] == classes[None, :], tf.float32)
            d = tf.reduce_sum(tf.square(emb[:, None] - emb[None, :]), -1)
            loss = tf.reduce_mean(same * d + (1 - same) * tf.nn.relu(0.5 - d))
        grads = tape.gradient(loss, tower.trainable_variables)
        optimizer.apply_gradients(zip(grads, tower.trainable_variables))
        return loss

    arrays = pairgen.load_numpy(path, "train", normalize=False)
    rows = np.random.default_rng(0).integers(0, len(arrays["class"]), (steps, P * K))
    pixels = tf.constant(arrays["image"])
    labels = tf.constant(arrays["class"])
    ds = pairgen.load_classes(path, "train", classes_per_batch=P, images_per_class=K, seed=0, epochs=None)
    for name in ("warmup", "device", "load_classes"):
        it = iter(ds)
        start = time.perf_counter()
        for i in range(steps if name != "warmup" else 20):
            if name == "load_classes":
                images, classes = next(it)
            else:
                ids = rows[i]
                images = tf.cast(tf.gather(pixels, ids), tf.float32) / 255.0
                classes = tf.gather(labels, ids)
            loss = step(images, classes)
        float(loss)
        seconds = time.perf_counter() - start
        if name != "warmup":
            rate = steps * P * K / seconds
            print(f"train_{name}_images_per_s={rate:,.0f}", flush=True)
            if name == "device":
                ceiling = rate
    print(f"fed_ratio={rate / ceiling:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip-readers", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import tensorflow as tf

    print(f"machine_cores={os.cpu_count()} gpus={[d.name for d in tf.config.list_physical_devices('GPU')]} "
          f"load_average_1m={os.getloadavg()[0]:.2f}", flush=True)
    if not args.skip_readers:
        for script in ("pk_readers.py", "load_demo.py"):
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / script)], check=True)
    train_rate(args.steps)


if __name__ == "__main__":
    main()
