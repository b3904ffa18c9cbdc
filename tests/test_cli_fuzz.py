"""Hypothesis-made input files through the real `splitdb` entry point, in process.

Scenario, topology, step-script, trace and report files, broken every way a file can be (wrong
types, unknown keys, non-finite and out-of-range numbers, nested garbage, any unicode, huge
numbers, empty files, binary, JSON nested past any sane depth), go through `harness.cli.main`
for `run`, `topology`, `replay`, `report`, `compare` and `scenarios`. The claim: never a
traceback; bad input is exit 2 with one line on stderr, or a header line and one `  - field:
problem` line per problem, each naming the field; and nothing was started (a run or a replay
that begins fails the test). Each property runs a bounded number of examples (EXAMPLES), so the
file stays in the fast lane (no process is started; tests/conftest.py holds that).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
# Per property; SPLITDB_FUZZ_EXAMPLES=5000 for a longer hunt (same derandomized start).
EXAMPLES = int(os.environ.get("SPLITDB_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- writing documents -----------------------------------------------------------------------


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{_toml_string(str(k))} = {_toml_value(v)}" for k, v in value.items())
            + "}"
        )
    raise TypeError(f"no TOML for {value!r}")


def to_toml(document: dict[str, Any]) -> str:
    """A TOML text of `document`: every key quoted, tables inline (any nesting TOML allows)."""
    return "".join(f"{_toml_string(str(k))} = {_toml_value(v)}\n" for k, v in document.items())


# --- broken values -----------------------------------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
_NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
_DATES = st.sampled_from([date(1979, 5, 27), datetime(1979, 5, 27, 7, 32, tzinfo=UTC), time(7, 32)])
_GARBAGE = st.recursive(
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(), _TEXT, _DATES),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


def _wrong_for(original: Any) -> st.SearchStrategy[Any]:
    """Values a field holding `original` never accepts: another type, or a number no field
    takes (nan, inf)."""
    nested = st.one_of(
        st.lists(_GARBAGE, min_size=1, max_size=3),
        st.dictionaries(_TEXT, _GARBAGE, min_size=1, max_size=3),
    )
    if isinstance(original, bool):
        return st.one_of(st.sampled_from([0, 1, "true", "yes", 1.0]), _DATES, nested, _NON_FINITE)
    if isinstance(original, int | float):
        return st.one_of(
            _NON_FINITE,
            st.booleans(),
            st.sampled_from(["ten", "10", "", "1e3", " 5"]),
            _DATES,
            nested,
        )
    if isinstance(original, str):
        return st.one_of(st.integers(), st.floats(), st.booleans(), _DATES, nested)
    if isinstance(original, list):
        return st.one_of(
            st.integers(), _TEXT.filter(bool), _DATES, st.dictionaries(_TEXT, _GARBAGE, min_size=1)
        )
    return st.one_of(st.integers(), st.floats(), _TEXT, _DATES, st.lists(_GARBAGE, min_size=1))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def _tables(node: Any) -> list[tuple[Any, ...]]:
    return [p for p in _paths(node) if isinstance(_at(node, p), dict)]


def _key_text(key: Any) -> str:
    return str(key)


@st.composite
def broken(
    draw: st.DrawFn, base: dict[str, Any], *, skip: Callable[[tuple[Any, ...]], bool]
) -> tuple[dict[str, Any], str]:
    """`base` with one change no reader may accept, and the top-level key it is under."""
    doc = copy.deepcopy(base)
    if draw(st.booleans()):
        # An unknown key in some table (`skip` leaves out the tables of free-form keys).
        tables = [p for p in _tables(doc) if not skip(p)]
        where = draw(st.sampled_from(tables))
        key = draw(
            st.one_of(
                st.sampled_from(["surprise", "x y", "a.b", "line\nbreak", "é", "\x00"]),
                _TEXT.filter(bool),
            )
        )
        table = _at(doc, where)
        if key in table:
            key += "_unknown"
        table[key] = draw(_GARBAGE)
        return doc, str(where[0]) if where else key
    leaves = [p for p in _paths(doc) if p and not skip(p)]
    where = draw(st.sampled_from(leaves))
    parent = _at(doc, where[:-1])
    parent[where[-1]] = draw(_wrong_for(parent[where[-1]]))
    return doc, str(where[0])


_RAW_FILES = st.one_of(
    st.just(b""),
    st.just(b"\n\n# only a comment\n"),
    st.binary(max_size=200),
    st.just(bytes(range(256))),
    st.just("\ufeffduration = 3\n".encode()),
    st.just(b"duration = 99999999999999999999999\n"),
    st.just(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
    st.just(b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n"),
    st.just(b"x = " + b"{a = " * 2000 + b"1" + b"}" * 2000 + b"\n"),
    _TEXT.map(lambda t: t.encode("utf-8")),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=50).map(
        lambda t: t.encode("utf-16")
    ),
)


# --- running the command ------------------------------------------------------------------------


class Started(Exception):
    """A run or replay began: the input was taken as valid."""


def _start(*args: Any, **kwargs: Any) -> Any:
    raise Started


@contextlib.contextmanager
def nothing_starts() -> Iterator[None]:
    """Every way a command starts work raises Started instead."""
    with (
        mock.patch("harness.runs.run.run_scenario", _start),
        mock.patch("harness.interleavings.replay.replay_script", _start),
    ):
        yield


def cli(argv: list[str]) -> tuple[int | None, str, str]:
    """(exit code, stdout, stderr) of `splitdb ARGV`; exit code None when work started."""
    out, err = io.StringIO(), io.StringIO()
    with nothing_starts(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except Started:
            code = None
    return code, out.getvalue(), err.getvalue()


# Whole-file problems: they name the file, no field of it.
_WHOLE_FILE = (
    "the file is empty",
    "this is a ",
    "file not found",
    "a directory",
    "cannot be read",
    "cannot be looked up",
    "not a text file",
    "not valid TOML",
)
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_FIELD = re.compile(rf"^(<root>|({_QUOTED}|[A-Za-z0-9_\[\]-])({_QUOTED}|[.A-Za-z0-9_\[\]-])*): \S")


def problems_of(err: str, source: Path) -> list[str]:
    """The problems of a one-line (or one line per problem) error about `source`."""
    assert "Traceback" not in err, err
    lines = err.rstrip("\n").split("\n")
    assert lines[0].startswith("splitdb: error: "), err
    assert str(source) in lines[0], err
    if len(lines) == 1:
        head = lines[0]
        rest = head.split(f"{source}: ", 1)[1] if f"{source}: " in head else head
        return [rest]
    assert lines[0].endswith(":"), err
    assert all(line.startswith("  - ") for line in lines[1:]), err
    return [line[4:] for line in lines[1:]]


def assert_names_fields(problems: list[str], *, under: str | None = None) -> None:
    """Each problem is `field: what; the fix` (or about the whole file); `under`, when given,
    is a top-level key at least one problem's field starts with."""
    for problem in problems:
        assert problem.startswith(_WHOLE_FILE) or _FIELD.match(problem), problem
    if under is not None and not any(p.startswith(_WHOLE_FILE) for p in problems):
        fields = [p.split(": ", 1)[0] for p in problems]
        top = json.dumps(under) if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", under) else under
        assert any(
            f == top or f.startswith((f"{top}.", f"{top}[")) or f == "<root>" for f in fields
        ), (under, problems)


