"""Markdown summaries: a run and a comparison read as tables, and land in the CI job summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.results.compare import compare_paths
from harness.results.markdown import append_step_summary, comparison_markdown, run_markdown
from tests.fixtures.reports import as_report, make_report, write_report


def _table_rows(markdown: str, first_cell: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith(f"| {first_cell}")]


def test_run_summary_has_verdict_checks_and_key_metrics() -> None:
    report = make_report(repeats=3, metrics={"bot.ticks_per_s": [5000.0, 5100.0, 4900.0]})
    text = run_markdown(as_report(report))
    assert text.startswith("### ✅ splitdb run `default`: PASS")
    assert "| `durability` | ✅ ok in 3/3 |" in text
    (ticks,) = _table_rows(text, "`bot.ticks_per_s`")
    assert ticks == "| `bot.ticks_per_s` | 5,000 ticks/s (5,000 · 5,100 · 4,900 ticks/s) |"


def test_run_summary_names_the_repeat_where_a_check_failed() -> None:
    report = make_report(repeats=3, failed={"durability": [2]})
    text = run_markdown(as_report(report))
    assert text.startswith("### ❌ splitdb run `default`: FAIL")
    (row,) = _table_rows(text, "`durability`")
    assert "❌ FAILED in 1/3" in row and "repeat 2: durability failed in repeat 2" in row


def test_run_summary_has_a_column_per_variant_and_the_claims() -> None:
    report = make_report(repeats=1, variants=["seed", "legacy"])
    report["claims"] = [{"claim": "No more database locking", "verdict": "holds"}]
    text = run_markdown(as_report(report))
    assert "| metric | seed | legacy |" in text
    assert "| No more database locking | holds |" in text


def test_claims_judged_on_postgres_get_a_column_of_their_own() -> None:
    report = make_report(repeats=1, variants=["seed", "legacy", "postgres"])
    report["claims"] = [
        {
            "claim": "Access permissions verified",
            "verdict": "holds only under stated conditions",
            "postgres": {"verdict": "holds"},
        },
        {"claim": "Better scalability", "verdict": "not tested in this run"},
    ]
    text = run_markdown(as_report(report))
    assert "| claim | verdict (SQLite seed layout) | on PostgreSQL |" in text
    assert "| Access permissions verified | holds only under stated conditions | holds |" in text
    assert "| Better scalability | not tested in this run | - |" in text


def test_table_cells_escape_pipes() -> None:
    report = make_report(repeats=1)
    report["repeats"][0]["checks"][0]["summary"] = "a | b"
    assert "a \\| b" in run_markdown(as_report(report))


def test_comparison_summary_says_which_metric_failed_and_how_it_was_tested(
    tmp_path: Path,
) -> None:
    base = [5000.0, 5010.0, 4990.0, 5005.0, 4995.0]
    a = write_report(make_report(repeats=5, metrics={"bot.ticks_per_s": base}), tmp_path / "a")
    slow = [v / 2 for v in base]
    b = write_report(make_report(repeats=5, metrics={"bot.ticks_per_s": slow}), tmp_path / "b")
    text = comparison_markdown(compare_paths([a], [b]))
    assert text.startswith("### ❌ splitdb compare: FAIL (1 worse past threshold)")
    assert "Noise test: each row names its statistic and test" in text
    (row,) = _table_rows(text, "`bot.ticks_per_s`")
    assert "-50.0%" in row and "❌ worse — **FAILS** (threshold 10%)" in row
    assert "median, Mann-Whitney U on 5/5 repeats" in row
    (p50,) = _table_rows(text, "`bot.commit_latency.p50_ms`")
    assert "⚪ within noise" in p50
    assert "- BASE `" in text


def test_step_summary_is_appended_only_when_the_variable_is_set(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    assert append_step_summary("x", {}) is None
    assert append_step_summary("first", {"GITHUB_STEP_SUMMARY": str(target)}) == target
    append_step_summary("second\n", {"GITHUB_STEP_SUMMARY": str(target)})
    assert target.read_text() == "first\n\nsecond\n\n"


def test_report_and_compare_commands_append_to_the_step_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    a = write_report(make_report(), tmp_path / "a")
    b = write_report(make_report(), tmp_path / "b")
    assert main(["report", str(a.parent), "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("### ✅ splitdb run `default`: PASS")
    assert main(["compare", str(a), str(b), "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("### ✅ splitdb compare: ok")
    text = summary.read_text()
    assert text.index("splitdb run `default`") < text.index("splitdb compare: ok")
