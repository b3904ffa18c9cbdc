"""Every scheduled fault is applied, or reported as not applied with the reason: never lost."""

from __future__ import annotations

import sqlite3
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

from harness.results.report import CheckResult, Repeat
from harness.runs import repeat as repeat_module
from harness.runs.checks import processes
from harness.runs.load import WorkerPlan, run_worker
from harness.runs.run import RunResult, run_scenario
from harness.runs.scenario import parse_scenario
from harness.runs.supervisor import Exit
from reference.access import AccessManager
from reference.events import read_events
from reference.topology import load_topology

BOT_ONLY = {
    "bot": {"symbols": 3, "rate": 2000, "batch_size": 50},
    "agent": {"enabled": False},
    "api": {"enabled": False},
}


def _repeat(result: RunResult) -> Repeat:
    (repeat,) = result.report.repeats
    return repeat


def _check(repeat: Repeat, name: str) -> CheckResult:
    check = repeat.check(name)
    assert check is not None, f"no {name} check"
    return check


@pytest.mark.slow
def test_two_kills_due_at_once_are_two_kills_the_second_after_the_restart(
    tmp_path: Path,
) -> None:
    # Three kills in a 1 s load: the second is due while the bot restarts after the first, and
    # the third is due after the load ends on any machine where a restart takes over 0.1 s.
    scenario = parse_scenario(
        {
            "name": "kills",
            "duration": 1.0,
            "processes": BOT_ONLY,
            "fault": [
                {"kind": "sigkill", "target": "bot", "at": 0.3},
                {"kind": "sigkill", "target": "bot", "at": 0.3},
                {"kind": "sigkill", "target": "bot", "at": 0.4},
            ],
        }
    )
    repeat = _repeat(run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path))
    faults = repeat.faults
    assert [f.index for f in faults] == [0, 1, 2]
    assert all(f.applied and f.restarted for f in faults), faults
    times = [f.at_s for f in faults]
    assert times == sorted(times) and len(set(times)) == 3, times
    # Each later kill waited for the bot to be ready again, and says so.
    for earlier, later in pairwise(faults):
        # (each figure is rounded to the millisecond)
        assert later.at_s is not None and earlier.at_s is not None
        assert later.at_s >= earlier.at_s + (earlier.ready_after_s or 0) - 0.002
        assert "restarting" in (later.waited_because or "")
    assert _check(repeat, "faults").ok
    assert _check(repeat, "durability").ok, _check(repeat, "durability")
    # Four incarnations of the bot: three killed, the last stopped at the end.
    exits = _check(repeat, "processes").evidence["exits"]
    bot_exits = [(e["pid"], e["how"]) for e in exits if e["name"] == "bot"]
    assert [how for _, how in bot_exits] == ["sigkill"] * 3 + ["sigterm"]
    assert len({pid for pid, _ in bot_exits}) == 4


@pytest.mark.slow
def test_a_fault_that_cannot_be_applied_is_reported_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repeat_module, "FAULT_GRACE_S", 0.5)
    scenario = parse_scenario(
        {
            "name": "unapplied",
            "duration": 1.0,
            "processes": BOT_ONLY,
            "fault": [
                {"kind": "sigstop", "target": "bot", "at": 0.1, "hold": 0.2},
                {"kind": "sigkill", "target": "bot", "after_acks": 10**6},
                {"kind": "sigkill", "target": "bot", "at": 0.4, "restart": False},
                {"kind": "sigkill", "target": "bot", "at": 0.5},
            ],
        }
    )
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    repeat = _repeat(result)
    by_index = {f.index: f for f in repeat.faults}
    paused = by_index[0]
    assert paused.applied and paused.resumed_s is not None and paused.at_s is not None
    assert paused.resumed_s >= paused.at_s + 0.2
    assert not by_index[1].applied
    assert "not the 1000000 this fault waits for" in (by_index[1].reason or "")
    assert by_index[2].applied and not by_index[2].restarted
    assert not by_index[3].applied
    assert "bot had exited" in (by_index[3].reason or "")
    check = _check(repeat, "faults")
    assert not check.ok
    assert "2 of 4 scheduled faults applied" in check.summary
    assert "#1 sigkill bot" in check.summary and "#3 sigkill bot" in check.summary
    assert not result.ok


