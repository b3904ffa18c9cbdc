"""Bad input to the reference processes: one line on stderr naming the flag or file, exit 2.

Real processes (`python -m reference.bot ...`), real files; no tracebacks, no hang, no unbounded
work for a careless command line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.runs.supervisor import Supervisor
from reference.events import read_events
from reference.topology import load_topology

SEED = load_topology("seed")
DAY_MS = 86_400_000


def _run(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"reference.{module}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- 1. a market start in the past is caught up in bounded steps --------------------------------


@pytest.mark.slow
def test_a_bot_started_days_in_the_past_stops_on_sigterm_with_its_ticks_committed(
    tmp_path: Path,
) -> None:
    start = int(time.time() * 1000) - 3 * DAY_MS
    with Supervisor(tmp_path, SEED) as supervisor:
        supervisor.start(
            "bot", ["--symbols", "5", "--rate", "5000", "--seed", "3", "--start-msc", str(start)]
        )
        supervisor.wait_ready("bot")
        deadline = time.monotonic() + 30
        path = supervisor.events_path("bot")
        while time.monotonic() < deadline:
            if path.exists() and any(e["op"] == "ack" for e in read_events(path)):
                break
            time.sleep(0.05)
        record = supervisor.stop("bot")
    assert (record.code, record.how) == (0, "sigterm")
    section = supervisor.board.section("bot")
    assert section["state"] == "stopped"
    assert section["committed"] > 0


@pytest.mark.slow
def test_a_bot_started_days_in_the_past_honours_duration(tmp_path: Path) -> None:
    start = int(time.time() * 1000) - 3 * DAY_MS
    result = _run(
        "bot",
        "--data-dir",
        str(tmp_path / "data"),
        "--symbols",
        "3",
        "--start-msc",
        str(start),
        "--duration",
        "1",
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("value", [str(2**63), str(10**30), "-1", "253402300800000"])
def test_a_start_beyond_the_clock_is_refused(tmp_path: Path, value: str) -> None:
    result = _run("bot", "--data-dir", str(tmp_path / "data"), "--start-msc", value)
    _one_line_error(result, "--start-msc")
    assert not (tmp_path / "data").exists()


# --- 2. a usage error is one line ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "args", "flag"),
    [
        ("bot", ["--rate", "-1"], "--rate"),
        ("bot", ["--no-such-flag"], "--no-such-flag"),
        ("agent", ["--interval", "abc"], "--interval"),
        ("api", ["--port", "99999"], "--port"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    tmp_path: Path, module: str, args: list[str], flag: str
) -> None:
    result = _run(module, "--data-dir", str(tmp_path / "data"), *args)
    line = _one_line_error(result, flag, "; see --help")
    assert line.startswith(f"python -m reference.{module}: error: ")


# --- 3. numbers are finite and within bounds -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "args", "flag"),
    [
        ("bot", ["--heartbeat", "0"], "--heartbeat"),
        ("bot", ["--heartbeat", "nan"], "--heartbeat"),
        ("bot", ["--duration", "inf"], "--duration"),
        ("bot", ["--duration", "-1"], "--duration"),
        ("bot", ["--poll-ms", "1e308"], "--poll-ms"),
        ("bot", ["--max-delay-ms", "nan"], "--max-delay-ms"),
        ("bot", ["--rate", "inf"], "--rate"),
        ("bot", ["--symbols", "0"], "--symbols"),
        ("bot", ["--symbols", "-1"], "--symbols"),
        ("bot", ["--symbols", "99999999999"], "--symbols"),
        ("agent", ["--heartbeat", "-1"], "--heartbeat"),
        ("agent", ["--interval", "inf"], "--interval"),
        ("agent", ["--interval", "1e308"], "--interval"),
        ("api", ["--heartbeat", "0"], "--heartbeat"),
        ("api", ["--heartbeat", "inf"], "--heartbeat"),
        ("api", ["--log-queue-size", "99999999999"], "--log-queue-size"),
        ("api", ["--log-batch-size", "99999999999"], "--log-batch-size"),
    ],
)
def test_a_number_out_of_range_is_one_line_and_exit_2(
    tmp_path: Path, module: str, args: list[str], flag: str
) -> None:
    result = _run(module, "--data-dir", str(tmp_path / "data"), *args)
    _one_line_error(result, flag)
    assert not (tmp_path / "data").exists()


# --- 4. a data directory, database, status or events file that cannot be used -------------------


OWNS = {"bot": "ticks", "agent": "analysis", "api": "logs"}


def _setup_case(tmp_path: Path, case: str, module: str = "bot") -> tuple[list[str], str]:
    """Arguments for one unusable setup, and the path the message must name."""
    data = tmp_path / "data"
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    if case == "data-dir is a file":
        return ["--data-dir", str(afile)], str(afile)
    if case == "data-dir under a file":
        return ["--data-dir", str(afile / "x")], str(afile / "x")
    if case == "data-dir in /proc":
        return ["--data-dir", "/proc/forbidden"], "/proc/forbidden"
    if case == "database is junk":
        data.mkdir()
        junk = SEED.file_of(OWNS[module], data)
        junk.write_bytes(b"this is not an SQLite database, just some bytes" * 100)
        return ["--data-dir", str(data)], str(junk)
    if case == "database is a directory":
        SEED.file_of(OWNS[module], data).mkdir(parents=True)
        return ["--data-dir", str(data)], str(SEED.file_of(OWNS[module], data))
    if case == "status is a directory":
        (data / SEED.status).mkdir(parents=True)
        return ["--data-dir", str(data)], str(data / SEED.status)
    if case == "events is a directory":
        (tmp_path / "ev").mkdir()
        return ["--data-dir", str(data), "--events", str(tmp_path / "ev")], str(tmp_path / "ev")
    if case == "events under a file":
        return ["--data-dir", str(data), "--events", str(afile / "e.jsonl")], str(afile)
    raise AssertionError(case)


SETUP_CASES = [
    "data-dir is a file",
    "data-dir under a file",
    "data-dir in /proc",
    "database is junk",
    "database is a directory",
    "status is a directory",
    "events is a directory",
    "events under a file",
]


@pytest.mark.slow
@pytest.mark.parametrize("case", SETUP_CASES)
@pytest.mark.parametrize("module", ["bot", "agent", "api"])
def test_an_unusable_setup_is_one_line_naming_the_path(
    tmp_path: Path, module: str, case: str
) -> None:
    args, named = _setup_case(tmp_path, case, module)
    result = _run(module, *args, "--duration", "1") if module == "bot" else _run(module, *args)
    _one_line_error(result, named)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["database is junk", "database is a directory"])
def test_splitdb_init_over_an_unusable_database_is_one_line(tmp_path: Path, case: str) -> None:
    args, named = _setup_case(tmp_path, case)
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "init", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    _one_line_error(result, named)


@pytest.mark.slow
def test_the_api_on_a_port_already_in_use_is_one_line_naming_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = _run("api", "--data-dir", str(tmp_path / "data"), "--port", port)
    _one_line_error(result, f"--port {port}", "0 for any free one")
