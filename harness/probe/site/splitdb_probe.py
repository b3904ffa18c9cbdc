"""The probe: a Python process's own `sqlite3`, made to report what it does, with no change to
the program. Standard library only; Python 3.10 or newer (the child may run any interpreter or
venv, one where splitdb is not installed: a Datasette venv, Debian's python3).

How it gets in (the route, and why each step):

1. The harness prepends this directory (`harness/probe/site/`) to the child's PYTHONPATH and sets
   `SPLITDB_PROBE_EVENTS` to a file. Every Python started with that environment imports
   `sitecustomize` at start-up, finds ours first, and ours calls `install()` here, then runs the
   `sitecustomize` it shadows (Debian's, a user's). Children of the child inherit the
   environment, so they are probed too. `python -I`, `-E` or `-S` skip all of this: such a
   process is not observed, and the harness says so instead of reporting nothing as "clean".
2. `install()` replaces `sqlite3.connect` and `sqlite3.dbapi2.connect` (SQLAlchemy looks up
   `sqlite3.dbapi2.connect` when it connects; sqlite-utils calls `sqlite3.connect`) with
   `connect()`, which passes `factory=` a subclass of whatever factory the caller gave. The
   subclass is built as `class P(CallerFactory, ProbeConnection)`, so `ProbeConnection` sits
   right above `sqlite3.Connection` in the method order: a caller's own `execute` that calls
   `super().execute` reaches ours exactly once. Cursors get the same treatment in `cursor()`.
3. The subclass overrides `execute`, `executemany`, `executescript` (the C `Connection.execute`
   never calls a Python `Cursor.execute`, so each is instrumented itself), `commit` and
   `__exit__` (a COMMIT can be busy; `with conn:` commits in C without calling `commit()`).
   It keeps `sqlite3`'s behaviour: `conn.execute` makes its cursor with
   `Connection.cursor(conn, ...)`, which copies `row_factory`, as the C method does. The
   connection's journal mode is read from the file's header (see `_journal_mode`): asking
   SQLite could wait a whole busy timeout behind another process's exclusive lock.
4. Classification happens at prepare time, in an authorizer (`set_authorizer`) that always
   allows: it only notes the actions SQLite asks about (INSERT, CREATE_TABLE, PRAGMA with its
   value, READ with its schema...). `sqlite3` caches prepared statements, so the authorizer runs
   on a text's first prepare only; each connection keeps a dict SQL text -> counters, filled on
   the first execute of that text. A program's own `set_authorizer` is chained: ours runs
   first, theirs decides. (The probe sets no trace callback, so the program's own
   `set_trace_callback` is untouched.) Schema names map to files: "main" is the connection's
   file, an ATTACHed alias is read back with `PRAGMA database_list` after each ATTACH or DETACH,
   "temp" is ignored.
5. A connection made without the patched `connect` (`sqlite3.Connection(path)` called
   directly, a factory that is not a class) is caught by an audit hook on
   `sqlite3.connect/handle`: it is reported with `"instrumented": false` and gets an
   authorizer, so its writes are still seen (as prepares of a write, without the statement
   text), though not its errors or its reads.

Cost: an event per execute would cost more than the statement. Counters live in memory per
(connection, statement); the first execution of each distinct write statement is written at
once (a process killed with SIGKILL still leaves evidence of every kind of write it made), and
the counts are flushed at most once a second (checked on the next call), at exit and on SIGTERM
when the program has no SIGTERM handler of its own. The hot path takes no lock: only one thread
writes a connection's counters as long as the program uses each connection from one thread at a
time (sqlite3's default); the flush only reads them. Statement texts are normalised (whitespace
collapsed, literals replaced by `?`, at most 300 characters) so a program that formats values
into its SQL yields one statement, not one per value.

Busy time: a busy or locked error is reported with the time the call took, which for a busy
error is the time spent in the busy handler before giving up. The busy handler's waits inside
calls that finally succeeded cannot be told apart from the statement's own work from Python; so
each write statement carries the total and the longest duration of its executions (`dur_us`,
`max_us`), and a summary can show the slowest ones.

Events: JSON lines appended to `$SPLITDB_PROBE_EVENTS`, one `os.write` per line on an O_APPEND
descriptor, so processes and threads sharing the file never split a line. Every event has `t`
(monotonic ns), `wall`, `role` and `process` (from SPLITDB_ROLE and SPLITDB_PROCESS), `pid`
and `op`: `probe_start`, `db_connect`, `db_write`, `db_error`, `db_reads`, `probe_exit`
(harness/probe/observed.py reads them). `db_connect` and `db_error` carry `count`: 1 for each
of the first 20 of a kind, then the number since the last flush (a server that connects per
request, or a busy storm, must not write a line per occurrence).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import signal
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import Literal, Self

FLUSH_INTERVAL_S = 1.0
STMT_MAX_CHARS = 300
# Distinct SQL texts remembered per connection: past it, new texts are classified on each
# execute (a program that formats values into its SQL would otherwise grow the dict forever).
RAW_TEXTS_MAX = 2048
# Authorizer calls kept between two first executes (re-prepares of cached statements add some).
PENDING_MAX = 10_000
# Errors written one event each per (file, outcome, code, statement); the rest are counted and
# written once per flush, so a busy storm cannot flood the events file.
ERRORS_IN_FULL = 20
# The same for connections per (file, mode, journal mode, instrumented): a server that connects
# once per request must not write a line per request.
CONNECTS_IN_FULL = 20

SQLITE_OK = 0
SQLITE_PRAGMA = 19
SQLITE_READ = 20
SQLITE_SELECT = 21
SQLITE_TRANSACTION = 22
SQLITE_ATTACH = 24
SQLITE_DETACH = 25
SQLITE_ALTER_TABLE = 26
SQLITE_SAVEPOINT = 32

# Authorizer action code -> (name, which argument names the table: 1 or 2).
WRITE_ACTIONS: Mapping[int, tuple[str, int]] = {
    1: ("CREATE_INDEX", 2),
    2: ("CREATE_TABLE", 1),
    3: ("CREATE_TEMP_INDEX", 2),
    4: ("CREATE_TEMP_TABLE", 1),
    5: ("CREATE_TEMP_TRIGGER", 2),
    6: ("CREATE_TEMP_VIEW", 1),
    7: ("CREATE_TRIGGER", 2),
    8: ("CREATE_VIEW", 1),
    9: ("DELETE", 1),
    10: ("DROP_INDEX", 2),
    11: ("DROP_TABLE", 1),
    12: ("DROP_TEMP_INDEX", 2),
    13: ("DROP_TEMP_TABLE", 1),
    14: ("DROP_TEMP_TRIGGER", 2),
    15: ("DROP_TEMP_VIEW", 1),
    16: ("DROP_TRIGGER", 2),
    17: ("DROP_VIEW", 1),
    18: ("INSERT", 1),
    23: ("UPDATE", 1),
    SQLITE_ALTER_TABLE: ("ALTER_TABLE", 2),  # its first argument is the schema
    27: ("REINDEX", 1),
    28: ("ANALYZE", 1),
    29: ("CREATE_VTABLE", 1),
    30: ("DROP_VTABLE", 1),
}

# PRAGMAs whose argument names something to look at, not a new value: never a write.
QUERY_PRAGMAS = frozenset(
    {
        "collation_list",
        "compile_options",
        "data_version",
        "database_list",
        "foreign_key_check",
        "foreign_key_list",
        "freelist_count",
        "function_list",
        "index_info",
        "index_list",
        "index_xinfo",
        "integrity_check",
        "lock_status",
        "module_list",
        "page_count",
        "pragma_list",
        "quick_check",
        "stats",
        "table_info",
        "table_list",
        "table_xinfo",
    }
)
# PRAGMAs that set something of this connection only, never of the file: a reader may set them
# (sqlite-utils turns on recursive_triggers on every connection it opens).
CONNECTION_PRAGMAS = frozenset(
    {
        "analysis_limit",
        "automatic_index",
        "busy_timeout",
        "cache_size",
        "cache_spill",
        "case_sensitive_like",
        "cell_size_check",
        "checkpoint_fullfsync",
        "defer_foreign_keys",
        "foreign_keys",
        "fullfsync",
        "hard_heap_limit",
        "ignore_check_constraints",
        "legacy_alter_table",
        "locking_mode",
        "mmap_size",
        "query_only",
        "read_uncommitted",
        "recursive_triggers",
        "reverse_unordered_selects",
        "secure_delete",
        "short_column_names",
        "soft_heap_limit",
        "synchronous",
        "temp_store",
        "temp_store_directory",
        "threads",
        "trusted_schema",
        "wal_autocheckpoint",
    }
)
# PRAGMAs that change the file even without a value.
ACTING_PRAGMAS = frozenset({"incremental_vacuum", "optimize", "wal_checkpoint"})

_WRITE_WORDS = frozenset(
    {"INSERT", "REPLACE", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "VACUUM", "REINDEX"}
)
_CONTROL_WORDS = frozenset({"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"})
_LEADING_WORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*(\w+)", re.S)
_PRAGMA_TEXT = re.compile(
    r"\s*PRAGMA\s+(?:(\w+)\s*\.\s*)?(\w+)\s*(?:=\s*(.*?)|\(\s*(.*?)\s*\))?\s*;?\s*$",
    re.I | re.S,
)
_WRITE_CONTROL = re.compile(r"\s*(?:COMMIT|END|RELEASE|BEGIN\s+(?:IMMEDIATE|EXCLUSIVE))\b", re.I)
_WRITE_IN_WITH = re.compile(r"\b(INSERT|REPLACE|UPDATE|DELETE)\b", re.I)
_LITERALS = re.compile(
    r'"(?:[^"]|"")*"|\[[^\]]*\]|`(?:[^`]|``)*`'  # quoted identifiers: kept as they are
    r"|[xX]'[0-9a-fA-F]*'"  # blob
    r"|'(?:[^']|'')*'"  # string
    r"|(?<![\w.$])(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w])"  # number
)


def _literal(match: re.Match[str]) -> str:
    text = match.group(0)
    return text if text[0] in '"[`' else "?"


_SPACES = re.compile(r"\s+")


# --- pure helpers (unit-tested in the fast lane) ----------------------------------------------


class Classification(NamedTuple):
    """What a statement does, from the authorizer's calls at prepare (or from its text).

    `writes`: (schema, action, table) per write, e.g. ("main", "INSERT", "t"); `reads`: schemas
    it reads; `error_kind`: "write", "read" or "unknown", for a db_error of this statement;
    `attach`: it is an ATTACH or DETACH (the schema -> file map changes).
    """

    writes: tuple[tuple[str, str, str | None], ...]
    reads: tuple[str, ...]
    error_kind: str
    attach: bool


def pragma_changes_state(name: str | None, value: str | None) -> bool:
    """True for `PRAGMA journal_mode=WAL`, `wal_checkpoint`; False for `table_info(t)`."""
    if not name:
        return False
    name = name.lower()
    return name in ACTING_PRAGMAS or (
        value is not None and name not in QUERY_PRAGMAS and name not in CONNECTION_PRAGMAS
    )


def write_of(
    action: int, arg1: str | None, arg2: str | None, schema: str | None
) -> tuple[str, str, str | None] | None:
    """(schema, action, table) when an authorizer call is a write, else None."""
    named = WRITE_ACTIONS.get(action)
    if named is not None:
        name, which = named
        table = arg1 if which == 1 else arg2
        where = arg1 if action == SQLITE_ALTER_TABLE else schema
        return (where or "main", name, table)
    if action == SQLITE_PRAGMA and pragma_changes_state(arg1, arg2):
        return (schema or "main", f"PRAGMA {(arg1 or '').lower()}", None)
    return None


def _internal(table: str | None) -> bool:
    return bool(table) and str(table).lower().startswith("sqlite_")


def classify(
    calls: Sequence[tuple[int, str | None, str | None, str | None]], sql: str
) -> Classification:
    """Classify a statement from its authorizer calls (action, arg1, arg2, schema).

    Writes to SQLite's own tables (sqlite_master on CREATE TABLE, sqlite_stat1 on ANALYZE)
    count only when nothing else is written (`DELETE FROM sqlite_sequence`). The implicit BEGIN
    that sqlite3 prepares before a DML statement appears among the calls and is ignored.
    With no calls at all (the text was prepared before the probe saw it, or its kind has no
    authorizer action, such as VACUUM) the text decides: `classify_text`.
    """
    if not calls:
        return classify_text(sql)
    writes: dict[tuple[str, str, str | None], None] = {}
    internal: dict[tuple[str, str, str | None], None] = {}
    reads: dict[str, None] = {}
    internal_reads: dict[str, None] = {}
    control = selects = attach = False
    for action, arg1, arg2, schema in calls:
        write = write_of(action, arg1, arg2, schema)
        if write is not None:
            (internal if _internal(write[2]) else writes)[write] = None
        elif action == SQLITE_READ:
            (internal_reads if _internal(arg1) else reads)[schema or "main"] = None
        elif action == SQLITE_SELECT:
            selects = True
        elif action in (SQLITE_TRANSACTION, SQLITE_SAVEPOINT):
            control = True
        elif action in (SQLITE_ATTACH, SQLITE_DETACH):
            attach = True
    if any(action == "CREATE_INDEX" for _, action, _ in writes):
        # CREATE INDEX asks for REINDEX of the index it builds: one write, not two.
        writes = {w: None for w in writes if w[1] != "REINDEX"}
    found = tuple(writes or internal)
    read = tuple(reads or ({} if found else internal_reads))
    if found:
        kind = "write"
    elif read or selects:
        kind = "read"
    elif control and _WRITE_CONTROL.match(sql):
        kind = "write"
    else:
        kind = "unknown"
    return Classification(found, read, kind, attach)


def classify_text(sql: str) -> Classification:
    """Classify by the statement's first word: the fallback when the authorizer saw nothing."""
    match = _LEADING_WORD.match(sql)
    word = match.group(1).upper() if match else ""
    if word == "PRAGMA":
        pragma = _PRAGMA_TEXT.match(sql)
        if pragma is not None:
            schema, name, value, arg = pragma.groups()
            write = write_of(SQLITE_PRAGMA, name, value if value is not None else arg, schema)
            if write is not None:
                return Classification((write,), (), "write", False)
        return Classification((), (), "read", False)
    if word in _WRITE_WORDS or (word == "WITH" and _WRITE_IN_WITH.search(sql)):
        action = {"REPLACE": "INSERT"}.get(word, word if word != "WITH" else "WITH")
        return Classification((("main", action, None),), (), "write", False)
    if word == "ANALYZE":
        return Classification((("main", "ANALYZE", None),), (), "write", False)
    if word in ("ATTACH", "DETACH"):
        return Classification((), (), "unknown", True)
    if word in _CONTROL_WORDS:
        return Classification((), (), "write" if _WRITE_CONTROL.match(sql) else "unknown", False)
    if word in ("SELECT", "VALUES", "WITH", "EXPLAIN"):
        return Classification((), ("main",), "read", False)
    return Classification((), (), "unknown", False)