def test_a_held_transaction_happens_even_when_its_worker_starts_late(tmp_path: Path) -> None:
    """A busy machine can start the fault's worker after its window; it must hold anyway."""
    topology = load_topology("seed")
    AccessManager(topology, tmp_path).initialize()
    topology_path = tmp_path / "topology.toml"
    topology_path.write_text(topology.to_toml(), encoding="utf-8")
    now = time.time()
    plan = WorkerPlan(
        group="fault-hold0",
        index=0,
        kind="hold",
        settings={"role": "api", "database": "ticks", "hold": 0.2, "write": False},
        topology=str(topology_path),
        data_dir=str(tmp_path),
        events=str(tmp_path / "hold.jsonl"),
        start_at=now - 1.0,  # due a second ago, and its window already over
        stop_at=now - 0.99,
        seed=1,
    )
    run_worker(plan)
    holds = [e for e in read_events(tmp_path / "hold.jsonl") if e["op"] == "hold"]
    assert len(holds) == 1
    assert holds[0]["outcome"] == "ok"
    assert holds[0]["dur_us"] >= 200_000
    assert holds[0]["late_us"] >= 1_000_000


@pytest.mark.slow
def test_a_load_group_is_measured_over_its_own_window(tmp_path: Path) -> None:
    scenario = parse_scenario(
        {
            "name": "burst",
            "duration": 3.0,
            "processes": BOT_ONLY,
            "load": [
                {"kind": "reader", "role": "api", "rate": 100, "start": 1.0, "duration": 1.0},
                {"kind": "reader", "role": "api", "rate": 100, "name": "steady"},
            ],
        }
    )
    groups = _repeat(run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)).metrics.groups
    burst, steady = groups["load-reader0"], groups["load-steady"]
    assert (burst.active_s, steady.active_s) == (1.0, 3.0)
    assert burst.ok_per_s == round(burst.ok / 1.0, 3)
    assert steady.ok_per_s == round(steady.ok / 3.0, 3)


def test_the_processes_check_names_the_process_and_how_it_ended() -> None:
    exits = [
        Exit("agent", 11, 0, True, "sigterm"),
        Exit("bot", 12, -9, False, "sigkill after sigterm timeout"),
    ]
    check = processes(exits, {"bot": "flushing 200000 pending ticks"})
    assert not check.ok
    assert check.summary == (
        "2 exits, 1 unexpected: bot (pid 12): did not exit within the stop grace period after "
        "SIGTERM, so it was killed (exit code -9)"
    )
    assert check.evidence["unexpected"][0]["stderr_tail"] == "flushing 200000 pending ticks"


def test_a_worker_whose_connection_meets_a_lock_at_open_counts_it_and_goes_on(
    tmp_path: Path,
) -> None:
    """With busy_timeout 0 in rollback-journal mode, a worker opening its connection while a
    writer holds the file's lock gets SQLITE_BUSY from the open itself: that is contention to
    count, not a crash of the load generator (which failed a claims run once)."""
    topology = load_topology("seed").with_settings(journal_mode="delete", busy_timeout_ms=0)
    AccessManager(topology, tmp_path).initialize()
    topology_path = tmp_path / "topology.toml"
    topology_path.write_text(topology.to_toml(), encoding="utf-8")
    holder = sqlite3.connect(
        topology.file_of("ticks", tmp_path), isolation_level=None, check_same_thread=False
    )
    holder.execute("BEGIN EXCLUSIVE")
    releaser = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    releaser.start()
    now = time.time()
    plan = WorkerPlan(
        group="load-readers",
        index=0,
        kind="reader",
        settings={"role": "api", "query": "count", "rate": 50},
        topology=str(topology_path),
        data_dir=str(tmp_path),
        events=str(tmp_path / "reader.jsonl"),
        start_at=now,
        stop_at=now + 0.8,
        seed=1,
    )
    try:
        run_worker(plan)
    finally:
        releaser.join()
        holder.close()
    events = list(read_events(tmp_path / "reader.jsonl"))
    opens = [e for e in events if e["op"] == "connect"]
    assert opens and all(e["outcome"] in ("busy", "locked") for e in opens), opens
    assert any(e["op"] == "read" and e["outcome"] == "ok" for e in events)
