"""A scenario's `[migrate]`: a legacy data set made by the stack, split, and run on in seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runs.run import run_scenario
from harness.runs.scenario import load_scenario, parse_scenario

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_the_moved_system_passes_every_check_and_keeps_every_acknowledged_tick(
    tmp_path: Path,
) -> None:
    scenario = load_scenario(ROOT / "scenarios" / "migrate-legacy.toml")
    short = scenario.model_copy(
        update={"duration": 4, "migrate": scenario.migrate.model_copy(update={"duration": 3})}  # type: ignore[union-attr]
    )
    result = run_scenario(short, out_dir=tmp_path, base_dir=ROOT / "scenarios")
    (repeat,) = result.report.repeats
    checks = {c.name: c for c in repeat.checks}
    failed = {n: c.summary for n, c in checks.items() if not c.ok}
    assert not failed, failed
    migration = checks["migration"].evidence["split"]
    assert migration["ok"] and migration["rows"] > 0
    assert {Path(f["file"]).name for f in migration["files"]} == {
        "unified_tick_pipeline.db",
        "analysis_data.db",
        "system_logs.db",
    }
    # The acks before the move are counted: more than the run after it made alone.
    before_acks = sum(
        1
        for line in (Path(repeat.dir) / "before" / "events" / "bot.jsonl").open()
        if '"op":"ack"' in line
    )
    assert before_acks > 0
    assert checks["durability"].evidence["acks"] > before_acks
    assert checks["analysis"].ok


def test_a_move_from_a_layout_of_several_files_fails_its_check_saying_why(tmp_path: Path) -> None:
    scenario = parse_scenario(
        {
            "name": "from-seed",
            "duration": 1,
            "migrate": {"from_topology": "seed", "duration": 1},
            "processes": {"agent": {"enabled": False}, "api": {"enabled": False}},
        }
    )
    result = run_scenario(scenario, out_dir=tmp_path, base_dir=tmp_path)
    (repeat,) = result.report.repeats
    migration = next(c for c in repeat.checks if c.name == "migration")
    assert not migration.ok
    assert migration.summary == (
        "the migration did not happen: migrate.from_topology: seed keeps its databases in 3 "
        "files; the move starts from a layout with one file (such as legacy)"
    )
