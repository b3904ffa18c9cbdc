"""The user's own correctness rules: `[[invariant]]` queries checked on the run's databases.

A system under test knows what "correct" means for its own data better than any generic check:

    [[invariant]]
    name = "no lost orders"        # optional: 'invariant[0]' from its place otherwise
    database = "orders"            # a database of the topology
    sql = "SELECT count(*) FROM orders WHERE filled_qty > qty"
    equals = 0                     # or min, or max, or min and max together
    every = 2.0                    # optional: also every 2 s during the run (at least 0.1)

The query's first row must have one column; that value is compared: `equals` with a number or
a text (numbers compare by value, so 3 equals 3.0, and floats exactly: 0.1 + 0.2 is not 0.3),
`min`/`max` (inclusive) with numbers only. Every invariant is checked once at the end of the run
(`InvariantMonitor.final`); one with `every` is also checked during the run, every `every` seconds
from the monitor's start, in a background thread.

A check can never change the user's database: the file is opened read-only (a `mode=ro` URI,
which cannot create a missing file either), with `query_only` on, and an authorizer lets through
nothing but reads (SELECT, reading tables, functions, recursive CTEs and the read-only pragmas in
READ_PRAGMAS); anything else fails the invariant with "refused: an invariant may only read".

Nothing about a bad query or a bad value raises: no rows, several columns, a text where a
number is needed, a missing file, an SQL error each make a failed result that says so. A
database that cannot be read for now is inconclusive: one that stays busy for BUSY_TIMEOUT_S (a
writer holding its lock, possible in rollback journal modes), or one that needs a recovery only
a writer can make (a hot journal left by a writer killed mid-transaction). A periodic check then
is skipped and tried again next period, while the final check fails, since the end of a run is
the one reading that must happen. A query that runs longer than QUERY_LIMIT_S is stopped and
fails the invariant.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.runs.checks import Check

BUSY_TIMEOUT_S = 1.0
QUERY_LIMIT_S = 10.0
MIN_EVERY_S = 0.1
MAX_EVERY_S = 3600.0

# Pragmas that only read, with or without an argument (a table name, a row limit).
READ_PRAGMAS = frozenset(
    {
        "integrity_check",
        "quick_check",
        "foreign_key_check",
        "foreign_key_list",
        "index_info",
        "index_list",
        "index_xinfo",
        "table_info",
        "table_list",
        "table_xinfo",
        "collation_list",
        "compile_options",
        "database_list",
        "function_list",
        "module_list",
        "pragma_list",
        "data_version",
        "freelist_count",
        "page_count",
    }
)
# Pragmas that read without an argument and set with one: allowed only without.
READ_UNLESS_SET_PRAGMAS = frozenset(
    {
        "application_id",
        "auto_vacuum",
        "encoding",
        "journal_mode",
        "page_size",
        "schema_version",
        "user_version",
    }
)

_READS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# SQLite asks about a write to its schema table on its way to a DDL action (CREATE TABLE asks
# INSERT on sqlite_master, then CREATE TABLE), and a table-valued pragma such as
# pragma_table_info('t') asks UPDATE on it while reading. Letting these through lets the DDL
# action itself be the one denied (a clearer message) and the pragma functions read; a write to
# the schema table itself is refused by SQLite, and the connection is read-only anyway.
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_temp_master", "sqlite_schema"})
_SCHEMA_WRITES = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})
_ACTIONS = {
    getattr(sqlite3, f"SQLITE_{name}"): name.replace("_", " ")
    for name in [
        *("CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE"),
        *("CREATE_TEMP_TRIGGER", "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW"),
        *("DROP_INDEX", "DROP_TABLE", "DROP_TEMP_INDEX", "DROP_TEMP_TABLE", "DROP_TEMP_TRIGGER"),
        *("DROP_TEMP_VIEW", "DROP_TRIGGER", "DROP_VIEW", "CREATE_VTABLE", "DROP_VTABLE"),
        *("INSERT", "UPDATE", "DELETE", "REINDEX", "ANALYZE"),
    ]
    if hasattr(sqlite3, f"SQLITE_{name}")
}

Value = int | float | str


def _not_a_bool(value: Any) -> None:
    if isinstance(value, bool):
        raise ValueError("use 1 or 0 for true or false (SQLite stores booleans as integers)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number (got {value!r})")


class Invariant(BaseModel):
    """One `[[invariant]]`: a query on a database, the bound its value must keep, and how often
    to check it during the run (`every`; None: only at the end)."""

    # Strict, as the scenario's models (harness/runs/scenario.py says why).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    database: Annotated[str, Field(min_length=1)]
    sql: str
    equals: int | float | str | None = None
    min: int | float | None = None
    max: int | float | None = None
    every: Annotated[float, Field(ge=MIN_EVERY_S, le=MAX_EVERY_S)] | None = None

    @field_validator("sql")
    @classmethod
    def _query(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "must not be empty; give a query returning one value, e.g. "
                "'SELECT count(*) FROM orders WHERE filled_qty > qty'"
            )
        return value

    @field_validator("equals", mode="before")
    @classmethod
    def _equals_type(cls, value: Any) -> Any:
        _not_a_bool(value)
        if value is not None and not isinstance(value, int | float | str):
            raise ValueError(f"must be a number or a text (got {value!r})")
        return value

    @field_validator("min", "max", mode="before")
    @classmethod
    def _bound_type(cls, value: Any) -> Any:
        _not_a_bool(value)
        if value is not None and not isinstance(value, int | float):
            raise ValueError(f"must be a number (got {value!r})")
        return value

    @model_validator(mode="after")
    def _one_bound(self) -> Invariant:
        ranged = self.min is not None or self.max is not None
        if self.equals is None and not ranged:
            raise ValueError("give a bound: equals, min, max, or min and max together")
        if self.equals is not None and ranged:
            raise ValueError("equals: give either equals or min/max, not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"min: {_show(self.min)} is greater than max {_show(self.max)}; swap them"
            )
        return self

    @property
    def expected(self) -> str:
        """The bound in words: '0', "'ok'", '>= 1', '<= 5', 'between 1 and 5'."""
        if self.equals is not None:
            return _show(self.equals)
        if self.min is not None and self.max is not None:
            return f"between {_show(self.min)} and {_show(self.max)}"
        if self.min is not None:
            return f">= {_show(self.min)}"
        return f"<= {_show(self.max)}"


def named(invariants: Sequence[Invariant]) -> tuple[Invariant, ...]:
    """Each invariant with a name: its own, or 'invariant[i]' after its place in the file.

    Results are kept by name, so names must be unique: ValueError says which clash, worded as a
    scenario error line.
    """
    out: list[Invariant] = []
    seen: dict[str, int] = {}
    for i, invariant in enumerate(invariants):
        name = invariant.name or f"invariant[{i}]"
        if name in seen:
            raise ValueError(
                f"invariant[{i}].name: {name!r} is also the name of invariant[{seen[name]}]; "
                "names must be unique"
            )
        seen[name] = i
        out.append(invariant if invariant.name else invariant.model_copy(update={"name": name}))
    return tuple(out)


def database_problems(invariants: Sequence[Invariant], databases: Collection[str]) -> list[str]:
    """Scenario error lines for invariants naming a database the topology does not have."""
    return [
        f"invariant[{i}].database: {inv.database!r} is not a database of the topology; its "
        f"databases are {', '.join(databases)}"
        for i, inv in enumerate(invariants)
        if inv.database not in databases
    ]


def _show(value: object) -> str:
    """A value as the summary shows it: 3, 0.30000000000000004, 'text', NULL, a blob."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"a blob of {len(value)} bytes"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


