"""The access manager: the one way a role gets a connection to a database.

An owner (a role granted 'rw') gets a read-write connection with the topology's journal mode,
synchronous and busy_timeout. Anyone else gets a `mode=ro` URI connection with `query_only` on and
an authorizer that denies every write form, schema change, state-changing PRAGMA, ATTACH/DETACH
and extension loading. A denied statement raises `PermissionViolation(role, db, operation)` and is
counted (and passed to `on_violation`, which the harness uses to record an event).

Limit, by design: this is an in-process check. It stops a role's own code from writing where it
must not; it does not stop a process that opens the file itself with plain `sqlite3`. File modes
or one Unix user per role are the real boundary between processes (see README, "Security model").
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from reference import crashpoints
from reference.errors import DatabaseMissing, PermissionViolation
from reference.schema import ensure_schema
from reference.topology import Topology

ViolationHook = Callable[[PermissionViolation], None]

# Authorizer action codes that change a database or its schema (sqlite3 exports the constants).
_WRITE_ACTIONS: dict[int, str] = {
    sqlite3.SQLITE_CREATE_INDEX: "CREATE INDEX",
    sqlite3.SQLITE_CREATE_TABLE: "CREATE TABLE",
    sqlite3.SQLITE_CREATE_TEMP_INDEX: "CREATE TEMP INDEX",
    sqlite3.SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE",
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TEMP TRIGGER",
    sqlite3.SQLITE_CREATE_TEMP_VIEW: "CREATE TEMP VIEW",
    sqlite3.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER",
    sqlite3.SQLITE_CREATE_VIEW: "CREATE VIEW",
    sqlite3.SQLITE_DELETE: "DELETE",
    sqlite3.SQLITE_DROP_INDEX: "DROP INDEX",
    sqlite3.SQLITE_DROP_TABLE: "DROP TABLE",
    sqlite3.SQLITE_DROP_TEMP_INDEX: "DROP TEMP INDEX",
    sqlite3.SQLITE_DROP_TEMP_TABLE: "DROP TEMP TABLE",
    sqlite3.SQLITE_DROP_TEMP_TRIGGER: "DROP TEMP TRIGGER",
    sqlite3.SQLITE_DROP_TEMP_VIEW: "DROP TEMP VIEW",
    sqlite3.SQLITE_DROP_TRIGGER: "DROP TRIGGER",
    sqlite3.SQLITE_DROP_VIEW: "DROP VIEW",
    sqlite3.SQLITE_INSERT: "INSERT",
    sqlite3.SQLITE_UPDATE: "UPDATE",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE",
    sqlite3.SQLITE_REINDEX: "REINDEX",
    sqlite3.SQLITE_ANALYZE: "ANALYZE",
    sqlite3.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE",
    sqlite3.SQLITE_DROP_VTABLE: "DROP VIRTUAL TABLE",
}

_ROW_ACTIONS = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})
_SCHEMA_TABLES = frozenset(
    {"sqlite_master", "sqlite_temp_master", "sqlite_schema", "sqlite_temp_schema"}
)

# PRAGMAs that read but take an argument (a table or index name, a row limit).
_READ_PRAGMAS_WITH_ARGUMENT = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
    }
)
# PRAGMAs that change state even without an argument.
_STATE_PRAGMAS_WITHOUT_ARGUMENT = frozenset({"wal_checkpoint", "incremental_vacuum", "optimize"})
# PRAGMAs no role may touch: writable_schema lets a connection corrupt the file it writes.
_FORBIDDEN_PRAGMAS = frozenset({"writable_schema"})

# Statements the authorizer never sees (REINDEX without a name), sees only as an ATTACH of the
# vacuum target (VACUUM) or as the tables they create (ANALYZE): recognised by keyword instead.
_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*([A-Za-z]+)(?:\s+([A-Za-z]+))?", re.S)
_VACUUM_INTO = re.compile(r"^\s*VACUUM\b(?:\s+[\w\"`\[\]]+)?\s+INTO\b", re.I)


def statement_operation(sql: str) -> str | None:
    """The operation name of statements recognised by keyword: VACUUM [INTO], REINDEX, ANALYZE."""
    match = _LEADING.match(sql)
    if not match:
        return None
    keyword = match.group(1).upper()
    if keyword == "VACUUM":
        body = sql[match.start(1) :]
        return "VACUUM INTO" if _VACUUM_INTO.match(body) else "VACUUM"
    if keyword in ("REINDEX", "ANALYZE"):
        return keyword
    return None


def split_statements(script: str) -> Iterator[str]:
    """Split an SQL script into complete statements, the way SQLite's parser would."""
    start = 0
    for i, ch in enumerate(script):
        if ch == ";" and sqlite3.complete_statement(script[start : i + 1]):
            yield script[start : i + 1]
            start = i + 1
    if script[start:].strip():
        yield script[start:]


