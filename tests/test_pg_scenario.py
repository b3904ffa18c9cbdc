"""Scenarios on PostgreSQL: `topology = "postgres"` (or `splitdb run --topology postgres`) runs
the same scenario on a server; what has no meaning there (a fault on a SQLite file, a raw file
writer) is refused before anything starts, one line each naming the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from harness.cli import main as splitdb
from harness.pg.server import PgServer
from harness.runs.scenario import ScenarioError, parse_scenario
from reference.topology import load_topology
from tests.conftest import postgres_binaries_or_skip

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


@pytest.mark.parametrize("kind", ["terminate_backend", "kill_backend"])
def test_a_server_backend_fault_is_refused_on_sqlite(kind: str) -> None:
    fault = {"kind": kind, "target": "bot", "at": 1}
    parse_scenario(_pg(fault=[fault]))
    with pytest.raises(ScenarioError) as info:
        parse_scenario({**_pg(fault=[fault]), "topology": "seed"})
    assert info.value.problems == [
        f"fault[0].kind: '{kind}' ends a process's PostgreSQL backend; it needs a "
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


# -- runs on a server --------------------------------------------------------------------------


def _run(argv: list[str], out: Path) -> tuple[int, dict[str, Any], dict[str, Any], dict[str, str]]:
    """`splitdb run` of one repeat: its exit code, the repeat, its checks by name, and the
    summaries of those that failed."""
    code = splitdb(["run", *argv, "--out", str(out), "--quiet"])
    (report,) = out.glob("*/report.json")
    (repeat,) = json.loads(report.read_text())["repeats"]
    checks = {c["name"]: c for c in repeat["checks"]}
    failed = {n: c["summary"] for n, c in checks.items() if not c["ok"]}
    return code, repeat, checks, failed


@pytest.mark.slow
def test_the_default_scenario_on_postgres_passes_every_check(tmp_path: Path) -> None:
    postgres_binaries_or_skip()
    default = str(ROOT / "scenarios" / "default.toml")
    code, repeat, checks, failed = _run(
        [default, "--topology", "postgres", "--duration", "6"], tmp_path
    )
    assert code == 0 and not failed, failed
    assert repeat["topology"]["backend"] == "postgres"
    for name in ("contention", "permissions", "durability", "analysis", "api_answers"):
        assert name in checks, sorted(checks)
    assert {"integrity", "settings", "duplicates", "status_board"} <= set(checks)
    # Judged on what the server saw, not read off files that do not exist.
    assert checks["contention"]["evidence"]["sampled"]["samples"] > 10
    assert checks["permissions"]["evidence"]["denied"] > 0
    assert checks["durability"]["evidence"]["acked_ticks"] > 0
    assert "bt_index_check" in checks["integrity"]["summary"]
    # The server's own work, beside the processes' (on SQLite they do it themselves).
    assert repeat["metrics"]["processes"]["postgres"]["cpu_s"] > 0
    run_dir = Path(repeat["dir"])
    assert (run_dir / "logs" / "postgres.log").stat().st_size > 0
    assert not list((run_dir / "data").glob("*.db"))


@pytest.mark.slow
def test_kill_9_and_terminated_backends_of_each_process_lose_no_acknowledged_tick(
    tmp_path: Path,
) -> None:
    postgres_binaries_or_skip()
    scenario = str(ROOT / "scenarios" / "pg-kill-each.toml")
    code, repeat, checks, failed = _run([scenario], tmp_path)
    assert code == 0 and not failed, failed
    faults = repeat["faults"]
    assert {f["kind"] for f in faults} == {"sigkill", "terminate_backend", "kill_backend"}
    assert all(f["applied"] for f in faults), faults
    ended = {f["target"]: f["backends"] for f in faults if f["kind"] == "terminate_backend"}
    assert set(ended) == {"bot", "agent", "api"}
    assert ended["bot"], "the bot had no session on the server to end"
    (crash,) = [f for f in faults if f["kind"] == "kill_backend"]
    # The bot's backend killed: the server restarted every backend and recovered.
    assert crash["backends"] and crash["recovered_s"] is not None, crash
    assert checks["durability"]["evidence"]["acked_ticks"] > 0
    assert checks["durability"]["ok"] and checks["analysis"]["ok"]


@pytest.mark.slow
def test_violators_of_every_role_are_denied_by_the_server_in_a_run(tmp_path: Path) -> None:
    postgres_binaries_or_skip()
    scenario = str(ROOT / "scenarios" / "permission-attacks.toml")
    code, repeat, checks, failed = _run(
        [scenario, "--topology", "postgres", "--duration", "4"], tmp_path
    )
    assert code == 0 and not failed, failed
    evidence = checks["permissions"]["evidence"]
    assert evidence["forbidden"] > 100 and evidence["denied"] == evidence["forbidden"]
    assert evidence["succeeded"] == 0 and evidence["refused_by_sqlite"] == 0
    # Every role attacked: the as-bot, as-agent and as-api groups each made attempts.
    groups = repeat["metrics"]["groups"]
    assert {"load-as-bot", "load-as-agent", "load-as-api"} <= set(groups)


@pytest.mark.slow
def test_a_run_on_a_server_named_by_url_judges_its_settings_and_leaves_nothing(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """The tests' shared server runs with fsync off: a run on it by --pg-url says so in the
    settings check (acknowledged ticks would not survive a power cut there), passes the rest,
    and drops the database and roles it made."""
    url = f"postgresql://{pg_server.user}:{quote(pg_server.password or '')}@{pg_server.host}:"
    url += f"{pg_server.port}/"
    with pg_server.connect() as conn:
        before = conn.execute("SELECT count(*) FROM pg_database").fetchone()
        roles_before = conn.execute("SELECT count(*) FROM pg_roles").fetchone()
    default = str(ROOT / "scenarios" / "default.toml")
    argv = [default, "--topology", "postgres", "--pg-url", url, "--duration", "4"]
    code, repeat, checks, failed = _run(argv, tmp_path)
    assert code == 1 and set(failed) == {"settings"}, failed
    assert "fsync off, expected on" in checks["settings"]["summary"]
    # A named server has no log of ours and no processes to measure; the rest is judged.
    assert "postgres" not in repeat["metrics"]["processes"]
    assert checks["durability"]["ok"] and checks["integrity"]["ok"]
    with pg_server.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database").fetchone() == before
        assert conn.execute("SELECT count(*) FROM pg_roles").fetchone() == roles_before
