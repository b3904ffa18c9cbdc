"""A run report as one self-contained HTML page (what `splitdb report` and `splitdb run` write).

The page needs no network: styles are inline, charts are SVG drawn here (`harness.results.svg`),
there is no script. It shows the verdict, key metrics per repeat, the claims (when the report has a
`claims` section), every check with its evidence folded, the expectations, and per repeat:
throughput, load operations, busy errors and WAL size over time, latency distributions, analysis
lag and process resources. Each chart has a data table under it for readers who cannot see it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from harness.atomic import write_atomically
from harness.results.report import Latency, Repeat, Report
from harness.results.samples import metric_sets
from harness.results.stats import median
from harness.results.svg import Mark, Series, bar_chart, line_chart
from harness.results.units import mebibytes, number, quantities, quantity

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1a1a1a;
  font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial,
  sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 24px 64px; }
header.top { background: #fff; border: 1px solid #d9dce1; border-radius: 8px; padding: 18px 22px; }
.kicker { margin: 0; color: #555; font-size: 13px; text-transform: uppercase;
  letter-spacing: .06em; }
h1 { margin: 4px 0 6px; font-size: 26px; display: flex; align-items: center; gap: 12px;
  flex-wrap: wrap; }
h2 { margin: 32px 0 10px; font-size: 20px; border-bottom: 2px solid #d9dce1; padding-bottom: 4px; }
h3 { margin: 20px 0 8px; font-size: 16px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 14px;
  font-weight: 700; border: 2px solid; }
.pass { color: #0b6b2f; border-color: #0b6b2f; background: #e8f5ec; }
.fail { color: #a11b1b; border-color: #a11b1b; background: #fbeaea; }
.neutral { color: #444; border-color: #888; background: #f0f0f0; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr));
  gap: 4px 18px; margin: 12px 0 0; }
.facts div { font-size: 13px; } .facts dt { color: #555; }
.facts dd { margin: 0; overflow-wrap: anywhere; }
nav.toc { margin: 14px 0 0; font-size: 14px; } nav.toc a { margin-right: 14px; }
a { color: #0b57a4; }
table { border-collapse: collapse; background: #fff; width: 100%; margin: 6px 0 12px;
  font-size: 14px; }
th, td { border: 1px solid #d9dce1; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #eef0f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.dir { color: #444; white-space: nowrap; font-size: 13px; }
td.ok { color: #0b6b2f; font-weight: 600; white-space: nowrap; }
td.bad { color: #a11b1b; font-weight: 700; white-space: nowrap; }
td.warn { color: #8a5a00; font-weight: 700; white-space: nowrap; }
td.cond { color: #7a5300; font-weight: 600; }
td table { margin: 0; font-size: 12px; width: auto; }
td th, td td { padding: 2px 6px; }
code { font-size: 13px; }
td > code { white-space: nowrap; }
td ul { margin: 0; padding-left: 18px; }
pre { background: #f7f7f9; border: 1px solid #e1e3e8; padding: 8px; overflow-x: auto;
  font-size: 12px; max-height: 420px; margin: 6px 0; }
details > summary { cursor: pointer; color: #0b57a4; white-space: nowrap; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr));
  gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #d9dce1; border-radius: 8px;
  padding: 8px; }
figure svg { width: 100%; height: auto; display: block; }
figure details { font-size: 13px; margin: 4px 4px 0; }
figure table { font-size: 12px; }
.note { color: #555; font-size: 14px; }
"""


def _e(value: Any) -> str:
    return escape(str(value))


def _table(
    header: Sequence[str], rows: Iterable[Sequence[str]], *, caption: str | None = None
) -> str:
    """Rows are HTML already (cells escaped by the caller); header cells are escaped here."""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: Any, cls: str = "") -> str:
    return f'<td class="{cls}">{_e(value)}</td>' if cls else f"<td>{_e(value)}</td>"


def _ok_cell(ok: bool) -> str:
    return '<td class="ok">✓ ok</td>' if ok else '<td class="bad">✗ FAIL</td>'


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, Mapping | list)


