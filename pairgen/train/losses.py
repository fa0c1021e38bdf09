"""Siamese losses as Keras ``Loss`` objects, written with ``keras.ops``.

Label convention: pairgen data says **1 = same class, 0 = different**. The contrastive loss of
Hadsell, Chopra and LeCun (2006) is written for Y = 0 similar; the flip happens here, inside
the loss, and never in the data.

* :class:`ContrastiveLoss`: ``y * d^2 / 2 + (1 - y) * max(margin - d, 0)^2 / 2`` (the paper's
  form, with its factor 1/2), on a distance ``d``.
* :func:`bce_loss`: binary cross-entropy on a probability of "same" (Koch et al. 2015).
* :class:`TripletLoss`: ``max(d(a, p) - d(a, n) + margin, 0)`` with ``d`` the squared L2
  (FaceNet) or the L1 distance, optionally with online mining inside the batch; the miners
  also take a plain batch of embeddings ``(batch, dim)`` with class ids ``(batch,)`` (P x K).
* :class:`InBatchContrastiveLoss`: the contrastive loss over all pairs of a P x K batch.
"""

from __future__ import annotations

from typing import Any

from pairgen.extras import require_keras

require_keras("pairgen.train")  # Keras or its backend missing: one line naming the extra, no traceback
import keras  # noqa: E402
from keras import ops

from pairgen.errors import ConfigError
from pairgen.train.config import TrainConfig

_PACKAGE = "pairgen"
_BIG = 1e9


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ContrastiveLoss(keras.losses.Loss):
    """Contrastive loss on distances; ``y_true`` is 1 for same-class pairs."""

    def __init__(self, margin: float = 1.0, name: str = "contrastive", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        d = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
        same = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        pull = same * ops.square(d)
        push = (1.0 - same) * ops.square(ops.maximum(self.margin - d, 0.0))
        return 0.5 * (pull + push)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "margin": self.margin}


def bce_loss() -> keras.losses.Loss:
    """Binary cross-entropy on the head's probability that a pair is the same class."""
    return keras.losses.BinaryCrossentropy(name="bce")


