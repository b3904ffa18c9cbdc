"""What the probe saw: one typed summary of one or more probe event files.

The files are JSON lines written by `site/splitdb_probe.py` (several processes may append to one
file). A line that is not JSON is skipped and counted, not an error: a writer killed in the
middle of its last line leaves it torn, and every complete line before it still counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Connection:
    """One `db_connect`: a connection a probed process opened (`count` > 1: that many of the
    same kind, counted by the probe after its first 20)."""

    db: str
    mode: str | None
    journal_mode: str | None
    instrumented: bool
    uri: bool | None
    flags: Mapping[str, str]
    pid: int
    process: str
    role: str
    wall: float
    count: int = 1


@dataclass
class Writes:
    """Every execution of one write statement on one file (schema), over all processes."""

    db: str
    schema: str
    stmt: str | None  # None: writes of uninstrumented connections (no statement text)
    count: int = 0
    rows: int = 0
    dur_us: int = 0
    max_us: int = 0
    actions: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    first_wall: float | None = None
    pids: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class DbError:
    """One `db_error` event; `count` > 1 when the probe aggregated repeats of the same error."""

    db: str
    outcome: str  # "busy", "locked" or "error"
    code: int | None
    name: str | None
    message: str
    stmt: str | None
    kind: str
    count: int
    dur_us: int
    max_us: int
    pid: int
    process: str
    wall: float


@dataclass
class Observed:
    """The summary `observe` builds. `started` is False when no Python process ran the probe
    (a non-Python command, `python -I`, a Python older than 3.10): then nothing was observed,
    which is not the same as nothing happening."""

    started: bool = False
    pids: set[int] = field(default_factory=set)
    connections: list[Connection] = field(default_factory=list)
    writes: dict[tuple[str, str, str | None], Writes] = field(default_factory=dict)
    errors: list[DbError] = field(default_factory=list)
    reads: dict[str, int] = field(default_factory=dict)
    exits: int = 0
    statements: int = 0
    skipped_lines: int = 0
    pythons: set[str] = field(default_factory=set)

    def busy_errors(self) -> list[DbError]:
        """The busy and locked errors, the contention the probe is for."""
        return [e for e in self.errors if e.outcome in ("busy", "locked")]

    def writes_to(self, db: str) -> list[Writes]:
        return [w for w in self.writes.values() if w.db == db]


def _events(path: Path, observed: Observed) -> Iterator[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            observed.skipped_lines += 1
            continue
        if isinstance(event, dict) and isinstance(event.get("op"), str):
            yield event
        else:
            observed.skipped_lines += 1


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def observe(paths: Iterable[Path]) -> Observed:
    """Read probe event files (a missing file is an empty one) into an `Observed`."""
    observed = Observed()
    for path in paths:
        for event in _events(Path(path), observed):
            _add(observed, event)
    return observed


def _add(observed: Observed, event: dict[str, Any]) -> None:
    op = event["op"]
    pid = _int(event.get("pid"))
    observed.pids.add(pid)
    if op == "probe_start":
        observed.started = True
        observed.pythons.add(str(event.get("python", "")))
    elif op == "db_connect":
        observed.connections.append(
            Connection(
                db=str(event.get("db")),
                mode=event.get("mode"),
                journal_mode=event.get("journal_mode"),
                instrumented=bool(event.get("instrumented", True)),
                uri=event.get("uri"),
                flags=dict(event.get("flags") or {}),
                pid=pid,
                process=str(event.get("process", "")),
                role=str(event.get("role", "")),
                wall=float(event.get("wall", 0.0)),
                count=_int(event.get("count", 1)) or 1,
            )
        )
    elif op == "db_write":
        key = (str(event.get("db")), str(event.get("schema", "main")), event.get("stmt"))
        writes = observed.writes.get(key)
        if writes is None:
            writes = observed.writes[key] = Writes(db=key[0], schema=key[1], stmt=key[2])
        writes.count += _int(event.get("count"))
        writes.rows += _int(event.get("rows"))
        writes.dur_us += _int(event.get("dur_us"))
        writes.max_us = max(writes.max_us, _int(event.get("max_us")))
        writes.actions.update(str(a) for a in event.get("actions") or ())
        writes.tables.update(str(t) for t in event.get("tables") or ())
        writes.pids.add(pid)
        wall = float(event.get("wall", 0.0))
        if event.get("first") and (writes.first_wall is None or wall < writes.first_wall):
            writes.first_wall = wall
    elif op == "db_error":
        observed.errors.append(
            DbError(
                db=str(event.get("db")),
                outcome=str(event.get("outcome", "error")),
                code=event.get("code"),
                name=event.get("name"),
                message=str(event.get("message", "")),
                stmt=event.get("stmt"),
                kind=str(event.get("kind", "unknown")),
                count=_int(event.get("count", 1)) or 1,
                dur_us=_int(event.get("dur_us")),
                max_us=_int(event.get("max_us", event.get("dur_us"))),
                pid=pid,
                process=str(event.get("process", "")),
                wall=float(event.get("wall", 0.0)),
            )
        )
    elif op == "db_reads":
        db = str(event.get("db"))
        observed.reads[db] = observed.reads.get(db, 0) + _int(event.get("count"))
    elif op == "probe_exit":
        observed.exits += 1
        observed.statements += _int(event.get("statements"))