@dataclass(frozen=True)
class InvariantResult:
    """One evaluation of one invariant.

    `outcome` is 'held', 'failed', or 'skipped' (a periodic check that found the database busy;
    not a failure). `value` is what the query returned, when it returned one value that fits in
    JSON (None for NULL, no value, or a blob); `detail` says the rest after the name ('= 3,
    expected 0', 'returned no rows, expected 0'). `at_s` is seconds from the monitor's start;
    `final` marks the check at the end of the run.
    """

    name: str
    database: str
    at_s: float | None
    final: bool
    outcome: Literal["held", "failed", "skipped"]
    value: Value | None
    detail: str
    expected: str

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Guard:
    """The authorizer of an invariant's connection: reads pass, anything else is denied and
    remembered, so the failure can say what the query tried."""

    def __init__(self) -> None:
        self.denied: list[str] = []

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        if action in _READS:
            return sqlite3.SQLITE_OK
        if action in _SCHEMA_WRITES and arg1 in _SCHEMA_TABLES:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and arg1 is not None:
            name = arg1.lower()
            if name in READ_PRAGMAS or (name in READ_UNLESS_SET_PRAGMAS and arg2 is None):
                return sqlite3.SQLITE_OK
        self.denied.append(_action_text(action, arg1, arg2))
        return sqlite3.SQLITE_DENY