def _value_html(value: Any) -> str:
    """Any JSON value, readable: a mapping of flat mappings as a small table, other mappings
    as 'key: value' lines, lists as bullets."""
    if (
        isinstance(value, Mapping)
        and value
        and all(isinstance(v, Mapping) and all(map(_is_scalar, v.values())) for v in value.values())
    ):
        columns: list[str] = []
        for inner in value.values():
            columns += [str(k) for k in inner if str(k) not in columns]
        rows = [
            [f'<th scope="row">{_e(k)}</th>']
            + [f'<td class="num">{_value_html(inner.get(c))}</td>' for c in columns]
            for k, inner in value.items()
        ]
        return _table(["", *columns], rows)
    if isinstance(value, Mapping):
        items = "".join(f"<div><b>{_e(k)}</b>: {_value_html(v)}</div>" for k, v in value.items())
        return items or "-"
    if isinstance(value, list):
        if all(map(_is_scalar, value)) and sum(len(str(v)) for v in value) < 60:
            return _e(", ".join(str(v) for v in value)) or "-"
        return "<ul>" + "".join(f"<li>{_value_html(v)}</li>" for v in value) + "</ul>"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _e(number(value))
    return _e(value)


def _json_details(label: str, value: Any) -> str:
    text = json.dumps(value, indent=2, default=str)
    return f"<details><summary>{_e(label)}</summary><pre>{_e(text)}</pre></details>"


def _data_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return ""
    table = _table(header, ([_td(c, "num") for c in row] for row in rows))
    return f"<details><summary>Data table</summary>{table}</details>"


def _figure(svg: str, data: str = "") -> str:
    return f"<figure>{svg}{data}</figure>"


# --- sections -------------------------------------------------------------------------------


def _header(report: Report, sections: Sequence[tuple[str, str]]) -> str:
    scenario = report.scenario
    env = report.environment
    ok = report.verdict.ok
    badge = (
        '<span class="badge pass">✓ PASS</span>' if ok else '<span class="badge fail">✗ FAIL</span>'
    )
    failed = report.verdict.failed
    facts = [
        ("run", report.run_id),
        ("started (UTC)", report.created[:19].replace("T", " ")),
        ("wall clock", f"{number(report.wall_s or 0)} s"),
        ("repeats", f"{len(report.repeats)} x {number(scenario.duration or 0)} s of load"),
        ("topology", scenario.topology),
        ("seed", scenario.seed),
        ("git commit", _short_commit(env.git_commit)),
        ("machine", f"{env.hostname}, {env.cpu_count} CPUs"),
    ]
    dl = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    failed_html = "<p><b>Failed:</b> " + _e("; ".join(failed)) + "</p>" if failed else ""
    toc = "".join(f'<a href="#{_e(anchor)}">{_e(label)}</a>' for anchor, label in sections)
    return (
        f'<header class="top"><p class="kicker">splitdb run report · format version '
        f"{_e(report.version)}</p>"
        f"<h1>{_e(scenario.name)} {badge}</h1>"
        f"<p>{_e(scenario.description or '')}</p>{failed_html}"
        f'<dl class="facts">{dl}</dl><nav class="toc" aria-label="Contents">{toc}</nav></header>'
    )


def _short_commit(commit: str | None) -> str:
    if commit is None:
        return "unknown"
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def _key_metrics(report: Report) -> str:
    sets, names = metric_sets(report)
    arms = list(sets)
    rows = []
    for name in names:
        metric = next(one[name].metric for one in sets.values() if name in one)
        better = "↑ higher" if metric.better == "higher" else "↓ lower"
        cells = [f"<td><code>{_e(name)}</code></td>", _td(better, "dir")]
        for one in sets.values():
            values = one[name].values if name in one else []
            if not values:
                cells.append(_td("-", "num"))
                continue
            top = max(values, key=abs)
            middle = quantity(median(values), metric.unit, scale_by=top)
            spread = ""
            if len(values) > 1:
                spread = f"<br><small>{_e(quantities(values, metric.unit))}</small>"
            cells.append(f'<td class="num">{_e(middle)}{spread}</td>')
        rows.append(cells)
    counts = {v: sum(1 for r in report.repeats if r.variant == v) for v in arms}
    columns = [
        f"{'median' if v is None else v} ({counts[v]} repeat{'s' * (counts[v] != 1)})" for v in arms
    ]
    return (
        '<section id="metrics"><h2>Key metrics</h2>'
        '<p class="note">The metrics <code>splitdb compare</code> compares by default: the median '
        "over repeats"
        + (" of each variant" if arms != [None] else "")
        + ", and each repeat's value below it.</p>"
        + _table(["metric", "better", *columns], rows)
        + "</section>"
    )


