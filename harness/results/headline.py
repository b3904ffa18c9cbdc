"""The one line of figures `splitdb run` prints per repeat: what a user came to measure.

The same numbers as the report (`bot.ticks_per_s`, the API groups' answered requests per second
and response p99, `analysis_lag.p99_s`), formatted the way the HTML page writes them.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.results.report import BotMetrics, GroupMetrics, Metrics
from harness.results.units import number


def headline(metrics: Metrics) -> str:
    """'4,760 ticks/s committed (302 per commit); API 93.8 req/s, p99 25 ms; ...'.

    A run of the user's own processes leads with what the probe counted in them, and leaves
    out the reference processes' figures when none of them ran.
    """
    user = metrics.observed is not None
    parts = [_observed(metrics)] if user else []
    if not user or metrics.bot.ticks_per_s:
        parts.append(_bot(metrics.bot))
    parts.append(_api(metrics.groups))
    readers = [g for g in metrics.groups.values() if g.kind == "reader"]
    if readers:
        parts.append(f"SQL readers {number(sum(g.ok_per_s or 0.0 for g in readers))} reads/s")
    lag = metrics.analysis_lag.p99_s
    if not user or lag is not None:
        parts.append(
            "analysis lag not measured" if lag is None else f"analysis lag p99 {number(lag)} s"
        )
    return "; ".join(parts)


def _observed(metrics: Metrics) -> str:
    """'observed in 2 of 3 processes: 1,204 writes, 35 busy/locked'."""
    observed = metrics.observed or {}
    seen = [p for p in observed.values() if p.probe_started]
    writes = sum(p.writes for p in seen)
    busy = sum(p.busy for p in seen)
    per_s = f" ({number(writes / metrics.load_s)}/s)" if metrics.load_s else ""
    return (
        f"observed in {len(seen)} of {len(observed)} processes: {number(writes)} writes"
        f"{per_s}, {number(busy)} busy/locked"
    )


def _bot(bot: BotMetrics) -> str:
    rate = bot.ticks_per_s
    if rate is None:
        return "no bot figures"
    text = f"{number(rate)} ticks/s committed"
    per_commit = bot.rows_per_commit
    return text if per_commit is None else f"{text} ({number(per_commit)} per commit)"


def _api(groups: Mapping[str, GroupMetrics]) -> str:
    api = [g for g in groups.values() if g.kind in ("api", "http")]
    if not api:
        return "no API load"
    rate = sum(g.ok_per_s or 0.0 for g in api)
    p99s = [g.response.p99_ms for g in api if g.response and g.response.p99_ms is not None]
    if not p99s:
        return f"API {number(rate)} req/s"
    # Several API groups: the worst group's p99, since a user feels the slowest.
    return f"API {number(rate)} req/s, p99 {number(max(p99s))} ms"
