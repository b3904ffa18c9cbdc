"""Work per tick in compare: a change that keeps throughput but does far more work is caught."""

from __future__ import annotations

from pathlib import Path

from harness.results.compare import compare_paths
from tests.fixtures.reports import make_report, write_report


def test_tiny_batches_at_the_same_throughput_fail_the_comparison(tmp_path: Path) -> None:
    same_rate = [5000.0, 4990.0, 5010.0, 5005.0, 4995.0]
    base = make_report(
        repeats=5,
        metrics={
            "bot.ticks_per_s": same_rate,
            "bot.rows_per_commit": [250.0, 248.0, 252.0, 251.0, 249.0],
            "bot.cpu_us_per_tick": [46.0, 45.0, 47.0, 46.5, 45.5],
        },
    )
    new = make_report(
        repeats=5,
        metrics={
            "bot.ticks_per_s": same_rate,
            "bot.rows_per_commit": [1.0, 1.0, 1.0, 1.0, 1.0],
            "bot.cpu_us_per_tick": [83.0, 84.0, 82.0, 85.0, 83.5],
        },
    )
    comparison = compare_paths(
        [write_report(base, tmp_path / "base")], [write_report(new, tmp_path / "new")]
    )
    (group,) = comparison.groups
    verdicts = {r.metric.name: r.verdict for r in group.results}
    assert verdicts["bot.ticks_per_s"] == "within noise"
    assert verdicts["bot.rows_per_commit"] == "worse"
    assert verdicts["bot.cpu_us_per_tick"] == "worse"
    assert comparison.failed


def test_a_stall_of_the_api_fails_the_comparison_through_open_loop_latency(
    tmp_path: Path,
) -> None:
    """Closed-loop service time barely moves when the API stalls for 2 s; the open-loop
    response time (from each request's scheduled send) moves past any run-to-run floor."""
    service = [4.9, 5.1, 5.0, 4.8, 5.2]
    base = make_report(
        repeats=5,
        metrics={
            "groups.load-clients.latency.p99_ms": service,
            "groups.load-clients.response.p99_ms": [5.3, 5.6, 5.4, 5.2, 5.9],
        },
    )
    new = make_report(
        repeats=5,
        metrics={
            "groups.load-clients.latency.p99_ms": [5.9, 6.0, 5.8, 6.1, 5.7],
            "groups.load-clients.response.p99_ms": [1890.0, 1950.0, 2010.0, 1920.0, 1985.0],
        },
    )
    comparison = compare_paths(
        [write_report(base, tmp_path / "base")], [write_report(new, tmp_path / "new")]
    )
    (group,) = comparison.groups
    verdicts = {r.metric.name: (r.verdict, r.fails) for r in group.results}
    assert verdicts["groups.load-clients.latency.p99_ms"][0] == "within noise"
    assert verdicts["groups.load-clients.response.p99_ms"] == ("worse", True)
    assert comparison.failed
