"""`splitdb run` on real processes: checks fire when they must and stay quiet when they must."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.results.report import CheckResult
from harness.runs import load as load_module
from harness.runs import run as run_module
from harness.runs import supervisor as supervisor_module
from harness.runs.run import RunResult, run_scenario
from harness.runs.scenario import parse_scenario
from tests.fixtures.broken_access import EveryoneWritesAccessManager


def _checks(result: RunResult) -> dict[str, CheckResult]:
    (repeat,) = result.report.repeats
    return {c.name: c for c in repeat.checks}


def _three_writers(topology: str, **settings: Any) -> dict[str, Any]:
    """No reference processes: three extra writers, one per role, each on its role's database."""
    return {
        "name": f"three-writers-{topology}",
        "topology": topology,
        "settings": settings,
        "duration": 3,
        "processes": {
            "bot": {"enabled": False},
            "agent": {"enabled": False},
            "api": {"enabled": False},
        },
        "load": [
            {"kind": "writer", "role": role, "database": db, "rows": 20, "name": f"w-{role}"}
            for role, db in (("bot", "ticks"), ("agent", "analysis"), ("api", "logs"))
        ],
    }


@pytest.mark.slow
def test_contention_check_fires_on_the_legacy_layout_with_three_writers(tmp_path: Path) -> None:
    scenario = parse_scenario(_three_writers("legacy", busy_timeout_ms=0))
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    contention = _checks(result)["contention"]
    assert not contention.ok
    assert contention.evidence["busy_events"] > 0
    assert contention.evidence["first"]
    assert not result.ok


@pytest.mark.slow
def test_contention_check_stays_quiet_on_the_seed_layout_in_wal(tmp_path: Path) -> None:
    scenario = parse_scenario(_three_writers("seed", busy_timeout_ms=0, journal_mode="wal"))
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    checks = _checks(result)
    assert checks["contention"].ok, checks["contention"]
    writes = sum(g.ok for g in result.report.repeats[0].metrics.groups.values())
    assert writes > 30
    assert result.ok, [c for c in checks.values() if not c.ok]


def _violators() -> dict[str, Any]:
    return {
        "name": "violators",
        "duration": 2,
        "processes": {"agent": {"enabled": False}, "api": {"enabled": False}},
        "load": [
            {"kind": "violator", "role": role, "rate": 50, "name": f"v-{role}"}
            for role in ("bot", "agent", "api")
        ],
    }


@pytest.mark.slow
def test_permission_check_passes_when_every_forbidden_attempt_is_denied(tmp_path: Path) -> None:
    result = run_scenario(parse_scenario(_violators()), out_dir=tmp_path, base_dir=tmp_path)
    permissions = _checks(result)["permissions"]
    assert permissions.ok, permissions
    assert permissions.evidence["forbidden"] > 50
    assert permissions.evidence["denied"] == permissions.evidence["forbidden"]


@pytest.mark.slow
def test_permission_check_catches_an_access_manager_that_gives_readers_write_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Load workers are forked from this process, so they inherit the broken class.
    monkeypatch.setattr(load_module, "AccessManager", EveryoneWritesAccessManager)
    result = run_scenario(parse_scenario(_violators()), out_dir=tmp_path, base_dir=tmp_path)
    permissions = _checks(result)["permissions"]
    assert not permissions.ok
    assert permissions.evidence["first_leaks"]


