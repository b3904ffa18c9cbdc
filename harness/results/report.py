"""The run report: one versioned JSON document per run, next to the run's evidence.

`Report` is the typed model of the document: `splitdb run` builds it, the renderers and
`splitdb compare` read its attributes. `Report.to_json()` gives the JSON value that
`write_report` writes, and `Report.from_json(data)` (or `load_report(path)`) reads one, checking
the schema and giving the data of each format version to that version's reader (`_READERS`), so
old files keep loading after the format changes.

Fields that version 1 gained after it was first written (variants, per-second series, machine
state, open-loop figures, ...) are optional: a report written before them loads with None (or
empty) there, and writes back without them. Keys this splitdb does not know are kept and written
back as read. Free-form parts (check evidence, claim figures, the scenario's settings, the
topology) stay plain JSON mappings: their shape is each check's, or the scenario's, not the
report's.

Format history (bump REPORT_VERSION on any change a reader must know about; keep loading old ones):
  1 - first version: environment, scenario, repeats[] with metrics, checks, exits; verdict.
See docs/report-format.md for the fields.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.atomic import write_atomically
from harness.errors import ReportFormatError

REPORT_SCHEMA = "splitdb.report"
REPORT_VERSION = 1

_PACKAGES = (
    "splitdb",
    "sqlite-utils",
    "multiprocess",
    "fastapi",
    "uvicorn",
    "httpx",
    "pydantic",
    "numpy",
    "MetaTrader5",
)


def environment() -> dict[str, Any]:
    """What the run ran on: enough to tell whether two reports are comparable."""
    packages: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
        "packages": packages,
        "git_commit": _git_commit(),
        "argv": sys.argv,
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        cwd=Path(__file__).resolve().parent,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


# --- the model ------------------------------------------------------------------------------
# Field order is the order `splitdb run` writes the keys in. A field with a default is one a
# report may lack (added to version 1 later, or set only for some kinds of fault); `to_json`
# writes a field only when it was set, read or passed: code that builds a part passes every
# field it means to write, None included.


class _Part(BaseModel):
    """A part of a report: read-only, and keys this splitdb does not know are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Environment(_Part):
    """What the run ran on: enough to tell whether two reports are comparable."""

    python: str
    implementation: str
    sqlite: str
    platform: str
    machine: str
    cpu_count: int | None
    hostname: str
    packages: dict[str, str | None]
    git_commit: str | None
    argv: list[str]

    @classmethod
    def current(cls) -> Environment:
        return cls.model_validate(environment())


class ScenarioRecord(_Part):
    """The scenario as run: `settings` is the validated scenario with every default filled in
    (the scenario format's, see harness/runs/scenario.py), `source` the file's text."""

    name: str
    description: str
    seed: int
    repeat: int
    settings: dict[str, Any]
    source: str | None

    @property
    def duration(self) -> float | None:
        """Seconds of load per repeat, from the settings."""
        value = self.settings.get("duration")
        return float(value) if isinstance(value, int | float) else None

    @property
    def topology(self) -> str | None:
        """The topology the scenario names (a built-in name or a file), from the settings."""
        value = self.settings.get("topology")
        return None if value is None else str(value)


class Latency(_Part):
    """A latency summary: nearest-rank percentiles in ms, and counts per power-of-two bucket
    (`le_<upper bound in microseconds>`)."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    histogram_us: dict[str, int]


class BotMetrics(_Part):
    """The bot's ingest inside the load window, and its work per tick."""

    ticks_committed: int
    ticks_per_s: float | None
    commits: int
    commits_per_s: float | None = None
    rows_per_commit: float | None = None
    busy_commits: int
    failed_commits: int
    commit_latency: Latency
    tick_age_at_commit: Latency
    backlog_max: int
    lock_wait_ms_total: float
    lock_wait_p99_ms: float | None = None
    cpu_us_per_tick: float | None = None


class AnalysisLag(_Part):
    """Seconds from a bot ack to the first agent commit whose watermark covers it."""

    samples: int
    uncovered: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None


class GroupMetrics(_Part):
    """One load group (`load-<name>`). Groups with a rate (open loop) also have `offered` and
    the fields after it."""

    kind: str
    workers: int | None = None
    active_s: float | None = None
    operations: int
    ok: int
    errors: int
    busy: int
    denied: int
    ok_per_s: float | None
    latency: Latency
    blocked_ms: float
    offered: int | None = None
    offered_per_s: float | None = None
    answered_fraction: float | None = None
    response: Latency | None = None
    stalls: int | None = None
    longest_silence_ms: float | None = None
    generator_wake_p99_ms: float | None = None


class ProcessResources(_Part):
    """One process name's CPU (user+system, last sample) and peak memory; several pids when it
    was restarted."""

    cpu_s: float
    peak_rss_mb: float
    pids: list[int]


class WalSummary(_Part):
    """The largest WAL file seen per database file, and how many samples were taken."""

    max_bytes: dict[str, int]
    samples: int


