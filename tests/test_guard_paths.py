"""Write paths that are not SQL text: each goes through the guard or is a documented limit.

Every test runs on real SQLite files made by `AccessManager.initialize()` on the seed layout:
`api` owns `logs` (the `request_log` table); `bot` and `agent` only read it. "The file did not
change" is checked on the bytes of the database and its WAL, read with no connection of ours.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reference.access import AccessManager, GuardedConnection
from reference.errors import PermissionViolation
from reference.topology import load_topology

SEED = load_topology("seed")
ROW = (
    "INSERT INTO request_log (ts_ns, method, path, status, duration_us) "
    "VALUES (1, 'GET', '/original', 200, 5)"
)


@dataclass
class Layout:
    """An initialised seed layout whose violations are also collected in `seen`."""

    access: AccessManager
    seen: list[PermissionViolation] = field(default_factory=list)

    def file(self, database: str) -> Path:
        return SEED.file_of(database, self.access.data_dir)

    def state(self, database: str) -> tuple[str, str, int]:
        """The bytes of the file and of its WAL (hashed), and the rows of request_log."""
        path = self.file(database)
        wal = path.with_name(path.name + "-wal")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        wal_digest = hashlib.sha256(wal.read_bytes()).hexdigest() if wal.exists() else "-"
        plain = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = 0
            if database == "logs":
                rows = plain.execute("SELECT count(*) FROM request_log").fetchone()[0]
        finally:
            plain.close()
        return digest, wal_digest, rows

    def assert_denied(
        self, info: pytest.ExceptionInfo[PermissionViolation], role: str, db: str, op: str
    ) -> None:
        """One violation, naming role, database and operation, counted and passed to the hook."""
        violation = info.value
        assert (violation.role, violation.database, violation.operation) == (role, db, op)
        assert str(violation) == (
            f"permission denied: role {role!r} may not {op} on database {db!r}"
        )
        assert self.access.violations == {(role, db, op): 1}
        assert self.seen == [violation]


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    seen: list[PermissionViolation] = []
    access = AccessManager(SEED, tmp_path / "data", on_violation=seen.append)
    access.initialize()
    owner = access.connect("api", "logs")
    for _ in range(3):
        owner.execute(ROW)
    owner.close()  # the last connection checkpoints: the WAL is gone and the file is stable
    yield Layout(access, seen)


def _memory_database(path: str = "/forged") -> sqlite3.Connection:
    """A database of the same shape as logs, with one forged row."""
    mem = sqlite3.connect(":memory:")
    mem.execute(
        "CREATE TABLE request_log (id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, "
        "method TEXT NOT NULL, path TEXT NOT NULL, status INTEGER NOT NULL, "
        "duration_us INTEGER NOT NULL, client TEXT) STRICT"
    )
    mem.execute(
        "INSERT INTO request_log (ts_ns, method, path, status, duration_us) "
        "VALUES (9, 'GET', ?, 200, 1)",
        (path,),
    )
    mem.commit()
    return mem


# --- backup ------------------------------------------------------------------------------------


def test_backing_up_into_a_readers_connection_is_a_violation_naming_backup_into(
    layout: Layout,
) -> None:
    reader = layout.access.connect("bot", "logs")
    # The attack: the bot copies its own database over one it may only read.
    source = layout.access.connect("bot", "ticks")
    before = layout.state("logs")
    with pytest.raises(PermissionViolation) as info:
        source.backup(reader)
    layout.assert_denied(info, "bot", "logs", "BACKUP INTO")
    assert layout.state("logs") == before
    assert reader.execute("SELECT count(*) FROM request_log").fetchone() == (3,)


def test_a_reader_may_back_up_out_of_its_connection(layout: Layout) -> None:
    reader = layout.access.connect("agent", "logs")
    copy = sqlite3.connect(":memory:")
    reader.backup(copy)
    assert copy.execute("SELECT count(*) FROM request_log").fetchone() == (3,)
    assert layout.access.denied == 0 and layout.seen == []


def test_an_owner_may_back_up_into_its_own_database(layout: Layout) -> None:
    owner = layout.access.connect("api", "logs")
    _memory_database("/restored").backup(owner)
    assert owner.execute("SELECT path FROM request_log").fetchall() == [("/restored",)]
    assert owner.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert layout.access.denied == 0


def test_a_backup_from_a_connection_the_guard_did_not_make_is_refused_by_sqlite_uncounted(
    layout: Layout,
) -> None:
    """The limit: `backup` is the source's method, and sqlite3's C code hands the target's
    handle to SQLite without calling anything of the target. Only the read-only open stops it."""
    reader = layout.access.connect("bot", "logs")
    before = layout.state("logs")
    with pytest.raises(sqlite3.OperationalError, match="readonly") as info:
        _memory_database().backup(reader)
    assert info.value.sqlite_errorcode == sqlite3.SQLITE_READONLY
    assert layout.access.denied == 0
    assert layout.state("logs") == before


# --- blobopen ----------------------------------------------------------------------------------


@pytest.mark.parametrize("explicit", [True, False], ids=["readonly=False", "default"])
def test_opening_a_blob_for_writing_is_a_violation_for_a_reader(
    layout: Layout, explicit: bool
) -> None:
    reader = layout.access.connect("agent", "logs")
    before = layout.state("logs")
    with pytest.raises(PermissionViolation) as info:
        if explicit:
            reader.blobopen("request_log", "path", 1, readonly=False)
        else:
            reader.blobopen("request_log", "path", 1)  # sqlite3's default is writable
    layout.assert_denied(info, "agent", "logs", "BLOB WRITE")
    assert layout.state("logs") == before


def test_a_reader_may_read_a_blob(layout: Layout) -> None:
    reader = layout.access.connect("agent", "logs")
    with reader.blobopen("request_log", "path", 1, readonly=True) as blob:
        assert blob.read() == b"/original"
    assert layout.access.denied == 0


def test_an_owner_may_write_a_blob(layout: Layout) -> None:
    owner = layout.access.connect("api", "logs")
    with owner.blobopen("request_log", "path", 1, readonly=False) as blob:
        blob.write(b"/replaced")  # a blob handle cannot change the value's length
    assert owner.execute("SELECT path FROM request_log WHERE id = 1").fetchone() == ("/replaced",)
    assert layout.access.denied == 0


# --- serialize / deserialize -------------------------------------------------------------------


@pytest.mark.parametrize("role", ["bot", "api"], ids=["reader", "owner"])
def test_deserialize_is_a_violation_for_every_role(layout: Layout, role: str) -> None:
    """It swaps the file for a private in-memory database: a reader would read forged rows, an
    owner would have its writes acknowledged and never reach the file."""
    conn = layout.access.connect(role, "logs")
    before = layout.state("logs")
    with pytest.raises(PermissionViolation) as info:
        conn.deserialize(_memory_database().serialize())
    layout.assert_denied(info, role, "logs", "DESERIALIZE")
    assert conn.execute("SELECT DISTINCT path FROM request_log").fetchall() == [("/original",)]
    assert layout.state("logs") == before


def test_a_reader_may_serialize(layout: Layout) -> None:
    reader = layout.access.connect("bot", "logs")
    image = bytearray(reader.serialize())
    # The header says WAL (bytes 18 and 19 are 2), which an in-memory database cannot open.
    image[18:20] = b"\x01\x01"
    copy = sqlite3.connect(":memory:")
    copy.deserialize(bytes(image))
    assert copy.execute("SELECT count(*) FROM request_log").fetchone() == (3,)
    assert layout.access.denied == 0


def test_guarded_connections_are_what_the_manager_hands_out(layout: Layout) -> None:
    assert isinstance(layout.access.connect("bot", "logs"), GuardedConnection)


# --- the guard's own integrity -----------------------------------------------------------------


@pytest.mark.parametrize("role", ["bot", "api"], ids=["reader", "owner"])
@pytest.mark.parametrize(
    "replacement", [None, lambda *args: sqlite3.SQLITE_OK], ids=["none", "allow-all"]
)
def test_removing_or_replacing_the_authorizer_is_a_violation(
    layout: Layout, role: str, replacement: object
) -> None:
    conn = layout.access.connect(role, "logs")
    with pytest.raises(PermissionViolation) as info:
        conn.set_authorizer(replacement)  # type: ignore[arg-type]
    layout.assert_denied(info, role, "logs", "SET AUTHORIZER")
    # The authorizer is still the guard's: what no role may do is still denied.
    with pytest.raises(PermissionViolation, match="ATTACH"):
        conn.execute(f"ATTACH '{layout.access.data_dir / 'elsewhere.db'}' AS elsewhere")
    assert not (layout.access.data_dir / "elsewhere.db").exists()


@pytest.mark.parametrize("role", ["bot", "api"], ids=["reader", "owner"])
def test_loading_an_extension_through_the_api_is_a_violation(layout: Layout, role: str) -> None:
    """An extension is native code in the process: nothing in-process could guard it after.
    (This Python may lack the methods, built without loadable extensions: still a violation.)"""
    conn = layout.access.connect(role, "logs")
    with pytest.raises(PermissionViolation) as enable:
        conn.enable_load_extension(True)
    assert enable.value.operation == "enable_load_extension"
    with pytest.raises(PermissionViolation) as load:
        conn.load_extension("splitdb_no_such_extension")
    assert load.value.operation == "load_extension"
    assert layout.access.violations == {
        (role, "logs", "enable_load_extension"): 1,
        (role, "logs", "load_extension"): 1,
    }
    assert layout.seen == [enable.value, load.value]


@pytest.mark.parametrize("role", ["bot", "api"], ids=["reader", "owner"])
def test_reopening_a_guarded_connection_is_a_violation(layout: Layout, role: str) -> None:
    """`Connection.__init__` again would open a fresh read-write handle with no authorizer."""
    conn = layout.access.connect(role, "logs")
    before = layout.state("logs")
    with pytest.raises(PermissionViolation) as info:
        conn.__init__(str(layout.file("logs")))  # type: ignore[misc]
    layout.assert_denied(info, role, "logs", "REOPEN")
    if role == "bot":
        with pytest.raises(PermissionViolation, match="DELETE"):
            conn.execute("DELETE FROM request_log")
    assert conn.execute("PRAGMA query_only").fetchone() == (int(role == "bot"),)
    assert layout.state("logs") == before


# --- statements that reach SQLite without the guard's execute ----------------------------------


def test_a_write_through_a_plain_cursor_is_a_violation(layout: Layout) -> None:
    reader = layout.access.connect("bot", "logs")
    before = layout.state("logs")
    with pytest.raises(PermissionViolation) as info:
        sqlite3.Cursor(reader).execute("DELETE FROM request_log")
    layout.assert_denied(info, "bot", "logs", "DELETE")
    assert layout.state("logs") == before


def test_sqlite3s_own_execute_on_a_guarded_connection_is_still_guarded(layout: Layout) -> None:
    """Every statement a cursor of the connection prepares passes the connection's __call__
    (sqlite3's statement cache calls it), keyword checks included."""
    reader = layout.access.connect("agent", "logs")
    with pytest.raises(PermissionViolation) as info:
        sqlite3.Connection.execute(reader, "VACUUM")
    layout.assert_denied(info, "agent", "logs", "VACUUM")
    with pytest.raises(PermissionViolation, match="INSERT"):
        reader.cursor(sqlite3.Cursor).execute(ROW)


def test_a_denial_is_never_reported_for_a_later_unrelated_error(layout: Layout) -> None:
    reader = layout.access.connect("bot", "logs")
    with pytest.raises(PermissionViolation):
        sqlite3.Cursor(reader).execute("DELETE FROM request_log")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        reader.execute("SELECT * FROM no_such_table")
    assert layout.access.denied == 1


# --- user functions, aggregates, window functions, collations ----------------------------------


def _register(conn: sqlite3.Connection, kind: str, write: object) -> str:
    """Register a callback of `kind` that calls `write()`; the SELECT that runs it."""
    if kind == "function":

        def function() -> int:
            write()  # type: ignore[operator]
            return 1

        conn.create_function("sneak", 0, function)
        return "SELECT sneak()"
    if kind == "aggregate":

        class Aggregate:
            def step(self, value: object) -> None:
                write()  # type: ignore[operator]

            def finalize(self) -> int:
                return 1

        conn.create_aggregate("sneak", 1, Aggregate)
        return "SELECT sneak(id) FROM request_log"
    if kind == "window":

        class Window:
            def step(self, value: object) -> None:
                pass

            def inverse(self, value: object) -> None:
                pass

            def value(self) -> int:
                write()  # type: ignore[operator]
                return 1

            def finalize(self) -> int:
                return 1

        conn.create_window_function("sneak", 1, Window)
        return "SELECT sneak(id) OVER (ORDER BY id) FROM request_log"
    assert kind == "collation"

    def collation(a: str, b: str) -> int:
        write()  # type: ignore[operator]
        return (a > b) - (a < b)

    conn.create_collation("sneak", collation)
    return "SELECT path FROM request_log ORDER BY path COLLATE sneak"


CALLBACKS = ["function", "aggregate", "window", "collation"]


@pytest.mark.parametrize("kind", CALLBACKS)
def test_a_callback_writing_through_its_own_connection_is_denied_and_counted_once(
    layout: Layout, kind: str
) -> None:
    """The callback's statement is prepared like any other: the authorizer sees it."""
    reader = layout.access.connect("bot", "logs")
    select = _register(reader, kind, lambda: reader.execute("DELETE FROM request_log"))
    before = layout.state("logs")
    with pytest.raises(PermissionViolation) as info:
        reader.execute(select).fetchall()
    layout.assert_denied(info, "bot", "logs", "DELETE")
    assert layout.state("logs") == before


@pytest.mark.parametrize("kind", CALLBACKS)
def test_a_callback_writing_through_sqlite3s_own_execute_is_denied_and_counted_once(
    layout: Layout, kind: str
) -> None:
    reader = layout.access.connect("bot", "logs")
    write = lambda: sqlite3.Connection.execute(reader, "DELETE FROM request_log")  # noqa: E731
    select = _register(reader, kind, write)
    before = layout.state("logs")
    with pytest.raises(PermissionViolation) as info:
        reader.execute(select).fetchall()
    layout.assert_denied(info, "bot", "logs", "DELETE")
    assert layout.state("logs") == before


@pytest.mark.parametrize("kind", CALLBACKS)
def test_an_owners_callback_may_write_its_own_database(layout: Layout, kind: str) -> None:
    owner = layout.access.connect("api", "logs")
    # Another table: a callback inserting into the table its SELECT scans would never end.
    owner.execute("CREATE TABLE sneaked (at INTEGER)")
    select = _register(owner, kind, lambda: owner.execute("INSERT INTO sneaked VALUES (1)"))
    owner.execute(select).fetchall()
    assert owner.execute("SELECT count(*) FROM sneaked").fetchone()[0] >= 1
    assert layout.access.denied == 0


def test_a_callback_writing_through_another_guarded_connection_meets_that_ones_grant(
    layout: Layout,
) -> None:
    """Each connection enforces its own grant, whatever runs it: a callback gains nothing."""
    bot_ticks = layout.access.connect("bot", "ticks")  # the bot's own database
    bot_reads_analysis = layout.access.connect("bot", "analysis")
    reader = layout.access.connect("bot", "logs")
    _register(reader, "function", lambda: bot_reads_analysis.execute("DELETE FROM bars"))
    with pytest.raises(PermissionViolation) as info:
        reader.execute("SELECT sneak()").fetchall()
    layout.assert_denied(info, "bot", "analysis", "DELETE")
    insert = "INSERT INTO ticks (symbol, time_msc, seq, time, bid, ask) VALUES ('X', 1, 0, 0, 1, 2)"
    reader.create_function("own", 0, lambda: bot_ticks.execute(insert) and 1)
    assert reader.execute("SELECT own()").fetchall() == [(1,)]
    assert bot_ticks.execute("SELECT count(*) FROM ticks").fetchone() == (1,)


def test_a_callback_writing_through_a_connection_the_guard_did_not_make_is_not_stopped(
    layout: Layout,
) -> None:
    """The limit, in-process this time: a plain sqlite3 connection to the file is not guarded."""
    reader = layout.access.connect("bot", "logs")
    plain = sqlite3.connect(layout.file("logs"), isolation_level=None)
    _register(reader, "function", lambda: plain.execute("DELETE FROM request_log"))
    reader.execute("SELECT sneak()").fetchall()
    assert layout.state("logs")[2] == 0
    assert layout.access.denied == 0


def test_a_callback_failing_on_a_later_row_is_counted_but_surfaces_as_sqlite3s_error(
    layout: Layout,
) -> None:
    """The limit of the translation: rows after the first are stepped by sqlite3's own cursor
    while fetching, where the guard does not run. The write is still denied and counted."""
    reader = layout.access.connect("bot", "logs")
    calls = [0]

    def on_second_row() -> int:
        calls[0] += 1
        if calls[0] == 2:
            reader.execute("DELETE FROM request_log")
        return 1

    reader.create_function("sneak", 0, on_second_row)
    cursor = reader.execute("SELECT sneak() FROM request_log")
    with pytest.raises(sqlite3.OperationalError, match="user-defined function raised exception"):
        cursor.fetchall()
    assert layout.access.violations == {("bot", "logs", "DELETE"): 1}
    assert layout.state("logs")[2] == 3


# --- ATTACH, VACUUM INTO, writable_schema ------------------------------------------------------


@pytest.mark.parametrize("role", ["bot", "api"], ids=["reader", "owner"])
@pytest.mark.parametrize(
    "how", ["literal", "parameter", "expression"], ids=["literal", "parameter", "expression"]
)
def test_attaching_a_file_outside_the_grant_is_a_violation(
    layout: Layout, role: str, how: str
) -> None:
    """SQLite tells the authorizer the file name only when it is a literal: a bound parameter
    or an expression reaches it as no name at all, which is not VACUUM's empty one."""
    conn = layout.access.connect(role, "logs")
    outside = layout.access.data_dir.parent / "outside.db"
    with pytest.raises(PermissionViolation) as info:
        if how == "literal":
            conn.execute(f"ATTACH DATABASE '{outside}' AS outside")
        elif how == "parameter":
            conn.execute("ATTACH DATABASE ? AS outside", (str(outside),))
        else:
            conn.execute("ATTACH DATABASE ? || '' AS outside", (str(outside),))
    layout.assert_denied(info, role, "logs", "ATTACH")
    assert not outside.exists()


def test_an_owners_vacuum_still_works(layout: Layout) -> None:
    owner = layout.access.connect("api", "logs")
    owner.execute("VACUUM")
    assert owner.execute("SELECT count(*) FROM request_log").fetchone() == (3,)
    assert layout.access.denied == 0


@pytest.mark.parametrize("role", ["bot", "api"], ids=["reader", "owner"])
def test_vacuum_into_a_path_is_a_violation_however_the_path_is_given(
    layout: Layout, role: str
) -> None:
    conn = layout.access.connect(role, "logs")
    copy = layout.access.data_dir.parent / "copy.db"
    with pytest.raises(PermissionViolation, match="VACUUM INTO"):
        conn.execute("VACUUM INTO ?", (str(copy),))
    with pytest.raises(PermissionViolation, match="VACUUM INTO"):
        conn.execute(f"VACUUM main INTO '{copy}'")
    assert not copy.exists()
    assert layout.access.violations == {(role, "logs", "VACUUM INTO"): 2}


@pytest.mark.parametrize("role", ["bot", "api"], ids=["reader", "owner"])
@pytest.mark.parametrize(
    "sql",
    ["PRAGMA writable_schema = ON", "PRAGMA main.writable_schema = 1", "PRAGMA writable_schema"],
)
def test_writable_schema_is_a_violation_for_every_role(layout: Layout, role: str, sql: str) -> None:
    conn = layout.access.connect(role, "logs")
    with pytest.raises(PermissionViolation) as info:
        conn.execute(sql)
    layout.assert_denied(info, role, "logs", "PRAGMA writable_schema")


# --- executescript and iterdump replays --------------------------------------------------------


def _dump(layout: Layout) -> list[str]:
    owner = layout.access.connect("api", "logs")
    try:
        return list(owner.iterdump())
    finally:
        owner.close()


def test_every_write_statement_of_a_replayed_dump_is_denied_to_a_reader(layout: Layout) -> None:
    dump = _dump(layout)
    reader = layout.access.connect("agent", "logs")
    before = layout.state("logs")
    operations = []
    for statement in dump:
        if statement in ("BEGIN TRANSACTION;", "COMMIT;"):
            reader.execute(statement)  # transaction control is not a write
            continue
        with pytest.raises(PermissionViolation) as info:
            reader.execute(statement)
        operations.append(info.value.operation)
    assert operations == ["CREATE TABLE", "INSERT", "INSERT", "INSERT"]
    assert layout.access.violations == {
        ("agent", "logs", "CREATE TABLE"): 1,
        ("agent", "logs", "INSERT"): 3,
    }
    assert len(layout.seen) == 4
    assert layout.state("logs") == before


def test_a_dump_replayed_as_a_script_is_denied_and_leaves_no_transaction_open(
    layout: Layout,
) -> None:
    """A denied script stops at its first write; a transaction the script had begun is rolled
    back, or the reader would hold its snapshot (and the WAL) for as long as it lives."""
    script = "\n".join(_dump(layout))
    reader = layout.access.connect("agent", "logs")
    before = layout.state("logs")
    with pytest.raises(PermissionViolation) as info:
        reader.executescript(script)
    layout.assert_denied(info, "agent", "logs", "CREATE TABLE")
    assert not reader.in_transaction
    assert layout.state("logs") == before


@pytest.mark.parametrize("via", ["connection", "cursor"])
def test_an_owners_denied_script_rolls_back_what_it_began(layout: Layout, via: str) -> None:
    owner = layout.access.connect("api", "logs")
    outside = layout.access.data_dir.parent / "outside.db"
    script = f"BEGIN; {ROW}; ATTACH DATABASE '{outside}' AS outside; COMMIT;"
    with pytest.raises(PermissionViolation, match="ATTACH"):
        if via == "connection":
            owner.executescript(script)
        else:
            owner.cursor().executescript(script)
    assert not owner.in_transaction
    assert owner.execute("SELECT count(*) FROM request_log").fetchone() == (3,)
    assert not outside.exists()


def test_a_script_commits_the_callers_transaction_first_as_sqlite3_does(layout: Layout) -> None:
    """sqlite3's rule, not the guard's: so a transaction open after a script is the script's."""
    owner = layout.access.connect("api", "logs")
    owner.execute("BEGIN")
    owner.execute(ROW)
    with pytest.raises(PermissionViolation, match="ATTACH"):
        owner.executescript("BEGIN; SELECT 1; ATTACH DATABASE ? AS outside;")
    assert not owner.in_transaction
    assert layout.state("logs")[2] == 4


def test_a_reader_may_dump_its_database(layout: Layout) -> None:
    reader = layout.access.connect("bot", "logs")
    assert sum(s.startswith('INSERT INTO "request_log"') for s in reader.iterdump()) == 3
    assert layout.access.denied == 0


# --- Python 3.12+: setconfig -------------------------------------------------------------------

needs_setconfig = pytest.mark.skipif(
    not hasattr(sqlite3.Connection, "setconfig"), reason="Connection.setconfig is Python 3.12+"
)


@needs_setconfig
@pytest.mark.parametrize("role", ["bot", "api"], ids=["reader", "owner"])
@pytest.mark.parametrize("option", ["WRITABLE_SCHEMA", "ENABLE_LOAD_EXTENSION"])
def test_setconfig_may_not_enable_what_no_role_may_do(
    layout: Layout, role: str, option: str
) -> None:
    """Without this, an owner with WRITABLE_SCHEMA on could edit sqlite_master directly."""
    conn = layout.access.connect(role, "logs")
    with pytest.raises(PermissionViolation) as info:
        conn.setconfig(getattr(sqlite3, f"SQLITE_DBCONFIG_{option}"), True)  # type: ignore[attr-defined]
    layout.assert_denied(info, role, "logs", f"setconfig {option}")


@needs_setconfig
def test_setconfig_is_a_violation_for_a_reader_and_allowed_to_an_owner(layout: Layout) -> None:
    trusted = sqlite3.SQLITE_DBCONFIG_TRUSTED_SCHEMA  # type: ignore[attr-defined]
    reader = layout.access.connect("bot", "logs")
    with pytest.raises(PermissionViolation) as info:
        reader.setconfig(trusted, True)  # as `PRAGMA trusted_schema = 1` would be
    layout.assert_denied(info, "bot", "logs", "setconfig TRUSTED_SCHEMA")
    assert reader.execute("PRAGMA trusted_schema").fetchone() == (0,)
    owner = layout.access.connect("api", "logs")
    fkey = sqlite3.SQLITE_DBCONFIG_ENABLE_FKEY  # type: ignore[attr-defined]
    owner.setconfig(fkey, True)
    assert owner.getconfig(fkey) is True  # type: ignore[attr-defined]
