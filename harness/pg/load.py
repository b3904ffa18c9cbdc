"""Load workers' operations on a PostgreSQL run: the readers' queries as their role's login, and
the violators' attempts from the server's attack catalogue (`harness.pg.attacks`).

A worker of a run on a server gets `PgAccess` in its plan (`WorkerPlan.extra["pg"]`): the server
and the installed layout, so it connects as the role it stands for, never as the installer,
except for a violator's effect queries (run by the installer before and after an attempt the
server may complete with a warning) and the session of another role its attempts aim at.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from harness.pg.attacks import (
    Outcome,
    PgAttempt,
    attempt_names,
    catalogue,
    connect_as,
    make_attempt,
    victim,
)
from harness.pg.dialect import SqliteStyle
from harness.pg.run import ATTACKER_APP
from harness.pg.server import PgServer
from reference.events import EventLog
from reference.pg_access import PgLayout

__all__ = ["PgAccess", "RoleReads", "reader_connection", "violator_op"]

Op = Callable[[int], None]
DENIED_STATES = ("42501", "28P01")
# admin_shutdown, crash_shutdown, cannot_connect_now: the server ended or is recovering.
LOST_STATES = ("57P01", "57P02", "57P03")
# Tries of an attempt that met another violator's catalog update (see `_conflict`).
CONFLICT_TRIES = 5


@dataclass(frozen=True)
class PgAccess:
    """What a worker needs to reach a run's database: the server and the installed layout."""

    server: PgServer
    layout: PgLayout


class RoleReads:
    """`role`'s own login, autocommit (each query its own snapshot), taking the readers'
    SQLite-dialect queries; its `search_path` (set by the installer) finds the tables. A
    connection the server ended (a backend killed or terminated) is replaced on the next query;
    a query that meets the loss, or the server still recovering, fails as any error does."""

    def __init__(self, access: PgAccess, role: str) -> None:
        self.access = access
        self.role = role
        self.conn: SqliteStyle | None = None

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        if self.conn is None or self.conn.conn.closed:
            self.conn = SqliteStyle(
                connect_as(self.access.server, self.access.layout, self.role, autocommit=True)
            )
        return self.conn.execute(sql, parameters)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def reader_connection(access: PgAccess, role: str) -> RoleReads:
    """A reader's connection as `role` (see `RoleReads`)."""
    return RoleReads(access, role)


def _conflict(outcome: Outcome) -> bool:
    """GRANT and REVOKE rewrite the object's catalog row even when they grant nothing (the
    warning case): two sessions at once can fail one with "tuple concurrently updated"
    (XX000). A conflict between attackers, not an answer about the grants."""
    return (
        outcome.result == "refused"
        and outcome.sqlstate == "XX000"
        and "concurrently updated" in outcome.message
    )


def _lost(sqlstate: str | None) -> bool:
    """A failure of the connection or the server (class 08, an admin shutdown or a crash
    restart, 57P01 to 57P03; None: the connection broke with no answer), not an answer to the
    statement."""
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in LOST_STATES


@dataclass
class _Session:
    """A violator's connections: its role's, the installer's (effect queries), and another
    role's session its attempts aim at, with the names the statements use."""

    conn: psycopg.Connection[Any]
    admin: psycopg.Connection[Any]
    names: dict[str, dict[str, str]]
    stack: contextlib.ExitStack

    @classmethod
    def open(cls, access: PgAccess, role: str, databases: list[str]) -> _Session:
        server, layout = access.server, access.layout
        others = [r for r in layout.topology.roles if r != role]
        stack = contextlib.ExitStack()
        try:
            pid = stack.enter_context(victim(server, layout, others[0] if others else None))
            admin = stack.enter_context(server.connect(dbname=layout.dbname))
            conn = stack.enter_context(connect_as(server, layout, role))
            # Named, so the server's waits and log tell the attack load from the system.
            for labelled in (admin, conn):
                labelled.execute(f"SET application_name = '{ATTACKER_APP}'")
                labelled.commit()
        except BaseException:
            stack.close()
            raise
        names = {d: attempt_names(layout, role, d, victim_pid=pid) for d in databases}
        return cls(conn, admin, names, stack)

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.stack.close()


def violator_op(
    access: PgAccess,
    role: str,
    databases: list[str],
    events: EventLog,
    rng: random.Random,
    stack: contextlib.ExitStack,
    *,
    attempts: Sequence[PgAttempt] | None = None,
) -> Op:
    """Each call makes one attempt of the catalogue, picked at random, as `role` on one of
    `databases` (its schemas), and records it as an `attempt` event as the SQLite violators do:
    `must_deny` from the topology, `outcome` 'denied' when the server refused it for a missing
    right (42501, or 28P01 for a connection with another role's name) or completed it with a
    warning and no effect, 'ok' when it was done, 'error' for any other refusal (which the
    permissions check counts against the grants, as a SQLite refusal the access manager did not
    make). An attempt that met another violator's catalog update is tried again (up to
    `CONFLICT_TRIES`). One that met a lost connection or a recovering server, or a conflict
    every time, answered nothing about the grants: it is an `attempt_lost` event (the
    connections are opened again for the next one). `stack` closes what is open at the end."""
    server, layout = access.server, access.layout
    chosen = tuple(catalogue() if attempts is None else attempts)
    current: list[_Session] = [_Session.open(access, role, databases)]
    stack.callback(lambda: current[0].close() if current else None)

    def op(late_us: int) -> None:
        database = rng.choice(databases)
        attempt = rng.choice(chosen)
        started = time.perf_counter_ns()
        outcome: Outcome | None = None
        try:
            if not current:
                current.append(_Session.open(access, role, databases))
            session = current[0]
            for _ in range(CONFLICT_TRIES):
                outcome = make_attempt(
                    attempt,
                    session.conn,
                    session.admin,
                    server,
                    layout,
                    role,
                    database,
                    session.names[database],
                )
                if not _conflict(outcome):
                    break
                # Another violator rewrote the same catalog row: try again a moment later.
                time.sleep(rng.uniform(0.0, 0.005))
        except psycopg.OperationalError as exc:
            lost_state = exc.sqlstate
        else:
            lost_state = outcome.sqlstate if outcome is not None else None
        if (
            outcome is None
            or (outcome.result == "refused" and _lost(outcome.sqlstate))
            or _conflict(outcome)
        ):
            if current:
                current.pop().close()
            events.emit(
                "attempt_lost",
                db=database,
                attempt=attempt.name,
                code=lost_state,
                late_us=late_us,
                outcome="error",
            )
            return
        assert outcome is not None
        refused = outcome.result != "done"
        # A refusal for a reason other than a missing right is not the grants holding.
        denied = outcome.result == "no effect" or outcome.sqlstate in DENIED_STATES
        events.emit(
            "attempt",
            db=database,
            dur_us=(time.perf_counter_ns() - started) // 1000,
            late_us=late_us,
            outcome="ok" if not refused else "denied" if denied else "error",
            code=outcome.sqlstate,
            attempt=attempt.name,
            must_deny=outcome.expected == "denied",
            **({"error": outcome.message} if refused else {}),
        )

    return op
