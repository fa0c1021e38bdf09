"""Decode, convert, resize and encode images with OpenCV.

Every image inside pairgen is a C-contiguous ``uint8`` array of shape ``(h, w, c)`` with
``c`` = 1 (gray) or 3 (RGB order, not OpenCV's BGR). :func:`decode` turns file bytes into that
form, :func:`fit` resizes it to the dataset's fixed size, :func:`encode` turns it into record
bytes and :func:`decode_record_image` turns record bytes back into pixels.

Decoding ignores EXIF orientation (``IMREAD_UNCHANGED``), so the decoded width and height are
those in the file header, the same numbers the catalog records.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator

import cv2
import numpy as np

from pairgen.codec.headers import read_header
from pairgen.errors import ImageError
from pairgen.spec.config import Encoding, Interpolation

SUPPORTED = "png, jpg, bmp, gif, tif, webp"

# Level 1 is ~2x faster than level 3 on small images and only a few percent larger; PNG
# re-encoding is the usual cost of a PNG build (benchmarks/build_throughput.py). A fixed level and the default
# strategy make the bytes a pure function of the pixels for a given OpenCV build.
PNG_COMPRESSION = 1

#: The OpenCV resize flag of each ``Interpolation``.
CV2_INTERPOLATION = {
    Interpolation.NEAREST: cv2.INTER_NEAREST,
    Interpolation.LINEAR: cv2.INTER_LINEAR,
    Interpolation.AREA: cv2.INTER_AREA,
}


class _MutedStderr:
    """File descriptor 2 pointed at the null device while any thread decodes (a counted mute).

    OpenCV's image libraries print their warnings and errors (``libpng error: IDAT: CRC
    error``, ``Corrupt JPEG data: ...``) straight to file descriptor 2, past Python and past
    ``--quiet``. pairgen reports a file it cannot decode itself, with its name and a reason,
    so those lines are noise. The first decoding thread points descriptor 2 at the null device
    and the last one to finish points it back, so threads that decode at once never restore a
    muted descriptor; anything else written to descriptor 2 meanwhile is lost too. Loops that
    decode many images hold the mute once around the loop (:func:`native_messages_muted`),
    so each decode inside only counts.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start afresh (also in a forked child: one thread, and no decode in progress)."""
        self.lock = threading.Lock()
        self.depth = 0
        self.saved = -1
        self.null = -1

    def enter(self) -> None:
        with self.lock:
            if self.depth == 0:
                self._mute()
            self.depth += 1

    def exit(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.saved >= 0:
                os.dup2(self.saved, 2)
                os.close(self.saved)
                self.saved = -1

    def _mute(self) -> None:
        try:
            if self.null < 0:
                self.null = os.open(os.devnull, os.O_WRONLY)
            saved = os.dup(2)
        except OSError:  # no null device, or no descriptor 2 at all: nothing to keep quiet
            return
        try:
            os.dup2(self.null, 2)
        except OSError:
            os.close(saved)
            return
        self.saved = saved


_MUTE = _MutedStderr()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_MUTE.reset)


@contextlib.contextmanager
def native_messages_muted() -> Iterator[None]:
    """Keep what OpenCV's codecs print to descriptor 2 off the terminal (see :class:`_MutedStderr`)."""
    _MUTE.enter()
    try:
        yield
    finally:
        _MUTE.exit()


def _imdecode(data: bytes) -> np.ndarray | None:
    """``cv2.imdecode(..., IMREAD_UNCHANGED)`` without its codecs' messages; ``None`` if it fails."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if not buf.size:
        return None
    _MUTE.enter()
    try:
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    finally:
        _MUTE.exit()


def _name(source: str) -> str:
    return repr(source) if source else "image"


def _undecodable(source: str) -> ImageError:
    return ImageError(f"cannot decode {_name(source)}: not a supported image ({SUPPORTED}).")


def check_pixels(width: int, height: int, *, max_pixels: int, source: str = "") -> None:
    """Raise if ``width * height`` is over the decompression-bomb limit.

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        max_pixels: The limit (``image.max_pixels``).
        source: The file name to put in the message.

    Raises:
        ImageError: If the image has more than ``max_pixels`` pixels.
    """
    pixels = int(width) * int(height)
    if pixels > max_pixels:
        raise ImageError(
            f"image {_name(source)} has {pixels:,} pixels, over the limit of {max_pixels:,} "
            "(image.max_pixels). Raise [image] max_pixels if the file is trusted."
        )


_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"BM", b"GIF87a", b"GIF89a",
          b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _is_supported(data: bytes) -> bool:
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _header_size(data: bytes, source: str) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels."""
    if not _is_supported(data):
        raise _undecodable(source)
    width, height, _ = read_header(data, name=source or "image")
    return width, height


