"""wrk, the HTTP load generator: one run against a URL, its text output parsed into figures.

wrk is a C program (`apt-get install wrk`); it keeps its connections busy (closed loop), so
what it measures is how many requests a server answers per second when it is never idle, and
the latency distribution of those answers (`--latency`). Its own CPU comes from the same
machine: on 2 cores, both sides of a comparison pay it alike.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from harness.errors import ProcessFailed, ToolMissing

__all__ = ["INSTALL_HINT", "WrkResult", "parse_wrk", "require_wrk", "run_wrk"]

INSTALL_HINT = "wrk not found on PATH; install it: apt-get install wrk"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$", re.MULTILINE)
_SOCKET = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.MULTILINE
)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: requests answered per second, latency percentiles (ms), and failures.

    `errors` counts answers that were not 2xx/3xx plus socket errors (connect, read, write,
    timeout): a run with errors did not measure the query alone.
    """

    requests_per_s: float
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int


def require_wrk() -> str:
    """wrk's path; raises ToolMissing with the install command when it is missing."""
    path = shutil.which("wrk")
    if path is None:
        raise ToolMissing(INSTALL_HINT)
    return path


def parse_wrk(text: str) -> WrkResult:
    """Figures from wrk's `--latency` output; raises ValueError naming what is missing."""
    percentiles = {
        int(name): float(value) * _UNITS_MS[unit] for name, value, unit in _PERCENTILE.findall(text)
    }
    rate = _RATE.search(text)
    total = _TOTAL.search(text)
    missing = [
        what
        for what, found in (
            ("Requests/sec", rate),
            ("N requests in T", total),
            ("the latency distribution (--latency)", {50, 90, 99} <= percentiles.keys() or None),
        )
        if not found
    ]
    if missing or rate is None or total is None:
        raise ValueError(f"wrk's output lacks {', '.join(missing)}: {text.strip()[:300]!r}")
    non_2xx = _NON_2XX.search(text)
    socket = _SOCKET.search(text)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS_MS[total.group(3)] / 1000,
        p50_ms=percentiles[50],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        errors=errors,
    )


def run_wrk(url: str, *, threads: int, connections: int, duration_s: int) -> WrkResult:
    """Run `wrk -t T -c C -d Ds --latency URL` to its end; raises ProcessFailed if it fails."""
    command = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--latency",
        url,
    ]
    # wrk stops itself after its duration; the margin only catches a wrk that hangs.
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 30, check=False
    )
    if done.returncode != 0:
        raise ProcessFailed(
            f"wrk exited with code {done.returncode} on {url}: {done.stderr.strip()[:300]}"
        )
    try:
        return parse_wrk(done.stdout)
    except ValueError as exc:
        raise ProcessFailed(str(exc)) from None
