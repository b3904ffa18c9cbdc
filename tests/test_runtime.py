"""The process runtime: what every reference process records through it (its connections'
settings), and that SIGTERM stops a process whatever the main thread is doing when it lands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reference.access import AccessManager
from reference.events import Event, read_events
from reference.runtime import Runtime
from reference.topology import load_topology

SEED = load_topology("seed")
ROOT = Path(__file__).resolve().parents[1]
# Only bounds how long a hung child takes to fail the test; a working one exits at once.
DEADLINE_S = 20.0


def _settings(events: list[Event]) -> list[tuple[str, str, str, int]]:
    return [
        (e["when"], e["db"], e["synchronous"], e["busy_timeout_ms"])
        for e in events
        if e["op"] == "settings"
    ]


def test_a_process_records_its_connections_settings_at_ready_on_change_and_at_close(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    AccessManager(SEED, data).initialize()
    log = tmp_path / "bot.jsonl"
    runtime = Runtime("bot", topology=SEED, data_dir=data, events=log, install_signals=False)
    conn = runtime.access.connect("bot", "ticks")
    runtime.ready()
    runtime.heartbeat(force=True)  # nothing changed: nothing recorded
    conn.execute("PRAGMA synchronous = OFF")
    runtime.heartbeat(force=True)
    conn.close()
    runtime.finish()
    events = list(read_events(log))
    assert _settings(events) == [
        ("ready", "ticks", "normal", 5000),
        ("heartbeat", "ticks", "off", 5000),
        ("close", "ticks", "off", 5000),
    ]
    first = next(e for e in events if e["op"] == "settings")
    assert first["role"] == "bot" and first["mode"] == "rw" and first["journal_mode"] == "wal"
    assert first["file"] == str(SEED.file_of("ticks", data))
    ops = [e["op"] for e in events]
    # What the process had when it said it was ready is on record before the ready event.
    assert ops.index("settings") < ops.index("ready")


def _run_child(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    prologue = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from reference.runtime import Runtime\n"
        f"runtime = Runtime('bot', data_dir=Path({str(tmp_path)!r}), "
        f"events=Path({str(tmp_path / 'bot.jsonl')!r}))\n"
    )
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    return subprocess.run(
        [sys.executable, "-c", prologue + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )


@pytest.mark.slow
def test_sigterm_landing_while_the_process_writes_an_event_still_stops_it(
    tmp_path: Path,
) -> None:
    # A Python signal handler runs in the main thread between two bytecodes, here while that
    # thread holds the event log's lock (as it does for every event it writes). A handler that
    # wrote an event itself would wait for that lock forever.
    done = _run_child(
        "with runtime.events._lock:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "assert runtime.stopping\n"
        "runtime.finish()\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    ops = [e["op"] for e in read_events(tmp_path / "bot.jsonl")]
    assert ops[-2:] == ["signal", "stopped"]


@pytest.mark.slow
def test_sigterm_wakes_a_process_waiting_between_cycles(tmp_path: Path) -> None:
    done = _run_child(
        "signal.setitimer(signal.ITIMER_REAL, 0.2)\n"
        "signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGTERM))\n"
        "print(runtime.wait(10 * 60))\n",
        tmp_path,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr
