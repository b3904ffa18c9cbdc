"""Traces: what every step of a scripted interleaving did, per run, as immutable records and JSON.

A trace file holds the script it ran (its text, its validated settings and the resolved
topology, so it replays even when the topology file it named is gone) and one `RunTrace` per
run: each step's outcome, SQLite extended error code, duration, rows, value and the
expectations it missed.

Format history (bump TRACE_VERSION on any change a reader must know about; keep loading old ones):
  1 - first version: script{name, source, text, settings, topology}, runs[]{index, ok, wall_s,
      error, steps[], processes{}}, summary{runs, matched}, environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.atomic import write_atomically
from harness.errors import ReportFormatError
from reference.errors import TopologyError
from reference.topology import parse_topology

TRACE_SCHEMA = "splitdb.trace"
TRACE_VERSION = 1
SUPPORTED_VERSIONS = (1,)
# Rows kept per step: enough to read what a query saw, bounded so a trace stays small.
MAX_ROWS = 20


@dataclass(frozen=True)
class StepResult:
    """What one step did. `duration_ms` is measured inside the process that ran it."""

    index: int
    do: str
    outcome: str
    process: str | None = None
    role: str | None = None
    pid: int | None = None
    db: str | None = None
    background: bool = False
    code: int | None = None
    error: str | None = None
    at_ms: float = 0.0
    duration_ms: float = 0.0
    row_count: int | None = None
    rows: list[list[Any]] | None = None
    value: Any = None
    note: str = ""
    mismatches: tuple[str, ...] = ()

    @property
    def matched(self) -> bool:
        return not self.mismatches

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mismatches"] = list(self.mismatches)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepResult:
        return cls(**{**data, "mismatches": tuple(data.get("mismatches", ()))})


@dataclass(frozen=True)
class ProcessRecord:
    """One named process of a run: its role, pid, exit code and the end of its stderr."""

    role: str
    pid: int | None = None
    exit_code: int | None = None
    stderr_tail: str = ""


@dataclass(frozen=True)
class RunTrace:
    """One run of a script. `ok`: every step ran and matched; `error` says why a run could not."""

    index: int
    steps: tuple[StepResult, ...]
    processes: Mapping[str, ProcessRecord] = field(default_factory=dict)
    wall_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.matched for s in self.steps)

    @property
    def failed_steps(self) -> tuple[StepResult, ...]:
        return tuple(s for s in self.steps if not s.matched)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "ok": self.ok,
            "wall_s": round(self.wall_s, 4),
            "error": self.error,
            "steps": [s.to_json() for s in self.steps],
            "processes": {n: asdict(p) for n, p in self.processes.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunTrace:
        return cls(
            index=int(data["index"]),
            steps=tuple(StepResult.from_json(s) for s in data["steps"]),
            processes={n: ProcessRecord(**p) for n, p in data.get("processes", {}).items()},
            wall_s=float(data.get("wall_s", 0.0)),
            error=data.get("error"),
        )


def json_safe(value: Any) -> Any:
    """A SQLite value as JSON can hold it: blobs become x'hex' text, the rest is unchanged."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"x'{bytes(value).hex()}'"
    return value


def trace_document(
    *,
    name: str,
    source: str,
    text: str | None,
    settings: Mapping[str, Any],
    topology: Mapping[str, Any],
    runs: Sequence[RunTrace],
    environment: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON document of a trace file (see the format history above)."""
    return {
        "schema": TRACE_SCHEMA,
        "version": TRACE_VERSION,
        "created": datetime.now(UTC).isoformat(),
        "environment": dict(environment),
        "script": {
            "name": name,
            "source": source,
            "text": text,
            "settings": dict(settings),
            "topology": dict(topology),
        },
        "runs": [r.to_json() for r in runs],
        "summary": {"runs": len(runs), "matched": sum(r.ok for r in runs)},
    }


def write_trace(document: Mapping[str, Any], path: Path) -> None:
    """Write atomically: a reader never sees half a trace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(document, indent=2) + "\n")


def check_trace(data: Any, source: str) -> dict[str, Any]:
    """`data` if it is a trace document this version reads; ReportFormatError saying why not."""
    if not isinstance(data, dict) or data.get("schema") != TRACE_SCHEMA:
        raise ReportFormatError(f"{source}: not a splitdb trace (schema is not {TRACE_SCHEMA!r})")
    if data.get("version") not in SUPPORTED_VERSIONS:
        raise ReportFormatError(
            f"{source}: trace version {data.get('version')!r} is not supported (this splitdb "
            f"reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade splitdb"
        )
    script = data.get("script")
    if not isinstance(script, dict) or not isinstance(script.get("settings"), dict):
        raise ReportFormatError(f"{source}: trace has no script.settings to replay")
    try:
        parse_topology(script.get("topology") or {}, source=f"{source}: script.topology")
    except TopologyError as exc:
        raise ReportFormatError(f"{source}: script.topology is invalid: {exc}") from None
    return data
