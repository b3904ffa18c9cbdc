"""Checks of a finished run: each returns a `Check` with its verdict and its evidence.

Evidence is counts plus the first offending events, so a failed check explains itself.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from harness.runs.durability import check_durability
from harness.runs.reads import Reads
from reference.events import Event
from reference.status import StatusBoard
from reference.topology import Topology

FIRST = 5


@dataclass
class Check:
    """One verdict: `ok`, a one-line `summary`, and the `evidence` behind it."""

    name: str
    ok: bool
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    # Set when the check did not judge: a machine-dependent expectation missed on a machine
    # that could not offer the scenario's load. `ok` stays True: it is not a failure.
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def judged(
    name: str, compute: Callable[[], Check], errors: tuple[type[Exception], ...] = ()
) -> Check:
    """`compute()`, or a failed check `name` saying why it could not be judged: a database the
    check must read may be malformed or gone after a fault, and that is a finding of the run,
    not a reason for the harness to stop without a report. `errors`: more exception types that
    mean the same (a server's)."""
    caught: tuple[type[Exception], ...] = (sqlite3.DatabaseError, OSError, *errors)
    try:
        return compute()
    except caught as exc:
        return Check(
            name,
            False,
            f"could not be judged: {type(exc).__name__}: {exc}",
            {"error": f"{type(exc).__name__}: {exc}"},
        )


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def contention(events: Mapping[str, Sequence[Event]], *, max_busy: int | None) -> Check:
    """Busy/locked errors seen anywhere, and time spent blocked (failed waits + lock waits).

    An event may stand for several errors (`count`: the probe folds repeats of one statement
    into one line); its `dur_us` is then their total.
    """
    busy = [
        (name, e)
        for name, evs in events.items()
        for e in evs
        if e.get("outcome") in ("busy", "locked")
    ]
    by_process: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    for name, e in busy:
        by_process[name] += errors_in(e)
        codes[str(e.get("code"))] += errors_in(e)
    total = sum(by_process.values())
    blocked_ms = sum(e.get("dur_us", 0) for _, e in busy) / 1000
    waited_ms = sum(e.get("wait_us", 0) for evs in events.values() for e in evs) / 1000
    limit = 0 if max_busy is None else max_busy
    return Check(
        "contention",
        total <= limit,
        f"{total} busy/locked errors (limit {limit}), {blocked_ms:.1f} ms in failed "
        f"attempts, {waited_ms:.1f} ms waiting for write locks",
        {
            "busy_events": total,
            "by_process": dict(by_process),
            "codes": dict(codes),
            "blocked_ms": round(blocked_ms, 3),
            "lock_wait_ms": round(waited_ms, 3),
            "first": [dict(e, process=name) for name, e in busy[:FIRST]],
        },
    )


def errors_in(event: Event) -> int:
    """How many errors one event stands for: its `count` (a probe line folding repeats), or 1."""
    return int(event.get("count", 1))


def bypass(events: Mapping[str, Sequence[Event]], enforcement: str) -> Check:
    """What processes that open the files themselves (plain sqlite3, no access manager) could
    write on databases their role only reads.

    Under enforcement = "os" none of those writes may succeed. Under "process" they do, by
    design: the access manager lives in the process that bypasses it; the check then passes
    with a warning and the figures, so the limit is stated, never hidden.
    """
    tried = [e for evs in events.values() for e in evs if e.get("op") == "bypass"]
    succeeded = [e for e in tried if e.get("outcome") == "ok"]
    refused = [e for e in tried if e.get("outcome") not in ("ok", "busy", "locked")]
    busy = len(tried) - len(succeeded) - len(refused)
    summary = (
        f"{len(tried)} writes by processes that opened the files themselves: "
        f"{len(succeeded)} succeeded, {len(refused)} refused, {busy} busy "
        f"(enforcement = {enforcement})"
    )
    evidence = {
        "tried": len(tried),
        "succeeded": len(succeeded),
        "refused": len(refused),
        "busy": busy,
        "enforcement": enforcement,
        "succeeded_by_attempt": dict(Counter(str(e.get("attempt")) for e in succeeded)),
        "errors": dict(Counter(str(e.get("error")) for e in refused).most_common(5)),
    }
    if enforcement == "os":
        return Check("bypass", bool(tried) and not succeeded, summary, evidence)
    warning = (
        f"{len(succeeded)} of {len(tried)} writes succeeded: in-process enforcement cannot stop a "
        'process that opens the file itself; enforcement = "os" does'
        if succeeded
        else None
    )
    return Check("bypass", True, summary, evidence, warning=warning)


def permissions(events: Mapping[str, Sequence[Event]]) -> Check:
    """Every forbidden attempt denied by the access manager, none succeeded, no file created.

    An attempt that failed as busy/locked (contention while preparing) was neither denied nor
    allowed: it is counted as inconclusive. One refused by SQLite itself (read-only file) rather
    than by the access manager is a gap in the catalogue's enforcement and fails the check.
    """
    attempts = [e for evs in events.values() for e in evs if e.get("op") == "attempt"]
    forbidden = [e for e in attempts if e.get("must_deny")]
    denied = [e for e in forbidden if e.get("outcome") == "denied"]
    leaks = [e for e in forbidden if e.get("outcome") == "ok"]
    inconclusive = [e for e in forbidden if e.get("outcome") in ("busy", "locked")]
    refused_by_sqlite = [e for e in forbidden if e.get("outcome") == "error"]
    wrong_denials = [e for e in attempts if not e.get("must_deny") and e["outcome"] == "denied"]
    file_leaks = [e for evs in events.values() for e in evs if e.get("op") == "leak"]
    # On a server: attempts that met a lost connection or another attacker's conflict, and got
    # no answer about the grants. Many lost and none judged is no evidence, not a pass.
    lost = [e for evs in events.values() for e in evs if e.get("op") == "attempt_lost"]
    own = [
        (name, e)
        for name, evs in events.items()
        for e in evs
        if e.get("op") == "violation" and not name.startswith("load-")
    ]
    ok = (
        not leaks
        and not file_leaks
        and not own
        and not wrong_denials
        and not refused_by_sqlite
        and (bool(denied) or not forbidden)
        and not (lost and not forbidden)
    )
    return Check(
        "permissions",
        ok,
        f"{len(forbidden)} forbidden attempts: {len(denied)} denied, {len(leaks)} succeeded, "
        f"{len(inconclusive)} inconclusive (busy), {len(refused_by_sqlite)} refused by SQLite "
        f"not the access manager; {len(file_leaks)} files created; {len(own)} denials of the "
        "reference processes' own statements"
        + (f"; {len(lost)} attempts lost (no answer: connection or conflict)" if lost else ""),
        {
            "attempts": len(attempts),
            "forbidden": len(forbidden),
            "denied": len(denied),
            "succeeded": len(leaks),
            "inconclusive": len(inconclusive),
            "refused_by_sqlite": len(refused_by_sqlite),
            "lost": len(lost),
            "by_operation": dict(Counter(str(e.get("attempt")) for e in forbidden)),
            "first_leaks": leaks[:FIRST] + file_leaks[:FIRST],
            "first_refused_by_sqlite": refused_by_sqlite[:FIRST],
            "first_wrong_denials": wrong_denials[:FIRST],
            "first_own_violations": [dict(e, process=n) for n, e in own[:FIRST]],
        },
    )


def combined(first: Check, second: Check) -> Check:
    """Two verdicts on one subject as one check (named after the first): ok if both are."""
    return Check(
        first.name,
        first.ok and second.ok,
        f"{first.summary}; {second.summary}",
        {**second.evidence, **first.evidence},
        first.warning or second.warning,
    )


def durability(bot_event_files: Iterable[Path], ticks_path: Path) -> Check:
    """Every tick the bot acknowledged is stored (across kills and restarts)."""
    conn = _ro(ticks_path)
    try:
        return durability_on(bot_event_files, conn)
    finally:
        conn.close()


def durability_on(bot_event_files: Iterable[Path], ticks: Reads) -> Check:
    """`durability` on an open connection to the ticks (SQLite's, or a server's)."""
    result = check_durability(bot_event_files, ticks)
    return Check(
        "durability",
        result.ok and result.acks > 0,
        result.describe() if result.acks else "the bot acknowledged nothing: nothing to check",
        {
            "acks": result.acks,
            "acked_ticks": sum(result.acked_rows.values()),
            "stored_ticks": sum(result.stored_rows.values()),
            "missing_keys": result.missing_keys[:FIRST],
            "short_symbols": result.short_symbols[:FIRST],
        },
    )


_KEYS = {"ticks": ("symbol", "time_msc", "seq"), "bars": ("symbol", "timeframe", "start_msc")}


def duplicates(topology: Topology, data_dir: Path) -> Check:
    """No row stored twice under its natural key (ticks, bars)."""
    conns = {
        table: _ro(topology.file_of(database, data_dir))
        for database, table in (("ticks", "ticks"), ("analysis", "bars"))
    }
    try:
        return duplicates_on(conns)
    finally:
        for conn in conns.values():
            conn.close()


def duplicates_on(conns: Mapping[str, Reads]) -> Check:
    """`duplicates` on open connections, one per table ('ticks', 'bars')."""
    found: dict[str, int] = {}
    for table, conn in conns.items():
        cols = ", ".join(_KEYS[table])
        found[table] = conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {cols} "
            "HAVING count(*) > 1) AS twice"
        ).fetchone()[0]
    return Check(
        "duplicates",
        not any(found.values()),
        ", ".join(f"{n} duplicated keys in {t}" for t, n in found.items()),
        {"duplicated_keys": found},
    )


