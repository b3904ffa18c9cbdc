"""The storage interfaces (`reference/storage.py`) on PostgreSQL, over psycopg 3.

Each store connects as its role's login role (`reference/pg_access.py`), never the installer's:
the server's grants, not this code, decide what it may touch, and a store opened on a
superuser's connection string refuses to start. The connection string comes from the
environment (`SPLITDB_PG_CONNINFO`, the password in it or in `PGPASSWORD`, which libpq reads)
or from the caller. Unqualified table names resolve through the role's `search_path`.

Connections are in autocommit mode and every transaction is an explicit `BEGIN ... COMMIT`
(`conn.transaction()`): nothing holds a snapshot between calls. A connection found broken is
replaced on the next call.

Ticks are written with binary COPY straight into `ticks` (the fastest of the ways measured by
`tests/benchmarks/pg_tick_insert.py`, see docs/postgres.md). COPY cannot say ON CONFLICT, and a
batch is re-sent only after a COMMIT whose outcome was unclear (the connection broke during it):
if that COMMIT had gone through, the COPY fails with unique_violation (23505), and the batch is
written again with `INSERT ... ON CONFLICT DO NOTHING`, so a re-sent batch is a no-op. Either
way one batch is one transaction: all of it or none.

Crash points (`reference/crashpoints.py`): `txn.begin`, `txn.before_commit` and
`txn.after_commit` in every write transaction, as on SQLite.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import IsolationLevel

from reference import analysis_sql as sql
from reference import crashpoints
from reference.analysis import Bar, Key, SymbolState, Tick, Update
from reference.errors import StoreFailed, StoreSetupError
from reference.requestlog import RequestRecord
from reference.schema import BAR_COLUMNS, TICK_COLUMNS
from reference.storage import (
    AnalysisStore,
    ApiStore,
    LogsSummary,
    Page,
    SymbolRows,
    TickWriter,
    restore_symbol,
)
from reference.tickstore import LAST_KEY, MONITOR, Inserted, TickRow

__all__ = [
    "CONNINFO_ENV",
    "PgAnalysisStore",
    "PgApiStore",
    "PgTickWriter",
    "conninfo_from_env",
    "outcome_of_pg",
    "store_from_env",
]

CONNINFO_ENV = "SPLITDB_PG_CONNINFO"
T = TypeVar("T")
S = TypeVar("S")
Conn = psycopg.Connection[Any]

# SQLSTATE -> the event outcome the processes already report on SQLite.
_OUTCOMES = {
    "55P03": "busy",  # lock_not_available: lock_timeout ran out, SQLite's SQLITE_BUSY
    "53100": "full",  # disk_full
    "42501": "denied",  # insufficient_privilege: the grants refused it
}
UNIQUE_VIOLATION = "23505"

_COLS = ", ".join(TICK_COLUMNS)
# The ticks' PostgreSQL types in column order, for binary COPY (`reference/pg_schema.py`).
_TICK_TYPES = [
    "text",
    "bigint",
    "bigint",
    "bigint",
    "float8",
    "float8",
    "float8",
    "bigint",
    "bigint",
    "float8",
]
COPY_TICKS = f"COPY ticks ({_COLS}) FROM STDIN (FORMAT BINARY)"
INSERT_TICKS = (
    f"INSERT INTO ticks ({_COLS}) SELECT * FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _TICK_TYPES)
    + ") ON CONFLICT DO NOTHING"
)
# The bot's and the agent's statements, written once (reference.tickstore,
# reference.analysis_sql) in psycopg's placeholder style.
LAST_KEY_SQL = sql.for_psycopg(LAST_KEY)
# The agent's statements, written once (reference.analysis_sql) in psycopg's placeholder style.
SYMBOLS_SQL = sql.SYMBOLS
TICKS_AFTER = sql.for_psycopg(sql.TICKS_AFTER)
TICKS_FIRST = sql.for_psycopg(sql.TICKS_FIRST)
BARS_NEWEST = sql.for_psycopg(sql.BARS_NEWEST)
BARS_ALL = sql.for_psycopg(sql.BARS_ALL)
WATERMARK_OF = sql.for_psycopg(sql.WATERMARK_OF)
INDICATOR_VALUES = sql.for_psycopg(sql.INDICATOR_VALUES)
UPSERT_BARS = sql.for_psycopg(sql.UPSERT_BARS)
UPSERT_INDICATORS = sql.for_psycopg(sql.UPSERT_INDICATORS)
UPSERT_WATERMARKS = sql.for_psycopg(sql.UPSERT_WATERMARKS)
LOGS_SUMMARY = sql.LOGS_SUMMARY
COPY_REQUESTS = (
    "COPY request_log (ts_ns, method, path, status, duration_us, client) FROM STDIN (FORMAT BINARY)"
)
_REQUEST_TYPES = ["bigint", "text", "text", "bigint", "bigint", "text"]
# Is this request logged already? Asked only of a batch re-sent after an unclear COMMIT.
_REQUEST_LOGGED = (
    "SELECT EXISTS (SELECT 1 FROM request_log WHERE ts_ns = %s AND method = %s AND path = %s "
    "AND status = %s AND duration_us = %s AND client IS NOT DISTINCT FROM %s)"
)
INDICATOR_COLUMNS = ("symbol", "timeframe", "start_msc", "name", "value")
_TICKS_SQL = (
    f"SELECT {_COLS} FROM ticks "
    "WHERE symbol = %s AND time_msc BETWEEN %s AND %s ORDER BY time_msc, seq LIMIT %s"
)
_LATEST_SQL = (
    f"SELECT {_COLS} FROM ticks WHERE symbol = %s ORDER BY time_msc DESC, seq DESC LIMIT 1"
)
_BARS_SQL = (
    f"SELECT {', '.join(BAR_COLUMNS)} FROM bars "
    "WHERE symbol = %s AND timeframe = %s AND start_msc BETWEEN %s AND %s "
    "ORDER BY start_msc LIMIT %s"
)
_INDICATORS_SQL = (
    f"SELECT {', '.join(INDICATOR_COLUMNS)} FROM indicators "
    "WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s "
    "AND start_msc BETWEEN %(start)s AND %(last)s "
    "AND (%(name)s::text IS NULL OR name = %(name)s) ORDER BY start_msc, name LIMIT %(limit)s"
)
_HAS_TICKS = "SELECT EXISTS (SELECT 1 FROM ticks WHERE symbol = %s)"
_HAS_ANALYSIS = (
    "SELECT EXISTS (SELECT 1 FROM bars WHERE symbol = %(s)s) "
    "OR EXISTS (SELECT 1 FROM indicators WHERE symbol = %(s)s)"
)


def conninfo_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The role's connection string from `SPLITDB_PG_CONNINFO`; StoreSetupError (one line,
    with the fix) when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(CONNINFO_ENV, "").strip()
    if not value:
        raise StoreSetupError(
            f"{CONNINFO_ENV} is not set: give the role's connection string, such as "
            "'host=127.0.0.1 port=5432 dbname=splitdb user=splitdb_bot' (the password in it "
            "or in PGPASSWORD)"
        )
    return value


def store_from_env(make: Callable[[str], S]) -> S:
    """`make(conninfo)`, a store on the role's connection string from `SPLITDB_PG_CONNINFO`;
    StoreSetupError (one line, naming the variable and PGPASSWORD) when it is unset or the
    server cannot be reached with it."""
    conninfo = conninfo_from_env()
    try:
        return make(conninfo)
    except psycopg.Error as exc:
        raise StoreSetupError(
            f"cannot connect to PostgreSQL with {CONNINFO_ENV}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}; "
            "is the server up, and the role's password in it or in PGPASSWORD?"
        ) from exc


def outcome_of_pg(exc: BaseException) -> tuple[str, str | None]:
    """The event outcome of a PostgreSQL error and its SQLSTATE (None when the server sent
    none, e.g. the connection broke)."""
    sqlstate = getattr(exc, "sqlstate", None)
    return _OUTCOMES.get(sqlstate or "", "error"), sqlstate


def _failed(operation: str, database: str, exc: psycopg.Error, *, unclear: bool) -> StoreFailed:
    outcome, code = outcome_of_pg(exc)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # psycopg follows the DB-API as sqlite3 does: OperationalError is what may pass (a lock
    # timeout, a full disk, a connection lost or a server restarting), so on both backends a
    # retry is for it alone.
    transient = isinstance(exc, psycopg.OperationalError)
    return StoreFailed(
        operation, database, outcome, code, detail, unclear=unclear, transient=transient
    )


class _Connection:
    """One autocommit connection as a role's login, reopened when found broken."""

    def __init__(self, conninfo: str, *, application: str, reader: bool = False) -> None:
        self.conninfo = conninfo
        self.application = application
        self.reader = reader
        self._conn: Conn | None = None

    def get(self) -> Conn:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            conn.close()
        conn = psycopg.connect(self.conninfo, autocommit=True, application_name=self.application)
        try:
            row = conn.execute(
                "SELECT rolsuper, current_user FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            if row is None or row[0]:
                raise StoreSetupError(
                    f"{self.application}: connected as superuser {row and row[1]!r}; a store "
                    "connects as its role's login role (reference.pg_access), so the server's "
                    "grants apply: give that role's connection string"
                )
        except BaseException:
            conn.close()
            raise
        if self.reader:
            # Each read is one transaction: a page and its "is the symbol known" see one snapshot.
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.read_only = True
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@contextmanager
def _write(conn: Conn) -> Iterator[None]:
    """One write transaction, passing the crash points every write transaction passes."""
    with conn.transaction():
        crashpoints.reach("txn.begin")
        yield
        crashpoints.reach("txn.before_commit")
    crashpoints.reach("txn.after_commit")


def _run(operation: str, database: str, body: Callable[[], T], *, write: bool = False) -> T:
    """`body`, its psycopg errors as StoreFailed. A write whose connection broke may have
    committed (the break may have come during COMMIT): it is marked unclear."""
    try:
        return body()
    except psycopg.Error as exc:
        unclear = write and isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None
        raise _failed(operation, database, exc, unclear=unclear) from exc


class PgTickWriter:
    """The bot's storage on PostgreSQL (`reference.storage.TickWriter`)."""

    def __init__(self, conninfo: str) -> None:
        self._conn = _Connection(conninfo, application="splitdb-bot")
        self._conn.get()  # a wrong connection string fails at start, not at the first batch

    def append(self, rows: Sequence[TickRow]) -> Inserted:
        if not rows:
            return Inserted(new=0, wait_ns=0)

        def body() -> Inserted:
            conn = self._conn.get()
            try:
                with _write(conn), conn.cursor() as cur, cur.copy(COPY_TICKS) as copy:
                    copy.set_types(_TICK_TYPES)
                    for row in rows:
                        copy.write_row(row)
                return Inserted(new=len(rows), wait_ns=0)
            except psycopg.errors.UniqueViolation:
                pass  # some rows are stored already: a re-sent batch (see the module's note)
            with _write(conn), conn.cursor() as cur:
                cur.execute(INSERT_TICKS, [list(c) for c in zip(*rows, strict=True)])
                return Inserted(new=max(0, cur.rowcount), wait_ns=0)

        return _run("append ticks", "ticks", body, write=True)

    def last_keys(self, symbols: Iterable[str]) -> dict[str, Key]:
        def body() -> dict[str, Key]:
            conn = self._conn.get()
            out: dict[str, Key] = {}
            for symbol in symbols:
                # One index probe per symbol (backwards on the primary key).
                row = conn.execute(LAST_KEY_SQL, (symbol,)).fetchone()
                if row is not None:
                    out[symbol] = (int(row[0]), int(row[1]))
            return out

        return _run("read the last keys", "ticks", body)

    def reopen_replaced(self) -> str | None:
        # A server's tables are not swapped under a connection as a file at a path can be.
        return None

    def monitor(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for database, query in MONITOR:
            try:
                row = self._conn.get().execute(query).fetchone()
                out[database] = None if row is None else row[0]
            except psycopg.Error as exc:
                out[database] = f"unavailable: {_failed('monitor', database, exc, unclear=False)}"
        return out

    def close(self) -> None:
        self._conn.close()


class PgAnalysisStore:
    """The agent's storage on PostgreSQL (`reference.storage.AnalysisStore`); it also serves
    `reference.storage.SymbolRows`, the rows a symbol's state is restored from."""

    def __init__(self, conninfo: str) -> None:
        self._conn = _Connection(conninfo, application="splitdb-agent")
        self._conn.get()

    def prepare(self) -> None:
        """Nothing to do: the installer made the tables (`reference.pg_access`), and the agent's
        login may not create any."""

    def reopen_replaced(self) -> dict[str, str]:
        # A server's tables are not swapped under a connection as a file at a path can be.
        return {}

    def symbols(self) -> list[str]:
        return _run(
            "list symbols",
            "ticks",
            lambda: [str(row[0]) for row in self._conn.get().execute(SYMBOLS_SQL)],
        )

    def ticks_after(self, symbol: str, after: Key | None, limit: int) -> list[Tick]:
        def body() -> list[Tick]:
            conn = self._conn.get()
            if after is None:
                rows = conn.execute(TICKS_FIRST, (symbol, limit))
            else:
                rows = conn.execute(TICKS_AFTER, (symbol, after[0], after[1], limit))
            return [Tick(*row) for row in rows]

        return _run("read ticks", "ticks", body)

    def load_symbol(self, symbol: str) -> SymbolState:
        return _run("restore", "analysis", lambda: restore_symbol(self, symbol))

    def store(self, updates: Sequence[Update], *, now_ns: int) -> None:
        def body() -> None:
            conn = self._conn.get()
            # executemany pipelines its statements: one round trip per table, not per row.
            with _write(conn), conn.cursor() as cur:
                cur.executemany(UPSERT_BARS, [row for u in updates for row in u.bars])
                cur.executemany(UPSERT_INDICATORS, [row for u in updates for row in u.indicators])
                cur.executemany(
                    UPSERT_WATERMARKS,
                    [
                        (u.symbol, u.watermark[0], u.watermark[1], u.ticks_seen, now_ns)
                        for u in updates
                        if u.watermark is not None
                    ],
                )

        _run("commit", "analysis", body, write=True)

    def logs_summary(self) -> LogsSummary | None:
        def body() -> LogsSummary | None:
            row = self._conn.get().execute(LOGS_SUMMARY).fetchone()
            return None if row is None else LogsSummary(int(row[0]), row[1])

        return _run("read logs", "logs", body)

    # SymbolRows: called inside load_symbol, whose _run turns their errors into StoreFailed.

    def watermark(self, symbol: str) -> tuple[Key, int] | None:
        row = self._conn.get().execute(WATERMARK_OF, (symbol,)).fetchone()
        return None if row is None else ((int(row[0]), int(row[1])), int(row[2]))

    def newest_bars(self, symbol: str, timeframe: str, n: int) -> list[Bar]:
        rows = self._conn.get().execute(
            BARS_NEWEST,
            (symbol, timeframe, n),
        )
        return [Bar(*row) for row in rows.fetchall()[::-1]]

    def all_bars(self, symbol: str, timeframe: str) -> list[Bar]:
        rows = self._conn.get().execute(
            BARS_ALL,
            (symbol, timeframe),
        )
        return [Bar(*row) for row in rows]

    def indicator_values(self, symbol: str, timeframe: str, start_msc: int) -> dict[str, float]:
        rows = self._conn.get().execute(
            INDICATOR_VALUES,
            (symbol, timeframe, start_msc),
        )
        return {str(name): float(value) for name, value in rows}

    def close(self) -> None:
        self._conn.close()


def _rows(cursor: psycopg.Cursor[Any], columns: Sequence[str]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in cursor]


class PgApiStore:
    """The API's storage on PostgreSQL (`reference.storage.ApiStore`): a read connection per
    thread (the endpoints run in a thread pool; one psycopg connection serves one query at a
    time), and one connection for the request-log writer's thread.

    The request log has no key a re-sent batch could conflict on (ids are the server's), so a
    batch whose COMMIT was unclear is remembered by its first record: when the writer sends that
    batch again, the store looks for the record first, and a batch found is not written twice
    (one batch is one transaction: its first row is there exactly when all of it is).
    """

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._local = threading.local()
        self._all: list[_Connection] = []
        self._lock = threading.Lock()
        self._writer = _Connection(conninfo, application="splitdb-api-log")
        self._unclear: RequestRecord | None = None
        self._reader().get()

    def _reader(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _Connection(
                self.conninfo, application="splitdb-api", reader=True
            )
            with self._lock:
                self._all.append(conn)
        return conn

    def _read(self, database: str, endpoint: str, query: Callable[[Conn], T]) -> T:
        def body() -> T:
            conn = self._reader().get()
            with conn.transaction():
                return query(conn)

        return _run(f"GET {endpoint}", database, body)

    def symbols(self) -> list[str]:
        return self._read("ticks", "symbols", lambda c: [str(r[0]) for r in c.execute(SYMBOLS_SQL)])

    def latest_tick(self, symbol: str) -> dict[str, Any] | None:
        rows = self._read(
            "ticks", "latest", lambda c: _rows(c.execute(_LATEST_SQL, (symbol,)), TICK_COLUMNS)
        )
        return rows[0] if rows else None

    def ticks(self, symbol: str, start: int, last: int, limit: int) -> Page:
        def query(c: Conn) -> Page:
            rows = _rows(c.execute(_TICKS_SQL, (symbol, start, last, limit)), TICK_COLUMNS)
            return Page(rows, bool(rows) or _exists(c, _HAS_TICKS, (symbol,)))

        return self._read("ticks", "ticks", query)

    def bars(self, symbol: str, timeframe: str, start: int, last: int, limit: int) -> Page:
        def query(c: Conn) -> Page:
            rows = _rows(c.execute(_BARS_SQL, (symbol, timeframe, start, last, limit)), BAR_COLUMNS)
            return Page(rows, bool(rows) or _exists(c, _HAS_ANALYSIS, {"s": symbol}))

        return self._read("analysis", "bars", query)

    def indicators(
        self, symbol: str, timeframe: str, name: str | None, start: int, last: int, limit: int
    ) -> Page:
        parameters = {
            "symbol": symbol,
            "timeframe": timeframe,
            "name": name,
            "start": start,
            "last": last,
            "limit": limit,
        }

        def query(c: Conn) -> Page:
            rows = _rows(c.execute(_INDICATORS_SQL, parameters), INDICATOR_COLUMNS)
            return Page(rows, bool(rows) or _exists(c, _HAS_ANALYSIS, {"s": symbol}))

        return self._read("analysis", "indicators", query)

    def known_in_ticks(self, symbol: str) -> bool:
        return self._read("ticks", "symbol", lambda c: _exists(c, _HAS_TICKS, (symbol,)))

    def log_requests(self, records: Sequence[RequestRecord]) -> None:
        if not records:
            return

        def body() -> None:
            conn = self._writer.get()
            if records[0] == self._unclear and _exists(conn, _REQUEST_LOGGED, records[0]):
                return  # the COMMIT whose answer was lost had gone through
            with _write(conn), conn.cursor() as cur, cur.copy(COPY_REQUESTS) as copy:
                copy.set_types(_REQUEST_TYPES)
                for record in records:
                    copy.write_row(record)

        try:
            _run("log requests", "logs", body, write=True)
        except StoreFailed as exc:
            if exc.unclear:
                self._unclear = records[0]
            # Otherwise nothing of this attempt was committed, and an earlier unclear one of
            # the same batch is still to be looked for.
            raise
        self._unclear = None

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._writer.close()


def _exists(conn: Conn, query: str, parameters: Any) -> bool:
    row = conn.execute(query, parameters).fetchone()
    return bool(row and row[0])


if TYPE_CHECKING:
    # The stores keep to their roles' interfaces: mypy checks every signature here.
    def _conforms(
        bot: PgTickWriter, agent: PgAnalysisStore, api: PgApiStore
    ) -> tuple[TickWriter, AnalysisStore, SymbolRows, ApiStore]:
        return bot, agent, agent, api
