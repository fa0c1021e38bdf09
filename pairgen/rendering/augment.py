"""Per-record jitter and distortions, reproducible from the record's own generator.

The jitter follows the Omniglot Siamese reference: resize to ``augment.resize``, random crop
to ``augment.crop``, resize to ``image.size``, random horizontal flip. On top of it come the
Koch et al. (2015) affine distortions (rotation, shear, scale, translation; one
``cv2.warpAffine``) and brightness / contrast jitter, each off by default.

With ``augment.shared`` every image of a record gets the same random parameters (the
reference stacks the two images before cropping and flipping); otherwise each image gets
its own.

**Random draws.** All randomness comes from ``rng`` (``np.random.default_rng(aug_seed)``),
as one call ``rng.random((k, 12))``: ``k = 1`` when shared (the row is used for every image),
else ``k`` = the number of images, row ``i`` for image ``i``. The 12 columns are always
drawn, whatever is enabled, so turning one option on never changes the others' values:

====  =============================================================================
 col  use
====  =============================================================================
 0,1  crop offset y, x: ``min(floor(u * (room + 1)), room)``, room = free rows/cols
  2   flip when ``u < 0.5``
  3   rotation ``(2u - 1) * rotation`` degrees
 4,5  shear x, y ``(2u - 1) * shear`` degrees
 6,7  scale x, y ``min + u * (max - min)``
 8,9  translation x, y ``(2u - 1) * translate`` of the width / height
 10   brightness ``+(2u - 1) * brightness * 255``
 11   contrast ``*(1 + (2u - 1) * contrast)`` around each channel's mean
====  =============================================================================

**Nearest fast path.** With nearest interpolation, resize -> crop -> resize -> flip is one
row-index and one column-index array (:func:`jitter_indices`) applied with a single gather;
it gives exactly the pixels of the equivalent ``cv2.resize(INTER_NEAREST)`` chain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from pairgen.codec.images import CV2_INTERPOLATION, fit, flat_index, gather, nearest_indices
from pairgen.errors import ImageError
from pairgen.spec.config import AugmentConfig, ImageConfig, Interpolation

N_DRAWS = 12
(CROP_Y, CROP_X, FLIP, ROTATION, SHEAR_X, SHEAR_Y, SCALE_X, SCALE_Y,
 SHIFT_X, SHIFT_Y, BRIGHTNESS, CONTRAST) = range(N_DRAWS)


def draw_params(n_images: int, *, shared: bool, rng: np.random.Generator) -> np.ndarray:
    """Draw the uniform variates of one record (see the module docstring for the layout).

    Args:
        n_images: Images in the record.
        shared: One row for all images (True) or one row per image (False).
        rng: The record's generator.

    Returns:
        A float64 array of shape ``(n_images, N_DRAWS)`` with values in [0, 1).
    """
    if shared:
        return np.repeat(rng.random((1, N_DRAWS)), n_images, axis=0)
    return rng.random((n_images, N_DRAWS))


def _offset(u: float, room: int) -> int:
    return min(int(u * (room + 1)), room)


def _axis_map(n_src: int, n_resize: int | None, n_crop: int | None, n_out: int, u: float) -> np.ndarray:
    """Source index of every output position along one axis (resize, crop, resize)."""
    mid = n_resize or n_src
    crop = n_crop or mid
    idx = nearest_indices(crop, n_out) + _offset(u, mid - crop)
    if n_resize:
        idx = nearest_indices(n_src, n_resize)[idx]
    return idx


def _check_crop(src_hw: tuple[int, int], augment: AugmentConfig) -> None:
    mid = augment.resize or src_hw
    if augment.crop and (augment.crop[0] > mid[0] or augment.crop[1] > mid[1]):
        raise ImageError(
            f"augment.crop {list(augment.crop)} is larger than the {mid[0]}x{mid[1]} image it "
            "crops. Set augment.resize to at least the crop size, or make the crop smaller."
        )


def jitter_indices(src_hw: tuple[int, int], out_hw: tuple[int, int], augment: AugmentConfig,
                   u: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column source indices of the nearest resize -> crop -> resize -> flip chain.

    Args:
        src_hw: Source ``(height, width)``.
        out_hw: Output ``(height, width)``.
        augment: Resize, crop and flip settings.
        u: One row of :func:`draw_params`.

    Returns:
        ``(rows, cols)``: ``out = img[rows[:, None], cols]``.

    Raises:
        ImageError: If the crop does not fit in the image it crops.
    """
    _check_crop(src_hw, augment)
    rs, cr = augment.resize, augment.crop
    rows = _axis_map(src_hw[0], rs and rs[0], cr and cr[0], out_hw[0], u[CROP_Y])
    cols = _axis_map(src_hw[1], rs and rs[1], cr and cr[1], out_hw[1], u[CROP_X])
    if augment.flip and u[FLIP] < 0.5:
        cols = cols[::-1]
    return rows, cols


def _jitter_cv2(img: np.ndarray, out_hw: tuple[int, int], augment: AugmentConfig, u: Sequence[float]) -> np.ndarray:
    """The same chain with OpenCV resizes (linear / area interpolation)."""
    _check_crop(img.shape[:2], augment)
    c, flag = img.shape[2], CV2_INTERPOLATION[augment.interpolation]
    if augment.resize:
        img = cv2.resize(img, augment.resize[::-1], interpolation=flag).reshape(*augment.resize, c)
    if augment.crop:
        (h, w), (ch, cw) = img.shape[:2], augment.crop
        y0, x0 = _offset(u[CROP_Y], h - ch), _offset(u[CROP_X], w - cw)
        img = img[y0:y0 + ch, x0:x0 + cw]
    if img.shape[:2] != tuple(out_hw):
        img = cv2.resize(img, out_hw[::-1], interpolation=flag).reshape(*out_hw, c)
    if augment.flip and u[FLIP] < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def has_affine(augment: AugmentConfig) -> bool:
    """True if any affine distortion (rotation, shear, scale, translation) is enabled."""
    return bool(augment.rotation or augment.shear or augment.translate or augment.scale != (1.0, 1.0))


