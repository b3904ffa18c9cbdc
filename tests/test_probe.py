"""The probe: a Python process's own sqlite3 reports its connections, writes and busy errors,
with no change to the program (harness/probe/site/splitdb_probe.py says how).

The slow tests start real Python processes with `probe_env` and read the events they left in a
real file; nothing is mocked. Deadlines only bound how long a test waits for a child on a
loaded machine; nothing asserts how fast anything happened. The fast tests at the end check
the pure helpers the probe classifies with.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.probe import SITE_DIR, probe_env
from harness.probe.observed import Observed, observe
from harness.probe.site import splitdb_probe as probe

DEADLINE_S = 120.0  # give-up bound for one child on a machine with both cores busy


def _script(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return path


def _env(events: Path, *, process: str = "child", **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPLITDB_")}
    env = probe_env(events, process=process, role="tester", base_env=base)
    env.update(extra)
    return env


def _run(
    tmp_path: Path, code: str, *, events: Path | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], Observed]:
    """Run `code` as a script in a child Python with the probe on; its events, summarised."""
    events = events or tmp_path / "events.jsonl"
    script = _script(tmp_path, "child.py", code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env or _env(events),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr}"
    assert "splitdb probe:" not in proc.stderr, proc.stderr
    return proc, observe([events])


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(observed: Observed, db: Path, stmt: str, schema: str = "main") -> Any:
    key = (str(db.resolve()), schema, stmt)
    assert key in observed.writes, f"no write {key}; seen: {sorted(observed.writes, key=str)}"
    return observed.writes[key]


# --- plain sqlite3 ------------------------------------------------------------------------------


@pytest.mark.slow
def test_plain_sqlite3_writes_reads_and_connection_modes(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    proc, seen = _run(
        tmp_path,
        """
        import sqlite3
        conn = sqlite3.connect("app.db")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b TEXT)")
        for i in range(5):
            conn.execute("INSERT INTO t (a, b) VALUES (?, ?)", (i, "x"))
        conn.execute("UPDATE t SET b = 'y' WHERE a >= 3")
        conn.execute("DELETE FROM t WHERE a = 0")
        conn.commit()
        print(conn.execute("SELECT count(*) FROM t").fetchone()[0])
        reader = sqlite3.connect("file:app.db?mode=ro", uri=True)
        print(reader.execute("SELECT count(*) FROM t WHERE b = 'y'").fetchone()[0])
        """,
    )
    assert proc.stdout.split() == ["4", "2"]  # the program's own results, unchanged
    assert seen.started and seen.exits == 1
    create = _write(seen, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b TEXT)")
    assert create.actions == {"CREATE_TABLE"} and create.tables == {"t"}
    insert = _write(seen, db, "INSERT INTO t (a, b) VALUES (?, ?)")
    assert (insert.actions, insert.tables, insert.count, insert.rows) == ({"INSERT"}, {"t"}, 5, 5)
    update = _write(seen, db, "UPDATE t SET b = ? WHERE a >= ?")
    assert (update.actions, update.count, update.rows) == ({"UPDATE"}, 1, 2)
    delete = _write(seen, db, "DELETE FROM t WHERE a = ?")
    assert (delete.actions, delete.rows) == ({"DELETE"}, 1)
    assert len(seen.writes) == 4  # the SELECTs are reads, not writes
    assert seen.reads == {str(db.resolve()): 2}
    modes = sorted((c.db, c.mode, c.instrumented) for c in seen.connections)
    assert modes == [(str(db.resolve()), "ro", True), (str(db.resolve()), "rwc", True)]
    reader = next(c for c in seen.connections if c.mode == "ro")
    assert reader.uri is True and reader.flags == {"mode": "ro"}
    assert reader.journal_mode == "delete"
    assert all(c.process == "child" and c.role == "tester" for c in seen.connections)


@pytest.mark.slow
def test_the_probe_keeps_sqlite3_behaviour(tmp_path: Path) -> None:
    """row_factory on conn.execute, `with conn:`, cursors reused, a factory of the program's
    own (its execute calling super(): counted once), a cursor factory, executescript."""
    db = tmp_path / "k.db"
    proc, seen = _run(
        tmp_path,
        """
        import sqlite3
        calls = []
        class Logged(sqlite3.Connection):
            def execute(self, sql, parameters=()):
                calls.append(sql)
                return super().execute(sql, parameters)
        class MyCursor(sqlite3.Cursor):
            pass
        conn = sqlite3.connect("k.db", factory=Logged)
        assert isinstance(conn, Logged), type(conn)
        conn.executescript("CREATE TABLE k (a, b); CREATE INDEX k_a ON k (a);")
        with conn:
            conn.execute("INSERT INTO k VALUES (1, 'one')")
        cur = conn.cursor(MyCursor)
        assert isinstance(cur, MyCursor), type(cur)
        cur.executemany("INSERT INTO k VALUES (?, ?)", [(2, "two"), (3, "three")])
        cur.execute("INSERT INTO k VALUES (4, 'four')")
        conn.commit()
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT a, b FROM k WHERE a = 2").fetchone()
        print(type(row).__name__, row["b"], len(calls))
        """,
    )
    assert proc.stdout.split() == ["Row", "two", "2"]
    script = _write(seen, db, "CREATE TABLE k (a, b); CREATE INDEX k_a ON k (a);")
    assert script.actions == {"CREATE_TABLE", "CREATE_INDEX"}
    assert _write(seen, db, "INSERT INTO k VALUES (?, ?)").count == 3  # execute x2 (once each)
    assert _write(seen, db, "INSERT INTO k VALUES (?, ?)").rows == 4  # + executemany of 2 rows


@pytest.mark.slow
def test_a_connection_made_without_the_patched_connect_is_still_seen(tmp_path: Path) -> None:
    db = tmp_path / "direct.db"
    _, seen = _run(
        tmp_path,
        """
        import sqlite3
        conn = sqlite3.Connection("direct.db")  # the class called directly: no connect()
        conn.execute("CREATE TABLE d (a)")
        conn.execute("INSERT INTO d VALUES (1)")
        conn.commit()
        """,
    )
    (connection,) = seen.connections
    assert (connection.db, connection.instrumented) == (str(db.resolve()), False)
    writes = _write(seen, db, None)  # type: ignore[arg-type]
    assert writes.actions == {"CREATE_TABLE", "INSERT"} and writes.tables == {"d"}


@pytest.mark.slow
def test_with_a_profiler_running_an_uninstrumented_connection_is_adopted_later(
    tmp_path: Path,
) -> None:
    """With a profiler (or a debugger) set, the probe does not borrow sys.setprofile: such a
    connection is adopted at the next audit event or flush instead, and the program still
    ends normally."""
    db = tmp_path / "profiled.db"
    proc, seen = _run(
        tmp_path,
        """
        import os, sqlite3, sys
        calls = []
        sys.setprofile(lambda frame, event, arg: calls.append(event))
        conn = sqlite3.Connection("profiled.db")
        open(os.devnull).close()  # any audited operation
        conn.execute("CREATE TABLE p (a)")
        conn.execute("INSERT INTO p VALUES (1)")
        conn.commit()
        other = sqlite3.Connection("profiled.db")  # adopted only by the flush at exit
        sys.setprofile(None)
        print(bool(calls))
        """,
    )
    assert proc.stdout.strip() == "True"
    assert [c.instrumented for c in seen.connections] == [False, False]
    assert _write(seen, db, None).actions == {"CREATE_TABLE", "INSERT"}  # type: ignore[arg-type]


# --- libraries ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sqlite_utils_writes_are_seen_on_the_right_file(tmp_path: Path) -> None:
    db = tmp_path / "utils.db"
    (tmp_path / "elsewhere").mkdir()
    _, seen = _run(
        tmp_path,
        """
        import sqlite_utils
        db = sqlite_utils.Database("utils.db")
        db["t"].insert_all([{"id": i, "name": f"n{i}"} for i in range(50)], pk="id")
        other = sqlite_utils.Database("elsewhere/other.db")
        other["o"].insert({"x": 1})
        """,
    )
    inserts = [w for w in seen.writes_to(str(db.resolve())) if "INSERT" in w.actions]
    assert inserts and all(w.tables == {"t"} for w in inserts)
    assert sum(w.rows for w in inserts) == 50
    assert any("CREATE_TABLE" in w.actions for w in seen.writes_to(str(db.resolve())))
    other = seen.writes_to(str((tmp_path / "elsewhere" / "other.db").resolve()))
    assert {t for w in other for t in w.tables} == {"o"}


@pytest.mark.slow
def test_sqlalchemy_core_and_text_writes_are_seen(tmp_path: Path) -> None:
    db = tmp_path / "alchemy.db"
    _, seen = _run(
        tmp_path,
        """
        from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, text
        engine = create_engine("sqlite:///alchemy.db")
        meta = MetaData()
        items = Table("items", meta, Column("id", Integer, primary_key=True),
                      Column("name", String))
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(items.insert(), [{"name": "a"}, {"name": "b"}])
            conn.execute(text("INSERT INTO items (name) VALUES (:name)"), {"name": "c"})
            conn.execute(text("UPDATE items SET name = 'z' WHERE name = 'a'"))
        with engine.connect() as conn:
            print(conn.execute(text("SELECT count(*) FROM items")).scalar())
        """,
    )
    writes = seen.writes_to(str(db.resolve()))
    actions = {a for w in writes for a in w.actions}
    assert {"CREATE_TABLE", "INSERT", "UPDATE"} <= actions
    assert {t for w in writes for t in w.tables} == {"items"}
    assert sum(w.rows for w in writes if "INSERT" in w.actions) == 3
    assert _write(seen, db, "INSERT INTO items (name) VALUES (?)").count >= 1
    assert seen.reads.get(str(db.resolve()), 0) >= 1


# --- contention -----------------------------------------------------------------------------------

HOLDER = """
import sqlite3, sys
conn = sqlite3.connect("shared.db", isolation_level=None)
conn.execute("CREATE TABLE IF NOT EXISTS t (a)")
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO t VALUES (1)")
print("holding", flush=True)
sys.stdin.readline()  # until the test says so: no clock decides who waits
conn.execute("COMMIT")
"""

WAITER = """
import sqlite3
conn = sqlite3.connect("shared.db", timeout=0.1)
try:
    conn.execute("INSERT INTO t VALUES (2)")
