"""Load workers: each one its own OS process (through `multiprocess`), with its own event file.

A worker waits for its start time, then runs operations at its rate (0: as fast as it can) until
its stop time, recording one event per operation: `op`, `dur_us` (service time), `late_us` (how
far behind schedule it started: the queueing a closed-loop client would hide), `outcome`, `code`.
Kinds: `reader` (SQL through the access manager), `api` (HTTP to the reference API), `http`
(HTTP GETs to any URLs: a user's server), `writer` (extra writers, for contention), `violator`
(the forbidden-operation catalogue) and `hold` (a long read transaction, used by faults).

A worker ignores SIGINT: a terminal's Ctrl-C reaches the whole process group, and the run (its
parent) stops the workers itself (`stop_workers`). Left to Python's default, each worker would
print its own KeyboardInterrupt traceback.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import multiprocess
import psycopg

from harness.pg.load import PgAccess, reader_connection, violator_op
from harness.runs.catalogue import Attempt, allowed, catalogue, perform
from reference.access import AccessManager, transaction
from reference.errors import DatabaseMissing, PermissionViolation, SplitdbError
from reference.events import EventLog, outcome_of
from reference.pg_store import outcome_of_pg
from reference.status import StatusBoard
from reference.topology import load_topology

_READER_SQL: dict[str, str] = {
    "latest_tick": (
        "SELECT time_msc, seq, bid, ask FROM ticks WHERE symbol = ? "
        "ORDER BY time_msc DESC, seq DESC LIMIT 1"
    ),
    "tick_range": (
        "SELECT * FROM ticks WHERE symbol = ? AND time_msc >= "
        "(SELECT max(time_msc) - 5000 FROM ticks WHERE symbol = ?1) ORDER BY time_msc, seq"
    ),
    "count": "SELECT count(*) FROM ticks WHERE symbol = ?",
    "bars": "SELECT * FROM bars WHERE symbol = ? ORDER BY timeframe, start_msc DESC LIMIT 100",
}
_READER_DB = {"latest_tick": "ticks", "tick_range": "ticks", "count": "ticks", "bars": "analysis"}

# Extra writers write their own table in each database, so their rows never mix with what the
# reference processes write and the checks judge (ticks, bars, request logs).
LOAD_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS splitdb_load ("
    "id INTEGER PRIMARY KEY, worker TEXT NOT NULL, n INTEGER NOT NULL, ts_ns INTEGER NOT NULL)"
)
_WRITER_SQL = "INSERT INTO splitdb_load (worker, n, ts_ns) VALUES (?, ?, ?)"

_API_PATHS: dict[str, str] = {
    "health": "/health",
    "symbols": "/symbols",
    "latest": "/ticks/{symbol}/latest",
    "ticks": "/ticks/{symbol}?limit=100",
    "bars": "/bars/{symbol}?timeframe=1m&limit=100",
    "indicators": "/indicators/{symbol}?timeframe=1m&limit=100",
}


_CONNECTION_ONLY = frozenset({"CREATE TEMP TABLE", "CREATE TEMP VIEW", "PRAGMA query_only"})


@dataclass(frozen=True)
class WorkerPlan:
    """Everything one worker process needs; plain data so it crosses the process boundary."""

    group: str
    index: int
    kind: str
    settings: dict[str, Any]
    topology: str
    data_dir: str
    events: str
    start_at: float
    stop_at: float
    seed: int
    symbols: tuple[str, ...] = ()
    api_url: str | None = None
    scratch: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.group}-{self.index}"


def start_worker(plan: WorkerPlan) -> Any:
    """Start the worker as its own process; returns the `multiprocess.Process`.

    SIGINT is blocked in this process while the child is made, so the child starts with it
    blocked and ignores it before unblocking (`run_worker`): a Ctrl-C at any moment of the
    child's start cannot reach it under Python's default handler. Here it stays pending and is
    raised (KeyboardInterrupt) once the child exists, so the caller knows the child to stop.
    """
    proc = multiprocess.Process(target=_worker_process, args=(plan,), name=plan.name, daemon=True)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return proc


def stop_workers(procs: Iterable[Any], timeout: float = 5.0) -> None:
    """Stop workers still running (SIGTERM, then SIGKILL after `timeout`) and reap them."""
    live = [p for p in procs if p.is_alive()]
    for proc in live:
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in live:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def _worker_process(plan: WorkerPlan) -> None:
    """The worker process: SIGINT ignored (the parent stops its workers; see `start_worker`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    run_worker(plan)


def run_worker(plan: WorkerPlan) -> None:
    """The worker's body (runs in the child process)."""
    events = EventLog(Path(plan.events), role=plan.name)
    try:
        worker = _Worker(plan, events)
        with worker.stack:
            worker.run()
    except Exception as exc:  # the event log is the worker's only voice: record, then fail
        events.emit("worker_error", outcome="error", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        events.close()


class _Worker:
    def __init__(self, plan: WorkerPlan, events: EventLog) -> None:
        self.plan = plan
        self.events = events
        self.rng = random.Random(plan.seed * 1000 + plan.index)
        # Any roles: a user's system names its own (the reference kinds check theirs).
        topology = load_topology(Path(plan.topology), roles=None)
        self.access = AccessManager(topology, Path(plan.data_dir))
        self.rate = float(plan.settings.get("rate", 0.0))
        self.wake_us: int | None = None
        # A run on a PostgreSQL server: its server and layout (harness.pg.load.PgAccess).
        self.pg: PgAccess | None = plan.extra.get("pg")
        self.stack = contextlib.ExitStack()

    def run(self) -> None:
        delay = self.plan.start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        op = self._prepare()
        self.events.emit("worker_start", kind=self.plan.kind)
        if op is None:
            self.events.emit("worker_stop", ops=0)
            return
        if self.plan.kind == "hold":
            # A fault, not a load: it happens once, however late this worker got going.
            op(max(0, int((time.time() - self.plan.start_at) * 1e6)))
            self.events.emit("worker_stop", ops=1)
            return
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        stop_at_mono = time.monotonic() + (self.plan.stop_at - time.time())
        count = 0
        scheduled = 0
        while time.monotonic() < stop_at_mono:
            now = time.monotonic()
            self.wake_us = None
            if interval:
                if now < next_at:
                    time.sleep(next_at - now)
                    now = time.monotonic()
                    # How late the OS woke an idle worker: the load generator's own delay on
                    # a busy machine, apart from any wait for the system under test.
                    self.wake_us = int((now - next_at) * 1e6)
                # Open loop: every send keeps its place in the schedule, however late, and its
                # latency counts from that place; a stalled server cannot hide the requests it
                # held up (no coordinated omission).
                late_us = int((now - next_at) * 1e6)
                next_at += interval
                scheduled += 1
            else:
                late_us = 0
            op(late_us)
            count += 1
            if count % 200 == 0:
                self.events.flush()
        if interval and next_at < stop_at_mono:
            # Sends that were due before the stop but never made it (the worker fell behind).
            scheduled += math.ceil((stop_at_mono - next_at) / interval)
        self.events.emit("worker_stop", ops=count, scheduled=scheduled if interval else None)

    def _wake(self) -> dict[str, int]:
        return {} if self.wake_us is None else {"wake_us": self.wake_us}

    def _prepare(self) -> Any:
        kind = self.plan.kind
        if kind == "reader":
            return self._reader()
        if kind == "api":
            return self._api()
        if kind == "writer":
            return self._writer()
        if kind == "violator":
            return self._violator()
        if kind == "hold":
            return self._hold()
        if kind == "bypass":
            return self._bypass()
        if kind == "status":
            return self._status()
        if kind == "http":
            return self._http()
        raise SplitdbError(f"unknown load kind {kind!r}")

    def _timed(self, op: str, db: str | None, late_us: int, fn: Any, **fields: Any) -> Any:
        started = time.perf_counter_ns()
        exc: BaseException | None = None
        result = None
        try:
            result = fn()
        except (sqlite3.Error, PermissionViolation, SplitdbError) as error:
            exc = error
        except psycopg.Error as error:
            # Only a run on a server meets these (its readers).
            exc = error
        outcome, code = outcome_of_pg(exc) if isinstance(exc, psycopg.Error) else outcome_of(exc)
        self.events.emit(
            op,
            db=db,
            dur_us=(time.perf_counter_ns() - started) // 1000,
            late_us=late_us,
            **self._wake(),
            outcome=outcome,
            code=code,
            **({"error": str(exc)} if exc is not None else {}),
            **fields,
        )
        return result

    def _reader(self) -> Any:
        query = self.plan.settings.get("query", "latest_tick")
        database = _READER_DB[query]
        role = self.plan.settings.get("role", "api")
        conn: Any = (
            self._connect(role, database)
            if self.pg is None
            else self.stack.enter_context(closing(reader_connection(self.pg, role)))
        )
        sql = _READER_SQL[query]
        symbols = self.plan.symbols or ("EURUSD",)

        def op(late_us: int) -> None:
            symbol = self.rng.choice(symbols)
            self._timed("read", database, late_us, lambda: conn.execute(sql, (symbol,)).fetchall())

        return op

    def _api(self) -> Any:
        import httpx

        if not self.plan.api_url:
            raise SplitdbError("api load needs the API process running")
        client = httpx.Client(base_url=self.plan.api_url, timeout=10.0)
        endpoints = list(self.plan.settings.get("endpoints", ["latest"]))
        symbols = self.plan.symbols or ("EURUSD",)

        def op(late_us: int) -> None:
            name = self.rng.choice(endpoints)
            path = _API_PATHS[name].format(symbol=self.rng.choice(symbols))
            started = time.perf_counter_ns()
            try:
                status = client.get(path).status_code
                outcome = "ok" if status < 500 else "error"
            except httpx.HTTPError as exc:
                status, outcome = 0, f"error: {type(exc).__name__}"
            self.events.emit(
                "http",
                endpoint=name,
                status=status,
                dur_us=(time.perf_counter_ns() - started) // 1000,
                late_us=late_us,
                **self._wake(),
                outcome=outcome if outcome == "ok" else "error",
            )

        return op

    def _http(self) -> Any:
        """GET each of the group's URLs in turn (placeholders already expanded by the run)."""
        import httpx

        urls = list(self.plan.settings["urls"])
        client = httpx.Client(timeout=float(self.plan.settings.get("timeout", 10.0)))
        # Worker i starts at URL i: several workers spread over the URLs from the first send.
        turn = [self.plan.index]

        def op(late_us: int) -> None:
            url = urls[turn[0] % len(urls)]
            turn[0] += 1
            started = time.perf_counter_ns()
            error = None
            try:
                status = client.get(url).status_code
            except httpx.HTTPError as exc:
                status, error = 0, f"{type(exc).__name__}: {exc}"
            self.events.emit(
                "http",
                endpoint=url,
                status=status,
                dur_us=(time.perf_counter_ns() - started) // 1000,
                late_us=late_us,
                **self._wake(),
                outcome="ok" if 200 <= status < 300 else "error",
                **({"error": error} if error else {}),
            )

        return op

    def _writer(self) -> Any:
        role = self.plan.settings.get("role", "api")
        database = self.plan.settings.get("database", "logs")
        if role == "rotate":
            # Worker i writes as role i mod 3, into the database that role owns: N writers
            # spread over the seed's three files, or all into the legacy layout's one file.
            role = ("bot", "agent", "api")[self.plan.index % 3]
            database = {"bot": "ticks", "agent": "analysis", "api": "logs"}[role]
        rows = int(self.plan.settings.get("rows", 10))
        conn = self._connect(role, database)
        tag = self.plan.name
        counter = [0]

        def batch() -> None:
            base = counter[0]
            with transaction(conn):
                now = time.time_ns()
                conn.executemany(_WRITER_SQL, [(tag, base + i, now) for i in range(rows)])
            counter[0] += rows

        def op(late_us: int) -> None:
            self._timed("write", database, late_us, batch, rows=rows)

        return op

    def _violator(self) -> Any:
        role = self.plan.settings.get("role", "api")
        target = self.plan.settings.get("database", "*")
        topology = self.access.topology
        databases = (
            [d for d in topology.databases if topology.mode(role, d) == "ro"]
            if target == "*"
            else [target]
        )
        if not databases:
            # In a layout where the role owns everything there is nothing to try.
            self.events.emit("nothing_forbidden", role=role, database=target)
            return None
        if self.pg is not None:
            return violator_op(self.pg, role, databases, self.events, self.rng, self.stack)
        scratch = Path(self.plan.scratch)
        scratch.mkdir(parents=True, exist_ok=True)
        attach, copy = (
            scratch / f"{self.plan.name}-attach.db",
            scratch / f"{self.plan.name}-copy.db",
        )
        attempts = [
            a
            for a in catalogue(attach_path=str(attach), copy_path=str(copy))
            if a.who != "everyone"
        ]
        conns = {d: self._connect(role, d) for d in databases}
        # What a BACKUP INTO attempt copies from: a second connection of the role's own, opened
        # when first needed (an idle one would stop an owner's journal_mode change).
        sources: dict[str, sqlite3.Connection] = {}

        def source(database: str, attempt: Attempt) -> sqlite3.Connection | None:
            if attempt.call != "backup_into":
                return None
            if database not in sources:
                sources[database] = self._connect(role, database)
            return sources[database]

        def op(late_us: int) -> None:
            database = self.rng.choice(databases)
            attempt: Attempt = self.rng.choice(attempts)
            owner = topology.mode(role, database) == "rw"
            must_deny = not allowed(attempt, owner=owner)
            self._timed(
                "attempt",
                database,
                late_us,
                lambda: perform(attempt, conns[database], source=source(database, attempt)),
                attempt=attempt.name,
                must_deny=must_deny,
            )
            for path in (attach, copy):
                if path.exists():
                    self.events.emit("leak", db=database, attempt=attempt.name, file=str(path))
                    path.unlink()

        return op

    def _bypass(self) -> Any:
        """Plain sqlite3 on the files, no access manager: the catalogue's writes on every
        database the role only reads, as the role's Unix user when the plan names one."""
        as_user = self.plan.extra.get("as_user")
        if as_user is not None:
            os.setgroups(as_user["groups"])
            os.setgid(as_user["gid"])
            os.setuid(as_user["uid"])
        role = self.plan.settings.get("role", "api")
        topology = self.access.topology
        databases = [d for d in topology.databases if topology.mode(role, d) == "ro"]
        if not databases:
            self.events.emit("nothing_forbidden", role=role, database="*")
            return None
        # The writes to the file: temp objects and query_only change the connection only (and
        # a temp view named like a table makes later INSERTs into it "succeed" doing nothing).
        # SQL statements only: the catalogue's calls (backup, blob, ...) are the guard's paths.
        attempts = [
            a
            for a in catalogue(attach_path="", copy_path="")
            if a.who == "owner" and a.call == "execute" and a.name not in _CONNECTION_ONLY
        ]
        conns: dict[str, sqlite3.Connection] = {}
        for database in databases:
            path = topology.file_of(database, Path(self.plan.data_dir))
            timeout = topology.databases[database].busy_timeout_ms / 1000
            conns[database] = sqlite3.connect(path, timeout=timeout, isolation_level=None)

        def op(late_us: int) -> None:
            database = self.rng.choice(databases)
            attempt: Attempt = self.rng.choice(attempts)
            self._timed(
                "bypass",
                database,
                late_us,
                lambda: conns[database].execute(attempt.sql).fetchall(),
                attempt=attempt.name,
                as_user=as_user is not None,
            )

        return op

    def _status(self) -> Any:
        board = StatusBoard(Path(self.plan.data_dir) / self.access.topology.status)
        section = self.plan.name
        count = [0]

        def update() -> None:
            content = board.update(section, {"n": count[0] + 1}, timeout=2.0)
            count[0] += 1
            # Same evidence as the reference processes give: the status_board check reads it.
            self.events.emit("status_update", seq=content["_seq"])

        def op(late_us: int) -> None:
            self._timed("status", None, late_us, update)

        return op

    def _hold(self) -> Any:
        role = self.plan.settings.get("role", "api")
        database = self.plan.settings.get("database", "ticks")
        hold = float(self.plan.settings.get("hold", 1.0))
        write = bool(self.plan.settings.get("write", False))
        conn = self._connect(role, database)

        def op(late_us: int) -> None:
            def held() -> None:
                if write:
                    # A writer frozen inside its transaction: it holds the write lock.
                    conn.execute("BEGIN IMMEDIATE")
                else:
                    conn.execute("BEGIN")
                    conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
                    # The snapshot is pinned: the WAL cannot be checkpointed past it.
                time.sleep(hold)
                conn.execute("COMMIT")

            self._timed("hold", database, late_us, held, hold_s=hold, write=write)

        return op

    def _connect(self, role: str, database: str) -> sqlite3.Connection:
        deadline = time.monotonic() + 10
        while True:
            started = time.perf_counter_ns()
            try:
                return self.access.connect(role, database)
            except DatabaseMissing:
                # A reader may start before the owner created its file; wait a little.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            except sqlite3.OperationalError as exc:
                # Opening reads the schema: with busy_timeout 0 (or a lock held past it) that
                # meets a writer's lock. Contention, counted like any other, then tried again.
                outcome, code = outcome_of(exc)
                if outcome not in ("busy", "locked") or time.monotonic() > deadline:
                    raise
                self.events.emit(
                    "connect",
                    db=database,
                    dur_us=(time.perf_counter_ns() - started) // 1000,
                    outcome=outcome,
                    code=code,
                    error=str(exc),
                )
                time.sleep(0.01)
