"""The crash-point sweep on real processes: wherever the bot, the agent or the API's request log
dies, a restart recovers and every check holds.

Each case starts the processes with one of them armed (`SPLITDB_CRASH_AT=ROLE/POINT:N`), waits
until it has killed itself at that point, restarts it unarmed, waits for progress past the crash,
stops everything with SIGTERM and runs the run's checks: durability, duplicates, analysis =
recomputation, integrity, status board. A bug that opens a window between two commits (bars and
watermark in two transactions, an ack before COMMIT) has a point inside that window, so a case
here lands in it every time instead of by luck.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from harness.runs.api_check import analysis_matches
from harness.runs.checks import Check, duplicates, durability, integrity, status_board
from harness.runs.supervisor import Managed, Supervisor, stderr_tail
from reference.access import AccessManager
from reference.crashpoints import ENV, POINTS
from reference.events import Event, read_events
from reference.topology import load_topology

SEED = load_topology("seed")
# Every wait polls a condition; this only bounds how long a broken case takes to fail. Generous:
# on two busy cores, starting one Python process can take seconds.
DEADLINE_S = 60.0
# The first time a point is reached (often before or at the first commit), and a later one,
# with committed state behind it to recover.
HITS = (1, 4)
# Every point the bot and the agent reach; the status board's through the bot only (the same
# code runs in every process); the API alone for its request log.
SWEPT: dict[str, tuple[str, ...]] = {
    "bot": tuple(name for name, p in POINTS.items() if "bot" in p.roles),
    "agent": tuple(
        name for name, p in POINTS.items() if "agent" in p.roles and not name.startswith("status.")
    ),
    "api": ("requestlog.after_commit",),
}
CASES = [
    pytest.param(role, point, hit, id=f"{role}/{point}:{hit}")
    for role, points in SWEPT.items()
    for point in points
    for hit in HITS
]


def _bot_args(*extra: str) -> list[str]:
    # A fast market (an hour a wall second): a second or two fills 1m bars and the 14-bar
    # indicators, so a restart restores finished bars and indicator state, not just one bar.
    return [
        "--symbols", "3", "--rate", "1500", "--batch-size", "50", "--max-delay-ms", "20",
        "--seed", "7", "--speed", "3600", "--heartbeat", "0.2",
        "--start-msc", str(int(time.time() * 1000) - 1000), *extra,
    ]  # fmt: skip


# Small cycles: many commits, so a later hit comes early and a restart has a backlog to resume.
AGENT_ARGS = ["--interval", "0.05", "--max-ticks", "300", "--heartbeat", "0.2"]
API_ARGS = ["--log-max-delay", "0.02", "--log-level", "warning", "--heartbeat", "0.2"]


@pytest.fixture
def supervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Supervisor]:
    """A seed layout with every database created (as a run does) and a supervisor on it."""
    # Every process started here prints its threads' stacks on SIGABRT: a hang explains itself.
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")
    with Supervisor(tmp_path, SEED) as sup:
        AccessManager(SEED, sup.data_dir).initialize()
        yield sup


def _events(supervisor: Supervisor, name: str, op: str, since_ns: int = 0) -> list[Event]:
    path = supervisor.events_path(name)
    if not path.exists():
        return []
    return [e for e in read_events(path) if e["op"] == op and e["t"] > since_ns]


def _idle() -> None:
    pass


class Stalled(Exception):
    """A case did not go as planned: a process exited, or waited for progress in vain."""


def _fail(supervisor: Supervisor, reason: str) -> NoReturn:
    logs = "\n".join(
        f"--- {m.name} (pid {m.pid}, exit {m.proc.poll()}) stderr:\n{stderr_tail(m.stderr)}"
        for m in supervisor.processes.values()
    )
    raise Stalled(f"{reason}\n{logs}")


def _wait_until(
    supervisor: Supervisor, what: str, condition: Callable[[], bool], tick: Callable[[], None]
) -> None:
    """Poll `condition`, calling `tick` between polls; fail if a process exits or time runs out."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        dead = [m.name for m in supervisor.processes.values() if not m.alive()]
        if dead:
            _fail(supervisor, f"{dead[0]} exited before {what}")
        if time.monotonic() > deadline:
            _fail(supervisor, f"no {what} after {DEADLINE_S:g} s")
        tick()
        time.sleep(0.05)


