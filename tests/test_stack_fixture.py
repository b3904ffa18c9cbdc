"""The reference system driven through splitdb's own pytest plugin (the `splitdb_stack` fixture).

Each test starts real processes, works with them as a user's test would, and ends with the
harness's checks on what happened (durability of every acknowledged tick, the analysis against
a recomputation from the ticks, the API's answers against the files, permissions, contention,
integrity): a check that fails fails the test.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from reference.errors import PermissionViolation

pytestmark = pytest.mark.slow

# 300 market seconds per wall second: a one-minute bar every 0.2 s, indicators within seconds.
FAST_MARKET = {"processes": {"bot": {"symbols": 3, "rate": 2000, "batch_size": 200, "speed": 300}}}


def count(conn: Any, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


def test_ticks_become_bars_and_indicators_the_api_serves(splitdb_stack: Any) -> None:
    stack = splitdb_stack(FAST_MARKET)
    analysis = stack.connect("api", "analysis")
    stack.wait_for(
        lambda: count(analysis, "SELECT count(*) FROM indicators WHERE symbol = 'EURUSD'"),
        what="EURUSD indicators computed",
    )
    answer = httpx.get(f"{stack.api_url}/indicators/EURUSD", timeout=10).json()
    assert answer["symbol"] == "EURUSD" and answer["count"] > 0


def test_each_process_killed_and_started_again_loses_no_acknowledged_tick(
    splitdb_stack: Any,
) -> None:
    stack = splitdb_stack(FAST_MARKET)
    for name in ("bot", "agent", "api"):
        stack.kill(name)
        stack.start_process(name)
    acks_before = len(acks(stack))
    stack.wait_for(lambda: len(acks(stack)) > acks_before, what="a commit after the restarts")
    assert httpx.get(f"{stack.api_url}/health", timeout=10).status_code == 200


def test_every_write_outside_a_grant_is_denied_on_the_live_files(splitdb_stack: Any) -> None:
    stack = splitdb_stack()
    topology = stack.topology
    tried = 0
    for role in topology.roles:
        for database in topology.databases:
            mode = topology.mode(role, database)
            if mode == "rw":
                continue
            if mode is None:
                with pytest.raises(PermissionViolation):
                    stack.connect(role, database)
                tried += 1
                continue
            conn = stack.connect(role, database)
            table = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name LIMIT 1"
            ).fetchone()[0]
            for sql in (f"DELETE FROM {table}", f"DROP TABLE {table}", "PRAGMA user_version = 7"):
                with pytest.raises(PermissionViolation):
                    conn.execute(sql)
                tried += 1
    assert tried >= 6  # seed: each of three roles reads the two files it does not own


def acks(stack: Any) -> list[dict[str, Any]]:
    return [event for event in stack.events("bot") if event["op"] == "ack"]
