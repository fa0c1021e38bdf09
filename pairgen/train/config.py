"""The trainer's settings: one frozen, validated dataclass (no TensorFlow import here).

The defaults are the recipe ``pairgen train`` uses with no options; they were chosen by
measuring test pair accuracy on the demo dataset (see benchmarks/README.md, "Training
quality"). Names that mean "pick for me" (``auto``) are resolved by :meth:`TrainConfig.resolve`
once the dataset kind is known, so ``config.json`` always records what actually ran.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pairgen.errors import ConfigError

TOWERS = ("conv-bn", "mlp", "small-cnn", "lenet", "eca-resnet18", "resnet50")
LOSSES = ("auto", "contrastive", "bce", "triplet")
HEADS = ("auto", "distance", "absdiff", "sigmoid", "bn-sigmoid")
DISTANCES = ("l2", "l1")
MININGS = ("auto", "none", "batch-hard", "batch-semi-hard")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("cosine", "constant")
READERS = ("auto", "tfdata", "numpy")
SELECT_BY = ("loss", "map-at-r")

# What a head outputs: a distance (small = same) or a probability of "same" (large = same).
HEAD_OUTPUT = {"distance": "distance", "bn-sigmoid": "distance", "absdiff": "probability",
               "sigmoid": "probability"}
_LOSS_HEADS = {"contrastive": ("distance", "bn-sigmoid"), "bce": ("absdiff", "sigmoid"),
               "triplet": ("distance",)}
_DEFAULT_HEAD = {"contrastive": "distance", "bce": "absdiff", "triplet": "distance"}
_DEFAULT_MARGIN = {"contrastive": 1.0, "triplet": 0.5, "bce": 0.0}
# Towers whose embeddings have unit length (distances in [0, 2]); the contrastive margin of 1.0
# that suits the unbounded reference towers is too loose there: 0.5 measured better on the demo.
NORMALIZED_TOWERS = ("conv-bn", "resnet50")


def _choice(value: Any, allowed: tuple[str, ...], option: str) -> str:
    text = str(value)
    if text not in allowed:
        raise ConfigError(f"{option} must be one of {', '.join(allowed)}; received: {option}={value!r}.")
    return text


def _positive(value: Any, option: str, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{option} must be a number {bound}; received: {option}={value!r}.")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs besides the dataset and the output folder.

    Attributes:
        model: Tower name (see ``TOWERS``); ``conv-bn`` is pairgen's compact 3x3-conv +
            BatchNorm CNN, the others are the reference towers.
        loss: ``contrastive``, ``bce``, ``triplet`` or ``auto`` (contrastive for pair
            datasets, triplet for triplet datasets).
        head: How two embeddings become one output: ``distance`` (L2 or L1), ``absdiff``
            (|a - b| -> Dense -> sigmoid, Koch et al.), ``sigmoid`` (sigmoid on the
            distance), ``bn-sigmoid`` (distance -> BatchNorm -> Dense -> sigmoid, trained
            as a distance: the keras-io contrastive example); ``auto`` picks per loss.
        distance: ``l2`` or ``l1``; the triplet loss squares the L2 distance (FaceNet).
        embedding_dim: Embedding size; ``None`` keeps the tower's reference size.
        width: Filters (or units) of the tower's first layer, the rest scale with it;
            ``None`` keeps the reference width. Small values make tiny test models.
        margin: Contrastive or triplet margin; ``None`` = 0.5 for triplet and for contrastive
            on the unit-length towers (``conv-bn``, ``resnet50``), else 1.0.
        mining: Online mining inside a batch for the triplet loss; ``auto`` = batch-hard.
        epochs, batch_size, optimizer, learning_rate, schedule: The recipe; ``cosine``
            decays the learning rate to 0 over all steps.
        patience: Early stopping on the validation loss (restoring the best weights);
            0 turns it off.
        seed: Seeds weight initialization, dropout and the shuffle order.
        mixed_precision: Train in float16 with float32 variables (GPU).
        jit: Compile the training step with XLA.
        reader: How splits reach ``fit``: ``tfdata`` streams the shards (TensorFlow),
            ``numpy`` reads them into memory with ``pairgen.load_numpy`` (any Keras backend,
            no TensorFlow needed), ``auto`` = tfdata on Keras' TensorFlow backend.
        steps_per_execution: Training steps run per call into the compiled graph. Small
            models spend most of a step in Python and dispatch overhead; running several
            steps per call removes most of it. Same steps, same order, same result.
        weights: A local Keras ImageNet weight file for ``resnet50`` (nothing is downloaded).
        train_split, val_split: Split names used for fitting and for early stopping and the
            decision threshold.
        classes_per_batch, images_per_class: ``P`` and ``K`` of the class-balanced batches of an
            images dataset (``None``: K = 4, P = batch_size // K); other kinds take neither.
        select_by: What early stopping watches and the kept checkpoint is best at: ``loss``
            (the val loss) or ``map-at-r`` (MAP@R of the val split's images, each searched
            among the others, after every epoch; images datasets only).
    """

    model: str = "conv-bn"
    loss: str = "auto"
    head: str = "auto"
    distance: str = "l2"
    embedding_dim: int | None = None
    width: int | None = None
    margin: float | None = None
    mining: str = "auto"
    epochs: int = 8
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    schedule: str = "cosine"
    patience: int = 3
    seed: int = 0
    mixed_precision: bool = False
    jit: bool = False
    steps_per_execution: int = 32
    reader: str = "auto"
    weights: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    classes_per_batch: int | None = None
    images_per_class: int | None = None
    select_by: str = "loss"

    def __post_init__(self) -> None:
        _choice(self.model, TOWERS, "--model")
        _choice(self.loss, LOSSES, "--loss")
        _choice(self.head, HEADS, "--head")
        _choice(self.distance, DISTANCES, "--distance")
        _choice(self.mining, MININGS, "--mining")
        _choice(self.optimizer, OPTIMIZERS, "--optimizer")
        _choice(self.schedule, SCHEDULES, "--schedule")
        _choice(self.reader, READERS, "--reader")
        _choice(self.select_by, SELECT_BY, "--select-by")
        for name in ("epochs", "batch_size", "steps_per_execution"):
            _positive(getattr(self, name), f"--{name.replace('_', '-')}")
        _positive(self.learning_rate, "--lr")
        _positive(self.patience, "--patience", allow_zero=True)
        _positive(self.seed, "--seed", allow_zero=True)
        for name in ("embedding_dim", "width"):
            if getattr(self, name) is not None:
                _positive(getattr(self, name), f"--{name.replace('_', '-')}")
        if self.margin is not None:
            _positive(self.margin, "--margin")
        for name in ("classes_per_batch", "images_per_class"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= 2; received: {value!r}.")
        if self.weights is not None and self.model != "resnet50":
            raise ConfigError(f"--weights is only used by --model resnet50; received: --model {self.model}. "
                              "Drop --weights or use --model resnet50.")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def resolve(self, kind: str) -> TrainConfig:
        """Fill in every ``auto``/``None`` choice for a dataset of ``kind`` and check the combination.

        Args:
            kind: ``pairs``, ``triplets`` or ``images``.

        Returns:
            A config with concrete loss, head, mining and margin.

        Raises:
            ConfigError: If the loss does not fit the dataset kind or the head does not fit the loss.
        """
        if kind == "images":
            return self._resolve_images()
        if self.classes_per_batch is not None or self.images_per_class is not None:
            raise ConfigError(f"--classes-per-batch/--images-per-class need an images dataset; this one holds "
                              f"{kind}. Drop them or build with --kind images.")
        if self.select_by != "loss":
            raise ConfigError(f"--select-by {self.select_by} needs an images dataset (P x K training); this one "
                              f"holds {kind}. Drop it or build with --kind images.")
        loss = self.loss if self.loss != "auto" else ("triplet" if kind == "triplets" else "contrastive")
        if (loss == "triplet") != (kind == "triplets"):
            want = "--loss triplet" if kind == "triplets" else "--loss contrastive or --loss bce"
            raise ConfigError(f"--loss {loss} does not fit a {kind} dataset; use {want} "
                              "(or build the dataset with the other --kind).")
        head = self.head if self.head != "auto" else _DEFAULT_HEAD[loss]
        if head not in _LOSS_HEADS[loss]:
            raise ConfigError(f"--head {head} does not fit --loss {loss}; use one of "
                              f"{', '.join(_LOSS_HEADS[loss])}.")
        mining = self.mining
        if loss != "triplet" and mining not in ("auto", "none"):
            raise ConfigError(f"--mining {mining} needs --loss triplet; received: --loss {loss}.")
        if mining == "auto":
            mining = "batch-hard" if loss == "triplet" else "none"
        margin = self.margin if self.margin is not None else _DEFAULT_MARGIN[loss]
        if self.margin is None and loss == "contrastive" and self.model in NORMALIZED_TOWERS:
            margin = 0.5
        return self.replace(loss=loss, head=head, mining=mining, margin=margin)

    def _resolve_images(self) -> TrainConfig:
        """:meth:`resolve` for an images dataset: in-batch losses on P x K batches."""
        loss = "triplet" if self.loss == "auto" else self.loss
        if loss not in ("triplet", "contrastive"):
            raise ConfigError(f"--loss {loss} does not fit an images dataset; use --loss triplet (with "
                              "--mining batch-hard or batch-semi-hard) or --loss contrastive.")
        if self.head not in ("auto", "distance"):
            raise ConfigError(f"--head {self.head} does not fit an images dataset (trained on embedding "
                              "distances); use --head distance.")
        mining = self.mining
        if loss == "triplet" and mining == "none":
            raise ConfigError("--mining none needs fixed triplets; an images dataset mines them in each batch: "
                              "use --mining batch-hard or batch-semi-hard.")
        if loss == "contrastive" and mining not in ("auto", "none"):
            raise ConfigError(f"--mining {mining} needs --loss triplet; received: --loss contrastive.")
        mining = ("batch-hard" if loss == "triplet" else "none") if mining == "auto" else mining
        margin = self.margin if self.margin is not None else _DEFAULT_MARGIN[loss]
        if self.margin is None and loss == "contrastive" and self.model in NORMALIZED_TOWERS:
            margin = 0.5
        k = self.images_per_class or 4
        p = self.classes_per_batch or max(2, self.batch_size // k)
        return self.replace(loss=loss, head="distance", mining=mining, margin=margin, classes_per_batch=p,
                            images_per_class=k, batch_size=p * k)

    @property
    def output(self) -> str:
        """``distance`` or ``probability``: what the resolved head outputs."""
        return HEAD_OUTPUT[self.head]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error naming the key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; valid: {', '.join(sorted(names))}.")
        return cls(**dict(data))
