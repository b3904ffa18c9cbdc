"""A run's PostgreSQL database: what `splitdb run` needs around the processes of a topology with
`backend = "postgres"` (issue 19; docs/postgres.md).

`pg_run(topology)` starts a throwaway server (or uses the one `url` names), makes a fresh
database, installs the topology on it (a schema per database, a login role per role, its
grants: `reference.pg_access`), and, for the `with` block, samples lock waits every 20 ms as
the installer (`harness.pg.locks`). Each process is given its role's login in its environment
(`PgRun.env`): `SPLITDB_PG_CONNINFO` without the password and `PGPASSWORD`, which libpq reads,
so a connection string printed in a log or a report carries no secret. The server runs with
`log_lock_waits = on` and `deadlock_timeout = 10ms`: every wait past 10 ms is in its log with
both sides, sampled or not; with `run_dir` that log is kept as `logs/postgres.log`.

On the way out the database and the roles are dropped (a server the user named keeps nothing of
ours), and a throwaway server is stopped and removed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql

from harness.pg.locks import LockWaitCounter
from harness.pg.server import PgServer, pg_server
from reference.pg_access import PgLayout, install
from reference.pg_store import CONNINFO_ENV
from reference.topology import Topology

__all__ = ["PgRun", "pg_run"]

# log_lock_waits reports a wait once it has lasted deadlock_timeout.
# The log's lines name each session's application_name (%a), so a logged wait says whose it is.
RUN_SETTINGS = {
    "log_lock_waits": "on",
    "deadlock_timeout": "10ms",
    "log_line_prefix": "'%m [%p] app=%a '",
}
# The application_name of the violators' sessions: the attack load, not the system under test.
# Their waits on each other (GRANTs rewriting one catalog row) are reported apart, not counted.
ATTACKER_APP = "splitdb-violator"
# Waits shown in the contention figure, first seen first.
SHOWN_WAITS = 5


@dataclass
class PgRun:
    """A run's database on a server: the installed layout and its lock-wait counter."""

    server: PgServer
    layout: PgLayout
    locks: LockWaitCounter

    def env(self, role: str) -> dict[str, str]:
        """The environment a process of `role` needs: its own login, never the installer's."""
        login = self.layout.login(role)
        return {
            CONNINFO_ENV: self.server.conninfo(user=login.user, dbname=self.layout.dbname),
            "PGPASSWORD": login.password,
        }

    def role_env(self) -> dict[str, dict[str, str]]:
        """`env` of every role of the topology (for `Supervisor(role_env=...)`)."""
        return {role: self.env(role) for role in self.layout.topology.roles}

    def contention(self) -> dict[str, Any]:
        """The contention figure for a report: lock waits per role (each wait counted once
        however many samples saw it), how many samples, and the first waits with who blocked
        them."""
        roles = self.locks.roles
        waits = [w for w in self.locks.waits if w.application != ATTACKER_APP]
        among_attackers = len(self.locks.waits) - len(waits)
        by_role: dict[str, int] = {}
        for w in waits:
            role = roles.get(w.user, w.user)
            by_role[role] = by_role.get(role, 0) + 1
        return {
            "samples": self.locks.samples,
            "missed": self.locks.missed,
            "lock_waits": len(waits),
            "by_role": by_role,
            "among_attackers": among_attackers,
            "first": [
                {
                    "role": roles.get(w.user, w.user),
                    "application": w.application,
                    "wait_event": w.wait_event,
                    "mode": w.mode,
                    "relation": w.relation,
                    "blocked_by": list(w.blocked_by),
                    "query": w.query[:200],
                }
                for w in waits[:SHOWN_WAITS]
            ],
        }


@contextmanager
def pg_run(
    topology: Topology,
    *,
    url: str | None = None,
    run_dir: Path | None = None,
    sample_interval_s: float = 0.02,
    settings: dict[str, str] | None = None,
) -> Iterator[PgRun]:
    """`topology` installed on a fresh database for the `with` block, lock waits sampled
    meanwhile (see the module's note). `settings` add to the throwaway server's
    `postgresql.conf` (a named server keeps its own)."""
    log_path = run_dir / "logs" / "postgres.log" if run_dir is not None else None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(4)
    dbname = f"splitdb_run_{tag}"
    with pg_server(url, log_path=log_path, settings={**RUN_SETTINGS, **(settings or {})}) as server:
        with server.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        layout: PgLayout | None = None
        try:
            with server.connect(dbname=dbname, autocommit=False) as conn:
                layout = install(conn, topology, prefix=f"run_{tag}_")
            logins = {login.user: role for role, login in layout.logins.items()}
            with server.connect(dbname=dbname) as admin:
                counter = LockWaitCounter(
                    admin,
                    dbname,
                    roles=logins,
                    reconnect=lambda: server.connect(dbname=dbname),
                )
                try:
                    with counter.sampling(sample_interval_s):
                        yield PgRun(server, layout, counter)
                finally:
                    if counter.conn is not admin:
                        counter.conn.close()
        finally:
            with server.connect() as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(dbname)
                    )
                )
                for login in layout.logins.values() if layout is not None else ():
                    conn.execute(
                        sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login.user))
                    )
