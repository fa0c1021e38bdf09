"""Reference Keras 3 trainer for pairgen datasets: towers, heads, losses, metrics, plots.

Importing this package does not import TensorFlow; the names below load their module on
first use::

    from pairgen.train import TrainConfig, train, evaluate, embed
    metrics = train("build/mnist-demo", "runs/demo")            # the default recipe
    metrics = train("build/mnist-demo", "runs/lenet", TrainConfig(model="lenet", epochs=5))
    print(evaluate("runs/demo", "build/mnist-demo", split="test")["pair_accuracy"])
    embed("runs/demo", "build/mnist-demo", "embeddings.parquet")
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "pairgen.train.config",
    "TOWERS": "pairgen.train.config",
    "train": "pairgen.train.trainer",
    "evaluate": "pairgen.train.evaluation",
    "load_run": "pairgen.train.evaluation",
    "embed": "pairgen.train.embedding",
    "build_tower": "pairgen.train.models",
    "build_head": "pairgen.train.models",
    "ContrastiveLoss": "pairgen.train.losses",
    "TripletLoss": "pairgen.train.losses",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pairgen.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
