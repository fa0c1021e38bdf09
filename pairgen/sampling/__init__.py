"""Vectorized, seeded pair and triplet sampling over a catalog's images; one record per image for ``images``.

``sample_pairs`` and ``sample_triplets`` look the strategy up in a registry (name -> sampler
class). Adding a strategy is one name in :data:`pairgen.spec.config.STRATEGIES`, one import and
one entry in ``PAIR_SAMPLERS`` / ``TRIPLET_SAMPLERS``: subclass :class:`PairSampler` or :class:`TripletSampler` and implement
``sample(index, params, *, rng)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pairgen.errors import SampleError
from pairgen.sampling.base import ClassIndex, ImageSampler, PairSampler, SampleParams, Sampler, TripletSampler
from pairgen.sampling.hard import HardPairs, HardTriplets
from pairgen.sampling.images import EveryImage
from pairgen.sampling.pairs import BalancedPairs, ExhaustivePairs, LeftRightPairs, PerClassPairs, PerImagePairs
from pairgen.sampling.triplets import BalancedTriplets, LeftRightTriplets, PerImageTriplets
from pairgen.spec.config import STRATEGIES

PAIR_SAMPLERS: dict[str, type[PairSampler]] = {
    "per-image": PerImagePairs,
    "balanced": BalancedPairs,
    "per-class": PerClassPairs,
    "exhaustive": ExhaustivePairs,
    "left-right": LeftRightPairs,
    "hard": HardPairs,
}

TRIPLET_SAMPLERS: dict[str, type[TripletSampler]] = {
    "per-image": PerImageTriplets,
    "balanced": BalancedTriplets,
    "left-right": LeftRightTriplets,
    "hard": HardTriplets,
}

IMAGE_SAMPLERS: dict[str, type[ImageSampler]] = {
    "per-image": EveryImage,
}

SAMPLERS_BY_KIND: dict[str, Mapping[str, type[Sampler]]] = {
    "pairs": PAIR_SAMPLERS, "triplets": TRIPLET_SAMPLERS, "images": IMAGE_SAMPLERS,
}  # record kind -> its strategy registry

for _kind, _names in STRATEGIES.items():  # the registries implement exactly the names the config accepts
    if tuple(SAMPLERS_BY_KIND[_kind.value]) != _names:
        raise ImportError(f"pairgen.sampling: the {_kind.value} samplers {tuple(SAMPLERS_BY_KIND[_kind.value])} "
                          f"differ from pairgen.spec.config.STRATEGIES {_names}")

__all__ = ["IMAGE_SAMPLERS", "PAIR_SAMPLERS", "SAMPLERS_BY_KIND", "TRIPLET_SAMPLERS", "ClassIndex",
           "ImageSampler", "PairSampler", "SampleParams", "Sampler", "TripletSampler", "sample_images",
           "sample_pairs", "sample_triplets"]


def _lookup(registry: Mapping[str, type[Sampler]], strategy: Any, kind: str) -> Sampler:
    cls = registry.get(str(strategy))
    if cls is None:
        raise SampleError(f"--strategy must be one of {', '.join(registry)} for {kind}; "
                          f"received: --strategy={strategy!r}.")
    return cls()


def sample_pairs(images: pd.DataFrame, *, strategy: str, rng: np.random.Generator,
                 **params: Any) -> pd.DataFrame:
    """Sample labelled image pairs within each split.

    Args:
        images: one row per image with ``image_id``, ``class_id`` (int64) and ``split`` (str,
            or all ``None`` for one group); ``side`` and ``key`` for ``left-right``; an
            optional ``class_name`` used in error messages.
        strategy: a key of ``PAIR_SAMPLERS``.
        rng: the only source of randomness; the same generator state gives the same frame.
        **params: ``SampleConfig`` fields (``positives_per_image``, ``negatives_per_image``,
            ``num_records``, ``positive_fraction``, ``per_class``, ``max_pairs_per_class``,
            ``unique``, ...). A strategy ignores the ones it does not use; ``None`` means default.

    Returns:
        A frame with ``a_id``, ``b_id``, ``label`` (1 = same class), ``a_class``, ``b_class``
        (int64) and ``split`` (Categorical of split names), grouped by split in sorted name
        order. ``unique=True`` drops repeated and mirrored pairs, keeping first occurrences.

    Raises:
        SampleError: for an unknown strategy, a bad parameter, a missing column, or a request
            that cannot be met (a single-image class asked for positives, one class asked for
            negatives), naming the class or split.
    """
    return _lookup(PAIR_SAMPLERS, strategy, "pairs")(images, rng=rng, **params)


def sample_triplets(images: pd.DataFrame, *, strategy: str, rng: np.random.Generator,
                    **params: Any) -> pd.DataFrame:
    """Sample (anchor, positive, negative) triplets within each split.

    Args:
        images: as for :func:`sample_pairs`.
        strategy: a key of ``TRIPLET_SAMPLERS``.
        rng: the only source of randomness.
        **params: ``SampleConfig`` fields; unused ones are ignored. ``per-image`` makes
            ``positives_per_image`` triplets per image, ``balanced`` ``num_records`` in all,
            ``left-right`` ``negatives_per_image`` per left image.

    Returns:
        A frame with ``anchor_id``, ``positive_id``, ``negative_id``, ``anchor_class``,
        ``negative_class`` (int64) and ``split`` (Categorical). ``unique=True`` drops repeated
        triplets.

    Raises:
        SampleError: as for :func:`sample_pairs`.
    """
    return _lookup(TRIPLET_SAMPLERS, strategy, "triplets")(images, rng=rng, **params)


def sample_images(images: pd.DataFrame, *, strategy: str = "per-image", rng: np.random.Generator,
                  **params: Any) -> pd.DataFrame:
    """One record per image within each split (the ``images`` kind).

    Args:
        images: as for :func:`sample_pairs`.
        strategy: a key of ``IMAGE_SAMPLERS`` (only ``per-image``: every image once).
        rng: the only source of randomness (the ``per-image`` strategy draws nothing).
        **params: ``SampleConfig`` fields; ``unique`` is the only one that applies (and is a
            no-op, since every image is one record).

    Returns:
        A frame with ``image_id``, ``class_id`` (int64) and ``split`` (Categorical), grouped by
        split in sorted name order, ``image_id`` order inside a split.

    Raises:
        SampleError: for an unknown strategy or a missing column.
    """
    return _lookup(IMAGE_SAMPLERS, strategy, "images")(images, rng=rng, **params)


class SampleFunction(Protocol):
    """The signature :func:`sample_pairs`, :func:`sample_triplets` and :func:`sample_images` share."""

    def __call__(self, images: pd.DataFrame, *, strategy: str, rng: np.random.Generator,
                 **params: Any) -> pd.DataFrame: ...


SAMPLE_BY_KIND: dict[str, SampleFunction] = {"pairs": sample_pairs, "triplets": sample_triplets,
                                             "images": sample_images}  # record kind -> its sampling function