def pairwise_distances(emb: Any, metric: str) -> Any:
    """All-pairs distances of ``emb`` (n, dim): squared L2 or L1, shape (n, n)."""
    if metric == "l1":
        return ops.sum(ops.abs(emb[:, None, :] - emb[None, :, :]), axis=-1)
    sq = ops.sum(ops.square(emb), axis=1)
    d = sq[:, None] - 2.0 * ops.matmul(emb, ops.transpose(emb)) + sq[None, :]
    return ops.maximum(d, 0.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TripletLoss(keras.losses.Loss):
    """Triplet margin loss on ``y_pred`` = stacked embeddings ``(batch, 3, dim)``.

    ``mining="none"`` uses each given triplet. The miners use every embedding of the batch
    (3 x batch) as an anchor and need ``y_true`` = class ids ``(batch, 3)``:

    * ``batch-hard`` (Hermans et al. 2017): per anchor, the farthest positive and the
      nearest negative in the batch; the loss is averaged over anchors.
    * ``batch-semi-hard`` (Schroff et al. 2015): per anchor-positive pair, the nearest
      negative that is farther than the positive, or the farthest negative when none is;
      averaged over anchor-positive pairs.

    ``squared=False`` mines on the plain Euclidean distance instead of its square (Hermans et
    al.: with squared distances batch-hard training collapses more easily; the P x K trainer
    uses it).
    """

    def __init__(self, margin: float = 0.5, metric: str = "l2", mining: str = "none",
                 name: str = "triplet", squared: bool = True, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.margin, self.metric, self.mining, self.squared = float(margin), metric, mining, bool(squared)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        emb = ops.cast(y_pred, "float32")
        if self.mining == "none":
            a, p, n = emb[:, 0], emb[:, 1], emb[:, 2]
            d_ap = _rowwise(a, p, self.metric)
            d_an = _rowwise(a, n, self.metric)
            return ops.maximum(d_ap - d_an + self.margin, 0.0)
        dim = ops.shape(emb)[-1]
        flat = ops.reshape(emb, (-1, dim))
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        dist = pairwise_distances(flat, self.metric)
        if self.metric == "l2" and not self.squared:
            dist = ops.sqrt(dist + 1e-12)
        same = ops.equal(labels[:, None], labels[None, :])
        pos_mask = ops.cast(same, "float32") * (1.0 - ops.eye(ops.shape(labels)[0]))
        neg_mask = 1.0 - ops.cast(same, "float32")
        if self.mining == "batch-hard":
            return _batch_hard(dist, pos_mask, neg_mask, self.margin)
        return _semi_hard(dist, pos_mask, neg_mask, self.margin)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "margin": self.margin, "metric": self.metric, "mining": self.mining,
                "squared": self.squared}


def _rowwise(a: Any, b: Any, metric: str) -> Any:
    if metric == "l1":
        return ops.sum(ops.abs(a - b), axis=-1)
    return ops.sum(ops.square(a - b), axis=-1)


def _batch_hard(dist: Any, pos_mask: Any, neg_mask: Any, margin: float) -> Any:
    hardest_pos = ops.max(dist * pos_mask, axis=1)
    hardest_neg = ops.min(dist + _BIG * (1.0 - neg_mask), axis=1)
    valid = ops.cast(ops.sum(pos_mask, axis=1) > 0, "float32") * ops.cast(ops.sum(neg_mask, axis=1) > 0, "float32")
    per_anchor = ops.maximum(hardest_pos - hardest_neg + margin, 0.0) * valid
    return ops.sum(per_anchor) / ops.maximum(ops.sum(valid), 1.0)


def _semi_hard(dist: Any, pos_mask: Any, neg_mask: Any, margin: float) -> Any:
    # d_an[i, k] broadcast against d_ap[i, j]: shape (anchor i, positive j, negative k).
    d_ap = dist[:, :, None]
    d_an = dist[:, None, :]
    neg = neg_mask[:, None, :]
    outside = neg * ops.cast(d_an > d_ap, "float32")
    nearest_outside = ops.min(d_an + _BIG * (1.0 - outside), axis=2)
    farthest_neg = ops.max(d_an * neg - _BIG * (1.0 - neg), axis=2)
    has_outside = ops.sum(outside, axis=2) > 0
    chosen = ops.where(has_outside, nearest_outside, farthest_neg)
    has_neg = ops.cast(ops.sum(neg_mask, axis=1) > 0, "float32")[:, None]
    weight = pos_mask * has_neg
    per_pair = ops.maximum(dist - chosen + margin, 0.0) * weight
    return ops.sum(per_pair) / ops.maximum(ops.sum(weight), 1.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InBatchContrastiveLoss(keras.losses.Loss):
    """Contrastive loss over every pair of a batch of embeddings ``(batch, dim)``.

    ``y_true`` holds the class ids ``(batch,)``; each unordered pair of distinct rows is a
    positive (same class) or a negative. The mean over the positives and the mean over the
    negatives are weighted equally (a P x K batch has far more negatives).
    """

    def __init__(self, margin: float = 1.0, metric: str = "l2", name: str = "in_batch_contrastive",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.margin, self.metric = float(margin), metric

    def call(self, y_true: Any, y_pred: Any) -> Any:
        emb = ops.cast(y_pred, "float32")
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        dist = pairwise_distances(emb, self.metric)
        d = ops.sqrt(dist + 1e-12) if self.metric == "l2" else dist
        same = ops.cast(ops.equal(labels[:, None], labels[None, :]), "float32")
        pos = same * (1.0 - ops.eye(ops.shape(labels)[0]))
        neg = 1.0 - same
        pull = ops.sum(pos * ops.square(d)) / ops.maximum(ops.sum(pos), 1.0)
        push = ops.sum(neg * ops.square(ops.maximum(self.margin - d, 0.0))) / ops.maximum(ops.sum(neg), 1.0)
        return 0.5 * (pull + push)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "margin": self.margin, "metric": self.metric}


def make_loss(config: TrainConfig, *, in_batch: bool = False) -> keras.losses.Loss:
    """The loss object of a resolved config (``in_batch``: over all pairs of a P x K batch).

    Raises:
        ConfigError: If ``config`` has not been resolved (its loss is still ``auto``).
    """
    margin = config.margin  # set by TrainConfig.resolve for the losses that use one
    if config.loss == "contrastive" and in_batch and margin is not None:
        return InBatchContrastiveLoss(margin=margin, metric=config.distance)
    if config.loss == "contrastive" and margin is not None:
        return ContrastiveLoss(margin=margin)
    if config.loss == "bce":
        return bce_loss()
    if config.loss == "triplet" and margin is not None:
        return TripletLoss(margin=margin, metric=config.distance, mining=config.mining,
                           squared=not in_batch)
    raise ConfigError(f"the training config is not resolved (loss={config.loss!r}); call TrainConfig.resolve(kind).")
