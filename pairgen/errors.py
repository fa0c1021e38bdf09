"""Exceptions raised for bad user input.

Every error a user can cause is a :class:`PairgenError` (a ``ValueError``), whose message is
one line that names the file or option, what is wrong, and how to fix it. The CLI prints that
line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class PairgenError(ValueError):
    """Base class of all user-facing pairgen errors."""


class ConfigError(PairgenError):
    """A pipeline file, option or argument is invalid."""


class ScanError(PairgenError):
    """A source tree or label table cannot be scanned."""


class SplitError(PairgenError):
    """A split cannot be made as asked."""


class SampleError(PairgenError):
    """Pairs or triplets cannot be sampled as asked."""


class ImageError(PairgenError):
    """An image cannot be decoded, converted or encoded."""


class BuildError(PairgenError):
    """A dataset cannot be built or written."""


class DatasetError(PairgenError):
    """A dataset directory is missing, incomplete or inconsistent."""


class MissingDependencyError(PairgenError, ImportError):
    """An optional package (TensorFlow, Keras, matplotlib) is needed but not installed.

    The message names the ``pairgen[...]`` extra that installs it.
    """