class Series(_Part):
    """Per `bucket_s` of the load window, for plots; `operations` per process name."""

    bucket_s: float
    ticks_committed: list[int]
    ticks_analysed: list[int]
    busy_errors: list[int]
    operations: dict[str, list[int]]


class Machine(_Part):
    """Could the run offer its load: how late idle processes woke (p99, ms)."""

    generator_wake_p99_ms: float | None
    harness_wake_p99_ms: float | None
    starved_wake_ms: float
    could_offer_load: bool


class ObservedProcess(_Part):
    """What the probe counted inside one of the user's processes."""

    instrumented: bool
    probe_started: bool
    connections: int
    writes: int
    reads: int
    busy: int
    errors: int


class Metrics(_Part):
    """What one repeat measured (docs/report-format.md, "Metrics")."""

    load_s: float
    bot: BotMetrics
    analysis_lag: AnalysisLag
    groups: dict[str, GroupMetrics]
    processes: dict[str, ProcessResources]
    wal: WalSummary
    series: Series | None = None
    machine: Machine | None = None
    # Set for a run of the user's own processes (`[processes.NAME]` with a command).
    observed: dict[str, ObservedProcess] | None = None


class CheckResult(_Part):
    """One check of a repeat. `evidence` is the check's own (free-form) record; `warning` is set,
    with `ok` true, for a machine-dependent expectation not judged."""

    name: str
    ok: bool
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    warning: str | None = None

    @model_validator(mode="after")
    def _figures(self) -> CheckResult:
        """The evidence figures a comparison counts (harness/results/samples.py) are numbers:
        a report with anything else there is damaged, and is refused when read."""
        evidence = self.evidence
        for key in _FIGURES.get(self.name, ()):
            if key in evidence and not _is_figure(evidence[key]):
                raise ValueError(f"evidence.{key}: expected a number, got {_brief(evidence[key])}")
        if self.name == "duplicates" and "duplicated_keys" in evidence:
            per_table = evidence["duplicated_keys"]
            if not isinstance(per_table, dict) or not all(map(_is_figure, per_table.values())):
                raise ValueError(
                    "evidence.duplicated_keys: expected a table of counts, got " + _brief(per_table)
                )
        if self.name == "integrity" and not isinstance(evidence.get("problems", []), list | dict):
            raise ValueError(
                f"evidence.problems: expected a list or table, got {_brief(evidence['problems'])}"
            )
        return self


# Per check, the evidence keys read as figures.
_FIGURES: dict[str, tuple[str, ...]] = {
    "contention": ("busy_events",),
    "permissions": ("forbidden", "denied"),
}


