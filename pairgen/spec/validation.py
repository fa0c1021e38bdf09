"""Strict checks of user-given values: types, ranges, names and record sizes.

A pipeline file, a CLI flag and a ``dataset.json`` all become a :class:`~pairgen.spec.config.BuildConfig`,
and every value is checked here before it is used: a boolean must be a TOML boolean (the
string ``"false"`` is an error, not a truthy value), a number a number, a size a positive
integer within a sane bound. Each failure is one :class:`~pairgen.errors.ConfigError` line
naming the key, the expected type and the value received.

Names that become parts of file names (split names) or that users read as labels (class
names) are data, never paths: :func:`name_problem` rejects separators, ``.``/``..``,
control characters and empty parts before anything is written.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pairgen.errors import ConfigError

MAX_SIDE = 65_500  # JPEG cannot hold more than 65,535 pixels a side; no record image needs more
MAX_IMAGE_BYTES = 1 << 26  # 64 MiB per decoded record image (e.g. 4096x4096x3 fits, 5000x5000x3 does not)
MAX_NAME_CHARS = 100  # a split name is part of shard file names (255 bytes at most)

_TYPE_NAMES = ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"),
               (list, "array"), (tuple, "array"), (dict, "table"))


def type_name(value: Any) -> str:
    """The TOML name of a value's type (``"string"``, ``"integer"``, ...), for messages."""
    if value is None:
        return "missing value"
    for cls, name in _TYPE_NAMES:
        if isinstance(value, cls):
            return name
    return type(value).__name__


def received(key: str, value: Any) -> str:
    """``received: key='x' (a string)``: the end of every type error."""
    kind = type_name(value)
    article = "an" if kind[0] in "aeiou" else "a"
    return f"received: {key}={value!r} ({article} {kind})"


def check_bool(value: Any, key: str) -> bool:
    """Require a real boolean (TOML ``true``/``false``), never a string or a number.

    Args:
        value: The value received.
        key: The dotted config key, for the message.

    Returns:
        ``value``.

    Raises:
        ConfigError: naming ``key``, e.g. for ``"false"``.
    """
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be a boolean (true or false, without quotes); {received(key, value)}.")
    return value


def check_int(value: Any, key: str, lo: int | None = None, hi: int | None = None) -> int:
    """Require an integer (not a boolean, not a float) in ``[lo, hi]``.

    Args:
        value: The value received.
        key: The dotted config key, for the message.
        lo: Smallest allowed value (``None``: no bound).
        hi: Largest allowed value (``None``: no bound).

    Returns:
        ``value``.

    Raises:
        ConfigError: naming ``key``, the bounds and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer; {received(key, value)}.")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key} must be an integer in {_bounds(lo, hi)}; received: {key}={value!r}.")
    return value


def check_number(value: Any, key: str, lo: float | None = None, hi: float | None = None, *,
                 open_lo: bool = False, open_hi: bool = False) -> float:
    """Require a finite int or float (not a boolean) in the given range.

    Args:
        value: The value received.
        key: The dotted config key, for the message.
        lo: Lower bound (``None``: none); excluded with ``open_lo``.
        hi: Upper bound (``None``: none); excluded with ``open_hi``.
        open_lo: Exclude ``lo`` itself.
        open_hi: Exclude ``hi`` itself.

    Returns:
        ``value``, unchanged (an int stays an int, so fingerprints do not move).

    Raises:
        ConfigError: naming ``key``, the range and the value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number; {received(key, value)}.")
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number; received: {key}={value!r}.")
    low_bad = lo is not None and (value <= lo if open_lo else value < lo)
    high_bad = hi is not None and (value >= hi if open_hi else value > hi)
    if low_bad or high_bad:
        left = "(" if open_lo else "["
        right = ")" if open_hi else "]"
        span = f"{left}{'-inf' if lo is None else lo:g}, {'inf' if hi is None else hi:g}{right}"
        raise ConfigError(f"{key} must be in {span}; received: {key}={value!r}.")
    return value


