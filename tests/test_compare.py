"""`splitdb compare`: noise is not called a change, a real change is, and bad input is refused."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.errors import ReportFormatError
from harness.results.compare import (
    ComparisonError,
    Settings,
    ThresholdError,
    Verdict,
    compare_paths,
    compare_samples,
    format_text,
    load_thresholds,
    parse_threshold_flag,
    settings_from_flags,
)
from harness.results.report import Report
from harness.results.samples import Metric, Samples, report_samples
from harness.results.stats import (
    _doubled_midranks,
    mann_whitney_u,
    smallest_p_value,
)
from tests.fixtures.reports import as_report, make_benchmark, make_report, write_report

LATENCY = Metric("bot.commit_latency.p99_ms", "ms", "lower")
THROUGHPUT = Metric("bot.ticks_per_s", "ticks/s", "higher")

values = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


def _samples(metric: Metric, data: list[float]) -> Samples:
    return Samples(metric, list(data))


# --- the test itself ------------------------------------------------------------------------


def _brute_force_p(a: Sequence[float], b: Sequence[float]) -> float:
    ranks = _doubled_midranks([*a, *b])
    n1, total = len(a), len(a) + len(b)
    observed = abs(sum(ranks[:n1]) - n1 * (total + 1))
    splits = list(itertools.combinations(range(total), n1))
    extreme = sum(
        1 for chosen in splits if abs(sum(ranks[i] for i in chosen) - n1 * (total + 1)) >= observed
    )
    return extreme / len(splits)


@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=6),
    st.lists(st.integers(0, 6), min_size=1, max_size=6),
)
def test_exact_mann_whitney_p_value_equals_enumerating_every_split(
    a: list[int], b: list[int]
) -> None:
    result = mann_whitney_u([float(x) for x in a], [float(x) for x in b])
    assert result.p_value == pytest.approx(_brute_force_p(a, b), abs=1e-12)


def test_mann_whitney_separated_samples_reach_the_smallest_p_value() -> None:
    result = mann_whitney_u([10, 11, 12, 13, 14], [1, 2, 3, 4, 5])
    assert result.p_value == pytest.approx(smallest_p_value(5, 5)) == pytest.approx(2 / 252)
    assert result.statistic == 25


def test_mann_whitney_normal_approximation_for_large_samples() -> None:
    base = [float(i) for i in range(100)]
    same = mann_whitney_u(base, list(reversed(base)))
    shifted = mann_whitney_u([v + 50 for v in base], base)
    assert same.p_value == pytest.approx(1.0, abs=0.01)
    assert "normal" in shifted.method
    assert shifted.p_value < 1e-10


# --- verdicts -------------------------------------------------------------------------------


@given(st.lists(values, min_size=1, max_size=30))
def test_identical_samples_are_never_worse_or_better(data: list[float]) -> None:
    for metric in (LATENCY, THROUGHPUT):
        result = compare_samples(_samples(metric, data), _samples(metric, data))
        assert result.verdict in (Verdict.NOISE, Verdict.FEW)
        assert not result.fails


@given(
    base=st.lists(st.floats(0.99, 1.01), min_size=5, max_size=20),
    factor=st.floats(1.5, 20.0),
    scale=st.floats(0.001, 1000.0),
)
def test_latencies_scaled_up_by_a_large_factor_with_low_noise_are_worse(
    base: list[float], factor: float, scale: float
) -> None:
    before = [v * scale for v in base]
    after = [v * scale * factor for v in base]
    result = compare_samples(_samples(LATENCY, before), _samples(LATENCY, after))
    assert result.verdict is Verdict.WORSE
    assert result.fails
    assert result.change_pct == pytest.approx((factor - 1) * 100, rel=0.05)


@given(
    base=st.lists(st.floats(0.99, 1.01), min_size=5, max_size=12),
    factor=st.sampled_from([0.3, 0.5, 2.0, 4.0]),
)
def test_the_verdict_flips_with_the_metric_direction(base: list[float], factor: float) -> None:
    after = [v * factor for v in base]
    lower = compare_samples(_samples(LATENCY, base), _samples(LATENCY, after))
    higher = compare_samples(_samples(THROUGHPUT, base), _samples(THROUGHPUT, after))
    assert {lower.verdict, higher.verdict} == {Verdict.BETTER, Verdict.WORSE}
    assert (lower.verdict is Verdict.WORSE) == (factor > 1)
    assert lower.fails == (factor > 1) and higher.fails == (factor < 1)


@settings(max_examples=50)
@given(st.lists(values, min_size=5, max_size=10), st.integers(0, 2**32 - 1))
def test_worse_always_needs_both_significance_and_a_change_past_the_floor(
    data: list[float], seed: int
) -> None:
    # Both sides from one pool, NEW always the larger of each neighbouring pair: NEW can only
    # look worse, and only a complete separation of ranks (p <= 0.01) past the 5% floor counts.
    pool = sorted(data * 2)
    result = compare_samples(_samples(LATENCY, pool[::2]), _samples(LATENCY, pool[1::2]))
    assert result.verdict is not Verdict.BETTER
    if result.verdict is Verdict.WORSE:
        assert result.p_value is not None and result.p_value <= 0.01
        assert abs(result.change_pct or 0) >= 5


def test_small_change_that_is_significant_stays_within_noise() -> None:
    base = [46.4, 46.4, 46.5, 46.4, 46.5]
    new = [46.7, 46.8, 46.7, 46.8, 46.7]  # +0.6%: real, irrelevant
    result = compare_samples(_samples(LATENCY, base), _samples(LATENCY, new))
    assert result.p_value is not None and result.p_value < 0.01
    assert result.verdict is Verdict.NOISE


def test_a_change_within_the_run_to_run_floor_is_noise_however_significant() -> None:
    cpu = report_samples(as_report(make_report()))["processes.bot.cpu_s"].metric  # floor 30%
    base = [1.0, 1.01, 0.99, 1.0, 1.02]
    drifted = compare_samples(_samples(cpu, base), _samples(cpu, [v * 1.2 for v in base]))
    assert drifted.p_value is not None and drifted.p_value < 0.01
    assert drifted.verdict is Verdict.NOISE and drifted.floor_pct == 30
    doubled = compare_samples(_samples(cpu, base), _samples(cpu, [v * 2 for v in base]))
    assert doubled.verdict is Verdict.WORSE and doubled.fails


def test_the_floor_is_symmetric_in_ratio() -> None:
    metric = Metric("x", "ms", floor_pct=100)
    base = [10.0, 10.1, 9.9, 10.0, 10.05]
    halved = compare_samples(_samples(metric, base), _samples(metric, [v / 2.2 for v in base]))
    doubled = compare_samples(_samples(metric, base), _samples(metric, [v * 2.2 for v in base]))
    assert halved.verdict is Verdict.BETTER and doubled.verdict is Verdict.WORSE


def test_worse_within_its_threshold_does_not_fail() -> None:
    base = [10.0, 10.1, 9.9, 10.0, 10.05]
    new = [v * 1.08 for v in base]
    result = compare_samples(_samples(LATENCY, base), _samples(LATENCY, new))
    assert result.verdict is Verdict.WORSE
    assert not result.fails
    loose = Settings(thresholds={"bot.*": 5})
    assert compare_samples(_samples(LATENCY, base), _samples(LATENCY, new), loose).fails


def test_three_repeats_per_side_are_too_few_to_call_anything() -> None:
    result = compare_samples(_samples(LATENCY, [1, 1, 1]), _samples(LATENCY, [9, 9, 9]))
    assert result.verdict is Verdict.FEW
    assert not result.fails


def test_a_count_that_must_be_zero_fails_on_any_non_zero_in_new() -> None:
    metric = Metric("checks.durability.failed", "repeats", must_be_zero=True)
    result = compare_samples(_samples(metric, [0] * 20), _samples(metric, [0, 0, 1]))
    assert result.verdict is Verdict.WORSE and result.fails
    fixed = compare_samples(_samples(metric, [1]), _samples(metric, [0]))
    assert fixed.verdict is Verdict.BETTER and not fixed.fails


def _one_benchmark(rounds: list[float], *, raw: bool) -> Samples:
    (samples,) = _bench_samples(make_benchmark({"x": rounds}, raw=raw))
    return samples


# 1,000 rounds of about 1 ms; the other side has 10% of its rounds at 3 ms, as one slow stretch
# of a run gives: the mean moves 20%, the median 0.1%.
STEADY = [1.0 + (i % 10) / 1000 for i in range(1000)]
OUTLIERS = [3.0 if i % 10 == 0 else v for i, v in enumerate(STEADY)]


def test_a_benchmark_without_rounds_is_judged_on_its_median_not_its_mean() -> None:
    result = compare_samples(_one_benchmark(STEADY, raw=False), _one_benchmark(OUTLIERS, raw=False))
    assert result.new_value == pytest.approx(result.base_value, rel=0.001)
    assert result.verdict is Verdict.NOISE and not result.fails
    assert result.method == "median, no rounds stored: floor only"


def test_a_benchmark_without_rounds_past_its_floor_is_worse() -> None:
    slower = [v * 2 for v in STEADY]
    result = compare_samples(_one_benchmark(STEADY, raw=False), _one_benchmark(slower, raw=False))
    assert result.change_pct == pytest.approx(100)
    assert result.verdict is Verdict.WORSE and result.fails
    assert result.p_value is None


def test_a_benchmark_with_rounds_is_judged_on_its_median_with_a_rank_test() -> None:
    outliers = compare_samples(_one_benchmark(STEADY, raw=True), _one_benchmark(OUTLIERS, raw=True))
    assert outliers.new_value == pytest.approx(outliers.base_value, rel=0.001)
    assert outliers.verdict is Verdict.NOISE
    assert outliers.method == "median, Mann-Whitney U on 1000/1000 rounds"
    slower = compare_samples(
        _one_benchmark(STEADY, raw=True), _one_benchmark([v * 2 for v in STEADY], raw=True)
    )
    assert slower.verdict is Verdict.WORSE and slower.p_value is not None


def _bench_samples(doc: dict[str, object]) -> list[Samples]:
    from harness.results.samples import benchmark_samples

    return list(benchmark_samples(doc).values())


# --- metric extraction ----------------------------------------------------------------------


def test_default_metric_set_of_a_report() -> None:
    found = report_samples(as_report(make_report(repeats=2)))
    assert found["bot.ticks_per_s"].metric.better == "higher"
    assert found["bot.ticks_per_s"].values == [5000.0, 5000.0]
    assert "groups.load-clients.latency.p99_ms" in found
    # violators exist to be denied: no throughput, no latency
    assert not any(name.startswith("groups.load-violators") for name in found)
    # the harness's own load workers are not the system under test
    assert "processes.load-clients-0.cpu_s" not in found
    assert found["processes.bot.cpu_s"].values == [1.15, 1.15]
    assert found["checks.durability.failed"].metric.must_be_zero
    assert found["permissions.not_denied"].values == [0.0, 0.0]


def test_repeats_of_different_variants_never_pool() -> None:
    report = make_report(
        repeats=2,
        variants=["seed", "legacy"],
        metrics={"bot.ticks_per_s": [1000.0, 2000.0]},
    )
    seed = report_samples(as_report(report), variant="seed")
    assert seed["bot.ticks_per_s"].values == [1000.0, 2000.0]
    assert report_samples(as_report(report), variant=None) == {}


def test_a_report_missing_a_field_names_it() -> None:
    report = make_report()
    del report["repeats"][0]["metrics"]["bot"]
    with pytest.raises(
        ReportFormatError, match=r"r\.json: .*repeats\[0\]\.metrics: field 'bot' is missing"
    ):
        Report.from_json(report, "r.json")


# --- inputs ---------------------------------------------------------------------------------


def _five(values: list[float]) -> dict[str, list[float]]:
    return {"bot.ticks_per_s": values}


def test_reports_of_different_scenarios_are_refused_naming_both(tmp_path: Path) -> None:
    base = write_report(make_report(name="default"), tmp_path / "a")
    new = write_report(make_report(name="targets"), tmp_path / "b")
    with pytest.raises(ComparisonError, match=r"scenario 'default'.*scenario 'targets'"):
        compare_paths([base], [new])


def test_an_unsupported_report_version_is_refused(tmp_path: Path) -> None:
    base = write_report(make_report(), tmp_path / "a")
    new = write_report(make_report(version=99), tmp_path / "b")
    with pytest.raises(ReportFormatError, match="version 99 is not supported"):
        compare_paths([base], [new])


def test_a_file_that_is_neither_kind_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ReportFormatError, match="neither a splitdb report"):
        compare_paths([odd], [odd])


def test_different_machines_give_a_warning_not_a_refusal(tmp_path: Path) -> None:
    base = write_report(make_report(hostname="laptop"), tmp_path / "a")
    new = write_report(make_report(hostname="ci-runner"), tmp_path / "b")
    comparison = compare_paths([base], [new])
    (group,) = comparison.groups
    assert any("different machines" in w and "ci-runner" in w for w in group.warnings)


def test_changed_scenario_settings_are_named_in_a_warning(tmp_path: Path) -> None:
    base = write_report(make_report(), tmp_path / "a")
    slow = make_report(settings={"processes": {"bot": {"batch_size": 1}}})
    new = write_report(slow, tmp_path / "b")
    (group,) = compare_paths([base], [new]).groups
    assert any("processes.bot.batch_size 500 -> 1" in w for w in group.warnings)


def test_a_directory_of_runs_pools_each_scenario(tmp_path: Path) -> None:
    runs = tmp_path / "reports"
    for i in range(3):
        write_report(make_report(repeats=2), runs / f"default-{i}")
    write_report(make_report(name="targets"), runs / "targets-0")
    new = write_report(make_report(repeats=5), tmp_path / "new")
    comparison = compare_paths([runs], [new.parent])
    (group,) = comparison.groups
    assert group.name == "default"
    assert group.base_samples == 6 and len(group.base_sources) == 3
    assert any("'targets' is only in BASE" in w for w in comparison.warnings)


def test_several_new_runs_pool_their_repeats(tmp_path: Path) -> None:
    base = write_report(make_report(repeats=5), tmp_path / "base")
    news = [write_report(make_report(repeats=2), tmp_path / f"new{i}") for i in range(3)]
    (group,) = compare_paths([base], news).groups
    ticks = next(r for r in group.results if r.name == "bot.ticks_per_s")
    assert ticks.new.count == 6


def test_variants_are_compared_arm_by_arm(tmp_path: Path) -> None:
    arms = ["seed", "legacy"]
    base = write_report(make_report(repeats=5, variants=arms), tmp_path / "a")
    new = write_report(make_report(repeats=5, variants=arms), tmp_path / "b")
    groups = compare_paths([base], [new]).groups
    assert [g.variant for g in groups] == arms
    assert all(g.new_samples == 5 for g in groups)


# --- thresholds -----------------------------------------------------------------------------


def test_thresholds_file_sets_alpha_min_change_and_patterns(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        'alpha = 0.05\nmin_change = 2\n[thresholds]\n"*" = 20\n"groups.*.latency.p99_ms" = 50\n'
        '"groups.load-clients.latency.p99_ms" = 30\n'
    )
    loaded = load_thresholds(path)
    s = Settings(alpha=loaded["alpha"], thresholds=loaded["thresholds"])
    assert s.threshold_for(Metric("groups.load-clients.latency.p99_ms", "ms")) == 30
    assert s.threshold_for(Metric("groups.load-readers.latency.p99_ms", "ms")) == 50
    assert s.threshold_for(THROUGHPUT) == 20
    assert loaded["min_change"] == 2


def test_without_thresholds_each_metric_uses_its_own_default() -> None:
    found = report_samples(as_report(make_report()))
    s = Settings()
    assert s.threshold_for(found["bot.ticks_per_s"].metric) == 10
    assert s.threshold_for(found["processes.bot.cpu_s"].metric) == 35
    assert s.floor_for(found["processes.bot.cpu_s"].metric) == 30
    assert Settings(min_change_pct=1).floor_for(found["processes.bot.cpu_s"].metric) == 1


def test_thresholds_file_sets_floors_per_metric(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[floors]\n"bench.*" = 60\n')
    loaded = load_thresholds(path)
    s = Settings(min_change_pct=1, floors=loaded["floors"])
    assert s.floor_for(Metric("bench.test_update", "s")) == 60
    assert s.floor_for(THROUGHPUT) == 1


def test_a_bad_thresholds_file_names_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('alhpa = 0.05\n[thresholds]\n"bot.ticks_per_s" = "ten"\n')
    with pytest.raises(ThresholdError) as error:
        load_thresholds(path)
    assert error.value.problems == [
        "alhpa: unknown key; use one of alpha, min_change, thresholds, floors",
        "thresholds.'bot.ticks_per_s': must be a finite percentage >= 0, such as 10 (got 'ten')",
    ]


def test_threshold_flag_needs_metric_equals_percent() -> None:
    assert parse_threshold_flag("bot.ticks_per_s=12.5") == ("bot.ticks_per_s", 12.5)
    with pytest.raises(ThresholdError, match="expected METRIC=PCT"):
        parse_threshold_flag("bot.ticks_per_s")
    with pytest.raises(ThresholdError, match="PCT must be a number"):
        parse_threshold_flag("bot.ticks_per_s=ten")


# --- the command ----------------------------------------------------------------------------


def _pair(tmp_path: Path, base: list[float], new: list[float]) -> tuple[Path, Path]:
    a = write_report(make_report(repeats=len(base), metrics=_five(base)), tmp_path / "a")
    b = write_report(make_report(repeats=len(new), metrics=_five(new)), tmp_path / "b")
    return a, b


def test_cli_exit_0_when_within_noise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _pair(tmp_path, [5000, 5010, 4990, 5005, 4995], [5002, 4991, 5008, 4999, 5003])
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "bot.ticks_per_s" in out and "within noise" in out
    assert "Mann-Whitney U" in out
    assert "result: ok" in out


def test_cli_exit_1_when_a_metric_is_worse_past_its_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _pair(tmp_path, [5000, 5010, 4990, 5005, 4995], [2500, 2510, 2490, 2505, 2495])
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "worse (FAILS)" in out
    assert "result: FAIL, worse past threshold: bot.ticks_per_s -50.0% (threshold -10%" in out
    # a generous threshold lets the same change pass
    assert main(["compare", str(a), str(b), "--threshold", "bot.ticks_per_s=60"]) == 0


def test_cli_exit_1_when_new_fails_a_check_base_passed(tmp_path: Path) -> None:
    a = write_report(make_report(repeats=5), tmp_path / "a")
    b = write_report(make_report(repeats=5, failed={"durability": [3]}), tmp_path / "b")
    assert main(["compare", str(a), str(b)]) == 1


def test_cli_exit_2_with_one_line_for_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_report(make_report(name="default"), tmp_path / "a")
    b = write_report(make_report(name="targets"), tmp_path / "b")
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("splitdb: error: nothing in common to compare")
    assert len(err.strip().splitlines()) == 1
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2


def test_cli_compares_pytest_benchmark_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base.json"
    new = tmp_path / "new.json"
    rounds = [0.001 + i * 1e-6 for i in range(50)]
    base.write_text(json.dumps(make_benchmark({"test_update": rounds, "test_read": rounds})))
    slower = [v * 1.5 for v in rounds]
    new.write_text(json.dumps(make_benchmark({"test_update": slower, "test_read": rounds})))
    assert main(["compare", str(base), str(new)]) == 1
    out = capsys.readouterr().out
    assert "pytest-benchmark" in out
    assert "bench.test_update" in out and "+50.0%" in out
    update = [line for line in out.splitlines() if line.lstrip().startswith("bench.test_read")]
    assert "within noise" in update[0]


def test_cli_warns_about_a_threshold_that_matches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _pair(tmp_path, [1, 2, 3], [1, 2, 3])
    main(["compare", str(a), str(b), "--threshold", "bot.tick_per_s=5"])
    assert "threshold 'bot.tick_per_s' matches no compared metric" in capsys.readouterr().err


def test_text_output_lists_warnings_and_hides_zero_counts(tmp_path: Path) -> None:
    a, b = _pair(tmp_path, [1, 2, 3], [1, 2, 3])
    text = format_text(compare_paths([a], [b]))
    assert "too few samples" in text and "needs 5 per side" in text
    assert "checks.durability.failed" not in text
    assert "checks.durability.failed" in format_text(compare_paths([a], [b]), show_all=True)


def test_cli_exit_2_for_benchmark_files_with_no_benchmark_in_common(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base.json"
    new = tmp_path / "new.json"
    rounds = [0.001 + i * 1e-6 for i in range(20)]
    base.write_text(json.dumps(make_benchmark({"test_update": rounds})))
    new.write_text(json.dumps(make_benchmark({"test_read": rounds})))
    assert main(["compare", str(base), str(new)]) == 2
    captured = capsys.readouterr()
    assert "result: ok" not in captured.out
    (line,) = captured.err.strip().splitlines()
    assert str(base) in line and str(new) in line
    assert "test_update" in line and "test_read" in line


def test_each_row_names_the_statistic_and_the_test_it_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rounds = [0.001 + i * 1e-6 for i in range(50)]
    for raw, method in (
        (True, "median, Mann-Whitney U on 50/50 rounds"),
        (False, "median, no rounds stored: floor only"),
    ):
        base, new = tmp_path / f"base-{raw}.json", tmp_path / f"new-{raw}.json"
        base.write_text(json.dumps(make_benchmark({"test_update": rounds}, raw=raw)))
        new.write_text(json.dumps(make_benchmark({"test_update": rounds}, raw=raw)))
        assert main(["compare", str(base), str(new)]) == 0
        out = capsys.readouterr().out
        (row,) = [line for line in out.splitlines() if line.startswith("  bench.test_update")]
        assert row.rstrip().endswith(method)
        if not raw:
            assert "Mann-Whitney" not in out and "Welch" not in out
    a, b = _pair(tmp_path, [5000, 5010, 4990, 5005, 4995], [5002, 4991, 5008, 4999, 5003])
    assert main(["compare", str(a), str(b)]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if "ticks_per_s" in line]
    assert row.rstrip().endswith("median, Mann-Whitney U on 5/5 repeats")


def _floors_file(tmp_path: Path, floor: float) -> Path:
    path = tmp_path / f"floors-{floor:g}.toml"
    path.write_text(f'[floors]\n"bench.test_update" = {floor}\n')
    return path


def test_a_benchmark_change_counts_only_past_its_calibrated_floor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    rounds = [0.001 + i * 1e-6 for i in range(50)]
    base.write_text(json.dumps(make_benchmark({"test_update": rounds})))
    new.write_text(json.dumps(make_benchmark({"test_update": [v * 1.3 for v in rounds]})))
    # +30%, every round slower (p < 0.001): drift on a machine whose floor is 40%, a regression
    # on one whose floor is 20%
    assert main(["compare", str(base), str(new), "--floors", str(_floors_file(tmp_path, 40))]) == 0
    assert "within noise" in capsys.readouterr().out
    assert main(["compare", str(base), str(new), "--floors", str(_floors_file(tmp_path, 20))]) == 1
    assert "worse (FAILS)" in capsys.readouterr().out


def test_floors_flag_wins_over_the_thresholds_file_and_min_change_fills_the_rest(
    tmp_path: Path,
) -> None:
    thresholds = tmp_path / "t.toml"
    thresholds.write_text('[floors]\n"bench.*" = 10\n"bench.test_update" = 15\n')
    s = settings_from_flags(
        thresholds_file=thresholds, min_change=3, floors_file=_floors_file(tmp_path, 40)
    )
    assert s.floor_for(Metric("bench.test_update", "s")) == 40
    assert s.floor_for(Metric("bench.test_read", "s")) == 10
    assert s.floor_for(THROUGHPUT) == 3


def test_benchmarks_without_a_calibrated_floor_are_named_in_a_warning(tmp_path: Path) -> None:
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    rounds = [0.001 + i * 1e-6 for i in range(20)]
    for path in (base, new):
        path.write_text(json.dumps(make_benchmark({"test_update": rounds, "test_read": rounds})))
    floors = {"bench.test_update": 40.0}
    (group,) = compare_paths([base], [new], Settings(floors=floors)).groups
    (warning,) = [w for w in group.warnings if "calibrated floor" in w]
    assert "bench.test_read" in warning and "bench.test_update" not in warning
