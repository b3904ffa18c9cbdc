"""What `splitdb compare` found, as data: a verdict per metric, grouped per scenario.

`harness.results.compare` computes a `Comparison` (and prints it as text);
`harness.results.markdown` renders it for CI job pages. Both read these types, so neither imports
the other for them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from harness.results.samples import Metric, Samples
from harness.results.stats import DEFAULT_ALPHA
from harness.results.units import percent, quantity


class Verdict(StrEnum):
    """What a metric did from BASE to NEW."""

    BETTER = "better"
    WORSE = "worse"
    NOISE = "within noise"
    FEW = "too few samples"
    ZERO = "zero, as required"
    MISSING = "not on both sides"


@dataclass(frozen=True)
class Settings:
    """How to judge: significance level, smallest change that counts, thresholds per metric.

    `thresholds` maps a metric name or a glob pattern (`groups.*.latency.p99_ms`, `*`) to the
    regression in percent that fails the comparison; the exact name wins, then the pattern with
    the most literal characters, then the metric's own default. `floors` does the same for the
    run-to-run floor; `min_change_pct`, when set, is the floor of every metric `floors` misses.
    """

    alpha: float = DEFAULT_ALPHA
    min_change_pct: float | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    floors: Mapping[str, float] = field(default_factory=dict)

    def threshold_for(self, metric: Metric) -> float:
        found = lookup(self.thresholds, metric.name)
        return metric.threshold_pct if found is None else found

    def floor_for(self, metric: Metric) -> float:
        found = lookup(self.floors, metric.name)
        if found is not None:
            return found
        return metric.floor_pct if self.min_change_pct is None else self.min_change_pct

    @property
    def method(self) -> str:
        floors = (
            "its run-to-run floor (column 'floor')"
            if self.min_change_pct is None
            else f"{self.min_change_pct:g}%"
        )
        return (
            "each row names its statistic and test (column 'method'); a change counts when "
            f"the test gives p <= {self.alpha:g} (two-sided) and the median moved past {floors}, "
            "the drift between runs of unchanged code"
        )


def lookup(patterns: Mapping[str, float], name: str) -> float | None:
    """The value for `name`: its exact entry, else the most literal matching glob, else None."""
    if name in patterns:
        return patterns[name]
    matching = [p for p in patterns if fnmatch.fnmatchcase(name, p)]
    if not matching:
        return None
    return patterns[max(matching, key=lambda p: len(p) - p.count("*") - p.count("?"))]


@dataclass(frozen=True)
class MetricResult:
    """One metric compared: central values, change, noise, test and verdict.

    `base_value`/`new_value` are medians (of the stored medians for benchmark files without
    rounds; sums for must-be-zero counts). `noise_pct` is the larger side's median absolute
    deviation relative to its median; `floor_pct` the run-to-run floor the change had to exceed.
    `method` names the statistic and the test, such as 'median, Mann-Whitney U on 5/5 repeats'.
    `fails` is True when the metric is worse past `threshold_pct`.
    """

    metric: Metric
    base: Samples
    new: Samples
    base_value: float | None
    new_value: float | None
    change_pct: float | None
    noise_pct: float | None
    p_value: float | None
    method: str
    verdict: Verdict
    threshold_pct: float | None
    fails: bool
    floor_pct: float | None = None

    @property
    def name(self) -> str:
        return self.metric.name

    def describe_failure(self) -> str:
        if self.metric.must_be_zero:
            return f"{self.name} = {quantity(self.new_value, self.metric.unit)} (must be 0)"
        limit = self.threshold_pct or 0.0
        bound = f"-{limit:g}%" if self.metric.better == "higher" else f"+{limit:g}%"
        p = p_text(self.p_value)
        p = p if p.startswith("<") else f"={p}"
        return f"{self.name} {percent(self.change_pct)} (threshold {bound}, p{p})"


@dataclass(frozen=True)
class GroupResult:
    """The comparison of one scenario (or of the benchmark files) between BASE and NEW."""

    name: str
    kind: str  # "scenario" or "benchmarks"
    variant: str | None
    base_sources: tuple[str, ...]
    new_sources: tuple[str, ...]
    base_samples: int
    new_samples: int
    results: tuple[MetricResult, ...]
    warnings: tuple[str, ...]

    @property
    def failures(self) -> list[MetricResult]:
        return [r for r in self.results if r.fails]

    @property
    def sizes(self) -> str:
        """'BASE 1 report, 5 repeats; NEW 2 reports, 10 repeats' (or benchmark files)."""

        def side(label: str, files: int, samples: int) -> str:
            if self.kind != "scenario":
                return f"{label} {files} benchmark file{'s' * (files != 1)}"
            return (
                f"{label} {files} report{'s' * (files != 1)}, "
                f"{samples} repeat{'s' * (samples != 1)}"
            )

        return (
            side("BASE", len(self.base_sources), self.base_samples)
            + "; "
            + side("NEW", len(self.new_sources), self.new_samples)
        )

    @property
    def title(self) -> str:
        return group_title(self.kind, self.name, self.variant)


def group_title(kind: str, name: str, variant: str | None) -> str:
    if kind != "scenario":
        return "pytest-benchmark"
    return f"scenario {name!r}" + (f", variant {variant!r}" if variant is not None else "")


@dataclass(frozen=True)
class Comparison:
    """Everything `splitdb compare` found; `failed` decides the exit code."""

    groups: tuple[GroupResult, ...]
    warnings: tuple[str, ...]
    settings: Settings

    @property
    def failed(self) -> bool:
        return any(g.failures for g in self.groups)


def p_text(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


def result_line(comparison: Comparison) -> str:
    """`result: ok` or `result: FAIL` with each failing metric."""
    failures = [r for g in comparison.groups for r in g.failures]
    if not failures:
        worse = sum(1 for g in comparison.groups for r in g.results if r.verdict is Verdict.WORSE)
        extra = f" ({worse} worse, all within their threshold)" if worse else ""
        return f"result: ok, no metric worse past its threshold{extra}"
    return "result: FAIL, worse past threshold: " + "; ".join(
        f.describe_failure() for f in failures
    )
