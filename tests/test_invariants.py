"""The user's own correctness rules (harness.runs.invariants): the `[[invariant]]` table's
validation, evaluation on real SQLite files (read-only, writes refused), the monitor's periodic
and final checks, and the `invariants` check built from them.

Everything runs inside this process (the monitor's thread included): no test here starts one.
No assert is on elapsed time: the monitor test asserts what was recorded, waiting as long as it
takes for it to be recorded.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from harness.runs.checks import Check
from harness.runs.invariants import (
    BUSY_TIMEOUT_S,
    Invariant,
    InvariantMonitor,
    InvariantResult,
    database_problems,
    evaluate,
    invariants_check,
    named,
)

# How long a test waits for the monitor's thread to record something; reached only when broken.
PATIENCE_S = 60.0


@pytest.fixture
def orders(tmp_path: Path) -> Path:
    """An orders database (rollback journal, so a writer can lock readers out): 3 orders, none
    overfilled."""
    path = tmp_path / "orders.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=delete")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INT, filled_qty INT, note)")
    conn.execute("CREATE INDEX orders_by_qty ON orders (qty)")
    conn.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?)",
        [(1, 10, 10, "done"), (2, 5, 2, "partial"), (3, 7, 0, None)],
    )
    conn.close()
    return path


def _write(path: Path, sql: str, *args: Any) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


def _inv(sql: str, **bounds: Any) -> Invariant:
    return Invariant.model_validate({"name": "check", "database": "orders", "sql": sql, **bounds})


def _run(path: Path, sql: str, **bounds: Any) -> InvariantResult:
    return evaluate(_inv(sql, **bounds), path, at_s=1.5)


OVERFILLED = "SELECT count(*) FROM orders WHERE filled_qty > qty"


# --- the model --------------------------------------------------------------------------------


def test_each_bound_validates() -> None:
    assert _inv(OVERFILLED, equals=0).expected == "0"
    assert _inv("SELECT count(*) FROM orders", min=1).expected == ">= 1"
    assert _inv("SELECT max(qty) FROM orders", max=100.5).expected == "<= 100.5"
    assert _inv("SELECT avg(qty) FROM orders", min=1, max=10).expected == "between 1 and 10"
    assert _inv("PRAGMA integrity_check", equals="ok").expected == "'ok'"
    assert _inv(OVERFILLED, equals=0, every=0.1).every == 0.1


def _errors(raw: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        Invariant.model_validate({"database": "orders", "sql": OVERFILLED, **raw})
    return [
        (".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, "))
        for e in caught.value.errors()
    ]


@pytest.mark.parametrize(
    ("raw", "loc", "message"),
    [
        ({"equals": 0, "sql": ""}, "sql", "must not be empty; give a query returning one value"),
        ({"equals": 0, "sql": "  \n"}, "sql", "must not be empty"),
        ({}, "", "give a bound: equals, min, max, or min and max together"),
        ({"every": 2}, "", "give a bound: equals, min, max, or min and max together"),
        ({"equals": 0, "min": 1}, "", "equals: give either equals or min/max, not both"),
        ({"equals": 0, "max": 1}, "", "equals: give either equals or min/max, not both"),
        ({"min": 5, "max": 3}, "", "min: 5 is greater than max 3"),
        ({"equals": True}, "equals", "use 1 or 0 for true or false"),
        ({"min": False}, "min", "use 1 or 0 for true or false"),
        ({"min": "1"}, "min", "a number"),
        ({"equals": [0]}, "equals", "a number or a text"),
        ({"equals": 0, "every": 0.05}, "every", "greater than or equal to 0.1"),
        ({"equals": 0, "every": 3601}, "every", "less than or equal to 3600"),
        ({"equals": 0, "name": ""}, "name", "at least 1 character"),
        ({"equals": 0, "database": ""}, "database", "at least 1 character"),
        ({"equals": 0, "query": "x"}, "query", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_invariant_names_the_field_and_the_fix(
    raw: dict[str, Any], loc: str, message: str
) -> None:
    errors = _errors(raw)
    assert len(errors) == 1, errors
    assert errors[0][0] == loc
    assert message in errors[0][1], errors


def test_a_missing_database_or_sql_is_required() -> None:
    with pytest.raises(ValidationError) as caught:
        Invariant.model_validate({"equals": 0})
    assert sorted(str(e["loc"][0]) for e in caught.value.errors()) == ["database", "sql"]


def test_unnamed_invariants_are_named_by_their_place() -> None:
    first = Invariant(database="orders", sql=OVERFILLED, equals=0)
    second = Invariant(name="no lost orders", database="orders", sql=OVERFILLED, equals=0)
    assert [i.name for i in named([first, second, first])] == [
        "invariant[0]",
        "no lost orders",
        "invariant[2]",
    ]
    with pytest.raises(ValueError) as caught:
        named([second, first, second])
    assert str(caught.value) == (
        "invariant[2].name: 'no lost orders' is also the name of invariant[0]; names must be unique"
    )


def test_database_problems_name_the_known_databases() -> None:
    invariants = [
        Invariant(database="orders", sql=OVERFILLED, equals=0),
        Invariant(database="order", sql=OVERFILLED, equals=0),
    ]
    assert database_problems(invariants, ["orders", "fills"]) == [
        "invariant[1].database: 'order' is not a database of the topology; its databases are "
        "orders, fills"
    ]


# --- evaluation ------------------------------------------------------------------------------


def test_equals_holds_and_fails(orders: Path) -> None:
    held = _run(orders, OVERFILLED, equals=0)
    assert (held.outcome, held.value, held.detail, held.ok) == ("held", 0, "= 0", True)
    assert (held.name, held.database, held.at_s, held.final) == ("check", "orders", 1.5, True)
    _write(orders, "UPDATE orders SET filled_qty = 99 WHERE id IN (2, 3)")
    failed = _run(orders, OVERFILLED, equals=0)
    assert (failed.outcome, failed.value, failed.detail, failed.ok) == (
        "failed",
        2,
        "= 2, expected 0",
        False,
    )


@pytest.mark.parametrize(
    ("bounds", "outcome", "detail"),
    [
        ({"min": 3}, "held", "= 3"),
        ({"min": 4}, "failed", "= 3, expected >= 4"),
        ({"max": 3}, "held", "= 3"),
        ({"max": 2.5}, "failed", "= 3, expected <= 2.5"),
        ({"min": 1, "max": 3}, "held", "= 3"),
        ({"min": 4, "max": 9}, "failed", "= 3, expected between 4 and 9"),
        ({"equals": 3.0}, "held", "= 3"),
    ],
)
def test_min_and_max(orders: Path, bounds: dict[str, Any], outcome: str, detail: str) -> None:
    result = _run(orders, "SELECT count(*) FROM orders", **bounds)
    assert (result.outcome, result.detail) == (outcome, detail)


def test_floats_compare_exactly(orders: Path) -> None:
    result = _run(orders, "SELECT 0.1 + 0.2", equals=0.3)
    assert result.detail == "= 0.30000000000000004, expected 0.3"


def test_text_equals(orders: Path) -> None:
    assert _run(orders, "PRAGMA integrity_check", equals="ok").outcome == "held"
    result = _run(orders, "SELECT note FROM orders WHERE id = 2", equals="done")
    assert result.detail == "= 'partial', expected 'done'"


@pytest.mark.parametrize(
    ("sql", "bounds", "detail"),
    [
        ("SELECT count(*) FROM orders WHERE qty < 0", {"equals": 1}, "= 0, expected 1"),
        ("SELECT id FROM orders WHERE qty < 0", {"equals": 0}, "returned no rows, expected 0"),
        (
            "SELECT qty, filled_qty FROM orders",
            {"equals": 0},
            "returned 2 columns (qty, filled_qty); the query must return one value",
        ),
        (
            "SELECT note FROM orders WHERE id = 1",
            {"min": 1},
            "= 'done' (text, not a number), expected >= 1",
        ),
        ("SELECT '0'", {"equals": 0}, "= '0' (text, not a number), expected 0"),
        ("SELECT 1", {"equals": "ok"}, "= 1 (a number, not text), expected 'ok'"),
        ("SELECT note FROM orders WHERE id = 3", {"equals": 0}, "= NULL, expected 0"),
        (
            "SELECT note FROM orders WHERE id = 3",
            {"max": 5},
            "= NULL (not a number), expected <= 5",
        ),
        ("SELECT x'00ff'", {"equals": 0}, "= a blob of 2 bytes, expected 0"),
    ],
)
def test_a_value_that_cannot_hold_explains_itself(
    orders: Path, sql: str, bounds: dict[str, Any], detail: str
) -> None:
    result = _run(orders, sql, **bounds)
    assert (result.outcome, result.detail) == ("failed", detail)


def test_the_first_row_counts(orders: Path) -> None:
    result = _run(orders, "SELECT qty FROM orders ORDER BY id", equals=10)
    assert (result.outcome, result.value) == ("held", 10)


def test_a_missing_database_fails_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "orders.db"
    result = evaluate(_inv(OVERFILLED, equals=0), missing, at_s=None)
    assert (result.outcome, result.detail) == ("failed", f"database file {missing} does not exist")
    assert not missing.parent.exists()
    result = evaluate(_inv(OVERFILLED, equals=0), tmp_path, at_s=None)
    assert result.detail == f"database file {tmp_path} is not a file"


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "orders.db"
    junk.write_bytes(b"not sqlite" * 100)
    result = evaluate(_inv(OVERFILLED, equals=0), junk, at_s=None)
    assert (result.outcome, result.detail) == ("failed", "SQL error: file is not a database")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT count(*) FROM orderz", "SQL error: no such table: orderz"),
        ("SELEC 1", 'SQL error: near "SELEC": syntax error'),
        ("SELECT 1; SELECT 2", "SQL error: You can only execute one statement at a time."),
        ("-- nothing", "returned no columns (not a query); give a SELECT of one value"),
    ],
)
def test_an_sql_error_fails_with_sqlites_message(orders: Path, sql: str, message: str) -> None:
    result = _run(orders, sql, equals=0)
    assert (result.outcome, result.detail, result.value) == ("failed", message, None)


def test_a_path_with_uri_characters(tmp_path: Path, orders: Path) -> None:
    odd = tmp_path / "a dir?mode=rwc#x" / "orders %20.db"
    odd.parent.mkdir()
    orders.rename(odd)
    assert evaluate(_inv(OVERFILLED, equals=0), odd, at_s=None).outcome == "held"


def _fingerprint(path: Path) -> tuple[str, list[str]]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(
        p.name for p in path.parent.iterdir()
    )


@pytest.mark.parametrize(
    ("sql", "tried"),
    [
        ("INSERT INTO orders VALUES (9, 1, 1, 'x')", "INSERT on orders"),
        ("UPDATE orders SET qty = 0 RETURNING qty", "UPDATE on orders"),
        ("DELETE FROM orders", "DELETE on orders"),
        ("DROP TABLE orders", "DROP TABLE on orders"),
        ("ALTER TABLE orders ADD COLUMN z", "ALTER TABLE on orders"),
        ("CREATE TABLE t (a)", "CREATE TABLE on t"),
        ("CREATE TEMP TABLE t (a)", "CREATE TEMP TABLE on t"),
        ("PRAGMA user_version = 5", "PRAGMA user_version = 5"),
        ("PRAGMA journal_mode = wal", "PRAGMA journal_mode = wal"),
        ("PRAGMA query_only = 0", "PRAGMA query_only = 0"),
        ("ATTACH 'other.db' AS other", "ATTACH other.db"),
        ("VACUUM", "VACUUM"),
        ("REINDEX", "REINDEX"),
        ("ANALYZE", "CREATE TABLE on sqlite_stat1"),
        ("DELETE FROM sqlite_master", "SQLite: table sqlite_master may not be modified"),
        ("BEGIN IMMEDIATE", "BEGIN"),
    ],
)
def test_an_invariant_that_would_write_is_refused(
    orders: Path, sql: str, tried: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(orders.parent)  # where an ATTACH would create its file
    before = _fingerprint(orders)
    result = _run(orders, sql, equals=0)
    assert result.outcome == "failed"
    assert result.detail.startswith("refused: an invariant may only read ("), result.detail
    assert tried in result.detail
    assert _fingerprint(orders) == before


def test_reads_of_every_kind_are_allowed(orders: Path) -> None:
    recursive = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
        "SELECT sum(i) FROM n"
    )
    assert _run(orders, recursive, equals=15).outcome == "held"
    assert _run(orders, "SELECT count(*) FROM sqlite_master", equals=2).outcome == "held"
    table_info = "SELECT count(*) FROM pragma_table_info('orders')"
    assert _run(orders, table_info, equals=4).outcome == "held"
    assert _run(orders, "PRAGMA quick_check", equals="ok").outcome == "held"
    assert _run(orders, "PRAGMA user_version", equals=0).outcome == "held"
    assert _run(orders, "SELECT abs(-3) + length('ab')", equals=5).outcome == "held"


def test_a_wal_database_is_read_beside_its_writer(orders: Path) -> None:
    """In WAL mode a reader never waits for the writer: it reads the last commit."""
    _write(orders, "PRAGMA journal_mode=wal")
    writer = sqlite3.connect(orders, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE orders SET filled_qty = 99")
        assert _run(orders, OVERFILLED, equals=0).outcome == "held"
        writer.execute("COMMIT")
        assert _run(orders, OVERFILLED, equals=3).outcome == "held"
    finally:
        writer.close()


@pytest.fixture
def locked(orders: Path) -> Iterator[Path]:
    """The orders database with a writer holding its exclusive lock."""
    writer = sqlite3.connect(orders, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE orders SET qty = qty + 1")
    try:
        yield orders
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_busy_database_skips_a_periodic_check(locked: Path) -> None:
    result = evaluate(_inv(OVERFILLED, equals=0), locked, at_s=2.0, final=False)
    assert (result.outcome, result.ok, result.final) == ("skipped", True, False)
    assert result.detail == (
        f"skipped: the database stayed busy for {BUSY_TIMEOUT_S:g} s (a writer held its lock); "
        "checked again next period"
    )


def test_a_busy_database_fails_the_final_check(locked: Path) -> None:
    result = evaluate(_inv(OVERFILLED, equals=0), locked, at_s=9.0)
    assert (result.outcome, result.ok, result.final) == ("failed", False, True)
    assert result.detail == (
        f"could not be read: the database stayed busy for {BUSY_TIMEOUT_S:g} s (a writer held "
        "its lock)"
    )


@pytest.fixture
def crashed(tmp_path: Path) -> Path:
    """A rollback-journal database as a writer killed mid-transaction leaves it: changed pages
    in the file and a hot journal beside it, which only a writer may roll back."""
    live = tmp_path / "live" / "orders.db"
    live.parent.mkdir()
    writer = sqlite3.connect(live, isolation_level=None)
    writer.execute("PRAGMA journal_mode=delete")
    writer.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INT, filled_qty INT)")
    writer.executemany("INSERT INTO orders VALUES (?, 1, 1)", [(i,) for i in range(2000)])
    writer.execute("PRAGMA cache_size = 1")  # so the update spills pages into the file
    writer.execute("BEGIN")
    writer.execute("UPDATE orders SET filled_qty = 2")
    crash = tmp_path / "crash" / "orders.db"
    crash.parent.mkdir()
    crash.write_bytes(live.read_bytes())
    crash.with_name("orders.db-journal").write_bytes(
        live.with_name("orders.db-journal").read_bytes()
    )
    writer.execute("ROLLBACK")
    writer.close()
    return crash


def test_a_database_that_needs_a_writers_recovery_is_inconclusive(crashed: Path) -> None:
    before = _fingerprint(crashed)
    periodic = evaluate(_inv(OVERFILLED, equals=0), crashed, at_s=2.0, final=False)
    assert (periodic.outcome, periodic.detail) == (
        "skipped",
        "skipped: the database needs a recovery only a writer can make (a writer stopped in the "
        "middle of a transaction: SQLITE_READONLY_ROLLBACK); checked again next period",
    )
    final = evaluate(_inv(OVERFILLED, equals=0), crashed, at_s=9.0)
    assert final.outcome == "failed"
    assert final.detail.startswith("could not be read: the database needs a recovery")
    assert _fingerprint(crashed) == before


# --- the check -------------------------------------------------------------------------------


def _result(
    name: str, outcome: str, value: Any, *, at_s: float, final: bool = False, detail: str = ""
) -> InvariantResult:
    return InvariantResult(
        name=name,
        database="orders",
        at_s=at_s,
        final=final,
        outcome=outcome,  # type: ignore[arg-type]
        value=value,
        detail=detail or f"= {value}",
        expected="0",
    )


def test_the_check_summarises_in_one_line() -> None:
    results = [_result("a", "held", 0, at_s=t) for t in range(7)]
    results += [_result("b", "held", 0, at_s=t) for t in range(7)]
    results += [
        _result("no lost orders", "held", 0, at_s=2.0),
        _result("no lost orders", "failed", 3, at_s=4.2, detail="= 3, expected 0"),
        _result("no lost orders", "failed", 4, at_s=6.0, detail="= 4, expected 0"),
    ]
    results += [_result(n, "held", 0, at_s=10.0, final=True) for n in ("a", "b", "no lost orders")]
    check = invariants_check(results)
    assert isinstance(check, Check) and check.name == "invariants" and not check.ok
    assert check.summary == (
        "3 invariants: 2 held at the end and at 14 periodic checks, 1 failed: 'no lost orders' "
        "= 3, expected 0 at 4.2 s (2 of 4 checks failed)"
    )
    lost = check.evidence["invariants"][2]
    assert lost["name"] == "no lost orders" and lost["checks"] == 4 and lost["failed"] == 2
    assert lost["first_failure"]["value"] == 3 and lost["first_failure"]["at_s"] == 4.2
    assert lost["final"]["outcome"] == "held" and lost["last_value"] == 0


def test_all_held() -> None:
    results = [
        _result("a", "held", 0, at_s=1.0),
        _result("a", "skipped", None, at_s=2.0, detail="skipped: busy"),
        _result("a", "held", 0, at_s=3.0, final=True),
    ]
    check = invariants_check(results)
    assert check.ok
    assert check.summary == (
        "1 invariant: 1 held at the end and at 1 periodic check (1 periodic check skipped: "
        "database busy)"
    )
    assert invariants_check([_result("a", "held", 0, at_s=3.0, final=True)]).summary == (
        "1 invariant: 1 held at the end"
    )


def test_a_final_failure_and_a_missing_final() -> None:
    results = [
        _result("a", "held", 0, at_s=1.0),
        _result("b", "failed", None, at_s=5.0, final=True, detail="returned no rows, expected 0"),
    ]
    check = invariants_check(results)
    assert not check.ok
    assert check.summary == (
        "2 invariants: 0 held, 2 failed: 'a' was not checked at the end; 'b' returned no rows, "
        "expected 0 at the end"
    )


def test_a_declared_invariant_without_results_was_not_checked() -> None:
    declared = named(
        [
            Invariant(name="a", database="orders", sql=OVERFILLED, equals=0),
            Invariant(database="fills", sql="SELECT 1", min=1),
        ]
    )
    check = invariants_check([_result("a", "held", 0, at_s=3.0, final=True)], declared)
    assert not check.ok
    assert check.summary == (
        "2 invariants: 1 held at the end, 1 failed: 'invariant[1]' was not checked at the end"
    )
    missing = check.evidence["invariants"][1]
    assert (missing["database"], missing["sql"], missing["checks"]) == ("fills", "SELECT 1", 0)
    assert check.evidence["invariants"][0]["sql"] == OVERFILLED


def test_no_invariants() -> None:
    check = invariants_check([])
    assert check.ok and check.summary == "no invariants declared"


# --- the monitor -----------------------------------------------------------------------------


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, "the monitor recorded nothing in time"
        time.sleep(0.02)


def test_the_monitor_records_a_periodic_failure_that_is_gone_at_the_end(orders: Path) -> None:
    _write(orders, "UPDATE orders SET filled_qty = 99 WHERE id = 2")  # bad before the start
    lost = Invariant(name="no lost orders", database="orders", sql=OVERFILLED, equals=0, every=0.1)
    count = Invariant(database="orders", sql="SELECT count(*) FROM orders", min=1)
    monitor = InvariantMonitor([lost, count], {"orders": orders}.__getitem__)
    monitor.start()
    try:
        _until(lambda: any(r.outcome == "failed" for r in monitor.results))
        _write(orders, "UPDATE orders SET filled_qty = 2 WHERE id = 2")  # good before the end
    finally:
        monitor.stop()
    final = monitor.final()
    assert [(r.name, r.outcome, r.final) for r in final] == [
        ("no lost orders", "held", True),
        ("invariant[1]", "held", True),
    ]
    assert monitor.final() == final  # once
    periodic = [r for r in monitor.results if not r.final]
    assert {r.name for r in periodic} == {"no lost orders"}  # only the one with `every`
    first = periodic[0]
    assert (first.outcome, first.value, first.detail) == ("failed", 1, "= 1, expected 0")
    assert first.at_s is not None and first.at_s > 0
    check = monitor.check()
    assert not check.ok
    assert "1 failed: 'no lost orders' = 1, expected 0 at " in check.summary
    assert check.summary.startswith("2 invariants: 1 held at the end")


def test_the_monitor_with_nothing_periodic_checks_at_the_end(orders: Path) -> None:
    inv = Invariant(database="orders", sql=OVERFILLED, equals=0)
    with InvariantMonitor([inv], lambda name: orders) as monitor:
        pass
    assert monitor.results == []
    assert [r.outcome for r in monitor.final()] == ["held"]
    assert monitor.check().ok


def test_the_monitor_records_an_unknown_database(orders: Path) -> None:
    inv = Invariant(database="fills", sql=OVERFILLED, equals=0, every=0.1)
    monitor = InvariantMonitor([inv], {"orders": orders}.__getitem__)
    with monitor:
        _until(lambda: bool(monitor.results))
    result = monitor.results[0]
    assert (result.outcome, result.final) == ("failed", False)
    assert result.detail == "cannot locate database 'fills': KeyError: 'fills'"
    assert not monitor.check().ok
