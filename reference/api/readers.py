"""The API's read connections: one per (thread, database), opened on first use.

The data endpoints are `async def` and read on the event loop (`read_now`) with a connection
whose busy timeout is 0: a read there never waits for a lock. A read that would (SQLITE_BUSY:
a writer holds the file in the rollback-journal layout, or a WAL being recovered) goes to a
worker thread of anyio's pool instead (`read`), whose connection waits up to the topology's
busy timeout as every other reader does. In WAL mode readers do not wait for writers, so the
event loop answers nearly every read itself, without a thread hand-off per request (profiled:
the hand-off cost the API more than the query, docs/perf/README.md).

sqlite3 connections belong to the thread that opened them, so each thread keeps its own; they
close when the thread ends.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from reference.access import AccessManager, GuardedConnection
from reference.errors import DatabaseUnavailable, SplitdbError
from reference.events import EventLog, outcome_of

__all__ = ["FILE_CHECK_EVERY_S", "NO_WAIT_REASON", "ReadConnections", "rows_of"]

T = TypeVar("T")

# Why the event loop's read connections differ from the topology's busy_timeout; the settings
# check lists it.
NO_WAIT_REASON = (
    "the API reads on its event loop, which must never sleep in SQLite's busy handler: a read "
    "that would wait is made again in a worker thread, with the topology's busy timeout"
)

# How often a read connection looks whether its file was replaced (seconds): at most once per
# this interval, not before every read. The `stat` per request cost about 1.5 us of the API's
# ~170 us (docs/perf/README.md, round 2); a replacement is noticed at most this late, which a
# reader racing the rename is anyway.
FILE_CHECK_EVERY_S = 0.005


class _WouldWait(Exception):
    """A read on the event loop met a lock (SQLITE_BUSY or SQLITE_LOCKED)."""


class ReadConnections:
    """Read connections of one role, one per (thread, database), opened on first use."""

    def __init__(self, access: AccessManager, role: str, events: EventLog) -> None:
        self.access = access
        self.role = role
        self.events = events
        self._local = threading.local()

    async def read_now(
        self, database: str, endpoint: str, query: Callable[[sqlite3.Connection], T]
    ) -> T:
        """Run `query` as `read` does, on the calling thread (the event loop) without waiting
        for a lock; a read that meets one is made again by `read` in a worker thread.

        Opening the connection does not wait either (its busy timeout is 0 from the start).
        """
        try:
            return self._read(database, endpoint, query, wait=False)
        except _WouldWait:
            return await run_in_threadpool(self.read, database, endpoint, query)

    def read(self, database: str, endpoint: str, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query` in one read transaction (one snapshot) on this thread's connection.

        Raises DatabaseUnavailable for a database that is missing or fails; the failure is
        also recorded as a `query` event with its outcome and SQLite error code.
        """
        return self._read(database, endpoint, query, wait=True)

    async def read_rows_now(
        self, database: str, endpoint: str, sql: str, parameters: Sequence[Any] = ()
    ) -> list[Any]:
        """The rows of one statement, read as `read_now` reads (a lock moves it to a thread).

        One statement is one snapshot by SQLite's own rule (its read transaction lasts while
        the statement runs, and every row is fetched here), so no BEGIN and COMMIT are sent
        around it: two round trips through the guard that cost more than the statement's own
        work for the API's one-row reads (docs/perf/README.md, round 2).
        """

        def query(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(sql, parameters).fetchall()

        try:
            return self._read(database, endpoint, query, wait=False, begin=False)
        except _WouldWait:
            return await run_in_threadpool(
                self._read, database, endpoint, query, wait=True, begin=False
            )

    def _read(
        self,
        database: str,
        endpoint: str,
        query: Callable[[sqlite3.Connection], T],
        *,
        wait: bool,
        begin: bool = True,
    ) -> T:
        conn = self._connection(database, wait=wait)
        started = time.perf_counter_ns()
        try:
            # reference.access.transaction's work for a read, written out: its context manager
            # and timings cost about a microsecond per request on the event loop.
            if not begin:
                result = query(conn)
            else:
                conn.execute("BEGIN")
                try:
                    result = query(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a bug in the query, not the database's state: let it be a 500
        except sqlite3.Error as exc:
            outcome, code = outcome_of(exc)
            if not wait and outcome in ("busy", "locked"):
                raise _WouldWait from exc
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
                self._discard(database, wait=wait)
            raise DatabaseUnavailable(database, _explain(exc, database)) from exc
        conn.after_transaction()
        return result

    def _connections(self, *, wait: bool) -> dict[str, GuardedConnection]:
        # Two sets per thread, so a connection never changes its busy timeout: the event loop
        # only uses the no-wait ones, but a thread could use both.
        name = "conns" if wait else "no_wait_conns"
        conns: dict[str, GuardedConnection] | None = getattr(self._local, name, None)
        if conns is None:
            conns = {}
            setattr(self._local, name, conns)
        return conns

    def _discard(self, database: str, *, wait: bool) -> None:
        conn = self._connections(wait=wait).pop(database, None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _connection(self, database: str, *, wait: bool) -> GuardedConnection:
        conns = self._connections(wait=wait)
        conn = conns.get(database)
        if conn is not None and conn.watch.replaced_lately(FILE_CHECK_EVERY_S):
            # Still reading a file that was replaced: its snapshot will never change again.
            self.events.emit(
                "file_replaced",
                db=database,
                outcome="error",
                error=f"{conn.watch.path} was replaced under the API: reopening",
            )
            self._discard(database, wait=wait)
            conn = None
        if conn is None:
            try:
                conn = self.access.connect(
                    self.role, database, busy_timeout=None if wait else (0, NO_WAIT_REASON)
                )
            except (SplitdbError, sqlite3.Error, OSError) as exc:
                if not isinstance(exc, SplitdbError):
                    outcome, _ = outcome_of(exc)
                    if not wait and outcome in ("busy", "locked"):
                        raise _WouldWait from exc
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