def _to_uint8(img: np.ndarray, source: str) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype.kind == "f":
        # Float TIFFs are taken to hold values in [0, 1].
        return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageError(
        f"cannot decode {_name(source)}: unsupported pixel type {img.dtype}; "
        "convert it to 8- or 16-bit."
    )


def convert_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Convert an OpenCV-decoded array (gray, BGR or BGRA) to ``(h, w, channels)`` RGB/gray.

    Args:
        img: ``(h, w)``, ``(h, w, 1)``, ``(h, w, 3)`` BGR or ``(h, w, 4)`` BGRA, uint8.
        channels: 1 for gray, 3 for RGB.

    Returns:
        A C-contiguous uint8 array of shape ``(h, w, channels)``; alpha is dropped.

    Raises:
        ImageError: If the input has an unexpected channel count.
    """
    have = 1 if img.ndim == 2 else img.shape[2]
    if have == 1:
        gray = img.reshape(img.shape[0], img.shape[1])
        out = gray if channels == 1 else cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    elif have == 3:
        out = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if channels == 1 else cv2.COLOR_BGR2RGB)
    elif have == 4:
        out = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if channels == 1 else cv2.COLOR_BGRA2RGB)
    else:
        raise ImageError(f"cannot convert an image with {have} channels; expected 1, 3 or 4.")
    return np.ascontiguousarray(out.reshape(out.shape[0], out.shape[1], channels))


def decode(data: bytes, *, channels: int, max_pixels: int = 89_478_485, source: str = "",
           size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode image file bytes into a ``(h, w, channels)`` uint8 array.

    Reads png, jpg/jpeg, bmp, gif (first frame), tif and webp. 16-bit images keep their high
    byte (``>> 8``), alpha is dropped, and 3-channel output is in RGB order. The pixel count
    is checked from the header before any pixel is decoded.

    Args:
        data: The file's bytes.
        channels: 1 (gray) or 3 (RGB).
        max_pixels: Refuse images with more pixels than this (``image.max_pixels``).
        source: The file name used in error messages.
        size: ``(width, height)`` when the caller has already parsed this file's header with
            :func:`pairgen.codec.headers.read_header` (the scan does), so it is not parsed twice.

    Returns:
        A C-contiguous uint8 array of shape ``(h, w, channels)``.

    Raises:
        ImageError: If the bytes are not a supported image or the image is too large.
    """
    if channels not in (1, 3):
        raise ImageError(f"channels must be 1 or 3; received: channels={channels!r}.")
    width, height = _header_size(data, source) if size is None else size
    check_pixels(width, height, max_pixels=max_pixels, source=source)
    img = _imdecode(data)
    if img is None or img.size == 0:
        # The header parsed, so the format is supported: the pixel data is damaged or cut short.
        raise ImageError(f"cannot decode {_name(source)}: its pixel data is damaged or truncated "
                         f"({width}x{height} header). Replace or remove the file.")
    return convert_channels(_to_uint8(img, source), channels)


def encode(img: np.ndarray, encoding: Encoding | str, *, jpeg_quality: int = 95) -> bytes:
    """Encode a ``(h, w, c)`` uint8 image as record bytes.

    ``raw`` is the C-order pixel bytes; ``png`` uses a fixed compression level
    (:data:`PNG_COMPRESSION`); ``jpeg`` uses ``jpeg_quality`` with baseline, non-optimized
    Huffman tables. The same pixels always give the same bytes.

    Args:
        img: uint8 array of shape ``(h, w, 1)`` (gray) or ``(h, w, 3)`` (RGB).
        encoding: ``raw``, ``png`` or ``jpeg``.
        jpeg_quality: JPEG quality, 1..100.

    Returns:
        The encoded bytes.

    Raises:
        ImageError: If the array is not uint8 HxWx1/HxWx3 or cannot be encoded.
        ConfigError: If ``encoding`` is not a known encoding.
    """
    encoding = Encoding.from_value(encoding, "image.encoding")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ImageError(f"can only encode uint8 (h, w, 1|3) images; received {img.dtype} {img.shape}.")
    if encoding is Encoding.RAW:
        return np.ascontiguousarray(img).tobytes()
    cv_img = img[:, :, 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if encoding is Encoding.PNG:
        ext, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    else:
        ext = ".jpg"
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality), cv2.IMWRITE_JPEG_OPTIMIZE, 0,
                  cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(cv_img), params)
    if not ok:
        raise ImageError(f"cannot encode a {img.shape} image as {encoding.value}.")
    return buf.tobytes()


