"""`splitdb speed api`: the reference API against a plain FastAPI anchor, measured in turns.

Both serve `GET /ticks/{symbol}/latest` from the same ticks file on this machine: the reference
API (`python -m reference.api`, with its request log, validation, status board and events) and
the anchor (`harness.speed.anchor_api`: an `async def`, one read-only connection, nothing else).
Issue 18's target is the ratio of their throughputs, reference / anchor, in one run: the machine
differs from hour to hour, the ratio much less.

A run: fill a ticks database (or let the reference bot ingest into it, `ingest`), start both
servers, warm each up, then `rounds` rounds of one wrk run per side, reference then anchor
(ABAB...), same wrk settings, same URL path. Both stay up for the whole run, so a round measures
serving, not starting. Each wrk run gives requests/s and latency percentiles; the report has
them per round, the medians with their spread (min..max), and the ratio of the medians beside
the per-round ratios. Nothing here judges the figures: a benchmark reports, a reader decides.

Each round also records the server's CPU time per request (its process's user + system time
over the wrk run, from /proc, divided by the requests answered; the reference API's includes
its request log writer thread). Requests/s on a shared 2-core machine follow whatever else runs
(wrk included); CPU per request follows the code, so its ratio is the steadier figure when the
machine is busy.

The report's JSON format (`api.json`), version 1: `format`, `version`, `started`, `finished`,
`settings` (as given), `path` (the URL path), `machine` (`cpus`, `load_1m_start`,
`load_1m_end`, `python`, `wrk`), `rounds` (one object per measurement: `round`, `side`,
`requests_per_s`, `requests`, `seconds`, `p50_ms`, `p90_ms`, `p99_ms`, `errors`, `load_1m`,
`cpu_us_per_request`), `sides` (per side: `requests_per_s`, `p99_ms` and `cpu_us_per_request`,
each `{median, min, max}`), `ratio` (`requests_per_s`: median reference / median anchor;
`per_round`: each round's reference / anchor; `min`, `max`; `requests_per_cpu_s`: median anchor
CPU per request / median reference CPU per request, so 1.0 is as cheap as the anchor, like the
throughput ratio), and `errors` (answers that were not 2xx plus socket errors, all rounds).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.atomic import write_atomically
from harness.runs.process_spec import CommandProcess, free_port
from harness.runs.readiness import Readiness
from harness.runs.supervisor import Supervisor
from harness.speed.wrk import WrkResult, require_wrk, run_wrk
from reference.access import AccessManager
from reference.schema import ensure_schema
from reference.tickstore import insert_ticks
from reference.topology import load_topology

__all__ = [
    "FORMAT",
    "REPORT_JSON",
    "REPORT_MARKDOWN",
    "SIDES",
    "VERSION",
    "SpeedSettings",
    "fill_ticks",
    "markdown_summary",
    "measure_api",
]

FORMAT = "splitdb-speed-api"
VERSION = 1
SIDES = ("reference", "anchor")
REPORT_JSON = "api.json"
REPORT_MARKDOWN = "api.md"
TOPOLOGY = "seed"
# 2020-01-01T00:00:00Z: filled ticks lie in the past, so a bot ingesting beside them adds the
# newest ones and the latest tick keeps moving.
_FILL_START_MSC = 1_577_836_800_000
_FILL_BATCH = 10_000


@dataclass(frozen=True)
class SpeedSettings:
    """What one run measures and how; the command line checks each value's range."""

    rounds: int = 5
    duration_s: int = 20
    warmup_s: int = 2
    threads: int = 2
    connections: int = 10
    symbol: str = "EURUSD"
    symbols: int = 10
    ticks: int = 100_000
    # Ticks per second the reference bot writes into the file while both sides are measured
    # (0: none, the file is still). The first figures were taken beside an ingesting bot.
    ingest: float = 0.0

    @property
    def path(self) -> str:
        return f"/ticks/{self.symbol}/latest"

    def symbol_names(self) -> list[str]:
        """The measured symbol first, then made-up others up to `symbols`."""
        return [self.symbol] + [f"SYM{i:03d}" for i in range(1, self.symbols)]


