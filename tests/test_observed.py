"""Judging the user's processes on what the probe saw in them (harness/runs/observed.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.probe.observed import Observed, observe
from harness.runs.checks import Check
from harness.runs.observed import (
    errors_as_events,
    mark_not_observed,
    not_observed,
    observed_figures,
    observed_writes,
)
from reference.topology import parse_topology

SHARED = {
    "name": "shared",
    "layout": "shared",
    "databases": {"orders": {"path": "app.db"}, "risk": {"path": "app.db"}},
    "roles": {"taker": {"orders": "rw"}, "checker": {"orders": "ro", "risk": "rw"}},
}
SEPARATE = {
    "name": "separate",
    "databases": {"orders": {"path": "orders.db"}, "risk": {"path": "risk.db"}},
    "roles": {"taker": {"orders": "rw"}, "checker": {"orders": "ro", "risk": "rw"}},
}


def seen(tmp_path: Path, name: str, events: list[dict[str, Any]]) -> Observed:
    """What the probe's own reader makes of these lines, written as the probe writes them."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"pid": 1, **e}) + "\n" for e in events))
    return observe([path])


def probe_of(tmp_path: Path, events: dict[str, list[dict[str, Any]]]) -> dict[str, Observed]:
    return {name: seen(tmp_path, name, evs) for name, evs in events.items()}


def write(db: Path, stmt: str, count: int = 1, schema: str = "main") -> dict[str, Any]:
    return {
        "op": "db_write",
        "db": str(db),
        "schema": schema,
        "stmt": stmt,
        "count": count,
        "wall": 1.0,
        "actions": ["UPDATE"],
    }


def test_a_write_on_a_database_the_role_only_reads_is_a_violation(tmp_path: Path) -> None:
    topology = parse_topology(SEPARATE, roles=None)
    probe = {
        "taker": [write(tmp_path / "orders.db", "INSERT INTO orders VALUES (?)", 40)],
        "checker": [
            write(tmp_path / "risk.db", "INSERT INTO exposure VALUES (?)", 7),
            write(tmp_path / "orders.db", "UPDATE orders SET qty = 0", 1),
            write(tmp_path / "orders.db", "UPDATE orders SET qty = 0", 2),
        ],
    }
    roles = {"taker": "taker", "checker": "checker"}
    check = observed_writes(topology, tmp_path, roles, probe_of(tmp_path, probe))
    assert not check.ok
    assert check.evidence["allowed_writes"] == 47
    (violation,) = check.evidence["violations"]
    assert violation["process"] == "checker" and violation["count"] == 3
    assert violation["databases"] == ["orders"]
    assert "checker (role checker) wrote orders (orders.db) 3 times: UPDATE orders" in check.summary


def test_in_a_shared_file_a_role_may_write_when_it_owns_any_database_there(tmp_path: Path) -> None:
    topology = parse_topology(SHARED, roles=None)
    probe = {"checker": [write(tmp_path / "app.db", "INSERT INTO exposure VALUES (?)")]}
    assert observed_writes(topology, tmp_path, {"checker": "checker"}, probe_of(tmp_path, probe)).ok


def test_writes_outside_the_topology_and_to_temp_are_not_judged(tmp_path: Path) -> None:
    topology = parse_topology(SEPARATE, roles=None)
    probe = {
        "checker": [
            write(tmp_path / "scratch.db", "INSERT INTO x VALUES (1)", 5),
            write(tmp_path / "orders.db", "CREATE TEMP TABLE t (x)", 1, schema="temp"),
            write(Path(":memory:"), "INSERT INTO m VALUES (1)"),
        ]
    }
    check = observed_writes(topology, tmp_path, {"checker": "checker"}, probe_of(tmp_path, probe))
    assert check.ok
    assert check.evidence["outside_topology"] == {str(tmp_path / "scratch.db"): 5, ":memory:": 1}


def test_processes_without_evidence_are_named_with_the_reason(tmp_path: Path) -> None:
    probe = probe_of(tmp_path, {"py": [{"op": "probe_start"}], "silent": [], "sh": []})
    reasons = not_observed(
        {"py": True, "silent": True, "sh": False}, {"sh": ["/bin/sh", "-c", "x"]}, probe
    )
    assert set(reasons) == {"silent", "sh"}
    assert "'/bin/sh' is not a Python command" in reasons["sh"]
    assert "probe never started" in reasons["silent"]


