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
from collections.abc import Callable
from dataclasses import dataclass

from harness.pg.attacks import attempt_names, catalogue, connect_as, make_attempt, victim
from harness.pg.dialect import SqliteStyle
from harness.pg.server import PgServer
from reference.events import EventLog
from reference.pg_access import PgLayout

__all__ = ["PgAccess", "reader_connection", "violator_op"]

Op = Callable[[int], None]
DENIED_STATES = ("42501", "28P01")


@dataclass(frozen=True)
class PgAccess:
    """What a worker needs to reach a run's database: the server and the installed layout."""

    server: PgServer
    layout: PgLayout


def reader_connection(access: PgAccess, role: str) -> SqliteStyle:
    """`role`'s own login, autocommit (each query its own snapshot), taking the readers'
    SQLite-dialect queries; its `search_path` (set by the installer) finds the tables."""
    return SqliteStyle(connect_as(access.server, access.layout, role, autocommit=True))


def violator_op(
    access: PgAccess,
    role: str,
    databases: list[str],
    events: EventLog,
    rng: random.Random,
    stack: contextlib.ExitStack,
) -> Op:
    """Each call makes one attempt of the catalogue, picked at random, as `role` on one of
    `databases` (its schemas), and records it as an `attempt` event as the SQLite violators do:
    `must_deny` from the topology, `outcome` 'denied' when the server refused it for a missing
    right (42501, or 28P01 for a connection with another role's name) or completed it with a
    warning and no effect, 'ok' when it was done, 'error' for any other refusal (which the
    permissions check counts against the grants, as a SQLite refusal the access manager did not
    make). `stack` keeps the connections."""
    server, layout = access.server, access.layout
    topology = layout.topology
    others = [r for r in topology.roles if r != role]
    pid = stack.enter_context(victim(server, layout, others[0] if others else None))
    admin = stack.enter_context(server.connect(dbname=layout.dbname))
    conn = stack.enter_context(connect_as(server, layout, role))
    names = {d: attempt_names(layout, role, d, victim_pid=pid) for d in databases}
    attempts = catalogue()

    def op(late_us: int) -> None:
        nonlocal conn
        database = rng.choice(databases)
        attempt = rng.choice(attempts)
        if conn.closed:
            conn = stack.enter_context(connect_as(server, layout, role))
        started = time.perf_counter_ns()
        outcome = make_attempt(
            attempt, conn, admin, server, layout, role, database, names[database]
        )
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