def fill_ticks(data_dir: Path, names: Sequence[str], ticks: int) -> Path:
    """Write `ticks` ticks over `names` (round robin, 10 ms apart) as the bot would, through
    the access manager with the bot's role and the tick store's insert; returns the file."""
    topology = load_topology(TOPOLOGY)
    conn = AccessManager(topology, data_dir).connect("bot", "ticks")
    try:
        ensure_schema(conn, "ticks")
        rows = []
        for i in range(ticks):
            time_msc = _FILL_START_MSC + i * 10
            bid = 1.1 + (i % 997) * 1e-5
            symbol = names[i % len(names)]
            rows.append((symbol, time_msc, 0, time_msc // 1000, bid, bid + 1e-4, 0.0, 0, 2, 0.0))
            if len(rows) == _FILL_BATCH:
                insert_ticks(conn, rows)
                rows = []
        if rows:
            insert_ticks(conn, rows)
    finally:
        conn.close()
    return topology.file_of("ticks", data_dir)


@dataclass(frozen=True)
class _Measured:
    round: int
    side: str
    result: WrkResult
    load_1m: float
    cpu_s: float  # the server's CPU time over the wrk run

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s * 1e6 / self.result.requests if self.result.requests else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "side": self.side,
            **asdict(self.result),
            "load_1m": self.load_1m,
            "cpu_us_per_request": self.cpu_us_per_request,
        }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc/PID/stat (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # After the command name, which may hold spaces and parentheses: utime, stime are the
    # 12th and 13th fields from there.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _wrk_version() -> str:
    done = subprocess.run([require_wrk(), "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    # "wrk 4.1.0 [epoll] Copyright (C) 2012 Will Glozer": the name and version are enough.
    return first[0].split(" Copyright")[0] if first else "unknown"


def _start_servers(
    supervisor: Supervisor, settings: SpeedSettings, ticks_file: Path
) -> dict[str, tuple[str, int]]:
    """Start the reference API and the anchor; returns each side's base URL and pid once it
    answers."""
    if settings.ingest > 0:
        names = ",".join(settings.symbol_names())
        supervisor.start("bot", ["--symbols", names, "--rate", f"{settings.ingest:g}"])
        supervisor.wait_ready("bot")
    supervisor.start("api", ["--port", "0", "--log-level", "warning"])
    reference_url = str(supervisor.wait_ready("api")["url"])
    port = free_port()
    anchor_url = f"http://127.0.0.1:{port}"
    command = (sys.executable, "-m", "harness.speed.anchor_api", "--db", str(ticks_file))
    spec = CommandProcess(
        command=(*command, "--port", str(port)),
        role="anchor",
        # The probe would add its cost to every statement of one side only.
        instrument=False,
    )
    supervisor.start_command(
        "anchor",
        spec,
        spec.command,
        env={},
        ready=Readiness(http=anchor_url + settings.path, timeout=30),
    )
    supervisor.wait_ready("anchor")
    return {
        "reference": (reference_url, supervisor.processes["api"].pid),
        "anchor": (anchor_url, supervisor.processes["anchor"].pid),
    }


def measure_api(
    settings: SpeedSettings, run_dir: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Run the measurement in `run_dir` (data, logs, events, reports go there); returns the
    report (the JSON format in this module's docstring) after writing `api.json` and
    `api.md` there. `progress` gets one line per phase and per measured round.

    Raises ToolMissing without wrk, ProcessFailed when a server does not start or wrk fails;
    every process started here is stopped on the way out, Ctrl-C included.
    """
    wrk_version = _wrk_version()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_start = os.getloadavg()[0]
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    progress(f"filling {settings.ticks:,} ticks over {settings.symbols} symbols in {data_dir}")
    ticks_file = fill_ticks(data_dir, settings.symbol_names(), settings.ticks)
    measured: list[_Measured] = []
    with Supervisor(
        run_dir, load_topology(TOPOLOGY), topology_arg=TOPOLOGY, data_dir=data_dir
    ) as supervisor:
        try:
            servers = _start_servers(supervisor, settings, ticks_file)
            progress(
                f"reference API at {servers['reference'][0]}, anchor at {servers['anchor'][0]}"
            )

            def wrk(side: str, seconds: int) -> WrkResult:
                return run_wrk(
                    servers[side][0] + settings.path,
                    threads=settings.threads,
                    connections=settings.connections,
                    duration_s=seconds,
                )

            if settings.warmup_s > 0:
                for side in SIDES:
                    progress(f"warm-up {side}: {settings.warmup_s} s")
                    wrk(side, settings.warmup_s)
            for number in range(1, settings.rounds + 1):
                for side in SIDES:
                    load = os.getloadavg()[0]
                    pid = servers[side][1]
                    cpu_before = _cpu_seconds(pid)
                    result = wrk(side, settings.duration_s)
                    cpu_s = _cpu_seconds(pid) - cpu_before
                    done = _Measured(number, side, result, load, cpu_s)
                    measured.append(done)
                    failed = f", {result.errors:,} errors" if result.errors else ""
                    progress(
                        f"round {number}/{settings.rounds} {side:<9} "
                        f"{result.requests_per_s:>9,.0f} req/s  p99 {result.p99_ms:7.2f} ms  "
                        f"{done.cpu_us_per_request:6.0f} us CPU/req  (load {load:.2f}){failed}"
                    )
        finally:
            supervisor.stop_all(reverse=True)
    report = _report(settings, measured, started=started, wrk=wrk_version, load_start=load_start)
    write_atomically(run_dir / REPORT_JSON, json.dumps(report, indent=2) + "\n")
    write_atomically(run_dir / REPORT_MARKDOWN, markdown_summary(report))
    return report


def _report(
    settings: SpeedSettings,
    measured: Sequence[_Measured],
    *,
    started: str,
    wrk: str,
    load_start: float,
) -> dict[str, Any]:
    by_side = {side: [m for m in measured if m.side == side] for side in SIDES}
    sides = {
        side: {
            "requests_per_s": _spread([m.result.requests_per_s for m in rows]),
            "p99_ms": _spread([m.result.p99_ms for m in rows]),
            "cpu_us_per_request": _spread([m.cpu_us_per_request for m in rows]),
        }
        for side, rows in by_side.items()
    }
    anchor_by_round = {m.round: m.result.requests_per_s for m in by_side["anchor"]}
    per_round = [
        m.result.requests_per_s / anchor_by_round[m.round]
        for m in by_side["reference"]
        if anchor_by_round.get(m.round)
    ]
    anchor_median = sides["anchor"]["requests_per_s"]["median"]
    reference_cpu = sides["reference"]["cpu_us_per_request"]["median"]
    return {
        "format": FORMAT,
        "version": VERSION,
        "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": asdict(settings),
        "path": settings.path,
        "machine": {
            "cpus": os.cpu_count(),
            "load_1m_start": load_start,
            "load_1m_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "wrk": wrk,
        },
        "rounds": [m.as_json() for m in measured],
        "sides": sides,
        "ratio": {
            "requests_per_s": (
                sides["reference"]["requests_per_s"]["median"] / anchor_median
                if anchor_median
                else None
            ),
            "per_round": per_round,
            "min": min(per_round, default=None),
            "max": max(per_round, default=None),
            "requests_per_cpu_s": (
                sides["anchor"]["cpu_us_per_request"]["median"] / reference_cpu
                if reference_cpu
                else None
            ),
        },
        "errors": sum(m.result.errors for m in measured),
    }


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:.2f} ms"


def _us(value: float) -> str:
    return f"{value:,.0f} us"


def _spread_text(spread: Mapping[str, float], shown: Callable[[float], str]) -> str:
    return f"{shown(spread['median'])} ({shown(spread['min'])}..{shown(spread['max'])})"


def markdown_summary(report: Mapping[str, Any]) -> str:
    """The report as Markdown: settings, one row per round, medians with spread, the ratio."""
    settings = report["settings"]
    machine = report["machine"]
    ingest = (
        f"the reference bot ingesting {settings['ingest']:g} ticks/s"
        if settings["ingest"]
        else "no ingest (the file is still)"
    )
    lines = [
        "# splitdb speed api: the reference API against the plain FastAPI anchor",
        "",
        f"`GET {report['path']}`, `wrk -t{settings['threads']} -c{settings['connections']} "
        f"-d{settings['duration_s']}s --latency`, {settings['rounds']} rounds, reference then "
        f"anchor in each; {settings['ticks']:,} ticks over {settings['symbols']} symbols, "
        f"{ingest}. {machine['cpus']} CPUs, load average (1 min) {machine['load_1m_start']:.2f} "
        f"at the start, {machine['load_1m_end']:.2f} at the end; {machine['wrk']}.",
        "",
        "| round | reference req/s | p99 | CPU/req | anchor req/s | p99 | CPU/req | ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows: dict[int, dict[str, Mapping[str, Any]]] = {}
    for row in report["rounds"]:
        rows.setdefault(row["round"], {})[row["side"]] = row
    for number, pair in sorted(rows.items()):
        ref, anchor = pair.get("reference"), pair.get("anchor")
        ratio = (
            f"{ref['requests_per_s'] / anchor['requests_per_s']:.2f}"
            if ref and anchor and anchor["requests_per_s"]
            else "-"
        )
        cells = [
            f"{_rate(side['requests_per_s'])} | {_ms(side['p99_ms'])} | "
            f"{_us(side['cpu_us_per_request'])}"
            if side
            else "- | - | -"
            for side in (ref, anchor)
        ]
        lines.append(f"| {number} | {cells[0]} | {cells[1]} | {ratio} |")
    sides = report["sides"]
    ratio = report["ratio"]
    lines += [
        "",
        "| side | req/s, median (min..max) | p99, median (min..max) | CPU per request |",
        "| --- | ---: | ---: | ---: |",
    ]
    for side in SIDES:
        lines.append(
            f"| {side} | {_spread_text(sides[side]['requests_per_s'], _rate)} | "
            f"{_spread_text(sides[side]['p99_ms'], _ms)} | "
            f"{_spread_text(sides[side]['cpu_us_per_request'], _us)} |"
        )
    if ratio["requests_per_s"] is not None:
        lines += [
            "",
            f"**Ratio reference / anchor (req/s, medians): {ratio['requests_per_s']:.2f}** "
            f"(per round {ratio['min']:.2f}..{ratio['max']:.2f}).",
        ]
    if ratio["requests_per_cpu_s"] is not None:
        lines += [
            "",
            f"Requests per CPU second, reference / anchor (medians): "
            f"{ratio['requests_per_cpu_s']:.2f}.",
        ]
    if report["errors"]:
        lines += [
            "",
            f"**{report['errors']:,} errors** (answers not 2xx, socket errors): those rounds "
            "did not measure the query alone; see the rounds in api.json.",
        ]
    return "\n".join(lines) + "\n"
