"""The benchmark gate's verdict: the base's pooled runs against the head's, by compare's rule.

`splitdb bench` (harness/bench/) measures the base revision and the head in turns and leaves a
gate directory:

    <gate>/gate.json                                  what was measured (sides, rounds, order)
    <gate>/<side>/round-<n>/micro.json                pytest --benchmark-json of tests/benchmarks
    <gate>/<side>/round-<n>/scenario/<run>/report.json  the benchmark scenario's run
    <gate>/summary.md                                 the verdict, as printed

for side in base and head. Each side's rounds pool, as `splitdb compare BASE... NEW...` pools
several inputs per side (benchmark rounds; one repeat per scenario run), and compare's rule
decides: a metric is worse when the rank test gives p <= alpha and its median moved past its
floor, and it fails the gate when worse past its threshold. The floors that fit here are the
gate's own (`tests/benchmarks/gate-floors.toml`, harness/results/pair_floors.py): how far the
pooled medians of two interleaved sides of unchanged code drift apart, not how far separate runs
do.

One rule is the gate's own: a scenario metric the base measured in enough repeats and the head
did not (its bot committed nothing, say) is lost, and fails the gate. compare shows such a metric
as "not on both sides", which a gate must not read as a pass. A benchmark only on one side (one
added, removed or renamed) is shown and not judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.results.compare import compare_paths, needed_samples
from harness.results.comparison import Comparison, Settings, result_line
from harness.results.markdown import comparison_markdown

SIDES = ("base", "head")
GATE_FILE = "gate.json"
SUMMARY_FILE = "summary.md"


def gate_inputs(gate_dir: Path) -> dict[str, list[Path]]:
    """Each side's inputs in a gate directory, in round order: benchmark files and run dirs."""
    found: dict[str, list[Path]] = {}
    for side in SIDES:
        rounds = sorted(
            (gate_dir / side).glob("round-*"), key=lambda p: int(p.name.partition("-")[2] or 0)
        )
        paths: list[Path] = []
        for round_dir in rounds:
            micro = round_dir / "micro.json"
            if micro.is_file():
                paths.append(micro)
            paths += sorted(p.parent for p in round_dir.glob("scenario/*/report.json"))
        found[side] = paths
    return found


@dataclass(frozen=True)
class GateResult:
    """The comparison of the pooled sides, and the scenario metrics the head lost.

    `lost` names each metric the base measured in at least the repeats the rank test needs and
    the head in fewer, with its counts. The gate fails when a metric is worse past its threshold
    or one is lost.
    """

    comparison: Comparison
    lost: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return self.comparison.failed or bool(self.lost)

    def result_line(self) -> str:
        line = result_line(self.comparison)
        if not self.lost:
            return line
        lost = "not measured on the head: " + "; ".join(self.lost)
        if not self.comparison.failed:
            return f"result: FAIL, {lost}"
        return f"{line}; {lost}"


def lost_metrics(comparison: Comparison) -> tuple[str, ...]:
    """Scenario metrics with enough samples in BASE and too few in NEW ('name (5 -> 0 repeats)')."""
    needed = needed_samples(comparison.settings.alpha)
    lost = []
    for group in comparison.groups:
        if group.kind != "scenario":
            continue
        for r in group.results:
            if r.metric.must_be_zero or r.base.count < needed or r.new.count >= needed:
                continue
            lost.append(f"{r.name} ({r.base.count} -> {r.new.count} repeats)")
    return tuple(lost)


def judge(base: Sequence[Path], head: Sequence[Path], settings: Settings) -> GateResult:
    """Compare the pooled base inputs with the pooled head inputs; see the module doc."""
    comparison = compare_paths(base, head, settings)
    return GateResult(comparison, lost_metrics(comparison))


def gate_markdown(result: GateResult, *, title: str, notes: Sequence[str] = ()) -> str:
    """The gate's summary: its verdict and what it compared, then compare's tables."""
    mark = "❌" if result.failed else "✅"
    lines = [f"## {mark} splitdb bench: {'FAIL' if result.failed else 'ok'}: {title}", ""]
    lines += [f"- {note}" for note in notes]
    if result.lost:
        lines += [
            f"- ❌ **lost on the head** (measured on the base only): `{m}`" for m in result.lost
        ]
    if notes or result.lost:
        lines.append("")
    lines.append(comparison_markdown(result.comparison).rstrip("\n"))
    if result.lost:
        lines += ["", result.result_line()]
    return "\n".join(lines) + "\n"


def failure_markdown(failure: str, *, title: str, notes: Sequence[str] = ()) -> str:
    """The summary of a gate that stopped before it could compare: `failure` says where and why."""
    lines = [f"## ❌ splitdb bench: FAIL: {title}", ""]
    lines += [f"- {note}" for note in notes]
    lines += ["", f"result: FAIL, {failure}"]
    return "\n".join(lines) + "\n"
