"""Markdown summaries of a run and of a comparison, for CI job pages and pull requests.

`append_step_summary` appends to the file named by `$GITHUB_STEP_SUMMARY` (GitHub Actions shows
it on the job's page); `splitdb run`, `splitdb report --markdown` and `splitdb compare` call it.
Every verdict is spelled out in words next to its symbol, so the text reads without colour.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.results.comparison import Comparison, GroupResult, MetricResult, Verdict, result_line
from harness.results.report import CheckResult, Report
from harness.results.samples import metric_sets, variants
from harness.results.stats import median
from harness.results.units import number, percent, quantities, quantity

STEP_SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"

_MARKS = {
    Verdict.BETTER: "✅ better",
    Verdict.WORSE: "❌ worse",
    Verdict.NOISE: "⚪ within noise",
    Verdict.FEW: "❔ too few samples",
    Verdict.ZERO: "✅ zero",
    Verdict.MISSING: "⚪ not on both sides",
}


def _cell(text: Any) -> str:
    # A pipe would end the cell and a newline the row.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _checks_rows(report: Report) -> list[list[str]]:
    by_name: dict[str, list[tuple[str, CheckResult]]] = {}
    for repeat in report.repeats:
        for check in repeat.checks:
            by_name.setdefault(check.name, []).append((repeat.label, check))
    rows = []
    for name, found in by_name.items():
        failed = [(label, c) for label, c in found if not c.ok]
        if failed:
            label, check = failed[0]
            result = f"❌ FAILED in {len(failed)}/{len(found)}"
            summary = f"{label}: {check.summary}"
        elif warned := [(label, c) for label, c in found if c.warning]:
            label, check = warned[0]
            result = f"⚠️ warning in {len(warned)}/{len(found)} (not judged)"
            summary = f"{label}: {check.summary}"
        else:
            result = f"✅ ok in {len(found)}/{len(found)}"
            summary = found[0][1].summary
        rows.append([f"`{name}`", result, summary])
    return rows


def _metric_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of key metrics: per variant, the median and each repeat's value."""
    sets, names = metric_sets(report)
    arms = list(sets)
    rows = []
    for name in names:
        row = [f"`{name}`"]
        for one in sets.values():
            samples = one.get(name)
            if samples is None or not samples.values:
                row.append("-")
                continue
            unit, values = samples.metric.unit, samples.values
            top = max(values, key=abs)
            cell = quantity(median(values), unit, scale_by=top)
            if len(values) > 1:
                cell += f" ({quantities(values, unit)})"
            row.append(cell)
        rows.append(row)
    header = ["metric", *("median (each repeat)" if v is None else f"{v}" for v in arms)]
    return header, rows


def run_markdown(report: Report) -> str:
    """A run's verdict, its checks (one row per check over all repeats) and key metrics."""
    scenario = report.scenario
    env = report.environment
    ok = report.verdict.ok
    arms = [v for v in variants(report) if v is not None]
    shape = f"{len(report.repeats)} repeat(s) of {number(scenario.duration or 0)} s" + (
        f" over {len(arms)} variants ({', '.join(arms)})" if arms else ""
    )
    lines = [
        f"### {'✅' if ok else '❌'} splitdb run `{scenario.name}`: {'PASS' if ok else 'FAIL'}",
        "",
        f"{scenario.description or ''} ({shape}; run `{report.run_id}`, "
        f"{number(report.wall_s)} s wall, on {env.hostname} with "
        f"{env.cpu_count} CPUs, git `{env.git_commit}`)",
        "",
    ]
    lines += _table(["check", "result", "summary"], _checks_rows(report))
    if report.claims:
        lines += ["", "Claims:", ""]
        if any(c.postgres is not None for c in report.claims):
            lines += _table(
                ["claim", "verdict (SQLite seed layout)", "on PostgreSQL"],
                [
                    [c.claim, c.verdict, c.postgres.verdict if c.postgres else "-"]
                    for c in report.claims
                ],
            )
        else:
            lines += _table(["claim", "verdict"], [[c.claim, c.verdict] for c in report.claims])
    header, rows = _metric_rows(report)
    if rows:
        lines += ["", "Key metrics (median over repeats, each repeat in brackets):", ""]
        lines += _table(header, rows)
    return "\n".join(lines) + "\n"


def _result_row(r: MetricResult) -> list[str]:
    verdict = _MARKS[r.verdict]
    if r.fails:
        verdict += " — **FAILS**" + (
            "" if r.metric.must_be_zero else f" (threshold {number(r.threshold_pct or 0)}%)"
        )
    noise = "" if r.noise_pct is None else f"±{r.noise_pct:.1f}%"
    p = "" if r.p_value is None else (f"{r.p_value:.2g}" if r.p_value >= 0.001 else "<0.001")
    return [
        f"`{r.name}`",
        quantity(r.base_value, r.metric.unit, scale_by=r.new_value),
        quantity(r.new_value, r.metric.unit, scale_by=r.base_value),
        "exact" if r.metric.must_be_zero else percent(r.change_pct),
        noise,
        "" if r.floor_pct is None else f"{r.floor_pct:g}%",
        p,
        verdict,
        r.method,
    ]


def _group_markdown(group: GroupResult) -> list[str]:
    lines = ["", f"#### {group.title}: {group.sizes}", ""]
    lines += [f"> ⚠️ {w}" for w in group.warnings]
    if group.warnings:
        lines.append("")
    shown = [r for r in group.results if not (r.metric.must_be_zero and r.verdict is Verdict.ZERO)]
    header = ["metric", "base", "new", "change", "noise", "floor", "p", "verdict", "method"]
    lines += _table(header, [_result_row(r) for r in shown])
    zero = len(group.results) - len(shown)
    if zero:
        lines += ["", f"{zero} counts that must be zero (failed checks, leaks, ...) are zero."]
    lines += [
        "",
        "<details><summary>inputs</summary>",
        "",
        *[f"- BASE `{s}`" for s in group.base_sources],
        *[f"- NEW `{s}`" for s in group.new_sources],
        "",
        "</details>",
    ]
    return lines


def comparison_markdown(comparison: Comparison) -> str:
    """A comparison: result, method, warnings, and one table per scenario compared."""
    failures = sum(len(g.failures) for g in comparison.groups)
    head = (
        f"❌ splitdb compare: FAIL ({failures} worse past threshold)"
        if comparison.failed
        else "✅ splitdb compare: ok"
    )
    lines = [f"### {head}", "", f"Noise test: {comparison.settings.method}."]
    if comparison.warnings:
        lines.append("")
        lines += [f"> ⚠️ {w}" for w in comparison.warnings]
    for group in comparison.groups:
        lines += _group_markdown(group)
    lines += ["", result_line(comparison)]
    return "\n".join(lines) + "\n"


def append_step_summary(text: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append `text` to the file `$GITHUB_STEP_SUMMARY` names; None when it is not set."""
    target = (os.environ if environ is None else environ).get(STEP_SUMMARY_VARIABLE)
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
        handle.write("\n")
    return path