def bad_input(argv: list[str], source: Path) -> list[str]:
    """Run the CLI on a file that is bad: exit 2, nothing started, one line per problem."""
    code, _, err = cli(argv)
    assert code == 2, f"exit {code} for {argv}; stderr:\n{err}"
    return problems_of(err, source)


@contextlib.contextmanager
def a_file(name: str, content: bytes | str) -> Iterator[Path]:
    if currently_in_test_context():
        shown = repr(content)
        note(f"{name}: {shown if len(shown) <= 3000 else shown[:3000] + '...'}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        yield path


# --- scenarios: splitdb run, splitdb scenarios ------------------------------------------------

SCENARIO = tomllib.loads((ROOT / "scenarios" / "default.toml").read_text(encoding="utf-8"))
SCENARIO.update(
    {
        "settings": {"busy_timeout_ms": 5000, "journal_mode": "wal"},
        "fault": [{"kind": "sigkill", "target": "bot", "at": 5}],
        "variant": [
            {"name": "legacy", "topology": "legacy", "expect": {"max_busy_events": 100_000}}
        ],
        "invariant": [{"database": "ticks", "sql": "SELECT count(*) FROM ticks", "min": 0}],
    }
)
SCENARIO["processes"]["api"] = {"enabled": True}
SCENARIO["processes"]["tool"] = {
    "command": ["{python}", "-c", "pass"],
    "role": "api",
    "oneshot": True,
    "env": {"MODE": "quiet"},
}


def _scenario_free(path: tuple[Any, ...]) -> bool:
    # Free-form tables: a process's environment; a variant's overrides are checked on apply.
    return "env" in path or path[:1] == ("description",)


def test_the_scenario_base_is_valid() -> None:
    with a_file("base.toml", to_toml(SCENARIO)) as path:
        code, _, err = cli(["run", str(path), "--out", str(path.parent / "r")])
    assert code is None, err


@FUZZ
@given(broken(SCENARIO, skip=_scenario_free))
def test_run_refuses_a_broken_scenario_before_anything_starts(
    case: tuple[dict[str, Any], str],
) -> None:
    doc, under = case
    with a_file("s.toml", to_toml(doc)) as path:
        out = path.parent / "reports"
        problems = bad_input(["run", str(path), "--out", str(out)], path)
        assert not out.exists()
    assert_names_fields(problems, under=under)


@FUZZ
@given(_RAW_FILES)
def test_run_refuses_a_file_that_is_not_a_scenario(content: bytes) -> None:
    with a_file("s.toml", content) as path:
        code, _, err = cli(["run", str(path), "--out", str(path.parent / "r")])
        if code is None:
            return  # a valid scenario after all (a bare "duration = 3" is one)
        assert code == 2, err
        assert_names_fields(problems_of(err, path))
        assert not (path.parent / "r").exists()


@FUZZ
@given(
    st.lists(
        st.one_of(
            broken(SCENARIO, skip=_scenario_free).map(lambda c: to_toml(c[0]).encode()), _RAW_FILES
        ),
        min_size=1,
        max_size=3,
    )
)
def test_scenarios_lists_each_broken_file_with_its_problems(files: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i, content in enumerate(files):
            (Path(tmp) / f"s{i}.toml").write_bytes(content)
        code, out, err = cli(["scenarios", tmp])
    assert "Traceback" not in out + err
    invalid = out.count("INVALID ")
    if code == 0:
        assert invalid == 0 and err == "", (out, err)
        return
    assert code == 2, err
    assert err == f"splitdb: error: {invalid} of {len(files)} scenario files invalid\n", (out, err)
    for line in out.splitlines():
        assert line.startswith(("ok ", "INVALID ", "  - ", "topology ")), line
        if line.startswith("  - "):
            assert_names_fields([line[4:]])


# --- topologies: splitdb topology ---------------------------------------------------------------

# [roles] and [databases] are tables of names: a new well-formed name there is a new role (one
# with no grants is allowed) or database, not an unknown key; the fuzz leaves them whole.
TOPOLOGY = tomllib.loads(
    (ROOT / "reference" / "topologies" / "seed.toml").read_text(encoding="utf-8")
)


@FUZZ
@given(broken(TOPOLOGY, skip=lambda p: p in (("roles",), ("databases",))))
def test_topology_refuses_a_broken_topology_naming_the_field(
    case: tuple[dict[str, Any], str],
) -> None:
    doc, under = case
    with a_file("t.toml", to_toml(doc)) as path:
        problems = bad_input(["topology", str(path)], path)
    assert_names_fields(problems, under=under)


@FUZZ
@given(_RAW_FILES)
def test_topology_refuses_a_file_that_is_not_a_topology(content: bytes) -> None:
    with a_file("t.toml", content) as path:
        assert_names_fields(bad_input(["topology", str(path)], path))


# --- step scripts and traces: splitdb replay ----------------------------------------------------

SCRIPT = tomllib.loads(
    (ROOT / "scenarios" / "interleavings" / "busy-timeout-wait.toml").read_text(encoding="utf-8")
)


def _script_free(path: tuple[Any, ...]) -> bool:
    # Any text is a description or a note; an expected value may be of any scalar type.
    return path[:1] == ("description",) or path[-1:] in (("note",), ("expect_value",))


@FUZZ
@given(broken(SCRIPT, skip=_script_free))
def test_replay_refuses_a_broken_step_script_before_any_process_starts(
    case: tuple[dict[str, Any], str],
) -> None:
    doc, under = case
    with a_file("script.toml", to_toml(doc)) as path:
        problems = bad_input(["replay", str(path)], path)
    assert_names_fields(problems, under=under)


@FUZZ
@given(_RAW_FILES)
def test_replay_refuses_a_file_that_is_not_a_script(content: bytes) -> None:
    with a_file("script.toml", content) as path:
        assert_names_fields(bad_input(["replay", str(path)], path))


# --- reports: splitdb report, splitdb compare, splitdb replay REPORT ---------------------------

REPORT = json.loads((ROOT / "tests" / "fixtures" / "report-v1.json").read_text(encoding="utf-8"))

_JSON_GARBAGE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _TEXT),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def broken_report(draw: st.DrawFn) -> bytes:
    """The fixture report with one to three leaves or tables replaced by anything JSON holds."""
    doc = copy.deepcopy(REPORT)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from([p for p in _paths(doc) if p]))
        parent = _at(doc, where[:-1])
        if draw(st.integers(0, 4)) == 0 and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = draw(
                st.one_of(
                    _JSON_GARBAGE,
                    _NON_FINITE,
                    st.sampled_from([-1, 0, 2**63, -(2**63), 1e308, -1e308, "", "\u202e", 10**400]),
                )
            )
    # json.dumps writes NaN and Infinity, as Python's json.loads reads them.
    return json.dumps(doc).encode()


