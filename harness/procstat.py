"""A live process's CPU time and peak memory, read from /proc (Linux): what a run's figures per
process are made of."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcStat", "read_stat"]

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """CPU seconds of the process itself (`cpu_s`) and of its children it has reaped
    (`children_cpu_s`), its parent's pid, and its peak RSS (VmHWM) in MB."""

    ppid: int
    cpu_s: float
    children_cpu_s: float
    peak_rss_mb: float


def read_stat(pid: int) -> ProcStat | None:
    """`pid`'s figures, or None when it is gone (or /proc cannot be read)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    # After the command name (which may hold spaces and parentheses): state, ppid, ...
    fields = stat[stat.rindex(")") + 2 :].split()
    peak_kb = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0
    )
    return ProcStat(
        ppid=int(fields[1]),
        cpu_s=(int(fields[11]) + int(fields[12])) / TICKS_PER_S,
        children_cpu_s=(int(fields[13]) + int(fields[14])) / TICKS_PER_S,
        peak_rss_mb=peak_kb / 1024,
    )
