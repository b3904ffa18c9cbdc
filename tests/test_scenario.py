"""Scenario files: shipped ones validate; bad ones get one field-naming error per problem."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.errors import ScenarioError
from harness.runs.scenario import load_scenario, parse_scenario, resolve_topology

SCENARIOS = sorted(Path(__file__).resolve().parent.parent.joinpath("scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenario_is_valid(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.description


def test_defaults_fill_a_minimal_scenario() -> None:
    scenario = parse_scenario({"name": "x"})
    assert scenario.topology == "seed" and scenario.repeat == 1
    assert scenario.processes.bot.enabled and scenario.load == () and scenario.fault == ()


def test_settings_override_the_topology() -> None:
    scenario = parse_scenario(
        {"name": "x", "topology": "legacy", "settings": {"busy_timeout_ms": 0}}
    )
    topology = resolve_topology(scenario, Path.cwd())
    assert {d.busy_timeout_ms for d in topology.databases.values()} == {0}


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(raw)
    return info.value.problems


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"name": "x", "duration": 0}, "duration: Input should be greater than 0"),
        ({"name": "x", "surprise": 1}, "surprise: unknown key"),
        ({"name": "x", "load": [{"kind": "reader", "rate": -1}]}, "load[0].rate:"),
        ({"name": "x", "load": [{"kind": "reader", "role": "boss"}]}, "load[0].role:"),
        ({"name": "x", "load": [{"kind": "teleport"}]}, "load[0].kind: must be"),
        ({"name": "x", "load": [{"rate": 1}]}, "load[0].kind: required"),
        ({"name": "x", "fault": [{"kind": "sigkill"}]}, "fault[0]: give exactly one trigger"),
        ({"name": "x", "fault": [{"kind": "sigkill", "at": 1, "target": "db"}]}, "fault[0].target"),
        ({"name": "x", "processes": {"bot": {"symbols": 0}}}, "processes.bot.symbols"),
        ({"name": "x", "settings": {"journal_mode": "wall"}}, "settings.journal_mode"),
        ({"name": "x", "topology": "nowhere.toml"}, "topology: file not found"),
        ({"name": "x", "expect": {"max_api_p99": 3}}, "expect.max_api_p99: unknown key"),
        ({"name": "bad name!"}, "name: String should match pattern"),
    ],
)
def test_bad_scenario_names_the_field(raw: dict[str, Any], expected: str) -> None:
    problems = _problems(raw)
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems(
        {"name": "x", "duration": -1, "seed": "one", "load": [{"kind": "api", "workers": 0}]}
    )
    assert len(problems) == 3, problems


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
_KEYS = st.sampled_from(
    [
        "name",
        "duration",
        "seed",
        "repeat",
        "topology",
        "settings",
        "processes",
        "load",
        "fault",
        "expect",
        "kind",
        "rate",
        "workers",
        "role",
        "database",
        "at",
        "target",
        "bot",
        "enabled",
    ]
)
_DOCS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _DOCS, max_size=6))
def test_generated_scenarios_validate_or_name_fields_never_a_traceback(raw: dict[str, Any]) -> None:
    try:
        parse_scenario(raw)
    except ScenarioError as exc:
        assert exc.problems
        for problem in exc.problems:
            field, sep, message = problem.partition(": ")
            assert sep and field and message, problem


def test_bad_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("duration = = 3")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "absent.toml")


def test_scenarios_command_lists_valid_files_and_fails_on_an_invalid_one(
    tmp_path: Path, capsys: Any
) -> None:
    (tmp_path / "good.toml").write_text('description = "fine"\nduration = 2\n')
    assert main(["scenarios", str(tmp_path)]) == 0
    assert "ok      " in capsys.readouterr().out
    (tmp_path / "worse.toml").write_text("duration = -2\n")
    assert main(["scenarios", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "INVALID" in out and "duration:" in out


def test_a_scenario_key_with_a_newline_is_quoted_so_the_error_stays_on_one_line() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario({"name": "x", "A\n": 0})
    (problem,) = info.value.problems
    assert problem.startswith('"A\\n": ') and "\n" not in problem


# Found by tests/test_cli_fuzz.py: a NUL byte was a ValueError traceback, a long name an OSError
# naming no field.
@pytest.mark.parametrize("topology", ["a\x00b", "x" * 5000])
def test_a_topology_name_the_file_system_cannot_look_up_names_the_field(topology: str) -> None:
    problems = _problems({"name": "x", "topology": topology})
    assert len(problems) == 1 and problems[0].startswith("topology: "), problems
    assert len(problems[0]) < 400


# Found by tests/test_cli_fuzz.py: accepted, as a fault or load that never comes, a threshold
# that could never fail, or `true` read as 1 second.
@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"load": [{"kind": "reader", "start": math.inf}]}, "load[0].start"),
        ({"load": [{"kind": "reader", "duration": math.inf}]}, "load[0].duration"),
        ({"fault": [{"kind": "sigkill", "at": math.inf}]}, "fault[0].at"),
        ({"expect": {"max_commit_p99_ms": math.inf}}, "expect.max_commit_p99_ms"),
        ({"expect": {"min_ingest_ticks_per_s": math.inf}}, "expect.min_ingest_ticks_per_s"),
        (
            {"invariant": [{"database": "ticks", "sql": "SELECT 1", "min": math.nan}]},
            "invariant[0].min",
        ),
        ({"duration": True}, "duration"),
        ({"duration": "10"}, "duration"),
        ({"seed": 5.0}, "seed"),
        ({"processes": {"bot": {"enabled": "yes"}}}, "processes.bot.enabled"),
        ({"processes": {"bot": {"enabled": 1}}}, "processes.bot.enabled"),
        ({"load": [{"kind": "reader", "workers": True}]}, "load[0].workers"),
    ],
)
def test_a_non_finite_number_or_a_value_of_another_type_names_the_field(
    raw: dict[str, Any], field: str
) -> None:
    problems = _problems({"name": "x", **raw})
    assert any(p.startswith(f"{field}: ") for p in problems), problems
