"""Image size and channel count from file headers, without decoding pixels.

Scanning a source reads every file once (for its content hash); :func:`read_header` parses
the same bytes for ``(width, height, channels)`` so that scanning 100k files never pays for a
decode. PNG, JPEG, BMP, GIF, TIFF and WebP are parsed by hand; anything else (JPEG 2000,
OpenEXR, a JPEG whose height comes after its first scan, ...) is refused as "not a supported
image" without decoding, so ``image.max_pixels`` can always be checked before any pixel is.

``channels`` is what ``cv2.imdecode(..., cv2.IMREAD_UNCHANGED)`` returns for the file, so the
catalog agrees with what the build will later decode (e.g. a palette PNG is 3 channels, or 4
with a transparency chunk; a CMYK JPEG decodes to 3). GIF reports the first frame: 3
channels, or 4 when that frame declares a transparent colour (as OpenCV decodes it).

Validation is at header level only (magic, sizes, required chunks, and an end marker for PNG
and JPEG, so a truncated file is reported as truncated): a file whose header is fine but whose
pixel data is damaged is caught later, when the build decodes it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from pairgen.errors import ImageError

Header = tuple[int, int, int]

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not C4/C8/CC.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7,
                          0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


SUPPORTED_FORMATS = "png, jpg, bmp, gif, tif or webp"


class _Bad(Exception):
    """Internal: the header is malformed (turned into ImageError with the file name)."""


class _Unsupported(_Bad):
    """Internal: not a format whose size can be read from its header."""


def read_header(path_or_bytes: str | os.PathLike | bytes, *, name: str | None = None) -> Header:
    """Return ``(width, height, channels)`` of an image without decoding its pixels.

    Args:
        path_or_bytes: A file path, or the file's bytes.
        name: How to name the image in error messages (defaults to the path, or "<bytes>").

    Returns:
        ``(width, height, channels)`` as ints, all > 0.

    Raises:
        ImageError: The file cannot be read, is empty, or is not a valid image.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        label = name or "<bytes>"
    else:
        label = name or os.fspath(path_or_bytes)
        try:
            with open(path_or_bytes, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ImageError(f"image '{label}' cannot be read: {exc.strerror or exc}.") from None
    if not data:
        raise ImageError(f"image '{label}' is an empty file. Remove it or replace it.")
    parser = _parser_for(data)
    try:
        width, height, channels = parser(data)
    except _Unsupported as exc:
        raise ImageError(f"image '{label}' is corrupt or not a supported image ({exc}). "
                         "Convert it to png or jpg, or remove it.") from None
    except (_Bad, struct.error, IndexError) as exc:
        detail = str(exc) or "truncated header"
        raise ImageError(f"image '{label}' is corrupt ({detail}). Remove or replace the file.") from None
    if width <= 0 or height <= 0 or channels <= 0:
        raise ImageError(f"image '{label}' has an invalid size {width}x{height}x{channels}. "
                         "Remove or replace the file.")
    return int(width), int(height), int(channels)


def _parser_for(data: bytes) -> Callable[[bytes], Header]:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png
    if data.startswith(b"\xff\xd8"):
        return _jpeg
    if data.startswith(b"BM"):
        return _bmp
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp
    return _unknown


def _unknown(data: bytes) -> Header:
    raise _Unsupported(f"its header is not {SUPPORTED_FORMATS}")


def _png(data: bytes) -> Header:
    if data[12:16] != b"IHDR":
        raise _Bad("PNG without IHDR chunk")
    width, height, _depth, color = struct.unpack(">IIBB", data[16:26])
    if b"IEND" not in data[-32:]:
        raise _Bad("PNG is truncated: no IEND chunk")
    if color in (4, 6):  # gray+alpha and RGBA both decode to BGRA
        return width, height, 4
    if color in (2, 3):  # RGB and palette: BGR, or BGRA when a tRNS chunk precedes IDAT
        return width, height, 4 if _png_has_trns(data) else 3
    if color == 0:
        return width, height, 1
    raise _Bad(f"PNG colour type {color} is invalid")


def _png_has_trns(data: bytes) -> bool:
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"tRNS":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        pos += 12 + length
    return False


def _jpeg(data: bytes) -> Header:
    pos, n = 2, len(data)
    header: Header | None = None
    while pos < n:
        if data[pos] != 0xFF:
            raise _Bad(f"JPEG marker expected at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            return _jpeg_scan(data, pos, header, marker)
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if marker in _SOF_MARKERS and header is None:
            _precision, height, width, comps = struct.unpack(">BHHB", data[pos + 2:pos + 8])
            if height == 0:
                raise _Unsupported("a JPEG whose height follows its first scan (DNL marker): "
                                   "its size cannot be read from the header")
            header = (width, height, 3 if comps == 4 else comps)  # CMYK/YCCK decodes to BGR
        pos += length
    if header is not None:
        raise _Bad("JPEG is truncated: the file ends before its scan data")
    raise _Bad("JPEG has no frame header")


def _jpeg_scan(data: bytes, pos: int, header: Header | None, marker: int) -> Header:
    """At the first scan (or end) marker: the frame header must exist, and an end marker follow."""
    if header is None:
        raise _Bad("JPEG has no frame header before its scan data")
    if marker == 0xD9:
        raise _Bad("JPEG is truncated: it ends before its scan data")
    # Scan data escapes every 0xFF byte, so FFD9 after the scan header is the end marker.
    if data.rfind(b"\xff\xd9") < pos:
        raise _Bad("JPEG is truncated: no end-of-image marker after its scan data")
    return header


def _bmp(data: bytes) -> Header:
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _planes, bpp = struct.unpack("<HHHH", data[18:26])
        entry, colors = 3, 0
    elif dib >= 40:
        width, height, _planes, bpp = struct.unpack("<iiHH", data[18:30])
        (colors,) = struct.unpack("<I", data[46:50])
        entry = 4
    else:
        raise _Bad(f"BMP info header size {dib} is invalid")
    height = abs(height)  # negative height = top-down rows
    if bpp == 32:
        return width, height, 4
    if bpp in (16, 24):
        return width, height, 3
    if bpp not in (1, 4, 8):
        raise _Bad(f"BMP bit depth {bpp} is invalid")
    start = 14 + dib
    colors = colors or (1 << bpp)
    palette = data[start:start + colors * entry]
    if len(palette) < colors * entry:
        raise _Bad("BMP palette is truncated")
    gray = all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette), entry))
    return width, height, 1 if gray else 3


