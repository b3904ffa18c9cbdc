"""`splitdb search`: a minimal busy interleaving on the legacy layout, none on the seed's in WAL."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.interleavings.interleave import run_script
from harness.interleavings.script import load_script
from harness.interleavings.search import execute, search
from harness.interleavings.targets import TARGETS
from reference.access import AccessManager
from reference.topology import load_topology


def _still_fails_without(ops: tuple[tuple[str, str], ...], i: int) -> bool:
    topology = load_topology("legacy").with_settings(busy_timeout_ms=0)
    with tempfile.TemporaryDirectory() as tmp:
        AccessManager(topology, Path(tmp)).initialize()
        fewer = ops[:i] + ops[i + 1 :]
        outcomes = execute(fewer, topology, Path(tmp)) if fewer else ()
    return any(d.outcome in TARGETS["contention"] for d in outcomes)


def test_search_finds_a_minimal_busy_interleaving_on_the_legacy_layout() -> None:
    result = search(load_topology("legacy"), max_examples=100, max_seconds=20)
    assert result.found is not None
    assert result.outcomes[-1].outcome == "busy" and result.outcomes[-1].code == 5
    assert all(d.outcome == "ok" for d in result.outcomes[:-1])
    assert len(result.found) == 2, result.found
    assert len({role for role, _ in result.found}) == 2
    # Minimal: without any one of its steps, nothing fails.
    assert not any(_still_fails_without(result.found, i) for i in range(len(result.found)))


def test_search_finds_none_on_the_seed_layout_in_wal_and_says_the_budget_ran_out() -> None:
    topology = load_topology("seed").with_settings(journal_mode="wal")
    result = search(topology, max_examples=150, max_seconds=20)
    assert result.found is None and result.outcomes == ()
    assert result.examples == 150 and result.stopped_by == "examples"


def test_search_stops_at_its_time_budget() -> None:
    topology = load_topology("seed")
    result = search(topology, max_examples=100_000, max_seconds=0.5)
    assert result.found is None and result.stopped_by == "seconds"
    assert result.seconds < 10 and result.examples < 100_000


@pytest.mark.slow
def test_the_script_search_writes_replays_as_real_processes(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "found-legacy.toml"
    assert main(["search", "--topology", "legacy", "--max-examples", "100", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "found: busy (code 5)" in printed
    assert "replayed as 2 real processes: every expectation matched" in printed
    loaded = load_script(out)
    assert loaded.topology.name == "legacy"
    assert [s.expect for s in loaded.script.step] == ["ok", "busy"]
    assert run_script(loaded).ok


def test_search_cli_on_seed_wal_says_none_and_writes_nothing(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "found.toml"
    argv = ["search", "--topology", "seed", "--journal-mode", "wal", "--max-examples", "50"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "none found: 50 examples in" in printed and "the budget ran out (examples)" in printed
    assert not out.exists()
