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

from pathlib import Path
from typing import Any

from harness.procstat import read_stat

__all__ = ["server_usage"]


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
    top = read_stat(postmaster)
    if top is None:
        return None
    cpu = top.cpu_s + top.children_cpu_s
    peak = top.peak_rss_mb
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        child = read_stat(int(entry.name))
        if child is None or child.ppid != postmaster:
            continue
        if _title(int(entry.name)).startswith(f"postgres: {harness_user} "):
            continue
        cpu += child.cpu_s
        peak = max(peak, child.peak_rss_mb)
    return {"cpu_s": round(cpu, 3), "peak_rss_mb": round(peak, 1)}
