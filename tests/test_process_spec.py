"""The user's processes in a scenario: `[processes.NAME]` tables with a `command`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ScenarioError
from harness.runs.process_spec import expand, is_python, placeholder_problems, process_env
from harness.runs.scenario import Scenario, parse_scenario
from tests.fixtures.user_system import TOPOLOGY


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "topology.toml").write_text(TOPOLOGY)
    return tmp_path


def scenario(base: Path, **raw: Any) -> Scenario:
    raw.setdefault("name", "s")
    raw.setdefault("topology", "topology.toml")
    return parse_scenario(raw, source="s.toml", base_dir=base)


def problems(base: Path, **raw: Any) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        scenario(base, **raw)
    return caught.value.problems


def test_command_processes_run_instead_of_the_reference_ones(base: Path) -> None:
    s = scenario(
        base,
        processes={
            "taker": {"command": ["{python}", "taker.py"], "role": "taker"},
            "checker": {"command": ["{python}", "checker.py"], "role": "checker"},
        },
    )
    assert list(s.commands) == ["taker", "checker"]
    assert s.reference_roles() == ()
    assert s.process_names() == ("taker", "checker")


def test_a_scenario_without_commands_still_runs_the_three_reference_processes() -> None:
    s = parse_scenario({"name": "s"}, base_dir=Path.cwd())
    assert s.commands == {}
    assert s.reference_roles() == ("bot", "agent", "api")


def test_a_process_named_like_a_reference_role_is_a_command_when_it_has_one(base: Path) -> None:
    s = scenario(base, processes={"api": {"command": ["datasette"], "role": "checker"}})
    assert list(s.commands) == ["api"]
    assert s.processes.api.enabled is False


def test_an_unknown_role_is_named_with_the_topology_roles(base: Path) -> None:
    found = problems(base, processes={"x": {"command": ["true"], "role": "writer"}})
    assert found == [
        "processes.x.role: 'writer' is not a role of topology 'shop'; its roles are taker, checker"
    ]


def test_a_missing_command_is_required_under_the_process_name(base: Path) -> None:
    found = problems(base, processes={"x": {"role": "taker"}})
    assert found == ["processes.x.command: required; add it"]


def test_an_empty_command_is_refused(base: Path) -> None:
    found = problems(base, processes={"x": {"command": [], "role": "taker"}})
    assert len(found) == 1 and found[0].startswith("processes.x.command: ")


def test_an_empty_program_is_refused(base: Path) -> None:
    found = problems(base, processes={"x": {"command": [" "], "role": "taker"}})
    assert found[0].startswith("processes.x.command: ")
    assert "program" in found[0]


def test_unknown_placeholders_are_named_with_the_known_ones(base: Path) -> None:
    found = problems(
        base,
        processes={
            "x": {
                "command": ["app", "{db.trades}", "{pot}"],
                "role": "taker",
                "env": {"PEER": "{port.nobody}"},
            }
        },
    )
    assert found[0] == (
        "processes.x.command[1]: {db.trades} names no database of the topology; "
        "its databases are orders, risk"
    )
    assert found[1].startswith("processes.x.command[2]: unknown placeholder {pot}; known: ")
    assert found[2] == ("processes.x.env.PEER: {port.nobody} names no command process; they are x")


def test_the_commands_key_is_refused_in_favour_of_processes(base: Path) -> None:
    found = problems(base, commands={"x": {"command": ["true"], "role": "taker"}})
    assert found == [
        "commands: unknown key; declare your processes as [processes.NAME] tables with a `command`"
    ]


def test_a_fault_may_target_any_process_of_the_scenario(base: Path) -> None:
    s = scenario(
        base,
        processes={"taker": {"command": ["app"], "role": "taker"}},
        fault=[{"kind": "sigkill", "target": "taker", "at": 1}],
    )
    assert s.fault[0].target == "taker"
    found = problems(
        base,
        processes={"taker": {"command": ["app"], "role": "taker"}},
        fault=[{"kind": "sigstop", "target": "bot", "at": 1}],
    )
    assert found == [
        "fault[0].target: 'bot' is not a process of this scenario; its processes are taker"
    ]


def test_bad_stop_settings_are_refused(base: Path) -> None:
    found = problems(
        base,
        processes={
            "x": {"command": ["app"], "role": "taker", "stop_signal": "SIGKILL", "grace": 0}
        },
    )
    assert [p.split(":")[0] for p in found] == ["processes.x.stop_signal", "processes.x.grace"]


def test_an_http_load_url_checks_its_placeholders(base: Path) -> None:
    found = problems(
        base,
        processes={"x": {"command": ["app"], "role": "taker"}},
        load=[{"kind": "http", "urls": ["http://127.0.0.1:{port.y}/"]}],
    )
    assert found == ["load[0].urls[0]: {port.y} names no command process; they are x"]
    found = problems(base, load=[{"kind": "http", "urls": ["ftp://host/"]}])
    assert found[0].startswith("load[0].urls[0]: ")


def test_expand_replaces_each_placeholder() -> None:
    values = {"python": "/py", "db.orders": "/d/orders.db", "port": "8001", "port.api": "8002"}
    assert expand("{python} x {db.orders} {port} {port.api}", values) == (
        "/py x /d/orders.db 8001 8002"
    )
    assert expand('{"json": 1}', values) == '{"json": 1}'


def test_placeholders_in_plain_braces_are_left_alone() -> None:
    assert placeholder_problems('{"a": 1}', "w", databases={}, processes={}) == []


def test_python_commands_are_recognised_by_name_or_by_their_script_line(tmp_path: Path) -> None:
    assert is_python([sys.executable, "app.py"])
    script = tmp_path / "tool"
    script.write_text(f"#!{sys.executable}\nprint(1)\n")
    assert is_python(["tool"], cwd=tmp_path)
    shell = tmp_path / "run.sh"
    shell.write_text("#!/bin/sh\necho 1\n")
    assert not is_python(["run.sh"], cwd=tmp_path)
    assert not is_python(["/bin/sh", "-c", "true"])


def test_process_env_names_every_database_in_capitals(tmp_path: Path) -> None:
    env = process_env(
        name="taker",
        role="taker",
        data_dir=tmp_path,
        run_dir=tmp_path,
        events=tmp_path / "e.jsonl",
        topology=tmp_path / "t.toml",
        database_files={"orders": tmp_path / "orders.db"},
    )
    assert env["SPLITDB_DB_ORDERS"] == str(tmp_path / "orders.db")
    assert env["SPLITDB_ROLE"] == "taker" and env["SPLITDB_TOPOLOGY"] == str(tmp_path / "t.toml")


def test_a_readiness_condition_may_use_placeholders(base: Path) -> None:
    s = scenario(
        base,
        processes={
            "api": {
                "command": ["app", "--port", "{port}"],
                "role": "checker",
                "ready": {"http": "http://127.0.0.1:{port}/health", "timeout": 20},
            },
            "tcp": {"command": ["app"], "role": "taker", "ready": {"tcp": "127.0.0.1:{port.api}"}},
        },
    )
    assert s.commands["api"].ready == {"http": "http://127.0.0.1:{port}/health", "timeout": 20}


def test_a_bad_readiness_condition_is_named_under_its_process(base: Path) -> None:
    found = problems(
        base,
        processes={"x": {"command": ["app"], "role": "taker", "ready": {"file": "a", "line": "b"}}},
    )
    assert found == [
        "processes.x.ready: give exactly one of file, tcp, port, http, line, delay "
        "(got file and line)"
    ]
    found = problems(
        base, processes={"x": {"command": ["app"], "role": "taker", "ready": {"line": "("}}}
    )
    assert found[0].startswith("processes.x.ready.line: not a valid regular expression")


def test_expand_ready_builds_the_condition_with_the_run_values() -> None:
    from harness.runs.process_spec import expand_ready

    ready = expand_ready({"http": "http://127.0.0.1:{port}/", "timeout": 5}, {"port": "8123"})
    assert ready is not None and ready.http == "http://127.0.0.1:8123/" and ready.timeout == 5
    line = expand_ready({"line": r"^\d{3} ready$"}, {})
    assert line is not None and line.line == r"^\d{3} ready$"


def test_a_load_url_must_name_whose_port_it_means(base: Path) -> None:
    found = problems(
        base,
        processes={"x": {"command": ["app"], "role": "taker"}},
        load=[{"kind": "http", "urls": ["http://127.0.0.1:{port}/"]}],
    )
    assert found == [
        "load[0].urls[0]: {port} is a process's own port, and this is not a process; name the "
        "process: {port.NAME}"
    ]


def test_a_load_url_may_name_a_database_file_without_any_process(base: Path) -> None:
    """Placeholder values other than ports exist in every run, with or without processes."""
    s = scenario(
        base, topology="seed", load=[{"kind": "http", "urls": ["http://127.0.0.1:9/{db.ticks}"]}]
    )
    assert s.load[0].urls == ("http://127.0.0.1:9/{db.ticks}",)  # type: ignore[union-attr]