def _wait_for_crash(
    supervisor: Supervisor, armed: Managed, point: str, tick: Callable[[], None] = _idle
) -> None:
    """Wait until the armed process is gone: it must have died by SIGKILL at its point."""
    deadline = time.monotonic() + DEADLINE_S
    while armed.alive():
        others = [m.name for m in supervisor.processes.values() if m is not armed and not m.alive()]
        if others:
            _fail(supervisor, f"{others[0]} exited before {armed.name} reached {point}")
        if time.monotonic() > deadline:
            _fail(supervisor, f"{armed.name} did not reach {point} in {DEADLINE_S:g} s")
        tick()
        time.sleep(0.05)
    supervisor.stop(armed.name)  # records the exit and closes its log files
    assert armed.proc.returncode == -signal.SIGKILL, stderr_tail(armed.stderr)
    assert f"crash point {point} reached" in stderr_tail(armed.stderr, 1)


def _stop_cleanly(supervisor: Supervisor, *names: str) -> None:
    """SIGTERM every process at once; each must exit 0. One that hangs shows its stacks."""
    managed = [supervisor.processes[name] for name in names]
    for m in managed:
        m.proc.send_signal(signal.SIGTERM)
    for m in managed:
        try:
            m.proc.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            m.proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack
            m.proc.wait()
            pytest.fail(
                f"{m.name} still running {DEADLINE_S:g} s after SIGTERM; its threads:\n"
                f"{stderr_tail(m.stderr, 80)}"
            )
        supervisor.stop(m.name)  # records the exit and closes its log files
        assert m.proc.returncode == 0, stderr_tail(m.stderr)


def _all_events(supervisor: Supervisor, *names: str) -> dict[str, list[Event]]:
    paths = {name: supervisor.events_path(name) for name in names}
    return {name: list(read_events(path)) for name, path in paths.items() if path.exists()}


def _stack_checks(supervisor: Supervisor) -> list[Check]:
    data = supervisor.data_dir
    events = _all_events(supervisor, "bot", "agent")
    return [
        durability([supervisor.events_path("bot")], SEED.file_of("ticks", data)),
        duplicates(SEED, data),
        analysis_matches(SEED, data),
        integrity(SEED, data),
        status_board(events, supervisor.board.path),
    ]


def _request_log_durability(supervisor: Supervisor) -> Check:
    """Every request-log row the API reported committed (a `log_commit` ok event) is stored."""
    commits = [e for e in _events(supervisor, "api", "log_commit") if e["outcome"] == "ok"]
    logged = sum(e["rows"] for e in commits)
    path = SEED.file_of("logs", supervisor.data_dir)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        stored = conn.execute("SELECT count(*) FROM request_log").fetchone()[0]
    finally:
        conn.close()
    return Check(
        "request_log",
        stored >= logged > 0,
        f"{logged} rows reported committed in {len(commits)} batches, {stored} stored",
    )


def _api_checks(supervisor: Supervisor) -> list[Check]:
    events = _all_events(supervisor, "api")
    return [
        _request_log_durability(supervisor),
        integrity(SEED, supervisor.data_dir),
        status_board(events, supervisor.board.path),
    ]


def _verdict(checks: list[Check], stalled: Stalled | None) -> str:
    failed = [c for c in checks if not c.ok]
    lines = [f"failed checks: {', '.join(c.name for c in failed) or 'none'}"]
    lines += [f"{c.name}: {c.summary}\n  {json.dumps(c.evidence)[:800]}" for c in failed]
    if stalled is not None:
        lines.append(f"and the case stalled: {stalled}")
    return "\n".join(lines)