def _action_text(action: int, arg1: str | None, arg2: str | None) -> str:
    name = _ACTIONS.get(action, f"action {action}")
    if action == sqlite3.SQLITE_PRAGMA:
        return f"PRAGMA {arg1}" + (f" = {arg2}" if arg2 is not None else "")
    if action == sqlite3.SQLITE_TRANSACTION:
        return str(arg1)
    if action == sqlite3.SQLITE_SAVEPOINT:
        return f"SAVEPOINT {arg2}"
    if action == sqlite3.SQLITE_ATTACH:
        # VACUUM attaches a nameless database to copy into: that is its first step.
        return f"ATTACH {arg1}" if arg1 else "VACUUM"
    if action == sqlite3.SQLITE_DETACH:
        return f"DETACH {arg1}"
    if action == sqlite3.SQLITE_ALTER_TABLE:
        return f"ALTER TABLE on {arg2}"
    return f"{name} on {arg1}" if arg1 else name


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to `path` (a file URI: characters such as ? and # in the path
    are quoted, and a missing file is an error, never created)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


# Extended result codes: a read-only connection found a database that a writer must recover
# first (a hot rollback journal, or a WAL to recover), left by a writer that stopped mid-way.
_READONLY_ROLLBACK = sqlite3.SQLITE_READONLY | 3 << 8
_READONLY_RECOVERY = sqlite3.SQLITE_READONLY | 1 << 8


def _inconclusive(exc: sqlite3.Error) -> str | None:
    """Why the database could not be read just now, when a writer will change that: it is
    busy, or needs recovery only a writer can do. None for any other error."""
    code = getattr(exc, "sqlite_errorcode", 0)
    if code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return f"the database stayed busy for {BUSY_TIMEOUT_S:g} s (a writer held its lock)"
    if code in (_READONLY_ROLLBACK, _READONLY_RECOVERY):
        return (
            "the database needs a recovery only a writer can make (a writer stopped in the "
            f"middle of a transaction: {getattr(exc, 'sqlite_errorname', code)})"
        )
    return None


def _refused_by_sqlite(exc: sqlite3.Error) -> bool:
    """SQLite itself refused a write: the read-only connection, or a schema table."""
    code = getattr(exc, "sqlite_errorcode", 0)
    return code == sqlite3.SQLITE_READONLY or "may not be modified" in str(exc)