def test_bad_scenario_exits_2_naming_the_field(tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('duration = -1\n[[load]]\nkind = "reader"\nrate = "fast"\n')
    assert main(["run", str(bad), "--out", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err
    assert "duration:" in err and "load[0].rate:" in err
    assert not (tmp_path / "reports").exists()


def _kill_the_bot(kills: int) -> dict[str, Any]:
    return {
        "name": "kill-the-bot",
        "duration": 0.4 * kills + 1,
        "processes": {
            "bot": {"symbols": 5, "rate": 4000, "batch_size": 50},
            "agent": {"enabled": False},
            "api": {"enabled": False},
        },
        "fault": [{"kind": "sigkill", "target": "bot", "at": 0.4 * (i + 1)} for i in range(kills)],
    }


@pytest.mark.slow
def test_durability_holds_when_the_bot_is_killed_mid_run(tmp_path: Path) -> None:
    result = run_scenario(parse_scenario(_kill_the_bot(5)), out_dir=tmp_path, base_dir=tmp_path)
    checks = _checks(result)
    assert checks["durability"].ok, checks["durability"]
    assert len(result.report.repeats[0].faults) == 5
    assert checks["processes"].ok, checks["processes"]


@pytest.mark.slow
def test_durability_check_catches_a_bot_that_acks_before_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        supervisor_module.ROLE_MODULES, "bot", "tests.fixtures.ack_before_commit_bot"
    )
    result = run_scenario(parse_scenario(_kill_the_bot(8)), out_dir=tmp_path, base_dir=tmp_path)
    durability = _checks(result)["durability"]
    assert not durability.ok
    assert durability.evidence["short_symbols"] or durability.evidence["missing_keys"]


@pytest.mark.slow
def test_faults_are_applied_on_schedule_and_the_system_recovers(tmp_path: Path) -> None:
    scenario = parse_scenario(
        {
            "name": "faults",
            "duration": 4,
            "processes": {"bot": {"symbols": 3, "rate": 2000, "batch_size": 100}},
            "fault": [
                {"kind": "sigkill", "target": "bot", "after_acks": 5},
                {"kind": "sigstop", "target": "agent", "at": 1.0, "hold": 1.0},
                {
                    "kind": "read_transaction",
                    "target": "api",
                    "database": "ticks",
                    "at": 0.5,
                    "hold": 2.0,
                },
            ],
        }
    )
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    (repeat,) = result.report.repeats
    applied = [(f.kind, f.target) for f in repeat.faults if f.applied]
    assert applied == [("sigkill", "bot"), ("sigstop", "agent"), ("read_transaction", "api")]
    stop = repeat.faults[1]
    assert stop.resumed_s is not None and stop.at_s is not None
    assert stop.resumed_s >= stop.at_s + 1.0
    holds = repeat.metrics.groups["fault-hold2"]
    assert holds.ok == 1
    assert (holds.latency.max_ms or 0) >= 2000
    checks = _checks(result)
    for name in ("faults", "durability", "analysis", "integrity", "processes", "status_board"):
        assert checks[name].ok, checks[name]


@pytest.mark.slow
def test_a_paired_run_tags_each_repeat_and_judges_the_claims(tmp_path: Path) -> None:
    scenario = parse_scenario(
        {
            "name": "paired",
            "duration": 2,
            "processes": {
                "bot": {"symbols": 3, "rate": 1000},
                "agent": {"enabled": False},
                "api": {"enabled": False},
            },
            "variant": [{"name": "seed"}, {"name": "legacy", "topology": "legacy"}],
        }
    )
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    report = result.report
    assert report.variants == ["seed", "legacy"]
    assert [r.variant for r in report.repeats] == ["seed", "legacy"]
    assert [r.topology["layout"] for r in report.repeats] == ["separate", "shared"]
    assert {c.claim for c in report.claims or []} >= {
        "No more database locking",
        "Much faster performance",
    }
    assert (tmp_path / report.run_id / "legacy-repeat-1" / "data" / "trading.db").exists()


@pytest.mark.slow
def test_a_writer_frozen_in_its_transaction_stalls_only_its_own_file_on_the_seed_layout(
    tmp_path: Path,
) -> None:
    """The seed's claim in one exact case: the agent's file is write-locked for 1.5 s."""
    scenario = parse_scenario(
        {
            "name": "frozen-writer",
            "duration": 3,
            "settings": {"busy_timeout_ms": 100},
            "processes": {
                "bot": {"symbols": 3, "rate": 2000, "batch_size": 50},
                "agent": {"enabled": False},
                "api": {"enabled": False},
            },
            "fault": [
                {
                    "kind": "write_transaction",
                    "target": "agent",
                    "database": "analysis",
                    "at": 0.5,
                    "hold": 1.5,
                }
            ],
            "variant": [
                {"name": "seed"},
                {"name": "legacy", "topology": "legacy", "expect": {"max_busy_events": 10**6}},
            ],
        }
    )
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    busy = {
        r.variant: next(c for c in r.checks if c.name == "contention").evidence
        for r in result.report.repeats
    }
    assert busy["seed"]["busy_events"] == 0
    assert busy["legacy"]["by_process"].get("bot", 0) > 0
    for repeat in result.report.repeats:
        durability = next(c for c in repeat.checks if c.name == "durability")
        assert durability.ok, durability


@pytest.mark.slow
def test_a_process_that_never_gets_ready_fails_the_run_with_its_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(supervisor_module.ROLE_MODULES, "bot", "tests.fixtures.crashing_bot")
    scenario = parse_scenario(
        {
            "name": "crash",
            "duration": 1,
            "processes": {"agent": {"enabled": False}, "api": {"enabled": False}},
        }
    )
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    checks = _checks(result)
    assert not result.ok and result.path.exists()
    assert "deliberately broken bot" in checks["run"].evidence["error"]
    assert not checks["processes"].ok


@pytest.mark.slow
def test_the_same_scenario_twice_in_one_second_gets_two_run_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Same second, same process: the id the clock gives is the same for both runs.
    monkeypatch.setattr(run_module, "new_run_id", lambda name: f"{name}-20261125T000000Z-0001")
    scenario = parse_scenario(
        {
            "name": "twice",
            "duration": 0.5,
            "processes": {
                "bot": {"enabled": False},
                "agent": {"enabled": False},
                "api": {"enabled": False},
            },
        }
    )
    first = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    second = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    assert first.path.parent.name == "twice-20261125T000000Z-0001"
    assert second.path.parent.name == "twice-20261125T000000Z-0001-2"
    assert first.report.run_id != second.report.run_id
