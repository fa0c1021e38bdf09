"""How many records a ``[sample]`` config will draw, and the memory sampling them takes.

The count is exact where the strategy fixes it (``balanced``: ``num_records``; ``per-image``:
images x counts) and an upper bound for ``exhaustive``. A build multiplies it by the augmented
copies and refuses, before it samples, a count whose manifests would not fit in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pairgen.spec.config import Kind, SampleConfig

# Peak bytes per record while a build samples, shuffles and writes its manifests: 141 measured
# (a manifest-only build of 20,000,000 balanced pairs, peak RSS less that of 5,000,000), rounded up.
BYTES_PER_RECORD = 160


def planned_records(kind: Kind, sample: SampleConfig, class_sizes: Sequence[np.ndarray] | None) -> int | None:
    """Records one build's sampling makes, before augmented copies.

    Args:
        kind: The record kind.
        sample: The ``[sample]`` config.
        class_sizes: Per split, the number of images of each class in it; ``None`` before the scan.

    Returns:
        The count, or ``None`` when it depends on the images and ``class_sizes`` is ``None``.
    """
    if kind is not Kind.IMAGES and sample.strategy == "balanced":
        return sample.num_records
    if class_sizes is None:
        return None
    sizes = [np.asarray(s, np.int64) for s in class_sizes]
    images = sum(int(s.sum()) for s in sizes)
    classes = sum(int(s.size) for s in sizes)
    p, n = sample.positives_per_image, sample.negatives_per_image
    if kind is Kind.IMAGES:
        return images
    if sample.strategy == "per-class":
        return 2 * classes * sample.per_class
    if sample.strategy == "exhaustive":
        within = sum(int(np.minimum(s * (s - 1) // 2, sample.max_pairs_per_class).sum()) for s in sizes)
        return 2 * within
    if sample.strategy == "left-right":
        return images // 2 * (n + (1 if kind is Kind.PAIRS else 0))
    return images * ((p + n) if kind is Kind.PAIRS else p)  # per-image and hard


def sampling_bytes(records: int) -> int:
    """Peak memory, in bytes, to sample ``records`` records and write their manifests."""
    return records * BYTES_PER_RECORD
