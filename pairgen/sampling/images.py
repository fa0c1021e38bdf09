"""The images kind's only strategy: every image of a split is one record.

An images record holds one image and its class; batches of P classes x K images (and the
pairs and triplets mined inside them) are made by the reader, not at build time. There is no
sampling choice to make, so the kind has one strategy, ``per-image`` (the default), and the
sampling parameters of pairs and triplets do not apply.
"""

from __future__ import annotations

import numpy as np

from pairgen.sampling.base import ClassIndex, ImageSampler, Positions, SampleParams


class EveryImage(ImageSampler):
    """Each image of the split once, in catalog (``image_id``) order."""

    name = "per-image"

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        return (index.rows,)
