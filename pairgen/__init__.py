"""pairgen: reproducible pair and triplet datasets for Siamese networks and metric learning.

Public API (imported lazily so that ``import pairgen`` and ``pairgen --help`` stay fast and
never import TensorFlow)::

    catalog = pairgen.scan("datasets/mnist-5k")
    catalog = pairgen.split(catalog, by="image", fractions="train=0.8,val=0.1,test=0.1",
                            rng=np.random.default_rng(0))
    pairs = pairgen.sample_pairs(catalog.images, strategy="per-image", rng=np.random.default_rng(1))
    info = pairgen.build(pairgen.BuildConfig.from_toml("pipelines/mnist-demo.toml"), out="build/demo")
    ds = pairgen.load("build/demo", split="train", batch_size=256)
    arrays = pairgen.load_numpy("build/demo", split="train")   # no TensorFlow
    ds = pairgen.load_classes("build/digits", "train", classes_per_batch=8, images_per_class=4)
    scores = pairgen.retrieval_metrics(embeddings, classes)   # precision@1, R-precision, MAP@R, Recall@K
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__version__ = "0.1.0"

# TensorFlow's C++ info and warning logs drown pairgen's own output; users
# who want it can set TF_CPP_MIN_LOG_LEVEL themselves before importing pairgen
# (then pairgen.extras.quiet_tensorflow_start leaves TensorFlow's start-up lines alone too).
_TF_LOG_LEVEL_GIVEN = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_EXPORTS = {
    "PairgenError": "pairgen.errors",
    "ConfigError": "pairgen.errors",
    "ScanError": "pairgen.errors",
    "SplitError": "pairgen.errors",
    "SampleError": "pairgen.errors",
    "ImageError": "pairgen.errors",
    "BuildError": "pairgen.errors",
    "DatasetError": "pairgen.errors",
    "MissingDependencyError": "pairgen.errors",
    "BuildConfig": "pairgen.spec.config",
    "Catalog": "pairgen.scanning.catalog",
    "scan": "pairgen.scanning.catalog",
    "summarize": "pairgen.scanning.catalog",
    "split": "pairgen.sampling.splits",
    "leakage_report": "pairgen.sampling.splits",
    "sample_pairs": "pairgen.sampling",
    "sample_triplets": "pairgen.sampling",
    "sample_images": "pairgen.sampling",
    "build": "pairgen.writing.builder",
    "load": "pairgen.reading.tfdata",
    "feature_spec": "pairgen.reading.tfdata",
    "load_numpy": "pairgen.reading.arrays",
    "stream": "pairgen.reading.streaming",
    "load_classes": "pairgen.reading.pk_tf",
    "pk_batches": "pairgen.reading.pk",
    "fingerprint": "pairgen.dataset.fingerprints",
    "split_fingerprint": "pairgen.dataset.fingerprints",
    "read_card": "pairgen.dataset.card",
    "Card": "pairgen.dataset.card",
    "retrieval_metrics": "pairgen.train.retrieval",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pairgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
