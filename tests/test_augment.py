"""Per-record jitter and distortions in pairgen.rendering.augment."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pairgen.codec.images import fit
from pairgen.errors import ImageError
from pairgen.rendering.augment import (
    CROP_X,
    CROP_Y,
    FLIP,
    N_DRAWS,
    affine_matrix,
    draw_params,
    has_affine,
    jitter_indices,
    transform_record,
)
from pairgen.spec.config import AugmentConfig, ImageConfig

FULL = dict(enabled=True, resize=(40, 44), crop=(32, 36), flip=True, rotation=10.0, shear=5.0,
            scale=(0.9, 1.1), translate=0.05, brightness=0.1, contrast=0.1)


def _img(seed: int, h: int = 30, w: int = 34, c: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _run(images: list[np.ndarray], seed: int, size: tuple[int, int] | None = (24, 24), **aug) -> list[np.ndarray]:
    c = images[0].shape[2]
    return transform_record(images, image=ImageConfig(size=size, channels=c), augment=AugmentConfig(**aug),
                            rng=np.random.default_rng(seed))


@pytest.mark.parametrize("interpolation", ["nearest", "linear", "area"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("n", [2, 3])
def test_shapes_and_dtypes(interpolation: str, channels: int, n: int) -> None:
    images = [_img(i, 30 + 5 * i, 34 + 3 * i, channels) for i in range(n)]
    out = _run(images, 0, **{**FULL, "interpolation": interpolation})
    assert len(out) == n
    for o in out:
        assert o.shape == (24, 24, channels) and o.dtype == np.uint8 and o.flags.c_contiguous


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_same_seed_same_pixels_different_seed_different(interpolation: str) -> None:
    images = [_img(1), _img(2)]
    opts = {**FULL, "interpolation": interpolation}
    a, b, other = _run(images, 7, **opts), _run(images, 7, **opts), _run(images, 8, **opts)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, other))


def test_inputs_are_not_modified() -> None:
    images = [_img(1), _img(2)]
    before = [im.copy() for im in images]
    _run(images, 3, **FULL)
    for im, b in zip(images, before):
        np.testing.assert_array_equal(im, b)


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_shared_keeps_identical_inputs_identical(interpolation: str) -> None:
    img = _img(5, c=3)
    for seed in range(10):
        a, b, c = _run([img, img.copy(), img.copy()], seed, **{**FULL, "interpolation": interpolation})
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_independent_draws_differ_for_identical_inputs() -> None:
    img = _img(5)
    differ = [not np.array_equal(*_run([img, img.copy()], seed, **{**FULL, "shared": False})) for seed in range(5)]
    assert any(differ)


def test_draw_layout() -> None:
    shared = draw_params(3, shared=True, rng=np.random.default_rng(0))
    assert shared.shape == (3, N_DRAWS) and (shared == shared[0]).all()
    np.testing.assert_array_equal(shared[0], np.random.default_rng(0).random(N_DRAWS))
    indep = draw_params(3, shared=False, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(indep, np.random.default_rng(0).random((3, N_DRAWS)))


def test_flip_mirrors() -> None:
    img = _img(9)
    seen = set()
    for seed in range(20):
        (out,) = _run([img], seed, size=None, enabled=True, flip=True)
        u = np.random.default_rng(seed).random(N_DRAWS)
        want = img[:, ::-1] if u[FLIP] < 0.5 else img
        np.testing.assert_array_equal(out, want)
        seen.add(bool(u[FLIP] < 0.5))
    assert seen == {True, False}


def test_turning_flip_on_does_not_move_the_crop() -> None:
    img = _img(4)
    for seed in range(6):
        (plain,) = _run([img], seed, enabled=True, crop=(20, 20), size=(20, 20))
        (flipped,) = _run([img], seed, enabled=True, crop=(20, 20), size=(20, 20), flip=True)
        u = np.random.default_rng(seed).random(N_DRAWS)
        np.testing.assert_array_equal(flipped, plain[:, ::-1] if u[FLIP] < 0.5 else plain)


def test_crop_is_a_window_of_the_source_within_bounds() -> None:
    img = _img(3, 30, 34)
    offsets = set()
    for seed in range(40):
        (out,) = _run([img], seed, size=(8, 10), enabled=True, crop=(8, 10))
        u = np.random.default_rng(seed).random(N_DRAWS)
        y0, x0 = min(int(u[CROP_Y] * 23), 22), min(int(u[CROP_X] * 25), 24)
        assert 0 <= y0 <= 30 - 8 and 0 <= x0 <= 34 - 10
        np.testing.assert_array_equal(out, img[y0:y0 + 8, x0:x0 + 10])
        offsets.add((y0, x0))
    assert len(offsets) > 20


@pytest.mark.parametrize("seed", range(25))
def test_index_map_in_bounds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = tuple(int(v) for v in rng.integers(1, 120, 2))
    resize = tuple(int(v) for v in rng.integers(1, 120, 2))
    crop = tuple(int(rng.integers(1, r + 1)) for r in resize)
    out = tuple(int(v) for v in rng.integers(1, 80, 2))
    aug = AugmentConfig(enabled=True, resize=resize, crop=crop, flip=True)
    rows, cols = jitter_indices(src, out, aug, rng.random(N_DRAWS))
    assert rows.shape == (out[0],) and cols.shape == (out[1],)
    assert rows.min() >= 0 and rows.max() < src[0] and cols.min() >= 0 and cols.max() < src[1]


def _cv2_chain(img: np.ndarray, out: tuple[int, int], aug: AugmentConfig, u: np.ndarray) -> np.ndarray:
    """Reference: cv2.resize(INTER_NEAREST) -> slice -> cv2.resize(INTER_NEAREST) -> cv2.flip."""
    x = cv2.resize(img, aug.resize[::-1], interpolation=cv2.INTER_NEAREST).reshape(*aug.resize, -1)
    room_y, room_x = aug.resize[0] - aug.crop[0], aug.resize[1] - aug.crop[1]
    y0, x0 = min(int(u[CROP_Y] * (room_y + 1)), room_y), min(int(u[CROP_X] * (room_x + 1)), room_x)
    x = x[y0:y0 + aug.crop[0], x0:x0 + aug.crop[1]]
    x = cv2.resize(x, out[::-1], interpolation=cv2.INTER_NEAREST).reshape(*out, -1)
    if u[FLIP] < 0.5:
        x = cv2.flip(x, 1).reshape(*out, -1)
    return x


@pytest.mark.parametrize("seed", range(30))
def test_nearest_index_map_equals_cv2_chain(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = int(rng.choice([1, 3]))
    src = tuple(int(v) for v in rng.integers(5, 150, 2))
    resize = tuple(int(v) for v in rng.integers(5, 150, 2))
    crop = tuple(int(rng.integers(1, r + 1)) for r in resize)
    out = tuple(int(v) for v in rng.integers(1, 110, 2))
    img = rng.integers(0, 256, (*src, c), dtype=np.uint8)
    aug = AugmentConfig(enabled=True, resize=resize, crop=crop, flip=True)
    (got,) = transform_record([img], image=ImageConfig(size=out, channels=c), augment=aug,
                              rng=np.random.default_rng(seed))
    want = _cv2_chain(img, out, aug, np.random.default_rng(seed).random(N_DRAWS))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("interpolation", ["nearest", "linear", "area"])
def test_disabled_is_fit_and_draws_nothing(interpolation: str) -> None:
    images = [_img(1, 30, 34, 3), _img(2, 20, 50, 3)]
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    out = transform_record(images, image=ImageConfig(size=(16, 18), channels=3),
                           augment=AugmentConfig(**{**FULL, "enabled": False, "interpolation": interpolation}),
                           rng=rng)
    for o, im in zip(out, images):
        np.testing.assert_array_equal(o, fit(im, (16, 18), interpolation))
    assert rng.bit_generator.state == state


def test_no_size_keeps_source_size() -> None:
    images = [_img(1), _img(2)]
    out = _run(images, 0, size=None, **FULL)
    assert [o.shape for o in out] == [(30, 34, 1), (30, 34, 1)]
    assert _run(images, 0, size=None)[0] is images[0]  # disabled: nothing to do


def test_no_size_with_mixed_sizes_is_an_error() -> None:
    with pytest.raises(ImageError, match="image.size"):
        _run([_img(1, 30, 34), _img(2, 31, 34)], 0, size=None)


def test_crop_larger_than_image_is_an_error() -> None:
    with pytest.raises(ImageError, match="augment.crop"):
        _run([_img(1, 30, 34)], 0, enabled=True, crop=(40, 10))


def test_affine_identity_and_range() -> None:
    aug = AugmentConfig(enabled=True, rotation=10, shear=5, scale=(0.8, 1.2), translate=0.1)
    assert has_affine(aug) and not has_affine(AugmentConfig(enabled=True, flip=True))
    mid = np.full(N_DRAWS, 0.5)  # the centre of every range is the identity
    np.testing.assert_allclose(affine_matrix((20, 30), aug, mid), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    u = np.zeros(N_DRAWS)
    m = affine_matrix((20, 30), aug, u)
    assert not np.allclose(m[:, :2], np.eye(2))
    assert m[0, 2] != 0 and m[1, 2] != 0


def test_affine_only_changes_pixels_but_keeps_shape() -> None:
    img = _img(2, 32, 32)
    (out,) = _run([img], 1, size=None, enabled=True, rotation=30)
    assert out.shape == img.shape and not np.array_equal(out, img)


def test_brightness_and_contrast() -> None:
    img = np.full((10, 10, 1), 100, np.uint8)
    img[:5] = 120
    for seed in range(5):
        u = np.random.default_rng(seed).random(N_DRAWS)
        (bright,) = _run([img], seed, size=None, enabled=True, brightness=0.2)
        np.testing.assert_array_equal(bright.astype(int) - img, round((2 * u[10] - 1) * 0.2 * 255))
        (contr,) = _run([img], seed, size=None, enabled=True, contrast=0.5)
        factor = 1 + (2 * u[11] - 1) * 0.5
        assert contr.mean() == pytest.approx(110, abs=0.5)
        assert int(contr[0, 0, 0]) - int(contr[9, 0, 0]) == pytest.approx(20 * factor, abs=1)