def normalize_sql(sql: str) -> str:
    """The statement as events name it: literals as `?` (not in a PRAGMA, whose value is the
    point), whitespace collapsed, at most 300 characters."""
    text = str(sql)
    match = _LEADING_WORD.match(text)
    if not (match and match.group(1).upper() == "PRAGMA"):
        text = _LITERALS.sub(_literal, text)
    text = _SPACES.sub(" ", text).strip()
    if len(text) > STMT_MAX_CHARS:
        text = text[: STMT_MAX_CHARS - 1] + "…"
    return text


def describe_target(database: Any, uri: bool) -> tuple[str, str, dict[str, str]]:
    """(file, mode, URI parameters) of a connect call's database argument.

    file: the absolute resolved path, or ":memory:"; mode: "ro", "rw", "rwc", "memory" or
    "immutable", from the URI's `mode=` and `immutable=` when `uri` is true, else "rwc".
    """
    name = os.fsdecode(database) if isinstance(database, (bytes, os.PathLike)) else str(database)
    flags: dict[str, str] = {}
    path = name
    mode = "rwc"
    if uri and name.startswith("file:"):
        parts = urlsplit(name)
        path = unquote(parts.path)
        flags = dict(parse_qsl(parts.query, keep_blank_values=True))
        mode = flags.get("mode", "rwc")
        if flags.get("immutable", "0").lower() in ("1", "true", "yes", "on"):
            mode = "immutable"
    if path in ("", ":memory:") or mode == "memory":
        return ":memory:", "memory", flags
    return os.path.realpath(path), mode, flags


