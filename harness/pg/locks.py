"""Lock waits on a PostgreSQL run's database, counted per role: the contention check's evidence
on a server (on SQLite the processes report their own busy waits).

A sample is one look at `pg_stat_activity`: every backend of the database waiting for a
heavyweight lock (`wait_event_type = 'Lock'`), with the lock it waits for (its one ungranted row
in `pg_locks`) and who holds it up (`pg_blocking_pids`). Sampling sees a wait only while it
lasts, so waits shorter than the interval may be missed: pair it with the server's own record
(`log_lock_waits = on`, `deadlock_timeout = 10ms`) for every wait past 10 ms, as
docs/postgres.md plans.

A wait is one statement of one backend seen waiting, identified by (pid, the statement's start):
seen in ten samples, it counts once. Samples are taken by a connection of the harness (one that
may read every backend's row: a superuser or a member of `pg_read_all_stats`); a role's own
connection sees only its own queries' text.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

__all__ = ["LockWait", "LockWaitCounter", "sample_lock_waits"]

SAMPLE_SQL = """
SELECT a.pid, a.usename, a.wait_event, a.query_start, pg_blocking_pids(a.pid), a.query,
       l.locktype, l.mode, l.relation::regclass::text, a.application_name
FROM pg_stat_activity a
LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
WHERE a.datname = %s AND a.wait_event_type = 'Lock' AND a.pid <> pg_backend_pid()
"""


@dataclass(frozen=True)
class LockWait:
    """One backend seen waiting for a lock: who (`user`, the login role), for what, and behind
    whom (`blocked_by`: the pids holding or queued ahead for that lock)."""

    pid: int
    user: str
    wait_event: str  # relation, tuple, transactionid, ...: what kind of lock
    query_start: datetime | None
    blocked_by: tuple[int, ...]
    query: str
    mode: str | None  # the lock mode asked for, e.g. ShareLock
    relation: str | None  # the table, for a relation or tuple lock
    application: str = ""  # the session's application_name: which process (or load worker)

    @property
    def key(self) -> tuple[int, datetime | None]:
        return (self.pid, self.query_start)


def sample_lock_waits(conn: psycopg.Connection[Any], dbname: str) -> list[LockWait]:
    """The backends of database `dbname` waiting for a lock right now (one sample)."""
    rows = conn.execute(SAMPLE_SQL, (dbname,)).fetchall()
    return [
        LockWait(
            pid=int(row[0]),
            user=str(row[1]),
            wait_event=str(row[2]),
            query_start=row[3],
            blocked_by=tuple(int(p) for p in row[4] or ()),
            query=str(row[5] or ""),
            mode=row[7],
            relation=row[8],
            application=str(row[9] or ""),
        )
        for row in rows
    ]


class LockWaitCounter:
    """Distinct lock waits seen over a run's samples, per role.

    `roles` maps login roles to topology roles (`{login.user: role}` from the layout); a waiting
    login not in it is counted under its own name, so an unexpected client still shows.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        dbname: str,
        roles: Mapping[str, str] | None = None,
        *,
        reconnect: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        self.conn = conn
        self.dbname = dbname
        self.roles = dict(roles or {})
        # A server that restarts its backends (one was killed) ends this connection too: with
        # `reconnect`, sampling goes on on a new one, and the looks missed are counted.
        self.reconnect = reconnect
        self.missed = 0
        self.samples = 0
        self._seen: dict[tuple[int, datetime | None], LockWait] = {}
        self._lock = threading.Lock()

    def sample(self) -> list[LockWait]:
        """Take one sample; returns the waits in it (new or already seen). A look that found
        the connection lost (and `reconnect` given) is missed and counted, not raised."""
        try:
            if self.conn.closed and self.reconnect is not None:
                self.conn = self.reconnect()
            waits = sample_lock_waits(self.conn, self.dbname)
        except psycopg.OperationalError:
            if self.reconnect is None:
                raise
            with self._lock:
                self.missed += 1
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            return []
        with self._lock:
            self.samples += 1
            for wait in waits:
                self._seen.setdefault(wait.key, wait)
        return waits

    @property
    def waits(self) -> list[LockWait]:
        """Every distinct wait seen so far, in the order first seen."""
        with self._lock:
            return list(self._seen.values())

    def counts(self) -> dict[str, int]:
        """Distinct waits per role (roles with none are absent)."""
        out: dict[str, int] = {}
        for wait in self.waits:
            role = self.roles.get(wait.user, wait.user)
            out[role] = out.get(role, 0) + 1
        return out

    @contextmanager
    def sampling(self, interval_s: float = 0.02) -> Iterator[LockWaitCounter]:
        """Sample every `interval_s` seconds in a thread for the `with` block (and once more at
        its end). The counter's connection is the thread's alone meanwhile."""
        if not interval_s > 0:
            raise ValueError(f"interval_s={interval_s!r} must be > 0 seconds, such as 0.02")
        stop = threading.Event()
        failure: list[BaseException] = []

        def loop() -> None:
            try:
                while not stop.is_set():
                    self.sample()
                    stop.wait(interval_s)
            except BaseException as exc:  # re-raised in the caller's thread, below
                failure.append(exc)

        thread = threading.Thread(target=loop, name="splitdb-lock-waits", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
        if failure:
            raise failure[0]
        self.sample()
