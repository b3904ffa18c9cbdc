"""Which storage the API reads and logs through: the topology's `backend` picks it once, at
start (`open_backend`), and the routes and the request log writer never ask again.

- `sqlite`: the files through the access manager, as the API always read them: the routes'
  SQL on the event loop (`SqliteReads` over `ReadConnections`), the request log's own
  connection in its writer thread (the logs schema made by its owner, the API).
- `postgres`: `PgApiStore` as the api role's login from `SPLITDB_PG_CONNINFO`: reads in worker
  threads (`StoreReads`), the request log through the store's `log_requests`. The store is
  closed after the writer stopped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from reference.access import declare_busy_timeout
from reference.api.readers import ReadConnections
from reference.api.reads import Reads
from reference.api.sqlite_reads import SqliteReads
from reference.api.store_reads import StoreReads
from reference.requestlog import BUSY_TIMEOUT_REASON, RequestLogSettings, RequestLogWriter
from reference.runtime import Runtime
from reference.schema import ensure_schema

__all__ = ["Backend", "open_backend"]


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class Backend:
    """The routes' reads, the request log writer, and what to close once the writer stopped."""

    reads: Reads
    writer: RequestLogWriter
    close: Callable[[], None] = _nothing


def open_backend(runtime: Runtime, settings: RequestLogSettings) -> Backend:
    """The API's storage on the topology's backend, for `runtime.role` (the owner of 'logs').

    Raises SplitdbError when it cannot start: on PostgreSQL `StoreSetupError` (one line) for a
    missing connection string or a server it cannot reach; on SQLite for a logs file that is
    not a database.
    """
    if runtime.topology.backend == "postgres":
        # psycopg is imported only by a process that uses it.
        from reference.pg_store import PgApiStore, store_from_env

        store = store_from_env(PgApiStore)
        writer = RequestLogWriter(
            write=store.log_requests, settings=settings, events=runtime.events, database="logs"
        )
        return Backend(StoreReads(store, runtime.events), writer, store.close)
    return _sqlite(runtime, settings)


def _sqlite(runtime: Runtime, settings: RequestLogSettings) -> Backend:
    role = runtime.role
    _probe_logs(runtime)

    def open_logs() -> sqlite3.Connection:
        conn = runtime.access.connect(role, "logs")
        try:
            # The writer's short per-attempt busy timeout applies to creating the schema too,
            # so a contended first connect cannot hold up a stop (legacy layout: one file).
            timeout_ms = round(settings.attempt_timeout * 1000)
            declare_busy_timeout(conn, timeout_ms, reason=BUSY_TIMEOUT_REASON)
            ensure_schema(conn, "logs")
        except BaseException:
            conn.close()
            raise
        return conn

    writer = RequestLogWriter(open_logs, settings=settings, events=runtime.events, database="logs")
    readers = ReadConnections(runtime.access, role, runtime.events)
    return Backend(SqliteReads(readers), writer)


def _probe_logs(runtime: Runtime) -> None:
    """Open the logs database once, so a file that is not SQLite (or a directory) stops the
    start with one line naming it; the request log writer opens its own connection later. A
    missing file is left missing: the writer creates it with the first request it logs."""
    if not runtime.topology.file_of("logs", runtime.data_dir).exists():
        return
    try:
        runtime.access.connect(runtime.role, "logs").close()
    except sqlite3.Error:
        return  # busy or locked: the writer retries it like any other contended open