def integrity(topology: Topology, data_dir: Path) -> Check:
    """`PRAGMA integrity_check` is 'ok' on every database file."""
    results: dict[str, list[str]] = {}
    missing = []
    for path in sorted({topology.file_of(db, data_dir) for db in topology.databases}):
        if not path.exists():
            # Nothing made it (a user's process creates its own files): nothing to check.
            missing.append(path.name)
            continue
        try:
            conn = _ro(path)
            try:
                results[path.name] = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            # A file SQLite cannot open or read is the finding, not a reason to lose the report.
            results[path.name] = [f"cannot be checked: {exc}"]
    bad = {name: rows[:FIRST] for name, rows in results.items() if rows != ["ok"]}
    summary = f"{len(results) - len(bad)} of {len(results)} database files pass integrity_check"
    if missing:
        summary += f"; never created: {', '.join(missing)}"
    return Check(
        "integrity",
        not bad,
        summary,
        {
            "files": list(results),
            "problems": bad,
            **({"never_created": missing} if missing else {}),
        },
    )


def status_board(events: Mapping[str, Sequence[Event]], board_path: Path) -> Check:
    """The board reads, and no role's section ever went back (which a lost update would do)."""
    problems: list[str] = []
    try:
        sections = StatusBoard(board_path).read()["sections"]
    except Exception as exc:  # any failure to read is the finding itself
        return Check("status_board", False, f"status board unreadable: {exc}", {})
    updates = 0
    skipped = sum(1 for evs in events.values() for e in evs if e.get("op") == "status_busy")
    for name, evs in events.items():
        seqs = [e["seq"] for e in sorted(evs, key=lambda e: e["t"]) if e["op"] == "status_update"]
        if not seqs:
            continue
        updates += len(seqs)
        for before, after in pairwise(seqs):
            if after <= before:
                problems.append(f"{name}: _seq went from {before} to {after}")
                break
        role = evs[0]["role"] if evs else name
        if role not in sections:
            problems.append(
                f"{name}: published _seq {seqs[-1]} but the board has no {role} section"
            )
        elif sections[role].get("_seq", 0) < seqs[-1]:
            problems.append(f"{name}: board has _seq {sections[role].get('_seq')} < {seqs[-1]}")
    return Check(
        "status_board",
        not problems,
        f"{updates} status updates, {len(problems)} lost, {skipped} heartbeats skipped "
        "(lock held past their timeout)"
        if not problems
        else "; ".join(problems[:FIRST]),
        {
            "updates": updates,
            "skipped_heartbeats": skipped,
            "sections": sorted(sections),
            "problems": problems[:FIRST],
        },
    )