def outcome_of(code: int | None, message: str) -> str:
    """Outcome of an sqlite3 error: "busy" (SQLITE_BUSY and its extended codes), "locked"
    (SQLITE_LOCKED and its extended codes) or "error"."""
    if code is not None:
        primary = code & 0xFF
        return "busy" if primary == 5 else "locked" if primary == 6 else "error"
    # Python 3.10 has no sqlite_errorcode: SQLITE_BUSY's message is "database is locked".
    if message.startswith("database is locked"):
        return "busy"
    if "is locked" in message:
        return "locked"
    return "error"


# --- the events file --------------------------------------------------------------------------

_fd = -1
_pid = os.getpid()
_role = ""
_process = ""
_lock = threading.Lock()
_next_flush = float("inf")  # no flushes until install()
_installed = False
_finished = False
_complained = False
_original_connect: Callable[..., sqlite3.Connection] = sqlite3.connect


def _emit(op: str, fields: Mapping[str, Any]) -> None:
    if _fd < 0:
        return
    event: dict[str, Any] = {
        "t": time.monotonic_ns(),
        "wall": time.time(),
        "role": _role,
        "process": _process,
        "pid": _pid,
        "op": op,
    }
    event.update(fields)
    line = json.dumps(event, separators=(",", ":"), default=str) + "\n"
    with contextlib.suppress(OSError):  # a full disk must not stop the program
        os.write(_fd, line.encode("utf-8", "replace"))


