"""What a scan reads and keeps: its options, checked once (see :func:`pairgen.scan`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pairgen.errors import ScanError
from pairgen.spec.config import Layout

DEFAULT_MAX_PIXELS = 89_478_485


@dataclass(frozen=True)
class ScanOptions:
    """How a source is labelled and which of its images are kept.

    Attributes:
        layout: How labels are read; ``TABLE`` whenever ``table`` is given.
        class_depth: ``classes``/``split-folders``: 0 = each image folder is a class; N > 0 =
            group by the first N folder levels.
        table: The CSV/Parquet label table, when it is not the source itself.
        min_per_class: Classes with fewer used images are skipped, with a reason.
        max_pixels: Images with more pixels (from the header) are skipped; ``None``: no limit.
        allow_outside_root: Follow symlinks and table paths that lead outside the root.
    """

    layout: Layout = Layout.CLASSES
    class_depth: int = 0
    table: str | os.PathLike | None = None
    min_per_class: int = 1
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    allow_outside_root: bool = False

    @classmethod
    def of(cls, layout: Layout | str = "classes", *, class_depth: int = 0, table: str | os.PathLike | None = None,
           min_per_class: int = 1, max_pixels: int | None = DEFAULT_MAX_PIXELS,
           allow_outside_root: bool = False) -> ScanOptions:
        """Options from :func:`pairgen.scan`'s arguments, checked.

        Returns:
            The options; ``layout`` is a :class:`Layout`, ``TABLE`` when ``table`` is given.

        Raises:
            ConfigError: ``layout`` is not a known layout.
            ScanError: ``class_depth`` or ``min_per_class`` is negative.
        """
        resolved = Layout(Layout.from_value(layout, "--layout"))  # an unknown layout fails even beside a table
        if table is not None:
            resolved = Layout.TABLE
        if class_depth < 0:
            raise ScanError(f"--class-depth must be >= 0; received: {class_depth}.")
        if min_per_class < 0:
            raise ScanError(f"--min-per-class must be >= 0; received: {min_per_class}.")
        return cls(resolved, class_depth, table, min_per_class, max_pixels, allow_outside_root)
