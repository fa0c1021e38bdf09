"""Verification metrics on distances, in NumPy (no TensorFlow).

Every function takes **distances** (small = same class) and labels with 1 = same class. A
model whose head outputs a probability of "same" is scored with ``1 - p``. A pair is predicted
"same" when its distance is ``<= threshold``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pairgen.errors import ConfigError


def _check(dist: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(dist, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if d.size != y.size or d.size == 0:
        raise ConfigError(f"need as many labels as distances (and at least one); received {d.size} and {y.size}.")
    return d, y


def _cuts(d: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique distances, and the positives/negatives at or below each of them."""
    order = np.argsort(d, kind="stable")
    ds, ys = d[order], y[order]
    last = np.r_[ds[1:] != ds[:-1], True]  # last position of each run of equal distances
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(~ys)[last]
    return ds[last], tp, fp


def choose_threshold(dist: np.ndarray, labels: np.ndarray) -> float:
    """The distance threshold with the highest accuracy (use it on validation data only).

    Candidates lie midway between consecutive distinct distances (plus one below all and
    one at the largest), so the choice does not hug a single example. Ties go to the
    smallest threshold.

    Args:
        dist: Pair distances.
        labels: 1 = same class.

    Returns:
        The threshold.
    """
    d, y = _check(dist, labels)
    values, tp, fp = _cuts(d, y)
    n_neg = int((~y).sum())
    correct = np.r_[n_neg, tp + (n_neg - fp)]  # index 0: nothing predicted same
    best = int(np.argmax(correct))
    if best == 0:
        return float(values[0] - 1e-6 * max(1.0, abs(values[0])))
    if best == values.size:
        return float(values[-1])
    return float((values[best - 1] + values[best]) / 2.0)


def pair_metrics(dist: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, precision and recall of "same" at ``threshold``, with the counts.

    Args:
        dist: Pair distances.
        labels: 1 = same class.
        threshold: Predict "same" when ``dist <= threshold``.

    Returns:
        ``accuracy``, ``precision``, ``recall``, ``tp``, ``fp``, ``tn``, ``fn``, ``pairs``,
        ``positives``, ``negatives``.
    """
    d, y = _check(dist, labels)
    pred = d <= threshold
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    return {"accuracy": (tp + tn) / d.size, "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "pairs": int(d.size), "positives": int(y.sum()), "negatives": int((~y).sum())}


def roc_curve(dist: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of "same" as the threshold grows: false and true positive rates at each distinct distance.

    Returns:
        ``(fpr, tpr, thresholds)``, starting at (0, 0) with threshold ``-inf``. A rate is 0
        when its class is absent.
    """
    d, y = _check(dist, labels)
    values, tp, fp = _cuts(d, y)
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return (np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[-np.inf, values])


def roc_auc(dist: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive is closer than a random negative
    (ties count one half). ``nan`` when a class is absent."""
    d, y = _check(dist, labels)
    if y.all() or not y.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(d, y)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def equal_error_rate(dist: np.ndarray, labels: np.ndarray) -> float:
    """The rate where false accepts equal false rejects (linear between ROC points)."""
    d, y = _check(dist, labels)
    if y.all() or not y.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(d, y)
    gap = fpr - (1.0 - tpr)  # rises from -1 to +1 along the curve
    i = int(np.argmax(gap >= 0))
    if i == 0:
        return 0.0
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def triplet_accuracy(d_ap: np.ndarray, d_an: np.ndarray) -> float:
    """Fraction of triplets whose positive is strictly closer to the anchor than the negative."""
    ap, an = np.asarray(d_ap, np.float64).ravel(), np.asarray(d_an, np.float64).ravel()
    if ap.size != an.size or ap.size == 0:
        raise ConfigError(f"need equally many d(a,p) and d(a,n) values; received {ap.size} and {an.size}.")
    return float(np.mean(ap < an))


def one_shot_trials(classes: np.ndarray, *, ways: int, trials: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Koch et al.'s N-way one-shot trials over images with class ids ``classes``.

    Each trial draws ``ways`` distinct classes, one of them the query's class (a class with
    at least two images); the query is one image of that class and the candidates are one
    *other* image of it plus one image of each other class, in random order.

    Args:
        classes: Class id of each image.
        ways: N, the number of candidates (and classes) per trial.
        trials: Number of trials.
        rng: Source of randomness.

    Returns:
        ``(query [T], candidates [T, N], target [T])`` (image indices; ``target`` is the
        column of the query's class), or ``None`` when the images have fewer than ``ways``
        classes or no class with two images.
    """
    classes = np.asarray(classes)
    uniq, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
    eligible = np.flatnonzero(counts >= 2)
    if ways < 2 or uniq.size < ways or eligible.size == 0 or trials <= 0:
        return None
    members = np.argsort(inverse, kind="stable")
    offsets = np.r_[0, np.cumsum(counts)[:-1]]
    query_class = eligible[rng.integers(0, eligible.size, trials)]
    query = np.empty(trials, np.int64)
    cands = np.empty((trials, ways), np.int64)
    target = rng.integers(0, ways, trials)
    for t in range(trials):
        c = query_class[t]
        pick = rng.choice(counts[c], size=2, replace=False)
        query[t] = members[offsets[c] + pick[0]]
        others = rng.choice(uniq.size - 1, size=ways - 1, replace=False)
        others += others >= c  # skip the query's class
        row = members[offsets[others] + (rng.random(ways - 1) * counts[others]).astype(np.int64)]
        cands[t] = np.insert(row, target[t], members[offsets[c] + pick[1]])
    return query, cands, target


def one_shot_accuracy(dist: np.ndarray, target: np.ndarray) -> float:
    """Fraction of trials whose nearest candidate (``dist`` [T, N]) is the ``target`` column."""
    dist = np.asarray(dist)
    return float(np.mean(np.argmin(dist, axis=1) == np.asarray(target)))
