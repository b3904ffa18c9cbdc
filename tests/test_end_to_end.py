"""The whole system on real processes: ticks -> bars and indicators -> API, every check green."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.runs.run import run_scenario
from harness.runs.scenario import parse_scenario


@pytest.mark.slow
def test_ticks_reach_bars_and_the_api_and_every_check_passes(tmp_path: Path) -> None:
    scenario = parse_scenario(
        {
            "name": "e2e",
            "duration": 4,
            # 300 market seconds per wall second: 20 one-minute bars in 4 s, so indicators too.
            "processes": {"bot": {"symbols": 5, "rate": 2000, "batch_size": 200, "speed": 300}},
            "load": [
                {"kind": "api", "rate": 50, "endpoints": ["latest", "ticks", "bars", "indicators"]},
                {"kind": "reader", "rate": 50, "query": "bars"},
                {"kind": "violator", "role": "agent", "rate": 20},
            ],
            "expect": {"max_busy_events": 0, "max_analysis_lag_p99_s": 5},
        }
    )
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    (repeat,) = result.report.repeats
    checks = {c.name: c for c in repeat.checks}
    failed = {n: c.summary for n, c in checks.items() if not c.ok}
    assert not failed, failed
    assert {"analysis", "api_answers", "durability", "permissions"} <= set(checks)
    assert checks["analysis"].evidence["bars_expected"] > 0
    assert checks["analysis"].evidence["indicators_expected"] > 0
    assert checks["api_answers"].evidence["compared"] >= 10
    metrics = repeat.metrics
    assert metrics.bot.ticks_committed > 0
    assert metrics.groups["load-api0"].ok > 0
    assert result.path.exists() and result.report.verdict.ok


@pytest.mark.slow
def test_splitdb_up_serves_the_api_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "up", "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("API"):
            url = line.split()[1]
    assert url is not None, "".join(lines)
    health: Any = httpx.get(f"{url}/health", timeout=5).json()
    assert health["status"] == "ok"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + out
    for role in ("bot", "agent", "api"):
        assert f"{role:<6} stopped (sigterm, exit code 0)" in out