def _claim_mark(verdict: str) -> tuple[str, str]:
    """CSS class and a symbol for a claim's verdict; the verdict's words are always shown too."""
    word = verdict.lower()
    if word in ("holds", "pass", "passed", "ok", "supported", "true"):
        return "ok", "✓ "
    if word.startswith(("fail", "refuted", "violated", "false", "broken")):
        return "bad", "✗ "
    if word.startswith(("holds only", "conditional", "partly")):
        return "cond", "◐ "
    return "", "○ "


def _claims(report: Report) -> str:
    if not report.claims:
        return ""
    rows = []
    server = any(claim.postgres is not None for claim in report.claims)
    for claim in report.claims:
        cls, mark = _claim_mark(claim.verdict)
        row = [
            f"<td>{_value_html(claim.claim)}</td>",
            f'<td class="{cls}">{_e(mark)}{_value_html(claim.verdict)}</td>',
            f"<td>{_value_html(claim.figures)}</td>",
            f"<td>{_value_html(claim.conditions)}</td>",
        ]
        if server:
            on = claim.postgres
            if on is None:
                row.append(_td("-"))
            else:
                cls, mark = _claim_mark(on.verdict)
                row.append(
                    f'<td class="{cls}">{_e(mark)}{_value_html(on.verdict)}'
                    f"{_value_html(on.figures)}{_value_html(on.conditions)}</td>"
                )
        rows.append(row)
    header = ["claim", "verdict", "figures", "conditions"]
    return (
        '<section id="claims"><h2>Claims</h2>'
        + _table([*header, "on PostgreSQL"] if server else header, rows)
        + "</section>"
    )


def _checks(report: Report) -> str:
    repeats = report.repeats
    names: list[str] = []
    for repeat in repeats:
        for check in repeat.checks:
            if check.name not in names:
                names.append(check.name)
    rows = []
    for name in names:
        found = [r.check(name) for r in repeats]
        cells = [f"<td><code>{_e(name)}</code></td>"]
        cells += [_ok_cell(c.ok) if c is not None else _td("-") for c in found]
        # The summary shown is the first failure's, else the first repeat's.
        shown = next((c for c in found if c is not None and not c.ok), None) or next(
            c for c in found if c is not None
        )
        where = next(r for r, c in zip(repeats, found, strict=True) if c is shown)
        prefix = f"{where.label}: " if len(repeats) > 1 else ""
        cells.append(_td(prefix + shown.summary))
        evidence = {
            r.label: c.evidence for r, c in zip(repeats, found, strict=True) if c is not None
        }
        cells.append(f"<td>{_json_details('evidence', evidence)}</td>")
        rows.append(cells)
    header = ["check", *[r.label for r in repeats], "summary", "evidence"]
    return '<section id="checks"><h2>Checks</h2>' + _table(header, rows) + "</section>"


