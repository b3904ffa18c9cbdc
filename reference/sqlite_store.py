"""The agent's storage interface (`reference.storage.AnalysisStore`) on SQLite files.

This is the agent's SQL as it was before the interface, moved here unchanged: every connection
is opened through the access manager (`reference.access`), whose authorizer enforces the
role's grants (a forbidden statement raises `PermissionViolation`, which passes through as it
always did); the analysis tables are created by their owner at start; bars, indicators and
watermarks are written in one `BEGIN IMMEDIATE` transaction; a reader's file that does not
exist yet is `DatabaseMissing` (the agent waits); and a file replaced under the process (its
path now names another file) is noticed before each cycle and reopened.

Every `sqlite3.Error` becomes a `StoreFailed` with the outcome and extended error code the
agent always reported (`reference.events.outcome_of`), `transient` for an OperationalError
(busy, locked, full, a table not created yet): the errors the agent retried before.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from reference import analysis_sql as sql
from reference.access import AccessManager, transaction
from reference.analysis import Bar, Key, SymbolState, Tick, Update
from reference.errors import DatabaseMissing, StoreFailed
from reference.events import outcome_of
from reference.schema import ensure_schema
from reference.storage import AnalysisStore, LogsSummary, SymbolRows, restore_symbol

__all__ = [
    "SqliteAnalysisStore",
    "discover_symbols",
    "load_symbol",
    "read_ticks",
    "store",
]

T = TypeVar("T")


def discover_symbols(ticks_conn: sqlite3.Connection) -> list[str]:
    """The symbols present in the ticks table, in order, by skip-scan of its primary key."""
    return [row[0] for row in ticks_conn.execute(sql.SYMBOLS)]


def read_ticks(
    ticks_conn: sqlite3.Connection, symbol: str, after: Key | None, limit: int
) -> list[Tick]:
    """Up to `limit` ticks of `symbol` with key > `after` (all from the first if None), in order."""
    if after is None:
        rows = ticks_conn.execute(sql.TICKS_FIRST, (symbol, limit))
    else:
        rows = ticks_conn.execute(sql.TICKS_AFTER, (symbol, after[0], after[1], limit))
    return [Tick(*row) for row in rows]


class _Rows:
    """`reference.storage.SymbolRows` on one analysis connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def watermark(self, symbol: str) -> tuple[Key, int] | None:
        row = self.conn.execute(sql.WATERMARK_OF, (symbol,)).fetchone()
        return None if row is None else ((int(row[0]), int(row[1])), int(row[2]))

    def newest_bars(self, symbol: str, timeframe: str, n: int) -> list[Bar]:
        rows = self.conn.execute(
            sql.BARS_NEWEST,
            (symbol, timeframe, n),
        ).fetchall()
        return [Bar(*row) for row in rows[::-1]]

    def all_bars(self, symbol: str, timeframe: str) -> list[Bar]:
        rows = self.conn.execute(
            sql.BARS_ALL,
            (symbol, timeframe),
        )
        return [Bar(*row) for row in rows]

    def indicator_values(self, symbol: str, timeframe: str, start_msc: int) -> dict[str, float]:
        rows = self.conn.execute(
            sql.INDICATOR_VALUES,
            (symbol, timeframe, start_msc),
        )
        return {name: value for name, value in rows}


def load_symbol(analysis_conn: sqlite3.Connection, symbol: str) -> SymbolState:
    """The state of `symbol` as the last commit left it: watermark, partial bars, indicators
    (`reference.storage.restore_symbol` over this connection's rows)."""
    return restore_symbol(_Rows(analysis_conn), symbol)


def store(analysis_conn: sqlite3.Connection, updates: Sequence[Update], *, now_ns: int) -> None:
    """Upsert the updates' bars, indicators and watermarks; run it inside one transaction."""
    analysis_conn.executemany(sql.UPSERT_BARS, [row for u in updates for row in u.bars])
    analysis_conn.executemany(sql.UPSERT_INDICATORS, [row for u in updates for row in u.indicators])
    analysis_conn.executemany(
        sql.UPSERT_WATERMARKS,
        [
            (u.symbol, u.watermark[0], u.watermark[1], u.ticks_seen, now_ns)
            for u in updates
            if u.watermark is not None
        ],
    )


def _failed(operation: str, database: str, exc: sqlite3.Error) -> StoreFailed:
    outcome, code = outcome_of(exc)
    return StoreFailed(
        operation,
        database,
        outcome,
        code,
        str(exc),
        transient=isinstance(exc, sqlite3.OperationalError),
    )