def _complain(exc: BaseException) -> None:
    """A fault of the probe itself: one line on stderr, once; the program goes on."""
    global _complained
    if _complained:
        return
    _complained = True
    with contextlib.suppress(Exception):
        sys.stderr.write(
            f"splitdb probe: internal error, some events may be missing: "
            f"{type(exc).__name__}: {exc}\n"
        )


# --- per-connection state -----------------------------------------------------------------------
# An entry is a list, for speed on the hot path: [count, rows, dur_s, max_s, is_write, meta,
# reported_count, reported_rows, reported_dur_s]. The hot path writes 0-3 only; the flush (under
# _lock) writes 6-8 only. meta = (stmt, write targets ((file, schema), ...), files read,
# actions, tables, error kind, instrumented).
COUNT, ROWS, DUR, MAX, IS_WRITE, META, R_COUNT, R_ROWS, R_DUR = range(9)


class _State:
    """What the probe knows of one connection (or, uninstrumented, of one file)."""

    __slots__ = ("authorizer", "by_key", "db", "entries", "files", "pending", "raw", "ref")

    def __init__(self, ref: Callable[[], object] | None, db: str) -> None:
        self.ref = ref
        self.db = db
        self.files: dict[str, str] = {"main": db}
        self.raw: dict[str, list[Any]] = {}
        self.entries: list[list[Any]] = []
        self.by_key: dict[tuple[Any, ...], list[Any]] = {}
        self.pending: list[tuple[int, str | None, str | None, str | None]] = []
        self.authorizer: Callable[..., Any] | None = None

    def dead(self) -> bool:
        return self.ref is not None and self.ref() is None

    def file(self, schema: str) -> str:
        return self.files.get(schema) or f"?{schema}"


_states: list[_State] = []
_uninstrumented: dict[str, _State] = {}
_seen: set[tuple[str, str, str | None]] = set()
# (file, outcome, code, stmt) -> [errors so far, count not yet written, their dur_s and max_s,
# the event's fields]
_errors: dict[tuple[Any, ...], list[Any]] = {}
_totals = {"statements": 0, "errors": 0}
# (file, mode, journal mode, instrumented) -> [connections so far, count not yet written, fields]
_connects: dict[tuple[Any, ...], list[Any]] = {}


def _connected(fields: dict[str, Any], *, audit_hook: bool = False) -> None:
    """A db_connect event: written at once for the first CONNECTS_IN_FULL of a kind, then
    counted and written by the flush. From the audit hook the lock is only tried, never waited
    for (the hook may run in a thread that holds it); without it the event is written whole."""
    acquired = _lock.acquire(timeout=1.0) if audit_hook else _lock.acquire()
    if not acquired:
        _emit("db_connect", {**fields, "count": 1})
        return
    try:
        key = (fields["db"], fields["mode"], fields["journal_mode"], fields["instrumented"])
        seen = _connects.get(key)
        if seen is None:
            seen = _connects[key] = [0, 0, None]
        seen[0] += 1
        if seen[0] <= CONNECTS_IN_FULL:
            _emit("db_connect", {**fields, "count": 1})
        else:
            seen[1] += 1
            seen[2] = fields
    finally:
        _lock.release()


def _authorizer_for(state: _State) -> Callable[..., Any]:
    """The authorizer of an instrumented connection: notes the call, never denies; a program's
    own authorizer (set with set_authorizer) is called next and decides."""
    pending = state.pending
    note = pending.append
    user: list[Callable[..., Any] | None] = [None]

    def authorizer(
        action: int, arg1: str | None, arg2: str | None, schema: str | None, source: str | None
    ) -> Any:
        if len(pending) < PENDING_MAX:
            note((action, arg1, arg2, schema))
        theirs = user[0]
        if theirs is not None:
            return theirs(action, arg1, arg2, schema, source)
        return SQLITE_OK

    authorizer.user = user  # type: ignore[attr-defined]
    return authorizer


def _new_entry(meta: tuple[Any, ...], is_write: bool) -> list[Any]:
    return [0, 0, 0.0, 0.0, is_write, meta, 0, 0, 0.0]


def _learn(state: _State, cur: sqlite3.Cursor, sql: str, dur: float, script: bool) -> None:
    """After a first execute of `sql`: classify it, count it, and write its first event."""
    calls = list(state.pending)
    state.pending.clear()
    found = classify(calls, sql)
    if found.attach:
        conn = state.ref() if state.ref is not None else None
        if isinstance(conn, sqlite3.Connection):
            _refresh_files(state, conn)
        state.raw.clear()  # statements naming an alias now mean another file
    stmt = normalize_sql(sql)
    targets = tuple(sorted({(state.file(s), s) for s, _, _ in found.writes if s != "temp"}))
    reads = tuple(sorted({state.file(s) for s in found.reads if s != "temp"}))
    key = (stmt, targets, reads)
    entry = state.by_key.get(key)
    if entry is None:
        writes = [w for w in found.writes if w[0] != "temp"]
        actions = tuple(sorted({action for _, action, _ in writes}))
        tables = tuple(sorted({table for _, _, table in writes if table}))
        meta = (stmt, targets, reads, actions, tables, found.error_kind, True)
        entry = _new_entry(meta, bool(targets))
        state.by_key[key] = entry
        state.entries.append(entry)
    if not script and not found.attach and len(state.raw) < RAW_TEXTS_MAX:
        state.raw[sql] = entry
    rows = cur.rowcount
    entry[COUNT] += 1
    if entry[IS_WRITE]:
        entry[DUR] += dur
        if dur > entry[MAX]:
            entry[MAX] = dur
        if rows > 0:
            entry[ROWS] += rows
        _first_events(entry, max(rows, 0), dur)


