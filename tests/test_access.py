"""The access manager: allowed iff owner, for every catalogue attempt, every role x database."""

from __future__ import annotations

import gc
import sqlite3
import subprocess
import sys
import tempfile
import threading
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.runs.catalogue import PROBE_SETUP, Attempt, allowed, catalogue, perform
from reference.access import (
    AccessManager,
    GuardedConnection,
    declare_busy_timeout,
    split_statements,
    transaction,
)
from reference.errors import PermissionViolation, SplitdbError
from reference.schema import ensure_schema
from reference.topology import Topology, load_topology

SEED = load_topology("seed")
ROLES = SEED.roles
DATABASES = tuple(SEED.databases)
ATTEMPTS = catalogue(attach_path="ATTACH_PATH", copy_path="COPY_PATH")


def _prepare(data_dir: Path, topology: Topology, database: str) -> AccessManager:
    access = AccessManager(topology, data_dir)
    owner = access.connect(topology.writers(database)[0], database)
    ensure_schema(owner, database)
    owner.executescript(PROBE_SETUP)
    owner.close()
    return access


def _snapshot(path: Path) -> tuple[Any, ...]:
    """Everything a write could change, read with a plain connection."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return (
            conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall(),
            conn.execute("SELECT * FROM splitdb_probe ORDER BY k").fetchall(),
            conn.execute("SELECT * FROM splitdb_probe_blob ORDER BY k").fetchall(),
            conn.execute("PRAGMA user_version").fetchone(),
            conn.execute("PRAGMA journal_mode").fetchone(),
        )
    finally:
        conn.close()


def _concrete(attempt: Attempt, tmp: Path) -> str:
    return attempt.sql.replace("ATTACH_PATH", str(tmp / "attached.db")).replace(
        "COPY_PATH", str(tmp / "copy.db")
    )


@pytest.mark.parametrize("database", DATABASES)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[a.name for a in ATTEMPTS])
def test_attempt_is_allowed_iff_the_topology_grants_it(
    tmp_path: Path, attempt: Attempt, role: str, database: str
) -> None:
    access = _prepare(tmp_path / "data", SEED, database)
    owner = SEED.mode(role, database) == "rw"
    concrete = replace(attempt, sql=_concrete(attempt, tmp_path))
    before = _snapshot(SEED.file_of(database, access.data_dir))
    conn = access.connect(role, database)
    # Opened only when used: an idle second connection stops an owner's journal_mode change.
    source = access.connect(role, database) if attempt.call == "backup_into" else None
    try:
        if allowed(attempt, owner=owner):
            perform(concrete, conn, source=source)
            assert access.denied == 0
        else:
            with pytest.raises(PermissionViolation) as info:
                perform(concrete, conn, source=source)
            violation = info.value
            assert (violation.role, violation.database) == (role, database)
            assert violation.operation
            assert role in str(violation) and database in str(violation)
            assert violation.operation in str(violation)
            assert access.violations == {(role, database, violation.operation): 1}
            assert _snapshot(SEED.file_of(database, access.data_dir)) == before
            assert not (tmp_path / "attached.db").exists()
            assert not (tmp_path / "copy.db").exists()
    finally:
        conn.close()
        if source is not None:
            source.close()


def test_denial_names_the_operation(seed_access: AccessManager) -> None:
    conn = seed_access.connect("api", "ticks")
    with pytest.raises(PermissionViolation, match=r"role 'api' may not INSERT on database 'ticks'"):
        conn.execute(
            "INSERT INTO ticks (symbol, time_msc, seq, time, bid, ask) VALUES ('X',1,0,0,1,2)"
        )


def test_violations_are_counted_and_reported_to_the_hook(tmp_path: Path) -> None:
    seen: list[PermissionViolation] = []
    access = AccessManager(SEED, tmp_path, on_violation=seen.append)
    access.initialize()
    conn = access.connect("agent", "logs")
    for _ in range(3):
        with pytest.raises(PermissionViolation):
            conn.execute("DELETE FROM request_log")
    with pytest.raises(PermissionViolation):
        conn.execute("VACUUM")
    assert access.violations == {("agent", "logs", "DELETE"): 3, ("agent", "logs", "VACUUM"): 1}
    assert [v.operation for v in seen] == ["DELETE"] * 3 + ["VACUUM"]
    assert access.denied == 4


def test_denied_write_through_a_cursor_or_script_is_still_denied(
    seed_access: AccessManager,
) -> None:
    conn = seed_access.connect("bot", "analysis")
    with pytest.raises(PermissionViolation):
        conn.cursor().execute("DELETE FROM bars")
    with pytest.raises(PermissionViolation):
        conn.cursor().executemany("DELETE FROM bars WHERE symbol = ?", [("A",), ("B",)])
    with pytest.raises(PermissionViolation, match="REINDEX"):
        conn.executescript("SELECT 1; REINDEX;")
    with pytest.raises(PermissionViolation, match="UPDATE"):
        conn.executescript("SELECT 1; UPDATE bars SET close = 0;")


def test_reader_connection_is_read_only_at_three_levels(seed_access: AccessManager) -> None:
    conn = seed_access.connect("api", "ticks")
    assert isinstance(conn, GuardedConnection) and not conn.owner
    assert conn.execute("PRAGMA query_only").fetchone() == (1,)
    # Without the authorizer, query_only and the read-only file open still refuse the write.
    # (The guard refuses `conn.set_authorizer(None)`; sqlite3's own method steps around it.)
    sqlite3.Connection.set_authorizer(conn, None)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM ticks")


def test_owner_connection_uses_the_topology_settings(seed_access: AccessManager) -> None:
    conn = seed_access.connect("bot", "ticks")
    assert conn.owner
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,)
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    assert conn.execute("PRAGMA trusted_schema").fetchone() == (0,)


def test_temp_objects_are_denied_to_readers_because_they_shadow_the_real_tables(
    seed_access: AccessManager,
) -> None:
    owner = seed_access.connect("bot", "ticks")
    owner.execute(
        "INSERT INTO ticks (symbol, time_msc, seq, time, bid, ask) VALUES ('X',1,0,0,1,2)"
    )
    # What a reader could do with a temp view if it were allowed: read fake data under a real name.
    plain = sqlite3.connect(":memory:")
    plain.execute("CREATE TABLE ticks (symbol)")
    plain.execute("CREATE TEMP VIEW ticks AS SELECT 'FAKE' AS symbol")
    assert plain.execute("SELECT symbol FROM ticks").fetchall() == [("FAKE",)]
    reader = seed_access.connect("api", "ticks")
    with pytest.raises(PermissionViolation, match="CREATE TEMP VIEW"):
        reader.execute("CREATE TEMP VIEW ticks AS SELECT 'FAKE' AS symbol")
    assert reader.execute("SELECT symbol FROM ticks").fetchall() == [("X",)]


def test_role_without_a_grant_cannot_open_the_database(tmp_path: Path) -> None:
    raw = SEED.to_mapping()
    del raw["roles"]["api"]["analysis"]
    from reference.topology import parse_topology

    access = AccessManager(parse_topology(raw), tmp_path)
    access.initialize()
    with pytest.raises(PermissionViolation, match="OPEN"):
        access.connect("api", "analysis")


def test_reader_of_a_database_not_created_yet_gets_a_clear_error(tmp_path: Path) -> None:
    access = AccessManager(SEED, tmp_path)
    with pytest.raises(SplitdbError, match=r"does not exist yet; its owner \(bot\)"):
        access.connect("api", "ticks")


def test_unknown_role_or_database_is_a_clear_error(seed_access: AccessManager) -> None:
    with pytest.raises(SplitdbError, match="unknown role 'robot'"):
        seed_access.connect("robot", "ticks")
    with pytest.raises(SplitdbError, match="unknown database 'prices'"):
        seed_access.connect("bot", "prices")


def test_transaction_commits_or_rolls_back_as_a_whole(seed_access: AccessManager) -> None:
    conn = seed_access.connect("api", "logs")
    row = (
        "INSERT INTO request_log (ts_ns, method, path, status, duration_us) "
        "VALUES (1, 'GET', '/', 200, 5)"
    )
    with transaction(conn):
        conn.execute(row)
    with pytest.raises(RuntimeError), transaction(conn):
        conn.execute(row)
        raise RuntimeError("boom")
    assert conn.execute("SELECT count(*) FROM request_log").fetchone() == (1,)


def test_legacy_layout_lets_every_role_write_the_shared_file(tmp_path: Path) -> None:
    legacy = load_topology("legacy")
    access = AccessManager(legacy, tmp_path)
    access.initialize()
    for role in legacy.roles:
        conn = access.connect(role, "logs")
        conn.execute(
            "INSERT INTO request_log (ts_ns, method, path, status, duration_us) "
            "VALUES (1, 'GET', ?, 200, 1)",
            (role,),
        )
        conn.close()
    assert len({p.name for p in tmp_path.glob("*.db")}) == 1


@pytest.mark.slow
def test_plain_sqlite3_in_another_process_bypasses_the_access_manager(
    seed_access: AccessManager,
) -> None:
    """The documented limit: the authorizer lives in our process, not in the file."""
    path = SEED.file_of("ticks", seed_access.data_dir)
    code = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        'c.execute("INSERT INTO ticks (symbol, time_msc, seq, time, bid, ask) '
        "VALUES ('ROGUE', 1, 0, 0, 1, 2)\")\n"
        "c.commit()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    reader = seed_access.connect("api", "ticks")
    assert reader.execute("SELECT symbol FROM ticks").fetchall() == [("ROGUE",)]
    assert seed_access.denied == 0


def test_split_statements_follows_sqlite_completeness() -> None:
    script = "SELECT ';'; CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END; SELECT 2"
    assert [s.strip() for s in split_statements(script)] == [
        "SELECT ';';",
        "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END;",
        "SELECT 2",
    ]


_PREFIXES = st.sampled_from(["", "  ", "\n\t", "-- note\n", "/* c */ ", "/*a*/\n-- b\n  "])
_FORBIDDEN_FOR_READERS = [a for a in ATTEMPTS if a.who != "everyone" and a.call == "execute"]


@settings(max_examples=150, deadline=None)
@given(
    attempt=st.sampled_from(_FORBIDDEN_FOR_READERS),
    prefix=_PREFIXES,
    case=st.sampled_from([str, str.lower, str.upper]),
    via=st.sampled_from(["execute", "cursor", "script", "many"]),
    role_db=st.sampled_from([(r, d) for r in ROLES for d in DATABASES if SEED.mode(r, d) == "ro"]),
)
def test_no_spelling_or_call_path_gets_a_reader_write_through(
    attempt: Attempt, prefix: str, case: Any, via: str, role_db: tuple[str, str]
) -> None:
    role, database = role_db
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        access = _prepare(tmp_path / "data", SEED, database)
        path = SEED.file_of(database, access.data_dir)
        files_before = sorted(p.name for p in tmp_path.rglob("*.db"))
        before = _snapshot(path)
        sql = prefix + case(_concrete(attempt, tmp_path))
        conn = access.connect(role, database)
        with pytest.raises(PermissionViolation):
            if via == "execute":
                conn.execute(sql).fetchall()
            elif via == "cursor":
                conn.cursor().execute(sql).fetchall()
            elif via == "script":
                conn.executescript("SELECT 1;\n" + sql + ";")
            else:
                conn.executemany(sql, [()])
        conn.close()
        assert _snapshot(path) == before
        assert sorted(p.name for p in tmp_path.rglob("*.db")) == files_before


def test_commit_refused_as_busy_rolls_back_so_the_writer_can_retry(tmp_path: Path) -> None:
    """Rollback-journal mode: a reader's open transaction makes the writer's COMMIT fail."""
    topology = SEED.with_settings(journal_mode="delete", busy_timeout_ms=0)
    access = AccessManager(topology, tmp_path)
    access.initialize()
    writer = access.connect("api", "logs")
    reader = access.connect("bot", "logs")
    row = (
        "INSERT INTO request_log (ts_ns, method, path, status, duration_us) "
        "VALUES (1, 'GET', '/', 200, 5)"
    )
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM request_log").fetchall()  # holds SHARED
    with pytest.raises(sqlite3.OperationalError, match="locked"), transaction(writer):
        writer.execute(row)
    assert not writer.in_transaction
    reader.execute("COMMIT")
    with transaction(writer):  # the retry can begin again
        writer.execute(row)
    assert reader.execute("SELECT count(*) FROM request_log").fetchone() == (1,)


# --- what each connection actually had on its file ------------------------------------------


def _recording(tmp_path: Path, **kwargs: Any) -> tuple[AccessManager, list[tuple[str, Any]]]:
    """An initialised seed layout whose manager reports settings to the returned list."""
    seen: list[tuple[str, Any]] = []
    access = AccessManager(
        SEED, tmp_path, on_settings=lambda s, when: seen.append((when, s)), **kwargs
    )
    access.initialize()
    seen.clear()  # the owners' connections that created the files reported as they closed
    return access, seen


def test_settings_are_read_back_from_sqlite_not_taken_from_the_topology(tmp_path: Path) -> None:
    access, _ = _recording(tmp_path)
    conn = access.connect("bot", "ticks")
    (before,) = access.observe("ready")
    assert (before.journal_mode, before.synchronous, before.busy_timeout_ms) == (
        "wal",
        "normal",
        5000,
    )
    assert (before.role, before.database, before.mode) == ("bot", "ticks", "rw")
    assert before.file == str(SEED.file_of("ticks", tmp_path))
    assert not before.read_only and not before.query_only
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA busy_timeout = 0")
    (after,) = access.observe("heartbeat")
    assert (after.synchronous, after.busy_timeout_ms) == ("off", 0)


def test_a_reader_is_recorded_as_opened_read_only_with_query_only_on(tmp_path: Path) -> None:
    access, _ = _recording(tmp_path)
    access.connect("api", "ticks")
    (reader,) = access.observe("ready")
    assert (reader.mode, reader.read_only, reader.query_only) == ("ro", True, True)
    assert reader.journal_mode == "wal" and reader.busy_timeout_ms == 5000


def test_observe_reports_each_open_connection_of_this_thread_to_the_hook(tmp_path: Path) -> None:
    access, seen = _recording(tmp_path)
    ticks = access.connect("bot", "ticks")
    access.connect("bot", "analysis")
    closed = access.connect("bot", "logs")
    closed.close()
    seen.clear()
    elsewhere: list[Any] = []
    thread = threading.Thread(target=lambda: elsewhere.append(access.connect("bot", "logs")))
    thread.start()
    thread.join()
    found = access.observe("heartbeat")
    # The other thread's connection is its own to read: sqlite3 refuses use from another thread.
    assert sorted(s.database for s in found) == ["analysis", "ticks"]
    assert seen == [("heartbeat", s) for s in found]
    assert ticks in access.connections()


def test_the_manager_forgets_a_connection_nobody_holds(tmp_path: Path) -> None:
    access, _ = _recording(tmp_path)
    conn = access.connect("bot", "ticks")
    ref = weakref.ref(conn)
    del conn
    gc.collect()
    assert ref() is None
    assert access.observe("heartbeat") == []


def test_changed_only_reports_a_connection_again_only_after_a_setting_changed(
    tmp_path: Path,
) -> None:
    access, seen = _recording(tmp_path)
    conn = access.connect("bot", "ticks")
    access.observe("ready")
    assert access.observe("heartbeat", changed_only=True) == []
    conn.execute("PRAGMA synchronous = OFF")
    (changed,) = access.observe("heartbeat", changed_only=True)
    assert changed.synchronous == "off"
    assert [when for when, _ in seen] == ["ready", "heartbeat"]


def test_a_connection_reports_its_settings_when_it_is_closed(tmp_path: Path) -> None:
    access, seen = _recording(tmp_path)
    conn = access.connect("agent", "analysis")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    conn.close()  # a second close reports nothing more
    assert [(when, s.database, s.journal_mode) for when, s in seen] == [
        ("close", "analysis", "delete")
    ]


def test_a_connection_of_another_thread_reports_a_change_after_its_next_transaction(
    tmp_path: Path,
) -> None:
    access, seen = _recording(tmp_path, report_every_s=0)
    row = (
        "INSERT INTO request_log (ts_ns, method, path, status, duration_us) "
        "VALUES (1, 'GET', '/', 200, 5)"
    )

    def work() -> None:
        conn = access.connect("api", "logs")
        with transaction(conn):
            conn.execute(row)
        conn.execute("PRAGMA synchronous = OFF")
        with transaction(conn):
            conn.execute(row)
        with transaction(conn):
            conn.execute(row)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    # First transaction: reported; second: changed, reported; third: unchanged, not again.
    assert [(when, s.synchronous) for when, s in seen] == [
        ("transaction", "normal"),
        ("transaction", "off"),
    ]


def test_a_declared_busy_timeout_is_carried_with_its_reason(tmp_path: Path) -> None:
    access, _ = _recording(tmp_path)
    conn = access.connect("api", "logs")
    declare_busy_timeout(conn, 250, reason="retries on its own")
    (declared,) = access.observe("ready")
    assert declared.busy_timeout_ms == 250
    assert (declared.declared_busy_timeout_ms, declared.declared_reason) == (
        250,
        "retries on its own",
    )
    conn.execute("PRAGMA busy_timeout = 0")
    (overridden,) = access.observe("heartbeat")
    assert overridden.busy_timeout_ms == 0 and overridden.declared_busy_timeout_ms == 250
