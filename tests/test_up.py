"""`splitdb up` as a user runs it: a real process in its own session, real children, real signals.

Every test starts `python -m harness.cli up` in a fresh directory with `start_new_session=True`,
so the test can signal the whole process group as a terminal's Ctrl-C does, and so that whatever
a test leaves behind is killed as one group when it ends. Deadlines below only bound how long a
test waits for something to happen; nothing asserts how fast it happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.runs.supervisor import Supervisor
from reference.access import AccessManager
from reference.bot import Bot
from reference.feeds import SyntheticFeed
from reference.runtime import Runtime
from reference.topology import load_topology

pytestmark = pytest.mark.slow

ROLES = ("bot", "agent", "api")
# Give-up bounds for a loaded machine (both cores busy): starting three Python processes that
# import numpy and FastAPI can take tens of seconds there.
START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 60.0
WAIT_DEADLINE_S = 90.0


class Up:
    """One `splitdb up` process: its output lines as they come, its files, its process group."""

    def __init__(self, cwd: Path, *args: str, data_dir: Path | None = None) -> None:
        self.cwd = cwd
        self.data_dir = data_dir if data_dir is not None else cwd / "data"
        self.stderr_path = cwd / "up.stderr"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "up",
                "--data-dir",
                str(self.data_dir),
                "--symbols",
                "3",
                *args,
            ],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.pids: dict[str, int] = {}
        self.url: str | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_started(self) -> str:
        """Read lines until `splitdb up` says Ctrl-C stops all three; the API's URL."""
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            ready = re.match(r"(\w+)\s+ready\s+pid (\d+)", line)
            if ready:
                self.pids[ready.group(1)] = int(ready.group(2))
            if line.startswith("API "):
                self.url = line.split()[1]
            if line.startswith("Ctrl-C"):
                assert self.url is not None, self.output
                return self.url
        raise AssertionError(
            f"splitdb up did not start within {START_DEADLINE_S:g} s\n"
            f"stdout:\n{self.output}\nstderr:\n{self.stderr()}"
        )

    def finish(self) -> int:
        """Wait for the process to exit and for the rest of its output; its exit code."""
        code = self.proc.wait(timeout=STOP_DEADLINE_S)
        self._reader.join(timeout=STOP_DEADLINE_S)
        while True:
            line = self._queue.get_nowait() if not self._queue.empty() else None
            if line is None:
                break
            self.lines.append(line)
        return code

    def board(self) -> dict[str, Any]:
        """The status board's sections, read as any reader does (no lock, atomic file)."""
        path = self.data_dir / load_topology("seed").status
        sections: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["sections"]
        return sections

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_DEADLINE_S)
        self._stderr.close()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[list[Up]]:
    """Started `splitdb up` processes; each one's whole process group is killed at the end."""
    started: list[Up] = []
    yield started
    for each in started:
        each.kill_group()


def start(started: list[Up], cwd: Path, *args: str) -> Up:
    each = Up(cwd, *args)
    started.append(each)
    return each


def stop_lines(output: str) -> dict[str, list[str]]:
    """Per role, the lines of the final summary that name it."""
    found: dict[str, list[str]] = {role: [] for role in ROLES}
    for line in output.splitlines():
        word = line.split(" ", 1)[0]
        if word in found and "ready" not in line.split()[1:2]:
            found[word].append(line)
    return found


