"""`splitdb compare BASE NEW...`: is NEW better, worse, or within noise of BASE, metric by metric?

Inputs are run reports (report.json, a run directory, or a directory of run directories) and
pytest-benchmark JSON files; each side pools every sample it is given (each repeat of a report is
one sample; several reports of one scenario pool their repeats; a benchmark gives its rounds).

The noise test is the Mann-Whitney U rank test, two-sided, exact for small samples (asv uses the
same test). It compares ranks, not means, so a skewed metric (a latency percentile) or one odd
repeat cannot fake or hide a change, and it assumes no distribution. pyperf's t-test assumes
normal samples, which four or five repeats cannot show. The cost: with n repeats per side the
smallest p-value it can reach is 2 / C(2n, n), so at alpha = 0.01 it needs 5 repeats per side;
with fewer, every metric is reported as "too few samples" rather than guessed. A benchmark is
compared on the median of its rounds, ranked by the same test; a benchmark file saved without
its rounds keeps only summary statistics, so it is compared on its stored median against the
floor alone (its mean would let one slow round decide). Each row names what it used.

The repeats of one run share the machine's state, and whole runs of unchanged code drift apart
4 to 26 times more than repeats within a run spread (measured: `harness.results.samples`). A rank
test on repeats cannot see that drift, so a metric is "better" or "worse" only when p <= alpha AND
its median moved by more than the metric's run-to-run floor (`Metric.floor_pct`: 5% for throughput
and memory, 30% for CPU, 5.5x for p99 latencies; `--min-change` sets one floor for all; each
benchmark has its own, calibrated from runs of unchanged code by `--calibrate`,
harness/results/floors.py, and read with `--floors`). It fails the comparison when it is worse by
more than its threshold (`Metric.threshold_pct` unless a `--threshold` or thresholds file says
otherwise). Counts that must be zero (failed checks, permission leaks, duplicates, integrity
problems) compare exactly: any non-zero in NEW fails, whatever BASE had.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ComparisonError, ReportFormatError, ThresholdError
from harness.results.comparison import (
    Comparison,
    GroupResult,
    MetricResult,
    Settings,
    Verdict,
    group_title,
    lookup,
    p_text,
    result_line,
)
from harness.results.floors import load_floors
from harness.results.report import REPORT_SCHEMA, Report, interrupted_phase
from harness.results.samples import (
    MetricSet,
    Samples,
    benchmark_samples,
    is_benchmark_file,
    merge,
    report_samples,
    source_name,
    variants,
)
from harness.results.stats import DEFAULT_ALPHA, mad, mann_whitney_u, median, smallest_p_value
from harness.results.units import percent, quantity
from harness.tomlfile import read_toml

BENCHMARKS = "pytest-benchmark"
_DIRECTORY_DEPTH = 3  # pytest-benchmark storage nests files under <machine>/ one level down


def _central(samples: Samples) -> float | None:
    if samples.metric.must_be_zero:
        return sum(samples.values) if samples.values else None
    return samples.median()


def _noise_pct(samples: Samples) -> float | None:
    if samples.medians or len(samples.values) < 2:
        return None
    centre = median(samples.values)
    return None if centre == 0 else 100 * mad(samples.values) / abs(centre)


def _change_pct(base: float, new: float) -> float:
    if base == 0:
        return 0.0 if new == 0 else math.copysign(math.inf, new)
    return 100 * (new - base) / abs(base)


def _beyond(base: float, new: float, floor_pct: float) -> bool:
    """Did the value move by more than the floor? Symmetric: 100% is 2x up or 2x down."""
    if base == new:
        return False
    if base <= 0 or new <= 0:
        return True  # from or to zero: no ratio, and no drift explains it
    return max(new / base, base / new) - 1 >= floor_pct / 100


def compare_samples(base: Samples, new: Samples, settings: Settings | None = None) -> MetricResult:
    """Compare one metric's samples; see the module docstring for the rule."""
    settings = settings or Settings()
    metric = base.metric
    b, n = _central(base), _central(new)
    noises = [x for x in (_noise_pct(base), _noise_pct(new)) if x is not None]
    noise = max(noises) if noises else None

    def result(
        verdict: Verdict,
        method: str,
        change: float | None = None,
        p: float | None = None,
        threshold: float | None = None,
        fails: bool = False,
    ) -> MetricResult:
        return MetricResult(
            metric, base, new, b, n, change, noise, p, method, verdict, threshold, fails, floor
        )

    floor = None if metric.must_be_zero else settings.floor_for(metric)

    if b is None or n is None:
        return result(Verdict.MISSING, "")
    change = _change_pct(b, n)
    if metric.must_be_zero:
        if n > 0:
            return result(Verdict.WORSE, "sum, exact", change, fails=True)
        return result(Verdict.BETTER if b > 0 else Verdict.ZERO, "sum, exact", change)
    threshold = settings.threshold_for(metric)
    p: float | None = None
    if base.medians or new.medians:
        # Without the rounds there is nothing to rank: the stored medians and the floor decide.
        where = "" if base.medians and new.medians else (" in BASE" if base.medians else " in NEW")
        method = f"median, no rounds stored{where}: floor only"
        significant = _beyond(b, n, floor or 0.0)
    else:
        method = f"median, Mann-Whitney U on {len(base.values)}/{len(new.values)} {metric.sample}s"
        if smallest_p_value(len(base.values), len(new.values)) > settings.alpha:
            return result(Verdict.FEW, method, change, threshold=threshold)
        p = mann_whitney_u(new.values, base.values).p_value
        significant = p <= settings.alpha and _beyond(b, n, floor or 0.0)
    if not significant:
        return result(Verdict.NOISE, method, change, p, threshold)
    improved = (change > 0) == (metric.better == "higher")
    verdict = Verdict.BETTER if improved else Verdict.WORSE
    fails = verdict is Verdict.WORSE and abs(change) > threshold
    return result(verdict, method, change, p, threshold, fails)


