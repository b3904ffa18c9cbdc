"""The API's read connections: one per (worker thread, database), opened on first use.

sqlite3 connections belong to the thread that opened them, and the data endpoints run in
FastAPI's worker thread pool, so each thread keeps its own; they close when the thread ends.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from reference.access import AccessManager, GuardedConnection, transaction
from reference.errors import DatabaseUnavailable, SplitdbError
from reference.events import EventLog, outcome_of

__all__ = ["ReadConnections", "rows_of"]

T = TypeVar("T")


class ReadConnections:
    """Read connections of one role, one per (thread, database), opened on first use."""

    def __init__(self, access: AccessManager, role: str, events: EventLog) -> None:
        self.access = access
        self.role = role
        self.events = events
        self._local = threading.local()

    def read(self, database: str, endpoint: str, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query` in one read transaction (one snapshot) on this thread's connection.

        Raises DatabaseUnavailable for a database that is missing or fails; the failure is
        also recorded as a `query` event with its outcome and SQLite error code.
        """
        conn = self._connection(database)
        started = time.perf_counter_ns()
        try:
            with transaction(conn, immediate=False):
                return query(conn)
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a bug in the query, not the database's state: let it be a 500
        except sqlite3.Error as exc:
            outcome, code = outcome_of(exc)
            fields: dict[str, Any] = {"code": code} if code is not None else {}
            self.events.emit(
                "query",
                db=database,
                endpoint=endpoint,
                dur_us=(time.perf_counter_ns() - started) // 1000,
                outcome=outcome,
                error=str(exc),
                **fields,
            )
            if outcome not in ("busy", "locked"):
                # The file may have been replaced or the connection left unusable: the next
                # request on this thread opens a fresh one.
                self._discard(database)
            raise DatabaseUnavailable(database, _explain(exc, database)) from exc

    def _connections(self) -> dict[str, GuardedConnection]:
        conns: dict[str, GuardedConnection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def _discard(self, database: str) -> None:
        conn = self._connections().pop(database, None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _connection(self, database: str) -> GuardedConnection:
        conns = self._connections()
        conn = conns.get(database)
        if conn is not None and conn.watch.replaced():
            # Still reading a file that was replaced: its snapshot will never change again.
            self.events.emit(
                "file_replaced",
                db=database,
                outcome="error",
                error=f"{conn.watch.path} was replaced under the API: reopening",
            )
            self._discard(database)
            conn = None
        if conn is None:
            try:
                conn = self.access.connect(self.role, database)
            except (SplitdbError, sqlite3.Error, OSError) as exc:
                if not isinstance(exc, SplitdbError):
                    outcome, _ = outcome_of(exc)
                    self.events.emit("query", db=database, outcome=outcome, error=str(exc))
                # Not cached: the next request tries again, so the API recovers by itself
                # once the owner has created the file.
                raise DatabaseUnavailable(database, str(exc)) from exc
            conns[database] = conn
        return conn


def _explain(exc: sqlite3.Error, database: str) -> str:
    outcome, _ = outcome_of(exc)
    if outcome in ("busy", "locked"):
        return f"{exc}: another connection holds the lock; try again"
    if "no such table" in str(exc):
        return f"{exc}: the owner of {database!r} has not created its schema yet; try again"
    return str(exc)


def rows_of(cursor: sqlite3.Cursor, columns: Sequence[str]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in cursor]