def _first_events(entry: list[Any], rows: int, dur: float) -> None:
    stmt, targets, _, actions, tables, _, instrumented = entry[META]
    with _lock:
        new = [(db, schema) for db, schema in targets if (db, schema, stmt) not in _seen]
        if not new:
            return
        whole = len(new) == len(targets)
        for db, schema in new:
            _seen.add((db, schema, stmt))
            _emit(
                "db_write",
                {
                    "db": db,
                    "schema": schema,
                    "stmt": stmt,
                    "actions": list(actions),
                    "tables": list(tables),
                    "count": 1 if whole else 0,
                    "rows": rows if whole else 0,
                    "dur_us": round(dur * 1e6) if whole else 0,
                    "max_us": round(entry[MAX] * 1e6),
                    "first": True,
                    "instrumented": instrumented,
                },
            )
        if whole:
            if instrumented:
                _totals["statements"] += 1
            entry[R_COUNT] += 1
            entry[R_ROWS] += rows
            entry[R_DUR] += dur


def _refresh_files(state: _State, conn: sqlite3.Connection) -> None:
    """The schema -> file map, from SQLite itself (after an ATTACH or a DETACH)."""
    files = {"main": state.db}
    try:
        cur = _conn_cursor(conn, sqlite3.Cursor)
        cur.row_factory = None
        for _, name, path in _cur_execute(cur, "PRAGMA database_list").fetchall():
            name = name.decode() if isinstance(name, bytes) else str(name)
            path = path.decode() if isinstance(path, bytes) else str(path or "")
            if name not in ("main", "temp"):
                files[name] = os.path.realpath(path) if path else ":memory:"
        cur.close()
    except Exception:
        pass
    state.files = files


def _failed(
    state: _State | None,
    entry: list[Any] | None,
    sql: str,
    exc: BaseException,
    t0: float,
    kind: str | None = None,
) -> None:
    """Record an sqlite3.Error that escapes a call; the caller re-raises it unchanged."""
    dur = _perf() - t0
    if state is None:
        return
    try:
        if entry is not None:
            stmt, targets, reads, _, _, error_kind, _ = entry[META]
        else:
            found = classify(list(state.pending), sql) if kind is None else None
            stmt = normalize_sql(sql)
            targets = tuple((state.file(s), s) for s, _, _ in found.writes) if found else ()
            reads = tuple(state.file(s) for s in found.reads) if found else ()
            error_kind = found.error_kind if found else kind
        db = targets[0][0] if targets else reads[0] if reads else state.db
        code = getattr(exc, "sqlite_errorcode", None)
        outcome = outcome_of(code, str(exc))
        key = (db, outcome, code, stmt)
        with _lock:
            _totals["errors"] += 1
            seen = _errors.get(key)
            if seen is None:
                seen = _errors[key] = [0, 0, 0.0, 0.0, None]
            seen[0] += 1
            fields = {
                "db": db,
                "outcome": outcome,
                "code": code,
                "name": getattr(exc, "sqlite_errorname", None),
                "message": str(exc)[:200],
                "stmt": stmt,
                "kind": error_kind,
            }
            if seen[0] <= ERRORS_IN_FULL:
                _emit("db_error", {**fields, "count": 1, "dur_us": round(dur * 1e6)})
            else:
                seen[1] += 1
                seen[2] += dur
                seen[3] = max(seen[3], dur)
                seen[4] = fields
    except Exception as error:
        _complain(error)


# --- flushing -----------------------------------------------------------------------------------


def _flush(final: bool = False) -> None:
    """Write the counts gathered since the last flush; at most one thread at a time."""
    global _next_flush
    if _to_adopt:  # before taking the lock: adopting takes no lock, but runs SQL
        _adopt_pending()
    acquired = _lock.acquire(timeout=2.0) if final else _lock.acquire(blocking=False)
    if not acquired:
        return
    try:
        _next_flush = _perf() + FLUSH_INTERVAL_S
        _flush_locked()
    except Exception as exc:
        _complain(exc)
    finally:
        _lock.release()


def _flush_locked() -> None:
    writes: dict[tuple[str, str, str | None], list[Any]] = {}
    reads: dict[str, int] = {}
    gone: list[_State] = []
    for state in list(_states):  # others append without the lock: iterate a copy
        dead = state.dead()  # before reading: a connection dying meanwhile is folded next time
        for entry in list(state.entries):
            count, rows, dur = entry[COUNT], entry[ROWS], entry[DUR]
            new = count - entry[R_COUNT]
            if new <= 0:
                continue
            new_rows, new_dur = rows - entry[R_ROWS], dur - entry[R_DUR]
            entry[R_COUNT], entry[R_ROWS], entry[R_DUR] = count, rows, dur
            stmt, targets, files_read, actions, tables, _, instrumented = entry[META]
            if instrumented:
                _totals["statements"] += new
            if entry[IS_WRITE]:
                for db, schema in targets:
                    total = writes.get((db, schema, stmt))
                    if total is None:
                        total = writes[(db, schema, stmt)] = [0, 0, 0.0, 0.0, set(), set(), True]
                    total[0] += new
                    total[1] += new_rows
                    total[2] += new_dur
                    total[3] = max(total[3], entry[MAX])
                    total[4].update(actions)
                    total[5].update(tables)
                    total[6] = instrumented
            else:
                for db in files_read:
                    reads[db] = reads.get(db, 0) + new
        if dead:
            gone.append(state)
    for state in gone:
        _states.remove(state)
    for (db, schema, stmt), (count, rows, dur, longest, actions, tables, inst) in writes.items():
        _emit(
            "db_write",
            {
                "db": db,
                "schema": schema,
                "stmt": stmt,
                "actions": sorted(actions),
                "tables": sorted(tables),
                "count": count,
                "rows": rows,
                "dur_us": round(dur * 1e6),
                "max_us": round(longest * 1e6),
                "first": False,
                "instrumented": inst,
            },
        )
    for db, count in reads.items():
        _emit("db_reads", {"db": db, "count": count})
    for seen in _connects.values():
        if seen[1]:
            _emit("db_connect", {**seen[2], "count": seen[1]})
            seen[1] = 0
    for seen in _errors.values():
        if seen[1]:
            _emit(
                "db_error",
                {
                    **seen[4],
                    "count": seen[1],
                    "dur_us": round(seen[2] * 1e6),
                    "max_us": round(seen[3] * 1e6),
                },
            )
            seen[1], seen[2], seen[3] = 0, 0.0, 0.0


