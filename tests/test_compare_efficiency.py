"""Work per tick in compare: a change that keeps throughput but does far more work is caught."""

from __future__ import annotations

from pathlib import Path

from harness.compare import compare_paths
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