def evaluate(
    inv: Invariant, path: Path, *, at_s: float | None, final: bool = True
) -> InvariantResult:
    """Run the invariant's query on the database file at `path`, read-only, and compare.

    `final` says whether this is the check at the end of the run (a busy database fails it) or
    a periodic one (a busy database skips it). Never raises for anything about the database or
    the query: the result says what went wrong.
    """

    def result(
        outcome: Literal["held", "failed", "skipped"], detail: str, value: object = None
    ) -> InvariantResult:
        return InvariantResult(
            name=inv.name or "invariant",
            database=inv.database,
            at_s=at_s,
            final=final,
            outcome=outcome,
            value=value if isinstance(value, int | float | str) else None,
            detail=detail,
            expected=inv.expected,
        )

    path = Path(path)
    if not path.exists():
        return result("failed", f"database file {path} does not exist")
    if not path.is_file():
        return result("failed", f"database file {path} is not a file")
    guard = _Guard()
    stopped = False
    try:
        conn = _connect(path)
    except sqlite3.Error as exc:
        return result("failed", f"SQL error: {exc}")
    try:
        conn.set_authorizer(guard)
        started = time.monotonic()

        def too_long() -> int:
            nonlocal stopped
            stopped = time.monotonic() - started > QUERY_LIMIT_S
            return int(stopped)

        conn.set_progress_handler(too_long, 10_000)
        cursor = conn.execute(inv.sql)
        columns = [d[0] for d in cursor.description or ()]
        row = cursor.fetchone() if len(columns) == 1 else None
    except (sqlite3.Error, sqlite3.Warning) as exc:
        if guard.denied:
            return result(
                "failed", f"refused: an invariant may only read (the query tried {guard.denied[0]})"
            )
        if isinstance(exc, sqlite3.Error) and _refused_by_sqlite(exc):
            return result("failed", f"refused: an invariant may only read (SQLite: {exc})")
        if stopped:
            return result("failed", f"stopped: the query ran longer than {QUERY_LIMIT_S:g} s")
        why = _inconclusive(exc) if isinstance(exc, sqlite3.Error) else None
        if why is not None:
            if final:
                return result("failed", f"could not be read: {why}")
            return result("skipped", f"skipped: {why}; checked again next period")
        return result("failed", f"SQL error: {exc}")
    finally:
        conn.close()
    if not columns:
        return result("failed", "returned no columns (not a query); give a SELECT of one value")
    if len(columns) != 1:
        return result(
            "failed",
            f"returned {len(columns)} columns ({', '.join(columns)}); the query must return one "
            "value",
        )
    if row is None:
        return result("failed", f"returned no rows, expected {inv.expected}")
    value = row[0]
    held, note = _compare(inv, value)
    if held:
        return result("held", f"= {_show(value)}", value)
    return result("failed", f"= {_show(value)}{note}, expected {inv.expected}", value)


