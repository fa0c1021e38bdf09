"""Towers (image -> embedding), heads (two embeddings -> one output) and the Siamese models.

Every tower is a functional ``keras.Model`` named ``tower``; every head one named ``head``.
A Siamese model shares one tower between its inputs, so ``model.get_layer("tower")`` is the
embedding network and ``model.get_layer("head")`` scores any two embeddings (used for
one-shot evaluation and search).

Towers (``--model``), with the size of their reference embedding:

* ``conv-bn`` (64): pairgen's default, three blocks of 3x3 conv (no bias) -> BatchNorm ->
  ReLU -> 2x2 max-pool (16, 32, 64 filters), then Dense 128 ReLU -> Dense -> L2 normalize.
* ``mlp`` (128): Flatten -> 512 -> 256 -> Dense (siamese-network-embeddings).
* ``small-cnn`` (48): 2 x [Conv 64 2x2 ReLU -> MaxPool -> Dropout 0.3] -> GAP -> Dense (PyImageSearch).
* ``lenet`` (10): BatchNorm -> Conv 4 5x5 tanh -> AvgPool -> Conv 16 5x5 tanh -> AvgPool ->
  Flatten -> BatchNorm -> Dense tanh (keras-io contrastive example).
* ``eca-resnet18`` (512): ResNet-18 basic blocks with ECA attention after each stage (the
  Omniglot reference).
* ``resnet50`` (256): Keras ResNet50 (no top) -> Flatten -> Dense 512 -> BN -> Dense 256 -> BN
  -> Dense -> L2 normalize (the left/right triplet notebook).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pairgen.extras import require_keras

require_keras("pairgen.train")  # Keras or its backend missing: one line naming the extra, no traceback
import keras  # noqa: E402
from keras import layers

from pairgen.errors import ConfigError
from pairgen.train.layers import ECA, AbsDiff, CaffePreprocess, PairDistance, StackEmbeddings

Shape = tuple[int, int, int]

DEFAULT_DIM = {"conv-bn": 64, "mlp": 128, "small-cnn": 48, "lenet": 10, "eca-resnet18": 512,
               "resnet50": 256}
DEFAULT_WIDTH = {"conv-bn": 16, "mlp": 512, "small-cnn": 64, "lenet": 4, "eca-resnet18": 64,
                 "resnet50": 512}


def _conv_bn(x: Any, width: int, dim: int) -> Any:
    for filters in (width, 2 * width, 4 * width):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(8 * width, activation="relu")(x)
    # Unit-length embeddings: distances live in [0, 2], so the contrastive margin means the
    # same thing for every image; this alone took demo test accuracy from 0.97 to 0.99.
    return layers.UnitNormalization()(layers.Dense(dim)(x))


def _mlp(x: Any, width: int, dim: int) -> Any:
    x = layers.Flatten()(x)
    x = layers.Dense(width, activation="relu")(x)
    x = layers.Dense(width // 2, activation="relu")(x)
    return layers.Dense(dim)(x)


def _small_cnn(x: Any, width: int, dim: int) -> Any:
    for _ in range(2):
        x = layers.Conv2D(width, 2, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.3)(x)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(dim)(x)


def _lenet(x: Any, width: int, dim: int) -> Any:
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(width, 5, activation="tanh")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(4 * width, 5, activation="tanh")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.BatchNormalization()(x)
    return layers.Dense(dim, activation="tanh")(x)


def _residual(x: Any, filters: int, stride: int) -> Any:
    y = layers.Conv2D(filters, 3, strides=stride, padding="same")(x)
    y = layers.BatchNormalization()(y)
    y = layers.LeakyReLU(0.2)(y)
    y = layers.Conv2D(filters, 3, padding="same")(y)
    y = layers.BatchNormalization()(y)
    shortcut = x if stride == 1 and x.shape[-1] == filters else layers.Conv2D(filters, 1, strides=stride)(x)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def _eca_resnet18(x: Any, width: int, dim: int) -> Any:
    x = layers.Conv2D(width, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.MaxPooling2D(3, strides=1, padding="same")(x)
    for stage, mult in enumerate((1, 2, 4, 8)):
        x = _residual(x, width * mult, 1 if stage == 0 else 2)
        x = _residual(x, width * mult, 1)
        x = ECA()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(dim)(x)


def _resnet50(x: Any, width: int, dim: int, weights: str | None) -> Any:
    if weights is not None and not os.path.isfile(weights):
        raise ConfigError(f"--weights file '{weights}' does not exist; pass a local Keras ResNet50 "
                          "no-top weight file (.h5), or drop --weights for random initialization.")
    if x.shape[-1] == 1:
        x = layers.Concatenate()([x, x, x])
    if min(x.shape[1], x.shape[2]) < 32:  # Keras ResNet50 needs at least 32x32 inputs
        x = layers.Resizing(max(32, x.shape[1]), max(32, x.shape[2]))(x)
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=tuple(x.shape[1:]))
    if weights is not None:
        _load_imagenet(base, weights)
    x = base(CaffePreprocess()(x))
    x = layers.Flatten()(x)
    x = layers.BatchNormalization()(layers.Dense(width, activation="relu")(x))
    x = layers.BatchNormalization()(layers.Dense(width // 2, activation="relu")(x))
    return layers.UnitNormalization()(layers.Dense(dim)(x))


def _load_imagenet(base: keras.Model, path: str) -> None:
    """Load local ImageNet weights and freeze everything before ``conv4_block1`` (the notebook's choice)."""
    try:
        base.load_weights(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"--weights file '{path}' does not fit Keras ResNet50 without top ({exc}). "
                          "Use resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5.") from None
    trainable = False
    for layer in base.layers:
        trainable = trainable or layer.name.startswith("conv4_block1")
        layer.trainable = trainable


_BUILDERS: dict[str, Callable[..., Any]] = {"conv-bn": _conv_bn, "mlp": _mlp, "small-cnn": _small_cnn,
                                            "lenet": _lenet, "eca-resnet18": _eca_resnet18}


def build_tower(name: str, input_shape: Shape, *, embedding_dim: int | None = None,
                width: int | None = None, weights: str | None = None) -> keras.Model:
    """Build the embedding network ``name`` for images of ``input_shape``.

    Args:
        name: A tower name (see the module docstring).
        input_shape: ``(height, width, channels)`` of the dataset's images.
        embedding_dim: Output size; ``None`` = the tower's reference size.
        width: First-layer filters or units; ``None`` = the reference width.
        weights: Local ImageNet weight file (``resnet50`` only).

    Returns:
        A ``keras.Model`` named ``tower`` mapping images to ``(batch, embedding_dim)``.

    Raises:
        ConfigError: For an unknown tower, images too small for it, or an unusable weight file.
    """
    if name not in DEFAULT_DIM:
        raise ConfigError(f"--model must be one of {', '.join(DEFAULT_DIM)}; received: --model {name!r}.")
    dim = embedding_dim or DEFAULT_DIM[name]
    wid = width or DEFAULT_WIDTH[name]
    _check_size(name, input_shape)
    inputs = keras.Input(tuple(input_shape), name="image")
    if name == "resnet50":
        outputs = _resnet50(inputs, wid, dim, weights)
    else:
        outputs = _BUILDERS[name](inputs, wid, dim)
    # Embeddings leave the tower in float32 so distances stay precise under mixed precision.
    outputs = layers.Activation("linear", dtype="float32", name="embedding")(outputs)
    return keras.Model(inputs, outputs, name="tower")


def _check_size(name: str, shape: Shape) -> None:
    smallest = {"lenet": 16, "conv-bn": 8, "small-cnn": 4, "eca-resnet18": 8}.get(name, 1)
    if min(shape[0], shape[1]) < smallest:
        raise ConfigError(f"--model {name} needs images of at least {smallest}x{smallest}; the dataset has "
                          f"{shape[0]}x{shape[1]}. Rebuild with a larger --image-size or pick another --model.")


def build_head(head: str, embedding_dim: int, *, distance: str = "l2") -> keras.Model:
    """Build the head that turns two embeddings into one output of shape ``(batch, 1)``.

    Args:
        head: ``distance``, ``absdiff``, ``sigmoid`` or ``bn-sigmoid``.
        embedding_dim: Size of each embedding.
        distance: ``l2`` or ``l1`` for the heads that start from a distance.

    Returns:
        A ``keras.Model`` named ``head`` taking ``[emb_a, emb_b]``.

    Raises:
        ConfigError: For an unknown head.
    """
    ea, eb = keras.Input((embedding_dim,), name="emb_a"), keras.Input((embedding_dim,), name="emb_b")
    if head == "absdiff":
        out = layers.Dense(1, activation="sigmoid", dtype="float32")(AbsDiff()([ea, eb]))
    elif head in ("distance", "sigmoid", "bn-sigmoid"):
        out = PairDistance(distance, name="distance")([ea, eb])
        if head == "bn-sigmoid":
            out = layers.BatchNormalization(dtype="float32")(out)
        if head != "distance":
            out = layers.Dense(1, activation="sigmoid", dtype="float32")(out)
    else:
        raise ConfigError(f"--head must be one of distance, absdiff, sigmoid, bn-sigmoid; received: {head!r}.")
    return keras.Model([ea, eb], out, name="head")


def pair_model(tower: keras.Model, head: keras.Model) -> keras.Model:
    """The Siamese pair model: ``[a, b] -> head(tower(a), tower(b))``."""
    shape = tuple(tower.input_shape[1:])
    a, b = keras.Input(shape, name="a"), keras.Input(shape, name="b")
    return keras.Model([a, b], head([tower(a), tower(b)]), name="siamese")


def triplet_train_model(tower: keras.Model) -> keras.Model:
    """The triplet training model: ``[anchor, positive, negative] -> (batch, 3, dim)`` embeddings."""
    shape = tuple(tower.input_shape[1:])
    ins = [keras.Input(shape, name=n) for n in ("anchor", "positive", "negative")]
    return keras.Model(ins, StackEmbeddings()([tower(x) for x in ins]), name="triplet_train")


def triplet_model(tower: keras.Model, head: keras.Model) -> keras.Model:
    """The saved triplet Siamese model: ``[anchor, positive, negative] -> [d(a, p), d(a, n)]``."""
    shape = tuple(tower.input_shape[1:])
    a, p, n = (keras.Input(shape, name=x) for x in ("anchor", "positive", "negative"))
    ea = tower(a)
    both = layers.Concatenate(dtype="float32")([head([ea, tower(p)]), head([ea, tower(n)])])
    return keras.Model([a, p, n], both, name="siamese_triplet")
