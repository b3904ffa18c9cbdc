"""A machine-dependent expectation not judged is shown as a warning, never as a pass or a fail."""

from __future__ import annotations

from typing import Any

from harness.results.html import render_html
from harness.results.markdown import run_markdown
from tests.fixtures.reports import as_report, make_report

WARNING = "not judged: the machine was short of CPU (idle processes woke 40 ms late at p99)"


def _warned_report() -> dict[str, Any]:
    report = make_report(repeats=1)
    check = {
        "name": "expect.min_api_requests_per_s",
        "ok": True,
        "summary": f"min_api_requests_per_s: 80 (expected >= 95) [machine-dependent; {WARNING}]",
        "evidence": {"measured": 80.0, "limit": 95.0},
        "warning": WARNING,
    }
    report["repeats"][0]["checks"].append(check)
    return report


def test_the_markdown_summary_marks_the_expectation_as_a_warning() -> None:
    text = run_markdown(as_report(_warned_report()))
    row = next(line for line in text.splitlines() if "min_api_requests_per_s" in line)
    assert "warning in 1/1 (not judged)" in row and "✅" not in row


def test_the_html_page_marks_the_expectation_as_a_warning() -> None:
    page = render_html(as_report(_warned_report()))
    assert '<td class="warn">⚠ warning (machine-dependent, not judged) 80 (≥ 95)</td>' in page