def _run(operation: str, database: str, body: Callable[[], T]) -> T:
    try:
        return body()
    except sqlite3.Error as exc:
        raise _failed(operation, database, exc) from exc


class SqliteAnalysisStore:
    """The agent's storage on SQLite (`reference.storage.AnalysisStore`).

    `open` it on an access manager (what the agent process does: readers opened when their
    files appear, replaced files reopened), or build it `over` connections a caller already
    holds (tests, the interleaving actor), which it then closes on `close`.
    """

    def __init__(
        self,
        analysis: sqlite3.Connection,
        *,
        readers: dict[str, sqlite3.Connection] | None = None,
        access: AccessManager | None = None,
        role: str = "agent",
    ) -> None:
        self._analysis = analysis
        self._readers: dict[str, sqlite3.Connection] = dict(readers or {})
        self._access = access
        self._role = role

    @classmethod
    def open(cls, access: AccessManager, role: str = "agent") -> SqliteAnalysisStore:
        """The store of `role` (the owner of analysis), its connections from `access`."""
        conn = _run("open", "analysis", lambda: access.connect(role, "analysis"))
        return cls(conn, access=access, role=role)

    @classmethod
    def over(
        cls,
        ticks: sqlite3.Connection,
        analysis: sqlite3.Connection,
        logs: sqlite3.Connection | None = None,
    ) -> SqliteAnalysisStore:
        """A store on connections already open (its tables made by the caller)."""
        readers = {"ticks": ticks, **({"logs": logs} if logs is not None else {})}
        return cls(analysis, readers=readers)

    def prepare(self) -> None:
        # Another writer of a shared file may hold the lock past busy_timeout: transient.
        _run("open", "analysis", lambda: ensure_schema(self._analysis, "analysis"))

    def reopen_replaced(self) -> dict[str, str]:
        access = self._access
        if access is None:
            return {}
        conns = {"analysis": self._analysis, **self._readers}
        replaced: dict[str, str] = {}
        for database, conn in conns.items():
            watch = getattr(conn, "watch", None)
            if watch is None or not watch.replaced():
                continue
            replaced[database] = watch.path
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            if database == "analysis":
                self._analysis = _run(
                    "open", "analysis", lambda: access.connect(self._role, "analysis")
                )
            else:
                # Reopened on first use, when its file is there again.
                del self._readers[database]
        return replaced

    def _reader(self, database: str) -> sqlite3.Connection:
        conn = self._readers.get(database)
        if conn is not None:
            return conn
        access = self._access
        if access is None:
            raise DatabaseMissing(f"no connection to database {database!r}", database=database)
        path = access.topology.file_of(database, access.data_dir)
        if not path.exists():
            raise DatabaseMissing(
                f"database {database!r} ({path}) does not exist yet",
                database=database,
                where=str(path),
            )
        conn = _run("open", database, lambda: access.connect(self._role, database))
        self._readers[database] = conn
        return conn

    def symbols(self) -> list[str]:
        ticks = self._reader("ticks")
        return _run("list symbols", "ticks", lambda: discover_symbols(ticks))

    def ticks_after(self, symbol: str, after: Key | None, limit: int) -> list[Tick]:
        ticks = self._reader("ticks")
        return _run("read ticks", "ticks", lambda: read_ticks(ticks, symbol, after, limit))

    def load_symbol(self, symbol: str) -> SymbolState:
        return _run("restore", "analysis", lambda: load_symbol(self._analysis, symbol))

    def store(self, updates: Sequence[Update], *, now_ns: int) -> None:
        def body() -> None:
            with transaction(self._analysis):
                store(self._analysis, updates, now_ns=now_ns)

        _run("commit", "analysis", body)

    def logs_summary(self) -> LogsSummary | None:
        logs = self._reader("logs")
        row = _run("read logs", "logs", lambda: logs.execute(sql.LOGS_SUMMARY).fetchone())
        return None if row is None else LogsSummary(int(row[0]), row[1])

    def close(self) -> None:
        for conn in (*self._readers.values(), self._analysis):
            conn.close()
        self._readers.clear()


if TYPE_CHECKING:

    def _conforms(agent: SqliteAnalysisStore, rows: _Rows) -> tuple[AnalysisStore, SymbolRows]:
        return agent, rows
