"""The benchmark gate's verdict on saved inputs: pooled base rounds against pooled head rounds.

No process starts here: the inputs are written as `splitdb bench` lays them out, with values that
stand for what the sides measured.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.bench.rounds import MICRO_FLAGS, Plan, micro_command, side_env, side_order
from harness.bench.sources import Tree
from harness.results.comparison import Settings
from harness.results.gate import gate_inputs, gate_markdown, judge
from harness.results.markdown import append_step_summary
from tests.fixtures.reports import make_benchmark, make_report, write_report

FLOORS = {"bench.*": 20.0, "bot.ticks_per_s": 8.0}


def _rounds(centre: float, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [centre * (1 + rng.uniform(-0.02, 0.02)) for _ in range(count)]


def _gate(
    tmp_path: Path,
    *,
    benchmarks: Mapping[str, Mapping[str, float]] | None = None,
    scenario: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    rounds: int = 5,
) -> Path:
    """A gate directory: per side, benchmark centres ({name: seconds}) and scenario metrics
    ({dotted path: one value per round}); each round's values jitter by 2%."""
    gate = tmp_path / "gate"
    for s, side in enumerate(("base", "head")):
        for index in range(1, rounds + 1):
            round_dir = gate / side / f"round-{index}"
            round_dir.mkdir(parents=True)
            if benchmarks is not None:
                data = {
                    name: _rounds(centre, 7, seed=100 * s + index)
                    for name, centre in benchmarks[side].items()
                }
                (round_dir / "micro.json").write_text(json.dumps(make_benchmark(data)))
            if scenario is not None:
                metrics = {path: [v[index - 1]] for path, v in scenario[side].items()}
                report = make_report(name="bench", repeats=1, metrics=metrics)
                write_report(report, round_dir / "scenario" / f"bench-{side}-{index}")
    (gate / "gate.json").write_text("{}")
    return gate


def _judged(gate: Path, floors: Mapping[str, float] = FLOORS) -> Any:
    inputs = gate_inputs(gate)
    return judge(inputs["base"], inputs["head"], Settings(floors=dict(floors)))


def test_gate_inputs_are_each_sides_rounds_in_round_order(tmp_path: Path) -> None:
    gate = _gate(
        tmp_path,
        benchmarks={"base": {"test_a": 1.0}, "head": {"test_a": 1.0}},
        scenario={"base": {"bot.ticks_per_s": [1.0] * 12}, "head": {"bot.ticks_per_s": [1.0] * 12}},
        rounds=12,
    )
    inputs = gate_inputs(gate)
    micro = [p for p in inputs["head"] if p.name == "micro.json"]
    assert [p.parent.name for p in micro] == [f"round-{i}" for i in range(1, 13)]
    assert len(inputs["base"]) == 24 and all(
        p.name == "micro.json" or (p / "report.json").is_file() for p in inputs["base"]
    )


def test_an_unchanged_head_passes_the_gate(tmp_path: Path) -> None:
    same = {"test_a": 0.010, "test_b": 0.250}
    ticks = [300_000.0, 290_000.0, 310_000.0, 305_000.0, 295_000.0]
    gate = _gate(
        tmp_path,
        benchmarks={"base": same, "head": same},
        scenario={"base": {"bot.ticks_per_s": ticks}, "head": {"bot.ticks_per_s": ticks[::-1]}},
    )
    result = _judged(gate)
    assert not result.failed, result.result_line()
    assert result.lost == ()


def test_a_benchmark_twice_as_slow_on_the_head_fails_the_gate_naming_it(tmp_path: Path) -> None:
    gate = _gate(
        tmp_path,
        benchmarks={
            "base": {"test_a": 0.010, "test_b": 0.250},
            "head": {"test_a": 0.020, "test_b": 0.250},
        },
    )
    result = _judged(gate)
    assert result.failed
    assert [r.name for g in result.comparison.groups for r in g.failures] == ["bench.test_a"]
    assert "bench.test_a +100" in result.result_line()


def test_a_change_inside_its_floor_passes_even_when_significant(tmp_path: Path) -> None:
    # 12% slower, every round: the rank test is sure, but the gate's floor for it is 20%.
    gate = _gate(
        tmp_path,
        benchmarks={"base": {"test_a": 0.010}, "head": {"test_a": 0.0112}},
    )
    result = _judged(gate)
    (row,) = result.comparison.groups[0].results
    assert row.p_value is not None and row.p_value < 0.01
    assert not result.failed