def _expectations(report: Report) -> str:
    repeats = report.repeats
    names: list[str] = []
    for repeat in repeats:
        names += [
            c.name for c in repeat.checks if c.name.startswith("expect.") and c.name not in names
        ]
    rows = []
    for name in names:
        cells = [f"<td><code>{_e(name.removeprefix('expect.'))}</code></td>"]
        for repeat in repeats:
            check = repeat.check(name)
            if check is None:
                cells.append(_td("-"))
                continue
            # An expectation's evidence is its measured value and its limit.
            measured, limit = check.evidence.get("measured"), check.evidence.get("limit")
            sign = "≤" if name.startswith("expect.max_") else "≥"
            text = "not measured" if measured is None else number(measured)
            if isinstance(limit, int | float):
                text += f" ({sign} {number(limit)})"
            ok = check.ok
            cls, mark = ("ok", "✓") if ok else ("bad", "✗ FAIL")
            if ok and check.warning:
                cls, mark = "warn", "⚠ warning (machine-dependent, not judged)"
            cells.append(f'<td class="{cls}">{_e(mark)} {_e(text)}</td>')
        rows.append(cells)
    body = (
        _table(["expectation", *[r.label for r in repeats]], rows)
        if rows
        else '<p class="note">No other [expect] thresholds.</p>'
    )
    return (
        '<section id="expectations"><h2>Expectations</h2>'
        '<p class="note">Each <code>[expect]</code> threshold: measured value (limit). '
        "<code>max_busy_events</code> is enforced by the contention check above.</p>"
        f"{body}</section>"
    )


def _fault_marks(repeat: Repeat) -> list[Mark]:
    return [Mark(f.at_s, f"{f.kind} {f.target}") for f in repeat.faults if f.at_s is not None]


def _series_points(values: Sequence[float], bucket_s: float) -> list[tuple[float, float]]:
    # Each bucket is plotted at its middle, as a rate per second.
    return [((i + 0.5) * bucket_s, v / bucket_s) for i, v in enumerate(values)]


def _rows_of(series: Sequence[Series], fmt: Callable[[float], str]) -> list[list[str]]:
    xs = sorted({x for s in series for x, _ in s.points})
    lookup = [dict(s.points) for s in series]
    return [[number(x), *[fmt(p[x]) if x in p else "-" for p in lookup]] for x in xs]


def _throughput_charts(repeat: Repeat, rid: str, marks: Sequence[Mark]) -> list[str]:
    series = repeat.metrics.series
    if series is None:
        return [
            '<p class="note">This report has no per-second series (it was written before '
            "splitdb recorded them), so there are no throughput or busy-error plots.</p>"
        ]
    bucket = float(series.bucket_s or 1.0)
    ticks = [
        Series("bot: ticks committed", _series_points(series.ticks_committed, bucket)),
        Series("agent: ticks analysed", _series_points(series.ticks_analysed, bucket)),
    ]
    ops = [
        Series(name, _series_points(values, bucket))
        for name, values in sorted(series.operations.items())
    ]
    busy = series.busy_errors
    out = [
        _figure(
            line_chart(
                chart_id=f"{rid}-ticks",
                title="Ticks per second: committed by the bot, analysed by the agent",
                x_label="time since the load started (s)",
                y_label="ticks per second",
                series=ticks,
                marks=marks,
                description=(
                    f"Ticks the bot acknowledged and ticks the agent folded, per {number(bucket)} "
                    "s bucket of the load window."
                ),
            ),
            _data_table(["t (s)", *(s.label for s in ticks)], _rows_of(ticks, number)),
        )
    ]
    out.append(
        _figure(
            line_chart(
                chart_id=f"{rid}-operations",
                title="Load operations per second, per load process",
                x_label="time since the load started (s)",
                y_label="operations per second",
                series=ops,
                marks=marks,
                description="Operations completed (ok or denied) by each load worker per second.",
            ),
            _data_table(["t (s)", *(s.label for s in ops)], _rows_of(ops, number)),
        )
    )
    bars = [(number(i * bucket), float(v) / bucket) for i, v in enumerate(busy)]
    total = sum(busy)
    out.append(
        _figure(
            bar_chart(
                chart_id=f"{rid}-busy",
                title=f"Busy/locked errors per second (total {number(total)})",
                x_label="second of the load (s, bucket start)",
                y_label="errors per second",
                bars=bars,
                colour="#D55E00",
                description=(
                    f"SQLITE_BUSY and SQLITE_LOCKED outcomes of every process per bucket; "
                    f"{number(total)} in all."
                ),
            ),
            _data_table(["t (s)", "errors/s"], [[b[0], number(b[1])] for b in bars]),
        )
    )
    return out


