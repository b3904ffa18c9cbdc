"""The analysis agent as a real process: its output equals the recomputation, also after kill -9."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from harness.runs.recompute import AnalysisComparison, compare_analysis
from reference.access import AccessManager
from reference.agent import main
from reference.events import read_events
from reference.schema import ensure_schema
from reference.status import StatusBoard
from reference.tickstore import TickRow, insert_ticks
from reference.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
SEED = load_topology("seed")
SYMBOLS = ("EURUSD", "GBPUSD", "XAUUSD")
START_MSC = 1_700_000_000_000
WAIT_S = 15.0


class TickSource:
    """Ticks for several symbols in key order, continuing where the previous batch ended."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = dict.fromkeys(SYMBOLS, START_MSC)
        self.seq = dict.fromkeys(SYMBOLS, 0)
        self.price = dict.fromkeys(SYMBOLS, 1.25)
        self.last: dict[str, tuple[int, int]] = {}
        self.count = 0

    def batch(self, per_symbol: int) -> list[TickRow]:
        rows: list[TickRow] = []
        for symbol in SYMBOLS:
            for _ in range(per_symbol):
                # Gaps up to 30 s, and now and then several ticks in one millisecond.
                step = self.rng.choice((0, 0, self.rng.randint(1, 30_000)))
                self.seq[symbol] = self.seq[symbol] + 1 if step == 0 else 0
                self.clock[symbol] += step
                self.price[symbol] += self.rng.gauss(0, 0.0005)
                t, bid = self.clock[symbol], round(self.price[symbol], 5)
                rows.append(
                    (symbol, t, self.seq[symbol], t // 1000, bid, bid + 0.0002, 0.0, 1, 6,
                     self.rng.choice((None, self.rng.uniform(0.01, 5.0))))
                )  # fmt: skip
                self.last[symbol] = (t, self.seq[symbol])
        self.count += len(rows)
        return rows


class AgentProcesses:
    """Agent processes a test started, their shared stderr log and the status board they
    report to: what every stack of this file and of tests/test_agent_backend.py waits on."""

    data_dir: Path
    logs: Path
    procs: list[subprocess.Popen[bytes]]
    wait_s: float = WAIT_S

    def wait_for(
        self, proc: subprocess.Popen[bytes], what: str, condition: Callable[[], bool]
    ) -> None:
        """Poll `condition` until it holds; fail if the agent exits or wait_s passes first."""
        deadline = time.monotonic() + self.wait_s
        while not condition():
            if proc.poll() is not None:
                pytest.fail(f"agent exited ({proc.returncode}) before {what}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {self.wait_s} s:\n{self.stderr()}")
            time.sleep(0.02)

    def wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        board = StatusBoard(self.data_dir / SEED.status)

        def ready() -> bool:
            section = board.section("agent") if board.path.exists() else {}
            return section.get("state") == "ready" and section.get("pid") == proc.pid

        self.wait_for(proc, "readiness", ready)

    def stderr(self) -> str:
        return self.logs.read_text(errors="replace") if self.logs.exists() else ""


class Stack(AgentProcesses):
    """A seed data directory, the bot's ticks connection, and agent processes started on it."""

    def __init__(self, tmp_path: Path, *, initialize: bool = True) -> None:
        self.data_dir = tmp_path / "data"
        self.events = tmp_path / "agent.jsonl"
        self.logs = tmp_path / "agent.stderr"
        self.access = AccessManager(SEED, self.data_dir)
        if initialize:
            self.access.initialize()
        self.bot: sqlite3.Connection | None = None
        self.procs: list[subprocess.Popen[bytes]] = []

    def insert(self, rows: list[TickRow]) -> None:
        if self.bot is None:
            self.bot = self.access.connect("bot", "ticks")
            ensure_schema(self.bot, "ticks")
        insert_ticks(self.bot, rows)

    def start_agent(self, *args: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        argv = [sys.executable, "-m", "reference.agent", "--topology", "seed"]
        argv += ["--data-dir", str(self.data_dir), "--events", str(self.events)]
        argv += ["--interval", "0.05", "--heartbeat", "0.2", *args]
        with open(self.logs, "ab") as err:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=err, stderr=err)
        self.procs.append(proc)
        return proc

    def watermarks(self) -> dict[str, tuple[int, int]]:
        path = SEED.file_of("analysis", self.data_dir)
        if not path.exists():
            return {}
        with self.reader("analysis") as conn:
            try:
                rows = conn.execute("SELECT symbol, time_msc, seq FROM watermarks").fetchall()
            except sqlite3.OperationalError:
                return {}
        return {s: (t, q) for s, t, q in rows}

    def covers(self, source: TickSource) -> Callable[[], bool]:
        return lambda: self.watermarks() == source.last

    def compare(self) -> AnalysisComparison:
        with self.reader("ticks") as ticks, self.reader("analysis") as analysis:
            return compare_analysis(ticks, analysis)

    def reader(self, database: str) -> _Closing:
        return _Closing(self.access.connect("api", database))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.bot is not None:
            self.bot.close()


class _Closing:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    yield s
    s.close()


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM and the exit code; fails if the agent needs more than the 5 s it is allowed."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("agent did not exit within 5 s of SIGTERM")


def events(stack: Stack) -> list[dict[str, Any]]:
    return list(read_events(stack.events))


