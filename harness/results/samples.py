"""The metrics a comparison looks at, as samples: one value per repeat of a report, or per round
of a pytest-benchmark.

Default metric set of a report (names are dotted paths under a repeat's `metrics`):

- `bot.ticks_per_s` (higher is better), `bot.commit_latency.p50_ms` and `.p99_ms`;
- work per tick: `bot.rows_per_commit` (higher is better) and `bot.cpu_us_per_tick`;
- `analysis_lag.p99_s`;
- per load group: `groups.<group>.ok_per_s` (higher is better; not for violators, whose every
  operation must be denied), `groups.<group>.latency.p99_ms` (service time) and, for groups with
  a rate, `groups.<group>.response.p99_ms` (open loop: from the scheduled send time);
- per reference process (bot, agent, api; not the harness's own load workers):
  `processes.<name>.cpu_s` and `processes.<name>.peak_rss_mb`;
- `contention.busy_events` (from the contention check's evidence).

Lower is better for all but the throughputs. Counts that must be zero, compared exactly:
`checks.<name>.failed` (repeats in which that check failed: durability, permissions, duplicates,
integrity, expectations, ...), `permissions.not_denied`, `duplicates.keys`,
`integrity.bad_files`.

A report of a scenario with variants holds one set per variant (`variants`, and the `variant`
argument of `report_samples`). Reports are read as `harness.results.report.Report`, whose loader has
a reader per format version, so the metrics here are read from the current model whatever version
the file was. pytest-benchmark files give one metric per benchmark:
seconds per call, lower is better; its samples are the stored rounds, or, for a file saved without
them, the stored median alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import ReportFormatError
from harness.results.report import CheckResult, Report
from harness.results.stats import median

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Metric:
    """What a metric is: its unit, which way is better, and whether it must be exactly zero.

    `floor_pct` is how far the metric drifts between runs of unchanged code on one machine: a
    smaller change is noise however significant (a ratio, so symmetric: 100 means 2x either
    way).
    `threshold_pct` is the default regression that fails a comparison.
    """

    name: str
    unit: str
    better: Better = "lower"
    must_be_zero: bool = False
    floor_pct: float = 5.0
    threshold_pct: float = 10.0
    sample: str = "repeat"  # what one sample is: a repeat of a run, a round of a benchmark


# Run-to-run drift on the 2-core development machine: 10 runs of
# `splitdb run scenarios/default.toml --duration 5 --repeat 5`; per metric the largest over the
# smallest run median, minus one (the floor is a ratio too), worst of a family, rounded up:
# throughput 1.5%, memory 0.6%, bot commit p50 15.7%, analysis lag p99 7.4%, CPU 28.6%,
# p99 latencies 125% (bot commits) to 406% (sub-millisecond reads). Repeats inside one run
# spread 4 to 26 times less, so a test on repeats cannot tell this drift from a change; the
# floors can. See docs/report-format.md, "Comparing runs".
_FAMILIES: dict[str, tuple[float, float]] = {
    "throughput": (5.0, 10.0),
    "memory": (5.0, 10.0),
    "median_latency": (20.0, 25.0),
    "lag": (10.0, 20.0),
    "cpu": (30.0, 35.0),
    "tail_latency": (450.0, 450.0),
    "count": (5.0, 10.0),
    "benchmark": (5.0, 10.0),
    # Rows per commit follow the bot's size-or-age batching, which a busy machine shifts.
    "efficiency": (30.0, 35.0),
}


def _metric(name: str, unit: str, family: str, better: Better = "lower") -> Metric:
    floor, threshold = _FAMILIES[family]
    return Metric(name, unit, better, floor_pct=floor, threshold_pct=threshold)


@dataclass
class Samples:
    """The samples of one metric on one side of a comparison.

    `values` holds raw samples (one per repeat, or per benchmark round). A benchmark file saved
    without its rounds gives its stored median to `medians` instead, and its round count to
    `unstored`. `sources` says where they came from.
    """

    metric: Metric
    values: list[float] = field(default_factory=list)
    medians: list[float] = field(default_factory=list)
    unstored: int = 0
    sources: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.values) + self.unstored

    def median(self) -> float | None:
        """The median of the values; with stored medians (benchmark files saved without rounds),
        the median of those and of the values' median. None without any sample."""
        if self.medians:
            return median(self.medians + ([median(self.values)] if self.values else []))
        return median(self.values) if self.values else None

    def extend(self, other: Samples) -> None:
        self.values.extend(other.values)
        self.medians.extend(other.medians)
        self.unstored += other.unstored
        self.sources.extend(s for s in other.sources if s not in self.sources)