_RAW_JSON = st.one_of(
    _RAW_FILES,
    st.just(b"[" * 100_000 + b"]" * 100_000),
    st.just(b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    st.just(b'{"schema": "splitdb-report", "version": 1}'),
    st.just(b'{"schema": "splitdb-report", "version": 1e400}'),
    st.just(b"NaN"),
    _JSON_GARBAGE.map(lambda v: json.dumps(v).encode()),
)


def _report_answer(argv: list[str], path: Path) -> int:
    code, _, err = cli(argv)
    assert code is not None, "a report made a replay start"
    assert "Traceback" not in err, err
    if code == 2:
        problems_of(err, path)
    else:
        assert code in (0, 1), (code, err)
    return code


@FUZZ
@given(st.one_of(broken_report(), _RAW_JSON))
def test_report_renders_or_refuses_in_one_line(content: bytes) -> None:
    with a_file("report.json", content) as path:
        code = _report_answer(["report", str(path), "--html", str(path.parent / "r.html")], path)
        assert (path.parent / "r.html").exists() == (code == 0)


@FUZZ
@given(st.one_of(broken_report(), _RAW_JSON))
def test_compare_compares_or_refuses_in_one_line(content: bytes) -> None:
    with a_file("new.json", content) as path:
        base = ROOT / "tests" / "fixtures" / "report-v1.json"
        _report_answer(["compare", str(base), str(path)], path)


@FUZZ
@given(st.one_of(broken_report(), _RAW_JSON))
def test_replay_of_a_broken_report_or_trace_refuses_in_one_line(content: bytes) -> None:
    with a_file("report.json", content) as path:
        code, _, err = cli(["replay", str(path)])
        if code is None:
            return  # the report was readable and its scenario valid: the replay would start
        assert code == 2, err
        problems_of(err, path)
