"""The harness side of a PostgreSQL run: a server and a fresh database per run, each process on
its role's login through the supervisor (restarts included), lock waits counted per role as
the run's contention figure, the server's log kept in the run directory."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from harness.pg.run import PgRun, pg_run
from harness.pg.server import PgServer
from harness.runs.supervisor import Supervisor
from reference.analysis import Tick, analyze
from reference.pg_store import CONNINFO_ENV, PgTickWriter
from reference.topology import Topology, load_topology, parse_topology
from tests.conftest import postgres_binaries_or_skip
from tests.test_agent_process import TickSource

SEED = load_topology("seed")
WAIT_S = 30.0


def wait_until(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {WAIT_S} s")
        time.sleep(0.02)


def login(run: PgRun, role: str) -> str:
    """`role`'s full connection string, as libpq assembles it from the process's environment."""
    env = run.env(role)
    return make_conninfo(env[CONNINFO_ENV], password=env["PGPASSWORD"])


def watermarks(run: PgRun) -> dict[str, tuple[int, int]]:
    with psycopg.connect(login(run, "api"), autocommit=True) as conn:
        rows = conn.execute("SELECT symbol, time_msc, seq FROM watermarks").fetchall()
    return {s: (t, q) for s, t, q in rows}


def bars_are_the_ticks_folded_at_once(run: PgRun, source: TickSource) -> bool:
    with psycopg.connect(login(run, "api"), autocommit=True) as conn:
        for symbol in source.last:
            ticks = [
                Tick(*row)
                for row in conn.execute(
                    "SELECT time_msc, seq, bid, volume_real FROM ticks WHERE symbol = %s "
                    "ORDER BY time_msc, seq",
                    (symbol,),
                )
            ]
            stored = conn.execute(
                "SELECT symbol, timeframe, start_msc, open, high, low, close, tick_count, volume "
                "FROM bars WHERE symbol = %s",
                (symbol,),
            ).fetchall()
            if set(map(tuple, stored)) != set(analyze(symbol, ticks)[1].bars):
                return False
    return True


@pytest.fixture
def postgres_seed(tmp_path: Path) -> tuple[Topology, Path]:
    postgres_binaries_or_skip()
    topology = parse_topology({**SEED.to_mapping(), "name": "seed-pg", "backend": "postgres"})
    path = tmp_path / "seed-pg.toml"
    path.write_text(topology.to_toml())
    return topology, path


@pytest.mark.slow
def test_a_run_gives_each_role_its_login_counts_lock_waits_and_keeps_the_server_log(
    postgres_seed: tuple[Topology, Path], tmp_path: Path
) -> None:
    topology, topology_file = postgres_seed
    run_dir = tmp_path / "run"
    source = TickSource(seed=21)
    with (
        pg_run(topology, run_dir=run_dir, settings={"fsync": "off"}) as run,
        Supervisor(
            run_dir, topology, topology_arg=topology_file, role_env=run.role_env()
        ) as supervisor,
    ):
        # No process is handed the password in its connection string, nor another's login.
        for role in topology.roles:
            env = run.env(role)
            assert "password" not in env[CONNINFO_ENV]
            assert f"user={run.layout.login(role).user}" in env[CONNINFO_ENV]
        bot = PgTickWriter(login(run, "bot"))
        try:
            supervisor.start("agent", ["--interval", "0.05", "--heartbeat", "0.2"])
            supervisor.wait_ready("agent", timeout=WAIT_S)
            bot.append(source.batch(300))
            wait_until("watermarks covering the ticks", lambda: watermarks(run) == source.last)

            # kill -9 and a restart by the supervisor: the new incarnation has its login too.
            supervisor.kill("agent")
            supervisor.restart("agent", timeout=WAIT_S)
            assert run.contention()["lock_waits"] == 0

            # The installer holds one watermark row: the agent's next commit waits behind it.
            with psycopg.connect(run.server.conninfo(dbname=run.layout.dbname)) as holder:
                holder.execute(
                    "SELECT * FROM analysis.watermarks WHERE symbol = 'EURUSD' FOR UPDATE"
                )
                bot.append(source.batch(200))
                wait_until("the agent's wait counted", lambda: run.locks.counts() == {"agent": 1})
                # Held until the server has logged the wait: a wait ended before deadlock_timeout
                # is (rightly) in no log, and under load the sampler can see one that short.
                wait_until("the server's log line for the wait", lambda: _logged_wait(run))
                holder.rollback()
            wait_until("watermarks covering the ticks", lambda: watermarks(run) == source.last)
            assert bars_are_the_ticks_folded_at_once(run, source)
        finally:
            bot.close()
        supervisor.stop("agent")
        figure = run.contention()
    assert figure["lock_waits"] == 1 and figure["by_role"] == {"agent": 1}
    assert figure["samples"] > 0
    first = figure["first"][0]
    assert first["role"] == "agent" and "watermarks" in first["query"].lower()
    assert first["blocked_by"], "the blocker's pid is named"
    # Every wait past deadlock_timeout (10 ms) is in the server's log, kept with the run.
    log = (run_dir / "logs" / "postgres.log").read_text(errors="replace")
    assert "still waiting for" in log


@pytest.mark.slow
def test_a_run_on_a_named_server_leaves_nothing_of_its_own(
    pg_server: PgServer, postgres_seed: tuple[Topology, Path]
) -> None:
    topology, _ = postgres_seed
    server = pg_server
    url = f"postgresql://{server.user}:{quote(server.password or '')}@{server.host}:{server.port}/"
    with pg_run(topology, url=url) as run:
        dbname, users = run.layout.dbname, [x.user for x in run.layout.logins.values()]
        with psycopg.connect(login(run, "agent"), autocommit=True) as conn:
            agent = run.layout.login("agent").user
            assert conn.execute("SELECT current_user").fetchone() == (agent,)
    with pg_server.connect() as admin:
        assert (
            admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchall()
            == []
        )
        left = admin.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (users,))
        assert left.fetchall() == []


def _logged_wait(run: PgRun) -> bool:
    assert run.server.log_file is not None, "a throwaway server has a log"
    return "still waiting for" in run.server.log_file.read_text(errors="replace")