except sqlite3.OperationalError as exc:
    print(type(exc).__name__, exc.sqlite_errorcode, exc.sqlite_errorname, str(exc), sep="|")
else:
    print("no error")
"""


@pytest.mark.slow
def test_a_busy_error_is_recorded_and_still_reaches_the_program(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    holder = subprocess.Popen(
        [sys.executable, str(_script(tmp_path, "holder.py", HOLDER))],
        cwd=tmp_path,
        env=_env(events, process="holder"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "holding"
        waiter = subprocess.run(
            [sys.executable, str(_script(tmp_path, "waiter.py", WAITER))],
            cwd=tmp_path,
            env=_env(events, process="waiter"),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.wait(timeout=DEADLINE_S) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    # The program's own exception, unchanged by the probe.
    assert waiter.stdout.strip() == "OperationalError|5|SQLITE_BUSY|database is locked"
    seen = observe([events])
    (busy,) = seen.busy_errors()
    assert (busy.outcome, busy.code, busy.name, busy.kind) == ("busy", 5, "SQLITE_BUSY", "write")
    assert (busy.stmt, busy.db, busy.process) == (
        "INSERT INTO t VALUES (?)",
        str((tmp_path / "shared.db").resolve()),
        "waiter",
    )
    assert busy.dur_us > 0  # the time the busy handler waited before giving up
    assert {c.process for c in seen.connections} == {"holder", "waiter"}
    assert _write(seen, tmp_path / "shared.db", "INSERT INTO t VALUES (?)").pids == {holder.pid}


READER = """
import sqlite3, sys
conn = sqlite3.connect("journal.db", isolation_level=None)
conn.execute("CREATE TABLE IF NOT EXISTS t (a)")
conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM t").fetchone()  # a SHARED lock, held
print("reading", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""

COMMITTER = """
import sqlite3
conn = sqlite3.connect("journal.db", timeout=0.1)
for how in ("commit", "with"):
    try:
        if how == "with":
            with conn:
                conn.execute("INSERT INTO t VALUES (1)")
        else:
            conn.execute("INSERT INTO t VALUES (1)")
            conn.commit()
    except sqlite3.OperationalError as exc:
        print(how, exc.sqlite_errorname)
    if conn.in_transaction:
        conn.rollback()
"""


@pytest.mark.slow
def test_a_busy_commit_is_recorded_from_commit_and_from_with(tmp_path: Path) -> None:
    """Rollback-journal mode: a reader's SHARED lock makes the writer's COMMIT busy, whether
    the program calls commit() or leaves a `with conn:` block (which commits in C)."""
    events = tmp_path / "events.jsonl"
    reader = subprocess.Popen(
        [sys.executable, str(_script(tmp_path, "reader.py", READER))],
        cwd=tmp_path,
        env=_env(events, process="reader"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().strip() == "reading"
        committer = subprocess.run(
            [sys.executable, str(_script(tmp_path, "committer.py", COMMITTER))],
            cwd=tmp_path,
            env=_env(events, process="committer"),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
        reader.stdin.write("done\n")
        reader.stdin.flush()
        assert reader.wait(timeout=DEADLINE_S) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
    assert committer.stdout.split() == ["commit", "SQLITE_BUSY", "with", "SQLITE_BUSY"]
    busy = observe([events]).busy_errors()
    assert [(e.stmt, e.outcome, e.kind, e.process) for e in busy] == [
        ("COMMIT", "busy", "write", "committer"),
        ("COMMIT", "busy", "write", "committer"),
    ]
    assert {e.db for e in busy} == {str((tmp_path / "journal.db").resolve())}


EXCLUSIVE_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect("locked.db", isolation_level=None)
conn.execute("CREATE TABLE IF NOT EXISTS t (a)")
conn.execute("PRAGMA locking_mode=EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
conn.execute("INSERT INTO t VALUES (1)")
print("exclusive", flush=True)
sys.stdin.readline()
"""


@pytest.mark.slow
def test_the_journal_mode_is_known_even_behind_an_exclusive_lock(tmp_path: Path) -> None:
    """Asking SQLite (PRAGMA journal_mode) would wait out the busy timeout behind another
    process's exclusive lock and then know nothing; the file's header answers at once."""
    events = tmp_path / "events.jsonl"
    holder = subprocess.Popen(
        [sys.executable, str(_script(tmp_path, "holder.py", EXCLUSIVE_HOLDER))],
        cwd=tmp_path,
        env=_env(events, process="holder"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "exclusive"
        _run(tmp_path, 'import sqlite3\nsqlite3.connect("locked.db", timeout=0.5)\n', events=events)
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=DEADLINE_S) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    journal = {c.process: c.journal_mode for c in observe([events]).connections}
    assert journal == {"holder": "delete", "child": "delete"}


# --- attach, authorizers -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_write_to_an_attached_database_is_attributed_to_its_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    _, seen = _run(
        tmp_path,
        """
        import sqlite3
        conn = sqlite3.connect("main.db")
        conn.execute("CREATE TABLE m (a)")
        conn.execute("ATTACH DATABASE 'sub/aux.db' AS aux")
        conn.execute("CREATE TABLE aux.x (a)")
        conn.execute("INSERT INTO aux.x VALUES (1)")
        conn.execute("ATTACH ? AS other", ("sub/other.db",))
        conn.execute("CREATE TABLE other.x (a)")
        conn.execute("INSERT INTO other.x VALUES (1)")
        conn.execute("INSERT INTO m VALUES (1)")
        conn.commit()
        """,
    )
    aux = (tmp_path / "sub" / "aux.db").resolve()
    other = (tmp_path / "sub" / "other.db").resolve()
    assert _write(seen, aux, "INSERT INTO aux.x VALUES (?)", schema="aux").tables == {"x"}
    assert _write(seen, other, "INSERT INTO other.x VALUES (?)", schema="other").count == 1
    assert _write(seen, tmp_path / "main.db", "INSERT INTO m VALUES (?)").count == 1
    assert {w.db for w in seen.writes.values()} == {
        str(aux),
        str(other),
        str((tmp_path / "main.db").resolve()),
    }


@pytest.mark.slow
def test_the_programs_own_authorizer_still_decides(tmp_path: Path) -> None:
    db = tmp_path / "auth.db"
    proc, seen = _run(
        tmp_path,
        """
        import sqlite3
        asked = []
        def deny_deletes(action, arg1, arg2, schema, source):
            asked.append(action)
            return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_DELETE else sqlite3.SQLITE_OK
        conn = sqlite3.connect("auth.db")
        conn.execute("CREATE TABLE t (a)")
        conn.set_authorizer(deny_deletes)
        conn.execute("INSERT INTO t VALUES (1)")
        try:
            conn.execute("DELETE FROM t")
        except sqlite3.DatabaseError as exc:
            print("denied:", exc)
        conn.commit()
        conn.set_authorizer(None)
        conn.execute("UPDATE t SET a = 2")
        conn.commit()
        print("asked", sqlite3.SQLITE_INSERT in asked, sqlite3.SQLITE_DELETE in asked)
        print(conn.execute("SELECT a FROM t").fetchall())
        """,
    )
    assert proc.stdout.splitlines() == ["denied: not authorized", "asked True True", "[(2,)]"]
    # Classified by our authorizer (the table comes from it, not from the statement's text),
    # also after the program installed and removed its own.
    assert _write(seen, db, "INSERT INTO t VALUES (?)").tables == {"t"}
    assert _write(seen, db, "UPDATE t SET a = ?").tables == {"t"}
    assert not [w for w in seen.writes.values() if "DELETE" in w.actions]  # it never ran
    (denied,) = seen.errors
    assert (denied.outcome, denied.code, denied.stmt) == ("error", 23, "DELETE FROM t")


# --- processes that end badly, fork, threads -----------------------------------------------------


@pytest.mark.slow
def test_a_killed_process_left_the_first_event_of_each_write(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    script = _script(
        tmp_path,
        "busy.py",
        """
        import sqlite3, sys
        conn = sqlite3.connect("k.db", isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS t (a)")
        for i in range(3):
            conn.execute("INSERT INTO t VALUES (?)", (i,))
            conn.execute("UPDATE t SET a = a + 1")
            conn.execute("DELETE FROM t WHERE a > 100")
        print("written", flush=True)
        sys.stdin.readline()  # killed here: no atexit, no flush
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_env(events),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.kill()
        proc.wait(timeout=DEADLINE_S)
    assert proc.returncode == -signal.SIGKILL
    firsts = {
        e["stmt"]: e["actions"] for e in _events(events) if e["op"] == "db_write" and e["first"]
    }
    assert firsts == {
        "CREATE TABLE IF NOT EXISTS t (a)": ["CREATE_TABLE"],
        "INSERT INTO t VALUES (?)": ["INSERT"],
        "UPDATE t SET a = a + ?": ["UPDATE"],
        "DELETE FROM t WHERE a > ?": ["DELETE"],
    }
    assert not [e for e in _events(events) if e["op"] == "probe_exit"]


@pytest.mark.slow
def test_sigterm_without_a_handler_flushes_then_dies_of_it(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    code = """
        import os, signal, sqlite3
        conn = sqlite3.connect("s.db", isolation_level=None)
        conn.execute("CREATE TABLE t (a)")
        for i in range(10):
            conn.execute("INSERT INTO t VALUES (?)", (i,))
        os.kill(os.getpid(), signal.SIGTERM)
        print("survived")
        """
    proc = subprocess.run(
        [sys.executable, str(_script(tmp_path, "term.py", code))],
        cwd=tmp_path,
        env=_env(events),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert proc.returncode == -signal.SIGTERM and "survived" not in proc.stdout
    seen = observe([events])
    assert _write(seen, tmp_path / "s.db", "INSERT INTO t VALUES (?)").count == 10
    (exit_event,) = [e for e in _events(events) if e["op"] == "probe_exit"]
    assert exit_event["reason"] == "SIGTERM"


@pytest.mark.slow
def test_the_programs_own_sigterm_handler_is_left_alone(tmp_path: Path) -> None:
    proc, seen = _run(
        tmp_path,
        """
        import os, signal, sqlite3, sys
        got = []
        signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
        conn = sqlite3.connect("h.db")
        conn.execute("CREATE TABLE t (a)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        os.kill(os.getpid(), signal.SIGTERM)
        print("handled", got)
        """,
    )
    assert proc.stdout.strip() == "handled [15]"
    assert _write(seen, tmp_path / "h.db", "INSERT INTO t VALUES (?)").count == 1


@pytest.mark.slow
def test_a_forked_child_reports_its_own_writes(tmp_path: Path) -> None:
    """A child that exits normally reports exactly its own executions; one killed with SIGKILL
    still left its own first event, though its parent had written the same statement."""
    events = tmp_path / "events.jsonl"
    proc, _ = _run(
        tmp_path,
        """
        import os, sqlite3
        conn = sqlite3.connect("f.db", isolation_level=None)
        conn.execute("CREATE TABLE t (a)")
        conn.execute("INSERT INTO t VALUES (1)")
        pid = os.fork()
        if pid == 0:
            child = sqlite3.connect("f.db", isolation_level=None)
            for i in range(4):
                child.execute("INSERT INTO t VALUES (?)", (i,))
            child.close()
            raise SystemExit(0)  # a normal exit: atexit flushes the child's counts
        _, status = os.waitpid(pid, 0)
        killed = os.fork()
        if killed == 0:
            sqlite3.connect("f.db").execute("INSERT INTO t VALUES (9)")
            os.kill(os.getpid(), 9)
        _, killed_status = os.waitpid(killed, 0)
        exit_code = os.waitstatus_to_exitcode
        print(pid, exit_code(status), killed, exit_code(killed_status))
        """,
        events=events,
    )
    child_pid, status, killed_pid, killed_status = map(int, proc.stdout.split())
    assert (status, killed_status) == (0, -signal.SIGKILL)
    inserts = [
        e
        for e in _events(events)
        if e["op"] == "db_write" and e["stmt"] == "INSERT INTO t VALUES (?)"
    ]
    by_pid: dict[int, int] = {}
    for e in inserts:
        by_pid[e["pid"]] = by_pid.get(e["pid"], 0) + e["count"]
    assert by_pid[child_pid] == 4  # its own, none of the parent's
    assert by_pid[killed_pid] == 1  # the first event, written before the kill
    assert sum(by_pid.values()) == 6
    exits = {e["pid"]: e["statements"] for e in _events(events) if e["op"] == "probe_exit"}
    assert exits[child_pid] == 4


@pytest.mark.slow
def test_threads_writing_through_their_own_connections_are_all_counted(tmp_path: Path) -> None:
    db = tmp_path / "threads.db"
    _, seen = _run(
        tmp_path,
        """
        import sqlite3, threading
        setup = sqlite3.connect("threads.db")
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (worker, i)")
        setup.commit()
        def work(n):
            conn = sqlite3.connect("threads.db", timeout=60)
            for i in range(500):
                conn.execute("INSERT INTO t VALUES (?, ?)", (n, i))
                if i % 50 == 0:
                    conn.commit()
            conn.commit()
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        """,
    )
    insert = _write(seen, db, "INSERT INTO t VALUES (?, ?)")
    assert (insert.count, insert.rows) == (2000, 2000)
    assert len(seen.connections) == 5
    assert {c.journal_mode for c in seen.connections[1:]} == {"wal"}


@pytest.mark.slow
def test_a_connection_per_request_is_counted_not_written_a_line_each(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    _, seen = _run(
        tmp_path,
        """
        import sqlite3
        sqlite3.connect("r.db").execute("CREATE TABLE t (a)")
        for i in range(50):  # a server that connects once per request
            conn = sqlite3.connect("r.db")
            conn.execute("INSERT INTO t VALUES (?)", (i,))
            conn.commit()
            conn.close()
        """,
        events=events,
    )
    assert sum(c.count for c in seen.connections) == 51
    lines = [e for e in _events(events) if e["op"] == "db_connect"]
    assert len(lines) <= probe.CONNECTS_IN_FULL + 2, len(lines)  # the rest counted in a flush
    assert _write(seen, tmp_path / "r.db", "INSERT INTO t VALUES (?)").count == 50


# --- start-up ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sitecustomize_of_the_users_still_runs(tmp_path: Path) -> None:
    users = tmp_path / "users_site"
    users.mkdir()
    (users / "sitecustomize.py").write_text(
        "import os\nMARK = 'user sitecustomize'\nos.environ['USER_SITE_RAN'] = '1'\n"
    )
    events = tmp_path / "events.jsonl"
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPLITDB_")}
    base["PYTHONPATH"] = str(users)
    env = probe_env(events, process="child", role="", base_env=base)
    assert env["PYTHONPATH"] == os.pathsep.join([str(SITE_DIR), str(users)])
    proc, seen = _run(
        tmp_path,
        """
        import os, sqlite3, sys, sitecustomize
        print(os.environ.get("USER_SITE_RAN"), sitecustomize.MARK, "splitdb_probe" in sys.modules)
        sqlite3.connect("u.db").execute("CREATE TABLE t (a)")
        """,
        events=events,
        env=env,
    )
    assert proc.stdout.strip() == "1 user sitecustomize True"
    assert seen.started and _write(seen, tmp_path / "u.db", "CREATE TABLE t (a)")


@pytest.mark.slow
def test_a_failing_sitecustomize_of_the_users_does_not_stop_the_program(tmp_path: Path) -> None:
    users = tmp_path / "users_site"
    users.mkdir()
    (users / "sitecustomize.py").write_text("raise RuntimeError('broken on purpose')\n")
    events = tmp_path / "events.jsonl"
    env = _env(events)
    env["PYTHONPATH"] += os.pathsep + str(users)
    proc = subprocess.run(
        [sys.executable, "-c", "import sqlite3; sqlite3.connect(':memory:'); print('ran')"],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert (proc.returncode, proc.stdout) == (0, "ran\n")
    problem = [line for line in proc.stderr.splitlines() if line.startswith("splitdb probe:")]
    assert len(problem) == 1 and "broken on purpose" in problem[0], proc.stderr
    assert observe([events]).started


@pytest.mark.slow
def test_without_the_events_variable_nothing_is_patched(tmp_path: Path) -> None:
    env = _env(tmp_path / "events.jsonl")
    del env["SPLITDB_PROBE_EVENTS"]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, _sqlite3; "
            "print(sqlite3.connect is _sqlite3.connect, sqlite3.dbapi2.connect is _sqlite3.connect,"
            " 'splitdb_probe' in sys.modules, type(sqlite3.connect(':memory:')).__name__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert proc.stdout.split() == ["True", "True", "False", "Connection"], proc.stderr
    assert not (tmp_path / "events.jsonl").exists()


# --- fast: the pure helpers ----------------------------------------------------------------------

CREATE_TABLE_CALLS = [
    (18, "sqlite_master", None, "main"),
    (2, "t", None, "main"),
    (23, "sqlite_master", "type", "main"),
    (20, "sqlite_master", "ROWID", "main"),
]


@pytest.mark.parametrize(
    ("calls", "sql", "writes", "reads", "kind"),
    [
        (
            [(18, "t", None, "main"), (22, "BEGIN", None, None)],
            "INSERT",
            [("main", "INSERT", "t")],
            [],
            "write",
        ),
        (CREATE_TABLE_CALLS, "CREATE TABLE t (a)", [("main", "CREATE_TABLE", "t")], [], "write"),
        (
            [(23, "t", "a", "aux"), (23, "t", "b", "aux")],
            "UPDATE",
            [("aux", "UPDATE", "t")],
            [],
            "write",
        ),
        (
            [(26, "main", "t", None)],
            "ALTER TABLE t ADD c",
            [("main", "ALTER_TABLE", "t")],
            [],
            "write",
        ),
        (
            [(1, "i", "t", "main"), (20, "t", "a", "main"), (27, "i", None, "main")],
            "CREATE INDEX i ON t (a)",
            [("main", "CREATE_INDEX", "t")],
            ["main"],
            "write",
        ),
        (
            [(19, "journal_mode", "WAL", None)],
            "PRAGMA journal_mode=WAL",
            [("main", "PRAGMA journal_mode", None)],
            [],
            "write",
        ),
        (
            [(19, "wal_checkpoint", None, "main")],
            "PRAGMA wal_checkpoint",
            [("main", "PRAGMA wal_checkpoint", None)],
            [],
            "write",
        ),
        ([(19, "table_info", "t", None)], "PRAGMA table_info(t)", [], [], "unknown"),
        ([(19, "journal_mode", None, None)], "PRAGMA journal_mode", [], [], "unknown"),
        ([(21, None, None, None), (20, "t", "a", "main")], "SELECT a FROM t", [], ["main"], "read"),
        (
            [(9, "sqlite_sequence", None, "main")],
            "DELETE FROM sqlite_sequence",
            [("main", "DELETE", "sqlite_sequence")],
            [],
            "write",
        ),
        ([(22, "COMMIT", None, None)], "COMMIT", [], [], "write"),
        ([(22, "BEGIN", None, None)], "BEGIN IMMEDIATE", [], [], "write"),
        ([(22, "BEGIN", None, None)], "BEGIN", [], [], "unknown"),
        ([], "VACUUM", [("main", "VACUUM", None)], [], "write"),
        ([], "  -- note\n insert into t values (1)", [("main", "INSERT", None)], [], "write"),
        ([], "PRAGMA main.user_version = 3", [("main", "PRAGMA user_version", None)], [], "write"),
        ([], "PRAGMA integrity_check(10)", [], [], "read"),
        ([], "SELECT 1", [], ["main"], "read"),
    ],
)
def test_classify(
    calls: list[tuple[int, str | None, str | None, str | None]],
    sql: str,
    writes: list[tuple[str, str, str | None]],
    reads: list[str],
    kind: str,
) -> None:
    found = probe.classify(calls, sql)
    assert (list(found.writes), list(found.reads), found.error_kind) == (writes, reads, kind)


def test_classify_sees_attach_and_detach() -> None:
    assert probe.classify([(24, "x.db", None, None)], "ATTACH 'x.db' AS x").attach
    assert probe.classify([], "DETACH x").attach
    assert not probe.classify([(18, "t", None, "main")], "INSERT").attach


@pytest.mark.parametrize(
    ("sql", "stmt"),
    [
        (
            "INSERT INTO t VALUES (1, 'it''s', -2.5e3, x'ABCD')",
            "INSERT INTO t VALUES (?, ?, -?, ?)",
        ),
        ("SELECT  *\n FROM t1\tWHERE c2 = 10", "SELECT * FROM t1 WHERE c2 = ?"),
        ("PRAGMA user_version = 7", "PRAGMA user_version = 7"),
        ("UPDATE [t 1] SET [c 2] = 3", "UPDATE [t 1] SET [c 2] = ?"),
        ("INSERT INTO t VALUES (" + "?, " * 200 + "?)", None),
    ],
)
def test_normalize_sql(sql: str, stmt: str | None) -> None:
    result = probe.normalize_sql(sql)
    if stmt is None:
        assert len(result) == probe.STMT_MAX_CHARS and result.endswith("…")
    else:
        assert result == stmt


def test_describe_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    here = str(tmp_path.resolve())
    assert probe.describe_target("a.db", False) == (f"{here}/a.db", "rwc", {})
    assert probe.describe_target(Path("a.db"), False)[0] == f"{here}/a.db"
    assert probe.describe_target(b"a.db", False)[0] == f"{here}/a.db"
    assert probe.describe_target("file:a.db?mode=ro", True) == (
        f"{here}/a.db",
        "ro",
        {"mode": "ro"},
    )
    assert probe.describe_target("file:a%20b.db?mode=rw", True)[:2] == (f"{here}/a b.db", "rw")
    assert probe.describe_target("file:a.db?immutable=1", True)[1] == "immutable"
    assert probe.describe_target("file:/x/y.db", True)[0] == "/x/y.db"
    assert probe.describe_target("file:a.db?mode=ro", False)[:2] == (
        f"{here}/file:a.db?mode=ro",
        "rwc",
    )
    assert probe.describe_target(":memory:", False)[:2] == (":memory:", "memory")
    assert probe.describe_target("", False)[:2] == (":memory:", "memory")
    assert probe.describe_target("file:mem1?mode=memory&cache=shared", True)[:2] == (
        ":memory:",
        "memory",
    )


@pytest.mark.parametrize(
    ("code", "message", "outcome"),
    [
        (5, "database is locked", "busy"),
        (517, "database is locked", "busy"),  # SQLITE_BUSY_SNAPSHOT
        (261, "database is locked", "busy"),  # SQLITE_BUSY_RECOVERY
        (6, "database table is locked", "locked"),
        (262, "database table is locked", "locked"),  # SQLITE_LOCKED_SHAREDCACHE
        (1, "no such table: x", "error"),
        (None, "database is locked", "busy"),  # Python 3.10: no sqlite_errorcode
        (None, "database schema is locked: main", "locked"),
        (None, "no such table: x", "error"),
    ],
)
def test_outcome_of(code: int | None, message: str, outcome: str) -> None:
    assert probe.outcome_of(code, message) == outcome


def test_pragma_changes_state() -> None:
    assert probe.pragma_changes_state("journal_mode", "wal")
    assert probe.pragma_changes_state("User_Version", "3")
    assert probe.pragma_changes_state("incremental_vacuum", None)
    assert not probe.pragma_changes_state("journal_mode", None)
    assert not probe.pragma_changes_state("table_info", "t")
    assert not probe.pragma_changes_state("integrity_check", "5")
    assert not probe.pragma_changes_state(None, None)


def test_settings_of_the_connection_are_not_writes_of_the_file() -> None:
    """sqlite-utils sets recursive_triggers on every connection, many programs foreign_keys
    and busy_timeout: a reader doing so writes nothing, and must not be reported as writing."""
    for name, value in [
        ("recursive_triggers", "on"),
        ("foreign_keys", "ON"),
        ("busy_timeout", "20"),
        ("cache_size", "-64000"),
        ("synchronous", "normal"),
        ("temp_store", "memory"),
        ("query_only", "1"),
        ("mmap_size", "268435456"),
        ("trusted_schema", "off"),
        ("locking_mode", "normal"),
    ]:
        assert not probe.pragma_changes_state(name, value), name


def test_journal_mode_from_the_header(tmp_path: Path) -> None:
    wal = tmp_path / "wal.db"
    conn = sqlite3.connect(wal)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (a)")
    conn.close()
    rollback = tmp_path / "rollback.db"
    sqlite3.connect(rollback).execute("CREATE TABLE t (a)").connection.close()
    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "junk.db").write_bytes(b"not a database at all, not even close")
    for path, expected in [
        (wal, "wal"),
        (rollback, "delete"),
        (tmp_path / "empty.db", "delete"),
        (tmp_path / "junk.db", None),
        (tmp_path / "missing.db", None),
    ]:
        assert probe._journal_mode(str(path)) == expected, path
        if expected is not None:  # what SQLite itself answers on a fresh connection
            fresh = sqlite3.connect(path)
            assert fresh.execute("PRAGMA journal_mode").fetchone()[0] == expected
            fresh.close()
    assert probe._journal_mode(":memory:") is None


def test_probe_env_puts_the_probe_first_and_keeps_the_rest(tmp_path: Path) -> None:
    env = probe_env(
        tmp_path / "e.jsonl",
        process="bot",
        role="writer",
        base_env={"PYTHONPATH": "/a:/b", "X": "1"},
    )
    assert env["PYTHONPATH"] == f"{SITE_DIR}{os.pathsep}/a:/b"
    assert env["SPLITDB_PROBE_EVENTS"] == str(tmp_path / "e.jsonl")
    assert (env["SPLITDB_PROCESS"], env["SPLITDB_ROLE"], env["X"]) == ("bot", "writer", "1")
    assert probe_env(tmp_path / "e", process="", role="", base_env={})["PYTHONPATH"] == str(
        SITE_DIR
    )
    assert (SITE_DIR / "sitecustomize.py").is_file() and (SITE_DIR / "splitdb_probe.py").is_file()


def test_observe_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    whole = {
        "op": "db_write",
        "pid": 7,
        "db": "/d.db",
        "schema": "main",
        "stmt": "INSERT",
        "count": 2,
    }
    events.write_text(
        json.dumps({"op": "probe_start", "pid": 7})
        + "\n"
        + json.dumps(whole)
        + "\n"
        + json.dumps(whole)[:25]
    )
    seen = observe([events, tmp_path / "missing.jsonl"])
    assert seen.started and seen.skipped_lines == 1
    assert seen.writes[("/d.db", "main", "INSERT")].count == 2


def test_the_probe_is_not_installed_by_importing_it() -> None:
    assert sqlite3.connect is sqlite3.dbapi2.connect
    assert type(sqlite3.connect).__name__ == "builtin_function_or_method"
    assert probe._fd == -1
