"""What a throwaway server costs: CPU seconds and peak memory of its processes, read from /proc,
so a comparison of backends puts the server's work beside the processes' own (on SQLite that
work is done inside the processes).

The server's CPU so far is the postmaster's own and its reaped children's (`utime`, `stime`,
`cutime`, `cstime` of /proc/PID/stat), plus each live backend's. A live backend of the
harness's own login (the lock-wait sampler, checks) is left out, as the harness's load workers
are left out of the processes' figures; its share in backends already gone cannot be told
apart, and is small (a sample query every 20 ms).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["server_usage"]


def _stat(pid: int) -> tuple[int, list[str], int] | None:
    """(ppid, the fields after the command name, VmHWM in kB) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    peak = next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM:")), 0)
    return int(fields[1]), fields, peak


def _title(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def server_usage(postmaster: int, *, harness_user: str) -> dict[str, Any] | None:
    """CPU seconds and the largest peak RSS of the server whose postmaster is `postmaster`, its
    live backends of `harness_user` left out (see the module's note); None if it is gone."""
    top = _stat(postmaster)
    if top is None:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    _, fields, peak = top
    cpu = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        child = _stat(int(entry.name))
        if child is None or child[0] != postmaster:
            continue
        if _title(int(entry.name)).startswith(f"postgres: {harness_user} "):
            continue
        cpu += int(child[1][11]) + int(child[1][12])
        peak = max(peak, child[2])
    return {"cpu_s": round(cpu / ticks, 3), "peak_rss_mb": round(peak / 1024, 1)}
