"""`splitdb replay`: scripts and traces replay to the same outcomes; reports to the same checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.interleavings.trace import TRACE_SCHEMA
from harness.runs.run import run_scenario
from harness.runs.scenario import parse_scenario
from reference.topology import load_topology

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "interleavings"


@pytest.mark.slow
def test_replaying_a_script_states_each_run_and_exits_0(tmp_path: Path, capsys: Any) -> None:
    script = LIBRARY / "legacy-busy-snapshot.toml"
    assert main(["replay", str(script), "--times", "2", "--out", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "run 1: every expectation matched (9 steps" in out
    assert "run 2: every expectation matched (9 steps" in out
    assert "legacy-busy-snapshot: 2 of 2 runs matched every expectation" in out
    assert "busy_snapshot (517)" in out
    trace = json.loads((tmp_path / "t.json").read_text())
    assert trace["schema"] == TRACE_SCHEMA and trace["summary"] == {"runs": 2, "matched": 2}
    step = trace["runs"][0]["steps"][3]
    assert (step["outcome"], step["code"], step["process"]) == ("busy_snapshot", 517, "agent")
    assert trace["script"]["text"] == script.read_text()


@pytest.mark.slow
def test_a_script_whose_expectation_does_not_hold_exits_1(tmp_path: Path, capsys: Any) -> None:
    text = (LIBRARY / "legacy-busy-snapshot.toml").read_text()
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(text.replace('topology = "legacy"', 'topology = "seed"'))
    assert main(["replay", str(wrong), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "run 1: MISMATCH" in out
    assert "step[3] agent sql: outcome ok, expected busy_snapshot; code None, expected 517" in out
    assert "wrong: 0 of 1 runs matched every expectation" in out


@pytest.mark.slow
def test_a_trace_replays_without_the_script_or_its_topology_file(
    tmp_path: Path, capsys: Any
) -> None:
    (tmp_path / "mine.toml").write_text(load_topology("legacy").to_toml())
    script = tmp_path / "script.toml"
    text = (LIBRARY / "busy-timeout-wait.toml").read_text()
    script.write_text(text.replace('topology = "legacy"', 'topology = "mine.toml"'))
    trace = tmp_path / "out" / "trace.json"
    assert main(["replay", str(script), "--quiet", "--out", str(trace)]) == 0
    script.unlink()
    (tmp_path / "mine.toml").unlink()
    capsys.readouterr()
    assert main(["replay", str(trace), "--quiet"]) == 0
    assert "1 of 1 runs matched every expectation" in capsys.readouterr().out


def _writers(topology: str) -> dict[str, Any]:
    """No reference processes: one extra writer per role, each on its own database."""
    return {
        "name": "writers",
        "topology": topology,
        "settings": {"busy_timeout_ms": 0},
        "duration": 1,
        "processes": {
            "bot": {"enabled": False},
            "agent": {"enabled": False},
            "api": {"enabled": False},
        },
        "load": [
            {"kind": "writer", "role": role, "database": db, "rows": 5, "rate": 50, "name": role}
            for role, db in (("bot", "ticks"), ("agent", "analysis"), ("api", "logs"))
        ],
    }


@pytest.mark.slow
def test_a_report_replays_to_the_same_checks_even_when_its_topology_file_is_gone(
    tmp_path: Path, capsys: Any
) -> None:
    topology = tmp_path / "scenario-dir" / "my-seed.toml"
    topology.parent.mkdir()
    topology.write_text(load_topology("seed").to_toml())
    scenario = parse_scenario(_writers("my-seed.toml"), base_dir=topology.parent)
    original = run_scenario(scenario, out_dir=tmp_path / "reports", base_dir=topology.parent)
    shutil.rmtree(topology.parent)
    capsys.readouterr()
    code = main(["replay", str(original.path.parent), "--quiet", "--out", str(tmp_path / "again")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "replay 1: same checks (" in out
    assert "writers: 1 of 1 replays gave the recorded checks" in out
    (replayed,) = (tmp_path / "again").glob("*/report.json")
    report = json.loads(replayed.read_text())
    assert report["scenario"]["seed"] == original.report.scenario.seed
    assert report["repeats"][0]["topology"] == original.report.repeats[0].topology


def test_a_file_that_is_no_report_is_bad_input(tmp_path: Path, capsys: Any) -> None:
    bogus = tmp_path / "report.json"
    bogus.write_text('{"schema": "something else"}')
    assert main(["replay", str(bogus)]) == 2
    assert "neither a splitdb report" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    assert main(["replay", str(tmp_path / "run")]) == 2
    assert "no such report" in capsys.readouterr().err
    trace = tmp_path / "t.json"
    trace.write_text("[1, 2]")
    assert main(["replay", str(trace)]) == 2
    assert "neither a splitdb report" in capsys.readouterr().err
