"""How much memory this process may still use: the machine's, a container's and a ulimit's.

A build compares its estimate with :func:`available_memory` before it allocates, so a request
that cannot fit ends in one line instead of the kernel's out-of-memory kill (exit 137, no
message) or a NumPy allocation error deep in a sampler.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path


def available_memory() -> int | None:
    """Bytes this process can still allocate, the tightest of every limit found; ``None`` if none is known.

    The limits: the kernel's ``MemAvailable`` (free memory plus what it can reclaim), a cgroup
    limit (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``) less its current use, and
    ``RLIMIT_AS`` (``ulimit -v``) less this process's address space.
    """
    limits = [_meminfo("MemAvailable"), _cgroup_room(), _address_space_room()]
    known = [x for x in limits if x is not None]
    if not known:
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
    return max(0, min(known))


def _meminfo(key: str, path: str = "/proc/meminfo") -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_room() -> int | None:
    """The cgroup's limit less its use: v2 at /sys/fs/cgroup, else v1's memory controller."""
    for limit, usage in (("memory.max", "memory.current"),
                         ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        cap = _read_int(Path("/sys/fs/cgroup") / limit)
        used = _read_int(Path("/sys/fs/cgroup") / usage)
        if cap is not None and used is not None and cap < 1 << 60:  # v1 writes a huge number for "none"
            return cap - used
    return None


def _address_space_room() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    size = _meminfo("VmSize", "/proc/self/status")
    return soft - size if size is not None else soft