def processes(exits: Sequence[Any], stderr_tails: Mapping[str, str]) -> Check:
    """Every process exit was expected (clean stop, or a kill the scenario asked for)."""
    bad = [e for e in exits if not e.expected]
    named = "; ".join(f"{e.name} (pid {e.pid}): {_exit_story(e)}" for e in bad[:FIRST])
    return Check(
        "processes",
        not bad,
        f"{len(exits)} exits, {len(bad)} unexpected" + (f": {named}" if named else ""),
        {
            "exits": [asdict(e) for e in exits],
            "unexpected": [dict(asdict(e), stderr_tail=stderr_tails.get(e.name, "")) for e in bad],
        },
    )


def _exit_story(exit_: Any) -> str:
    if exit_.how.startswith("sigkill after"):
        return (
            f"did not exit within the stop grace period after SIGTERM, so it was killed "
            f"(exit code {exit_.code})"
        )
    if exit_.how == "sigterm":
        return f"exited with code {exit_.code} after SIGTERM (0 expected)"
    return f"exited on its own with code {exit_.code} while it should have run"


def faults(records: Sequence[Mapping[str, Any]]) -> Check:
    """Every scheduled fault was applied; a fault not applied is named with the reason."""
    missed = [r for r in records if not r.get("applied")]
    late = [r for r in records if r.get("applied") and r.get("late_s", 0) >= 1.0]
    # Applied, but what should follow did not (a status board nobody repaired).
    problems = [r for r in records if r.get("applied") and r.get("problem")]
    summary = f"{len(records) - len(missed)} of {len(records)} scheduled faults applied"
    if late:
        summary += f", {len(late)} late by 1 s or more (target restarting or slow machine)"
    if missed:
        summary += "; not applied: " + "; ".join(
            f"#{r['index']} {r['kind']} {r['target']}: {r.get('reason', 'no reason recorded')}"
            for r in missed[:FIRST]
        )
    if problems:
        summary += "; " + "; ".join(
            f"#{r['index']} {r['kind']}: {r['problem']}" for r in problems[:FIRST]
        )
    return Check(
        "faults",
        not missed and not problems,
        summary,
        {"faults": list(records), "not_applied": missed, "problems": problems},
    )


