"""Expectations: machine-relative ones judge against the same run; machine-dependent ones warn
only when the run could not offer its load, and say which they were."""

from __future__ import annotations

from typing import Any

import pytest

from harness.errors import ScenarioError
from harness.runs.repeat import _expectations, machine_state
from harness.runs.scenario import parse_scenario


def _metrics(*, wake_ms: float, api_ok: int = 900, offered: int = 1000) -> dict[str, Any]:
    latency = {"p99_ms": 5.0, "max_ms": 9.0}
    return {
        "bot": {
            "ticks_per_s": 4000.0,
            "rows_per_commit": 200.0,
            "commit_latency": {"p99_ms": 3.0},
        },
        "analysis_lag": {"p99_s": 0.2},
        "wal": {"max_bytes": {}},
        "groups": {
            "load-clients": {
                "kind": "api",
                "ok": api_ok,
                "ok_per_s": api_ok / 10,
                "errors": 0,
                "offered": offered,
                "latency": latency,
                "response": latency,
                "generator_wake_p99_ms": wake_ms,
            }
        },
    }


def _judge(expect: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    scenario = parse_scenario({"name": "t", "processes": {"bot": {"rate": 5000}}, "expect": expect})
    metrics["machine"] = machine_state(metrics, [0.1])
    return {c.name: c for c in _expectations(scenario, metrics, {})}


def test_fractions_are_judged_against_what_the_same_run_offered() -> None:
    found = _judge(
        {"min_ingest_fraction": 0.9, "min_api_answered_fraction": 0.95}, _metrics(wake_ms=1)
    )
    ingest = found["expect.min_ingest_fraction"]
    # 4,000 of 5,000 ticks/s offered is 0.8
    assert not ingest.ok and ingest.evidence["measured"] == 0.8
    answered = found["expect.min_api_answered_fraction"]
    assert not answered.ok and answered.evidence["measured"] == 0.9


def test_a_machine_dependent_miss_fails_when_the_machine_kept_its_schedule() -> None:
    found = _judge(
        {"min_api_requests_per_s": 95, "machine_dependent": ["min_api_requests_per_s"]},
        _metrics(wake_ms=0.5),
    )
    check = found["expect.min_api_requests_per_s"]
    assert not check.ok and check.warning is None
    assert "machine-dependent; judged" in check.summary


def test_a_machine_dependent_miss_is_a_warning_when_the_machine_was_short_of_cpu() -> None:
    found = _judge(
        {
            "min_api_requests_per_s": 95,
            "min_api_answered_fraction": 0.95,
            "machine_dependent": ["min_api_requests_per_s"],
        },
        _metrics(wake_ms=40),
    )
    check = found["expect.min_api_requests_per_s"]
    assert check.ok and check.warning and "short of CPU" in check.warning
    assert "WARNING" in check.summary
    # Expectations not marked machine-dependent are judged whatever the machine.
    assert not found["expect.min_api_answered_fraction"].ok


@pytest.mark.parametrize(
    ("machine_dependent", "needle"),
    [
        (["min_api_request_per_s"], "'min_api_request_per_s' is not an expectation"),
        (["max_api_p99_ms"], "'max_api_p99_ms' is not set in [expect]"),
    ],
)
def test_machine_dependent_names_must_be_set_expectations(
    machine_dependent: list[str], needle: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(
            {
                "name": "t",
                "expect": {"min_api_requests_per_s": 1, "machine_dependent": machine_dependent},
            }
        )
    assert needle in str(info.value) and "expect.machine_dependent" in str(info.value)