def _finish(reason: str) -> None:
    """The last flush and `probe_exit`, once per process."""
    global _finished
    if _finished or _fd < 0:
        return
    _finished = True
    _flush(final=True)
    _emit(
        "probe_exit",
        {"statements": _totals["statements"], "errors": _totals["errors"], "reason": reason},
    )


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Installed only where SIGTERM had its default action: flush, then die of SIGTERM as the
    program would have. Called by a handler the program installed later (chaining to the one
    it replaced), it only flushes: what follows is that handler's business."""
    try:
        _finish("SIGTERM")
    except Exception as exc:
        _complain(exc)
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _after_fork_in_child() -> None:
    """A forked child is a process of its own: fresh lock, its pid, nothing inherited counted."""
    global _lock, _pid, _next_flush, _finished
    _lock = threading.Lock()
    _pid = os.getpid()
    _finished = False
    _next_flush = _perf() + FLUSH_INTERVAL_S
    for state in _states:
        for entry in state.entries:
            entry[R_COUNT], entry[R_ROWS], entry[R_DUR] = entry[COUNT], entry[ROWS], entry[DUR]
    _seen.clear()
    _errors.clear()
    _connects.clear()
    _totals["statements"] = _totals["errors"] = 0


# --- the instrumented classes -----------------------------------------------------------------

_perf = time.perf_counter
_Error = sqlite3.Error
_conn_cursor = sqlite3.Connection.cursor
_conn_commit = sqlite3.Connection.commit
_conn_exit = sqlite3.Connection.__exit__
_conn_set_authorizer = sqlite3.Connection.set_authorizer
_cur_execute = sqlite3.Cursor.execute
_cur_executemany = sqlite3.Cursor.executemany
_cur_executescript = sqlite3.Cursor.executescript
_NO_TEXTS: Mapping[str, list[Any]] = {}


def _first(
    state: _State | None,
    cur: Any,
    sql: str,
    call: Callable[..., Any],
    args: tuple[Any, ...],
    script: bool,
) -> Any:
    """A text this connection has not classified yet (or a script): run `call(*args)` with the
    authorizer noting, then learn from it. (The callers pass the function and its arguments,
    not a closure: a lambda in execute would make its variables cells, allocated on every
    call, which costs the hot path about 5%.)"""
    if state is None:  # a connection whose set-up failed: plain sqlite3
        call(*args)
        return cur
    state.pending.clear()
    t0 = _perf()
    try:
        call(*args)
    except _Error as exc:
        _failed(state, None, sql, exc, t0)
        raise
    dur = _perf() - t0
    try:
        _learn(state, cur, sql, dur, script)
    except Exception as exc:
        _complain(exc)
    if t0 > _next_flush:
        _flush()
    return cur


def _run(
    state: _State | None,
    raw: Mapping[str, list[Any]],
    cur: Any,
    sql: str,
    call: Callable[..., Any],
    args: tuple[Any, ...],
) -> Any:
    """executemany's path (execute inlines the same, for speed)."""
    try:
        entry = raw.get(sql)
    except TypeError:  # not a str: sqlite3 raises its own error
        entry = None
    if entry is None:
        return _first(state, cur, sql, call, args, False)
    t0 = _perf()
    try:
        call(*args)
    except _Error as exc:
        _failed(state, entry, sql, exc, t0)
        raise
    entry[COUNT] += 1
    if entry[IS_WRITE]:
        dur = _perf() - t0
        entry[DUR] += dur
        if dur > entry[MAX]:
            entry[MAX] = dur
        rows = cur.rowcount
        if rows > 0:
            entry[ROWS] += rows
    if t0 > _next_flush:
        _flush()
    return cur


class ProbeCursor(sqlite3.Cursor):
    """A cursor that counts, times and classifies its statements (see the module docstring)."""

    __slots__ = ()

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        conn: Any = self.connection
        try:
            entry = conn._sdbp_raw.get(sql)
        except TypeError:
            entry = None
        if entry is None:
            args = (self, sql, parameters)
            return _first(conn._sdbp, self, sql, _cur_execute, args, False)  # type: ignore[no-any-return]
        t0 = _perf()
        try:
            _cur_execute(self, sql, parameters)
        except _Error as exc:
            _failed(conn._sdbp, entry, sql, exc, t0)
            raise
        entry[0] += 1
        if entry[4]:
            dur = _perf() - t0
            entry[2] += dur
            if dur > entry[3]:
                entry[3] = dur
            rows = self.rowcount
            if rows > 0:
                entry[1] += rows
        if t0 > _next_flush:
            _flush()
        return self

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Self:
        conn: Any = self.connection
        args = (self, sql, seq_of_parameters)
        return _run(conn._sdbp, conn._sdbp_raw, self, sql, _cur_executemany, args)  # type: ignore[no-any-return]

    def executescript(self, sql_script: str, /) -> Self:
        conn: Any = self.connection
        args = (self, sql_script)
        return _first(conn._sdbp, self, sql_script, _cur_executescript, args, True)  # type: ignore[no-any-return]