def threshold(name: str, measured: float | None, limit: float, *, upper: bool) -> Check:
    """An `[expect]` threshold: measured <= limit (upper) or >= limit (lower)."""
    if measured is None:
        return Check(f"expect.{name}", False, f"{name}: not measured in this run", {"limit": limit})
    ok = measured <= limit if upper else measured >= limit
    sign = "<=" if upper else ">="
    return Check(
        f"expect.{name}",
        ok,
        f"{name}: {measured:g} (expected {sign} {limit:g})",
        {"measured": measured, "limit": limit},
    )


def settings(events: Mapping[str, Sequence[Event]], topology: Topology) -> Check:
    """What each reference process had on its connections equals the topology's settings.

    Judged per `settings` event (read back from SQLite by the process, `reference.access`), by
    the role's grant in the topology: an owner's journal_mode, synchronous and busy_timeout, a
    reader's busy_timeout and query_only. A busy_timeout the process declared (with a reason) is
    accepted and listed. A process that announced `ready` but recorded no settings fails as
    "not observed": nothing shows what it had.
    """
    running = sorted({n for n, evs in events.items() for e in evs if e.get("op") == "ready"})
    records = [(n, e) for n, evs in events.items() for e in evs if e.get("op") == "settings"]
    found: dict[tuple[str, str, str, Any], dict[str, Any]] = {}
    declared: dict[tuple[str, str, Any], dict[str, Any]] = {}
    for name, e in records:
        db = str(e.get("db"))
        spec = topology.databases.get(db)
        grant = topology.grants.get(str(e.get("role")), {}).get(db)
        # Not through the access manager: a database or role the topology does not know.
        expected: dict[str, Any] = {"grant": "rw or ro"}
        if spec is not None and grant == "rw":
            expected = {
                "journal_mode": spec.journal_mode,
                "synchronous": spec.synchronous,
                "busy_timeout_ms": spec.busy_timeout_ms,
            }
        elif spec is not None and grant == "ro":
            expected = {"busy_timeout_ms": spec.busy_timeout_ms, "query_only": True}
        for setting, want in expected.items():
            actual = e.get(setting)
            if actual == want:
                continue
            if setting == "busy_timeout_ms" and actual == e.get("declared_busy_timeout_ms"):
                declared.setdefault(
                    (name, db, actual),
                    {
                        "process": name,
                        "db": db,
                        "busy_timeout_ms": actual,
                        "expected": want,
                        "reason": e.get("declared_reason"),
                    },
                )
                continue
            entry = found.setdefault(
                (name, db, setting, actual),
                {
                    "process": name,
                    "pid": e.get("pid"),
                    "db": db,
                    "file": e.get("file"),
                    "setting": setting,
                    "expected": want,
                    "actual": actual,
                    "when": e.get("when"),
                    "count": 0,
                },
            )
            entry["count"] += 1
    observed = {name for name, _ in records}
    not_observed = [name for name in running if name not in observed]
    mismatches = list(found.values())
    problems = [
        f"{m['process']} {m['db']} {m['setting']}: {m['actual']}, expected {m['expected']} "
        f"(first at {m['when']})"
        for m in mismatches
    ] + [f"{name}: not observed (it recorded no settings)" for name in not_observed]
    allowed = [
        f"{d['process']} {d['db']} busy_timeout_ms {d['busy_timeout_ms']}"
        for d in declared.values()
    ]
    if problems:
        counts = [f"{len(mismatches)} settings differ from the topology"] if mismatches else []
        counts += [f"{len(not_observed)} processes not observed"] if not_observed else []
        summary = ", ".join(counts) + ": " + "; ".join(problems[:FIRST])
    elif not running:
        summary = "no reference process ran: no settings to compare"
    else:
        summary = (
            f"{len(records)} settings records from {len(observed)} processes "
            f"({', '.join(sorted(observed))}) equal the topology"
        )
        if allowed:
            summary += f"; {len(allowed)} declared: " + ", ".join(allowed[:FIRST])
    return Check(
        "settings",
        not problems,
        summary,
        {
            "records": len(records),
            "by_process": dict(Counter(name for name, _ in records)),
            "mismatches": mismatches[: FIRST * 4],
            "declared": list(declared.values()),
            "not_observed": not_observed,
        },
    )
