"""Custom Keras layers of the Siamese models, registered so saved ``.keras`` files reload.

No ``Lambda`` layers are used: a Lambda's Python code is not saved with the model and is
refused by ``keras.models.load_model`` in safe mode.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers, ops

_PACKAGE = "pairgen"
_EPS = 1e-9  # keeps sqrt differentiable at distance 0


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PairDistance(layers.Layer):
    """L2 (Euclidean) or L1 distance between two embedding batches, shape ``(batch, 1)``.

    Computed in float32 even under mixed precision, since small distances lose precision in float16.
    """

    def __init__(self, metric: str = "l2", **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.metric = metric

    def call(self, inputs: list[Any]) -> Any:
        a, b = (ops.cast(x, "float32") for x in inputs)
        if self.metric == "l1":
            return ops.sum(ops.abs(a - b), axis=-1, keepdims=True)
        return ops.sqrt(ops.maximum(ops.sum(ops.square(a - b), axis=-1, keepdims=True), _EPS))

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0][0], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "metric": self.metric}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AbsDiff(layers.Layer):
    """Element-wise ``|a - b|`` of two embedding batches (the Koch et al. merge)."""

    def call(self, inputs: list[Any]) -> Any:
        a, b = inputs
        return ops.abs(a - b)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StackEmbeddings(layers.Layer):
    """Stack anchor, positive and negative embeddings into ``(batch, 3, dim)`` for the triplet loss."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs: list[Any]) -> Any:
        return ops.stack([ops.cast(x, "float32") for x in inputs], axis=1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0][0], len(input_shape), input_shape[0][-1])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CaffePreprocess(layers.Layer):
    """[0, 1] RGB pixels to the ImageNet 'caffe' input of Keras ResNet50 (BGR, mean-subtracted, 0-255)."""

    def call(self, x: Any) -> Any:
        x = x[..., ::-1] * 255.0
        return x - ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=x.dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ECA(layers.Layer):
    """Efficient Channel Attention (Wang et al. 2020): a 1-D conv across pooled channels -> sigmoid gate.

    The kernel size follows the paper, ``|log2(C) + b| / gamma`` rounded to the next odd number.
    """

    def __init__(self, b: int = 1, gamma: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.b, self.gamma = b, gamma

    def build(self, input_shape: Any) -> None:
        channels = int(input_shape[-1])
        k = int(abs((math.log2(channels) + self.b) / self.gamma))
        k = k if k % 2 else k + 1
        self.conv = layers.Conv1D(1, k, padding="same", use_bias=False, dtype=self.dtype_policy)
        self.conv.build((None, channels, 1))

    def call(self, x: Any) -> Any:
        pooled = ops.mean(x, axis=(1, 2))[..., None]          # (batch, C, 1)
        gate = ops.sigmoid(self.conv(pooled))                   # (batch, C, 1)
        return x * ops.expand_dims(ops.transpose(gate, (0, 2, 1)), 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "b": self.b, "gamma": self.gamma}
