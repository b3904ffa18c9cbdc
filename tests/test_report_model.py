"""The typed report: files written by earlier code load, and write back exactly as they were.

`tests/fixtures/report-v1.json` is a version 1 report as `splitdb run scenarios/default.toml
--duration 3` wrote it before the report was a typed model; keep it unchanged, and add a file
per format version when REPORT_VERSION moves on.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ReportFormatError
from harness.results.compare import compare_paths, format_text
from harness.results.comparison import Verdict
from harness.results.html import render_html
from harness.results.markdown import run_markdown
from harness.results.report import Report, load_report, write_report
from harness.runs.run import run_scenario
from harness.runs.scenario import load_scenario, with_overrides
from tests.fixtures.reports import make_report

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "report-v1.json"

# Keys version 1 gained after its first reports were written: (where, key).
LATER_FIELDS = (
    ("", "variants"),
    ("repeat", "variant"),
    ("metrics", "series"),
    ("metrics", "machine"),
    ("bot", "commits_per_s"),
    ("bot", "rows_per_commit"),
    ("bot", "cpu_us_per_tick"),
    ("group", "workers"),
    ("group", "active_s"),
    ("group", "offered"),
    ("group", "offered_per_s"),
    ("group", "answered_fraction"),
    ("group", "response"),
    ("group", "stalls"),
    ("group", "longest_silence_ms"),
    ("group", "generator_wake_p99_ms"),
    ("check", "warning"),
)


def _fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def test_a_version_1_file_written_by_the_previous_code_loads() -> None:
    report = load_report(FIXTURE)
    assert isinstance(report, Report)
    assert report.version == 1 and report.verdict.ok
    (repeat,) = report.repeats
    assert repeat.metrics.bot.ticks_per_s == 4774.3
    assert repeat.metrics.groups["load-clients"].response is not None
    # That run's machine was short of CPU: its harness woke 58 ms late at p99.
    assert repeat.metrics.machine is not None and not repeat.metrics.machine.could_offer_load
    assert [c.name for c in repeat.checks][:3] == ["processes", "faults", "contention"]
    assert report.scenario.duration == 3.0 and report.scenario.topology == "seed"


def test_dump_of_load_is_the_file_byte_for_byte(tmp_path: Path) -> None:
    data = _fixture()
    assert Report.from_json(data).to_json() == data
    write_report(load_report(FIXTURE), tmp_path / "report.json")
    assert (tmp_path / "report.json").read_bytes() == FIXTURE.read_bytes()


def test_a_synthetic_report_round_trips() -> None:
    data = make_report(repeats=2, variants=["seed", "legacy"])
    assert Report.from_json(data).to_json() == data


def _strip_later_fields(data: dict[str, Any]) -> dict[str, Any]:
    old = copy.deepcopy(data)
    places: dict[str, list[dict[str, Any]]] = {"": [old], "repeat": old["repeats"]}
    places["metrics"] = [r["metrics"] for r in old["repeats"]]
    places["bot"] = [m["bot"] for m in places["metrics"]]
    places["group"] = [g for m in places["metrics"] for g in m["groups"].values()]
    places["check"] = [c for r in old["repeats"] for c in r["checks"]]
    for where, key in LATER_FIELDS:
        for node in places[where]:
            node.pop(key, None)
    return old


def test_a_report_from_before_the_later_version_1_fields_writes_back_without_them() -> None:
    old = _strip_later_fields(_fixture())
    report = Report.from_json(old)
    (repeat,) = report.repeats
    assert report.variants == [] and repeat.variant is None
    assert repeat.metrics.series is None and repeat.metrics.machine is None
    assert repeat.metrics.bot.rows_per_commit is None
    assert repeat.metrics.groups["load-clients"].response is None
    assert report.to_json() == old


def test_unknown_keys_are_kept() -> None:
    data = _fixture()
    data["from_a_newer_splitdb"] = {"x": 1}
    data["repeats"][0]["metrics"]["bot"]["new_figure"] = 2.5
    assert Report.from_json(data).to_json() == data


def test_a_missing_field_is_named_with_its_path() -> None:
    data = _fixture()
    del data["repeats"][0]["metrics"]["bot"]
    with pytest.raises(ReportFormatError, match=r"r\.json: .*repeats\[0\]\.metrics: field 'bot'"):
        Report.from_json(data, "r.json")


def test_a_mistyped_field_is_named_with_its_path() -> None:
    data = _fixture()
    data["repeats"][0]["metrics"]["groups"]["load-clients"]["ok"] = "many"
    with pytest.raises(ReportFormatError, match=r"groups\.load-clients: ok: .*'many'"):
        Report.from_json(data, "r.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "splitdb.trace"}, "not a splitdb report"),
        ({"version": 99}, "version 99 is not supported"),
        ({"version": "1"}, "version '1' is not supported"),
    ],
)
def test_another_schema_or_version_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ReportFormatError, match=message):
        Report.from_json({**_fixture(), **change}, "r.json")


def test_the_version_1_file_renders_and_compares(tmp_path: Path) -> None:
    report = load_report(FIXTURE)
    page = render_html(report)
    assert "format version 1</p><h1>default" in page
    assert 'id="repeat-1-ticks"' in page and "load-clients (api) latency" in page
    summary = run_markdown(report)
    assert summary.startswith("### ✅ splitdb run `default`: PASS")
    assert "| `durability` | ✅ ok in 1/1 | 24919 acknowledged ticks in 68 acks" in summary
    assert "| `bot.ticks_per_s` | 4,774 ticks/s |" in summary
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE, run / "report.json")
    comparison = compare_paths([FIXTURE], [run])
    (group,) = comparison.groups
    assert group.title == "scenario 'default'"
    # One repeat a side is too few for the rank test; the counts that must be zero are zero.
    verdicts = {r.name: r.verdict for r in group.results}
    assert verdicts["bot.ticks_per_s"] is Verdict.FEW
    assert verdicts["groups.load-clients.response.p99_ms"] is Verdict.FEW
    assert verdicts["checks.durability.failed"] is Verdict.ZERO
    assert not comparison.failed
    assert format_text(comparison).endswith("result: ok, no metric worse past its threshold")


def test_a_report_from_before_the_later_version_1_fields_renders() -> None:
    report = Report.from_json(_strip_later_fields(_fixture()))
    assert "has no per-second series" in render_html(report)
    assert "| `bot.ticks_per_s` | 4,774 ticks/s |" in run_markdown(report)


def _shape(value: Any, path: str = "") -> set[str]:
    """Key paths of a report: list items and the entries of name-keyed mappings collapse to
    `[]` and `*`; free-form parts (evidence, settings, topology) are not looked into."""
    if isinstance(value, list):
        return {path + "[]"}.union(*(_shape(v, path + "[]") for v in value))
    if not isinstance(value, dict):
        return {path}
    if path.rsplit(".", 1)[-1] in ("evidence", "settings", "topology", "figures"):
        return {path}
    named = ("groups", "processes", "max_bytes", "wal_bytes", "operations", "histogram_us")
    if path.rsplit(".", 1)[-1] in named:
        return {path + ".*"}.union(*(_shape(v, path + ".*") for v in value.values()))
    return {path}.union(*(_shape(v, f"{path}.{k}") for k, v in value.items()))


@pytest.mark.slow
def test_a_report_written_now_has_the_keys_of_the_version_1_file(tmp_path: Path) -> None:
    scenario = with_overrides(load_scenario(ROOT / "scenarios" / "default.toml"), {"duration": "2"})
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=ROOT / "scenarios")
    written = json.loads(result.path.read_text(encoding="utf-8"))
    assert _shape(written) == _shape(_fixture())
