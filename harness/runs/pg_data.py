"""A repeat's data on a PostgreSQL server (the `RunData` of `harness.runs.run_data`).

`PgRunData.start` enters `pg_run` (a throwaway server or the one a URL names, a fresh database,
the topology installed, lock waits sampled) for the repeat; `close` drops it all. Each process
gets its role's login (`role_env`), each load worker the server and the layout (`worker_extra`).

The checks map over from SQLite:

- durability, duplicates, analysis and the API's answers read the server with the same SQL as
  on SQLite (`harness.pg.dialect`), as the installer, every schema on its `search_path`;
- integrity is the server's own: `amcheck` (`verify_heapam` on every table, `bt_index_check`
  with `heapallindexed` on every index of the run's schemas);
- contention is what the processes report as busy (a `lock_timeout` running out, 55P03) plus
  the lock waits the server had: distinct waits sampled from `pg_stat_activity` and waits past
  `deadlock_timeout` in the server's log (each counted once, the larger of the two), deadlocks
  (the log, and `pg_stat_database`), and serialization failures the processes met;
- settings: what acknowledging after COMMIT relies on, as each role's own login sees it
  (`fsync`, `synchronous_commit`, `full_page_writes` on): a role may `ALTER ROLE` its own
  session defaults, and `synchronous_commit = off` would let a COMMIT return before its WAL
  is on disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from harness.pg.attacks import connect_as, make_probes
from harness.pg.dialect import SqliteStyle
from harness.pg.load import PgAccess
from harness.pg.run import ATTACKER_APP, PgRun, pg_run
from harness.pg.usage import server_usage
from harness.runs import checks
from harness.runs.api_check import analysis_on, api_answers_on
from harness.runs.checks import FIRST, Check
from reference.errors import SplitdbError
from reference.events import Event
from reference.topology import Topology

__all__ = ["PgRunData"]

# What acknowledging a tick after its COMMIT relies on, and the value it needs.
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
SERIALIZATION = ("40001", "40P01")  # serialization_failure, deadlock_detected
# A wait past deadlock_timeout, in a log whose lines name the session (harness/pg/run.py).
_LOGGED_WAIT = re.compile(r"app=(\S*) .*process \d+ still waiting for \w+ on")
_LOGGED_DEADLOCK = re.compile(r"deadlock detected")


class PgRunData:
    """A repeat's database on a server, for the `with` span of `start` to `close`."""

    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, run: PgRun, stack: contextlib.ExitStack) -> None:
        self.run = run
        self._stack = stack

    @classmethod
    def start(
        cls, topology: Topology, *, url: str | None, run_dir: Path, probes: bool = False
    ) -> PgRunData:
        """The topology installed on a fresh database for the repeat (see the module's note);
        `probes`: make the attack catalogue's probe objects (a violator load aims at them)."""
        stack = contextlib.ExitStack()
        try:
            run = stack.enter_context(pg_run(topology, url=url, run_dir=run_dir))
            if probes:
                make_probes(run.server, run.layout)
        except BaseException:
            stack.close()
            raise
        return cls(run, stack)

    def close(self) -> None:
        self._stack.close()

    def role_env(self) -> dict[str, dict[str, str]] | None:
        return self.run.role_env()

    def worker_extra(self) -> dict[str, Any]:
        return {"pg": PgAccess(self.run.server, self.run.layout)}

    def wal_bytes(self) -> dict[str, int]:
        return {}

    def server_usage(self) -> tuple[int, dict[str, Any]] | None:
        pid = self.run.server.postmaster_pid
        if pid is None:
            return None
        usage = server_usage(pid, harness_user=self.run.server.user)
        return None if usage is None else (pid, usage)

    def end_backends(self, role: str, how: str) -> dict[str, Any]:
        """End every session of `role`'s login on the run's database: 'terminate'
        (`pg_terminate_backend` as the installer), or 'kill' (SIGKILL of each backend process:
        the postmaster then ends every backend and recovers from its WAL, as after a crash;
        only a throwaway server's processes are ours to signal). The record: the pids, and for
        a kill how long until the server took connections again."""
        login = self.run.layout.login(role)
        server = self.run.server
        if how == "kill" and server.postmaster_pid is None:
            raise SplitdbError(
                "kill_backend: the server is not a throwaway one of this run, its processes are "
                "not ours to kill; use terminate_backend"
            )
        with server.connect(dbname=self.run.layout.dbname) as conn:
            # The pids first, then each ended: in one WHERE the server may call
            # pg_terminate_backend before it has tested the other conditions.
            pids = [
                int(pid)
                for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE usename = %s "
                    "AND datname = current_database()",
                    (login.user,),
                )
            ]
            if how == "terminate":
                ended = [
                    pid
                    for pid in pids
                    if conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
                ]
                return {"backends": ended}
        started = time.monotonic()
        killed = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return {"backends": killed, "recovered_s": self._wait_recovered(started)}

    def _wait_recovered(self, since: float, timeout_s: float = 60.0) -> float | None:
        """Seconds from `since` until the server takes a connection again (None: not within
        `timeout_s`). Right after the kill it may still take one, before the postmaster has
        noticed: wait to see it refuse first, briefly."""
        deadline = since + timeout_s
        refused = False
        while time.monotonic() < deadline:
            try:
                with self.run.server.connect(dbname=self.run.layout.dbname) as conn:
                    conn.execute("SELECT 1")
                if refused or time.monotonic() - since > 2.0:
                    return round(time.monotonic() - since, 3)
            except psycopg.OperationalError:
                refused = True
            time.sleep(0.05)
        return None

    @contextlib.contextmanager
    def _reads(self) -> Iterator[SqliteStyle]:
        """The installer's connection to the run's database, every schema on its path."""
        layout = self.run.layout
        conn = self.run.server.connect(dbname=layout.dbname)
        try:
            schemas = sql.SQL(", ").join(
                sql.Identifier(layout.schema_of(d)) for d in layout.topology.databases
            )
            conn.execute(sql.SQL("SET search_path = {}").format(schemas))
            yield SqliteStyle(conn)
        finally:
            conn.close()

    def durability(self, bot_event_files: Sequence[Path]) -> Check:
        with self._reads() as conn:
            return checks.durability_on(bot_event_files, conn)

    def duplicates(self) -> Check:
        with self._reads() as conn:
            return checks.duplicates_on({"ticks": conn, "bars": conn})

    def analysis(self) -> Check:
        with self._reads() as conn:
            return analysis_on(conn, conn)

    def api_answers(self, api_url: str, symbols: Sequence[str]) -> Check:
        with self._reads() as conn:
            return api_answers_on(api_url, conn, conn, symbols)

    def integrity(self) -> Check:
        layout = self.run.layout
        schemas = [layout.schema_of(d) for d in layout.topology.databases]
        with self.run.server.connect(dbname=layout.dbname) as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
            except psycopg.Error as exc:
                # A server the user named may not let us: said, not judged.
                why = str(exc).strip().splitlines()[0]
                return Check(
                    "integrity",
                    True,
                    f"not checked: the server's amcheck is not available ({why})",
                    {"error": why},
                    warning=f"integrity not checked: amcheck not available ({why})",
                )
            tables = conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = ANY(%s) "
                "ORDER BY 1",
                (schemas,),
            ).fetchall()
            problems: dict[str, list[str]] = {}
            for (table,) in tables:
                rows = conn.execute(
                    "SELECT blkno, offnum, msg FROM verify_heapam(%s::regclass)", (table,)
                ).fetchall()
                if rows:
                    problems[table] = [f"block {b} item {o}: {m}" for b, o, m in rows[:FIRST]]
            indexes = conn.execute(
                "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = "
                "i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON "
                "a.oid = c.relam WHERE a.amname = 'btree' AND n.nspname = ANY(%s) ORDER BY 1",
                (schemas,),
            ).fetchall()
            for (index,) in indexes:
                try:
                    conn.execute("SELECT bt_index_check(%s::regclass, true)", (index,))
                except psycopg.Error as exc:
                    problems[index] = [str(exc).strip().splitlines()[0]]
        return Check(
            "integrity",
            not problems,
            f"{len(tables) - sum(t in problems for (t,) in tables)} of {len(tables)} tables "
            f"pass verify_heapam, {len(indexes) - sum(i in problems for (i,) in indexes)} of "
            f"{len(indexes)} indexes pass bt_index_check (amcheck)",
            {
                "tables": [t for (t,) in tables],
                "indexes": [i for (i,) in indexes],
                "problems": problems,
            },
        )

    def contention(self, events: Mapping[str, Sequence[Event]], *, max_busy: int | None) -> Check:
        busy = checks.contention(events, max_busy=max_busy)
        sampled = self.run.contention()
        log = self._server_log()
        apps = _LOGGED_WAIT.findall(log)
        logged_waits = sum(1 for app in apps if app != ATTACKER_APP)
        logged_deadlocks = len(_LOGGED_DEADLOCK.findall(log))
        deadlocks = max(logged_deadlocks, self._deadlocks())
        failures = [
            dict(e, process=name)
            for name, evs in events.items()
            for e in evs
            if str(e.get("code")) in SERIALIZATION
        ]
        waits = max(int(sampled["lock_waits"]), logged_waits)
        # The attack load's waits on each other's catalog rows: shown, not the system's.
        apart = max(int(sampled["among_attackers"]), len(apps) - logged_waits)
        total = int(busy.evidence["busy_events"]) + waits + deadlocks + len(failures)
        limit = 0 if max_busy is None else max_busy
        return Check(
            "contention",
            total <= limit,
            f"{busy.evidence['busy_events']} busy errors, {waits} lock waits "
            f"({sampled['lock_waits']} sampled in {sampled['samples']} looks, {logged_waits} past "
            f"deadlock_timeout in the server's log), {deadlocks} deadlocks, {len(failures)} "
            f"serialization failures (limit {limit} in all)"
            + (f"; apart: {apart} waits of the violators on each other" if apart else ""),
            {
                **busy.evidence,
                "lock_waits": waits,
                "sampled": sampled,
                "logged_waits": logged_waits,
                "waits_among_attackers": apart,
                "deadlocks": deadlocks,
                "serialization_failures": len(failures),
                "first_serialization_failures": failures[:FIRST],
            },
        )

    def _server_log(self) -> str:
        path = self.run.server.log_file
        if path is None or not path.exists():
            return ""
        with contextlib.suppress(OSError):
            return path.read_text(encoding="utf-8", errors="replace")
        return ""

    def _deadlocks(self) -> int:
        with self.run.server.connect(dbname=self.run.layout.dbname) as conn:
            row = conn.execute(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def settings(self, events: Mapping[str, Sequence[Event]]) -> Check:
        layout = self.run.layout
        names = list(DURABLE_SETTINGS)
        seen: dict[str, dict[str, str]] = {}
        for role in layout.topology.roles:
            with connect_as(self.run.server, layout, role, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (names,)
                ).fetchall()
            seen[role] = {str(n): str(v) for n, v in rows}
        mismatches = [
            {"role": role, "setting": name, "expected": want, "actual": got.get(name)}
            for role, got in seen.items()
            for name, want in DURABLE_SETTINGS.items()
            if got.get(name) != want
        ]
        if mismatches:
            summary = f"{len(mismatches)} settings differ: " + "; ".join(
                f"{m['role']} {m['setting']} {m['actual']}, expected {m['expected']}"
                for m in mismatches[:FIRST]
            )
        else:
            summary = (
                f"{', '.join(f'{n} = {v}' for n, v in DURABLE_SETTINGS.items())} for each of "
                f"{len(seen)} roles' logins ({', '.join(seen)})"
            )
        return Check(
            "settings", not mismatches, summary, {"by_role": seen, "mismatches": mismatches}
        )
