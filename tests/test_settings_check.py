"""The `settings` check: what each process had on its connections, against the topology."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.results.report import CheckResult
from harness.runs import supervisor as supervisor_module
from harness.runs.checks import settings
from harness.runs.run import run_scenario
from harness.runs.scenario import parse_scenario
from reference.events import Event
from reference.topology import load_topology

SEED = load_topology("seed")


def _ready(role: str) -> Event:
    return {"t": 0, "wall": 0.0, "role": role, "pid": 100, "op": "ready"}


def _record(role: str, db: str, when: str = "ready", **changes: Any) -> Event:
    """A `settings` event with what the access manager sets for this role and database."""
    spec = SEED.databases[db]
    owner = SEED.mode(role, db) == "rw"
    event: Event = {
        "t": 1,
        "wall": 1.0,
        "role": role,
        "pid": 100,
        "op": "settings",
        "when": when,
        "db": db,
        "file": f"/data/{spec.path}",
        "mode": "rw" if owner else "ro",
        "read_only": not owner,
        "query_only": not owner,
        "journal_mode": spec.journal_mode,
        # A reader's synchronous is SQLite's default, FULL: it writes nothing, so it is not judged.
        "synchronous": spec.synchronous if owner else "full",
        "busy_timeout_ms": spec.busy_timeout_ms,
    }
    event.update(changes)
    return event


def _stack() -> dict[str, list[Event]]:
    """Bot, agent and API as the reference processes record themselves, every setting right."""
    return {
        role: [_ready(role), *(_record(role, db) for db in SEED.databases)]
        for role in ("bot", "agent", "api")
    }


def test_passes_when_every_recorded_setting_equals_the_topology() -> None:
    check = settings(_stack(), SEED)
    assert check.ok, check.summary
    assert check.name == "settings"
    assert check.evidence["records"] == 9
    assert check.evidence["mismatches"] == [] and check.evidence["not_observed"] == []


def test_a_declared_busy_timeout_passes_and_is_listed_with_its_reason() -> None:
    events = _stack()
    events["api"].append(
        _record(
            "api",
            "logs",
            "transaction",
            busy_timeout_ms=250,
            declared_busy_timeout_ms=250,
            declared_reason="retries on its own",
        )
    )
    check = settings(events, SEED)
    assert check.ok, check.summary
    assert "declared" in check.summary and "api logs busy_timeout_ms 250" in check.summary
    (declared,) = check.evidence["declared"]
    assert declared["reason"] == "retries on its own"


@pytest.mark.parametrize(
    ("role", "db", "changes", "named"),
    [
        (
            "bot",
            "ticks",
            {"journal_mode": "delete"},
            "bot ticks journal_mode: delete, expected wal",
        ),
        ("bot", "ticks", {"synchronous": "off"}, "bot ticks synchronous: off, expected normal"),
        (
            "agent",
            "analysis",
            {"busy_timeout_ms": 0},
            "agent analysis busy_timeout_ms: 0, expected 5000",
        ),
        ("api", "ticks", {"busy_timeout_ms": 0}, "api ticks busy_timeout_ms: 0, expected 5000"),
        ("api", "ticks", {"query_only": False}, "api ticks query_only: False, expected True"),
        # A busy_timeout other than the one the process declared is not declared.
        (
            "api",
            "logs",
            {"busy_timeout_ms": 0, "declared_busy_timeout_ms": 250, "declared_reason": "r"},
            "api logs busy_timeout_ms: 0, expected 5000",
        ),
    ],
)
def test_fails_naming_process_database_setting_actual_and_expected(
    role: str, db: str, changes: dict[str, Any], named: str
) -> None:
    events = _stack()
    events[role].append(_record(role, db, "heartbeat", **changes))
    check = settings(events, SEED)
    assert not check.ok
    assert named in check.summary
    (mismatch,) = check.evidence["mismatches"]
    assert (mismatch["process"], mismatch["db"], mismatch["when"]) == (role, db, "heartbeat")


def test_an_owner_is_judged_by_the_topologys_grant_not_by_the_mode_it_recorded() -> None:
    events = _stack()
    events["bot"].append(_record("bot", "ticks", mode="ro", synchronous="off"))
    check = settings(events, SEED)
    assert not check.ok and "bot ticks synchronous: off" in check.summary


def test_the_same_mismatch_recorded_again_is_one_finding_with_a_count() -> None:
    events = _stack()
    events["bot"] += [
        _record("bot", "ticks", when, synchronous="off") for when in ("heartbeat", "close")
    ]
    check = settings(events, SEED)
    (mismatch,) = check.evidence["mismatches"]
    assert (mismatch["count"], mismatch["when"]) == (2, "heartbeat")


def test_a_running_process_that_recorded_no_settings_is_not_observed() -> None:
    events = _stack()
    events["agent"] = [_ready("agent")]
    check = settings(events, SEED)
    assert not check.ok
    assert "agent: not observed" in check.summary
    assert check.evidence["not_observed"] == ["agent"]


def test_load_workers_and_processes_that_never_ran_are_not_expected_to_record() -> None:
    events = _stack()
    events["load-reader0-0"] = [{"t": 0, "wall": 0.0, "role": "api", "pid": 7, "op": "read"}]
    events["api"] = []
    check = settings(events, SEED)
    assert check.ok, check.summary


# --- on real processes ------------------------------------------------------------------------


def _run(tmp_path: Path, **processes: Any) -> dict[str, CheckResult]:
    scenario = parse_scenario(
        {
            "name": "settings",
            "duration": 1.5,
            "processes": {"bot": {"symbols": 3, "rate": 1000, "batch_size": 50}, **processes},
            "load": [{"kind": "api", "rate": 20, "endpoints": ["latest", "bars"]}]
            if processes.get("api", {}).get("enabled", True)
            else [],
        }
    )
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    (repeat,) = result.report.repeats
    return {c.name: c for c in repeat.checks}


@pytest.mark.slow
def test_the_reference_processes_pass_the_settings_check(tmp_path: Path) -> None:
    checks = _run(tmp_path)
    check = checks["settings"]
    assert check.ok, check.summary
    assert set(check.evidence["by_process"]) == {"bot", "agent", "api"}
    # Declared, with their reasons: the request log's short busy_timeout, and the 0 of the
    # API's event-loop readers (a read that would wait moves to a worker thread).
    declared = sorted((d["process"], d["db"]) for d in check.evidence["declared"])
    assert declared == [("api", "analysis"), ("api", "logs"), ("api", "ticks")]


@pytest.mark.slow
def test_a_bot_that_turns_synchronous_off_after_ready_fails_the_settings_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(supervisor_module.ROLE_MODULES, "bot", "tests.fixtures.weak_sync_bot")
    checks = _run(tmp_path, agent={"enabled": False}, api={"enabled": False})
    check = checks["settings"]
    assert not check.ok
    assert "bot ticks synchronous: off, expected normal" in check.summary
    # Everything else passes: only the settings show what the process did.
    assert checks["durability"].ok, checks["durability"]