MetricSet = dict[str, Samples]


def _add(out: MetricSet, metric: Metric, value: float | None, source: str) -> None:
    if value is None:
        return
    samples = out.setdefault(metric.name, Samples(metric))
    samples.values.append(float(value))
    if source not in samples.sources:
        samples.sources.append(source)


def _is_reference_process(name: str) -> bool:
    # The harness's load workers and fault helpers are the measuring instrument, not the
    # system under test: their CPU and memory would only add noise to a comparison.
    return not name.startswith(("load-", "fault-"))


def _read(report: Report, source: str, variant: str | None) -> MetricSet:
    out: MetricSet = {}
    for repeat in report.repeats:
        if repeat.variant != variant:
            continue
        metrics = repeat.metrics
        bot = metrics.bot
        if bot.commits:
            ticks = _metric("bot.ticks_per_s", "ticks/s", "throughput", "higher")
            _add(out, ticks, bot.ticks_per_s, source)
            for q, latency, family in (
                ("p50", bot.commit_latency.p50_ms, "median_latency"),
                ("p99", bot.commit_latency.p99_ms, "tail_latency"),
            ):
                _add(out, _metric(f"bot.commit_latency.{q}_ms", "ms", family), latency, source)
            # Work per tick (reports from before these fields simply lack them): a change that
            # keeps ticks/s but commits in tiny batches or burns more CPU shows here.
            per_commit = _metric("bot.rows_per_commit", "rows", "efficiency", "higher")
            _add(out, per_commit, bot.rows_per_commit, source)
            _add(out, _metric("bot.cpu_us_per_tick", "us", "cpu"), bot.cpu_us_per_tick, source)
        lag = metrics.analysis_lag.p99_s
        _add(out, _metric("analysis_lag.p99_s", "s", "lag"), lag, source)
        for group, g in sorted(metrics.groups.items()):
            if g.kind != "violator":
                rate = _metric(f"groups.{group}.ok_per_s", "ops/s", "throughput", "higher")
                _add(out, rate, g.ok_per_s, source)
            tail = _metric(f"groups.{group}.latency.p99_ms", "ms", "tail_latency")
            _add(out, tail, g.latency.p99_ms, source)
            if g.kind != "violator" and g.response is not None:
                # Open-loop: from each operation's scheduled time, so a stall counts in every
                # request it held up; one moves this p99 by orders of magnitude, past any floor.
                response = _metric(f"groups.{group}.response.p99_ms", "ms", "tail_latency")
                _add(out, response, g.response.p99_ms, source)
        for name, proc in sorted(metrics.processes.items()):
            if _is_reference_process(name):
                cpu = _metric(f"processes.{name}.cpu_s", "s", "cpu")
                _add(out, cpu, proc.cpu_s, source)
                rss = _metric(f"processes.{name}.peak_rss_mb", "MB", "memory")
                _add(out, rss, proc.peak_rss_mb, source)
        for check in repeat.checks:
            _check_samples(out, check, source)
    return out


