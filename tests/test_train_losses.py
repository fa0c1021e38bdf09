"""Siamese losses against hand-computed values (label convention: 1 = same class)."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pairgen.errors import ConfigError  # noqa: E402
from pairgen.train.config import TrainConfig  # noqa: E402
from pairgen.train.losses import ContrastiveLoss, TripletLoss, bce_loss, make_loss  # noqa: E402


def _value(loss: keras.losses.Loss, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred)))


def test_contrastive_by_hand() -> None:
    # same, d=0.5: 0.5*0.25 = 0.125 | different, d=0.2: 0.5*0.8^2 = 0.32 | different, d=1.5: 0 | same, d=0: 0
    d = np.array([[0.5], [0.2], [1.5], [0.0]], np.float32)
    y = np.array([1, 0, 0, 1], np.float32)
    assert _value(ContrastiveLoss(margin=1.0), y, d) == pytest.approx(0.445 / 4, rel=1e-6)


def test_contrastive_respects_one_means_same() -> None:
    close = np.array([[0.05]], np.float32)
    loss = ContrastiveLoss(margin=1.0)
    assert _value(loss, np.array([1.0], np.float32), close) < _value(loss, np.array([0.0], np.float32), close)


def test_contrastive_margin_by_hand() -> None:
    # different, d=1.5, margin 2: 0.5 * 0.5^2 = 0.125
    assert _value(ContrastiveLoss(margin=2.0), np.array([0.0], np.float32),
                  np.array([[1.5]], np.float32)) == pytest.approx(0.125)


def test_bce_by_hand() -> None:
    p = np.array([[0.9], [0.2]], np.float32)
    y = np.array([[1.0], [0.0]], np.float32)
    assert _value(bce_loss(), y, p) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2, rel=1e-5)


def _triplets() -> tuple[np.ndarray, np.ndarray]:
    # 1-D embeddings. Triplet 1: a=0 (A), p=2 (A), n=1 (B); triplet 2: a=5 (C), p=6 (C), n=9 (B).
    emb = np.array([[[0.0], [2.0], [1.0]], [[5.0], [6.0], [9.0]]], np.float32)
    classes = np.array([[0, 0, 1], [2, 2, 1]], np.int32)
    return emb, classes


def test_triplet_without_mining_squared_l2_and_l1_by_hand() -> None:
    emb, classes = _triplets()
    # squared L2: max(4 - 1 + 2, 0) = 5 and max(1 - 16 + 2, 0) = 0 -> mean 2.5
    assert _value(TripletLoss(margin=2.0), classes, emb) == pytest.approx(2.5)
    # L1: max(2 - 1 + 2, 0) = 3 and max(1 - 4 + 2, 0) = 0 -> mean 1.5
    assert _value(TripletLoss(margin=2.0, metric="l1"), classes, emb) == pytest.approx(1.5)


def test_triplet_batch_hard_by_hand() -> None:
    # Six anchors (values 0, 2, 1, 5, 6, 9; classes A, A, B, C, C, B), squared distances:
    # anchor 0: hardest pos 4, nearest neg 1 -> 5 | anchor 2: 4 vs 1 -> 5 | anchor 1 (B): 64 vs 1 -> 65
    # anchor 5: 1 vs 9 -> 0 | anchor 6: 1 vs 9 -> 0 | anchor 9 (B): 64 vs 9 -> 57   => 132 / 6 = 22
    emb, classes = _triplets()
    assert _value(TripletLoss(margin=2.0, mining="batch-hard"), classes, emb) == pytest.approx(22.0)


def test_triplet_batch_semi_hard_by_hand() -> None:
    # Six (anchor, positive) pairs; negative = nearest one farther than the positive, else the farthest:
    # (0,2): 4 vs 25 -> 0 | (2,0): 4 vs 9 -> 0 | (1,9): 64, no farther negative, farthest 25 -> 41
    # (9,1): 64 vs 81 -> 0 | (5,6): 1 vs 9 -> 0 | (6,5): 1 vs 9 -> 0   => 41 / 6
    emb, classes = _triplets()
    assert _value(TripletLoss(margin=2.0, mining="batch-semi-hard"), classes, emb) == pytest.approx(41 / 6)


def test_make_loss_needs_a_resolved_config_and_resolves_per_kind() -> None:
    with pytest.raises(ConfigError, match="not resolved"):
        make_loss(TrainConfig())
    default = make_loss(TrainConfig().resolve("pairs"))
    assert isinstance(default, ContrastiveLoss) and default.margin == 0.5  # unit-length default tower
    assert TrainConfig(model="lenet").resolve("pairs").margin == 1.0      # the keras-io margin
    assert TrainConfig(margin=2.0).resolve("pairs").margin == 2.0
    triplet = make_loss(TrainConfig().resolve("triplets"))
    assert isinstance(triplet, TripletLoss) and triplet.mining == "batch-hard" and triplet.margin == 0.5


@pytest.mark.parametrize("settings, kind, match", [
    ({"loss": "triplet"}, "pairs", "does not fit a pairs dataset"),
    ({"loss": "bce"}, "triplets", "does not fit a triplets dataset"),
    ({"loss": "bce", "head": "distance"}, "pairs", "--head distance does not fit --loss bce"),
    ({"loss": "contrastive", "mining": "batch-hard"}, "pairs", "--mining batch-hard needs --loss triplet"),
])
def test_bad_combinations_are_config_errors(settings: dict, kind: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**settings).resolve(kind)


def test_config_rejects_bad_values_with_the_option_name() -> None:
    with pytest.raises(ConfigError, match="--model must be one of"):
        TrainConfig(model="vgg")
    with pytest.raises(ConfigError, match="--epochs must be a number > 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="--weights is only used by --model resnet50"):
        TrainConfig(weights="w.h5")
    cfg = TrainConfig(model="mlp", epochs=3)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
