"""The gate's floors: calibrated from gates of unchanged code, written down, read back."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.errors import ComparisonError
from harness.results.floors import FALSE_ALARM, load_floors
from harness.results.pair_floors import calibrate_pairs, pair_floors_toml, pair_safety_factor
from tests.fixtures.benchmark_names import collected_benchmark_names
from tests.fixtures.reports import make_benchmark, make_report, write_report


def _aa_gate(root: Path, name: str, base: float, head: float, ticks: tuple[float, float]) -> Path:
    """A gate directory of 5 rounds a side: one benchmark and the bot's ticks/s."""
    gate = root / name
    for side, centre, rate in (("base", base, ticks[0]), ("head", head, ticks[1])):
        for index in range(1, 6):
            round_dir = gate / side / f"round-{index}"
            round_dir.mkdir(parents=True)
            rounds = [centre * (1 + d) for d in (-0.001, 0.0, 0.001)]
            (round_dir / "micro.json").write_text(json.dumps(make_benchmark({"test_a": rounds})))
            report = make_report(name="bench", repeats=1, metrics={"bot.ticks_per_s": [rate]})
            write_report(report, round_dir / "scenario" / f"run-{side}-{index}")
    (gate / "gate.json").write_text("{}")
    return gate


@pytest.mark.parametrize("gates", [5, 10])
def test_the_safety_factor_gives_one_false_alarm_in_a_thousand(gates: int) -> None:
    # The model: each gate's log ratio is sigma * Z. Simulate calibrations and later gates.
    factor = pair_safety_factor(gates)
    rng = np.random.default_rng(7)
    z = rng.standard_normal((1_000_000, gates + 1))
    largest = np.abs(z[:, :gates]).max(axis=1)
    crossed = float(np.mean(np.abs(z[:, gates]) > factor * largest))
    assert crossed == pytest.approx(FALSE_ALARM, rel=0.15)


def test_more_gates_need_less_margin() -> None:
    factors = [pair_safety_factor(k) for k in (3, 5, 10, 20)]
    assert factors == sorted(factors, reverse=True)
    assert round(factors[1], 2) == 4.38 and round(factors[2], 2) == 2.56


def test_floors_come_from_the_largest_ratio_of_the_pooled_medians(tmp_path: Path) -> None:
    gates = [
        _aa_gate(tmp_path, "g1", 1.00, 1.02, (300_000, 303_000)),
        _aa_gate(tmp_path, "g2", 1.00, 0.97, (300_000, 297_000)),
        _aa_gate(tmp_path, "g3", 1.01, 1.00, (300_000, 306_000)),
        _aa_gate(tmp_path, "g4", 1.00, 1.00, (300_000, 300_000)),
        _aa_gate(tmp_path, "g5", 1.00, 1.01, (300_000, 299_000)),
    ]
    calibration = calibrate_pairs(gates)
    f = pair_safety_factor(5)
    assert calibration.factor == f
    ratio = 1.0 / 0.97
    assert calibration.ratios["bench.test_a"][1] == pytest.approx(ratio)
    assert calibration.floors["bench.test_a"] == math.ceil(100 * (ratio**f - 1))
    assert calibration.floors["bot.ticks_per_s"] == math.ceil(100 * (1.02**f - 1))
    assert calibration.largest_change_pct("bot.ticks_per_s") == pytest.approx(2.0)
    # Zero in every gate (no busy errors): no ratio, no floor.
    assert "contention.busy_events" in calibration.skipped


def test_the_floors_file_reads_back_as_floors(tmp_path: Path) -> None:
    gates = [_aa_gate(tmp_path, f"g{i}", 1.0, 1.0 + i / 100, (300_000, 300_000)) for i in range(3)]
    text = pair_floors_toml(
        calibrate_pairs(gates), command="splitdb bench --calibrate g0 g1 g2", when=datetime.now(UTC)
    )
    path = tmp_path / "gate-floors.toml"
    path.write_text(text)
    floors = load_floors(path)
    assert floors["bench.test_a"] == math.ceil(100 * (1.02 ** pair_safety_factor(3) - 1))
    # The fixture's other figures are the same in every round: their floor is 0.
    assert floors["bot.ticks_per_s"] == 0 and floors["processes.bot.cpu_s"] == 0
    assert "# Written by: splitdb bench --calibrate g0 g1 g2" in text


def test_calibration_refuses_too_few_gates_and_directories_that_are_not_gates(
    tmp_path: Path,
) -> None:
    gates = [_aa_gate(tmp_path, f"g{i}", 1.0, 1.0, (1.0, 1.0)) for i in range(2)]
    with pytest.raises(ComparisonError, match="at least 3 gates"):
        calibrate_pairs(gates)
    with pytest.raises(ComparisonError, match="not a gate directory"):
        calibrate_pairs([*gates, tmp_path])


def test_bench_calibrate_writes_the_floors_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gates = [_aa_gate(tmp_path, f"g{i}", 1.0, 1.0 + i / 100, (300_000, 300_000)) for i in range(3)]
    target = tmp_path / "out" / "gate-floors.toml"
    argv = ["bench", "--calibrate", *map(str, gates), "--write-floors", str(target)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"floors written to {target}: 3 gates" in out
    assert "bench.test_a" in load_floors(target)


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_benchmark_and_bot_figure_has_a_gate_floor_that_says_how_it_was_made() -> None:
    path = ROOT / "tests" / "benchmarks" / "gate-floors.toml"
    names = collected_benchmark_names()
    floors = load_floors(path)
    assert names <= set(floors)
    assert {"bot.ticks_per_s", "bot.commit_latency.p50_ms"} <= set(floors)
    header = path.read_text(encoding="utf-8").splitlines()[:4]
    assert header[2].startswith("# Written by: splitdb bench --calibrate ")
    assert header[3].startswith("# On 20")
