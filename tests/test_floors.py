"""Benchmark floors: calibrated from runs of unchanged code, written down, and read back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.errors import ComparisonError, ThresholdError
from harness.results.floors import FALSE_ALARM, calibrate, load_floors, safety_factor
from tests.fixtures.benchmark_names import collected_benchmark_names
from tests.fixtures.reports import make_benchmark, make_report, write_report

ROOT = Path(__file__).resolve().parents[1]


def _runs(tmp_path: Path, medians: dict[str, list[float]]) -> list[Path]:
    """One benchmark file per run; each benchmark's rounds sit tightly around its run median."""
    count = len(next(iter(medians.values())))
    paths = []
    for run in range(count):
        path = tmp_path / f"run{run}.json"
        rounds = {
            name: [m[run] * (1 + d) for d in (-0.001, 0.0, 0.001)] for name, m in medians.items()
        }
        path.write_text(json.dumps(make_benchmark(rounds)))
        paths.append(path)
    return paths


@pytest.mark.parametrize("runs", [4, 5, 10])
def test_safety_factor_lets_one_unchanged_pair_in_a_thousand_cross_the_floor(runs: int) -> None:
    # The claim behind every floor: run medians vary log-normally; calibrate on `runs` of them;
    # then two new runs differ by more than the floor once in 1/FALSE_ALARM comparisons.
    rng = np.random.default_rng(runs)
    trials = 1_000_000
    calibration = rng.standard_normal((trials, runs))
    spread = calibration.max(axis=1) - calibration.min(axis=1)  # log of largest/smallest
    pair = np.abs(rng.standard_normal(trials) - rng.standard_normal(trials))
    crossed = float(np.mean(pair > safety_factor(runs) * spread))
    assert crossed == pytest.approx(FALSE_ALARM, rel=0.15)


def test_more_calibration_runs_give_a_smaller_safety_factor() -> None:
    factors = [safety_factor(n) for n in (3, 5, 10, 20)]
    assert factors == sorted(factors, reverse=True)
    assert factors[-1] > 1


def test_a_floor_is_the_largest_median_change_raised_to_the_safety_factor(
    tmp_path: Path,
) -> None:
    paths = _runs(tmp_path, {"test_a": [1.0, 1.1, 1.05], "test_b": [2.0, 2.0, 2.0]})
    result = calibrate(paths)
    assert result.largest_change_pct["bench.test_a"] == pytest.approx(10)
    expected = math.ceil(100 * (1.1 ** safety_factor(3) - 1))
    assert result.floors["bench.test_a"] == expected
    assert result.floors["bench.test_b"] == 0


def test_one_slow_round_does_not_move_a_runs_median(tmp_path: Path) -> None:
    paths = _runs(tmp_path, {"test_a": [1.0, 1.0, 1.0]})
    doc = json.loads(paths[0].read_text())
    doc["benchmarks"][0]["stats"]["data"][0] = 50.0
    paths[0].write_text(json.dumps(doc))
    assert calibrate(paths).largest_change_pct["bench.test_a"] == pytest.approx(0, abs=0.2)


def test_calibration_needs_three_runs(tmp_path: Path) -> None:
    paths = _runs(tmp_path, {"test_a": [1.0, 1.1]})
    with pytest.raises(ComparisonError, match=r"at least 3 runs .*\(got 2\)"):
        calibrate(paths)


def test_calibration_refuses_a_report(tmp_path: Path) -> None:
    paths = _runs(tmp_path, {"test_a": [1.0, 1.1, 1.0]})
    report = write_report(make_report(), tmp_path / "r")
    with pytest.raises(ComparisonError, match=r"report\.json is a splitdb report"):
        calibrate([*paths, report])


def test_a_benchmark_missing_from_a_run_gets_no_floor_and_is_named(tmp_path: Path) -> None:
    paths = _runs(tmp_path, {"test_a": [1.0, 1.1, 1.0], "test_b": [1.0, 1.0, 1.0]})
    doc = json.loads(paths[1].read_text())
    doc["benchmarks"] = doc["benchmarks"][:1]
    paths[1].write_text(json.dumps(doc))
    result = calibrate(paths)
    assert list(result.floors) == ["bench.test_a"]
    assert result.skipped == ("bench.test_b",)


def test_calibrate_writes_a_floors_file_that_says_how_it_was_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _runs(tmp_path, {"test_a": [1.0, 1.1, 1.05, 1.02]})
    out = tmp_path / "floors.toml"
    argv = ["compare", "--calibrate", *map(str, paths), "--write-floors", str(out)]
    assert main(argv) == 0
    text = out.read_text()
    assert f"splitdb compare --calibrate {paths[0]}" in text.splitlines()[1]
    assert "4 runs" in text
    assert load_floors(out) == calibrate(paths).floors
    assert str(out) in capsys.readouterr().out


def test_calibrate_without_write_floors_prints_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _runs(tmp_path, {"test_a": [1.0, 1.1, 1.05]})
    assert main(["compare", "--calibrate", *map(str, paths)]) == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(capsys.readouterr().out)
    assert load_floors(printed) == calibrate(paths).floors


def test_write_floors_without_calibrate_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _runs(tmp_path, {"test_a": [1.0, 1.1, 1.05]})
    argv = ["compare", *map(str, paths[:2]), "--write-floors", str(tmp_path / "f.toml")]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--write-floors" in line and "--calibrate" in line


def test_a_bad_floors_file_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "floors.toml"
    path.write_text('[floors]\n"bench.test_a" = -3\n[flors]\n')
    with pytest.raises(ThresholdError) as error:
        load_floors(path)
    assert error.value.problems == [
        "flors: unknown key; use one of runs, safety_factor, largest_change, floors",
        "floors.'bench.test_a': must be a finite percentage >= 0, such as 10 (got -3)",
    ]


@pytest.mark.slow
def test_every_benchmark_has_a_floor_in_the_repo_file_that_says_how_it_was_made() -> None:
    path = ROOT / "tests" / "benchmarks" / "floors.toml"
    names = collected_benchmark_names()
    assert len(names) >= 15
    assert set(load_floors(path)) == names
    header = path.read_text().splitlines()[:3]
    assert header[1].startswith("# Written by: splitdb compare --calibrate ")
    assert header[2].startswith("# On 20")