def test_a_bot_slowed_by_a_sleep_per_batch_fails_on_its_ticks_per_s(tmp_path: Path) -> None:
    base = [300_000.0, 290_000.0, 310_000.0, 305_000.0, 295_000.0]
    gate = _gate(
        tmp_path,
        scenario={
            "base": {"bot.ticks_per_s": base, "bot.commit_latency.p50_ms": [1.3] * 5},
            "head": {
                "bot.ticks_per_s": [v * 0.6 for v in base],
                "bot.commit_latency.p50_ms": [3.3, 3.4, 3.2, 3.3, 3.5],
            },
        },
    )
    result = _judged(gate)
    failing = {r.name for g in result.comparison.groups for r in g.failures}
    assert failing == {"bot.ticks_per_s", "bot.commit_latency.p50_ms"}


def test_a_head_whose_bot_committed_nothing_fails_as_lost(tmp_path: Path) -> None:
    # No commits: the report has no bot figures at all, which compare shows as "not on both
    # sides". A gate reading that as a pass would wave through a bot that does nothing.
    base = [300_000.0, 290_000.0, 310_000.0, 305_000.0, 295_000.0]
    gate = _gate(
        tmp_path,
        scenario={"base": {"bot.ticks_per_s": base}, "head": {"bot.commits": [0] * 5}},
    )
    result = _judged(gate)
    assert not result.comparison.failed
    assert result.failed
    assert "bot.ticks_per_s (5 -> 0 repeats)" in result.lost
    assert result.result_line().startswith("result: FAIL, not measured on the head: ")


def test_a_benchmark_only_on_the_head_is_shown_not_judged(tmp_path: Path) -> None:
    gate = _gate(
        tmp_path,
        benchmarks={"base": {"test_a": 0.01}, "head": {"test_a": 0.01, "test_new": 0.5}},
    )
    result = _judged(gate)
    assert not result.failed
    names = {r.name: r.verdict.value for g in result.comparison.groups for r in g.results}
    assert names["bench.test_new"] == "not on both sides"


def test_the_summary_names_the_gate_the_failing_row_and_goes_to_the_step_summary(
    tmp_path: Path,
) -> None:
    gate = _gate(tmp_path, benchmarks={"base": {"test_a": 0.010}, "head": {"test_a": 0.030}})
    text = gate_markdown(_judged(gate), title="base `abc` against head", notes=["5 rounds"])
    first, *_ = text.splitlines()
    assert first == "## ❌ splitdb bench: FAIL: base `abc` against head"
    assert "- 5 rounds" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| `bench.test_a`")]
    assert "**FAILS**" in row
    summary = tmp_path / "step-summary.md"
    append_step_summary(text, {"GITHUB_STEP_SUMMARY": str(summary)})
    assert summary.read_text(encoding="utf-8").startswith(first)


def test_rounds_alternate_which_side_goes_first() -> None:
    assert side_order(4) == [
        (1, "base"),
        (1, "head"),
        (2, "head"),
        (2, "base"),
        (3, "base"),
        (3, "head"),
        (4, "head"),
        (4, "base"),
    ]


def test_each_side_runs_the_micro_benchmarks_as_tox_always_did(tmp_path: Path) -> None:
    command = micro_command(tmp_path / "m.json", ["-k", "ingest"])
    assert command[1:4] == ["-m", "pytest", "tests/benchmarks"]
    flags = " ".join(command)
    assert " ".join(MICRO_FLAGS) in flags
    assert "-p no:xdist --benchmark-only --benchmark-timer time.process_time" in flags
    assert f"--benchmark-json={tmp_path / 'm.json'}" in command
    assert command[-2:] == ["-k", "ingest"]


def test_a_side_runs_its_own_tree_first_on_the_path(tmp_path: Path) -> None:
    tree = Tree("base", tmp_path / "base", "abc", "abc")
    given = {"PYTHONPATH": "/elsewhere", "HOME": "/root", "PYTEST_XDIST_WORKER": "gw1"}
    env = side_env(tree, {**given, "GITHUB_STEP_SUMMARY": "/job/summary.md"})
    assert env["PYTHONPATH"].split(":") == [str(tmp_path / "base"), "/elsewhere"]
    # A gate started from a test under xdist: its sides' pytest must not think xdist is on.
    assert "PYTEST_XDIST_WORKER" not in env and env["HOME"] == "/root"
    # The job's page gets the gate's summary, not one more per scenario run of a side.
    assert "GITHUB_STEP_SUMMARY" not in env
    assert side_env(tree, {})["PYTHONPATH"] == str(tmp_path / "base")


@pytest.mark.parametrize(
    ("micro", "scenario", "parts"),
    [(True, Path("s.toml"), ("micro", "scenario")), (False, Path("s.toml"), ("scenario",))],
)
def test_a_plan_runs_the_parts_that_are_on(
    micro: bool, scenario: Path | None, parts: tuple[str, ...]
) -> None:
    assert Plan(rounds=5, micro=micro, scenario=scenario).parts == parts
    assert Plan(rounds=5).parts == ("micro",)
