"""The worked examples in examples/ run as their READMEs say, with the verdicts they promise.

Each example is a user's system of real programs (sqlite-utils, Datasette, plain sqlite3
scripts) run with no change to their code; a scenario that must fail is checked to fail for
its reason, and only that one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results.report import Report
from harness.runs.run import run_scenario
from harness.runs.scenario import load_scenario

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(path: Path, out: Path) -> Report:
    scenario = load_scenario(path)
    return run_scenario(scenario, out_dir=out, base_dir=path.parent).report


def failed(report: Report) -> set[str]:
    return {c.name for r in report.repeats for c in r.checks if not c.ok}


def check(report: Report, name: str) -> dict[str, object]:
    return next(c for c in report.repeats[0].checks if c.name == name).model_dump()


def test_datasette_example_fails_naming_the_janitor_its_database_and_statement(
    tmp_path: Path,
) -> None:
    report = run(EXAMPLES / "datasette" / "scenario.toml", tmp_path)
    assert failed(report) == {"permissions"}
    permissions = check(report, "permissions")
    (violation,) = permissions["evidence"]["violations"]  # type: ignore[index]
    assert violation["process"] == "janitor"
    assert violation["databases"] == ["items"]
    assert violation["statement"] == "DELETE FROM items WHERE created < ?"
    assert "janitor (role janitor) wrote items (items.db)" in str(permissions["summary"])
    metrics = report.repeats[0].metrics
    # Every process was seen from inside, Datasette included, and the clients got answers.
    assert metrics.observed is not None
    assert all(p.probe_started for p in metrics.observed.values())
    assert metrics.observed["api"].connections > 0
    assert metrics.groups["load-clients"].ok > 0


def test_two_services_sharing_one_file_fail_the_contention_check(tmp_path: Path) -> None:
    report = run(EXAMPLES / "shared-file" / "shared.toml", tmp_path)
    assert failed(report) == {"contention"}
    contention = check(report, "contention")
    assert contention["evidence"]["busy_events"] > 0  # type: ignore[index]


def test_the_same_services_in_separate_files_pass_with_every_process_observed(
    tmp_path: Path,
) -> None:
    report = run(EXAMPLES / "shared-file" / "separate.toml", tmp_path)
    assert failed(report) == set()
    assert all(c.warning is None for c in report.repeats[0].checks)
    metrics = report.repeats[0].metrics
    assert metrics.observed is not None
    assert {n: p.busy for n, p in metrics.observed.items()} == {"orders": 0, "risk": 0}
    assert all(p.writes > 0 for p in metrics.observed.values())
