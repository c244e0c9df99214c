"""What this process may still allocate: ``available_memory``, the least of the system's
MemAvailable, the cgroup's limit less its use and the address-space limit (``ulimit -v``) less
the address space in use. A decode asks it before it allocates its images (in memory, or as the
cache's memory map), so that a set too big is one clear message, not a MemoryError or the OOM
killer.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of the system's MemAvailable, the
    cgroup's limit less its use (page cache that can be dropped counted as free) and the
    address-space limit (ulimit -v) less the address space in use; None where none is known."""
    found = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    for root, limit_name, usage_name, inactive_name in (
        ("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
        (
            "/sys/fs/cgroup/memory",
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
            "total_inactive_file",
        ),
    ):
        with contextlib.suppress(OSError, ValueError):
            limit = Path(root, limit_name).read_text().strip()
            if limit != "max" and int(limit) < 2**60:
                used = int(Path(root, usage_name).read_text())
                stat = dict(
                    line.split() for line in Path(root, "memory.stat").read_text().splitlines()
                )
                found.append(max(0, int(limit) - used + int(stat.get(inactive_name, 0))))
                break
    with contextlib.suppress(ImportError, OSError, ValueError, IndexError):
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            status = Path("/proc/self/status").read_text()
            vm = int(re.search(r"^VmSize:\s+(\d+)", status, re.M).group(1)) * 1024  # type: ignore[union-attr]
            found.append(max(0, soft - vm))
    return min(found) if found else None