def _compare(inv: Invariant, value: object) -> tuple[bool, str]:
    """Whether `value` keeps the bound, and a note on its type when that is why it does not."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(inv.equals, str):
        if isinstance(value, str):
            return value == inv.equals, ""
        return False, " (a number, not text)" if number else ""
    if inv.equals is not None:
        if number:
            return value == inv.equals, ""
        return False, " (text, not a number)" if isinstance(value, str) else ""
    if not number:
        if isinstance(value, str):
            return False, " (text, not a number)"
        return False, " (not a number)" if value is None else ""
    assert isinstance(value, int | float)
    low = inv.min is None or value >= inv.min
    high = inv.max is None or value <= inv.max
    return low and high, ""


class InvariantMonitor:
    """Checks invariants during a run and at its end, and keeps every result with its time.

    `path_of(database)` gives a database's file (for a topology: `topology.file_of(name,
    data_dir)`); it is asked at every evaluation, and an error from it is a failed result.
    `start()` begins the periodic checks (each invariant with `every`, first `every` seconds
    after the start, in one background thread; a check that falls behind skips the periods it
    missed instead of bursting); `stop()` ends them, waiting for one in progress (at most
    BUSY_TIMEOUT_S + QUERY_LIMIT_S); `final()` stops and checks every invariant once more.
    """

    def __init__(
        self,
        invariants: Sequence[Invariant],
        path_of: Callable[[str], Path],
        *,
        started: float | None = None,
    ) -> None:
        self.invariants = named(invariants)
        self._path_of = path_of
        # at_s is counted from `started` (a time.monotonic() reading: the run's start) if given.
        self._t0 = time.monotonic() if started is None else started
        self._results: list[InvariantResult] = []
        self._final: list[InvariantResult] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def results(self) -> list[InvariantResult]:
        """Every result so far, periodic and final, in the order they were made."""
        with self._lock:
            return list(self._results)

    def start(self) -> None:
        """Begin the periodic checks (none if no invariant has `every`)."""
        periodic = [inv for inv in self.invariants if inv.every is not None]
        if periodic and self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._run, args=(periodic,), name="invariants", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """End the periodic checks; returns once the thread has finished."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def final(self) -> list[InvariantResult]:
        """Stop, then check every invariant once (the end of the run); the same list if asked
        again."""
        self.stop()
        if self._final is None:
            self._final = [self._evaluate(inv, final=True) for inv in self.invariants]
        return list(self._final)

    def check(self) -> Check:
        """The `invariants` check of everything recorded so far."""
        return invariants_check(self.results, self.invariants)

    def _run(self, periodic: list[Invariant]) -> None:
        due = [time.monotonic() + (inv.every or 0.0) for inv in periodic]
        while not self._stop.is_set():
            wait = min(due) - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
                continue
            for i, inv in enumerate(periodic):
                now = time.monotonic()
                if due[i] > now or self._stop.is_set():
                    continue
                self._evaluate(inv, final=False)
                every = inv.every or 0.0
                due[i] += every
                if due[i] <= time.monotonic():
                    due[i] = time.monotonic() + every

    def _evaluate(self, inv: Invariant, *, final: bool) -> InvariantResult:
        at_s = time.monotonic() - self._t0
        # Anything raised here would end the thread unseen: it is recorded as a failure instead.
        try:
            path = self._path_of(inv.database)
        except Exception as exc:
            made = _failure(inv, at_s, final, f"cannot locate database {inv.database!r}", exc)
        else:
            try:
                made = evaluate(inv, path, at_s=at_s, final=final)
            except Exception as exc:  # a bug, not a finding about the database
                made = _failure(inv, at_s, final, "could not be checked", exc)
        with self._lock:
            self._results.append(made)
        return made

    def __enter__(self) -> InvariantMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _failure(
    inv: Invariant, at_s: float, final: bool, what: str, exc: Exception
) -> InvariantResult:
    return InvariantResult(
        name=inv.name or "invariant",
        database=inv.database,
        at_s=at_s,
        final=final,
        outcome="failed",
        value=None,
        detail=f"{what}: {type(exc).__name__}: {exc}",
        expected=inv.expected,
    )


def _when(result: InvariantResult) -> str:
    if result.final:
        return "at the end"
    return f"at {result.at_s:.1f} s" if result.at_s is not None else "during the run"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def invariants_check(
    results: Iterable[InvariantResult], invariants: Sequence[Invariant] = ()
) -> Check:
    """The `invariants` check: ok iff every invariant was checked at the end and held there,
    and no periodic check failed (skipped ones do not count against it).

    The summary is one line: how many held (at the end and at how many periodic checks), and
    for each one that failed, its first failure. The evidence lists each invariant: its counts,
    its final result, its first failure and its last value. Given the (named) `invariants`, it
    also carries each one's SQL, and one with no result at all fails as not checked.
    """
    declared = {inv.name or "invariant": inv for inv in invariants}
    by_name: dict[str, list[InvariantResult]] = {name: [] for name in declared}
    for r in results:
        by_name.setdefault(r.name, []).append(r)
    if not by_name:
        return Check("invariants", True, "no invariants declared", {"invariants": []})
    held_names, failures, evidence = [], [], []
    held_periodic = skipped = 0
    for name, rs in by_name.items():
        finals = [r for r in rs if r.final]
        periodic = [r for r in rs if not r.final]
        bad = [r for r in rs if r.outcome == "failed"]
        read = [r for r in rs if r.outcome != "skipped"]
        skipped += sum(r.outcome == "skipped" for r in periodic)
        if finals and not bad:
            held_names.append(name)
            held_periodic += sum(r.outcome == "held" for r in periodic)
        elif bad:
            first = bad[0]
            more = f" ({len(bad)} of {len(rs)} checks failed)" if len(bad) > 1 else ""
            failures.append(f"{name!r} {first.detail} {_when(first)}{more}")
        else:
            failures.append(f"{name!r} was not checked at the end")
        inv = declared.get(name)
        evidence.append(
            {
                "name": name,
                "database": inv.database if inv else rs[0].database,
                "expected": inv.expected if inv else rs[0].expected,
                "sql": inv.sql if inv else None,
                "checks": len(rs),
                "periodic": len(periodic),
                "failed": len(bad),
                "skipped": sum(r.outcome == "skipped" for r in rs),
                "final": finals[-1].to_json() if finals else None,
                "first_failure": bad[0].to_json() if bad else None,
                "last_value": read[-1].value if read else None,
            }
        )
    held = f"{len(held_names)} held"
    if held_names:
        held += " at the end"
        if held_periodic:
            held += f" and at {_plural(held_periodic, 'periodic check')}"
    summary = f"{_plural(len(by_name), 'invariant')}: {held}"
    if failures:
        summary += f", {len(failures)} failed: " + "; ".join(failures)
    if skipped:
        summary += f" ({_plural(skipped, 'periodic check')} skipped: database busy)"
    return Check("invariants", not failures, summary, {"invariants": evidence})