class ProbeConnection(sqlite3.Connection):
    """A connection that reports itself (see the module docstring). `connect()` uses it, or a
    subclass of it and the caller's factory."""

    _sdbp: _State | None = None
    _sdbp_raw: Mapping[str, list[Any]] = _NO_TEXTS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            _set_up(self, args, kwargs)
        except Exception as exc:
            _complain(exc)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        factory = args[0] if args else kwargs.get("factory")
        return _conn_cursor(self, _cursor_class(factory))

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        cur = _conn_cursor(self, ProbeCursor)
        try:
            entry = self._sdbp_raw.get(sql)
        except TypeError:
            entry = None
        if entry is None:
            args = (cur, sql, parameters)
            return _first(self._sdbp, cur, sql, _cur_execute, args, False)  # type: ignore[no-any-return]
        t0 = _perf()
        try:
            _cur_execute(cur, sql, parameters)
        except _Error as exc:
            _failed(self._sdbp, entry, sql, exc, t0)
            raise
        entry[0] += 1
        if entry[4]:
            dur = _perf() - t0
            entry[2] += dur
            if dur > entry[3]:
                entry[3] = dur
            rows = cur.rowcount
            if rows > 0:
                entry[1] += rows
        if t0 > _next_flush:
            _flush()
        return cur

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        cur = _conn_cursor(self, ProbeCursor)
        args = (cur, sql, parameters)
        return _run(self._sdbp, self._sdbp_raw, cur, sql, _cur_executemany, args)  # type: ignore[no-any-return]

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        cur = _conn_cursor(self, ProbeCursor)
        args = (cur, sql_script)
        return _first(self._sdbp, cur, sql_script, _cur_executescript, args, True)  # type: ignore[no-any-return]

    def commit(self) -> None:
        t0 = _perf()
        try:
            _conn_commit(self)
        except _Error as exc:
            _failed(self._sdbp, None, "COMMIT", exc, t0, kind="write")
            raise
        if t0 > _next_flush:
            _flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        exc_tb: TracebackType | None,
        /,
    ) -> Literal[False]:
        t0 = _perf()
        try:
            return _conn_exit(self, exc_type, exc_value, exc_tb)
        except _Error as exc:
            stmt, kind = ("COMMIT", "write") if exc_type is None else ("ROLLBACK", "unknown")
            _failed(self._sdbp, None, stmt, exc, t0, kind=kind)
            raise

    def set_authorizer(self, *args: Any, **kwargs: Any) -> None:
        # sqlite3 checks the argument (and a closed connection) exactly as without the probe.
        _conn_set_authorizer(self, *args, **kwargs)
        state = self._sdbp
        if state is None or state.authorizer is None:
            return
        theirs = args[0] if args else next(iter(kwargs.values()), None)
        state.authorizer.user[0] = theirs  # type: ignore[attr-defined]
        _conn_set_authorizer(self, state.authorizer)


_CONNECT_PARAMS = (
    "timeout",
    "detect_types",
    "isolation_level",
    "check_same_thread",
    "factory",
    "cached_statements",
    "uri",
)
_connection_classes: dict[Any, type[ProbeConnection]] = {}
_cursor_classes: dict[Any, type[sqlite3.Cursor]] = {}


def _probe_subclass(factory: Any, mixin: type[Any], cache: dict[Any, Any]) -> Any:
    """`class P(factory, mixin)`, cached per factory; None when that cannot be made."""
    made = cache.get(factory)
    if made is not None:
        return made
    base = mixin.__mro__[1]
    if factory is base:
        made = mixin
    elif isinstance(factory, type) and issubclass(factory, mixin):
        made = factory
    elif isinstance(factory, type) and issubclass(factory, base):
        try:
            made = type(factory.__name__, (factory, mixin), {"__slots__": ()})
        except TypeError:  # a layout that cannot be combined: left uninstrumented
            return None
        made.__module__ = factory.__module__
        made.__qualname__ = factory.__qualname__
    else:
        return None
    if len(cache) < 1000:
        cache[factory] = made
    return made


def _cursor_class(factory: Any) -> Any:
    if factory is None:
        return ProbeCursor
    return _probe_subclass(factory, ProbeCursor, _cursor_classes) or factory


def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
    """`sqlite3.connect`, with the connection class made to report (module docstring)."""
    if len(args) > len(_CONNECT_PARAMS) or any(p in kwargs for p in _CONNECT_PARAMS[: len(args)]):
        return _original_connect(database, *args, **kwargs)  # sqlite3 says what is wrong
    kwargs.update(zip(_CONNECT_PARAMS, args, strict=False))
    probe = _probe_subclass(
        kwargs.get("factory", sqlite3.Connection), ProbeConnection, _connection_classes
    )
    if probe is not None:
        kwargs["factory"] = probe
    return _original_connect(database, **kwargs)


def _journal_mode(db: str) -> str | None:
    """What `PRAGMA journal_mode` answers on a fresh connection to `db`, read from the file's
    header (bytes 18 and 19 are 2 in WAL mode) instead of asked of SQLite: asking takes a
    shared lock, so with another process holding an exclusive one it would wait for the whole
    busy timeout, and it would run a statement on the program's connection. A fresh
    connection is in "wal" or in SQLite's default "delete"; a program's later
    `PRAGMA journal_mode=...` is reported as a write. None: in memory, unreadable, not SQLite."""
    if db == ":memory:":
        return None
    try:
        with open(db, "rb") as file:
            header = file.read(20)
    except OSError:
        return None
    if not header:
        return "delete"  # an empty file: SQLite writes the header on the first write
    if len(header) < 20 or not header.startswith(b"SQLite format 3\0"):
        return None
    return "wal" if 2 in (header[18], header[19]) else "delete"


