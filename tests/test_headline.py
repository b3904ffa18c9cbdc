"""`splitdb run` prints the figures a user came for, equal to the ones in its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.results.headline import headline
from harness.results.report import Metrics
from harness.results.units import number
from tests.fixtures.reports import make_repeat

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_run_prints_the_headline_figures_of_its_report(tmp_path: Path, capsys: Any) -> None:
    code = main(
        [
            "run",
            str(ROOT / "scenarios" / "default.toml"),
            "--duration",
            "3",
            "--quiet",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    (report_path,) = tmp_path.glob("*/report.json")
    metrics = json.loads(report_path.read_text())["repeats"][0]["metrics"]
    line = next(line for line in out.splitlines() if "ticks/s committed" in line)
    assert f"{number(metrics['bot']['ticks_per_s'])} ticks/s committed" in line
    api = metrics["groups"]["load-clients"]
    assert f"API {number(api['ok_per_s'])} req/s" in line
    assert f"p99 {number(api['response']['p99_ms'])} ms" in line
    assert f"analysis lag p99 {number(metrics['analysis_lag']['p99_s'])} s" in line


def test_headline_names_what_a_run_did_not_measure() -> None:
    metrics = make_repeat(1)["metrics"]
    metrics["bot"].update(ticks_per_s=10.0, rows_per_commit=None)
    metrics["groups"] = {}
    metrics["analysis_lag"].update(p50_s=None, p99_s=None, max_s=None)
    line = headline(Metrics.model_validate(metrics))
    assert "10 ticks/s committed;" in line
    assert "10 ticks/s committed" in line
    assert "no API load" in line
    assert "analysis lag not measured" in line


def test_a_run_of_your_own_processes_leads_with_what_the_probe_counted() -> None:
    metrics = make_repeat(1)["metrics"]
    metrics["bot"]["ticks_per_s"] = None
    metrics["analysis_lag"]["p99_s"] = None
    metrics["load_s"] = 5.0
    seen = {"instrumented": True, "probe_started": True, "connections": 2, "reads": 0}
    metrics["observed"] = {
        "orders": {**seen, "writes": 1000, "busy": 12, "errors": 0},
        "risk": {**seen, "writes": 200, "busy": 3, "errors": 0},
        "shell": {**seen, "probe_started": False, "writes": 0, "busy": 0, "errors": 0},
    }
    line = headline(Metrics.model_validate(metrics))
    assert line.startswith("observed in 2 of 3 processes: 1,200 writes (240/s), 15 busy/locked")
    # The reference processes did not run: their figures are left out, not shown as missing.
    assert "ticks/s" not in line and "analysis lag" not in line
