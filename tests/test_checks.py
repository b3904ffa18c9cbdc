"""The checks of a finished run (harness.runs.checks), each on what a run leaves behind.

Event files are written by reference.events (through reference.runtime where a reference process
would write them), databases are made by the access manager on the seed layout, and errors are
the real ones SQLite and the access manager raise, all inside this process: no test here starts
one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.runs import checks
from harness.runs.catalogue import PROBE_SETUP, Attempt, allowed, catalogue, perform
from harness.runs.checks import FIRST, Check
from harness.runs.faults import hold_records
from harness.runs.scenario import Fault
from harness.runs.supervisor import Exit
from reference.access import AccessManager, GuardedConnection, declare_busy_timeout, transaction
from reference.agent import run_cycle
from reference.analysis import SymbolState
from reference.errors import PermissionViolation, SplitdbError
from reference.events import Event, EventLog, outcome_of, read_events
from reference.runtime import Runtime
from reference.schema import TICK_COLUMNS
from reference.sqlite_store import SqliteAnalysisStore
from reference.status import StatusBoard
from reference.tickstore import INSERT_TICKS, insert_ticks
from reference.topology import Topology, load_topology, parse_topology
from tests.fixtures.broken_access import EveryoneWritesAccessManager

SEED = load_topology("seed")
LEGACY = load_topology("legacy")
BASE_MSC = 1_700_000_000_000
TickRow = tuple[Any, ...]


class RunDir:
    """A repeat's directory as `splitdb run` leaves it: `data/` and one event file per process."""

    def __init__(self, root: Path, topology: Topology = SEED, *, template: Path | None) -> None:
        self.topology = topology
        self.data_dir = root / "data"
        self.events_dir = root / "events"
        self.scratch = root / "scratch"
        self.scratch.mkdir(parents=True)
        self.logs: dict[str, EventLog] = {}
        self.runtimes: list[Runtime] = []
        if template is not None:
            shutil.copytree(template, self.data_dir)

    def log(self, name: str) -> EventLog:
        if name not in self.logs:
            self.logs[name] = EventLog(self.events_dir / f"{name}.jsonl", role=name)
        return self.logs[name]

    def runtime(self, role: str) -> Runtime:
        """The runtime a reference process has: its access manager reports into its event log."""
        runtime = Runtime(
            role,
            topology=self.topology,
            data_dir=self.data_dir,
            events=self.events_dir / f"{role}.jsonl",
            heartbeat=0.0,
            install_signals=False,
        )
        self.runtimes.append(runtime)
        return runtime

    def file(self, database: str) -> Path:
        return self.topology.file_of(database, self.data_dir)

    @property
    def board(self) -> StatusBoard:
        return StatusBoard(self.data_dir / self.topology.status)

    def events(self) -> dict[str, list[Event]]:
        """Every event file read back, keyed by file stem, as `splitdb run` reads them."""
        for log in self.logs.values():
            log.close()
        for runtime in self.runtimes:
            runtime.events.close()
        return {p.stem: list(read_events(p)) for p in sorted(self.events_dir.glob("*.jsonl"))}

    def close(self) -> None:
        self.events()
        for runtime in self.runtimes:
            for fd in (runtime._wake_r, runtime._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)


@pytest.fixture
def run(tmp_path: Path, initialized: Callable[[Topology], Path]) -> Iterator[RunDir]:
    found = RunDir(tmp_path / "repeat-1", template=initialized(SEED))
    yield found
    found.close()


