"""Cost of one status board update: lock, read, write + fsync twice (board and last good copy)."""

from __future__ import annotations

import itertools
from pathlib import Path

from pytest_benchmark.fixture import BenchmarkFixture

from reference.status import StatusBoard


def test_bench_update_one_section_of_three(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    board = StatusBoard(tmp_path / "shared_memory.json")
    for name in ("bot", "agent", "api"):
        board.update(name, {"state": "running", "ticks": 0, "heartbeat": 0.0})
    ticks = itertools.count(1)

    section = benchmark(lambda: board.update("bot", {"ticks": next(ticks)}))

    assert section == board.section("bot")
    assert section["_seq"] == section["ticks"] + 1
    assert sorted(board.read()["sections"]) == ["agent", "api", "bot"]