def affine_matrix(hw: tuple[int, int], augment: AugmentConfig, u: Sequence[float]) -> np.ndarray:
    """The 2x3 ``cv2.warpAffine`` matrix: rotate * shear * scale about the centre, then shift.

    Args:
        hw: Image ``(height, width)``.
        augment: Rotation, shear, scale and translate ranges.
        u: One row of :func:`draw_params`.

    Returns:
        A float64 array of shape ``(2, 3)``.
    """
    theta = math.radians((2 * u[ROTATION] - 1) * augment.rotation)
    shx = math.tan(math.radians((2 * u[SHEAR_X] - 1) * augment.shear))
    shy = math.tan(math.radians((2 * u[SHEAR_Y] - 1) * augment.shear))
    lo, hi = augment.scale
    sx, sy = lo + u[SCALE_X] * (hi - lo), lo + u[SCALE_Y] * (hi - lo)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    lin = rot @ np.array([[1.0, shx], [shy, 1.0]]) @ np.diag([sx, sy])
    h, w = hw
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    shift = np.array([(2 * u[SHIFT_X] - 1) * augment.translate * w, (2 * u[SHIFT_Y] - 1) * augment.translate * h])
    return np.hstack([lin, (centre + shift - lin @ centre)[:, None]])


def _warp(img: np.ndarray, augment: AugmentConfig, u: Sequence[float]) -> np.ndarray:
    h, w, c = img.shape
    flag = cv2.INTER_NEAREST if augment.interpolation is Interpolation.NEAREST else cv2.INTER_LINEAR
    out = cv2.warpAffine(img, affine_matrix((h, w), augment, u), (w, h), flags=flag,
                         borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(h, w, c)


def _photometric(img: np.ndarray, augment: AugmentConfig, u: Sequence[float]) -> np.ndarray:
    # Exact integer channel sums and float64 element-wise maths: same bytes on any machine.
    f = img.astype(np.float64)
    if augment.contrast:
        mean = img.sum(axis=(0, 1), dtype=np.int64) / (img.shape[0] * img.shape[1])
        f = (f - mean) * (1.0 + (2 * u[CONTRAST] - 1) * augment.contrast) + mean
    if augment.brightness:
        f += (2 * u[BRIGHTNESS] - 1) * augment.brightness * 255.0
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def transform_one(img: np.ndarray, out_hw: tuple[int, int], augment: AugmentConfig, u: Sequence[float],
                  *, maps: dict | None = None) -> np.ndarray:
    """Jitter, warp and photometrically adjust one image with the variates ``u``.

    Args:
        img: uint8 ``(h, w, c)`` source image (never modified).
        out_hw: Output ``(height, width)``.
        augment: The augmentation settings (``enabled`` is not consulted).
        u: One row of :func:`draw_params`.
        maps: Optional cache of nearest index maps keyed by source size, only valid for
            images that share ``u`` (the images of one shared record).

    Returns:
        A new C-contiguous uint8 array of shape ``(out_hw[0], out_hw[1], c)``.

    Raises:
        ImageError: If the crop does not fit in the image it crops.
    """
    if augment.interpolation is Interpolation.NEAREST:
        src_hw = img.shape[:2]
        flat = None if maps is None else maps.get(src_hw)
        if flat is None:
            flat = flat_index(*jitter_indices(src_hw, out_hw, augment, u), src_hw[1])
            if maps is not None:
                maps[src_hw] = flat
        out = gather(img, flat, out_hw)
    else:
        out = _jitter_cv2(img, out_hw, augment, u)
    if has_affine(augment):
        out = _warp(out, augment, u)
    if augment.brightness or augment.contrast:
        out = _photometric(out, augment, u)
    return out


def transform_record(images: Sequence[np.ndarray], *, image: ImageConfig, augment: AugmentConfig,
                     rng: np.random.Generator) -> list[np.ndarray]:
    """Bring the decoded images of one record to the dataset's size, jittered if enabled.

    Args:
        images: The record's decoded images (``(h, w, c)`` uint8, the dataset's channels);
            their sizes may differ when ``image.size`` is set.
        image: The dataset's image settings (``size``; ``None`` keeps the source size).
        augment: The augmentation settings.
        rng: The record's generator (``np.random.default_rng(aug_seed)``); nothing is drawn
            when augmentation is disabled.

    Returns:
        One uint8 ``(h, w, c)`` array per input image, in input order.

    Raises:
        ImageError: If ``image.size`` is unset and the images differ in size, or a crop does
            not fit.
    """
    if image.size is None:
        sizes = sorted({tuple(im.shape[:2]) for im in images})
        if len(sizes) > 1:
            raise ImageError(
                f"the images of one record have different sizes {sizes} and image.size is not "
                "set. Set [image] size (or --image-size HxW) so every image is resized to it."
            )
    out_hw = tuple(image.size or images[0].shape[:2])
    if not augment.enabled:
        return [fit(im, out_hw, augment.interpolation) for im in images]
    draws = draw_params(len(images), shared=augment.shared, rng=rng).tolist()
    maps: dict | None = {} if augment.shared else None  # one index map per source size
    return [transform_one(im, out_hw, augment, u, maps=maps) for im, u in zip(images, draws)]