def test_a_passing_check_without_evidence_from_a_process_becomes_a_warning() -> None:
    check = mark_not_observed(Check("contention", True, "0 busy"), {"sh": "not Python"})
    assert check.ok and check.warning == "no evidence from sh (not observed)"
    assert check.summary == "0 busy [not observed: sh: not Python]"
    failed = mark_not_observed(Check("contention", False, "3 busy"), {"sh": "not Python"})
    assert not failed.ok and failed.warning is None


def test_observed_figures_count_what_the_probe_reported(tmp_path: Path) -> None:
    probe = {
        "a": [
            {"op": "probe_start"},
            {"op": "db_connect", "db": "/x.db"},
            {"op": "db_write", "count": 3},
            {"op": "db_write", "count": 2},
            {"op": "db_reads", "count": 9},
            {"op": "db_error", "outcome": "busy", "count": 1},
            {"op": "db_error", "outcome": "error", "count": 1},
        ]
    }
    figures = observed_figures(probe_of(tmp_path, probe), {"a": True, "b": False})
    assert figures["a"] == {
        "instrumented": True,
        "probe_started": True,
        "connections": 1,
        "writes": 5,
        "reads": 9,
        "busy": 1,
        "errors": 1,
    }
    assert figures["b"]["probe_started"] is False and figures["b"]["writes"] == 0


def connect(db: Path, mode: str) -> dict[str, Any]:
    return {"op": "db_connect", "db": str(db), "mode": mode}


def test_a_connection_by_a_role_without_any_grant_fails_and_rw_readers_are_listed(
    tmp_path: Path,
) -> None:
    topology = parse_topology(
        {
            "name": "t",
            "databases": {"orders": {"path": "orders.db"}, "risk": {"path": "risk.db"}},
            "roles": {"taker": {"orders": "rw"}, "checker": {"orders": "ro", "risk": "rw"}},
        },
        roles=None,
    )
    from harness.runs.observed import observed_connections

    roles = {"taker": "taker", "checker": "checker"}
    ok = observed_connections(
        topology,
        tmp_path,
        roles,
        probe_of(
            tmp_path,
            {
                "taker": [
                    connect(tmp_path / "orders.db", "rwc"),
                    connect(Path(":memory:"), "memory"),
                ],
                "checker": [
                    connect(tmp_path / "orders.db", "ro"),
                    connect(tmp_path / "risk.db", "rwc"),
                ],
            },
        ),
    )
    assert ok.ok and ok.evidence["connections"] == 3
    assert ok.evidence["read_write_by_readers"] == []
    bad = observed_connections(
        topology,
        tmp_path,
        roles,
        probe_of(
            tmp_path / "bad",
            {
                "taker": [connect(tmp_path / "risk.db", "ro")],
                "checker": [connect(tmp_path / "orders.db", "rwc")],
            },
        ),
    )
    assert not bad.ok
    assert "taker (role taker) opened risk (risk.db)" in bad.summary
    assert [c["process"] for c in bad.evidence["read_write_by_readers"]] == ["checker"]
    assert "1 read-write where the role only reads: checker on orders.db" in bad.summary


def test_folded_probe_events_count_as_many_as_they_say(tmp_path: Path) -> None:
    """The probe writes the first 20 busy errors of a statement one line each, then folds the
    rest into one line with `count`: every check counts `count`, not lines."""
    from harness.runs.checks import contention

    folded = {"op": "db_error", "outcome": "busy", "code": 5, "count": 30, "dur_us": 600_000}
    one = {"op": "db_error", "outcome": "locked", "code": 6, "count": 1, "dur_us": 1000}
    check = contention({"orders": [folded, one]}, max_busy=30)
    assert not check.ok
    assert check.evidence["busy_events"] == 31
    assert check.evidence["by_process"] == {"orders": 31}
    assert check.evidence["blocked_ms"] == 601.0
    probe = probe_of(
        tmp_path, {"orders": [folded, one, {"op": "db_connect", "db": "/x.db", "count": 25}]}
    )
    figures = observed_figures(probe, {"orders": True})
    # The run hands the contention check the probe's errors with their counts.
    assert contention(errors_as_events(probe), max_busy=0).evidence["busy_events"] == 31
    assert figures["orders"]["busy"] == 31 and figures["orders"]["connections"] == 25