@pytest.mark.slow
def test_agent_output_equals_the_recomputation_and_sigterm_exits_0(stack: Stack) -> None:
    source = TickSource(seed=1)
    stack.insert(source.batch(1500))
    agent = stack.start_agent()
    stack.wait_ready(agent)
    stack.wait_for(agent, "watermarks covering the first batch", stack.covers(source))
    result = stack.compare()
    assert result.ok, result.summary()
    assert result.ticks_covered == 3 * 1500

    # Ticks arriving while it runs extend the partial bars and add new ones.
    stack.insert(source.batch(700))
    stack.wait_for(agent, "watermarks covering the second batch", stack.covers(source))
    result = stack.compare()
    assert result.ok, result.summary()
    assert result.ticks_covered == 3 * 2200

    assert stop(agent) == 0
    section = StatusBoard(stack.data_dir / SEED.status).section("agent")
    assert section["state"] == "stopped"
    assert section["ticks_processed"] == 3 * 2200
    log = events(stack)
    commits = [e for e in log if e["op"] == "analysis_commit"]
    assert sum(e["ticks"] for e in commits) == 3 * 2200
    latest: dict[str, list[int]] = {}
    for event in commits:
        assert event["outcome"] == "ok" and event["db"] == "analysis"
        latest.update(event["watermarks"])
    assert {s: tuple(k) for s, k in latest.items()} == source.last
    assert [e["op"] for e in log][-1] == "stopped"


@pytest.mark.slow
def test_agent_waits_for_databases_that_do_not_exist_yet(tmp_path: Path) -> None:
    stack = Stack(tmp_path, initialize=False)
    try:
        agent = stack.start_agent()
        stack.wait_ready(agent)
        stack.wait_for(
            agent,
            "a 'waiting' event for the ticks database",
            lambda: any(
                e["op"] == "waiting" and e["db"] == "ticks"
                for e in (events(stack) if stack.events.exists() else [])
            ),
        )
        source = TickSource(seed=2)
        stack.insert(source.batch(400))  # creates the ticks database as the bot would
        stack.wait_for(agent, "watermarks covering the ticks", stack.covers(source))
        result = stack.compare()
        assert result.ok, result.summary()
        # The logs database never appeared; the agent kept going all the same.
        assert stop(agent) == 0
    finally:
        stack.close()


@pytest.mark.slow
def test_sigterm_during_a_backlog_exits_0_with_consistent_analysis(stack: Stack) -> None:
    source = TickSource(seed=3)
    stack.insert(source.batch(6000))
    agent = stack.start_agent("--max-ticks", "90")
    stack.wait_for(agent, "a first commit", lambda: bool(stack.watermarks()))
    assert stop(agent) == 0
    assert stack.watermarks() != source.last, "the backlog was gone before SIGTERM; add ticks"
    result = stack.compare()
    assert result.ok, result.summary()


@pytest.mark.slow
def test_killed_agent_resumes_without_missing_or_double_counted_ticks(stack: Stack) -> None:
    rng = random.Random(4)
    source = TickSource(seed=4)
    kills_mid_backlog = 0
    for round_ in range(6):
        before = stack.watermarks()
        stack.insert(source.batch(rng.randint(1000, 3000)))
        # A small --max-ticks makes many short cycles, so a kill lands in or between commits.
        agent = stack.start_agent("--max-ticks", str(rng.randint(15, 120)))
        if round_ % 2:
            # Right after a commit of this round: surely with a backlog left.
            stack.wait_for(agent, "progress", lambda: stack.watermarks() != before)  # noqa: B023
        else:
            # Any moment from spawn on, start-up (schema, restoring state) included.
            time.sleep(rng.uniform(0.05, 0.8))
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        kills_mid_backlog += stack.watermarks() != source.last
        # Whatever moment the kill hit, what was committed is exactly the ticks up to the marks.
        result = stack.compare()
        assert result.ok, result.summary()
    print(f"{kills_mid_backlog} of 6 kills hit the agent with a backlog left")
    assert kills_mid_backlog >= 3

    agent = stack.start_agent()
    stack.wait_ready(agent)
    stack.wait_for(agent, "watermarks covering every tick", stack.covers(source))
    result = stack.compare()
    assert result.ok, result.summary()
    assert result.ticks_covered == source.count
    assert stop(agent) == 0


@pytest.mark.slow
def test_a_busy_analysis_database_is_recorded_and_retried(tmp_path: Path) -> None:
    # The seed layout with a short busy_timeout, so the agent gives up waiting quickly.
    text = (resources.files("reference") / "topologies" / "seed.toml").read_text()
    topology_file = tmp_path / "impatient.toml"
    topology_file.write_text(text.replace("busy_timeout_ms = 5000", "busy_timeout_ms = 50"))
    stack = Stack(tmp_path)
    try:
        agent = stack.start_agent("--topology", str(topology_file))
        stack.wait_ready(agent)
        # Another writer holds the analysis database's write lock.
        blocker = sqlite3.connect(SEED.file_of("analysis", stack.data_dir), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        source = TickSource(seed=5)
        stack.insert(source.batch(300))

        def retried() -> bool:
            return any(
                e["op"] == "analysis_retry" and e["outcome"] == "busy" and e["stage"] == "commit"
                for e in events(stack)
            )

        stack.wait_for(agent, "an analysis_retry event with outcome busy", retried)
        assert stack.watermarks() == {}
        blocker.execute("ROLLBACK")
        blocker.close()
        stack.wait_for(agent, "watermarks covering the ticks", stack.covers(source))
        result = stack.compare()
        assert result.ok, result.summary()
        assert stop(agent) == 0
        retry = next(e for e in events(stack) if e["op"] == "analysis_retry")
        assert retry["db"] == "analysis" and retry["code"] & 0xFF == 5
    finally:
        stack.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--interval", "0"], "--interval: 0 is out of range; give a number > 0"),
        (["--max-ticks", "ten"], "'ten' is not an integer"),
        (["--heartbeat", "-1"], "--heartbeat: -1 is out of range; give a number > 0"),
    ],
)
def test_bad_arguments_are_refused_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