def _is_figure(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FaultRecord(_Part):
    """One scheduled fault, applied or not (which fields are set depends on its kind)."""

    index: int | None = None
    kind: str
    target: str
    database: str | None = None
    scheduled_s: float | None = None
    after_acks: int | None = None
    applied: bool | None = None
    at_s: float | None = None
    held_s: float | None = None
    late_s: float | None = None
    waited_because: str | None = None
    restarted: bool | None = None
    ready_after_s: float | None = None
    resumed_s: float | None = None
    reason: str | None = None


class WalSample(_Part):
    """WAL size per database file at `t_s` seconds from the start of the load."""

    t_s: float
    wal_bytes: dict[str, int]


class Repeat(_Part):
    """One repeat of the scenario (of one variant). `topology` is the topology as a mapping
    (reference.topology's format)."""

    index: int
    seed: int
    dir: str
    topology: dict[str, Any]
    metrics: Metrics
    checks: list[CheckResult]
    faults: list[FaultRecord]
    samples: list[WalSample]
    variant: str | None = None

    @property
    def label(self) -> str:
        """'repeat 2', or 'legacy #2' for a variant's repeat."""
        return (
            f"{self.variant} #{self.index}" if self.variant is not None else f"repeat {self.index}"
        )

    def check(self, name: str) -> CheckResult | None:
        """The check called `name`, or None when this repeat has none."""
        return next((c for c in self.checks if c.name == name), None)


class ClaimVerdict(_Part):
    """A claim judged on one kind of arm: the verdict, its figures and its conditions."""

    verdict: str
    figures: dict[str, Any] = Field(default_factory=dict)
    conditions: list[str] = Field(default_factory=list)


class Claim(_Part):
    """A verdict on one of the seed's claims, with the figures and conditions behind it;
    `postgres`: the same claim judged on the run's PostgreSQL arms in the seed's place (None
    when the run had none)."""

    claim: str
    verdict: str
    figures: dict[str, Any] = Field(default_factory=dict)
    conditions: list[str] = Field(default_factory=list)
    postgres: ClaimVerdict | None = None


class RunVerdict(_Part):
    """`ok` when every check of every repeat passed; `failed` names each failure."""

    ok: bool
    failed: list[str]


class Report(_Part):
    """A whole report (`report.json`). `version` is the format version of the document."""

    version: int
    run_id: str
    created: str
    wall_s: float
    environment: Environment
    scenario: ScenarioRecord
    variants: list[str] = Field(default_factory=list)
    repeats: list[Repeat]
    verdict: RunVerdict
    claims: list[Claim] | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON value `write_report` writes: every field that was set, in format order."""
        return {"schema": REPORT_SCHEMA, **self.model_dump(exclude_unset=True)}

    @classmethod
    def from_json(cls, data: Any, source: str = "<report>") -> Report:
        """Read a report's JSON value with the reader of its format version.

        ReportFormatError, naming `source`, for anything else: another schema, a version this
        splitdb does not know, a missing or mistyped field (named by its path).
        """
        if not isinstance(data, Mapping) or data.get("schema") != REPORT_SCHEMA:
            raise ReportFormatError(
                f"{source}: not a splitdb report (schema is not {REPORT_SCHEMA!r})"
            )
        version = data.get("version")
        if not isinstance(version, int) or version not in _READERS:
            raise ReportFormatError(
                f"{source}: report version {version!r} is not supported "
                f"(this splitdb reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade splitdb"
            )
        try:
            return _READERS[version](data)
        except ValidationError as exc:
            raise ReportFormatError(_invalid(source, version, exc)) from None


def _read_v1(data: Mapping[str, Any]) -> Report:
    return Report.model_validate({k: v for k, v in data.items() if k != "schema"})


# One reader per format version: each takes a document of its version and returns the current
# model (a reader of an old version converts the old layout).
_READERS: dict[int, Callable[[Mapping[str, Any]], Report]] = {1: _read_v1}
SUPPORTED_VERSIONS = tuple(sorted(_READERS))


def _where(loc: tuple[int | str, ...]) -> str:
    """('repeats', 0, 'metrics') -> 'repeats[0].metrics'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _invalid(source: str, version: int, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        *parents, leaf = error["loc"] or ("?",)
        at = f"{_where(tuple(parents))}: " if parents else ""
        if error["type"] == "missing":
            problems.append(f"{at}field {leaf!r} is missing")
        else:
            shown = repr(error.get("input"))
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            problems.append(f"{at}{leaf}: {error['msg']} (got {shown})")
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return (
        f"{source}: not a version {version} report this splitdb can read: "
        + "; ".join(problems[:3])
        + more
    )


def write_report(report: Report, path: Path) -> None:
    """Write atomically: a reader never sees half a report."""
    write_atomically(path, json.dumps(report.to_json(), indent=2, sort_keys=False) + "\n")


# An interrupted `splitdb run` (Ctrl-C) keeps its directory as evidence (event logs, process
# logs, databases) with this file in it instead of report.json: it says when, and at which
# phase. Nothing reads such a directory as a run: `load_report` refuses it in one line, and a
# directory of runs being scanned (`splitdb compare reports/`) skips it.
INTERRUPTED_MARKER = "INTERRUPTED"
_PHASE = "phase: "


def mark_interrupted(run_dir: Path, phase: str, when: datetime | None = None) -> Path:
    """Write `run_dir`'s INTERRUPTED marker: the run stopped at `phase` and has no report."""
    stamp = (when or datetime.now(UTC)).isoformat(timespec="seconds")
    return write_atomically(
        Path(run_dir) / INTERRUPTED_MARKER,
        f"splitdb run was interrupted (Ctrl-C) at {stamp}; this directory has no report.json.\n"
        "Its logs, events and databases are kept as they were; no command reads it as a run.\n"
        f"{_PHASE}{phase}\n"
        f"interrupted: {stamp}\n",
    )


def interrupted_phase(run_dir: Path) -> str | None:
    """The phase an interrupted run stopped at (from its marker); None for any other directory."""
    try:
        text = (Path(run_dir) / INTERRUPTED_MARKER).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return next(
        (line[len(_PHASE) :].strip() for line in text.splitlines() if line.startswith(_PHASE)),
        "an unknown phase",
    )


def read_json(path: Path, *, what: str = "file") -> Any:
    """A JSON file's document; ReportFormatError naming the file when it is missing or not JSON.

    One reader for every versioned JSON file of splitdb (reports, traces), so each says the
    same thing about the same problem.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportFormatError(f"{path}: no such {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportFormatError(f"{path}: not JSON ({exc})") from None
    except RecursionError:
        # json parses nested arrays and objects by recursion: too deep is not a report.
        raise ReportFormatError(f"{path}: not JSON (nested too deeply to read)") from None


def load_report(path: Path) -> Report:
    """Read a report (a file, or a run directory holding report.json); see `Report.from_json`."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    if path.is_dir():
        path = path / "report.json"
    if not path.exists() and (phase := interrupted_phase(run_dir)) is not None:
        raise ReportFormatError(f"{run_dir} was interrupted at {phase}; it has no report")
    return Report.from_json(read_json(path, what="report"), str(path))