def _wal_chart(repeat: Repeat, rid: str, marks: Sequence[Mark]) -> str:
    samples = repeat.samples
    files = sorted({name for s in samples for name in s.wal_bytes})
    series = [
        Series(
            name,
            [(s.t_s, s.wal_bytes[name] / 1048576) for s in samples if name in s.wal_bytes],
        )
        for name in files
    ]
    return _figure(
        line_chart(
            chart_id=f"{rid}-wal",
            title="WAL file size over time, per database",
            x_label="time since the load started (s)",
            y_label="WAL size (MiB)",
            series=series,
            marks=marks,
            y_format=lambda v: f"{v:.2f} MiB",
            description="Size of each database's -wal file, sampled every 0.5 s.",
        ),
        _data_table(["t (s)", *files], _rows_of(series, lambda v: f"{v:.2f}")),
    )


def _bucket_label(bound_us: int) -> str:
    if bound_us >= 1_000_000:
        return f"≤{number(bound_us / 1e6)} s"
    if bound_us >= 1000:
        return f"≤{number(bound_us / 1000)} ms"
    return f"≤{bound_us} µs"


def _histogram_bars(histogram: Mapping[str, int]) -> list[tuple[str, float]]:
    counts = {int(k.removeprefix("le_")): int(v) for k, v in histogram.items()}
    if not counts:
        return []
    # Empty buckets between the first and last are drawn too, or the shape would lie.
    bound, last = min(counts), max(counts)
    bars = []
    while bound <= last:
        bars.append((_bucket_label(bound), float(counts.get(bound, 0))))
        bound *= 2
    return bars


def _latency_charts(repeat: Repeat, rid: str) -> list[str]:
    metrics = repeat.metrics
    found: list[tuple[str, str, Latency]] = []
    if metrics.bot.commit_latency.count:
        found.append(("bot-commit", "Bot commit latency", metrics.bot.commit_latency))
    for name, group in sorted(metrics.groups.items()):
        if group.latency.count:
            found.append((name, f"{name} ({group.kind}) latency", group.latency))
    out = []
    for key, label, latency in found:
        bars = _histogram_bars(latency.histogram_us)
        p50, p99 = latency.p50_ms, latency.p99_ms
        title = f"{label}: p50 {number(p50 or 0)} ms, p99 {number(p99 or 0)} ms"
        out.append(
            _figure(
                bar_chart(
                    chart_id=f"{rid}-latency-{key}",
                    title=title,
                    x_label="latency bucket (upper bound)",
                    y_label="operations",
                    bars=bars,
                    colour="#0072B2",
                    value_format=number,
                    description=(
                        f"Histogram of {latency.count} {label.lower()} samples in "
                        "power-of-two buckets; each bar counts the samples up to its bound."
                    ),
                ),
                _data_table(["bucket", "count"], [[b, number(c)] for b, c in bars]),
            )
        )
    return out


def _lag_chart(repeat: Repeat, rid: str) -> str:
    lag = repeat.metrics.analysis_lag
    bars = [
        (label, value * 1000)
        for label, value in (("p50", lag.p50_s), ("p99", lag.p99_s), ("max", lag.max_s))
        if value is not None
    ]
    return _figure(
        bar_chart(
            chart_id=f"{rid}-lag",
            title=(
                f"Analysis lag: {number(lag.samples)} acks measured, "
                f"{number(lag.uncovered)} never covered"
            ),
            x_label="statistic over the acks of the run",
            y_label="lag (ms)",
            bars=bars,
            colour="#009E73",
            value_format=lambda v: f"{number(v)} ms",
            description=(
                "Time from a bot ack to the first agent commit whose watermark covers it: "
                "median, 99th percentile and maximum."
            ),
        ),
        _data_table(["statistic", "lag (ms)"], [[b, number(v)] for b, v in bars]),
    )