_UNSEEN = "\0unseen"
_execute = sqlite3.Connection.execute
_VERDICT_CACHE_SIZE = 512


class GuardedConnection(sqlite3.Connection):
    """A `sqlite3.Connection` bound to one role and database, enforcing its grant.

    Only `AccessManager.connect` makes these. Autocommit (isolation_level=None): open write
    transactions with `transaction(conn)`.
    """

    role: str
    database: str
    owner: bool
    _hook: Callable[[PermissionViolation], None]
    _denied: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Until _bind, the connection is being set up by the access manager itself.
        self.owner = True
        self._denied = None
        self._verdicts: dict[str, str | None] = {}

    def _bind(self, role: str, database: str, owner: bool, hook: ViolationHook) -> None:
        self.role = role
        self.database = database
        self.owner = owner
        self._hook = hook
        self._denied = None
        self._verdicts.clear()
        self.set_authorizer(self._authorize)

    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None
    ) -> int:
        operation = self._judge(action, arg1, arg2)
        if operation is None:
            return sqlite3.SQLITE_OK
        if self._denied is None:
            self._denied = operation
        return sqlite3.SQLITE_DENY

    def _judge(self, action: int, arg1: str | None, arg2: str | None) -> str | None:
        """The denied operation's name, or None if the action is allowed."""
        if action == sqlite3.SQLITE_ATTACH:
            # VACUUM attaches its scratch database under the empty name; any other ATTACH would
            # open a file the topology does not govern.
            return "ATTACH" if arg1 or not self.owner else None
        if action == sqlite3.SQLITE_DETACH:
            return "DETACH"
        if action == sqlite3.SQLITE_FUNCTION:
            return "load_extension" if arg2 == "load_extension" else None
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in _FORBIDDEN_PRAGMAS:
                return f"PRAGMA {name}"
            if self.owner:
                return None
            if name in _STATE_PRAGMAS_WITHOUT_ARGUMENT:
                return f"PRAGMA {name}"
            if arg2 is not None and name not in _READ_PRAGMAS_WITH_ARGUMENT:
                return f"PRAGMA {name}"
            return None
        if not self.owner and action in _WRITE_ACTIONS:
            if action in _ROW_ACTIONS and (arg1 or "").lower() in _SCHEMA_TABLES:
                # A CREATE/DROP first edits the schema table, then reports its own action code:
                # let that one name the denial. Writing these tables directly needs
                # writable_schema, which nobody gets.
                return None
            return _WRITE_ACTIONS[action]
        return None

    def _precheck(self, sql: str) -> None:
        # Repeated statements are the common case (and the statement cache makes the authorizer
        # free for them): remember the verdict per text so the guard costs a dict lookup.
        operation = self._verdicts.get(sql, _UNSEEN)
        if operation is _UNSEEN:
            found = statement_operation(sql)
            denied = found == "VACUUM INTO" or (found is not None and not self.owner)
            operation = found if denied else None
            if len(self._verdicts) >= _VERDICT_CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[sql] = operation
        if operation is not None:
            self._raise(operation)

    def _raise(self, operation: str) -> NoReturn:
        violation = PermissionViolation(self.role, self.database, operation)
        self._hook(violation)
        raise violation

    def _translate(self, exc: sqlite3.DatabaseError) -> NoReturn:
        denied, self._denied = self._denied, None
        if denied is not None:
            self._raise(denied)
        raise exc

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if self._verdicts.get(sql, _UNSEEN) is not None:
            self._precheck(sql)
        try:
            return _execute(self, sql, parameters)
        except sqlite3.DatabaseError as exc:
            self._translate(exc)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        self._precheck(sql)
        try:
            return super().executemany(sql, parameters)
        except sqlite3.DatabaseError as exc:
            self._translate(exc)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        for statement in split_statements(sql_script):
            self._precheck(statement)
        try:
            return super().executescript(sql_script)
        except sqlite3.DatabaseError as exc:
            self._translate(exc)

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or GuardedCursor)


class GuardedCursor(sqlite3.Cursor):
    """A cursor whose statements go through its connection's guard."""

    def execute(self, sql: str, parameters: Any = (), /) -> GuardedCursor:
        conn = self.connection
        assert isinstance(conn, GuardedConnection)
        conn._precheck(sql)
        try:
            super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            conn._translate(exc)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> GuardedCursor:
        conn = self.connection
        assert isinstance(conn, GuardedConnection)
        conn._precheck(sql)
        try:
            super().executemany(sql, seq_of_parameters)
        except sqlite3.DatabaseError as exc:
            conn._translate(exc)
        return self

    def executescript(self, sql_script: str, /) -> GuardedCursor:
        conn = self.connection
        assert isinstance(conn, GuardedConnection)
        for statement in split_statements(sql_script):
            conn._precheck(statement)
        try:
            super().executescript(sql_script)
        except sqlite3.DatabaseError as exc:
            conn._translate(exc)
        return self


