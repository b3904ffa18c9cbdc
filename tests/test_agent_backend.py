"""The agent on either backend: the topology's `backend` picks its store, and on PostgreSQL the
real agent process folds the bot's ticks exactly, also across a SIGKILL and a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main as splitdb
from harness.pg.server import PgServer
from reference.analysis import Tick, analyze
from reference.errors import TopologyError
from reference.events import read_events
from reference.pg_store import CONNINFO_ENV, PgTickWriter
from reference.schema import BAR_COLUMNS
from reference.status import StatusBoard
from reference.topology import load_topology, parse_topology
from tests.pg_helpers import Installed, install_fresh
from tests.test_agent_process import ROOT, AgentProcesses, TickSource, stop

SEED = load_topology("seed")


def postgres_seed() -> dict[str, Any]:
    return {**SEED.to_mapping(), "name": "seed-pg", "backend": "postgres"}


# -- the switch ------------------------------------------------------------------------------


def test_backend_is_sqlite_unless_the_topology_says_postgres(tmp_path: Path) -> None:
    assert SEED.backend == "sqlite"
    assert "backend" not in SEED.to_mapping()
    topology = parse_topology(postgres_seed())
    assert topology.backend == "postgres"
    path = tmp_path / "pg.toml"
    path.write_text(topology.to_toml())
    assert 'backend = "postgres"' in path.read_text()
    assert load_topology(path) == topology


def test_an_unknown_backend_is_one_line_naming_the_field_and_the_choices() -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology({**SEED.to_mapping(), "backend": "mysql"})
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "backend: expected 'sqlite'" in message and "'postgres'" in message
    assert "got 'mysql'" in message


def test_os_enforcement_on_postgres_is_refused_naming_the_fix() -> None:
    raw = postgres_seed() | {"enforcement": "os", "status": "status/board.json"}
    with pytest.raises(TopologyError, match=r'use enforcement = "process"'):
        parse_topology(raw)


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str], names: str) -> None:
    code = splitdb(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert names in err, err


def test_commands_refuse_a_bad_backend_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SEED.to_toml().replace('name = "seed"', 'name = "seed"\nbackend = "pg"'))
    _one_line_exit_2(["topology", str(bad)], capsys, "backend: expected 'sqlite'")


def test_up_and_init_refuse_a_postgres_topology_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topology = tmp_path / "pg.toml"
    topology.write_text(parse_topology(postgres_seed()).to_toml())
    data = tmp_path / "data"
    _one_line_exit_2(
        ["up", "--topology", str(topology), "--data-dir", str(data)],
        capsys,
        "--topology postgres",
    )
    _one_line_exit_2(
        ["init", "--topology", str(topology), "--data-dir", str(data)], capsys, "server"
    )
    assert not data.exists()


# -- the agent process on PostgreSQL -----------------------------------------------------------


def agent_env(conninfo: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (CONNINFO_ENV, "PGPASSWORD")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if conninfo is not None:
        env[CONNINFO_ENV] = conninfo
    return env


class PgAgentStack(AgentProcesses):
    """A topology installed on a fresh database, the bot's PostgreSQL store, and agent
    processes started on it as `python -m reference.agent`, as the harness starts them."""

    wait_s = 30.0  # what these PostgreSQL tests waited before they shared the helpers

    def __init__(self, server: PgServer, tmp_path: Path) -> None:
        self.installed: Installed = install_fresh(server, SEED)
        self.topology = tmp_path / "seed-pg.toml"
        self.topology.write_text(parse_topology(postgres_seed()).to_toml())
        self.data_dir = tmp_path / "data"
        self.events = tmp_path / "agent.jsonl"
        self.logs = tmp_path / "agent.stderr"
        self.bot = PgTickWriter(self.installed.conninfo("bot"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def start_agent(self, *args: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "reference.agent", "--topology", str(self.topology)]
        argv += ["--data-dir", str(self.data_dir), "--events", str(self.events)]
        argv += ["--interval", "0.05", "--heartbeat", "0.2", *args]
        with open(self.logs, "ab") as err:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=agent_env(self.installed.conninfo("agent")),
                stdout=err,
                stderr=err,
            )
        self.procs.append(proc)
        return proc

    def query(self, sql: str, parameters: Any = ()) -> list[tuple[Any, ...]]:
        return self.installed.query(sql, parameters)

    def watermarks(self) -> dict[str, tuple[int, int]]:
        rows = self.query("SELECT symbol, time_msc, seq FROM watermarks")
        return {s: (t, q) for s, t, q in rows}

    def covers(self, source: TickSource) -> Callable[[], bool]:
        return lambda: self.watermarks() == source.last

    def analysis_equals_folding_the_ticks_at_once(self) -> int:
        """Assert the analysis tables hold exactly what folding each symbol's ticks up to its
        watermark at once gives (no tick lost, none counted twice); the ticks covered."""
        marks = {s: (t, q, n) for s, t, q, n in self.query(
            "SELECT symbol, time_msc, seq, ticks_seen FROM watermarks"
        )}  # fmt: skip
        expected_bars: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        expected_indicators: dict[tuple[Any, ...], Any] = {}
        covered = 0
        for symbol, (time_msc, seq, ticks_seen) in marks.items():
            ticks = [
                Tick(*row)
                for row in self.query(
                    "SELECT time_msc, seq, bid, volume_real FROM ticks WHERE symbol = %s "
                    "AND (time_msc, seq) <= (%s, %s) ORDER BY time_msc, seq",
                    (symbol, time_msc, seq),
                )
            ]
            assert ticks_seen == len(ticks), f"{symbol}: ticks_seen {ticks_seen}, {len(ticks)}"
            covered += len(ticks)
            _, update = analyze(symbol, ticks)
            expected_bars.update({row[:3]: tuple(row[3:]) for row in update.bars})
            expected_indicators.update({tuple(row[:4]): row[4] for row in update.indicators})
        bars = {
            row[:3]: row[3:] for row in self.query(f"SELECT {', '.join(BAR_COLUMNS)} FROM bars")
        }
        indicators = {
            row[:4]: row[4]
            for row in self.query(
                "SELECT symbol, timeframe, start_msc, name, value FROM indicators"
            )
        }
        assert bars == expected_bars
        assert indicators == expected_indicators
        return covered

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.bot.close()


@pytest.fixture
def pg_stack(pg_server: PgServer, tmp_path: Path) -> Iterator[PgAgentStack]:
    stack = PgAgentStack(pg_server, tmp_path)
    yield stack
    stack.close()


@pytest.mark.slow
def test_agent_on_postgres_folds_exactly_and_resumes_exactly_after_sigkill(
    pg_stack: PgAgentStack,
) -> None:
    source = TickSource(seed=11)
    pg_stack.bot.append(source.batch(1500))
    agent = pg_stack.start_agent()
    pg_stack.wait_ready(agent)
    pg_stack.wait_for(agent, "watermarks covering the first batch", pg_stack.covers(source))
    assert pg_stack.analysis_equals_folding_the_ticks_at_once() == source.count

    # A backlog folded in many small commits; SIGKILL lands between or inside them.
    assert stop(agent) == 0
    pg_stack.bot.append(source.batch(6000))
    agent = pg_stack.start_agent("--max-ticks", "90")
    before = pg_stack.watermarks()
    pg_stack.wait_for(agent, "progress on the backlog", lambda: pg_stack.watermarks() != before)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    assert pg_stack.watermarks() != source.last, "the backlog was gone before the kill"
    covered = pg_stack.analysis_equals_folding_the_ticks_at_once()
    assert 3 * 1500 < covered < source.count

    agent = pg_stack.start_agent()
    pg_stack.wait_ready(agent)
    pg_stack.wait_for(agent, "watermarks covering every tick", pg_stack.covers(source))
    assert pg_stack.analysis_equals_folding_the_ticks_at_once() == source.count
    assert stop(agent) == 0
    section = StatusBoard(pg_stack.data_dir / SEED.status).section("agent")
    assert section["state"] == "stopped"
    # Nothing went to SQLite: the data directory holds the status board (and its lock) only.
    board = SEED.status.name
    assert [p.name for p in pg_stack.data_dir.iterdir() if not p.name.startswith(board)] == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("conninfo", "names"),
    [
        (None, f"{CONNINFO_ENV} is not set"),
        ("host=127.0.0.1 port=1 dbname=splitdb user=nobody", "cannot connect to PostgreSQL"),
    ],
)
@pytest.mark.parametrize("process", ["bot", "agent", "api"])
def test_a_process_on_postgres_without_a_usable_connection_exits_2_on_one_line(
    tmp_path: Path, conninfo: str | None, names: str, process: str
) -> None:
    topology = tmp_path / "pg.toml"
    topology.write_text(parse_topology(postgres_seed()).to_toml())
    argv = [sys.executable, "-m", f"reference.{process}", "--topology", str(topology)]
    argv += ["--data-dir", str(tmp_path / "data")]
    done = subprocess.run(
        argv, cwd=ROOT, env=agent_env(conninfo), capture_output=True, text=True, timeout=60
    )
    err = done.stderr.strip()
    assert done.returncode == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"reference.{process}: error: ") and names in err
    assert "PGPASSWORD" in err or conninfo is None
    # Nothing went to SQLite.
    assert not list(tmp_path.glob("data/*.db*"))


@pytest.mark.slow
def test_agent_on_postgres_survives_its_server_backend_being_killed(
    pg_stack: PgAgentStack,
) -> None:
    source = TickSource(seed=12)
    pg_stack.bot.append(source.batch(500))
    agent = pg_stack.start_agent()
    pg_stack.wait_ready(agent)
    pg_stack.wait_for(agent, "watermarks covering the first batch", pg_stack.covers(source))
    # The server ends the agent's backend (as after a backend crash): its connection drops.
    killed = pg_stack.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'splitdb-agent' AND datname = current_database()"
    )
    assert killed == [(True,)]
    pg_stack.bot.append(source.batch(500))
    pg_stack.wait_for(agent, "watermarks covering the second batch", pg_stack.covers(source))
    assert pg_stack.analysis_equals_folding_the_ticks_at_once() == source.count
    assert stop(agent) == 0
    retries = [e for e in read_events(pg_stack.events) if e["op"] == "analysis_retry"]
    # The broken connection was a retry (57P01, or no SQLSTATE when it broke mid-read), not
    # an exit; the next cycle reconnected.
    assert retries and all(e["outcome"] == "error" for e in retries)