def _resources(repeat: Repeat) -> str:
    metrics = repeat.metrics
    rows = [
        [
            f"<td><code>{_e(name)}</code></td>",
            _td(number(p.cpu_s), "num"),
            _td(number(p.peak_rss_mb), "num"),
            _td(", ".join(str(x) for x in p.pids)),
        ]
        for name, p in metrics.processes.items()
    ]
    wal = metrics.wal.max_bytes
    wal_rows = [[_td(name), _td(mebibytes(size), "num")] for name, size in sorted(wal.items())]
    return (
        "<h3>Processes</h3>"
        + _table(["process", "CPU (s, user+system)", "peak RSS (MB)", "pids"], rows)
        + (
            "<h3>Largest WAL per database</h3>" + _table(["file", "max size"], wal_rows)
            if wal_rows
            else ""
        )
    )


def _anchor(repeat: Repeat) -> str:
    variant = repeat.variant
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(variant or ""))
    return f"repeat-{safe + '-' if variant is not None else ''}{repeat.index}"


def _repeat(repeat: Repeat) -> str:
    rid = _anchor(repeat)
    marks = _fault_marks(repeat)
    faults = repeat.faults
    fault_text = (
        "Faults: " + "; ".join(f"{f.kind} {f.target} at {number(f.at_s or 0)} s" for f in faults)
        if faults
        else "No faults injected."
    )
    charts = [
        *_throughput_charts(repeat, rid, marks),
        _wal_chart(repeat, rid, marks),
        _lag_chart(repeat, rid),
        *_latency_charts(repeat, rid),
    ]
    variant = repeat.variant
    title = f"Repeat {repeat.index}" + (f" of variant {variant}" if variant is not None else "")
    return (
        f'<section id="{_e(rid)}"><h2>{_e(title)} (random seed {_e(repeat.seed)})'
        f'</h2><p class="note">{_e(fault_text)} Directory: <code>{_e(repeat.dir)}</code></p>'
        f'<div class="charts">{"".join(charts)}</div>{_resources(repeat)}</section>'
    )


def _environment(report: Report) -> str:
    env = report.environment
    rows = [
        [_td(k), f"<td>{_value_html(v)}</td>"]
        for k, v in env.model_dump(exclude={"packages"}).items()
    ]
    pkg_rows = [
        [_td(k), _td(v if v is not None else "not installed")] for k, v in env.packages.items()
    ]
    return (
        '<section id="environment"><h2>Environment</h2>'
        + _table(["key", "value"], rows)
        + "<h3>Packages</h3>"
        + _table(["package", "version"], pkg_rows)
        + "</section>"
    )


def _scenario(report: Report) -> str:
    scenario = report.scenario
    source = scenario.source
    body = (
        f"<details><summary>scenario file as run</summary><pre>{_e(source)}</pre></details>"
        if source
        else ""
    )
    return (
        '<section id="scenario"><h2>Scenario</h2>'
        + body
        + _json_details("validated settings (every default filled in)", scenario.settings)
        + "</section>"
    )


def render_html(report: Report) -> str:
    """The whole page for a loaded report (see `harness.results.report.load_report`)."""
    repeats = report.repeats
    sections = [("metrics", "Key metrics")]
    claims = _claims(report)
    if claims:
        sections.append(("claims", "Claims"))
    sections += [("checks", "Checks"), ("expectations", "Expectations")]
    sections += [(_anchor(r), r.label.capitalize()) for r in repeats]
    sections += [("environment", "Environment"), ("scenario", "Scenario")]
    verdict = "PASS" if report.verdict.ok else "FAIL"
    body = "".join(
        [
            _header(report, sections),
            _key_metrics(report),
            claims,
            _checks(report),
            _expectations(report),
            *(_repeat(r) for r in repeats),
            _environment(report),
            _scenario(report),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>splitdb report: {_e(report.scenario.name)} ({verdict})</title>"
        f"<style>{_CSS}</style></head><body><main>{body}</main></body></html>\n"
    )


def write_html(report: Report, path: Path) -> Path:
    """Render and write atomically (a browser never shows half a page); returns the path."""
    return write_atomically(Path(path), render_html(report))