def _check_samples(out: MetricSet, check: CheckResult, source: str) -> None:
    # Evidence is each check's own record: these are the figures a comparison counts.
    name, evidence = check.name, check.evidence
    failed = Metric(f"checks.{name}.failed", "repeats", must_be_zero=True)
    _add(out, failed, 0 if check.ok else 1, source)
    if name == "contention" and "busy_events" in evidence:
        busy = _metric("contention.busy_events", "events", "count")
        _add(out, busy, evidence["busy_events"], source)
    elif name == "permissions" and "forbidden" in evidence:
        leaks = evidence["forbidden"] - evidence.get("denied", 0)
        _add(out, Metric("permissions.not_denied", "attempts", must_be_zero=True), leaks, source)
    elif name == "duplicates" and "duplicated_keys" in evidence:
        keys = sum(evidence["duplicated_keys"].values())
        _add(out, Metric("duplicates.keys", "keys", must_be_zero=True), keys, source)
    elif name == "integrity" and "problems" in evidence:
        bad = len(evidence["problems"])
        _add(out, Metric("integrity.bad_files", "files", must_be_zero=True), bad, source)


def variants(report: Report) -> list[str | None]:
    """The variants whose repeats a report holds, in run order; [None] when it has none."""
    found: list[str | None] = []
    for repeat in report.repeats:
        if repeat.variant not in found:
            found.append(repeat.variant)
    return found or [None]


def metric_sets(report: Report) -> tuple[dict[str | None, MetricSet], list[str]]:
    """Per variant, the report's samples; and the names of the metrics that are not counts
    that must be zero, in first-seen order (what the run summaries tabulate)."""
    sets = {v: report_samples(report, report.run_id, variant=v) for v in variants(report)}
    names: list[str] = []
    for one in sets.values():
        names += [n for n, s in one.items() if not s.metric.must_be_zero and n not in names]
    return sets, names


def report_samples(
    report: Report, source: str = "<report>", *, variant: str | None = None
) -> MetricSet:
    """Per-repeat samples of the default metric set (see the module doc) of one variant's
    repeats (None: a scenario without variants). Repeats of different variants never pool."""
    return _read(report, source, variant)


def is_benchmark_file(data: Any) -> bool:
    """True for a pytest-benchmark JSON document (`benchmarks[].stats`)."""
    benches = data.get("benchmarks") if isinstance(data, Mapping) else None
    return (
        isinstance(benches, list)
        and bool(benches)
        and all(isinstance(b, Mapping) and isinstance(b.get("stats"), Mapping) for b in benches)
    )


def benchmark_samples(data: Mapping[str, Any], source: str = "<benchmark>") -> MetricSet:
    """One metric per benchmark (`bench.<name>`, seconds per call): raw rounds when saved."""
    out: MetricSet = {}
    names = [str(b.get("name") or b.get("fullname")) for b in data["benchmarks"]]
    for bench, name in zip(data["benchmarks"], names, strict=True):
        # Two benchmarks of one name (same test in two files) keep apart by their full name.
        if names.count(name) > 1:
            name = str(bench.get("fullname") or name)
        floor, threshold = _FAMILIES["benchmark"]
        metric = Metric(
            f"bench.{name}", "s", floor_pct=floor, threshold_pct=threshold, sample="round"
        )
        stats = bench["stats"]
        raw = stats.get("data")
        if isinstance(raw, list) and raw:
            samples = Samples(metric, [float(v) for v in raw], sources=[source])
        else:
            try:
                n, centre = int(stats["rounds"]), float(stats["median"])
            except (KeyError, TypeError, ValueError):
                raise ReportFormatError(
                    f"{source}: benchmark {name!r} has neither stats.data nor "
                    "stats.rounds/median; save it with pytest-benchmark's --benchmark-json"
                ) from None
            samples = Samples(metric, medians=[centre], unstored=n, sources=[source])
        if metric.name in out:
            out[metric.name].extend(samples)
        else:
            out[metric.name] = samples
    return out


def merge(sets: Iterable[MetricSet]) -> MetricSet:
    """Pool several metric sets (several reports of one scenario): samples add up per metric."""
    out: MetricSet = {}
    for one in sets:
        for name, samples in one.items():
            if name not in out:
                out[name] = Samples(samples.metric)
            out[name].extend(samples)
    return out


def source_name(path: Path) -> str:
    """How a file is named in messages: the run directory for a report.json, else the file."""
    return str(path.parent if path.name == "report.json" else path)
