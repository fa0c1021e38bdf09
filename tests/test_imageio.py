"""Decoding, channel conversion, limits, encoding and resizing in pairgen.codec.images."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from pairgen.codec.images import decode, decode_record_image, encode, fit, nearest_indices
from pairgen.errors import ImageError

# Pure colours (BGR) in 4x4 blocks: survive GIF's palette and every lossless codec exactly.
_BLOCKS_BGR = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0], [255, 255, 255], [0, 0, 0], [0, 255, 255]],
                       dtype=np.uint8)


def _colour_image() -> np.ndarray:
    """A 12x16 BGR image of pure-colour 4x4 blocks."""
    idx = (np.arange(3)[:, None] * 4 + np.arange(4)[None, :]) % len(_BLOCKS_BGR)
    return np.ascontiguousarray(_BLOCKS_BGR[np.kron(idx, np.ones((4, 4), int))])


def _smooth_bgr() -> np.ndarray:
    """A 32x40 BGR image of slow ramps (JPEG keeps it within a few levels)."""
    y, x = np.mgrid[0:32, 0:40]
    return np.stack([x * 6, y * 7, 255 - x * 3 - y * 2], axis=-1).astype(np.uint8)


def _cv_bytes(ext: str, img: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return buf.tobytes()


_HAS_GIF = hasattr(cv2, "imencodeanimation")  # OpenCV >= 4.11 reads and writes GIF
needs_gif = pytest.mark.skipif(not _HAS_GIF, reason="this OpenCV build has no GIF codec")


LOSSLESS = [(".png", []), (".bmp", []), (".tif", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])]


@pytest.mark.parametrize("ext,params", LOSSLESS, ids=[e for e, _ in LOSSLESS])
@pytest.mark.parametrize("channels", [1, 3])
def test_decode_lossless_formats_exact(ext: str, params: list[int], channels: int) -> None:
    bgr = _colour_image()
    got = decode(_cv_bytes(ext, bgr, params), channels=channels, source=f"x{ext}")
    want = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if channels == 3 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[..., None]
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    assert got.shape == (12, 16, channels)
    np.testing.assert_array_equal(got, want)


@needs_gif
@pytest.mark.parametrize("channels", [1, 3])
def test_decode_gif(channels: int) -> None:
    # OpenCV's GIF writer quantises colours, so compare with its own decode of the same bytes.
    data = _cv_bytes(".gif", _colour_image())
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    want = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if channels == 3 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[..., None]
    got = decode(data, channels=channels, source="x.gif")
    np.testing.assert_array_equal(got, want)
    if channels == 3:
        assert got[0, 0, 0] > 200 and got[0, 0, 2] < 60  # the red block is red


@pytest.mark.parametrize("channels", [1, 3])
def test_decode_jpeg_close(channels: int) -> None:
    bgr = _smooth_bgr()
    got = decode(_cv_bytes(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 100]), channels=channels, source="x.jpg")
    want = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if channels == 3 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[..., None]
    assert got.shape == (32, 40, channels)
    assert np.abs(got.astype(int) - want).mean() < 3


def test_decode_gives_rgb_order() -> None:
    red_bgr = np.zeros((5, 7, 3), np.uint8)
    red_bgr[..., 2] = 255
    got = decode(_cv_bytes(".png", red_bgr), channels=3)
    assert (got[..., 0] == 255).all() and (got[..., 1:] == 0).all()


def test_gray_file_to_rgb_repeats_the_gray() -> None:
    gray = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    got = decode(_cv_bytes(".png", gray), channels=3)
    assert got.shape == (5, 7, 3)
    for ch in range(3):
        np.testing.assert_array_equal(got[..., ch], gray)


def test_alpha_is_dropped() -> None:
    bgra = np.zeros((4, 6, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 0  # fully transparent
    data = _cv_bytes(".png", bgra)
    rgb = decode(data, channels=3)
    assert rgb.shape == (4, 6, 3) and rgb[0, 0].tolist() == [30, 20, 10]
    gray = decode(data, channels=1)
    assert gray.shape == (4, 6, 1)
    assert gray[0, 0, 0] == cv2.cvtColor(bgra, cv2.COLOR_BGRA2GRAY)[0, 0]


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 3)])
def test_16_bit_png_keeps_high_byte(shape: tuple[int, ...]) -> None:
    img = (np.arange(np.prod(shape), dtype=np.uint16) * 2001).reshape(shape)
    got = decode(_cv_bytes(".png", img), channels=3 if len(shape) == 3 else 1)
    high = (img >> 8).astype(np.uint8)
    want = cv2.cvtColor(high, cv2.COLOR_BGR2RGB) if len(shape) == 3 else high[..., None]
    np.testing.assert_array_equal(got, want)


@needs_gif
def test_animated_gif_gives_first_frame() -> None:
    anim = cv2.Animation()
    anim.frames = [np.full((4, 5, 3), 255, np.uint8), np.zeros((4, 5, 3), np.uint8)]
    anim.durations = [100, 100]
    ok, buf = cv2.imencodeanimation(".gif", anim)
    assert ok
    got = decode(buf.tobytes(), channels=1, source="anim.gif")
    assert got.shape == (4, 5, 1) and (got > 240).all()  # white (GIF palette: 252), not black


def _png_claiming(width: int, height: int) -> bytes:
    """A real tiny PNG whose IHDR claims another size (decoding it would fail)."""
    data = bytearray(_cv_bytes(".png", np.zeros((2, 2), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    return bytes(data)


def test_pixel_limit_checked_before_decoding() -> None:
    with pytest.raises(ImageError) as err:
        decode(_png_claiming(40_000, 25_000), channels=1, source="x.png")
    assert str(err.value) == ("image 'x.png' has 1,000,000,000 pixels, over the limit of 89,478,485 "
                              "(image.max_pixels). Raise [image] max_pixels if the file is trusted.")


def test_pixel_limit_is_configurable() -> None:
    data = _cv_bytes(".png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageError, match="has 100 pixels, over the limit of 99"):
        decode(data, channels=1, max_pixels=99, source="a.png")
    assert decode(data, channels=1, max_pixels=100).shape == (10, 10, 1)


@pytest.mark.parametrize("data", [b"", b"garbage bytes, not an image", b"GIF89a", b"\x89PNG\r\n\x1a\n"])
def test_bad_bytes_raise_image_error(data: bytes) -> None:
    with pytest.raises(ImageError, match="x.png"):
        decode(data, channels=3, source="x.png")


def test_garbage_message_names_file_and_formats() -> None:
    with pytest.raises(ImageError) as err:
        decode(b"garbage bytes, not an image", channels=3, source="x.png")
    assert str(err.value) == "cannot decode 'x.png': not a supported image (png, jpg, bmp, gif, tif, webp)."


@pytest.mark.parametrize("encoding", ["raw", "png"])
@pytest.mark.parametrize("channels", [1, 3])
def test_lossless_encode_round_trip(encoding: str, channels: int) -> None:
    img = np.random.default_rng(channels).integers(0, 256, (9, 11, channels), dtype=np.uint8)
    data = encode(img, encoding)
    assert data == encode(img.copy(), encoding)  # deterministic
    np.testing.assert_array_equal(decode_record_image(data, encoding, img.shape), img)


def test_raw_is_c_order_pixels() -> None:
    img = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert encode(img, "raw") == bytes(range(24))


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_round_trip_close_and_deterministic(channels: int) -> None:
    rgb = cv2.cvtColor(_smooth_bgr(), cv2.COLOR_BGR2RGB)
    img = rgb if channels == 3 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None]
    data = encode(img, "jpeg", jpeg_quality=95)
    assert data[:2] == b"\xff\xd8" and data == encode(img, "jpeg", jpeg_quality=95)
    back = decode_record_image(data, "jpeg", img.shape)
    assert np.abs(back.astype(int) - img).mean() < 3
    if channels == 3:  # RGB stays RGB through cv2's BGR codec: no channel swap
        swapped = back[..., ::-1]
        assert np.abs(back.astype(int) - img).mean() < np.abs(swapped.astype(int) - img).mean() / 10


def test_png_file_decodes_like_source() -> None:
    rgb = cv2.cvtColor(_colour_image(), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decode(encode(rgb, "png"), channels=3), rgb)


def test_encode_rejects_wrong_arrays() -> None:
    with pytest.raises(ImageError, match="uint8"):
        encode(np.zeros((4, 4), np.uint8), "png")
    with pytest.raises(ImageError, match="uint8"):
        encode(np.zeros((4, 4, 3), np.float32), "raw")


def test_decode_record_image_checks_size() -> None:
    with pytest.raises(ImageError, match="expected 2\\*2\\*1 = 4"):
        decode_record_image(b"\x00" * 5, "raw", (2, 2, 1))
    with pytest.raises(ImageError, match="shape"):
        decode_record_image(encode(np.zeros((3, 3, 1), np.uint8), "png"), "png", (2, 2, 1))


@pytest.mark.parametrize("interpolation", ["nearest", "linear", "area"])
@pytest.mark.parametrize("channels", [1, 3])
def test_fit_keeps_channel_axis(interpolation: str, channels: int) -> None:
    img = np.random.default_rng(0).integers(0, 256, (30, 20, channels), dtype=np.uint8)
    out = fit(img, (7, 9), interpolation)
    assert out.shape == (7, 9, channels) and out.dtype == np.uint8
    assert fit(img, (30, 20), interpolation) is img


@pytest.mark.parametrize("src,dst", [((28, 28), (32, 32)), ((105, 105), (32, 32)), ((297, 17), (222, 67)),
                                     ((3, 5), (7, 2)), ((1, 1), (4, 4))])
def test_nearest_fit_matches_cv2_inter_nearest(src: tuple[int, int], dst: tuple[int, int]) -> None:
    img = np.random.default_rng(1).integers(0, 256, (*src, 3), dtype=np.uint8)
    want = cv2.resize(img, dst[::-1], interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(fit(img, dst, "nearest"), want)


def test_nearest_indices_in_bounds() -> None:
    for n_in in range(1, 40):
        for n_out in range(1, 40):
            idx = nearest_indices(n_in, n_out)
            assert len(idx) == n_out and idx.min() >= 0 and idx.max() < n_in
            assert (np.diff(idx) >= 0).all()
