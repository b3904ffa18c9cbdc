"""The text `splitdb watch` prints when the command ends: connections, busy and locked errors
(the most frequent and the longest waits), writes per database file, reads. Never an empty
success: when no Python process ran the probe, it says the command was not observed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.probe.observed import DbError, Observed, Writes

TOP = 10  # lines per list; the rest are counted
STMT_CHARS = 90


def _stmt(stmt: str | None) -> str:
    if stmt is None:
        return "(an uninstrumented connection: statement text unknown)"
    return stmt if len(stmt) <= STMT_CHARS else stmt[: STMT_CHARS - 1] + "…"


def _ms(us: int) -> str:
    if us >= 1_000_000:
        return f"{us / 1e6:.2f} s"
    return f"{us / 1000:.1f} ms" if us >= 100 else f"{us} us"


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"1 {word}"
    return f"{n:,} {word}{'es' if word.endswith('s') else 's'}"


@dataclass
class _ErrorGroup:
    outcome: str
    db: str
    stmt: str | None
    kind: str
    codes: set[str]
    count: int = 0
    dur_us: int = 0
    max_us: int = 0


def _group_errors(errors: Iterable[DbError]) -> list[_ErrorGroup]:
    groups: dict[tuple[str, str, str | None], _ErrorGroup] = {}
    for error in errors:
        key = (error.outcome, error.db, error.stmt)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _ErrorGroup(
                error.outcome, error.db, error.stmt, error.kind, set()
            )
        group.count += error.count
        group.dur_us += error.dur_us
        group.max_us = max(group.max_us, error.max_us, error.dur_us)
        group.codes.add(error.name or str(error.code))
    return sorted(groups.values(), key=lambda g: (-g.count, -g.max_us))


def _more(lines: list[str], total: int, shown: int, what: str) -> None:
    if total > shown:
        lines.append(f"    ... and {_plural(total - shown, what)} more")


def summary_lines(observed: Observed, *, command: str, ended: str) -> list[str]:
    """The summary, line by line (no trailing newlines)."""
    lines = [f"splitdb watch: {command} {ended}"]
    if not observed.started:
        lines.append("  no Python process started with the probe (not observed)")
        lines.append(
            "  (a program that is not Python, a Python older than 3.10, or one run with "
            "-I, -E or -S, which ignore PYTHONPATH)"
        )
        return lines
    statements = f", {_plural(observed.statements, 'statement')}" if observed.statements else ""
    pids = ", ".join(str(p) for p in sorted(observed.pids)[:TOP])
    lines.append(
        f"  observed: {_plural(len(observed.pids), 'Python process')} (pid {pids}){statements}"
    )
    _connections(observed, lines)
    _busy(observed, lines)
    _writes(observed, lines)
    _other_errors(observed, lines)
    if observed.reads:
        reads = ", ".join(f"{db} {n:,}" for db, n in sorted(observed.reads.items()))
        lines.append(f"  reads: {reads}")
    if observed.skipped_lines:
        lines.append(
            f"  note: {_plural(observed.skipped_lines, 'torn event line')} skipped "
            "(a process killed while writing one)"
        )
    return lines


def _connections(observed: Observed, lines: list[str]) -> None:
    if not observed.connections:
        lines.append("  connections: none (no sqlite3 connection was opened)")
        return
    groups: dict[tuple[str, str, str, bool], int] = {}
    for c in observed.connections:
        key = (c.db, c.mode or "?", c.journal_mode or "?", c.instrumented)
        groups[key] = groups.get(key, 0) + c.count
    lines.append(f"  connections ({sum(groups.values()):,}):")
    width = max(len(db) for db, _, _, _ in groups)
    for (db, mode, journal, instrumented), count in sorted(groups.items())[:TOP]:
        note = "" if instrumented else "  uninstrumented: writes counted, errors not seen"
        lines.append(f"    {db:<{width}}  mode {mode:<9} journal {journal:<8} x{count:,}{note}")
    _more(lines, len(groups), TOP, "connection kind")


def _busy(observed: Observed, lines: list[str]) -> None:
    groups = _group_errors(observed.busy_errors())
    if not groups:
        lines.append("  busy/locked errors: none")
        return
    total = sum(g.count for g in groups)
    lines.append(f"  busy/locked errors ({total:,}), most frequent first:")
    for g in groups[:TOP]:
        lines.append(
            f"    {g.outcome:<6} {g.count:>7,}x  {g.db}  {_stmt(g.stmt)}  ({g.kind}; "
            f"{'/'.join(sorted(g.codes))}; waited up to {_ms(g.max_us)}, {_ms(g.dur_us)} in all)"
        )
    _more(lines, len(groups), TOP, "statement")
    slowest = max(groups, key=lambda g: g.max_us)
    if len(groups) > 1 and slowest is not groups[0]:
        lines.append(f"    longest wait: {_ms(slowest.max_us)} on {_stmt(slowest.stmt)}")


def _writes(observed: Observed, lines: list[str]) -> None:
    by_db: dict[str, list[Writes]] = {}
    for w in observed.writes.values():
        by_db.setdefault(w.db, []).append(w)
    if not by_db:
        lines.append("  writes: none")
        return
    lines.append(f"  writes ({_plural(len(by_db), 'file')}):")
    for db, writes in sorted(by_db.items()):
        executions = sum(w.count for w in writes)
        lines.append(f"    {db}  ({_plural(executions, 'execution')})")
        writes.sort(key=lambda w: (-w.count, -w.max_us))
        for w in writes[:TOP]:
            schema = "" if w.schema == "main" else f"[{w.schema}] "
            lines.append(
                f"      {w.count:>8,}x {w.rows:>10,} rows  max {_ms(w.max_us):>9}  "
                f"{schema}{_stmt(w.stmt)}"
            )
        _more(lines, len(writes), TOP, "statement")
    if len(observed.writes) > 1:
        lines.append("  slowest writes (longest single execution; includes busy-handler waits):")
        for w in sorted(observed.writes.values(), key=lambda w: -w.max_us)[:3]:
            lines.append(f"    {_ms(w.max_us):>9}  {w.db}  {_stmt(w.stmt)}")


def _other_errors(observed: Observed, lines: list[str]) -> None:
    groups = _group_errors(e for e in observed.errors if e.outcome == "error")
    if not groups:
        return
    total = sum(g.count for g in groups)
    lines.append(f"  other sqlite3 errors ({total:,}):")
    for g in groups[:TOP]:
        lines.append(f"    {g.count:>7,}x  {'/'.join(sorted(g.codes))}  {g.db}  {_stmt(g.stmt)}")
    _more(lines, len(groups), TOP, "statement")
