"""A user's own processes, run by `splitdb run` from `[processes.NAME]` commands.

Each test writes a tiny system of Python programs, runs it through the same run as the
reference scenarios and asserts on the report: which checks fail, and what they name.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from harness.results.report import Report
from harness.runs.run import run_scenario
from harness.runs.scenario import parse_scenario
from tests.fixtures.user_system import TOPOLOGY, python_process

pytestmark = pytest.mark.slow


# Takes orders in its own file until stopped; says "ready" once its table exists.
TAKER = """\
import os, sqlite3, time
db = sqlite3.connect(os.environ["SPLITDB_DB_ORDERS"], isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, qty INTEGER)")
print("ready", flush=True)
while True:
    db.execute("INSERT INTO orders (qty) VALUES (1)")
    time.sleep(0.02)
"""


def write(base: Path, files: dict[str, str]) -> None:
    (base / "topology.toml").write_text(TOPOLOGY)
    for name, text in files.items():
        (base / name).write_text(textwrap.dedent(text))


def run(base: Path, raw: dict[str, Any]) -> Report:
    raw = {"name": "user", "topology": "topology.toml", "duration": 2, **raw}
    scenario = parse_scenario(raw, source="user.toml", base_dir=base)
    return run_scenario(scenario, out_dir=base / "reports", base_dir=base).report


def checks(report: Report) -> dict[str, Any]:
    return {c.name: c for c in report.repeats[0].checks}


def failed(report: Report) -> set[str]:
    return {c.name for c in report.repeats[0].checks if not c.ok}


def test_a_process_that_is_never_ready_fails_the_run_with_its_stderr_in_bounded_time(
    tmp_path: Path,
) -> None:
    quiet = """\
    import sys, time
    print("starting up, but never saying so", file=sys.stderr, flush=True)
    time.sleep(60)
    """
    write(tmp_path, {"quiet.py": quiet})
    started = time.monotonic()
    report = run(
        tmp_path,
        {
            "processes": {
                "quiet": {
                    "command": ["{python}", "quiet.py"],
                    "role": "taker",
                    "ready": {"line": "^ready$", "timeout": 1},
                }
            }
        },
    )
    # Bounded: the 1 s readiness timeout and a stop, not the program's 60 s sleep.
    assert time.monotonic() - started < 50
    run_check = checks(report)["run"]
    assert not run_check.ok
    error = run_check.evidence["error"]
    assert "quiet" in error and "^ready$" in error
    assert "starting up, but never saying so" in error


def test_a_program_that_does_not_exist_is_named_with_the_fix(tmp_path: Path) -> None:
    write(tmp_path, {})
    report = run(
        tmp_path,
        {"processes": {"ghost": {"command": ["no-such-program-xyz"], "role": "taker"}}},
    )
    error = checks(report)["run"].evidence["error"]
    assert "ghost: cannot start 'no-such-program-xyz'" in error
    assert "processes.ghost.command" in error


def test_a_process_that_dies_before_ready_is_a_failed_run_with_its_stderr(
    tmp_path: Path,
) -> None:
    write(tmp_path, {"crash.py": "raise SystemExit('config file missing: app.ini')\n"})
    report = run(
        tmp_path,
        {"processes": {"crash": python_process("crash.py", "taker")}},
    )
    assert {"run", "processes"} <= failed(report)
    assert "config file missing: app.ini" in checks(report)["run"].evidence["error"]


def test_a_oneshot_process_that_finishes_is_a_clean_end(tmp_path: Path) -> None:
    once = """\
    import os, sqlite3
    db = sqlite3.connect(os.environ["SPLITDB_DB_ORDERS"])
    with db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INTEGER)")
        db.executemany("INSERT INTO orders (qty) VALUES (?)", [(i,) for i in range(100)])
    """
    write(tmp_path, {"once.py": once})
    report = run(
        tmp_path,
        {
            "processes": {
                "once": {"command": ["{python}", "once.py"], "role": "taker", "oneshot": True}
            },
        },
    )
    assert failed(report) == set()
    exits = checks(report)["processes"].evidence["exits"]
    assert [(e["name"], e["how"], e["code"]) for e in exits] == [("once", "finished", 0)]


def test_a_restart_policy_starts_a_crashed_process_again(tmp_path: Path) -> None:
    flaky = """\
    import os, sqlite3, sys, time
    db = sqlite3.connect(os.environ["SPLITDB_DB_ORDERS"], isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS starts (at REAL)")
    db.execute("INSERT INTO starts VALUES (?)", (time.time(),))
    print("ready", flush=True)
    time.sleep(0.3)
    sys.exit(3)
    """
    write(tmp_path, {"flaky.py": flaky})
    report = run(
        tmp_path,
        {
            "processes": {
                "flaky": python_process("flaky.py", "taker", restart="on-failure", max_restarts=2)
            },
        },
    )
    exits = checks(report)["processes"].evidence["exits"]
    hows = [e["how"] for e in exits]
    # Two restarts by policy, then the third exit is past max_restarts: unexpected.
    assert hows[:2] == ["restarted by policy (exited with code 3)"] * 2
    assert "processes" in failed(report)
    assert len(exits) == 3


def test_a_kill_fault_on_a_user_process_is_applied_and_it_comes_back(tmp_path: Path) -> None:
    write(tmp_path, {"taker.py": TAKER})
    report = run(
        tmp_path,
        {
            "duration": 3,
            "processes": {"taker": python_process("taker.py", "taker")},
            "fault": [{"kind": "sigkill", "target": "taker", "at": 1}],
        },
    )
    assert failed(report) == set(), [c.summary for c in report.repeats[0].checks if not c.ok]
    record = report.repeats[0].faults[0]
    assert record.applied
    assert record.model_dump().get("restarted") is True


def test_a_write_outside_the_role_fails_permissions_naming_process_database_statement(
    tmp_path: Path,
) -> None:
    checker = """\
    import os, sqlite3, time
    risk = sqlite3.connect(os.environ["SPLITDB_DB_RISK"], isolation_level=None)
    risk.execute("CREATE TABLE IF NOT EXISTS exposure (qty INTEGER)")
    orders = sqlite3.connect(os.environ["SPLITDB_DB_ORDERS"], isolation_level=None)
    print("ready", flush=True)
    while True:
        (count,) = orders.execute("SELECT count(*) FROM orders").fetchone()
        risk.execute("INSERT INTO exposure VALUES (?)", (count,))
        orders.execute("UPDATE orders SET qty = 0 WHERE qty > 5")
        time.sleep(0.05)
    """
    write(tmp_path, {"taker.py": TAKER, "checker.py": checker})
    report = run(
        tmp_path,
        {
            "processes": {
                "taker": python_process("taker.py", "taker"),
                "checker": python_process("checker.py", "checker"),
            }
        },
    )
    assert failed(report) == {"permissions"}
    perm = checks(report)["permissions"]
    assert "checker (role checker) wrote orders (orders.db)" in perm.summary
    assert "UPDATE orders SET qty = ? WHERE qty > ?" in perm.summary
    assert [v["process"] for v in perm.evidence["violations"]] == ["checker"]
    # The writes each role may make are counted, not judged.
    assert perm.evidence["allowed_writes"] > 0


def test_a_process_that_is_not_python_is_run_and_marked_not_observed(tmp_path: Path) -> None:
    write(tmp_path, {})
    report = run(
        tmp_path,
        {
            "processes": {
                "shell": {
                    "command": ["/bin/sh", "-c", "sqlite3 --version >/dev/null 2>&1; sleep 30"],
                    "role": "taker",
                }
            }
        },
    )
    contention = checks(report)["contention"]
    assert "not observed: shell" in contention.summary
    assert contention.warning is not None
    assert "shell" in checks(report)["permissions"].evidence["not_observed"]


def test_a_restart_fault_stops_a_user_process_cleanly_and_starts_it_again(
    tmp_path: Path,
) -> None:
    write(tmp_path, {"taker.py": TAKER})
    report = run(
        tmp_path,
        {
            "duration": 3,
            "processes": {"taker": python_process("taker.py", "taker")},
            "fault": [{"kind": "restart", "target": "taker", "at": 1}],
            "invariant": [{"database": "orders", "sql": "SELECT count(*) FROM orders", "min": 1}],
        },
    )
    assert failed(report) == set(), [c.summary for c in report.repeats[0].checks if not c.ok]
    record = report.repeats[0].faults[0].model_dump()
    assert record["applied"] and record["restarted"] is True
    # Python dies of SIGTERM when it has no handler: a clean stop for a command process.
    assert record["stopped"] == {"how": "sigterm", "exit_code": -15}
    exits = checks(report)["processes"].evidence["exits"]
    assert [e["how"] for e in exits] == ["sigterm", "sigterm"]


def test_every_process_is_told_its_run_settings_in_its_environment(tmp_path: Path) -> None:
    show = """\
    import json, os, time
    settings = {k: v for k, v in os.environ.items() if k.startswith("SPLITDB_")}
    with open(os.path.join(os.environ["SPLITDB_RUN_DIR"], "seen.json"), "w") as out:
        json.dump(settings, out)
    print("ready", flush=True)
    time.sleep(60)
    """
    write(tmp_path, {"show.py": show})
    report = run(tmp_path, {"processes": {"show": python_process("show.py", "checker")}})
    repeat = Path(report.repeats[0].dir)
    seen = json.loads((repeat / "seen.json").read_text())
    assert seen["SPLITDB_PROCESS"] == "show" and seen["SPLITDB_ROLE"] == "checker"
    assert seen["SPLITDB_DB_ORDERS"] == str(repeat / "data" / "orders.db")
    assert seen["SPLITDB_DB_RISK"] == str(repeat / "data" / "risk.db")
    assert seen["SPLITDB_EVENTS"] == str(repeat / "events" / "show.jsonl")
    assert seen["SPLITDB_TOPOLOGY"] == str(repeat / "topology.toml")
    assert int(seen["SPLITDB_PORT"]) > 0


def test_a_reference_process_is_told_the_same_settings(tmp_path: Path) -> None:
    from harness.runs.supervisor import Supervisor
    from reference.topology import load_topology

    with Supervisor(tmp_path, load_topology("seed")) as supervisor:
        supervisor.start("agent", ["--interval", "1"])
        supervisor.wait_ready("agent")
        pid = supervisor.processes["agent"].pid
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    seen = dict(item.decode().split("=", 1) for item in environ if item.startswith(b"SPLITDB_"))
    assert seen["SPLITDB_ROLE"] == "agent" and seen["SPLITDB_TOPOLOGY"] == "seed"
    assert seen["SPLITDB_DB_TICKS"] == str(tmp_path / "data" / "unified_tick_pipeline.db")


def test_a_reader_using_sqlite_utils_is_not_reported_as_writing(tmp_path: Path) -> None:
    reader = """\
    import os, time
    import sqlite_utils
    db = sqlite_utils.Database(os.environ["SPLITDB_DB_ORDERS"])
    print("ready", flush=True)
    while True:
        db.execute("SELECT count(*) FROM orders").fetchone()
        time.sleep(0.05)
    """
    write(tmp_path, {"taker.py": TAKER, "reader.py": reader})
    report = run(
        tmp_path,
        {
            "processes": {
                "taker": python_process("taker.py", "taker"),
                "reader": python_process("reader.py", "checker"),
            }
        },
    )
    assert failed(report) == set(), [c.summary for c in report.repeats[0].checks if not c.ok]
    observed = report.repeats[0].metrics.observed
    assert observed is not None and observed["reader"].reads > 0
    assert observed["reader"].writes == 0