def _gif(data: bytes) -> Header:
    width, height, flags = struct.unpack("<HHB", data[6:11])
    return width, height, 4 if _gif_transparent(data, flags) else 3


def _gif_transparent(data: bytes, flags: int) -> bool:
    """Whether the first frame's graphic control block declares a transparent colour."""
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while pos < len(data) and data[pos] == 0x21:  # extension blocks before the first frame
        label, pos = data[pos + 1], pos + 2
        if label == 0xF9 and data[pos] >= 4:
            return bool(data[pos + 1] & 1)
        while data[pos]:  # skip sub-blocks
            pos += data[pos] + 1
        pos += 1
    if pos >= len(data) or data[pos] != 0x2C:
        raise _Bad("GIF has no image before its end")
    return False


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}


def _tiff(data: bytes) -> Header:
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    if big:
        (ifd,) = struct.unpack(order + "Q", data[8:16])
        (count,) = struct.unpack(order + "Q", data[ifd:ifd + 8])
        pos, size, slot = ifd + 8, 20, 8
    else:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
        pos, size, slot = ifd + 2, 12, 4
    tags: dict[int, int] = {}
    for i in range(count):
        entry = data[pos + i * size:pos + (i + 1) * size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if kind in _TIFF_TYPES and tag in (256, 257, 262, 277):
            fmt, width = _TIFF_TYPES[kind]
            at = 4 + slot  # the value sits after tag, type and count (left-aligned)
            (tags[tag],) = struct.unpack(order + fmt, entry[at:at + width])
    if 256 not in tags or 257 not in tags:
        raise _Bad("TIFF has no ImageWidth/ImageLength tag")
    samples = tags.get(277, 1)
    if tags.get(262) == 3:  # palette colour
        samples = 3
    elif samples == 2:  # gray+alpha decodes to BGRA
        samples = 4
    return tags[256], tags[257], samples


def _webp(data: bytes) -> Header:
    kind = data[12:16]
    if kind == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise _Bad("WebP VP8 frame has no start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF, 3
    if kind == b"VP8L":
        if data[20] != 0x2F:
            raise _Bad("WebP VP8L has no signature")
        (bits,) = struct.unpack("<I", data[21:25])
        width = (bits & 0x3FFF) + 1
        height = ((bits >> 14) & 0x3FFF) + 1
        return width, height, 4 if (bits >> 28) & 1 else 3
    if kind == b"VP8X":
        flags = data[20]
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height, 4 if flags & 0x10 else 3
    raise _Bad(f"WebP chunk {kind!r} is unknown")