def decode_record_image(data: bytes, encoding: Encoding | str, shape: tuple[int, int, int]) -> np.ndarray:
    """Turn record image bytes back into pixels (the inverse of :func:`encode`).

    Args:
        data: The bytes of ``a/image``, ``anchor/image``, ...
        encoding: The dataset's encoding (``raw``, ``png`` or ``jpeg``).
        shape: The dataset's ``(height, width, channels)``.

    Returns:
        A uint8 array of shape ``shape``.

    Raises:
        ImageError: If the bytes do not hold an image of that shape.
    """
    encoding = Encoding.from_value(encoding, "image.encoding")
    h, w, c = (int(s) for s in shape)
    if encoding is Encoding.RAW:
        if len(data) != h * w * c:
            raise ImageError(f"raw record image has {len(data)} bytes; expected {h}*{w}*{c} = {h * w * c}.")
        return np.frombuffer(data, dtype=np.uint8).reshape(h, w, c).copy()
    img = _imdecode(data)
    if img is None:
        raise ImageError(f"cannot decode a {encoding.value} record image; the shard may be corrupt.")
    img = convert_channels(img, c)
    if img.shape != (h, w, c):
        raise ImageError(f"record image has shape {img.shape}; the dataset says {(h, w, c)}.")
    return img


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source indices of a nearest-neighbour resize from ``n_in`` to ``n_out`` samples.

    Output index ``i`` reads source ``min(floor(i * (1 / (n_out / n_in))), n_in - 1)`` in
    float64, exactly what ``cv2.resize(..., interpolation=cv2.INTER_NEAREST)`` does, so the
    index-map path and the OpenCV path give identical pixels.

    Args:
        n_in: Source length (rows or columns).
        n_out: Output length.

    Returns:
        An ``intp`` array of length ``n_out``.
    """
    return _nearest_cached(int(n_in), int(n_out))


@functools.lru_cache(maxsize=1024)
def _nearest_cached(n_in: int, n_out: int) -> np.ndarray:
    inv = 1.0 / (n_out / n_in)
    idx = np.minimum(np.floor(np.arange(n_out, dtype=np.float64) * inv).astype(np.intp), n_in - 1)
    idx.flags.writeable = False  # shared by every caller
    return idx


def flat_index(rows: np.ndarray, cols: np.ndarray, width: int) -> np.ndarray:
    """Flat pixel indices of ``img[rows[:, None], cols]`` for an image ``width`` pixels wide.

    Args:
        rows: Source row of every output row.
        cols: Source column of every output column.
        width: Source width.

    Returns:
        An ``intp`` array of length ``len(rows) * len(cols)`` in output C order.
    """
    return ((rows * width)[:, None] + cols).ravel()


def gather(img: np.ndarray, flat: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Apply a :func:`flat_index` map with one ``np.take`` (2-3x faster than fancy indexing).

    Args:
        img: ``(h, w, c)`` array.
        flat: Flat source pixel index of every output pixel.
        out_hw: Output ``(height, width)``; ``flat`` has ``height * width`` entries.

    Returns:
        A new C-contiguous array of shape ``(out_hw[0], out_hw[1], c)``.
    """
    h, w, c = img.shape
    src = img.reshape(h * w) if c == 1 else img.reshape(h * w, c)
    return src.take(flat, axis=0).reshape(out_hw[0], out_hw[1], c)


def fit(img: np.ndarray, size: tuple[int, int], interpolation: Interpolation | str = Interpolation.NEAREST) -> np.ndarray:
    """Resize an image to ``size`` (``(h, w)``), keeping the channel axis.

    Args:
        img: uint8 array of shape ``(h, w, c)``.
        size: Target ``(height, width)``.
        interpolation: ``nearest``, ``linear`` or ``area``.

    Returns:
        A C-contiguous uint8 array of shape ``(size[0], size[1], c)``; ``img`` itself if it
        already has that size.
    """
    interpolation = Interpolation.from_value(interpolation, "augment.interpolation")
    h, w = int(size[0]), int(size[1])
    if img.shape[:2] == (h, w):
        return img
    if interpolation is Interpolation.NEAREST:
        flat = flat_index(nearest_indices(img.shape[0], h), nearest_indices(img.shape[1], w), img.shape[1])
        return gather(img, flat, (h, w))
    out = cv2.resize(img, (w, h), interpolation=CV2_INTERPOLATION[interpolation])
    return out.reshape(h, w, img.shape[2])