class AccessManager:
    """Hands out connections that enforce a topology's grants for each role.

    `violations` counts denied attempts by (role, database, operation); `on_violation` is also
    called for each (the harness records them as events). Thread-safe counting.
    """

    def __init__(
        self,
        topology: Topology,
        data_dir: Path,
        *,
        on_violation: ViolationHook | None = None,
    ) -> None:
        self.topology = topology
        self.data_dir = Path(data_dir)
        self.violations: Counter[tuple[str, str, str]] = Counter()
        self._on_violation = on_violation
        self._lock = threading.Lock()

    def connect(self, role: str, database: str) -> GuardedConnection:
        """Open a connection for `role` on `database`, owner or reader as the topology says.

        Raises PermissionViolation (operation 'OPEN') when the role has no grant at all, and
        DatabaseMissing when a reader's database does not exist yet.
        """
        mode = self.topology.mode(role, database)
        if mode is None:
            violation = PermissionViolation(role, database, "OPEN")
            self._record(violation)
            raise violation
        spec = self.topology.databases[database]
        path = self.topology.file_of(database, self.data_dir)
        timeout = spec.busy_timeout_ms / 1000
        if mode == "rw":
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, factory=GuardedConnection
            )
            conn.execute(f"PRAGMA journal_mode = {spec.journal_mode}")
            conn.execute(f"PRAGMA synchronous = {spec.synchronous}")
        else:
            if not path.exists():
                writers = ", ".join(self.topology.writers(database))
                raise DatabaseMissing(
                    f"database {database!r} ({path}) does not exist yet; its owner ({writers}) "
                    "creates it: start the owner first or run `splitdb init`"
                )
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"
            conn = sqlite3.connect(
                uri, uri=True, timeout=timeout, isolation_level=None, factory=GuardedConnection
            )
            conn.execute("PRAGMA query_only = 1")
        conn.execute(f"PRAGMA busy_timeout = {spec.busy_timeout_ms}")
        # security.html: schema-defined functions and views must not run with our privileges.
        conn.execute("PRAGMA trusted_schema = 0")
        conn._bind(role, database, mode == "rw", self._record)
        return conn

    def initialize(self) -> None:
        """Create every database file and its schema, each through one of its owners."""
        for database in self.topology.databases:
            owner = self.topology.writers(database)[0]
            conn = self.connect(owner, database)
            try:
                ensure_schema(conn, database)
            finally:
                conn.close()

    @property
    def denied(self) -> int:
        """Total denied attempts so far."""
        return sum(self.violations.values())

    def _record(self, violation: PermissionViolation) -> None:
        with self._lock:
            self.violations[(violation.role, violation.database, violation.operation)] += 1
        if self._on_violation is not None:
            self._on_violation(violation)


@dataclass
class Txn:
    """What `transaction()` measured: `wait_ns`, how long BEGIN waited for the lock."""

    wait_ns: int = 0


@contextmanager
def transaction(conn: sqlite3.Connection, *, immediate: bool = True) -> Iterator[Txn]:
    """Run the block in one transaction: commit on success, roll back on any exception.

    `immediate=True` (the default for writers) takes the write lock up front, so the busy
    handler applies and a read-then-write cannot fail later with SQLITE_BUSY_SNAPSHOT.
    Yields a `Txn` whose `wait_ns` is the time BEGIN took: the wait for the write lock.
    A write transaction (`immediate=True`) passes the crash points `txn.begin`,
    `txn.before_commit` and `txn.after_commit` (`reference.crashpoints`); a read one passes none.
    """
    txn = Txn()
    started = time.perf_counter_ns()
    try:
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    finally:
        txn.wait_ns = time.perf_counter_ns() - started
    try:
        if immediate:
            crashpoints.reach("txn.begin")
        yield txn
        if immediate:
            crashpoints.reach("txn.before_commit")
        # A COMMIT refused as busy leaves the transaction open; roll it back below so the
        # caller's retry can BEGIN again (and nothing half-done lingers).
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if immediate:
        crashpoints.reach("txn.after_commit")


def grants_table(topology: Topology) -> Mapping[str, Mapping[str, str]]:
    """role -> database -> 'rw' | 'ro' | '-' for display."""
    return {
        role: {db: topology.grants[role].get(db, "-") for db in topology.databases}
        for role in topology.roles
    }
