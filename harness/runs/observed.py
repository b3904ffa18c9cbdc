"""Checks on what the probe saw inside the user's own processes (`harness/probe`).

The probe makes a process's own `sqlite3` report its connections, busy/locked errors and writes
per database file, without a change to its code. From those events:

- `observed_writes`: every write on a file of the topology by a process whose role has no `rw`
  grant on any database in that file is a violation, even though nothing stopped it;
- `mark_not_observed`: a check that had no evidence for some processes (not Python,
  instrumentation off, or a probe that never started) says so, by name and reason, so that
  an unobserved process never passes silently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.probe.observed import Observed, observe
from harness.runs.checks import FIRST, Check
from reference.events import Event
from reference.topology import Topology


def observe_processes(probe_dir: Path, names: Sequence[str]) -> dict[str, Observed]:
    """What the probe reported for each named process (`probe/<name>.jsonl`; a process that
    left no file observed nothing)."""
    return {name: observe([probe_dir / f"{name}.jsonl"]) for name in names}


def not_observed(
    instrumented: Mapping[str, bool],
    commands: Mapping[str, Sequence[str]],
    probe: Mapping[str, Observed],
) -> dict[str, str]:
    """Why each process without probe evidence has none: name -> reason."""
    reasons = {}
    for name, on in instrumented.items():
        if not on:
            program = commands.get(name, ["?"])[0]
            reasons[name] = (
                f"not instrumented ({program!r} is not a Python command, or instrument = false)"
            )
        elif name not in probe or not probe[name].started:
            reasons[name] = (
                "instrumented, but the probe never started in it (a Python older than 3.10, "
                "or one run with -E or -I, which ignore PYTHONPATH)"
            )
    return reasons


def mark_not_observed(check: Check, reasons: Mapping[str, str]) -> Check:
    """The check with the processes it could not see named in its summary and evidence.

    A passing check becomes a warning: it holds for what was seen, and says what was not.
    """
    if not reasons:
        return check
    by_reason: dict[str, list[str]] = {}
    for name, why in reasons.items():
        by_reason.setdefault(why, []).append(name)
    named = "; ".join(f"{', '.join(names)}: {why}" for why, names in by_reason.items())
    check.summary += f" [not observed: {named}]"
    check.evidence["not_observed"] = dict(reasons)
    if check.ok:
        check.warning = f"no evidence from {', '.join(reasons)} (not observed)"
    return check


def observed_writes(
    topology: Topology,
    data_dir: Path,
    roles: Mapping[str, str],
    probe: Mapping[str, Observed],
) -> Check:
    """Every write the probe saw is on a database its process's role may write.

    A file holding several databases (a shared layout) may be written by a role with `rw` on
    any of them. Writes to files outside the topology (a scratch file, an in-memory database,
    the temp schema) are listed, not judged.
    """
    files = _files(topology, data_dir)
    allowed = 0
    outside: dict[str, int] = {}
    violations: list[dict[str, Any]] = []
    for name, observed in probe.items():
        role = roles[name]
        grants = topology.grants.get(role, {})
        for w in observed.writes.values():
            if w.schema == "temp":
                continue
            databases = files.get(os.path.realpath(w.db)) if w.db != ":memory:" else None
            if databases is None:
                outside[w.db] = outside.get(w.db, 0) + w.count
            elif any(grants.get(d) == "rw" for d in databases):
                allowed += w.count
            else:
                violations.append(
                    {
                        "process": name,
                        "role": role,
                        "databases": databases,
                        "file": w.db,
                        "statement": w.stmt or "? (a connection made around sqlite3.connect)",
                        "actions": sorted(w.actions),
                        "count": w.count,
                        "first_wall": w.first_wall,
                    }
                )
    found = sorted(violations, key=lambda v: (v["process"], v["file"], -v["count"]))
    if found:
        many = "statements" if len(found) > 1 else "statement"
        summary = f"{len(found)} {many} wrote where the process's role may not: " + "; ".join(
            f"{v['process']} (role {v['role']}) wrote {'/'.join(v['databases'])} "
            f"({Path(v['file']).name}) {v['count']} times: {v['statement']}"
            for v in found[:FIRST]
        )
    else:
        summary = f"{allowed} observed writes, each on a database its writer's role may write"
    if outside:
        summary += (
            f"; {sum(outside.values())} writes to in-memory databases or files outside the "
            "topology (not judged)"
        )
    return Check(
        "permissions",
        not found,
        summary,
        {
            "allowed_writes": allowed,
            "violations": found[: FIRST * 4],
            "outside_topology": outside,
        },
    )


def observed_connections(
    topology: Topology,
    data_dir: Path,
    roles: Mapping[str, str],
    probe: Mapping[str, Observed],
) -> Check:
    """Every connection the probe saw to a file of the topology is by a role with a grant on
    a database in it; a read-write connection where the role only reads is listed (a write
    through it would fail `permissions`; opening it is a smell, not a violation)."""
    files = _files(topology, data_dir)
    total = 0
    forbidden: list[dict[str, Any]] = []
    writable: dict[tuple[str, str], dict[str, Any]] = {}
    for name, observed in probe.items():
        grants = topology.grants.get(roles[name], {})
        for c in observed.connections:
            databases = files.get(os.path.realpath(c.db)) if c.db != ":memory:" else None
            if databases is None:
                continue
            total += c.count  # a line may stand for several connections of one kind
            modes = {grants.get(d) for d in databases}
            entry = {
                "process": name,
                "role": roles[name],
                "databases": databases,
                "file": c.db,
                "mode": c.mode,
            }
            if modes <= {None}:
                forbidden.append(entry)
            elif "rw" not in modes and c.mode in ("rw", "rwc"):
                writable.setdefault((name, c.db), entry)
    if forbidden:
        summary = f"{len(forbidden)} connections by a role with no grant on the file: " + "; ".join(
            f"{c['process']} (role {c['role']}) opened {'/'.join(c['databases'])} "
            f"({Path(str(c['file'])).name})"
            for c in forbidden[:FIRST]
        )
    else:
        summary = f"{total} connections to the topology's files, each by a role with a grant"
    if writable:
        summary += f"; {len(writable)} read-write where the role only reads: " + ", ".join(
            f"{c['process']} on {Path(str(c['file'])).name}" for c in writable.values()
        )
    return Check(
        "connections",
        not forbidden,
        summary,
        {
            "connections": total,
            "forbidden": forbidden[: FIRST * 4],
            "read_write_by_readers": list(writable.values()),
        },
    )


def _files(topology: Topology, data_dir: Path) -> dict[str, list[str]]:
    """Each database file of the topology (resolved) -> the databases living in it."""
    files: dict[str, list[str]] = {}
    for database in topology.databases:
        path = os.path.realpath(topology.file_of(database, data_dir))
        files.setdefault(path, []).append(database)
    return files


def observed_figures(
    probe: Mapping[str, Observed], instrumented: Mapping[str, bool]
) -> dict[str, dict[str, Any]]:
    """Per user process: what the probe counted (connections, writes, reads, busy/locked and
    other errors), and whether it was instrumented and its probe started."""
    figures = {}
    for name, on in instrumented.items():
        observed = probe.get(name) or Observed()
        busy = sum(e.count for e in observed.busy_errors())
        figures[name] = {
            "instrumented": on,
            "probe_started": observed.started,
            "connections": sum(c.count for c in observed.connections),
            "writes": sum(w.count for w in observed.writes.values()),
            "reads": sum(observed.reads.values()),
            "busy": busy,
            "errors": sum(e.count for e in observed.errors) - busy,
        }
    return figures


def errors_as_events(probe: Mapping[str, Observed]) -> dict[str, list[Event]]:
    """The probe's busy/locked errors as events, keyed by process, for the contention check
    (each with its `count`: the probe folds repeats of one statement)."""
    return {
        name: [{"op": "db_error", **asdict(e)} for e in observed.busy_errors()]
        for name, observed in probe.items()
    }
