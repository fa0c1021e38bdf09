"""Verification metrics and the one-shot evaluator on hand-made distances and embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from pairgen.errors import ConfigError
from pairgen.train import metrics as M


def test_threshold_is_chosen_midway_in_the_best_gap() -> None:
    d = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    y = np.array([1, 1, 0, 0, 0])
    t = M.choose_threshold(d, y)
    assert t == pytest.approx(0.25)
    m = M.pair_metrics(d, y, t)
    assert m["accuracy"] == 1.0 and m["tp"] == 2 and m["tn"] == 3 and m["fp"] == 0 and m["fn"] == 0


def test_threshold_below_everything_when_all_pairs_are_negative() -> None:
    d, y = np.array([0.2, 0.5]), np.array([0, 0])
    t = M.choose_threshold(d, y)
    assert t < 0.2 and M.pair_metrics(d, y, t)["accuracy"] == 1.0


def test_pair_metrics_precision_recall_by_hand() -> None:
    # predicted same (d <= 0.5): rows 0, 1, 2 -> tp = 2 (rows 0, 2), fp = 1 (row 1); fn = 1 (row 3)
    d = np.array([0.1, 0.4, 0.5, 0.7, 0.9])
    y = np.array([1, 0, 1, 1, 0])
    m = M.pair_metrics(d, y, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(3 / 5)


@pytest.mark.parametrize("d, y, auc", [
    ([0.1, 0.4, 0.35, 0.8], [1, 0, 1, 0], 1.0),
    ([0.1, 0.4, 0.35, 0.8], [1, 1, 0, 0], 0.75),   # one of four (pos, neg) orderings is wrong
    ([0.5, 0.5], [1, 0], 0.5),                      # a tie counts one half
    ([0.9, 0.1], [1, 0], 0.0),
])
def test_roc_auc_by_hand(d: list, y: list, auc: float) -> None:
    assert M.roc_auc(np.array(d), np.array(y)) == pytest.approx(auc)


def test_equal_error_rate_by_hand() -> None:
    # Between 0.35 and 0.4 one of two negatives is accepted and one of two positives rejected.
    d, y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([1, 1, 0, 0])
    assert M.equal_error_rate(d, y) == pytest.approx(0.5)
    assert M.equal_error_rate(np.array([0.1, 0.2, 0.7, 0.9]), np.array([1, 1, 0, 0])) == 0.0


def test_roc_curve_starts_at_origin_and_ends_at_one() -> None:
    fpr, tpr, thr = M.roc_curve(np.array([0.3, 0.1, 0.2]), np.array([1, 0, 1]))
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(thr[1:]) > 0)


def test_triplet_accuracy_by_hand() -> None:
    assert M.triplet_accuracy(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 4.0])) == pytest.approx(2 / 3)


def test_mismatched_inputs_are_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="as many labels as distances"):
        M.pair_metrics(np.array([0.1, 0.2]), np.array([1]), 0.5)


def _points(classes: int, per_class: int, spread: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(classes), per_class)
    centers = np.stack([10.0 * labels, np.zeros(labels.size)], axis=1)
    return centers + spread * rng.standard_normal(centers.shape), labels


def _distances(emb: np.ndarray, query: np.ndarray, cands: np.ndarray) -> np.ndarray:
    return np.linalg.norm(emb[cands] - emb[query][:, None, :], axis=-1)


def test_one_shot_trials_follow_koch_protocol() -> None:
    rng = np.random.default_rng(0)
    _, labels = _points(8, 3, 0.0, rng)
    query, cands, target = M.one_shot_trials(labels, ways=5, trials=300, rng=rng)
    assert cands.shape == (300, 5)
    cand_classes = labels[cands]
    assert all(len(set(row)) == 5 for row in cand_classes.tolist())          # N distinct classes
    assert np.array_equal(cand_classes[np.arange(300), target], labels[query])  # target = query's class
    assert not np.any(cands[np.arange(300), target] == query)                  # a different image of it
    assert len(set(target.tolist())) == 5                                       # the target column varies


def test_one_shot_is_perfect_on_separated_embeddings() -> None:
    rng = np.random.default_rng(1)
    emb, labels = _points(12, 4, 0.5, rng)
    query, cands, target = M.one_shot_trials(labels, ways=10, trials=200, rng=rng)
    assert M.one_shot_accuracy(_distances(emb, query, cands), target) == 1.0


def test_one_shot_on_collapsed_embeddings_picks_the_first_candidate() -> None:
    # All embeddings equal: every distance ties, argmin takes column 0, so the accuracy is
    # exactly the share of trials whose target sits in column 0 (about 1/N).
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(6), 3)
    emb = np.zeros((labels.size, 4))
    query, cands, target = M.one_shot_trials(labels, ways=5, trials=1000, rng=rng)
    acc = M.one_shot_accuracy(_distances(emb, query, cands), target)
    assert acc == pytest.approx(np.mean(target == 0))
    assert 0.15 < acc < 0.25


def test_one_shot_accuracy_by_hand_and_impossible_trials() -> None:
    assert M.one_shot_accuracy(np.array([[0.1, 0.5], [0.3, 0.2]]), np.array([0, 0])) == 0.5
    labels = np.repeat(np.arange(10), 2)
    assert M.one_shot_trials(labels, ways=20, trials=5, rng=np.random.default_rng(0)) is None
    assert M.one_shot_trials(np.arange(6), ways=3, trials=5, rng=np.random.default_rng(0)) is None