def tick_rows(symbol: str, count: int, *, start: int = 0) -> list[TickRow]:
    """`count` ticks of `symbol` 100 ms apart, in the ticks table's column order."""
    rows = []
    for i in range(start, start + count):
        time_msc = BASE_MSC + i * 100
        bid = 1.1 + (i % 13) * 1e-4
        rows.append((symbol, time_msc, 0, time_msc // 1000, bid, bid + 2e-4, 0.0, 0, 6, 1.0))
    return rows


def acknowledge(log: EventLog, rows: Sequence[TickRow], *, dur_us: int = 800) -> None:
    """The ack reference.bot records after a COMMIT: last key and row count per symbol."""
    last: dict[str, list[int]] = {}
    counts: dict[str, int] = {}
    for row in rows:
        last[row[0]] = [row[1], row[2]]
        counts[row[0]] = counts.get(row[0], 0) + 1
    log.emit(
        "ack",
        db="ticks",
        dur_us=dur_us,
        wait_us=0,
        age_ms=0,
        pending=0,
        outcome="ok",
        last=last,
        rows=counts,
        n=len(rows),
    )
    log.flush()


def commit(conn: sqlite3.Connection, log: EventLog, rows: Sequence[TickRow]) -> None:
    """The bot's write path: insert in one transaction, then acknowledge."""
    insert_ticks(conn, rows)
    acknowledge(log, rows)


def busy_error(run: RunDir) -> sqlite3.Error:
    """A real SQLITE_BUSY: a second writer of ticks while the first holds the write lock."""
    access = AccessManager(run.topology.with_settings(busy_timeout_ms=0), run.data_dir)
    holder, second = access.connect("bot", "ticks"), access.connect("bot", "ticks")
    holder.execute("BEGIN IMMEDIATE")
    try:
        insert_ticks(second, tick_rows("EURUSD", 1))
    except sqlite3.Error as exc:
        return exc
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        second.close()
    raise AssertionError("the second writer got the write lock")


def failed_commit(log: EventLog, exc: sqlite3.Error, *, dur_us: int, rows: int = 10) -> None:
    """The `commit` event reference.bot records when a COMMIT fails."""
    outcome, code = outcome_of(exc)
    log.emit(
        "commit",
        db="ticks",
        dur_us=dur_us,
        rows=rows,
        outcome=outcome,
        code=code,
        error=str(exc),
    )


# --- Check ---------------------------------------------------------------------------------------


def test_a_check_serialises_every_field_including_its_warning() -> None:
    check = Check("expect.x", True, "x: 1", {"measured": 1}, warning="not judged")
    assert check.to_json() == {
        "name": "expect.x",
        "ok": True,
        "summary": "x: 1",
        "evidence": {"measured": 1},
        "warning": "not judged",
    }
    assert Check("y", False, "s").to_json()["evidence"] == {}


# --- contention ----------------------------------------------------------------------------------


def test_contention_passes_with_no_busy_event_and_adds_up_lock_waits(run: RunDir) -> None:
    bot = run.log("bot")
    conn = AccessManager(run.topology, run.data_dir).connect("bot", "ticks")
    commit(conn, bot, tick_rows("EURUSD", 5))
    conn.close()
    bot.emit("ack", outcome="ok", n=1, wait_us=1500, last={}, rows={})
    run.log("load-writers-0").emit("write", outcome="ok", dur_us=10, wait_us=500)
    check = checks.contention(run.events(), max_busy=None)
    assert check.ok, check.summary
    assert check.name == "contention"
    assert check.summary.startswith("0 busy/locked errors (limit 0)")
    assert check.evidence["busy_events"] == 0 and check.evidence["first"] == []
    assert check.evidence["lock_wait_ms"] == 2.0


def test_contention_fails_naming_the_first_busy_event(run: RunDir) -> None:
    exc = busy_error(run)
    assert outcome_of(exc) == ("busy", 5)
    failed_commit(run.log("bot"), exc, dur_us=1500)
    check = checks.contention(run.events(), max_busy=None)
    assert not check.ok
    assert check.summary.startswith("1 busy/locked errors (limit 0), 1.5 ms in failed attempts")
    (first,) = check.evidence["first"]
    assert first["process"] == "bot" and first["op"] == "commit"
    assert first["outcome"] == "busy" and first["code"] == 5
    assert "locked" in first["error"]
    assert check.evidence["by_process"] == {"bot": 1}
    assert check.evidence["codes"] == {"5": 1}


@pytest.mark.parametrize(("busy", "ok"), [(2, True), (3, False)])
def test_contention_passes_at_the_limit_and_fails_one_past_it(
    run: RunDir, busy: int, ok: bool
) -> None:
    exc = busy_error(run)
    for _ in range(busy):
        failed_commit(run.log("bot"), exc, dur_us=100)
    check = checks.contention(run.events(), max_busy=2)
    assert check.ok is ok
    assert f"{busy} busy/locked errors (limit 2)" in check.summary


def test_contention_counts_locked_like_busy_and_keeps_each_code(run: RunDir) -> None:
    failed_commit(run.log("bot"), busy_error(run), dur_us=100)
    run.log("load-readers-0").emit("read", outcome="locked", code=262, dur_us=300)
    check = checks.contention(run.events(), max_busy=None)
    assert check.evidence["busy_events"] == 2
    assert check.evidence["codes"] == {"5": 1, "262": 1}
    assert check.evidence["blocked_ms"] == 0.4


def test_contention_names_only_the_first_five_busy_events_but_counts_all(run: RunDir) -> None:
    exc = busy_error(run)
    for i in range(4):
        failed_commit(run.log("bot"), exc, dur_us=100, rows=i)
    for i in range(3):
        run.log("load-writers-0").emit("write", outcome="busy", code=5, dur_us=100, rows=i)
    check = checks.contention(run.events(), max_busy=None)
    assert check.evidence["busy_events"] == 7
    assert check.evidence["by_process"] == {"bot": 4, "load-writers-0": 3}
    assert len(check.evidence["first"]) == FIRST
    # Events in file order within a process, processes in the order of the mapping.
    assert [(e["process"], e["rows"]) for e in check.evidence["first"]] == [
        ("bot", 0),
        ("bot", 1),
        ("bot", 2),
        ("bot", 3),
        ("load-writers-0", 0),
    ]


def test_contention_counts_blocked_time_from_failed_attempts_only(run: RunDir) -> None:
    failed_commit(run.log("bot"), busy_error(run), dur_us=2000)
    run.log("bot").emit("ack", outcome="ok", dur_us=90_000, n=1, last={}, rows={})
    check = checks.contention(run.events(), max_busy=5)
    assert check.ok
    assert check.evidence["blocked_ms"] == 2.0


@pytest.mark.parametrize("events", [{}, {"bot": [], "agent": []}])
def test_contention_passes_when_no_process_recorded_anything(
    events: dict[str, list[Event]],
) -> None:
    check = checks.contention(events, max_busy=None)
    assert check.ok
    assert check.evidence["busy_events"] == 0 and check.evidence["lock_wait_ms"] == 0.0


# --- permissions ---------------------------------------------------------------------------------


def attempt(
    log: EventLog,
    conn: sqlite3.Connection,
    database: str,
    statement: Attempt,
    *,
    must_deny: bool,
    leak_paths: Sequence[Path] = (),
    source: sqlite3.Connection | None = None,
) -> None:
    """One try of a catalogue attempt, recorded as the violator load records it; `source` is
    what a BACKUP INTO copies from."""
    started = time.perf_counter_ns()
    exc: BaseException | None = None
    try:
        perform(statement, conn, source=source)
    except (sqlite3.Error, PermissionViolation, SplitdbError) as error:
        exc = error
    outcome, code = outcome_of(exc)
    log.emit(
        "attempt",
        db=database,
        dur_us=(time.perf_counter_ns() - started) // 1000,
        late_us=0,
        outcome=outcome,
        code=code,
        **({"error": str(exc)} if exc is not None else {}),
        attempt=statement.name,
        must_deny=must_deny,
    )
    for path in leak_paths:
        if path.exists():
            log.emit("leak", db=database, attempt=statement.name, file=str(path))
            path.unlink()


def statements(run: RunDir) -> dict[str, Attempt]:
    """The catalogue the violator load draws from, by name (the ones not everyone may make)."""
    found = catalogue(
        attach_path=str(run.scratch / "attach.db"), copy_path=str(run.scratch / "copy.db")
    )
    return {a.name: a for a in found if a.who != "everyone"}


@pytest.fixture
def probed(run: RunDir) -> RunDir:
    """Probe objects in every database, as `splitdb run` creates them for a violator load."""
    access = AccessManager(run.topology, run.data_dir)
    for database in run.topology.databases:
        conn = access.connect(run.topology.writers(database)[0], database)
        conn.executescript(PROBE_SETUP)
        conn.close()
    return run


def test_permissions_passes_when_the_access_manager_denies_every_forbidden_attempt(
    probed: RunDir,
) -> None:
    access = AccessManager(SEED, probed.data_dir)
    log = probed.log("load-attack-0")
    leak_paths = (probed.scratch / "attach.db", probed.scratch / "copy.db")
    tried = 0
    for database in ("ticks", "analysis"):
        conn = access.connect("api", database)
        source = access.connect("api", database)
        for statement in statements(probed).values():
            must_deny = not allowed(statement, owner=False)
            attempt(
                log,
                conn,
                database,
                statement,
                must_deny=must_deny,
                leak_paths=leak_paths,
                source=source,
            )
            tried += 1
        conn.close()
        source.close()
    check = checks.permissions(probed.events())
    assert check.ok, check.summary
    assert check.evidence["forbidden"] == check.evidence["denied"] == tried
    assert check.evidence["by_operation"]["INSERT"] == 2
    assert check.evidence["by_operation"]["ATTACH"] == 2
    # The calls that change a database without SQL text are denied by the guard too.
    for call in ("BACKUP INTO", "BLOB WRITE", "DESERIALIZE", "SET AUTHORIZER", "REOPEN"):
        assert check.evidence["by_operation"][call] == 2
    assert check.evidence["refused_by_sqlite"] == 0
    assert check.evidence["first_leaks"] == []


def test_permissions_passes_for_an_owner_whose_allowed_statements_ran(probed: RunDir) -> None:
    conn = AccessManager(SEED, probed.data_dir).connect("api", "logs")
    log = probed.log("load-attack-0")
    for name in ("INSERT", "UPDATE", "DELETE", "CREATE TABLE", "ATTACH", "VACUUM INTO"):
        statement = statements(probed)[name]
        attempt(log, conn, "logs", statement, must_deny=not allowed(statement, owner=True))
    conn.close()
    check = checks.permissions(probed.events())
    assert check.ok, check.summary
    assert check.evidence["attempts"] == 6
    assert check.evidence["forbidden"] == check.evidence["denied"] == 2
    assert check.evidence["first_wrong_denials"] == []


def test_permissions_fails_naming_a_forbidden_write_that_succeeded(probed: RunDir) -> None:
    log = probed.log("load-attack-0")
    guarded = AccessManager(SEED, probed.data_dir).connect("api", "ticks")
    attempt(log, guarded, "ticks", statements(probed)["DELETE"], must_deny=True)
    guarded.close()
    # The bug the check is for: the access manager hands a reader a read-write connection.
    broken = EveryoneWritesAccessManager(SEED, probed.data_dir).connect("api", "ticks")
    attempt(log, broken, "ticks", statements(probed)["INSERT"], must_deny=True)
    broken.close()
    check = checks.permissions(probed.events())
    assert not check.ok
    assert "2 forbidden attempts: 1 denied, 1 succeeded" in check.summary
    (leak,) = check.evidence["first_leaks"]
    assert (leak["attempt"], leak["outcome"], leak["db"]) == ("INSERT", "ok", "ticks")
    assert leak["role"] == "load-attack-0"


def test_permissions_fails_naming_a_file_an_attempt_created(probed: RunDir) -> None:
    # A connection that bypasses the access manager: ATTACH opens (and creates) another file.
    path = probed.file("ticks")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    attach = probed.scratch / "attach.db"
    log = probed.log("load-attack-0")
    attempt(log, conn, "ticks", statements(probed)["ATTACH"], must_deny=True, leak_paths=[attach])
    conn.close()
    assert not attach.exists()  # the violator load removes what it found
    check = checks.permissions(probed.events())
    assert not check.ok
    assert "1 files created" in check.summary
    file_leak = check.evidence["first_leaks"][-1]
    assert file_leak["op"] == "leak" and file_leak["file"] == str(attach)
    assert file_leak["attempt"] == "ATTACH"


def test_permissions_fails_on_a_file_left_behind_even_after_a_denial(probed: RunDir) -> None:
    log = probed.log("load-attack-0")
    conn = AccessManager(SEED, probed.data_dir).connect("api", "ticks")
    attach = probed.scratch / "attach.db"
    attempt(log, conn, "ticks", statements(probed)["ATTACH"], must_deny=True, leak_paths=[attach])
    conn.close()
    # However it got there, the violator load reports a file it finds after an attempt.
    log.emit("leak", db="ticks", attempt="ATTACH", file=str(attach))
    check = checks.permissions(probed.events())
    assert not check.ok
    assert "1 forbidden attempts: 1 denied, 0 succeeded" in check.summary
    (leak,) = check.evidence["first_leaks"]
    assert leak["op"] == "leak" and leak["file"] == str(attach)


def test_permissions_fails_naming_a_write_refused_by_sqlite_not_the_access_manager(
    probed: RunDir,
) -> None:
    log = probed.log("load-attack-0")
    guarded = AccessManager(SEED, probed.data_dir).connect("api", "ticks")
    attempt(log, guarded, "ticks", statements(probed)["DELETE"], must_deny=True)
    guarded.close()
    # A read-only connection the access manager did not make: SQLite refuses, not the manager.
    conn = sqlite3.connect(f"file:{probed.file('ticks')}?mode=ro", uri=True)
    attempt(log, conn, "ticks", statements(probed)["INSERT"], must_deny=True)
    conn.close()
    check = checks.permissions(probed.events())
    assert not check.ok
    assert "2 forbidden attempts: 1 denied, 0 succeeded" in check.summary
    assert "1 refused by SQLite not the access manager" in check.summary
    (refused,) = check.evidence["first_refused_by_sqlite"]
    assert refused["attempt"] == "INSERT" and refused["outcome"] == "error"
    assert "readonly" in refused["error"]


def test_permissions_fails_naming_a_denial_of_a_statement_the_role_may_run(
    probed: RunDir,
) -> None:
    # Judged by the legacy layout (every role owns every database), run on the seed's.
    conn = AccessManager(SEED, probed.data_dir).connect("api", "ticks")
    statement = statements(probed)["INSERT"]
    owner = LEGACY.mode("api", "ticks") == "rw"
    attempt(probed.log("load-attack-0"), conn, "ticks", statement, must_deny=not owner)
    conn.close()
    check = checks.permissions(probed.events())
    assert not check.ok
    (wrong,) = check.evidence["first_wrong_denials"]
    assert wrong["attempt"] == "INSERT" and wrong["outcome"] == "denied"
    assert wrong["must_deny"] is False


def test_permissions_fails_naming_a_reference_process_denied_its_own_statement(
    run: RunDir,
) -> None:
    api = run.runtime("api")
    conn = api.access.connect("api", "ticks")
    with pytest.raises(PermissionViolation):
        conn.execute("DELETE FROM ticks")
    conn.close()
    check = checks.permissions(run.events())
    assert not check.ok
    assert "1 denials of the reference processes' own statements" in check.summary
    (own,) = check.evidence["first_own_violations"]
    assert (own["process"], own["db"], own["operation"]) == ("api", "ticks", "DELETE")


def test_permissions_ignores_violations_recorded_by_load_workers(run: RunDir) -> None:
    log = run.log("load-attack-0")

    def record(violation: PermissionViolation) -> None:
        log.emit("violation", db=violation.database, operation=violation.operation)

    conn = AccessManager(SEED, run.data_dir, on_violation=record).connect("api", "ticks")
    with pytest.raises(PermissionViolation):
        conn.execute("DELETE FROM ticks")
    conn.close()
    events = run.events()
    assert [e["op"] for e in events["load-attack-0"]] == ["violation"]
    assert checks.permissions(events).ok


def test_permissions_counts_a_busy_forbidden_attempt_as_inconclusive(probed: RunDir) -> None:
    outcome, code = outcome_of(busy_error(probed))
    log = probed.log("load-attack-0")
    conn = AccessManager(SEED, probed.data_dir).connect("api", "ticks")
    attempt(log, conn, "ticks", statements(probed)["INSERT"], must_deny=True)
    conn.close()
    log.emit("attempt", db="ticks", outcome=outcome, code=code, attempt="DELETE", must_deny=True)
    check = checks.permissions(probed.events())
    assert check.ok, check.summary
    assert "2 forbidden attempts: 1 denied, 0 succeeded, 1 inconclusive (busy)" in check.summary
    assert check.evidence["inconclusive"] == 1


def test_permissions_fails_when_no_forbidden_attempt_was_shown_denied(probed: RunDir) -> None:
    outcome, code = outcome_of(busy_error(probed))
    probed.log("load-attack-0").emit(
        "attempt", db="ticks", outcome=outcome, code=code, attempt="DELETE", must_deny=True
    )
    check = checks.permissions(probed.events())
    assert not check.ok
    assert check.evidence["forbidden"] == 1 and check.evidence["denied"] == 0


def test_permissions_fails_when_every_attempt_was_lost_without_an_answer(probed: RunDir) -> None:
    """On a server, an attempt that met a lost connection got no answer about the grants: a
    violator whose every attempt was lost showed nothing, which is not a pass."""
    log = probed.log("load-attack-0")
    for _ in range(3):
        log.emit("attempt_lost", db="ticks", attempt="INSERT", code="57P01", outcome="error")
    check = checks.permissions(probed.events())
    assert not check.ok
    assert check.evidence["lost"] == 3
    assert "3 attempts lost (no answer: connection or conflict)" in check.summary


def test_permissions_passes_when_nothing_forbidden_was_tried(probed: RunDir) -> None:
    conn = AccessManager(SEED, probed.data_dir).connect("api", "ticks")
    select = Attempt("SELECT", "SELECT count(*) FROM splitdb_probe", "everyone")
    attempt(probed.log("load-attack-0"), conn, "ticks", select, must_deny=False)
    conn.close()
    check = checks.permissions(probed.events())
    assert check.ok
    assert (check.evidence["attempts"], check.evidence["forbidden"]) == (1, 0)


@pytest.mark.parametrize("events", [{}, {"load-attack-0": []}])
def test_permissions_passes_with_no_events(events: dict[str, list[Event]]) -> None:
    check = checks.permissions(events)
    assert check.ok and check.evidence["attempts"] == 0


# --- durability ----------------------------------------------------------------------------------


@pytest.fixture
def bot_conn(run: RunDir) -> Iterator[GuardedConnection]:
    conn = AccessManager(run.topology, run.data_dir).connect("bot", "ticks")
    yield conn
    conn.close()


def test_durability_passes_when_every_acknowledged_tick_is_stored(
    run: RunDir, bot_conn: GuardedConnection
) -> None:
    bot = run.log("bot")
    commit(bot_conn, bot, [*tick_rows("EURUSD", 20), *tick_rows("GBPUSD", 5)])
    commit(bot_conn, bot, tick_rows("EURUSD", 10, start=20))
    bot.close()
    check = checks.durability([run.events_dir / "bot.jsonl"], run.file("ticks"))
    assert check.ok, check.summary
    assert check.evidence["acks"] == 2
    assert check.evidence["acked_ticks"] == check.evidence["stored_ticks"] == 35
    assert check.summary == "35 acknowledged ticks in 2 acks, all present (35 stored)"


def test_durability_names_an_acknowledged_tick_missing_from_the_database(
    run: RunDir, bot_conn: GuardedConnection
) -> None:
    bot = run.log("bot")
    commit(bot_conn, bot, tick_rows("EURUSD", 10))
    lost = tick_rows("EURUSD", 5, start=10)
    # A bot that acknowledges before its COMMIT, then dies: the transaction rolls back.
    with contextlib.suppress(RuntimeError), transaction(bot_conn):
        bot_conn.executemany(INSERT_TICKS, lost)
        acknowledge(bot, lost)
        raise RuntimeError("killed before COMMIT")
    bot.close()
    check = checks.durability([run.events_dir / "bot.jsonl"], run.file("ticks"))
    assert not check.ok
    assert check.evidence["missing_keys"] == [("EURUSD", lost[-1][1], 0)]
    assert check.evidence["short_symbols"] == [("EURUSD", 15, 10)]
    assert "acknowledged keys missing" in check.summary and str(lost[-1][1]) in check.summary


def test_durability_names_a_symbol_acknowledged_more_often_than_stored(
    run: RunDir, bot_conn: GuardedConnection
) -> None:
    bot = run.log("bot")
    rows = tick_rows("GBPUSD", 8)
    commit(bot_conn, bot, rows)
    commit(bot_conn, bot, rows)  # re-sent and acknowledged again: the key is there, once
    bot.close()
    check = checks.durability([run.events_dir / "bot.jsonl"], run.file("ticks"))
    assert not check.ok
    assert check.evidence["missing_keys"] == []
    assert check.evidence["short_symbols"] == [("GBPUSD", 16, 8)]


def test_durability_fails_when_the_bot_acknowledged_nothing(run: RunDir) -> None:
    run.log("bot").emit("ready")
    run.log("bot").close()
    check = checks.durability([run.events_dir / "bot.jsonl"], run.file("ticks"))
    assert not check.ok
    assert check.summary == "the bot acknowledged nothing: nothing to check"
    assert check.evidence["acks"] == 0


def test_durability_fails_when_the_bot_left_no_event_file(run: RunDir) -> None:
    check = checks.durability([run.events_dir / "bot.jsonl"], run.file("ticks"))
    assert not check.ok and check.evidence["acks"] == 0


def test_durability_adds_up_the_acks_of_every_incarnation(
    run: RunDir, bot_conn: GuardedConnection
) -> None:
    first, second = run.log("bot"), run.log("bot-restarted")
    commit(bot_conn, first, tick_rows("EURUSD", 10))
    commit(bot_conn, second, tick_rows("EURUSD", 10, start=10))
    first.close()
    second.close()
    files = [run.events_dir / "bot.jsonl", run.events_dir / "bot-restarted.jsonl"]
    check = checks.durability(files, run.file("ticks"))
    assert check.ok, check.summary
    assert check.evidence["acks"] == 2 and check.evidence["acked_ticks"] == 20


def test_durability_skips_a_torn_last_line_left_by_a_kill(
    run: RunDir, bot_conn: GuardedConnection
) -> None:
    bot = run.log("bot")
    commit(bot_conn, bot, tick_rows("EURUSD", 10))
    bot.close()
    path = run.events_dir / "bot.jsonl"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"op":"ack","rows":{"EURUSD":99999},"last":{"EURUSD":[1,')
    check = checks.durability([path], run.file("ticks"))
    assert check.ok, check.summary
    assert check.evidence["acks"] == 1


def test_durability_names_at_most_five_missing_keys(run: RunDir) -> None:
    bot = run.log("bot")
    for i in range(7):
        acknowledge(bot, tick_rows(f"SYM{i:04d}", 3))  # acknowledged, never written
    bot.close()
    check = checks.durability([run.events_dir / "bot.jsonl"], run.file("ticks"))
    assert not check.ok
    assert len(check.evidence["missing_keys"]) == FIRST
    assert len(check.evidence["short_symbols"]) == FIRST
    assert check.evidence["missing_keys"][0][0] == "SYM0000"


# --- duplicates ----------------------------------------------------------------------------------


def analyse(run: RunDir) -> int:
    """One agent cycle in this process; the ticks it folded."""
    access = AccessManager(run.topology, run.data_dir)
    ticks, analysis = access.connect("agent", "ticks"), access.connect("agent", "analysis")
    states: dict[str, SymbolState] = {}
    try:
        return run_cycle(SqliteAnalysisStore.over(ticks, analysis), states, max_ticks=100_000).ticks
    finally:
        ticks.close()
        analysis.close()


def without_primary_key(path: Path, table: str, columns: Sequence[str]) -> sqlite3.Connection:
    """`table` recreated without its key, as an older schema had it: duplicates can get in."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
    return conn


def test_duplicates_passes_on_ticks_and_bars_written_by_the_bot_and_agent(
    run: RunDir, bot_conn: GuardedConnection
) -> None:
    commit(bot_conn, run.log("bot"), tick_rows("EURUSD", 1500))
    # Same millisecond, next sequence number: a different key, not a duplicate.
    same_ms = [(*tick_rows("EURUSD", 1)[0][:2], 1, *tick_rows("EURUSD", 1)[0][3:])]
    commit(bot_conn, run.log("bot"), same_ms)
    assert analyse(run) == 1501
    check = checks.duplicates(run.topology, run.data_dir)
    assert check.ok, check.summary
    assert check.evidence == {"duplicated_keys": {"ticks": 0, "bars": 0}}
    assert check.summary == "0 duplicated keys in ticks, 0 duplicated keys in bars"


def test_duplicates_fails_counting_each_duplicated_tick_key_once(run: RunDir) -> None:
    conn = without_primary_key(run.file("ticks"), "ticks", TICK_COLUMNS)
    rows = tick_rows("EURUSD", 5)
    conn.executemany(INSERT_TICKS, [*rows, rows[0], rows[0], rows[3]])
    conn.close()
    check = checks.duplicates(run.topology, run.data_dir)
    assert not check.ok
    assert check.evidence["duplicated_keys"] == {"ticks": 2, "bars": 0}
    assert check.summary.startswith("2 duplicated keys in ticks")


def test_duplicates_fails_counting_a_duplicated_bar_key(
    run: RunDir, bot_conn: GuardedConnection
) -> None:
    commit(bot_conn, run.log("bot"), tick_rows("EURUSD", 1200))
    analyse(run)
    conn = sqlite3.connect(run.file("analysis"), isolation_level=None)
    conn.execute("CREATE TABLE bars_copy AS SELECT * FROM bars")
    conn.close()
    columns = ("symbol", "timeframe", "start_msc", "open", "high", "low", "close", "tick_count")
    conn = without_primary_key(run.file("analysis"), "bars", (*columns, "volume"))
    conn.execute("INSERT INTO bars SELECT * FROM bars_copy")
    conn.execute("INSERT INTO bars SELECT * FROM bars_copy WHERE timeframe = '5m' LIMIT 1")
    conn.close()
    check = checks.duplicates(run.topology, run.data_dir)
    assert not check.ok
    assert check.evidence["duplicated_keys"] == {"ticks": 0, "bars": 1}


def test_duplicates_reads_both_tables_from_the_one_file_of_the_legacy_layout(
    tmp_path: Path, initialized: Callable[[Topology], Path]
) -> None:
    legacy = RunDir(tmp_path / "legacy", LEGACY, template=initialized(LEGACY))
    try:
        conn = AccessManager(LEGACY, legacy.data_dir).connect("api", "ticks")
        commit(conn, legacy.log("bot"), tick_rows("EURUSD", 700))
        conn.close()
        assert analyse(legacy) == 700
        check = checks.duplicates(LEGACY, legacy.data_dir)
        assert check.ok, check.summary
    finally:
        legacy.close()


def test_duplicates_passes_on_empty_databases(run: RunDir) -> None:
    assert checks.duplicates(run.topology, run.data_dir).ok


# --- integrity -----------------------------------------------------------------------------------


def index_out_of_step(path: Path, rows: int) -> None:
    """An index whose entries no longer match its table, as a corrupted file would have."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE probe (x, y)")
    conn.execute("CREATE INDEX probe_x ON probe (x)")
    conn.executemany("INSERT INTO probe VALUES (?, ?)", [(i, -i) for i in range(rows)])
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = 'CREATE INDEX probe_x ON probe (y)' WHERE name = 'probe_x'"
    )
    conn.close()


def test_integrity_passes_on_every_file_of_the_seed_layout(run: RunDir) -> None:
    check = checks.integrity(run.topology, run.data_dir)
    assert check.ok, check.summary
    assert check.summary == "3 of 3 database files pass integrity_check"
    assert check.evidence == {
        "files": ["analysis_data.db", "system_logs.db", "unified_tick_pipeline.db"],
        "problems": {},
    }


def test_integrity_checks_the_shared_file_of_the_legacy_layout_once(
    tmp_path: Path, initialized: Callable[[Topology], Path]
) -> None:
    legacy = RunDir(tmp_path / "legacy", LEGACY, template=initialized(LEGACY))
    try:
        check = checks.integrity(LEGACY, legacy.data_dir)
    finally:
        legacy.close()
    assert check.ok and check.evidence["files"] == ["trading.db"]
    assert check.summary == "1 of 1 database files pass integrity_check"


def test_integrity_fails_naming_the_file_and_its_first_problems(run: RunDir) -> None:
    index_out_of_step(run.file("logs"), rows=8)
    check = checks.integrity(run.topology, run.data_dir)
    assert not check.ok
    assert check.summary == "2 of 3 database files pass integrity_check"
    assert list(check.evidence["problems"]) == ["system_logs.db"]
    problems = check.evidence["problems"]["system_logs.db"]
    assert len(problems) == FIRST
    assert all("missing from index probe_x" in p for p in problems)


def test_integrity_fails_naming_a_file_that_is_no_longer_a_database(run: RunDir) -> None:
    path = run.file("analysis")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"\x00garbage, not an SQLite header" * 200)
    check = checks.integrity(run.topology, run.data_dir)
    assert not check.ok
    assert "analysis_data.db" in check.evidence["problems"]


# --- status_board --------------------------------------------------------------------------------


def test_status_board_passes_when_every_section_only_moved_forward(run: RunDir) -> None:
    for role in ("bot", "agent"):
        runtime = run.runtime(role)
        runtime.ready()
        runtime.heartbeat(force=True, committed=10)
        runtime.finish(committed=10)
    section = "load-status-0"
    for _ in range(3):
        content = run.board.update(section, {"n": 1})
        run.log(section).emit("status_update", seq=content["_seq"])
    run.log("load-readers-0").emit("read", outcome="ok")
    check = checks.status_board(run.events(), run.board.path)
    assert check.ok, check.summary
    assert check.evidence["updates"] == 9
    assert check.evidence["sections"] == ["agent", "bot", "load-status-0"]
    assert check.summary.startswith("9 status updates, 0 lost, 0 heartbeats skipped")


def test_status_board_counts_skipped_heartbeats_without_failing(run: RunDir) -> None:
    bot = run.runtime("bot")
    bot.ready()
    # What the runtime records when the board's lock stays held past a heartbeat's timeout.
    bot.events.emit("status_busy", outcome="skipped", timeout_s=0.5)
    bot.events.emit("status_busy", outcome="skipped", timeout_s=0.5)
    check = checks.status_board(run.events(), run.board.path)
    assert check.ok
    assert check.evidence["skipped_heartbeats"] == 2
    assert "2 heartbeats skipped" in check.summary


def test_status_board_names_a_section_the_board_lost(run: RunDir) -> None:
    bot = run.runtime("bot")
    bot.ready()
    stale = run.board.path.read_bytes()
    bot.heartbeat(force=True, committed=5)
    bot.heartbeat(force=True, committed=9)
    # Another writer puts back the board as it was: the bot's last two updates are gone.
    run.board.path.write_bytes(stale)
    check = checks.status_board(run.events(), run.board.path)
    assert not check.ok
    assert check.summary == "bot: board has _seq 1 < 3"
    assert check.evidence["problems"] == ["bot: board has _seq 1 < 3"]


def test_status_board_names_a_process_whose_sequence_went_back(run: RunDir) -> None:
    bot = run.runtime("bot")
    bot.ready()
    stale = run.board.path.read_bytes()
    bot.heartbeat(force=True, committed=5)
    bot.heartbeat(force=True, committed=9)
    run.board.path.write_bytes(stale)
    bot.heartbeat(force=True, committed=12)  # builds on the stale board: _seq 2 again
    check = checks.status_board(run.events(), run.board.path)
    assert not check.ok
    assert check.evidence["problems"] == ["bot: _seq went from 3 to 2"]


def test_status_board_fails_when_the_board_cannot_be_read(run: RunDir) -> None:
    run.runtime("bot").ready()
    run.board.path.write_text("{not json", encoding="utf-8")
    check = checks.status_board(run.events(), run.board.path)
    assert not check.ok
    assert check.summary.startswith("status board unreadable: ")
    assert check.evidence == {}


def test_status_board_names_a_role_whose_whole_section_is_gone(run: RunDir) -> None:
    run.runtime("bot").ready()
    run.board.path.unlink()  # a missing board reads as an empty one
    check = checks.status_board(run.events(), run.board.path)
    assert not check.ok
    assert "bot" in check.summary


def test_status_board_passes_when_nobody_published(run: RunDir) -> None:
    check = checks.status_board({"bot": [], "load-readers-0": []}, run.board.path)
    assert check.ok
    assert check.evidence["updates"] == 0 and check.evidence["sections"] == []


def test_status_board_lists_at_most_five_problems(
    tmp_path: Path, initialized: Callable[[Topology], Path]
) -> None:
    run = RunDir(tmp_path / "many", template=initialized(SEED))
    try:
        names = [f"load-status-{i}" for i in range(7)]
        for name in names:
            content = run.board.update(name, {"n": 1})
            run.log(name).emit("status_update", seq=content["_seq"])
            run.log(name).emit("status_update", seq=content["_seq"])  # the same _seq twice
        check = checks.status_board(run.events(), run.board.path)
    finally:
        run.close()
    assert not check.ok
    assert len(check.evidence["problems"]) == FIRST
    assert check.summary.count("_seq went from 1 to 1") == FIRST


# --- processes -----------------------------------------------------------------------------------


def test_processes_passes_when_every_exit_was_expected() -> None:
    exits = [
        Exit("bot", 101, 0, True, "sigterm"),
        Exit("bot", 102, -9, True, "sigkill"),  # a kill the scenario asked for
        Exit("api", 103, 0, True, "sigterm"),
    ]
    check = checks.processes(exits, {})
    assert check.ok
    assert check.summary == "3 exits, 0 unexpected"
    assert [e["pid"] for e in check.evidence["exits"]] == [101, 102, 103]


@pytest.mark.parametrize(
    ("how", "code", "story"),
    [
        ("sigterm", 1, "exited with code 1 after SIGTERM (0 expected)"),
        (
            "sigkill after sigterm timeout",
            -9,
            "did not exit within the stop grace period after SIGTERM, so it was killed "
            "(exit code -9)",
        ),
        ("exited", 3, "exited on its own with code 3 while it should have run"),
    ],
)
def test_processes_fails_naming_the_process_its_pid_and_how_it_ended(
    how: str, code: int, story: str
) -> None:
    exits = [Exit("api", 7, 0, True, "sigterm"), Exit("agent", 4242, code, False, how)]
    check = checks.processes(exits, {"agent": "Traceback: boom", "api": "fine"})
    assert not check.ok
    assert check.summary == f"2 exits, 1 unexpected: agent (pid 4242): {story}"
    (unexpected,) = check.evidence["unexpected"]
    assert unexpected["name"] == "agent" and unexpected["stderr_tail"] == "Traceback: boom"


def test_processes_attaches_an_empty_tail_when_the_process_wrote_no_stderr() -> None:
    check = checks.processes([Exit("bot", 9, 2, False, "exited")], {})
    assert check.evidence["unexpected"][0]["stderr_tail"] == ""


def test_processes_names_the_first_five_unexpected_exits_and_keeps_all() -> None:
    exits = [Exit(f"p{i}", 100 + i, 1, False, "exited") for i in range(7)]
    check = checks.processes(exits, {})
    assert check.summary.startswith("7 exits, 7 unexpected: p0 (pid 100)")
    assert "p4 (pid 104)" in check.summary and "p5" not in check.summary
    assert len(check.evidence["unexpected"]) == 7


def test_processes_passes_with_no_exits() -> None:
    check = checks.processes([], {})
    assert check.ok and check.summary == "0 exits, 0 unexpected"


# --- faults --------------------------------------------------------------------------------------


def hold_events(run: RunDir, outcomes: dict[int, str]) -> dict[str, list[Event]]:
    """What each held-transaction fault's worker records: one `hold` event of 0.5 s."""
    for index, outcome in outcomes.items():
        run.log(f"fault-hold{index}-0").emit(
            "hold", db="ticks", dur_us=500_000, late_us=0, outcome=outcome, hold_s=0.5
        )
    return run.events()


def test_faults_passes_when_every_scheduled_fault_was_applied(run: RunDir) -> None:
    faults = [Fault(kind="write_transaction", at=2.0), Fault(kind="read_transaction", at=3.0)]
    events = hold_events(run, {0: "ok", 1: "ok"})
    check = checks.faults(hold_records(faults, events, time.time() - 10))
    assert check.ok, check.summary
    assert check.summary.startswith("2 of 2 scheduled faults applied")
    assert check.evidence["not_applied"] == []
    assert [r["applied"] for r in check.evidence["faults"]] == [True, True]


def test_faults_fails_naming_a_fault_not_applied_with_its_reason(run: RunDir) -> None:
    faults = [Fault(kind="write_transaction", at=2.0), Fault(kind="read_transaction", at=3.0)]
    events = hold_events(run, {0: "busy"})
    check = checks.faults(hold_records(faults, events, time.time()))
    assert not check.ok
    assert check.summary.startswith("0 of 2 scheduled faults applied; not applied: ")
    assert "#0 write_transaction bot: the transaction could not be opened: busy" in check.summary
    assert "#1 read_transaction bot: the fault's worker recorded no hold" in check.summary
    assert [r["index"] for r in check.evidence["not_applied"]] == [0, 1]


def test_faults_says_when_a_record_carries_no_reason() -> None:
    check = checks.faults([{"index": 3, "kind": "sigkill", "target": "agent", "applied": False}])
    assert not check.ok
    assert check.summary.endswith("#3 sigkill agent: no reason recorded")


@pytest.mark.parametrize(("late_by", "late"), [(0.0, False), (0.999, False), (1.0, True)])
def test_faults_counts_a_fault_late_from_one_second_on(
    run: RunDir, late_by: float, late: bool
) -> None:
    faults = [Fault(kind="write_transaction", at=2.0)]
    events = hold_events(run, {0: "ok"})
    # The run's start, put so that the 0.5 s hold began `late_by` after its time (2 s in).
    t0 = events["fault-hold0-0"][0]["wall"] - 0.5 - 2.0 - late_by
    found = hold_records(faults, events, t0)
    assert found[0]["late_s"] == late_by
    check = checks.faults(found)
    assert check.ok
    assert ("late by 1 s or more" in check.summary) is late


def test_faults_passes_with_no_faults_scheduled() -> None:
    check = checks.faults([])
    assert check.ok and check.summary == "0 of 0 scheduled faults applied"


# --- threshold -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("measured", "ok"), [(9.5, True), (10.0, True), (10.01, False)])
def test_threshold_upper_passes_up_to_and_at_the_limit(measured: float, ok: bool) -> None:
    check = checks.threshold("max_commit_p99_ms", measured, 10.0, upper=True)
    assert check.ok is ok
    assert check.name == "expect.max_commit_p99_ms"
    assert check.summary == f"max_commit_p99_ms: {measured:g} (expected <= 10)"
    assert check.evidence == {"measured": measured, "limit": 10.0}


@pytest.mark.parametrize(("measured", "ok"), [(5000.0, True), (4999.9, False), (0.0, False)])
def test_threshold_lower_passes_from_the_limit_up(measured: float, ok: bool) -> None:
    check = checks.threshold("min_ingest_ticks_per_s", measured, 5000.0, upper=False)
    assert check.ok is ok
    assert check.summary.endswith("(expected >= 5000)")


def test_threshold_fails_when_the_figure_was_not_measured() -> None:
    check = checks.threshold("max_api_p99_ms", None, 50.0, upper=True)
    assert not check.ok
    assert check.summary == "max_api_p99_ms: not measured in this run"
    assert check.evidence == {"limit": 50.0}


def test_threshold_of_zero_events_against_a_zero_limit_passes() -> None:
    assert checks.threshold("max_load_errors", 0, 0, upper=True).ok
    assert not checks.threshold("min_busy_events", 0, 1, upper=False).ok


# --- settings ------------------------------------------------------------------------------------


class Stack:
    """Bot, agent and API runtimes, each with a connection to every database it may use."""

    def __init__(self, run: RunDir) -> None:
        self.runtimes = {role: run.runtime(role) for role in ("bot", "agent", "api")}
        self.conns = {
            (role, db): runtime.access.connect(role, db)
            for role, runtime in self.runtimes.items()
            for db in run.topology.grants[role]
        }

    def ready(self) -> None:
        for runtime in self.runtimes.values():
            runtime.ready()

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


@pytest.fixture
def stack(run: RunDir) -> Iterator[Stack]:
    found = Stack(run)
    yield found
    found.close()


def test_settings_passes_when_real_connections_have_the_topologys_settings(
    run: RunDir, stack: Stack
) -> None:
    stack.ready()
    check = checks.settings(run.events(), run.topology)
    assert check.ok, check.summary
    assert check.evidence["records"] == 9
    assert check.evidence["by_process"] == {"bot": 3, "agent": 3, "api": 3}
    assert check.summary.startswith("9 settings records from 3 processes (agent, api, bot)")


def test_settings_fails_naming_an_undeclared_busy_timeout(run: RunDir, stack: Stack) -> None:
    stack.ready()
    stack.conns[("api", "logs")].execute("PRAGMA busy_timeout = 100")
    stack.runtimes["api"].heartbeat(force=True)  # reports what changed since ready
    check = checks.settings(run.events(), run.topology)
    assert not check.ok
    (mismatch,) = check.evidence["mismatches"]
    assert (mismatch["process"], mismatch["db"], mismatch["setting"]) == (
        "api",
        "logs",
        "busy_timeout_ms",
    )
    assert (mismatch["actual"], mismatch["expected"], mismatch["when"]) == (100, 5000, "heartbeat")
    assert "api logs busy_timeout_ms: 100, expected 5000 (first at heartbeat)" in check.summary


def test_settings_fails_naming_an_owner_that_left_wal(run: RunDir) -> None:
    bot = run.runtime("bot")
    conn = bot.access.connect("bot", "ticks")
    conn.execute("PRAGMA journal_mode = delete")
    bot.ready()
    conn.close()
    check = checks.settings(run.events(), run.topology)
    assert not check.ok
    found = {(m["setting"], m["actual"], m["expected"]) for m in check.evidence["mismatches"]}
    assert ("journal_mode", "delete", "wal") in found
    # The same mismatch read at ready and at close is one entry, counted twice.
    assert [m["count"] for m in check.evidence["mismatches"]] == [2]


def test_settings_accepts_and_lists_a_declared_busy_timeout(run: RunDir) -> None:
    api = run.runtime("api")
    conn = api.access.connect("api", "logs")
    declare_busy_timeout(conn, 250, reason="the request log retries on its own")
    api.ready()
    check = checks.settings(run.events(), run.topology)
    conn.close()
    assert check.ok, check.summary
    (declared,) = check.evidence["declared"]
    assert declared["busy_timeout_ms"] == 250 and declared["expected"] == 5000
    assert declared["reason"] == "the request log retries on its own"
    assert "1 declared: api logs busy_timeout_ms 250" in check.summary


def test_settings_fails_naming_a_ready_process_that_recorded_no_settings(run: RunDir) -> None:
    run.runtime("agent").ready()  # ready with no connection open: nothing to read back
    check = checks.settings(run.events(), run.topology)
    assert not check.ok
    assert check.evidence["not_observed"] == ["agent"]
    assert "agent: not observed (it recorded no settings)" in check.summary


def test_settings_passes_saying_so_when_no_reference_process_ran(run: RunDir) -> None:
    run.log("load-readers-0").emit("read", outcome="ok")
    check = checks.settings(run.events(), run.topology)
    assert check.ok
    assert check.summary == "no reference process ran: no settings to compare"


def test_settings_fails_naming_a_database_the_topology_does_not_know(run: RunDir) -> None:
    # The process ran with a wider topology than the one the run judges it by.
    raw = SEED.to_mapping()
    raw["databases"]["scratch"] = {"path": "scratch.db"}
    raw["roles"]["api"]["scratch"] = "rw"
    wider = RunDir(
        run.data_dir.parent / "wider", parse_topology(raw, source="wider"), template=None
    )
    try:
        api = wider.runtime("api")
        conn = api.access.connect("api", "scratch")
        api.ready()
        conn.close()
        check = checks.settings(wider.events(), SEED)
    finally:
        wider.close()
    assert not check.ok
    (mismatch,) = check.evidence["mismatches"]
    assert (mismatch["db"], mismatch["setting"], mismatch["expected"]) == (
        "scratch",
        "grant",
        "rw or ro",
    )


def test_run_dir_events_are_the_files_a_run_leaves(run: RunDir) -> None:
    """The helper itself: one file per process, named by it, read back in file order."""
    run.log("bot").emit("ready")
    run.log("load-readers-0").emit("read", outcome="ok")
    events = run.events()
    assert list(events) == ["bot", "load-readers-0"]
    assert events["bot"][0]["role"] == "bot" and events["bot"][0]["op"] == "ready"


def test_bypass_fails_under_os_enforcement_when_a_write_succeeded_and_warns_under_process() -> None:
    from harness.runs.checks import bypass

    events = {
        "load-bypass-0": [
            {"op": "bypass", "outcome": "ok", "attempt": "DELETE"},
            {"op": "bypass", "outcome": "error", "error": "attempt to write a readonly database"},
        ]
    }
    under_os = bypass(events, "os")
    assert not under_os.ok and under_os.evidence["succeeded_by_attempt"] == {"DELETE": 1}
    under_process = bypass(events, "process")
    assert under_process.ok and under_process.warning is not None
    refused = {"load-bypass-0": [events["load-bypass-0"][1]]}
    assert bypass(refused, "os").ok and bypass(refused, "process").warning is None
    assert not bypass({}, "os").ok  # nothing tried: nothing shown
