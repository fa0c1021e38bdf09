"""The one function through which scans and builds read source image files."""

from __future__ import annotations


def read_source(path: str) -> bytes:
    """The bytes of one source file (read whole, once per use).

    Args:
        path: The file's path.

    Returns:
        Its bytes.

    Raises:
        OSError: If the file cannot be opened or read.
    """
    with open(path, "rb") as f:
        return f.read()
