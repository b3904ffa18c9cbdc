"""The request log: one row per API request in the logs database, written off the request path.

`RequestLogMiddleware` (ASGI) turns each HTTP request into a `RequestRecord` and hands it to
`RequestLogWriter.submit`, which puts it on a bounded queue and returns at once: the request never
waits on the database. When the queue is full the record is dropped and counted, so a slow or
locked database costs log rows, never latency or memory. One background thread commits
records in batches (up to `batch_size` rows, at most `max_delay` seconds after the batch's first
record), each batch one transaction: on SQLite the thread owns the logs connection and writes
`BEGIN IMMEDIATE` .. `COMMIT`; on a server it calls the store's `log_requests`
(`reference.storage.ApiStore`), which the writer is given as its write function. Queue, batches,
retries and the drain are the same on both.

The queue is a deque, and `submit` wakes the writer only when it may be waiting for that
record: the first of a batch, or the one that fills it. A `queue.Queue` woke the writer thread
on every record, and that hand-off of the GIL per request was the request log's main cost on
the API's event loop (docs/perf/README.md).

Failures: a batch that fails with a transient database error (busy, locked, disk full, I/O, a
missing table; a store's `StoreFailed` marked `transient`, such as a connection the server ended)
is retried, same rows, same single transaction, with backoff; meanwhile new records queue up
and, past `queue_size`, are dropped. A batch that can never succeed (a constraint or type error:
a bug; a store's failure that is not transient) is counted as `failed` and skipped so it cannot
block the log. `stop()` drains the queue and commits before it returns; what it cannot write by
its deadline is counted as `failed`. After `stop()`, `submit` drops, and
`submitted == logged + dropped + failed`.

Events (through the process's `EventLog`):

- `log_commit`: one per commit attempt: `db`, `rows`, `dur_us` (BEGIN to COMMIT), `attempt`
  (1 for the first try of a batch), `outcome` ('ok', 'busy', 'locked', 'denied', 'error'); on
  success `lag_us` (first record's request start to commit); on failure `code` (SQLite extended
  error code or a store's code, such as a PostgreSQL SQLSTATE, when there is one) and `error`
  (the message).
- `log_drain`: once, at stop: `db`, `rows` (written while draining), `failed`, `dur_us`,
  `outcome` ('ok' when everything queued was written, else 'error').
- `request` (only with `request_events=True` on the middleware): `method`, `path`, `status`,
  `dur_us`. Off by default: one JSON line per request is measurable overhead.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference import crashpoints
from reference.access import declare_busy_timeout, transaction
from reference.errors import PermissionViolation, SchemaError, SplitdbError, StoreFailed
from reference.events import EventLog, outcome_of

__all__ = [
    "BUSY_TIMEOUT_REASON",
    "INSERT_REQUESTS",
    "RequestLogMiddleware",
    "RequestLogSettings",
    "RequestLogStats",
    "RequestLogWriter",
    "RequestRecord",
]

INSERT_REQUESTS = (
    "INSERT INTO request_log (ts_ns, method, path, status, duration_us, client) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# Rows per multi-row INSERT. One statement of this many rows instead of as many steps of an
# executemany: each step released and took back the GIL, which the event loop wanted, and the
# writer thread's per-row cost was the request log's largest share of the API's CPU
# (docs/perf/README.md, round 2). A fixed size keeps one statement text in SQLite's cache; the
# rest of a batch (fewer rows) goes through executemany.
_ROWS_PER_INSERT = 100
_INSERT_MANY = (
    "INSERT INTO request_log (ts_ns, method, path, status, duration_us, client) VALUES "
    + ", ".join(["(?, ?, ?, ?, ?, ?)"] * _ROWS_PER_INSERT)
)

# How often an idle writer looks at the stop flag; bounds how late `stop()` starts draining.
_POLL_S = 0.05
_MAX_BACKOFF_S = 1.0
# A log row is for reading, not for storing whatever a client puts in its request line.
_MAX_PATH = 1024
# Why the writer's busy_timeout differs from the topology's; the settings check shows it.
BUSY_TIMEOUT_REASON = (
    "the request log writer retries each batch on its own with backoff; a short busy timeout "
    "per attempt bounds how late a stop can start draining"
)


class RequestRecord(NamedTuple):
    """One request as `request_log` stores it; `ts_ns` is the wall-clock start (epoch ns)."""

    ts_ns: int
    method: str
    path: str
    status: int
    duration_us: int
    client: str | None


class RequestLogStats(TypedDict):
    """Counters of a writer; `queued` is waiting (in the queue or in the batch being written)."""

    logged: int
    dropped: int
    failed: int
    queued: int
    batches: int
    errors: int
    last_error: str | None


@dataclass(frozen=True)
class RequestLogSettings:
    """How a writer batches: queue bound, rows per transaction, seconds a record may wait.

    `attempt_timeout` is the busy timeout of one commit attempt (seconds): the writer retries
    on its own instead of sleeping in SQLite's busy handler, so a stop never waits longer than
    one attempt past its deadline.
    """

    queue_size: int = 10_000
    batch_size: int = 500
    max_delay: float = 0.2
    attempt_timeout: float = 0.25

    def __post_init__(self) -> None:
        problems = [
            f"{name}={value!r} must be an integer >= 1"
            for name, value in (("queue_size", self.queue_size), ("batch_size", self.batch_size))
            if not isinstance(value, int) or isinstance(value, bool) or value < 1
        ]
        problems += [
            f"{name}={value!r} must be a finite number of seconds >= 0"
            for name, value in (
                ("max_delay", self.max_delay),
                ("attempt_timeout", self.attempt_timeout),
            )
            if not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value < 0
        ]
        if problems:
            raise ValueError("invalid request log settings: " + "; ".join(problems))


class _Sink(Protocol):
    """Where the writer thread puts a batch: one transaction per `write`."""

    def write(self, batch: list[RequestRecord]) -> None: ...

    def failed(self, outcome: str) -> None:
        """After a failed `write` with this outcome: make the next attempt start clean."""
        ...

    def close(self) -> None: ...


class RequestLogWriter:
    """Writes submitted records to `request_log` in batched transactions from its own thread.

    Either `connect` (SQLite): called in the writer thread (sqlite3 connections belong to the
    thread that opened them), it must return an owner's connection to a database that has
    `request_log` (the API opens it through the access manager and runs `ensure_schema`); it is
    called again after an error other than busy/locked. Or `write`: a store's `log_requests`,
    called in the writer thread with one batch, which it commits in one transaction or raises
    `StoreFailed`; the store keeps its own connection. Lifecycle: `start()` once, `submit()`
    from any thread, `stop()` once; a writer cannot be restarted.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection] | None = None,
        *,
        write: Callable[[Sequence[RequestRecord]], None] | None = None,
        settings: RequestLogSettings | None = None,
        events: EventLog | None = None,
        database: str = "logs",
    ) -> None:
        self.settings = settings or RequestLogSettings()
        self.database = database
        self._events = events
        self._sink: _Sink
        if connect is not None and write is None:
            self._sink = _SqliteSink(connect, self.settings.attempt_timeout, database, self._emit)
        elif write is not None and connect is None:
            self._sink = _StoreSink(write)
        else:
            raise ValueError(
                "a request log writer writes either through a SQLite connection (connect) or "
                "through a store's write function (write), one of the two"
            )
        # Appended by submit (under _lock, which keeps the bound), taken by the writer thread
        # (deque's append and popleft are atomic).
        self._records: deque[RequestRecord] = deque()
        # Set by submit when the writer may be waiting for the record it added.
        self._wake = threading.Event()
        # Guards `_closed` and the queue's bound against a racing submit, and the counters more
        # than one thread bumps.
        self._lock = threading.Lock()
        self._closed = False
        self._stopping = threading.Event()
        self._deadline = math.inf
        self._thread: threading.Thread | None = None
        # Written by the writer thread only (dropped: under _lock); read without a lock by
        # stats(), which may therefore be a moment stale but never torn.
        self._pending = 0
        self._logged = 0
        self._dropped = 0
        self._failed = 0
        self._batches = 0
        self._errors = 0
        self._last_error: str | None = None
        self._stop_ns = 0
        self._logged_at_stop = 0
        self._failed_at_stop = 0

    @property
    def running(self) -> bool:
        """True while the writer thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the writer thread; raises SplitdbError if it was started before."""
        if self._thread is not None:
            raise SplitdbError("the request log writer was already started; make a new one")
        self._thread = threading.Thread(
            target=self._run, name=f"request-log-writer[{self.database}]", daemon=True
        )
        self._thread.start()

    def submit(self, record: RequestRecord) -> bool:
        """Queue a record without waiting; False (and counted as dropped) if it was not queued.

        Never blocks on the database: a full queue or a stopped writer drops the record.
        """
        with self._lock:
            if self._closed or len(self._records) >= self.settings.queue_size:
                self._dropped += 1
                return False
            self._records.append(record)
            queued = len(self._records)
        if queued == 1 or queued == self.settings.batch_size:
            self._wake.set()
        return True

    def stop(self, timeout: float = 2.0) -> bool:
        """Drain the queue, commit and stop the thread; True if every queued record was written.

        Returns after at most about `timeout` + `attempt_timeout` seconds. Records that could not
        be written by then count as `failed`. Safe to call on a writer never started (its queued
        records then count as failed) and more than once.
        """
        failed_before = self._failed
        if not self._stopping.is_set():
            self._stop_ns = time.perf_counter_ns()
            self._logged_at_stop = self._logged
            self._failed_at_stop = self._failed
        self._deadline = time.monotonic() + max(0.0, timeout)
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            self._close()
        else:
            thread.join(max(0.0, timeout) + self.settings.attempt_timeout + 1.0)
            if thread.is_alive():
                return False
        return self._failed == failed_before

    def stats(self) -> RequestLogStats:
        """The counters now; see `RequestLogStats`."""
        return {
            "logged": self._logged,
            "dropped": self._dropped,
            "failed": self._failed,
            "queued": len(self._records) + self._pending,
            "batches": self._batches,
            "errors": self._errors,
            "last_error": self._last_error,
        }

    # --- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not (self._stopping.is_set() and time.monotonic() >= self._deadline):
                batch = self._next_batch()
                if batch:
                    self._write(batch)
                elif self._stopping.is_set():
                    break
        finally:
            # Whatever is still queued (past the deadline, or if this thread dies of a bug) is
            # counted as failed, never silently lost.
            self._close()
            self._close_sink()
            if self._stopping.is_set():
                failed = self._failed - self._failed_at_stop
                self._emit(
                    "log_drain",
                    db=self.database,
                    rows=self._logged - self._logged_at_stop,
                    failed=failed,
                    dur_us=(time.perf_counter_ns() - self._stop_ns) // 1000,
                    outcome="ok" if failed == 0 else "error",
                )
                self._flush()

    def _next_batch(self) -> list[RequestRecord]:
        """Up to batch_size records: waits for the first, then at most max_delay for the rest."""
        records = self._records
        if not records:
            if self._stopping.is_set():
                return []
            # Cleared before the last look: a record added after it sets the event again.
            self._wake.clear()
            if not records:
                self._wake.wait(_POLL_S)
                if not records:
                    return []
        due = time.monotonic() + self.settings.max_delay
        # What is already queued joins the batch whatever max_delay says.
        while len(records) < self.settings.batch_size and not self._stopping.is_set():
            remaining = due - time.monotonic()
            if remaining <= 0:
                break
            self._wake.clear()
            if len(records) >= self.settings.batch_size:
                break
            # Wake at least every _POLL_S so a stop does not wait out a long max_delay.
            self._wake.wait(min(remaining, _POLL_S))
        batch = [records.popleft() for _ in range(min(len(records), self.settings.batch_size))]
        self._pending = len(batch)
        return batch

    def _write(self, batch: list[RequestRecord]) -> None:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter_ns()
            try:
                self._sink.write(batch)
            except Exception as exc:
                dur_us = (time.perf_counter_ns() - started) // 1000
                outcome, code = _outcome(exc)
                self._errors += 1
                self._last_error = _describe(exc)
                fields: dict[str, Any] = {"code": code} if code is not None else {}
                self._emit(
                    "log_commit",
                    db=self.database,
                    rows=len(batch),
                    dur_us=dur_us,
                    attempt=attempt,
                    outcome=outcome,
                    error=str(exc),
                    **fields,
                )
                try:
                    self._sink.failed(outcome)
                except Exception as closing:
                    self._last_error = _describe(closing)
                if not _transient(exc) or time.monotonic() >= self._deadline:
                    self._failed += len(batch)
                    self._pending = 0
                    self._flush()
                    return
                self._backoff(attempt)
                continue
            self._logged += len(batch)
            self._batches += 1
            self._pending = 0
            self._emit(
                "log_commit",
                db=self.database,
                rows=len(batch),
                dur_us=(time.perf_counter_ns() - started) // 1000,
                attempt=attempt,
                outcome="ok",
                lag_us=max(0, (time.time_ns() - batch[0].ts_ns) // 1000),
            )
            # A commit is what a reader of the events may rely on (rows are durable), so it is
            # pushed to the OS now rather than when the buffer happens to fill.
            self._flush()
            crashpoints.reach("requestlog.after_commit")
            return

    def _backoff(self, attempt: int) -> None:
        delay = min(_MAX_BACKOFF_S, 0.01 * 2 ** min(attempt, 10))
        # Never sleep past the stop deadline: the last attempt must still fit before it.
        delay = min(delay, max(0.0, self._deadline - time.monotonic()))
        time.sleep(delay)

    def _close_sink(self) -> None:
        try:
            self._sink.close()
        except Exception as exc:
            self._last_error = _describe(exc)

    def _close(self) -> None:
        """Refuse further submits and count whatever is still queued as failed."""
        with self._lock:
            self._closed = True
            left = self._pending + len(self._records)
            self._pending = 0
            self._records.clear()
            self._failed += left

    def _emit(self, op: str, **fields: Any) -> None:
        if self._events is not None:
            self._events.emit(op, **fields)

    def _flush(self) -> None:
        if self._events is not None:
            self._events.flush()


class _SqliteSink:
    """The logs database through one connection of the writer thread, reopened after an error
    other than busy/locked and when its file was replaced."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        attempt_timeout: float,
        database: str,
        emit: Callable[..., None],
    ) -> None:
        self._connect = connect
        self._timeout_ms = round(attempt_timeout * 1000)
        self._database = database
        self._emit = emit
        self._conn: sqlite3.Connection | None = None

    def write(self, batch: list[RequestRecord]) -> None:
        conn = self._connection()
        with transaction(conn):
            _insert(conn, batch)

    def failed(self, outcome: str) -> None:
        if outcome in ("busy", "locked"):
            # A COMMIT refused as busy (rollback-journal mode, readers present) leaves the
            # transaction open; the retry starts the batch over.
            self._rollback()
        else:
            # Reopening recreates a missing schema and drops a connection an I/O error may
            # have left unusable; busy/locked only mean "someone else writes".
            self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        watch = getattr(self._conn, "watch", None)
        if watch is not None and watch.replaced():
            # The logs file was replaced under the API: write into the one now at the path.
            self._emit(
                "file_replaced",
                db=self._database,
                outcome="error",
                error=(f"{watch.path} was replaced under the request log: reopening"),
            )
            self.close()
        if self._conn is None:
            conn = self._connect()
            try:
                declare_busy_timeout(conn, self._timeout_ms, reason=BUSY_TIMEOUT_REASON)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self.close()


class _StoreSink:
    """A store's `log_requests`: the store keeps its connection and replaces a broken one."""

    def __init__(self, write: Callable[[Sequence[RequestRecord]], None]) -> None:
        self.write = write

    def failed(self, outcome: str) -> None:
        pass

    def close(self) -> None:
        pass  # the store's owner closes it, after the writer stopped


def _insert(conn: sqlite3.Connection, batch: list[RequestRecord]) -> None:
    """Insert `batch` in the open transaction: whole chunks as multi-row INSERTs, the rest
    row by row."""
    whole = len(batch) - len(batch) % _ROWS_PER_INSERT
    for start in range(0, whole, _ROWS_PER_INSERT):
        conn.execute(
            _INSERT_MANY,
            [value for record in batch[start : start + _ROWS_PER_INSERT] for value in record],
        )
    if whole < len(batch):
        conn.executemany(INSERT_REQUESTS, batch[whole:])


def _outcome(exc: BaseException) -> tuple[str, int | str | None]:
    """The event outcome and code of a failed write: a store's own, or SQLite's."""
    if isinstance(exc, StoreFailed):
        return exc.outcome, exc.code
    return outcome_of(exc)


def _transient(exc: BaseException) -> bool:
    """Worth retrying: the database may accept the same rows later."""
    if isinstance(exc, StoreFailed):
        return exc.transient
    if isinstance(exc, PermissionViolation | SchemaError):
        return False
    if isinstance(exc, SplitdbError):
        # For example the data directory is not there yet.
        return True
    # OperationalError: busy, locked, full, I/O, no such table; plain DatabaseError: corrupt or
    # not a database (a later reopen may find it repaired). Integrity, data, programming and
    # interface errors mean the rows themselves are wrong.
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "sqlite_errorname", None)
    suffix = f" ({code})" if code else ""
    return f"{type(exc).__name__}: {exc}{suffix}"


class RequestLogMiddleware:
    """ASGI middleware: one `RequestRecord` per HTTP request, submitted after the response.

    The status is the one the app sent (500 if it sent none, e.g. it raised); `duration_us`
    runs from receipt to the last byte handed to the server. `path` excludes the query string
    and is cut to 1024 characters; `client` is the peer's address without its port.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        writer: RequestLogWriter,
        events: EventLog | None = None,
        request_events: bool = False,
    ) -> None:
        self.app = app
        self.writer = writer
        self.events = events
        self.request_events = request_events and events is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ts_ns = time.time_ns()
        started = time.perf_counter_ns()
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            duration_us = (time.perf_counter_ns() - started) // 1000
            client = scope.get("client")
            method = str(scope.get("method", "?"))
            path = str(scope.get("path", ""))[:_MAX_PATH]
            self.writer.submit(
                RequestRecord(
                    ts_ns=ts_ns,
                    method=method,
                    path=path,
                    status=status,
                    duration_us=duration_us,
                    client=str(client[0]) if client else None,
                )
            )
            if self.request_events and self.events is not None:
                self.events.emit(
                    "request", method=method, path=path, status=status, dur_us=duration_us
                )