def check_str(value: Any, key: str, *, optional: bool = False) -> str | None:
    """Require a string without NUL (or ``None`` when ``optional``).

    Args:
        value: The value received.
        key: The dotted config key, for the message.
        optional: Accept ``None``.

    Returns:
        ``value``.

    Raises:
        ConfigError: naming ``key``.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string; {received(key, value)}.")
    if "\x00" in value:
        raise ConfigError(f"{key} must not contain a NUL character; received: {key}={value!r}.")
    return value


def _bounds(lo: int | None, hi: int | None) -> str:
    if hi is None:
        return f"{lo:,}.." if lo is not None else "any range"
    return f"{'' if lo is None else f'{lo:,}'}..{hi:,}"


# Unicode category Cc (C0, DEL, C1), lone surrogates (Cs: undecodable bytes), line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


def has_control(text: str) -> bool:
    """True if ``text`` holds a control character (or a lone surrogate from an undecodable name)."""
    return _CONTROL.search(text) is not None


def name_problem(name: Any, *, nested: bool = False) -> str | None:
    """Why ``name`` cannot be a split name (or, with ``nested``, a class name); ``None`` if it can.

    A split name is one path component: not empty, no ``/`` or ``\\``, not ``.`` or ``..``, not
    hidden (leading ``.``), no control characters, no leading or trailing whitespace
    (``"train "`` would write ``train -00000-of-...`` shards), at most :data:`MAX_NAME_CHARS`
    characters. A class name may nest folders with ``/`` (``Latin/character07``), and each of
    its parts follows the same rules (so it is never absolute and never climbs with ``..``).
    """
    if not isinstance(name, str):
        return f"it is {type_name(name)}, not a string"
    if has_control(name):
        return "it contains a control character"
    parts = name.split("/") if nested else [name]
    if "\\" in name or (not nested and "/" in name):
        return "it contains a path separator"
    if any(p == "" for p in parts):
        return "it is empty or has an empty part (leading, trailing or double '/')"
    if any(p in (".", "..") for p in parts):
        return "it is or contains '.' or '..'"
    if not nested and name.startswith("."):
        return "it starts with '.'"
    if not nested and name != name.strip():
        return "it starts or ends with whitespace"
    if not nested and len(name) > MAX_NAME_CHARS:
        return f"it is longer than {MAX_NAME_CHARS} characters"
    return None


def check_split_name(name: Any, key: str = "split.fractions") -> str:
    """Raise a ConfigError unless ``name`` can be a split name (see :func:`name_problem`)."""
    problem = name_problem(name)
    if problem:
        raise ConfigError(f"{key} has an invalid split name {name!r}: {problem}. Split names become "
                          "file names; use letters, digits, '-' and '_' (e.g. train, val, test).")
    return name


def check_size(value: tuple[int, int] | None, key: str, channels: int | None = None) -> None:
    """Require each side in ``1..MAX_SIDE`` and (with ``channels``) a decoded image of at most
    :data:`MAX_IMAGE_BYTES`, so that a batch of records fits in memory.

    Raises:
        ConfigError: naming ``key``, the size and the limit.
    """
    if value is None:
        return
    for side in value:
        check_int(side, key)
    if not all(1 <= side <= MAX_SIDE for side in value):
        raise ConfigError(f"{key} must have sides in 1..{MAX_SIDE:,}; received: {key}={value[0]}x{value[1]}.")
    if channels is not None:
        nbytes = value[0] * value[1] * channels
        if nbytes > MAX_IMAGE_BYTES:
            raise ConfigError(
                f"{key} {value[0]}x{value[1]} with {channels} channel(s) is {nbytes:,} bytes per decoded "
                f"image, over the limit of {MAX_IMAGE_BYTES:,} (64 MiB): a batch of such records would "
                "not fit in memory. Choose a smaller --image-size (or [image] size / [augment] resize).")


def check_record_memory(*, size: tuple[int, int], channels: int, images_per_record: int,
                        records_in_flight: int, memory_bytes: int) -> None:
    """Fail before any pixel is allocated when the records a build holds at once exceed memory.

    Args:
        size: Record image ``(height, width)``.
        channels: Record image channels.
        images_per_record: 2 for pairs, 3 for triplets.
        records_in_flight: How many records the build may hold decoded at once.
        memory_bytes: The machine's memory.

    Raises:
        ConfigError: naming the size, the estimate and the memory.
    """
    need = size[0] * size[1] * channels * images_per_record * records_in_flight
    if need > memory_bytes // 2:
        raise ConfigError(
            f"image.size {size[0]}x{size[1]}x{channels} needs about {need / 2**30:,.1f} GiB for the "
            f"{records_in_flight:,} records a build holds at once, over half of this machine's "
            f"{memory_bytes / 2**30:,.1f} GiB. Choose a smaller --image-size or fewer --workers.")
