"""The access manager: the one way a role gets a connection to a database.

An owner (a role granted 'rw') gets a read-write connection with the topology's journal mode,
synchronous and busy_timeout. Anyone else gets a `mode=ro` URI connection with `query_only` on and
an authorizer that denies every write form, schema change, state-changing PRAGMA, ATTACH/DETACH
and extension loading. A denied statement raises `PermissionViolation(role, db, operation)` and is
counted (and passed to `on_violation`, which the harness uses to record an event).

The authorizer sees SQL text only, so `GuardedConnection` also checks the connection methods that
change a database without it (backup into a reader, a writable blob, deserialize) or would undo
the guard (set_authorizer, the extension methods, initialising the connection again, setconfig on
3.12+). Statements of plain `sqlite3.Cursor`s reach the guard through `__call__`, which sqlite3's
statement cache calls to prepare each new text.

The manager also keeps (weakly) the connections it handed out, so a process can say what each
really had on its file: `observe()` reads journal_mode, synchronous, busy_timeout and query_only
back from SQLite and passes each `ConnectionSettings` to `on_settings`. A sqlite3 connection may
be used only by the thread that opened it, so `observe()` reads the calling thread's connections;
every connection also reports itself after a transaction (when its settings changed, at most every
`report_every_s`) and when it is closed.

Limit, by design: this is an in-process check. It stops a role's own code from writing where it
must not; it does not stop a process that opens the file itself with plain `sqlite3`, a connection
of this process that the manager did not make (a backup from one into a reader's connection is
refused only by the reader's `mode=ro`, uncounted), or code calling `sqlite3.Connection`'s own
methods on a guarded connection. File modes or one Unix user per role are the real boundary
between processes (see README, "Security model").
"""

from __future__ import annotations

import re
import sqlite3
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from reference import crashpoints
from reference.errors import DatabaseMissing, DatabaseUnusable, PermissionViolation
from reference.file_identity import FileWatch
from reference.schema import ensure_schema, has_schema
from reference.topology import SYNCHRONOUS, Mode, Topology

ViolationHook = Callable[[PermissionViolation], None]


@dataclass(frozen=True)
class ConnectionSettings:
    """What one connection had on its file, read back from SQLite (not what was asked for).

    `mode` is the grant it was opened under; `read_only` says it was opened with `mode=ro`. A
    `declared_busy_timeout_ms` is one the process set on purpose with `declare_busy_timeout`.
    """

    role: str
    database: str
    file: str
    mode: Mode
    read_only: bool
    query_only: bool
    journal_mode: str
    synchronous: str
    busy_timeout_ms: int
    declared_busy_timeout_ms: int | None = None
    declared_reason: str | None = None

    def event_fields(self) -> dict[str, Any]:
        """The fields of a `settings` event (the event log adds the role)."""
        fields = asdict(self)
        del fields["role"]
        fields["db"] = fields.pop("database")
        if self.declared_busy_timeout_ms is None:
            del fields["declared_busy_timeout_ms"], fields["declared_reason"]
        return fields


SettingsHook = Callable[[ConnectionSettings, str], None]

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

if sys.version_info >= (3, 12):
    # Connection.setconfig (Python 3.12+) sets SQLite options without a PRAGMA: these two are
    # what no role may do by PRAGMA or SQL either.
    _DBCONFIG_NAMES = {
        getattr(sqlite3, name): name.removeprefix("SQLITE_DBCONFIG_")
        for name in dir(sqlite3)
        if name.startswith("SQLITE_DBCONFIG_")
    }
    _FORBIDDEN_DBCONFIG = frozenset(
        {sqlite3.SQLITE_DBCONFIG_WRITABLE_SCHEMA, sqlite3.SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION}
    )

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


class _Raised(threading.local):
    """The violations raised in this thread so far, and the last one.

    A statement that fails after a violation was raised inside it (by a user function,
    aggregate or collation it ran, on any guarded connection) fails with that violation.
    Per thread, because that is where sqlite3 runs a statement's callbacks.
    """

    count = 0
    last: PermissionViolation | None = None


