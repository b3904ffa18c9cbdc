"""A user's tests of a running system, written with the `splitdb_stack` fixture.

Nothing here imports from the splitdb repository's tests: installing splitdb (`pip install
splitdb`, or `pip install -e .` from its checkout) registers the plugin that provides the
fixture. Run with `pytest -n 2 examples/pytest`.

Each `splitdb_stack(...)` call starts real processes in a fresh directory and hands the test
what it needs to drive and inspect them. When the test ends, the plugin stops them and runs
splitdb's checks (no lock errors, every write within its role's grant, every acknowledged tick
on disk, integrity, ...): a check that fails fails the test, with its evidence and the report.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from reference.errors import PermissionViolation

HERE = Path(__file__).resolve().parent


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_a_tick_the_bot_commits_is_served_by_the_api(splitdb_stack: Any) -> None:
    stack = splitdb_stack()  # the reference bot, agent and API, on the seed topology
    ticks = stack.connect("api", "ticks")  # the API's own grant: a reader of ticks
    stack.wait_for(
        lambda: ticks.execute("SELECT count(*) FROM ticks WHERE symbol = 'EURUSD'").fetchone()[0],
        what="a EURUSD tick committed",
    )
    latest = get_json(f"{stack.api_url}/ticks/EURUSD/latest")
    assert latest["symbol"] == "EURUSD"
    assert latest["bid"] <= latest["ask"]


def test_a_reader_is_refused_a_write(splitdb_stack: Any) -> None:
    stack = splitdb_stack(processes=["bot"])  # only the bot runs
    ticks = stack.connect("agent", "ticks")
    with pytest.raises(PermissionViolation):
        ticks.execute("DELETE FROM ticks")


def test_ticks_acknowledged_before_a_kill_are_on_disk_after_it(splitdb_stack: Any) -> None:
    stack = splitdb_stack(processes=["bot"])
    stack.wait_for(lambda: len(acks(stack)) >= 5, what="5 commits acknowledged")
    stack.kill("bot")
    acknowledged = sum(event["n"] for event in acks(stack))
    stored = stack.connect("agent", "ticks").execute("SELECT count(*) FROM ticks").fetchone()[0]
    assert stored >= acknowledged
    stack.start_process("bot")  # it resumes; the durability check at the end covers both lives


def test_your_own_processes_from_a_scenario_file(splitdb_stack: Any) -> None:
    # The shared-file example's two services, each with a file of its own: at the end the
    # plugin checks that neither met a lock error nor wrote outside its grant.
    stack = splitdb_stack(HERE.parent / "shared-file" / "separate.toml")
    orders = stack.connect("risk", "orders")
    stack.wait_for(
        lambda: orders.execute("SELECT count(*) FROM orders").fetchone()[0] >= 10,
        what="10 orders written",
    )


def acks(stack: Any) -> list[dict[str, Any]]:
    return [event for event in stack.events("bot") if event["op"] == "ack"]
