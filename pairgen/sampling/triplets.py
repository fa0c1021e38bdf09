"""Triplet strategies: per-image, balanced and left-right.

A triplet is (anchor, positive, negative): the positive shares the anchor's class and is never
the anchor itself; the negative's class always differs from the anchor's (in left-right: the
negative is never the anchor's partner, which is the only other image of its identity).
"""

from __future__ import annotations

import numpy as np

from pairgen.errors import SampleError
from pairgen.sampling.base import ClassIndex, Positions, SampleParams, TripletSampler, uniform_int
from pairgen.sampling.pairs import left_right_lefts


class PerImageTriplets(TripletSampler):
    """Every image is the anchor of ``positives_per_image`` triplets (negative: a uniformly
    random image of another class)."""

    name = "per-image"

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        k = params.positives_per_image
        if k == 0:
            return np.arange(0), np.arange(0), np.arange(0)
        index.require_negatives("triplet negatives")
        has_pos = index.positive_anchors(index.rows, params, "triplet positives")
        # An image whose class has no other image in the split anchors no triplet (it can still
        # be another anchor's negative).
        anchors = np.repeat(index.rows if has_pos is None else index.rows[has_pos], k)
        return anchors, index.other_member(anchors, rng), index.other_class_image(anchors, rng)


class BalancedTriplets(TripletSampler):
    """``num_records`` triplets (split over the splits by size): the anchor's class is drawn
    uniformly from classes with 2+ images, the negative's class uniformly from the others."""

    name = "balanced"

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        total = params.num_records
        if total == 0:
            return np.arange(0), np.arange(0), np.arange(0)
        eligible = np.flatnonzero(index.counts >= 2)
        if eligible.size == 0:
            raise SampleError(f"no class in {index.where} has 2 or more images, so no triplet exists. "
                              "Raise --min-per-class or use --split-by class.")
        index.require_negatives("triplet negatives")
        c = eligible[uniform_int(rng, eligible.size, total)]
        anchors = index.member(c, rng)
        negatives = index.member(index.other_class(c, rng), rng)
        return anchors, index.other_member(anchors, rng), negatives


class LeftRightTriplets(TripletSampler):
    """Anchor = each left image, positive = its right partner, negative = any image (either
    side) of another identity; ``negatives_per_image`` triplets per left."""

    name = "left-right"
    left_right = True

    def sample(self, index: ClassIndex, params: SampleParams, *, rng: np.random.Generator) -> Positions:
        lefts = left_right_lefts(index)
        k = params.negatives_per_image
        if k == 0:
            return np.arange(0), np.arange(0), np.arange(0)
        index.require_negatives("triplet negatives")
        anchors = np.repeat(lefts, k)
        return anchors, anchors + 1, index.other_class_image(anchors, rng)