_raised = _Raised()
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
    file: str
    watch: FileWatch
    _hook: Callable[[PermissionViolation], None]
    _denied: str | None
    # Set by _bind: from then on the connection is a role's, and its guard cannot be undone.
    _bound = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if self._bound:
            # Initialising it again would open a fresh read-write handle with no authorizer.
            self._raise("REOPEN")
        super().__init__(*args, **kwargs)
        # Until _bind, the connection is being set up by the access manager itself.
        self.owner = True
        self._denied = None
        self._verdicts: dict[str, str | None] = {}
        self.thread = threading.get_ident()
        self.open = True
        self.declared_busy_timeout: tuple[int, str] | None = None
        self._reporter: _Reporter | None = None
        self._last_reported: ConnectionSettings | None = None
        self._next_report = 0.0

    def _bind(
        self,
        role: str,
        database: str,
        owner: bool,
        hook: ViolationHook,
        *,
        file: str = "",
        reporter: _Reporter | None = None,
    ) -> None:
        self.role = role
        self.database = database
        self.owner = owner
        self.file = file
        self._hook = hook
        self._reporter = reporter
        self._denied = None
        self._verdicts.clear()
        super().set_authorizer(self._authorize)
        self._bound = True

    def settings(self) -> ConnectionSettings:
        """This connection's settings as SQLite has them now; only from the thread that opened it.

        Raises sqlite3.Error (ProgrammingError from another thread or after close).
        """

        def read(pragma: str) -> Any:
            return _execute(self, f"PRAGMA {pragma}").fetchone()[0]

        level = int(read("synchronous"))
        declared = self.declared_busy_timeout
        return ConnectionSettings(
            role=self.role,
            database=self.database,
            file=self.file,
            mode="rw" if self.owner else "ro",
            read_only=not self.owner,
            query_only=bool(read("query_only")),
            journal_mode=str(read("journal_mode")).lower(),
            synchronous=SYNCHRONOUS[level] if 0 <= level < len(SYNCHRONOUS) else str(level),
            busy_timeout_ms=int(read("busy_timeout")),
            declared_busy_timeout_ms=None if declared is None else declared[0],
            declared_reason=None if declared is None else declared[1],
        )

    def report_settings(
        self, when: str, *, changed_only: bool = False
    ) -> ConnectionSettings | None:
        """Read the settings and pass them to the manager's `on_settings`; what was reported.

        With `changed_only`, reports only when they differ from the last ones read. Never raises
        for a connection that cannot be read (closed, another thread, a broken file): None.
        """
        if self._reporter is None or not self.open:
            return None
        try:
            found = self.settings()
        except sqlite3.Error:
            return None
        if changed_only and found == self._last_reported:
            return None
        self._last_reported = found
        self._reporter(found, when)
        return found

    def after_transaction(self) -> None:
        """Report the settings if they changed, at most every `report_every_s`; call after a
        transaction ends (`transaction` does)."""
        # A connection used from a thread nobody observes (the API's worker threads) still shows
        # what it had: after a commit, at most every report_every_s, if anything changed.
        reporter = self._reporter
        now = time.monotonic()
        if reporter is not None and now >= self._next_report:
            self._next_report = now + reporter.every_s
            self.report_settings("transaction", changed_only=True)

    def close(self) -> None:
        """Report the settings one last time (`when="close"`), then close."""
        if self.open:
            self.report_settings("close")
            self.open = False
        super().close()

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
            # VACUUM attaches its scratch database under the literal empty name; any other
            # ATTACH would open a file the topology does not govern. A name given as a bound
            # parameter or an expression reaches the authorizer as None, never as "".
            return None if self.owner and arg1 == "" else "ATTACH"
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

    def _forbid(self, operation: str) -> None:
        # Before _bind the access manager itself is setting the connection up.
        if self._bound:
            self._raise(operation)

    def _raise(self, operation: str) -> NoReturn:
        violation = PermissionViolation(self.role, self.database, operation)
        _raised.count += 1
        _raised.last = violation
        self._hook(violation)
        raise violation

    def _enter(self) -> int:
        """Start a guarded call: forget a denial left by an unguarded one; the mark for
        `_translate`."""
        self._denied = None
        return _raised.count

    def _translate(self, exc: sqlite3.DatabaseError, mark: int) -> NoReturn:
        """Raise the violation behind `exc`, if any, else `exc`.

        A denial the authorizer noted during this call is raised (and counted) now. A
        violation already raised inside this call, in a callback the statement ran (sqlite3
        reports it as 'user-defined function raised exception'), on this connection or another,
        is raised again, not counted twice.
        """
        denied, self._denied = self._denied, None
        if denied is not None:
            self._raise(denied)
        if _raised.count != mark and _raised.last is not None:
            raise _raised.last from exc
        raise exc

    def __call__(self, sql: str, /) -> Any:
        # sqlite3's statement cache calls the connection to prepare each text it has not
        # cached, whichever cursor asked: a plain sqlite3.Cursor, sqlite3.Connection.execute,
        # iterdump. Every statement prepared outside executescript passes here.
        self._precheck(sql)
        mark = self._enter()
        try:
            return super().__call__(sql)
        except sqlite3.DatabaseError as exc:
            self._translate(exc, mark)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if self._verdicts.get(sql, _UNSEEN) is not None:
            self._precheck(sql)
        self._denied = None  # _enter, inlined on the hot path
        mark = _raised.count
        try:
            return _execute(self, sql, parameters)
        except sqlite3.DatabaseError as exc:
            self._translate(exc, mark)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        self._precheck(sql)
        mark = self._enter()
        try:
            return super().executemany(sql, parameters)
        except sqlite3.DatabaseError as exc:
            self._translate(exc, mark)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        """Run a script; one the guard denies midway leaves no transaction it began open."""
        for statement in split_statements(sql_script):
            self._precheck(statement)
        mark = self._enter()
        try:
            return super().executescript(sql_script)
        except sqlite3.DatabaseError as exc:
            self._script_failed(exc, mark)

    def _script_failed(self, exc: sqlite3.DatabaseError, mark: int) -> NoReturn:
        try:
            self._translate(exc, mark)
        except PermissionViolation:
            # sqlite3 commits a pending transaction before a script, so one open now is the
            # script's: its BEGIN ran, its COMMIT never will. Left open, a reader would keep its
            # snapshot (and the WAL) pinned, an owner the write lock, as long as it lives.
            if self.in_transaction:
                _execute(self, "ROLLBACK")
            raise

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or GuardedCursor)

    # Write paths that are not SQL text: SQLite runs them without asking the authorizer.

    def backup(
        self,
        target: sqlite3.Connection,
        *,
        pages: int = -1,
        progress: Callable[[int, int, int], object] | None = None,
        name: str = "main",
        sleep: float = 0.25,
    ) -> None:
        """Copy this database into `target`: reading, allowed to every role.

        Into a reader's guarded connection it is that reader's PermissionViolation ('BACKUP
        INTO'). `backup` is the source's method: a source the access manager did not make is
        not seen here, and only the reader's read-only open refuses it (see the module doc).
        """
        if isinstance(target, GuardedConnection) and not target.owner:
            target._raise("BACKUP INTO")
        super().backup(target, pages=pages, progress=progress, name=name, sleep=sleep)

    def blobopen(
        self, table: str, column: str, row: int, /, *, readonly: bool = False, name: str = "main"
    ) -> sqlite3.Blob:
        """A blob handle; a writable one (sqlite3's default) is 'BLOB WRITE', for owners only."""
        if not readonly and not self.owner:
            self._raise("BLOB WRITE")
        return super().blobopen(table, column, row, readonly=readonly, name=name)

    def deserialize(self, data: Any, /, *, name: str = "main") -> None:
        """Never allowed ('DESERIALIZE'): it would swap the topology's file for a private
        in-memory database, forged rows for a reader, writes that never reach the file for an
        owner. An owner restores an image by deserializing it into a plain in-memory
        connection and backing that up into its guarded one."""
        self._forbid("DESERIALIZE")
        super().deserialize(data, name=name)

    # The guard itself: what would undo it is denied to every role.

    def set_authorizer(
        self,
        authorizer_callback: Callable[[int, str | None, str | None, str | None, str | None], int]
        | None,
    ) -> None:
        """Never allowed once the manager handed the connection out ('SET AUTHORIZER')."""
        self._forbid("SET AUTHORIZER")
        super().set_authorizer(authorizer_callback)

    def enable_load_extension(self, enable: bool, /) -> None:
        """Never allowed ('enable_load_extension'): an extension is native code in-process."""
        self._forbid("enable_load_extension")
        super().enable_load_extension(enable)

    def load_extension(self, name: str, /) -> None:
        """Never allowed ('load_extension'), like the SQL function of that name."""
        self._forbid("load_extension")
        super().load_extension(name)

    if sys.version_info >= (3, 12):

        def setconfig(self, op: int, enable: bool = True, /) -> bool:
            """Python 3.12+: a reader may set no option (as no state-changing PRAGMA); nobody
            may enable writable_schema or extension loading ('setconfig WRITABLE_SCHEMA')."""
            if not self.owner or (enable and op in _FORBIDDEN_DBCONFIG):
                self._forbid(f"setconfig {_DBCONFIG_NAMES.get(op, op)}")
            return super().setconfig(op, enable)


