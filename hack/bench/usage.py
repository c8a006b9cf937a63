"""CPU time and peak memory of processes, from the kernel's own counters.
Standard library only, like `parallel`."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process, from /proc (clock ticks)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib() -> float:
    """The highest resident memory this process has had."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