# --- inputs -------------------------------------------------------------------------------


@dataclass
class _Group:
    kind: str
    name: str
    variant: str | None = None
    reports: list[tuple[str, Report]] = field(default_factory=list)
    benchmarks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.reports + self.benchmarks)

    @property
    def title(self) -> str:
        return group_title(self.kind, self.name, self.variant)

    def samples(self) -> MetricSet:
        sets = [report_samples(r, s, variant=self.variant) for s, r in self.reports]
        sets += [benchmark_samples(b, s) for s, b in self.benchmarks]
        return merge(sets)

    def sample_count(self) -> int:
        if self.kind == "scenario":
            return sum(
                sum(1 for rep in r.repeats if rep.variant == self.variant) for _, r in self.reports
            )
        return len(self.benchmarks)


def _why(exc: Exception) -> str:
    # json recurses into nested arrays and objects; its RecursionError says nothing useful.
    return "nested too deeply to read" if isinstance(exc, RecursionError) else str(exc)


def _read_file(path: Path, groups: dict[str, _Group], *, explicit: bool) -> bool:
    """Add one JSON file to `groups`; False when it is neither kind (and not named explicitly)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        if not explicit:
            return False
        raise ReportFormatError(f"{path}: not a readable JSON file ({_why(exc)})") from None
    if isinstance(data, dict) and "schema" in data:
        if not explicit and data["schema"] != REPORT_SCHEMA:
            # Found while scanning a directory: JSON of another kind (a run's status board, say)
            # is no report, and no reason to refuse the directory.
            return False
        report = Report.from_json(data, str(path))
        name = report.scenario.name
        # Each variant of a paired run is its own arm: its repeats never pool with another's.
        for variant in variants(report):
            key = f"scenario:{name}" + (f"|{variant}" if variant is not None else "")
            group = groups.setdefault(key, _Group("scenario", name, variant))
            group.reports.append((source_name(path), report))
        return True
    if is_benchmark_file(data):
        group = groups.setdefault(BENCHMARKS, _Group("benchmarks", BENCHMARKS))
        group.benchmarks.append((str(path), data))
        return True
    if explicit:
        raise ReportFormatError(
            f"{path}: neither a splitdb report (no 'schema' key) nor a pytest-benchmark JSON "
            "(no benchmarks[].stats); pass a report.json, a run directory, or the file "
            "pytest --benchmark-json wrote"
        )
    return False


def _read_dir(path: Path, groups: dict[str, _Group], depth: int) -> int:
    if (path / "report.json").is_file():
        _read_file(path / "report.json", groups, explicit=True)
        return 1
    phase = interrupted_phase(path)
    if phase is not None:
        if depth == 0:
            # Named on the command line: one line saying why it cannot be compared.
            raise ReportFormatError(f"{path} was interrupted at {phase}; it has no report")
        return 0  # an interrupted run among finished ones: nothing in it is a report
    found = 0
    for child in sorted(path.iterdir()):
        if child.is_dir() and depth < _DIRECTORY_DEPTH:
            found += _read_dir(child, groups, depth + 1)
        elif child.suffix == ".json" and child.is_file():
            found += _read_file(child, groups, explicit=False)
    return found


def collect(paths: Sequence[Path], side: str) -> dict[str, _Group]:
    """Every report and benchmark file under `paths`, by scenario and variant (benchmarks: one)."""
    groups: dict[str, _Group] = {}
    for path in map(Path, paths):
        if path.is_dir():
            if not _read_dir(path, groups, 0):
                raise ComparisonError(
                    f"{side} {path}: no report.json or pytest-benchmark JSON in this directory "
                    "or its subdirectories; pass a run directory or its reports/ parent"
                )
        elif path.is_file():
            _read_file(path, groups, explicit=True)
        else:
            raise ComparisonError(f"{side} {path}: no such file or directory")
    return groups


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out if value else {prefix: []}
    return {prefix: value}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _settings_differences(base: _Group, new: _Group) -> list[str]:
    ignored = ("name", "description", "variant")

    def settings(group: _Group) -> dict[str, Any]:
        # The scenario's settings are the scenario format's (harness/runs/scenario.py), kept as
        # read.
        raw = dict(group.reports[0][1].scenario.settings)
        # A variant arm runs the scenario plus its own overrides; other arms do not matter here.
        arm = next((v for v in raw.get("variant") or [] if v.get("name") == group.variant), None)
        raw = {k: v for k, v in raw.items() if k not in ignored}
        if arm is not None:
            raw["variant"] = arm
        return _flatten(raw)

    a, b = settings(base), settings(new)
    return [
        f"{k} {_short(a.get(k))} -> {_short(b.get(k))}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


def _machines(group: _Group) -> set[str]:
    found = set()
    for _, report in group.reports:
        env = report.environment
        found.add(f"{env.hostname}, {env.cpu_count} CPUs, {env.platform}")
    for _, bench in group.benchmarks:
        info = bench.get("machine_info", {})
        cpu = info.get("cpu", {})
        brand = cpu.get("brand_raw") if isinstance(cpu, Mapping) else None
        found.add(f"{info.get('node')}, {brand or info.get('processor')}, {info.get('release')}")
    return found


def _group_warnings(base: _Group, new: _Group, settings: Settings) -> list[str]:
    warnings: list[str] = []
    if base.kind == "scenario":
        diffs = _settings_differences(base, new)
        if diffs:
            shown = "; ".join(diffs[:6]) + ("; ..." if len(diffs) > 6 else "")
            warnings.append(f"scenario settings differ between BASE and NEW: {shown}")
    mb, mn = _machines(base), _machines(new)
    if mb != mn:
        warnings.append(
            f"BASE and NEW ran on different machines (BASE: {' / '.join(sorted(mb))}; "
            f"NEW: {' / '.join(sorted(mn))}): figures may differ for that reason alone"
        )
    return warnings


def _benchmark_warnings(results: Sequence[MetricResult], settings: Settings) -> list[str]:
    warnings = []
    compared = [r for r in results if r.verdict is not Verdict.MISSING]
    unstored = [r.name for r in compared if "no rounds stored" in r.method]
    if unstored:
        names = ", ".join(unstored[:3]) + (", ..." if len(unstored) > 3 else "")
        warnings.append(
            f"{len(unstored)} benchmarks have no stored rounds ({names}): judged on the stored "
            "median against the floor alone; save rounds with --benchmark-json or "
            "--benchmark-save-data"
        )
    if settings.min_change_pct is None:
        default = [r for r in compared if lookup(settings.floors, r.name) is None]
        if default:
            names = ", ".join(r.name for r in default[:3]) + (", ..." if len(default) > 3 else "")
            warnings.append(
                f"{len(default)} benchmarks have no calibrated floor and use the default "
                f"{default[0].metric.floor_pct:g}% ({names}): pass --floors FILE (the "
                "repository's is tests/benchmarks/floors.toml), or measure one with --calibrate"
            )
    return warnings


def needed_samples(alpha: float) -> int:
    """Samples per side the rank test needs to reach `alpha` (5 at 0.01)."""
    n = 1
    while smallest_p_value(n, n) > alpha and n < 1000:
        n += 1
    return n


def _names(found: MetricSet, shown: int = 3) -> str:
    """'bench.a, bench.b, bench.c and 4 more'."""
    names = list(found)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def compare_groups(base: _Group, new: _Group, settings: Settings) -> GroupResult:
    """Compare the pooled samples of one scenario (or of the benchmark files)."""
    base_set, new_set = base.samples(), new.samples()
    if base.kind == "benchmarks" and not base_set.keys() & new_set.keys():
        raise ComparisonError(
            f"nothing in common to compare: BASE {', '.join(base.sources)} holds "
            f"{_names(base_set)}, NEW {', '.join(new.sources)} holds {_names(new_set)}; "
            "compare runs of the same benchmarks (pytest --benchmark-json of the same tests)"
        )
    names = list(base_set) + [n for n in new_set if n not in base_set]
    # Statistical metrics first, then the must-be-zero counts, each in report order.
    names.sort(key=lambda n: (base_set.get(n) or new_set[n]).metric.must_be_zero)
    results = []
    for name in names:
        metric = (base_set.get(name) or new_set[name]).metric
        results.append(
            compare_samples(
                base_set.get(name, Samples(metric)), new_set.get(name, Samples(metric)), settings
            )
        )
    warnings = _group_warnings(base, new, settings)
    if base.kind != "scenario":
        warnings += _benchmark_warnings(results, settings)
    both = sorted(set(base.sources) & set(new.sources))
    if both:
        warnings.insert(0, f"the same input is on both sides: {', '.join(both)}")
    few = [r for r in results if r.verdict is Verdict.FEW]
    if few:
        counts = sorted({(r.base.count, r.new.count) for r in few})
        sizes = ", ".join(f"{a} vs {b}" for a, b in counts[:3])
        warnings.append(
            f"{len(few)} metrics have too few samples ({sizes}) for the rank test to reach "
            f"alpha {settings.alpha:g}: it needs {needed_samples(settings.alpha)} per side; "
            + (
                "run with --repeat 5 or more, or pass several runs of each side"
                if base.kind == "scenario"
                else "give those benchmarks more rounds, or pass several files of each side"
            )
        )
        past = [
            r.name
            for r in few
            if r.change_pct is not None
            and r.threshold_pct is not None
            and abs(r.change_pct) > r.threshold_pct
            and (r.change_pct > 0) != (r.metric.better == "higher")
        ]
        if past:
            warnings.append(
                "changed past their threshold in the bad direction, but untested for lack of "
                f"samples: {', '.join(past)}"
            )
    return GroupResult(
        name=base.name,
        kind=base.kind,
        variant=base.variant,
        base_sources=base.sources,
        new_sources=new.sources,
        base_samples=base.sample_count(),
        new_samples=new.sample_count(),
        results=tuple(results),
        warnings=tuple(warnings),
    )


def _describe(groups: Mapping[str, _Group], paths: Sequence[Path]) -> str:
    names: list[str] = []
    for g in groups.values():
        title = group_title(g.kind, g.name, None)
        if title not in names:
            names.append(title)
    return f"{', '.join(map(str, paths))} (holds {', '.join(names)})"


def compare_paths(
    base: Sequence[Path], new: Sequence[Path], settings: Settings | None = None
) -> Comparison:
    """Load both sides and compare every scenario (and the benchmark files) they share.

    Raises ComparisonError when they share nothing (naming what each side holds), and
    ReportFormatError for a file that is not a report or benchmark this version reads.
    """
    settings = settings or Settings()
    base_groups, new_groups = collect(base, "BASE"), collect(new, "NEW")
    shared = [k for k in base_groups if k in new_groups]
    if not shared:
        raise ComparisonError(
            f"nothing in common to compare: BASE {_describe(base_groups, base)}, NEW "
            f"{_describe(new_groups, new)}; reports of different scenarios measure different "
            "things (if they are the same scenario, give both files the same `name`)"
        )
    warnings = [
        f"{g.title} is only in {side}; not compared"
        for side, mine, other in (
            ("BASE", base_groups, new_groups),
            ("NEW", new_groups, base_groups),
        )
        for k, g in mine.items()
        if k not in other
    ]
    groups = tuple(compare_groups(base_groups[k], new_groups[k], settings) for k in shared)
    return Comparison(groups, tuple(warnings), settings)


# --- thresholds ---------------------------------------------------------------------------

_FILE_KEYS = ("alpha", "min_change", "thresholds", "floors")


def _percentage(value: Any, where: str, problems: list[str]) -> float | None:
    # nan and inf are refused: a limit no change can cross would let the metric never fail.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        problems.append(f"{where}: must be a finite percentage >= 0, such as 10 (got {value!r})")
        return None
    return float(value)


def _alpha(value: Any, where: str, problems: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        problems.append(f"{where}: must be a significance level between 0 and 1, such as 0.01")
        return None
    return float(value)


def load_thresholds(path: Path) -> dict[str, Any]:
    """Read a thresholds TOML file: optional `alpha`, `min_change` (percent), `[thresholds]` and
    `[floors]` (metric name or glob = percent)."""
    _, raw = read_toml(
        Path(path), ThresholdError, missing_hint="give a TOML file with [thresholds] and [floors]"
    )
    problems: list[str] = []
    out: dict[str, Any] = {"thresholds": {}, "floors": {}}
    for key in raw:
        if key not in _FILE_KEYS:
            problems.append(f"{key}: unknown key; use one of {', '.join(_FILE_KEYS)}")
    if "alpha" in raw:
        out["alpha"] = _alpha(raw["alpha"], "alpha", problems)
    if "min_change" in raw:
        out["min_change"] = _percentage(raw["min_change"], "min_change", problems)
    for section in ("thresholds", "floors"):
        table = raw.get(section, {})
        if not isinstance(table, dict):
            problems.append(
                f'{section}: must be a table, such as [{section}] "bot.ticks_per_s" = 10'
            )
            continue
        for name, value in table.items():
            pct = _percentage(value, f"{section}.{name!r}", problems)
            if pct is not None:
                out[section][name] = pct
    if problems:
        raise ThresholdError(str(path), problems)
    return out


def parse_threshold_flag(text: str) -> tuple[str, float]:
    """`METRIC=PCT` (METRIC may be a glob such as `groups.*.latency.p99_ms`)."""
    name, sep, value = text.partition("=")
    problems: list[str] = []
    pct: float | None = None
    if not sep or not name.strip():
        problems.append("expected METRIC=PCT, such as bot.ticks_per_s=10")
    else:
        try:
            pct = _percentage(float(value), name.strip(), problems)
        except ValueError:
            problems.append(f"{name.strip()}: PCT must be a number (got {value!r})")
    if problems or pct is None:
        raise ThresholdError(f"--threshold {text}", problems)
    return name.strip(), pct


def settings_from_flags(
    *,
    thresholds_file: Path | None = None,
    thresholds: Sequence[str] = (),
    alpha: float | None = None,
    min_change: float | None = None,
    floors_file: Path | None = None,
) -> Settings:
    """Settings from the command line's values: the thresholds file first, the flags over it.

    `thresholds` are `--threshold` texts (METRIC=PCT); `alpha` and `min_change` are `--alpha`
    and `--min-change`; `floors_file` is `--floors`. None means the flag was not given.
    """
    loaded: dict[str, Any] = {"thresholds": {}, "floors": {}}
    if thresholds_file is not None:
        loaded = load_thresholds(thresholds_file)
    by_name = dict(loaded["thresholds"])
    for flag in thresholds:
        name, pct = parse_threshold_flag(flag)
        by_name[name] = pct
    problems: list[str] = []
    checked_alpha = loaded.get("alpha") or DEFAULT_ALPHA
    if alpha is not None:
        checked_alpha = _alpha(alpha, "--alpha", problems)
    checked_min_change = loaded.get("min_change")
    if min_change is not None:
        checked_min_change = _percentage(min_change, "--min-change", problems)
    if problems or checked_alpha is None:
        raise ThresholdError("command line", problems)
    floors = dict(loaded["floors"])
    if floors_file is not None:
        floors.update(load_floors(floors_file))
    return Settings(
        alpha=checked_alpha,
        min_change_pct=checked_min_change,
        thresholds=by_name,
        floors=floors,
    )


def unmatched_thresholds(comparison: Comparison) -> list[str]:
    """Threshold names or patterns that match no compared metric (likely a typo)."""
    names = [r.name for g in comparison.groups for r in g.results]
    patterns = [*comparison.settings.thresholds, *comparison.settings.floors]
    return [p for p in patterns if not any(n == p or fnmatch.fnmatchcase(n, p) for n in names)]


# --- output -------------------------------------------------------------------------------


def _shown(results: Sequence[MetricResult], show_all: bool) -> list[MetricResult]:
    return [
        r for r in results if show_all or not (r.metric.must_be_zero and r.verdict is Verdict.ZERO)
    ]


def format_text(comparison: Comparison, *, show_all: bool = False) -> str:
    """The comparison as a terminal table, with the method, warnings and the result line."""
    lines: list[str] = []
    for warning in comparison.warnings:
        lines.append(f"warning: {warning}")
    for group in comparison.groups:
        lines.append(f"{group.title}: {group.sizes}")
        for label, sources in (("BASE", group.base_sources), ("NEW ", group.new_sources)):
            lines.extend(f"  {label} {s}" for s in sources)
        for warning in group.warnings:
            lines.append(f"  warning: {warning}")
        rows = [("metric", "base", "new", "change", "noise", "floor", "p", "verdict", "method")]
        shown = _shown(group.results, show_all)
        for r in shown:
            rows.append(
                (
                    r.name,
                    quantity(r.base_value, r.metric.unit, scale_by=r.new_value),
                    quantity(r.new_value, r.metric.unit, scale_by=r.base_value),
                    "exact" if r.metric.must_be_zero else percent(r.change_pct),
                    "" if r.noise_pct is None else f"±{r.noise_pct:.1f}%",
                    "" if r.floor_pct is None else f"{r.floor_pct:g}%",
                    p_text(r.p_value),
                    r.verdict.value + (" (FAILS)" if r.fails else ""),
                    r.method,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [
                cell.ljust(w) if i in (0, 7, 8) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        hidden = len(group.results) - len(shown)
        if hidden:
            lines.append(
                f"  ({hidden} counts that must be zero are zero on both sides; --all shows them)"
            )
    lines.append(f"method: {comparison.settings.method}")
    lines.append(result_line(comparison))
    return "\n".join(lines)


__all__ = [
    "Comparison",
    "ComparisonError",
    "GroupResult",
    "MetricResult",
    "Settings",
    "ThresholdError",
    "Verdict",
    "compare_paths",
    "compare_samples",
    "format_text",
    "needed_samples",
]
