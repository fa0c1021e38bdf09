"""What the trainer needs to know about the Keras backend it runs on (TensorFlow, JAX or PyTorch).

``pairgen train`` uses the TensorFlow backend by default (``KERAS_BACKEND`` picks another).
Only this module and the ``tfdata`` reader touch TensorFlow directly; towers, heads and losses
use ``keras.ops``.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

import keras


def name() -> str:
    """The Keras backend: ``tensorflow``, ``jax``, ``torch`` or ``numpy``."""
    return keras.backend.backend()


def gpu_count() -> int:
    """GPUs visible to the backend."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return sum(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return int(torch.cuda.device_count())
    return 0


class _OneDevice:
    """The strategy of backends without ``tf.distribute``: the default device, one replica."""

    num_replicas_in_sync = 1

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def strategy() -> Any:
    """``tf.distribute.MirroredStrategy`` over all GPUs when TensorFlow sees several, else one device."""
    if name() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return _OneDevice()


def steps_per_execution(requested: int) -> int:
    """``requested``, or 1 on the PyTorch backend (which runs one step per call)."""
    return 1 if name() == "torch" else int(requested)


def versions() -> dict[str, str]:
    """Versions of Keras and of the backend's framework, for a run's ``config.json``."""
    backend = name()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy"}.get(backend, backend)
    return {"keras": keras.__version__, "backend": backend, module: importlib.import_module(module).__version__}
