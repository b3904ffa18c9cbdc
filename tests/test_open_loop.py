"""Open-loop load: a stall shows in every request it held up, not in one slow answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.runs import supervisor as supervisor_module
from harness.runs.run import run_scenario
from harness.runs.scenario import parse_scenario


def _api_run(tmp_path: Path, expect: dict[str, Any]) -> Any:
    scenario = parse_scenario(
        {
            "name": "api-stall",
            "duration": 4.0,
            "processes": {"bot": {"symbols": 2, "rate": 500}, "agent": {"enabled": False}},
            "load": [
                {"kind": "api", "name": "clients", "rate": 50, "endpoints": ["health"]},
            ],
            "expect": expect,
        }
    )
    return run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)


@pytest.mark.slow
def test_a_two_second_stall_of_the_api_fails_the_open_loop_expectation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(supervisor_module.ROLE_MODULES, "api", "tests.fixtures.stalling_api")
    result = _api_run(tmp_path, {"max_api_silence_ms": 1000})
    (repeat,) = result.report.repeats
    clients = repeat.metrics.groups["load-clients"]
    # Requests scheduled during the stall waited for it, counted from their scheduled time;
    # counted from the send instead, only the one in flight looks slow (coordinated omission).
    assert clients.response is not None and (clients.response.max_ms or 0) >= 1500
    slow_service = clients.latency.histogram_us
    slow_sends = sum(n for bound, n in slow_service.items() if int(bound[3:]) > 1_000_000)
    assert (clients.stalls or 0) > slow_sends, clients
    # And the server answered nothing for the length of the stall.
    assert (clients.longest_silence_ms or 0) >= 1500
    check = repeat.check("expect.max_api_silence_ms")
    assert check is not None and not check.ok and not result.ok


@pytest.mark.slow
def test_the_real_api_never_falls_silent_under_the_same_load(tmp_path: Path) -> None:
    result = _api_run(tmp_path, {"max_api_silence_ms": 1000})
    (repeat,) = result.report.repeats
    clients = repeat.metrics.groups["load-clients"]
    assert (clients.offered or 0) >= 190  # 50 req/s for 4 s
    assert result.ok, [c for c in repeat.checks if not c.ok]
