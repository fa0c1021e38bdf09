"""What OpenCV's codecs print to file descriptor 2 stays off the terminal; pairgen reports the file."""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pairgen.codec.images import decode
from pairgen.errors import ImageError


def _damaged_png(seed: int = 0) -> bytes:
    """A PNG whose compressed pixel data is damaged, with chunk CRCs that still match (libpng
    gets as far as inflating it, and prints ``libpng error: IDAT: ...``)."""
    image = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    data = bytearray(cv2.imencode(".png", image)[1].tobytes())
    at = data.index(b"IDAT") - 4
    length = int.from_bytes(data[at:at + 4], "big")
    data[at + 8 + 5] ^= 0x55
    data[at + 8 + length:at + 12 + length] = zlib.crc32(bytes(data[at + 4:at + 8 + length])).to_bytes(4, "big")
    return bytes(data)


def test_decoding_a_damaged_png_prints_nothing_and_raises_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ImageError, match="'bad.png': its pixel data is damaged or truncated"):
        decode(_damaged_png(), channels=3, source="bad.png")
    assert capfd.readouterr().err == ""
    print("still on stderr", file=sys.stderr)  # descriptor 2 works again afterwards
    assert capfd.readouterr().err == "still on stderr\n"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_quiet_build_with_a_damaged_png_prints_nothing_and_skips_it_with_a_reason(tmp_path: Path, make_image_tree,
                                                                                 workers: str) -> None:
    src = make_image_tree(tmp_path, classes=3, per_class=20)
    (src / "class_00" / "damaged.png").write_bytes(_damaged_png())
    done = subprocess.run([sys.executable, "-m", "pairgen", "build", "--src", str(src), "--out", str(tmp_path / "ds"),
                           "--workers", workers, "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    skipped = pd.read_parquet(tmp_path / "ds" / "skipped.parquet")
    assert skipped["path"].tolist() == ["class_00/damaged.png"]
    assert "pixel data is damaged or truncated" in skipped["reason"].iloc[0]