def _set_up(conn: ProbeConnection, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    database = args[0] if args else kwargs.get("database", "")
    uri = bool(kwargs["uri"] if "uri" in kwargs else len(args) > 7 and args[7])
    db, mode, flags = describe_target(database, uri)
    timeout = kwargs["timeout"] if "timeout" in kwargs else args[1] if len(args) > 1 else 5.0
    journal = _journal_mode(db)
    state = _State(weakref.ref(conn), db)
    state.authorizer = _authorizer_for(state)
    _conn_set_authorizer(conn, state.authorizer)
    conn._sdbp = state
    conn._sdbp_raw = state.raw
    _states.append(state)  # atomic; no lock, so no deadlock if an audit hook runs this
    _connected(
        {
            "db": db,
            "mode": mode,
            "uri": uri,
            "flags": flags,
            "instrumented": True,
            "journal_mode": journal,
            "timeout_s": timeout,
        }
    )


# --- connections made without the patched connect -------------------------------------------

_last_database = threading.local()
# Connections made without the patched connect, waiting for their __init__ to finish: the audit
# event comes from inside it, before the connection can run anything or take an authorizer.
# Each: [connection, its database argument, thread id, attempts].
_to_adopt: list[list[Any]] = []
_adopting = threading.local()
ADOPT_ATTEMPTS = 1000


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "sqlite3.connect/handle":
        try:
            conn = args[0]
            if not isinstance(conn, ProbeConnection):
                database = getattr(_last_database, "value", None)
                _to_adopt.append([conn, database, threading.get_ident(), 0])
                if sys.getprofile() is None:  # never replace a profiler or a debugger's hook
                    sys.setprofile(_profile_once)
        except Exception as exc:
            _complain(exc)
    elif event == "sqlite3.connect":
        _last_database.value = args[0] if args else None
    elif _to_adopt:
        _adopt_pending()


def _profile_once(frame: FrameType, event: str, arg: Any) -> None:
    """The thread's next profile event after the connection's __init__ returned: adopt it now,
    before the program's next call can prepare a statement on it; then step aside."""
    if _adopt_pending():
        sys.setprofile(None)


def _adopt_pending() -> bool:
    """Adopt the waiting connections of this thread that finished __init__; True when none of
    this thread's is left waiting."""
    if getattr(_adopting, "busy", False):
        return False
    _adopting.busy = True
    try:
        me = threading.get_ident()
        left = False
        for item in list(_to_adopt):
            conn, database, thread, attempts = item
            if thread != me:
                continue
            try:
                _adopt(conn, database)
            except sqlite3.ProgrammingError:
                item[3] = attempts + 1
                if item[3] < ADOPT_ATTEMPTS:  # still inside __init__ (or never finished it)
                    left = True
                    continue
            except Exception as exc:
                _complain(exc)
            with contextlib.suppress(ValueError):
                _to_adopt.remove(item)
        return not left
    finally:
        _adopting.busy = False


def _main_file(conn: sqlite3.Connection) -> str | None:
    try:
        cur = _conn_cursor(conn, sqlite3.Cursor)
        cur.row_factory = None
        for _, name, path in _cur_execute(cur, "PRAGMA database_list").fetchall():
            if name == "main":
                cur.close()
                return os.path.realpath(path) if path else ":memory:"
    except Exception:
        pass
    return None


def _adopt(conn: sqlite3.Connection, database: Any) -> None:
    """A connection the patched connect did not make: report it, and see its writes through an
    authorizer of its file's (shared by all such connections to the file). Raises
    ProgrammingError while the connection is still inside its __init__."""
    conn.in_transaction  # noqa: B018 -- raises ProgrammingError until __init__ has finished
    uri = isinstance(database, str) and database.startswith("file:")
    _, mode, flags = describe_target(database if database is not None else "", uri)
    db = _main_file(conn) or ":memory:"
    if db == ":memory:":
        mode = "memory"
    journal = _journal_mode(db)
    # No lock here: this runs from the audit hook, which may fire while the lock is held.
    state = _uninstrumented.get(db)
    if state is None:
        state = _uninstrumented[db] = _State(None, db)
        state.authorizer = _uninstrumented_authorizer(state)
        _states.append(state)
    _conn_set_authorizer(conn, state.authorizer)
    _connected(
        {
            "db": db,
            "mode": mode,
            "uri": None,
            "flags": flags,
            "instrumented": False,
            "journal_mode": journal,
            "timeout_s": None,
        },
        audit_hook=True,
    )


def _uninstrumented_authorizer(state: _State) -> Callable[..., int]:
    """Counts each write an uninstrumented connection prepares (no statement text is known)."""
    last: list[Any] = [None]

    def authorizer(
        action: int, arg1: str | None, arg2: str | None, schema: str | None, source: str | None
    ) -> int:
        try:
            write = write_of(action, arg1, arg2, schema)
            if write is None or write[0] == "temp" or _internal(write[2]):
                last[0] = None
                return SQLITE_OK
            if action == 23 and last[0] == write:  # UPDATE asks once per column
                return SQLITE_OK
            last[0] = write
            entry = state.by_key.get(write)
            if entry is None:
                schema_name, name, table = write
                target = ((state.file(schema_name), schema_name),)
                tables = (table,) if table else ()
                meta = (None, target, (), (name,), tables, "write", False)
                entry = state.by_key[write] = _new_entry(meta, True)
                state.entries.append(entry)
            entry[COUNT] += 1
            if entry[COUNT] == 1:
                _first_events(entry, 0, 0.0)
        except Exception as exc:
            _complain(exc)
        return SQLITE_OK

    return authorizer


# --- install --------------------------------------------------------------------------------------


def install(events: str, *, patch: bool = True) -> bool:
    """Start reporting to the file `events`. With `patch` (what sitecustomize does): replace
    sqlite3.connect, add the audit hook, flush at exit, on SIGTERM (when it has its default
    action) and reset after fork. Without: only `connect()` of this module reports (the
    benchmark uses that). Returns False on a Python older than 3.10."""
    global _fd, _role, _process, _next_flush, _installed, _original_connect, _pid
    if _installed:
        return True
    if sys.version_info < (3, 10):
        return False
    _fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    _role = os.environ.get("SPLITDB_ROLE", "")
    _process = os.environ.get("SPLITDB_PROCESS", "")
    _pid = os.getpid()
    _next_flush = _perf() + FLUSH_INTERVAL_S
    _installed = True
    if patch:
        _original_connect = sqlite3.connect
        wrapper = functools.wraps(_original_connect)(connect)
        sqlite3.connect = wrapper  # type: ignore[assignment]
        sqlite3.dbapi2.connect = wrapper  # type: ignore[assignment]
        sys.addaudithook(_audit)
        atexit.register(_finish, "exit")
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _install_sigterm()
    _emit(
        "probe_start",
        {
            "argv": list(getattr(sys, "orig_argv", sys.argv)),
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "sqlite_version": sqlite3.sqlite_version,
        },
    )
    return True


def _install_sigterm() -> None:
    try:
        if (
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
            and threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):
        pass


def flush() -> None:
    """Write the counts gathered so far now (tests and benchmarks; the probe flushes itself)."""
    _flush(final=True)