class GuardedCursor(sqlite3.Cursor):
    """A cursor whose statements go through its connection's guard."""

    def execute(self, sql: str, parameters: Any = (), /) -> GuardedCursor:
        conn = self.connection
        assert isinstance(conn, GuardedConnection)
        conn._precheck(sql)
        mark = conn._enter()
        try:
            super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            conn._translate(exc, mark)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> GuardedCursor:
        conn = self.connection
        assert isinstance(conn, GuardedConnection)
        conn._precheck(sql)
        mark = conn._enter()
        try:
            super().executemany(sql, seq_of_parameters)
        except sqlite3.DatabaseError as exc:
            conn._translate(exc, mark)
        return self

    def executescript(self, sql_script: str, /) -> GuardedCursor:
        conn = self.connection
        assert isinstance(conn, GuardedConnection)
        for statement in split_statements(sql_script):
            conn._precheck(statement)
        mark = conn._enter()
        try:
            super().executescript(sql_script)
        except sqlite3.DatabaseError as exc:
            conn._script_failed(exc, mark)
        return self


@dataclass(frozen=True)
class _Reporter:
    """Where a connection's settings go: the manager's hook, and how often after transactions."""

    hook: SettingsHook
    every_s: float

    def __call__(self, settings: ConnectionSettings, when: str) -> None:
        self.hook(settings, when)