def poll(
    what: str, probe: Any, *, deadline_s: float = WAIT_DEADLINE_S, every_s: float = 0.2
) -> Any:
    """Call `probe` until it returns something truthy; give up after `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"gave up after {deadline_s:g} s waiting for {what}; last seen: {last!r}")


# 1. A process that died on its own is reported, and the exit code says so.


def test_a_bot_killed_with_sigkill_is_reported_and_up_exits_1(tmp_path: Path, up: list[Up]) -> None:
    stack = start(up, tmp_path)
    stack.wait_started()
    os.kill(stack.pids["bot"], signal.SIGKILL)
    code = stack.finish()
    out = stack.output
    assert code == 1, out
    assert re.search(r"^bot\s+killed by SIGKILL", out, re.MULTILINE), out
    lines = stop_lines(out)
    for role in ("agent", "api"):
        assert [line for line in lines[role] if "stopped (sigterm, exit code 0)" in line], out


# 2. Ctrl-C from a terminal: SIGINT reaches `splitdb up` and its children at once.


@pytest.mark.parametrize("attempt", range(4))
def test_ctrl_c_to_the_process_group_stops_all_three_cleanly(
    tmp_path: Path, up: list[Up], attempt: int
) -> None:
    stack = start(up, tmp_path)
    stack.wait_started()
    os.killpg(stack.proc.pid, signal.SIGINT)
    code = stack.finish()
    out = stack.output
    lines = stop_lines(out)
    for role in ROLES:
        assert len(lines[role]) == 1, (role, out)
        assert re.match(rf"{role}\s+stopped \(.*exit code 0\)$", lines[role][0]), out
    assert code == 0, out + stack.stderr()
    board = stack.board()
    assert {board[role]["state"] for role in ROLES} == {"stopped"}, board


@pytest.mark.parametrize("role", ROLES)
def test_a_process_that_stopped_on_sigint_exits_0_however_many_sigterms_follow(
    tmp_path: Path, role: str
) -> None:
    """The root cause of the Ctrl-C failures: the supervisor's SIGTERM reached a child that was
    already shutting down after the group's SIGINT, when Python had put the default action back
    in place of its handler, and killed it (exit status -15)."""
    data = tmp_path / "data"
    data.mkdir()
    board = data / load_topology("seed").status
    proc = subprocess.Popen(
        [sys.executable, "-m", f"reference.{role}", "--data-dir", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def ready() -> bool:
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                section = json.loads(board.read_text(encoding="utf-8"))["sections"][role]
                return bool(section["state"] == "ready" and section["pid"] == proc.pid)
            return False

        poll(f"{role} to be ready", ready, deadline_s=START_DEADLINE_S)
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_DEADLINE_S
        # SIGTERM again and again until it has exited: one of them lands while it shuts down.
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            time.sleep(0.001)
        assert proc.wait(timeout=STOP_DEADLINE_S) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# 3. The status board shows a dead process as dead, not as ready.


def test_the_status_board_marks_a_killed_bot_dead(tmp_path: Path, up: list[Up]) -> None:
    stack = start(up, tmp_path)
    stack.wait_started()
    bot_pid = stack.pids["bot"]
    os.kill(bot_pid, signal.SIGKILL)
    stack.finish()
    board = stack.board()
    assert board["bot"]["pid"] == bot_pid
    assert board["bot"]["state"] == "dead", board["bot"]
    last_exit = board["bot"]["last_exit"]
    assert (last_exit["pid"], last_exit["how"]) == (bot_pid, "killed by SIGKILL"), last_exit
    assert last_exit["exit_code"] == -signal.SIGKILL
    # The others stopped cleanly and said so themselves.
    assert board["agent"]["state"] == board["api"]["state"] == "stopped", board


def test_the_api_status_shows_a_process_the_supervisor_saw_die(tmp_path: Path) -> None:
    topology = load_topology("seed")
    with Supervisor(tmp_path / "run", topology, data_dir=tmp_path / "data") as supervisor:
        for role in ROLES:
            supervisor.start(role, ["--symbols", "2"] if role == "bot" else [])
            supervisor.wait_ready(role, timeout=START_DEADLINE_S)
        url = supervisor.board.section("api")["url"]
        agent_pid = supervisor.processes["agent"].pid
        os.kill(agent_pid, signal.SIGKILL)
        poll("the agent to die", lambda: not supervisor.processes["agent"].alive())
        (record,) = supervisor.reap()
        assert (record.name, record.expected) == ("agent", False)
        section = httpx.get(f"{url}/status", timeout=10).json()["board"]["sections"]["agent"]
        assert (section["pid"], section["state"]) == (agent_pid, "dead"), section
        assert section["last_exit"]["how"] == "killed by SIGKILL", section
        # The bot is still running and still says so.
        assert supervisor.board.section("bot")["state"] == "ready"


# 4. The bot's monitor sees a database once its owner has created it.


def test_the_bot_monitor_sees_the_logs_database_once_it_exists(
    tmp_path: Path, up: list[Up]
) -> None:
    stack = start(up, tmp_path)
    url = stack.wait_started()
    logs_file = stack.data_dir / load_topology("seed").databases["logs"].path
    # The bot starts first, so its first monitor read finds neither database.
    assert not logs_file.exists()
    # The API creates the logs database when it logs its first request.
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    poll("the API to create the logs database", logs_file.exists)

    def monitor() -> dict[str, Any] | None:
        found: dict[str, Any] = stack.board()["bot"].get("monitor", {})
        return found if isinstance(found.get("logs"), int) else None

    seen = poll("bot.monitor.logs to read the logs database", monitor)
    assert seen["logs"] >= 1
    assert isinstance(seen["analysis"], int), seen
    os.killpg(stack.proc.pid, signal.SIGINT)
    assert stack.finish() == 0, stack.output


def test_the_monitor_summary_goes_out_with_the_next_heartbeat_after_it_is_due(
    tmp_path: Path,
) -> None:
    """The root cause, in one bot: a summary read while the heartbeat was throttled was lost.

    Heartbeats every 3 s and a summary every 2 s: the bot's publish is called every 50 ms, so
    one call falls between 2 s and 3 s after the first beat, when the summary is due and the
    heartbeat is not. The next heartbeat must carry a summary that sees the databases made
    after the first one.
    """
    data = tmp_path / "data"
    topology = load_topology("seed")
    runtime = Runtime("bot", topology=topology, data_dir=data, heartbeat=3.0, install_signals=False)
    feed = SyntheticFeed(seed=1, symbols=("EURUSD",), ticks_per_second=10)
    bot = Bot(runtime, feed, monitor_s=2.0)
    try:
        bot.publish()
        first = runtime.status.section("bot")
        assert str(first["monitor"]["logs"]).startswith("unavailable"), first
        # The owners create their databases (empty: count 0, no request logged yet).
        AccessManager(topology, data).initialize()

        def next_beat() -> dict[str, Any] | None:
            bot.publish()
            section = runtime.status.section("bot")
            return section if section["_seq"] > first["_seq"] else None

        section = poll("the next heartbeat", next_beat, every_s=0.05)
    finally:
        bot.close()
    assert section["monitor"] == {"analysis": 0, "logs": None}, section


# 5. --speed: market time runs faster, so bars and indicators come within seconds.


def test_up_with_a_high_speed_serves_indicators(tmp_path: Path, up: list[Up]) -> None:
    stack = start(up, tmp_path, "--speed", "3600")
    url = stack.wait_started()

    def indicators() -> list[dict[str, Any]]:
        answer = httpx.get(f"{url}/indicators/EURUSD", params={"name": "rsi14"}, timeout=10)
        rows: list[dict[str, Any]] = (
            answer.json().get("indicators", []) if answer.is_success else []
        )
        return [row for row in rows if row["value"] is not None]

    rows = poll("indicators from the API", indicators)
    assert {row["name"] for row in rows} == {"rsi14"}
    os.killpg(stack.proc.pid, signal.SIGINT)
    assert stack.finish() == 0, stack.output


# 6. --help shows every default; bad values are refused before anything starts.

UP_FLAGS = ("--topology", "--data-dir", "--run-dir", "--symbols", "--rate", "--port", "--speed")


def test_up_help_shows_the_default_of_every_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "up", "--help"],
        capture_output=True,
        text=True,
        timeout=STOP_DEADLINE_S,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for flag in UP_FLAGS:
        match = re.search(rf"^  {flag}\b(.*?)(?=^  -|\Z)", text, re.MULTILINE | re.DOTALL)
        assert match, (flag, text)
        assert "default" in " ".join(match.group(1).split()), (flag, match.group(0))


def _file(tmp_path: Path) -> str:
    path = tmp_path / "a-file"
    path.write_text("not a directory\n", encoding="utf-8")
    return str(path)


BAD_FLAGS: dict[str, tuple[str, Any]] = {
    "rate negative": ("--rate", "-1"),
    "rate zero": ("--rate", "0"),
    "rate nan": ("--rate", "nan"),
    "speed zero": ("--speed", "0"),
    "speed too high": ("--speed", "3601"),
    "port too high": ("--port", "70000"),
    "port negative": ("--port", "-1"),
    "symbols zero": ("--symbols", "0"),
    "symbols empty": ("--symbols", ""),
    "symbols only commas": ("--symbols", " , "),
    "symbols repeated": ("--symbols", "EURUSD,EURUSD"),
    "data-dir in /proc": ("--data-dir", "/proc/forbidden"),
    "data-dir is a file": ("--data-dir", _file),
    "run-dir in /proc": ("--run-dir", "/proc"),
    "run-dir under a file": ("--run-dir", lambda tmp: _file(tmp) + "/run"),
    "topology missing": ("--topology", "no-such-topology.toml"),
}


@pytest.mark.parametrize("case", BAD_FLAGS)
def test_up_refuses_a_bad_flag_with_one_error_line_and_starts_nothing(
    tmp_path: Path, case: str
) -> None:
    flag, value = BAD_FLAGS[case]
    given = value(tmp_path) if callable(value) else value
    before = sorted(tmp_path.rglob("*"))
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "up", flag, given],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=STOP_DEADLINE_S,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr
    (error,) = errors
    assert error.startswith("splitdb"), error
    assert flag in error, error
    assert done.stdout == "", done.stdout
    # Nothing started, nothing half-written: the directory is as it was (no ./data, no run dir).
    assert sorted(tmp_path.rglob("*")) == before


def test_up_refuses_a_run_dir_it_may_not_write(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only directory; the /proc case covers root")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", "up", "--run-dir", str(locked / "run")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=STOP_DEADLINE_S,
        )
    finally:
        locked.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert "--run-dir" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "data").exists()
