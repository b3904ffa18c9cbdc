"""A topology of the user's own processes: any role and database names, through every command."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from harness.cli import main

TOPOLOGY = """\
name = "catalogue"
layout = "separate"
status = "status.json"

[databases.items]
path = "items.db"

[databases.maintenance]
path = "maintenance.db"

[roles.writer]
items = "rw"

[roles.janitor]
items = "ro"
maintenance = "rw"
"""


@pytest.fixture
def topology(tmp_path: Path) -> Path:
    path = tmp_path / "topology.toml"
    path.write_text(TOPOLOGY)
    return path


def test_topology_prints_any_roles_and_databases(
    topology: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["topology", str(topology)]) == 0
    out = capsys.readouterr().out
    assert "topology 'catalogue' (separate layout)" in out
    assert "  role      items       maintenance" in out
    assert "  janitor   ro          rw" in out


def test_init_creates_a_user_database_with_its_settings_and_no_tables(
    topology: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["init", "--topology", str(topology), "--data-dir", str(data)]) == 0
    assert "(no tables: your processes create them)" in capsys.readouterr().out
    conn = sqlite3.connect(data / "items.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    finally:
        conn.close()


def test_a_user_topology_is_still_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TOPOLOGY.replace('maintenance = "rw"', 'maintenance = "write"'))
    assert main(["topology", str(path)]) == 2
    err = capsys.readouterr().err
    assert "roles.janitor.maintenance: expected 'rw' (owner) or 'ro' (reader), got 'write'" in err


SCENARIO = """\
topology = "topology.toml"
[processes.writer]
command = ["{python}", "writer.py"]
role = "writer"
"""


def test_scenarios_lists_a_systems_directory_with_its_topology_beside(
    topology: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (topology.parent / "run.toml").write_text(SCENARIO)
    assert main(["scenarios", str(topology.parent)]) == 0
    out = capsys.readouterr().out
    assert f"topology {topology}  (checked by splitdb topology, not run)" in out
    assert "processes writer; no extra load" in out


def test_a_topology_given_as_a_scenario_says_what_it_is(
    topology: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scenarios", str(topology)]) == 2
    out = capsys.readouterr().out
    assert "this is a topology, not a scenario; name it in a scenario" in out