class AccessManager:
    """Hands out connections that enforce a topology's grants for each role.

    `violations` counts denied attempts by (role, database, operation); `on_violation` is also
    called for each (the harness records them as events). Thread-safe counting. `on_settings`
    receives each connection's settings as read back from SQLite, with when they were read
    ('ready', 'heartbeat', ... from `observe`, 'transaction' or 'close' from the connection).
    """

    def __init__(
        self,
        topology: Topology,
        data_dir: Path,
        *,
        on_violation: ViolationHook | None = None,
        on_settings: SettingsHook | None = None,
        report_every_s: float = 1.0,
    ) -> None:
        self.topology = topology
        self.data_dir = Path(data_dir)
        self.violations: Counter[tuple[str, str, str]] = Counter()
        self._on_violation = on_violation
        self._reporter = None if on_settings is None else _Reporter(on_settings, report_every_s)
        self._lock = threading.Lock()
        self._handed_out: weakref.WeakSet[GuardedConnection] = weakref.WeakSet()

    def connect(
        self, role: str, database: str, *, busy_timeout: tuple[int, str] | None = None
    ) -> GuardedConnection:
        """Open a connection for `role` on `database`, owner or reader as the topology says.

        `busy_timeout=(ms, reason)` opens it with that busy timeout instead of the topology's,
        declared with its reason as `declare_busy_timeout` does: the way for a reader, which
        may not set the PRAGMA once it has the connection. The open itself then waits at most
        `ms` too.

        Raises PermissionViolation (operation 'OPEN') when the role has no grant at all, and
        DatabaseMissing when a reader's database does not exist yet.
        """
        mode = self.topology.mode(role, database)
        if mode is None:
            violation = PermissionViolation(role, database, "OPEN")
            self._record(violation)
            raise violation
        path = self.topology.file_of(database, self.data_dir)
        timeout_ms = None if busy_timeout is None else busy_timeout[0]
        try:
            conn = self._open(database, path, mode == "rw", timeout_ms)
            if busy_timeout is not None:
                conn.declared_busy_timeout = (busy_timeout[0], busy_timeout[1])
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise
            raise DatabaseUnusable(
                f"database {database!r} ({path}): {exc}; it must be an SQLite file (or not "
                "exist yet): move it away or choose another --data-dir"
            ) from exc
        except OSError as exc:
            raise DatabaseUnusable(
                f"database {database!r} ({path}): {exc.strerror or exc}; choose another --data-dir"
            ) from exc
        conn._bind(
            role, database, mode == "rw", self._record, file=str(path), reporter=self._reporter
        )
        # Which file this is: a process asks `conn.watch.replaced()` to notice the file was
        # replaced under it (reference/file_identity.py).
        conn.watch = FileWatch(path)
        with self._lock:
            self._handed_out.add(conn)
        return conn

    def _open(
        self, database: str, path: Path, writable: bool, busy_timeout_ms: int | None = None
    ) -> GuardedConnection:
        spec = self.topology.databases[database]
        if busy_timeout_ms is None:
            busy_timeout_ms = spec.busy_timeout_ms
        timeout = busy_timeout_ms / 1000
        if writable:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, factory=GuardedConnection
            )
        else:
            if not path.exists():
                writers = ", ".join(self.topology.writers(database))
                raise DatabaseMissing(
                    f"database {database!r} ({path}) does not exist yet; its owner ({writers}) "
                    "creates it: start the owner first or run `splitdb init`",
                    database=database,
                    where=str(path),
                )
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"
            conn = sqlite3.connect(
                uri, uri=True, timeout=timeout, isolation_level=None, factory=GuardedConnection
            )
        try:
            if writable:
                conn.execute(f"PRAGMA journal_mode = {spec.journal_mode}")
                conn.execute(f"PRAGMA synchronous = {spec.synchronous}")
            else:
                conn.execute("PRAGMA query_only = 1")
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            # security.html: schema-defined functions and views must not run with our privileges.
            conn.execute("PRAGMA trusted_schema = 0")
            # Reads the file's header: a file that is not SQLite fails here, not at first use.
            conn.execute("PRAGMA schema_version")
        except BaseException:
            conn.close()
            raise
        return conn

    def connections(self) -> list[GuardedConnection]:
        """The open connections this manager handed out to the calling thread, in no set order."""
        me = threading.get_ident()
        with self._lock:
            held = list(self._handed_out)
        return [c for c in held if c.open and c.thread == me]

    def observe(self, when: str, *, changed_only: bool = False) -> list[ConnectionSettings]:
        """Read back the settings of this thread's open connections and report each.

        Each goes to `on_settings` (if set) with `when`; with `changed_only`, only those that
        changed since they were last read. Other threads' connections report themselves (after
        a transaction, and when closed): sqlite3 lets only the opening thread use a connection.
        """
        found = []
        for conn in self.connections():
            if self._reporter is None:
                try:
                    found.append(conn.settings())
                except sqlite3.Error:
                    continue
            else:
                reported = conn.report_settings(when, changed_only=changed_only)
                if reported is not None:
                    found.append(reported)
        return found

    def initialize(self) -> None:
        """Create every database file with its settings, each through one of its owners, and
        the schema of each reference database (a user's database gets no tables: its own
        processes create them)."""
        for database in self.topology.databases:
            owner = self.topology.writers(database)[0]
            conn = self.connect(owner, database)
            try:
                if has_schema(database):
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


def _is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code): try again later, not a bad file."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


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
    if isinstance(conn, GuardedConnection):
        conn.after_transaction()


def declare_busy_timeout(conn: sqlite3.Connection, ms: int, *, reason: str) -> None:
    """Set this connection's busy_timeout to `ms` on purpose, unlike its topology, saying why.

    The harness's settings check accepts a declared busy_timeout and lists it with `reason`; an
    undeclared one that differs from the topology fails it. Only busy_timeout can be declared:
    journal_mode and synchronous are the file's durability contract.
    """
    conn.execute(f"PRAGMA busy_timeout = {int(ms)}")
    if isinstance(conn, GuardedConnection):
        conn.declared_busy_timeout = (int(ms), reason)


def grants_table(topology: Topology) -> Mapping[str, Mapping[str, str]]:
    """role -> database -> 'rw' | 'ro' | '-' for display."""
    return {
        role: {db: topology.grants[role].get(db, "-") for db in topology.databases}
        for role in topology.roles
    }
