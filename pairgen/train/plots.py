"""PNG plots of a run: training curves, the val distance histogram, ROC curves.

Drawn with matplotlib's non-interactive Agg canvas (no display needed, no global pyplot state).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from pairgen.extras import require

require("matplotlib", extra="keras", feature="pairgen train (its curves.png, distances.png, roc.png)")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

_DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    return path


def plot_history(history: pd.DataFrame, path: str | Path) -> Path:
    """Loss (and any other logged metric) per epoch, train and val together, plus the learning rate.

    Args:
        history: ``history.csv`` as a frame (an ``epoch`` column plus ``loss``, ``val_loss``,
            ``learning_rate``, ...).
        path: Output PNG.

    Returns:
        The written path.
    """
    names = [c for c in history.columns if c not in ("epoch", "learning_rate") and not c.startswith("val_")]
    panels = (names or ["loss"]) + (["learning_rate"] if "learning_rate" in history else [])
    fig = Figure(figsize=(4.8 * len(panels), 3.8))
    epochs = history["epoch"] + 1 if "epoch" in history else np.arange(1, len(history) + 1)
    for i, name in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        if name in history:
            ax.plot(epochs, history[name], marker="o", label="train" if name != "learning_rate" else "lr")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label="val")
        ax.set_xlabel("epoch")
        ax.set_title(name.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, Path(path))


def plot_distances(dist: np.ndarray, labels: np.ndarray, threshold: float, path: str | Path, *,
                   xlabel: str = "distance", title: str = "val pairs") -> Path:
    """Histograms of same-class and different-class distances with the threshold marked.

    Args:
        dist: Pair distances (small = same).
        labels: 1 = same class.
        threshold: The decision threshold (drawn as a vertical line).
        path: Output PNG.
        xlabel: What the distance is (e.g. ``1 - p(same)`` for probability heads).
        title: Plot title.

    Returns:
        The written path.
    """
    d, y = np.asarray(dist, np.float64).ravel(), np.asarray(labels).ravel().astype(bool)
    fig = Figure(figsize=(6.5, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(float(d.min()), float(d.max()) + 1e-9, 50) if d.size else 10
    # matplotlib's stubs type bins as int | Sequence[float] | str; hist takes an array of edges too.
    ax.hist(d[y], bins=bins, alpha=0.6, label=f"same class ({int(y.sum())})",  # type: ignore[arg-type]
            color="tab:green")
    ax.hist(d[~y], bins=bins, alpha=0.6, label=f"different class ({int((~y).sum())})",  # type: ignore[arg-type]
            color="tab:red")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend()
    return _save(fig, Path(path))


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: str | Path) -> Path:
    """ROC curves (false vs true positive rate of "same"), one per split, AUC in the legend.

    Args:
        curves: Split name to ``(fpr, tpr, auc)``.
        path: Output PNG.

    Returns:
        The written path.
    """
    fig = Figure(figsize=(4.8, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.4f})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right")
    return _save(fig, Path(path))


def plot_retrieval(queries: np.ndarray, query_classes: np.ndarray, found: np.ndarray, found_classes: np.ndarray,
                   path: str | Path, *, title: str = "nearest neighbours") -> Path:
    """One row per query: the query, then its nearest gallery images, framed green (same class) or red.

    Args:
        queries: Query images ``[q, h, w, c]`` (uint8 or float in [0, 1]).
        query_classes: Their classes ``[q]``.
        found: The neighbours' images ``[q, k, h, w, c]``, nearest first.
        found_classes: Their classes ``[q, k]``.
        path: Output PNG.
        title: Figure title.

    Returns:
        The written path.
    """
    q, k = found.shape[:2]
    fig = Figure(figsize=(1.1 * (k + 1), 1.2 * q + 0.5))
    for i in range(q):
        for j in range(k + 1):
            ax = fig.add_subplot(q, k + 1, i * (k + 1) + j + 1)
            image = queries[i] if j == 0 else found[i, j - 1]
            cls = query_classes[i] if j == 0 else found_classes[i, j - 1]
            gray = image.shape[-1] == 1
            ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None,
                      vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
            color = "black" if j == 0 else ("tab:green" if cls == query_classes[i] else "tab:red")
            for side in ax.spines.values():
                side.set_color(color)
                side.set_linewidth(3)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title("query" if j == 0 else str(j), fontsize=7)
            ax.set_xlabel(str(cls), fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, Path(path))
