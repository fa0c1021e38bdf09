"""Largest-remainder rounding: split an integer total into integer shares."""

from __future__ import annotations

import numpy as np


def largest_remainder(exact: np.ndarray, total: int, carry: np.ndarray | None = None,
                      tol: float = 0.0) -> np.ndarray:
    """Round ``exact`` shares to int64 counts that add up to ``total``.

    Each count is the floor of its share; the ``total - sum(floors)`` leftover units go one each
    to the largest fractional parts, ties to the group listed first.

    Args:
        exact: Float shares, one per group, summing to ``total``.
        total: The integer total to distribute.
        carry: Optional running remainders from earlier calls, added to the fractional parts
            when ranking and updated in place, so rounding spreads fairly across many calls.
        tol: Shares within ``tol`` below an integer floor to it, and fractional parts that
            differ by less than ``tol`` tie (``0.0``: exact comparison).

    Returns:
        int64 counts, one per group, summing to ``total``.
    """
    counts = np.floor(exact + tol).astype(np.int64) if tol else np.floor(exact).astype(np.int64)
    priority = exact - counts
    if carry is not None:
        priority = priority + carry
    if tol:
        priority = np.round(priority, int(round(-np.log10(tol))))
    order = np.argsort(-priority, kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    if carry is not None:
        carry += exact - counts
    return counts