def _crash_the_stack(supervisor: Supervisor, role: str, point: str, hit: int) -> None:
    """Bot and agent, `role` armed; it crashes, comes back unarmed, both make progress."""
    arm = {ENV: f"{role}/{point}:{hit}"}
    bot = supervisor.start("bot", _bot_args(), env=arm if role == "bot" else None)
    agent = supervisor.start("agent", AGENT_ARGS, env=arm if role == "agent" else None)
    _wait_for_crash(supervisor, bot if role == "bot" else agent, point)
    restarted = time.monotonic_ns()
    supervisor.restart(role, timeout=DEADLINE_S)
    _wait_until(
        supervisor,
        "3 acks and 2 analysis commits after the restart",
        lambda: (
            len(_events(supervisor, "bot", "ack", restarted)) >= 3
            and len(_events(supervisor, "agent", "analysis_commit", restarted)) >= 2
        ),
        _idle,
    )
    _stop_cleanly(supervisor, "bot", "agent")


class _Client:
    """GET /health from whichever API incarnation is listening, so the request log has work."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def __call__(self) -> None:
        url = self.supervisor.board.section("api").get("url")
        if url is None:
            return
        try:
            for _ in range(5):
                httpx.get(f"{url}/health", timeout=2.0)
        except httpx.HTTPError:
            pass  # dying at its crash point, or not listening yet


def _crash_the_api(supervisor: Supervisor, point: str, hit: int) -> None:
    client = _Client(supervisor)
    api = supervisor.start("api", API_ARGS, env={ENV: f"api/{point}:{hit}"})
    _wait_for_crash(supervisor, api, point, client)
    restarted = time.monotonic_ns()
    supervisor.restart("api", timeout=DEADLINE_S)
    _wait_until(
        supervisor,
        "2 request-log commits after the restart",
        lambda: len(_events(supervisor, "api", "log_commit", restarted)) >= 2,
        client,
    )
    _stop_cleanly(supervisor, "api")


@pytest.mark.slow
@pytest.mark.parametrize(("role", "point", "hit"), CASES)
def test_a_crash_at_any_point_recovers_with_every_check_passing(
    supervisor: Supervisor, role: str, point: str, hit: int
) -> None:
    stalled = None
    try:
        if role == "api":
            _crash_the_api(supervisor, point, hit)
        else:
            _crash_the_stack(supervisor, role, point, hit)
    except Stalled as exc:
        # A restarted process that cannot go on is a finding too; the checks say what it found.
        stalled = exc
        supervisor.stop_all(timeout=DEADLINE_S)
    checks = _api_checks(supervisor) if role == "api" else _stack_checks(supervisor)
    assert stalled is None and all(c.ok for c in checks), _verdict(checks, stalled)


def test_the_sweep_covers_every_registered_point() -> None:
    swept = {point for points in SWEPT.values() for point in points}
    assert swept == set(POINTS)


@pytest.mark.slow
def test_a_restart_keeps_the_crash_point_only_when_asked(supervisor: Supervisor) -> None:
    # Status writes 1-2 announce readiness, 3-4 are the first heartbeat, 5 starts the second
    # one a heartbeat (1 s) later: the restart surely sees the process ready before it dies.
    point = "status.after_replace"
    first = supervisor.start("bot", _bot_args("--heartbeat", "1"), env={ENV: f"bot/{point}:5"})
    _wait_for_crash(supervisor, first, point)
    kept = supervisor.restart("bot", timeout=DEADLINE_S, keep_env=True)
    _wait_for_crash(supervisor, kept, point)
    restarted = time.monotonic_ns()
    supervisor.restart("bot", timeout=DEADLINE_S)
    _wait_until(
        supervisor,
        "3 status updates (6 status writes) from the unarmed bot",
        lambda: len(_events(supervisor, "bot", "status_update", restarted)) >= 3,
        _idle,
    )
    _stop_cleanly(supervisor, "bot")
