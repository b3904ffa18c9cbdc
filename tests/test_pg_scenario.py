"""Scenarios on PostgreSQL: `topology = "postgres"` (or `splitdb run --topology postgres`) runs
the same scenario on a server; what has no meaning there (a fault on a SQLite file, a raw file
writer) is refused before anything starts, one line each naming the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cli import main as splitdb
from harness.runs.scenario import ScenarioError, parse_scenario
from reference.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]


def test_the_builtin_postgres_topology_is_the_seed_on_a_server() -> None:
    pg, seed = load_topology("postgres"), load_topology("seed")
    assert pg.backend == "postgres"
    assert pg.grants == seed.grants
    assert list(pg.databases) == list(seed.databases)


def _pg(**extra: Any) -> dict[str, Any]:
    return {"name": "pg", "topology": "postgres", "duration": 2, **extra}


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"load": [{"kind": "writer"}]}, "load[0].kind: 'writer'"),
        ({"load": [{"kind": "bypass"}]}, "load[0].kind: 'bypass'"),
        ({"fault": [{"kind": "read_transaction", "at": 1}]}, "fault[0].kind: 'read_transaction'"),
        ({"fault": [{"kind": "torn_wal", "at": 1}]}, "fault[0].kind: 'torn_wal'"),
        ({"fault": [{"kind": "disk_full", "at": 1}]}, "fault[0].kind: 'disk_full'"),
        ({"fault": [{"kind": "replace_file", "at": 1}]}, "fault[0].kind: 'replace_file'"),
        ({"settings": {"journal_mode": "delete"}}, "settings: "),
        (
            {"invariant": [{"name": "x", "database": "ticks", "sql": "SELECT 1", "equals": 1}]},
            "invariant: ",
        ),
        ({"migrate": {"from_topology": "legacy"}}, "migrate: "),
        ({"processes": {"mine": {"command": ["true"], "role": "api"}}}, "processes.mine: "),
    ],
)
def test_what_has_no_meaning_on_a_server_is_refused_naming_it(
    extra: dict[str, Any], names: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_pg(**extra))
    problems = info.value.problems
    assert len(problems) == 1, problems
    assert names in problems[0], problems
    assert "postgres" in problems[0], problems


def test_a_server_backend_fault_is_refused_on_sqlite() -> None:
    fault = {"kind": "terminate_backend", "target": "bot", "at": 1}
    parse_scenario(_pg(fault=[fault]))
    with pytest.raises(ScenarioError) as info:
        parse_scenario({**_pg(fault=[fault]), "topology": "seed"})
    assert info.value.problems == [
        "fault[0].kind: 'terminate_backend' ends a process's PostgreSQL backend; it needs a "
        'topology with backend = "postgres" (such as topology = "postgres")'
    ]


def _exit_2_one_line(argv: list[str], capsys: pytest.CaptureFixture[str], names: str) -> None:
    code = splitdb(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert names in err, err


def test_run_topology_and_pg_url_flags_refuse_bad_values_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    default = str(ROOT / "scenarios" / "default.toml")
    out = ["--out", str(tmp_path / "r")]
    _exit_2_one_line(["run", default, "--topology", "nope", *out], capsys, "--topology nope")
    _exit_2_one_line(
        ["run", default, "--pg-url", "postgresql://x@127.0.0.1:1/db", *out],
        capsys,
        "--pg-url: ",
    )
    writers = tmp_path / "writers.toml"
    writers.write_text('duration = 2\n[[load]]\nkind = "writer"\n')
    _exit_2_one_line(["run", str(writers), "--topology", "postgres", *out], capsys, "'writer'")
    assert not (tmp_path / "r").exists()
