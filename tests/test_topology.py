"""Topology files: the shipped layouts load, and every bad file gets field-naming errors."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import TopologyError
from reference.topology import load_topology, parse_topology


def _seed_raw() -> dict[str, Any]:
    return load_topology("seed").to_mapping()


def _problems(raw: Any) -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(raw)
    return info.value.problems


def test_seed_layout_gives_each_database_one_writer_in_its_own_file() -> None:
    topo = load_topology("seed")
    assert topo.layout == "separate"
    assert {db: topo.writers(db) for db in topo.databases} == {
        "ticks": ("bot",),
        "analysis": ("agent",),
        "logs": ("api",),
    }
    assert {str(d.path) for d in topo.databases.values()} == {
        "unified_tick_pipeline.db",
        "analysis_data.db",
        "system_logs.db",
    }
    assert str(topo.status) == "shared_memory.json"
    assert all(d.journal_mode == "wal" for d in topo.databases.values())


def test_legacy_layout_puts_every_database_in_one_file_written_by_every_role() -> None:
    topo = load_topology("legacy")
    assert topo.layout == "shared"
    assert len({d.path for d in topo.databases.values()}) == 1
    for db in topo.databases:
        assert set(topo.writers(db)) == {"bot", "agent", "api"}


def test_topology_round_trips_through_its_mapping() -> None:
    topo = load_topology("seed")
    assert parse_topology(topo.to_mapping()) == topo


def test_with_settings_overrides_every_database_and_validates() -> None:
    topo = load_topology("legacy").with_settings(journal_mode="delete", busy_timeout_ms=0)
    assert {d.journal_mode for d in topo.databases.values()} == {"delete"}
    assert {d.busy_timeout_ms for d in topo.databases.values()} == {0}
    with pytest.raises(TopologyError, match="busy_timeout_ms"):
        topo.with_settings(busy_timeout_ms=-5)


def test_topology_file_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('layout = "separate"\n[databases.ticks]\npath = "ticks.db"\n')
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert str(path) in str(info.value)
    assert any(p.startswith("roles:") for p in info.value.problems)


def test_missing_file_and_bad_toml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="file not found"):
        load_topology(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("layout = = 1")
    with pytest.raises(TopologyError, match="not valid TOML"):
        load_topology(bad)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["roles"]["bot"].update(ticks="ro"), "databases.ticks: no role writes it"),
        (lambda r: r["roles"]["api"].update(ticks="rw"), "databases.ticks: 2 writers"),
        (lambda r: r["roles"].update(robot={"ticks": "ro"}), "roles.robot: unknown role"),
        (lambda r: r["roles"]["bot"].update(prices="ro"), "roles.bot.prices: unknown database"),
        (lambda r: r["roles"]["bot"].update(ticks="write"), "roles.bot.ticks: expected 'rw'"),
        (lambda r: r["roles"].pop("api"), "roles.api: missing"),
        (lambda r: r["databases"]["ticks"].update(path="../x.db"), "databases.ticks.path"),
        (lambda r: r["databases"]["ticks"].update(path="/abs.db"), "databases.ticks.path"),
        (lambda r: r["databases"]["ticks"].update(path=":memory:"), "databases.ticks.path"),
        (lambda r: r["databases"]["ticks"].update(path=3), "databases.ticks.path"),
        (lambda r: r["databases"]["logs"].update(path="analysis_data.db"), "databases.logs.path"),
        (lambda r: r["databases"]["ticks"].update(journal_mode="wall"), "ticks.journal_mode"),
        (lambda r: r["databases"]["ticks"].update(synchronous=1), "ticks.synchronous"),
        (lambda r: r["databases"]["ticks"].update(busy_timeout_ms="5s"), "ticks.busy_timeout_ms"),
        (lambda r: r["databases"]["ticks"].update(busy_timeout_ms=True), "ticks.busy_timeout_ms"),
        (lambda r: r["databases"]["ticks"].update(colour="red"), "databases.ticks.colour"),
        (lambda r: r.update(layout="split"), "layout: expected one of"),
        (lambda r: r.update(status="../s.json"), "status:"),
        (lambda r: r.update(extra=1), "extra: unknown key"),
        (lambda r: r.update(databases={}), "databases: expected a non-empty table"),
    ],
)
def test_bad_topology_error_names_the_field(mutate: Any, field: str) -> None:
    raw = _seed_raw()
    mutate(raw)
    problems = _problems(raw)
    assert any(field in p for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    raw = _seed_raw()
    raw["databases"]["ticks"]["journal_mode"] = "nope"
    raw["roles"]["api"]["logs"] = "ro"
    raw["layout"] = "x"
    assert len(_problems(raw)) == 3


_KEYS = st.sampled_from(["name", "layout", "status", "defaults", "databases", "roles", "x"])
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(alphabet=string.printable, max_size=12),
    st.sampled_from(["rw", "ro", "wal", "ticks", "bot", "../a", "a.db", ""]),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["ticks", "bot", "path", "journal_mode", "busy_timeout_ms", "rw", "q"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_generated_bad_topologies_give_field_naming_errors_never_a_traceback(
    raw: dict[str, Any],
) -> None:
    try:
        parse_topology(raw)
    except TopologyError as exc:
        assert exc.problems
        for problem in exc.problems:
            field, _, message = problem.partition(": ")
            assert field and message, problem
            assert field.split(".")[0] in {*raw, "databases", "roles", "<root>"}, problem


@settings(max_examples=200, deadline=None)
@given(
    path=st.sampled_from(["ticks", "analysis", "logs"]),
    key=st.sampled_from(["path", "journal_mode", "synchronous", "busy_timeout_ms"]),
    value=_LEAVES,
)
def test_generated_bad_database_settings_name_their_field(path: str, key: str, value: Any) -> None:
    raw = _seed_raw()
    raw["databases"][path][key] = value
    try:
        parse_topology(raw)
    except TopologyError as exc:
        assert any(p.startswith(f"databases.{path}") for p in exc.problems), exc.problems


@pytest.mark.parametrize("name", ["seed", "legacy"])
def test_topology_round_trips_through_toml(tmp_path: Path, name: str) -> None:
    topo = load_topology(name).with_settings(busy_timeout_ms=0, journal_mode="delete")
    path = tmp_path / "t.toml"
    path.write_text(topo.to_toml())
    assert load_topology(path) == topo


@pytest.mark.parametrize("name", ["seed", "legacy"])
def test_the_shipped_layouts_place_each_reference_table_where_the_schema_creates_it(
    name: str,
) -> None:
    from reference.schema import TABLES

    topo = load_topology(name)
    assert {db: spec.tables for db, spec in topo.databases.items()} == TABLES


def test_a_table_placed_twice_or_badly_listed_names_the_field() -> None:
    raw = _seed_raw()
    raw["databases"]["logs"]["tables"] = ["request_log", "ticks"]
    raw["databases"]["analysis"]["tables"] = "bars"
    problems = _problems(raw)
    assert (
        "databases.logs.tables: 'ticks' is also placed in databases.ticks.tables; "
        "list each table in one database" in problems
    )
    assert "databases.analysis.tables: expected a list of table names, got 'bars'" in problems
    raw = _seed_raw()
    raw["databases"]["ticks"]["tables"] = ["ticks", "ticks"]
    assert _problems(raw) == ["databases.ticks.tables: 'ticks' listed twice; list it once"]


def test_os_enforcement_is_read_and_round_trips() -> None:
    raw = _seed_raw()
    raw["enforcement"] = "os"
    raw["status"] = "status/shared_memory.json"
    topo = parse_topology(raw)
    assert topo.enforcement == "os"
    assert parse_topology(topo.to_mapping()) == topo
    assert load_topology("seed").enforcement == "process"


def test_os_enforcement_needs_one_writer_per_file_and_a_status_directory() -> None:
    raw = load_topology("legacy").to_mapping()
    raw["enforcement"] = "os"
    problems = _problems(raw)
    assert (
        'enforcement: "os" gives each file one writer (its owner); a shared layout has several: '
        'use layout = "separate" or enforcement = "process"' in problems
    )
    assert (
        "status: shared_memory.json would sit among the database files, which no role may "
        'create or replace under enforcement = "os"; give it a directory of its own, such as '
        '"status/shared_memory.json"' in problems
    )
    raw = _seed_raw()
    raw["enforcement"] = "kernel"
    assert _problems(raw)[0].startswith("enforcement: expected 'process' (the access manager")


# Found by tests/test_cli_fuzz.py.
def test_an_unknown_key_in_defaults_names_it() -> None:
    raw = _seed_raw()
    raw["defaults"] = {"busy_timeout_ms": 5000, "busy_timeout": 10}
    assert _problems(raw) == [
        "defaults.busy_timeout: unknown key; allowed: journal_mode, synchronous, busy_timeout_ms"
    ]


@pytest.mark.parametrize(
    ("mutate", "problem_start"),
    [
        (lambda r: r.update({"line\nbreak": 1}), '"line\\nbreak": unknown key'),
        (lambda r: r.update({"a.b": 1}), '"a.b": unknown key'),
        (
            lambda r: r["databases"]["ticks"].update({"x y": 1}),
            'databases.ticks."x y": unknown key',
        ),
        (lambda r: r["databases"].update({"new\n": {"path": "n.db"}}), 'databases."new\\n": '),
        (lambda r: r["roles"].update({"r\n": {}}), 'roles."r\\n": '),
        (lambda r: r["roles"]["bot"].update({"a\nb": "ro"}), 'roles.bot."a\\nb": unknown database'),
    ],
)
def test_a_key_that_is_not_a_plain_name_is_quoted_so_the_error_stays_on_one_line(
    mutate: Any, problem_start: str
) -> None:
    raw = _seed_raw()
    mutate(raw)
    problems = _problems(raw)
    assert any(p.startswith(problem_start) for p in problems), problems
    assert all("\n" not in p for p in problems), problems


@pytest.mark.parametrize("name", ["ticks\n", "bot\n"])
def test_a_name_with_a_trailing_newline_is_not_a_name(name: str) -> None:
    raw = _seed_raw()
    if name.startswith("ticks"):
        raw["databases"][name] = raw["databases"].pop("ticks")
    else:
        raw["roles"][name] = raw["roles"].pop("bot")
    assert any("must match" in p for p in _problems(raw))
