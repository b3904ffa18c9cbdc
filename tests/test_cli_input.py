"""Every command answers bad input with one line naming the input and the fix, exit 2.

Each case is what a careless user types. The claim: exit code 2, one line on stderr that names
the input, no traceback (an exception out of `main` fails the test), and nothing left behind.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = str(ROOT / "scenarios" / "default.toml")
A_SCRIPT = str(ROOT / "scenarios" / "interleavings" / "busy-timeout-wait.toml")
# A path under a regular file: no one, root included, can create it.
UNDER_A_FILE = "/etc/passwd/x"


def _bad(argv: list[str], capsys: Any, *, names: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code} for {argv}; stderr: {err}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line for {argv}, got:\n{err}"
    assert names in lines[0], f"{names!r} not named in: {lines[0]}"
    return lines[0]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--duration", "-5"),
        ("--duration", "0"),
        ("--duration", "nan"),
        ("--duration", "inf"),
        ("--duration", "1e9"),
        ("--duration", "soon"),
        ("--repeat", "0"),
        ("--repeat", "-1"),
        ("--repeat", "1000000"),
        ("--seed", "x"),
        ("--repeat", "2.5"),
    ],
)
def test_run_refuses_a_bad_override_on_one_line(
    flag: str, value: str, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "reports"
    line = _bad(["run", DEFAULT, flag, value, "--out", str(out)], capsys, names=flag)
    assert value in line
    assert not out.exists()


def test_run_refuses_an_out_directory_it_cannot_create(tmp_path: Path, capsys: Any) -> None:
    _bad(["run", DEFAULT, "--out", UNDER_A_FILE], capsys, names=UNDER_A_FILE)


def test_run_refuses_a_file_as_out_directory(tmp_path: Path, capsys: Any) -> None:
    file = tmp_path / "reports"
    file.write_text("mine\n")
    _bad(["run", DEFAULT, "--out", str(file)], capsys, names=str(file))
    assert file.read_text() == "mine\n"


def test_run_refuses_an_empty_scenario_file(tmp_path: Path, capsys: Any) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    line = _bad(["run", str(empty), "--out", str(tmp_path / "r")], capsys, names=str(empty))
    assert "empty" in line
    assert not (tmp_path / "r").exists()


def test_scenarios_lists_an_empty_file_as_invalid(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "empty.toml").write_text("")
    assert main(["scenarios", str(tmp_path)]) == 2
    assert "empty" in capsys.readouterr().out


def test_run_on_a_step_script_says_to_use_replay(tmp_path: Path, capsys: Any) -> None:
    line = _bad(["run", A_SCRIPT, "--out", str(tmp_path / "r")], capsys, names=A_SCRIPT)
    assert "splitdb replay" in line


def test_replay_on_a_scenario_says_to_use_run(capsys: Any) -> None:
    line = _bad(["replay", DEFAULT], capsys, names=DEFAULT)
    assert "splitdb run" in line


def test_run_on_a_directory_names_it(tmp_path: Path, capsys: Any) -> None:
    _bad(["run", str(tmp_path), "--out", str(tmp_path / "r")], capsys, names=str(tmp_path))


@pytest.mark.parametrize("data_dir", [UNDER_A_FILE, "/proc/forbidden"])
def test_init_refuses_a_data_dir_it_cannot_create(data_dir: str, capsys: Any) -> None:
    _bad(["init", "--data-dir", data_dir], capsys, names=data_dir)


def test_report_refuses_an_html_path_it_cannot_write(tmp_path: Path, capsys: Any) -> None:
    run_dir = _a_run(tmp_path)
    target = UNDER_A_FILE + ".html"
    _bad(["report", str(run_dir), "--html", target], capsys, names=target)


def test_report_refuses_a_directory_as_html_path(tmp_path: Path, capsys: Any) -> None:
    run_dir = _a_run(tmp_path)
    _bad(["report", str(run_dir), "--html", str(tmp_path)], capsys, names=str(tmp_path))


def _a_run(tmp_path: Path) -> Path:
    from harness.results.report import write_report
    from tests.fixtures.reports import as_report, make_report

    write_report(as_report(make_report()), tmp_path / "run")
    return tmp_path / "run"


def test_scenarios_count_is_worded_for_one_fault(capsys: Any) -> None:
    assert main(["scenarios", str(ROOT / "scenarios" / "status-race.toml")]) == 0
    out = capsys.readouterr().out
    assert "1 faults" not in out


# Modules only the `test` extra brings. A user who ran `pip install -e .` has none of them.
TEST_EXTRA_MODULES = ("pytest", "_pytest", "xdist", "pytest_benchmark", "tox")

_WITHOUT_TEST_EXTRA = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Absent())
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _without_test_extra(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = _WITHOUT_TEST_EXTRA.format(blocked=set(TEST_EXTRA_MODULES))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["topology", "seed"],
        ["scenarios", str(ROOT / "scenarios")],
        ["init", "--data-dir", "data"],
        ["compare", "--help"],
        ["search", "--help"],
    ],
)
def test_commands_work_without_the_test_extra(argv: list[str], tmp_path: Path) -> None:
    done = _without_test_extra(*argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_stress_without_the_test_extra_says_how_to_install_it(tmp_path: Path) -> None:
    done = _without_test_extra("stress", "--times", "1", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "[test]" in lines[0], done.stderr


@pytest.mark.slow
def test_commands_other_than_search_start_without_importing_hypothesis(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom harness.cli import main\nmain(['topology', 'seed'])\n"
        "sys.exit(int('hypothesis' in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, "hypothesis was imported by `splitdb topology seed`"


@pytest.mark.slow
def test_help_loads_no_domain_code(tmp_path: Path) -> None:
    # Each command imports its domain code in its handler: `splitdb --help` stays fast.
    heavy = ("pydantic", "numpy", "hypothesis", "fastapi", "sqlite_utils", "harness.runs")
    code = (
        "import sys\nfrom harness.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert b"COMMAND" in done.stdout
    assert done.stderr.decode().strip() == "", f"`splitdb --help` imported {done.stderr!r}"


def test_report_refuses_to_replace_a_file_that_is_not_a_regular_file(
    tmp_path: Path, capsys: Any
) -> None:
    # Renaming a page over a device or a pipe would replace it (as root, /dev/full included).
    pipe = tmp_path / "pipe.html"
    os.mkfifo(pipe)
    _bad(["report", str(_a_run(tmp_path)), "--html", str(pipe)], capsys, names=str(pipe))
    assert stat.S_ISFIFO(pipe.stat().st_mode)


@pytest.mark.parametrize(
    "flag_argv",
    [
        ["search", "--no-replay", "--max-seconds", "1", "--out", UNDER_A_FILE + ".toml"],
        ["replay", A_SCRIPT, "--out", UNDER_A_FILE + ".json"],
        ["replay", A_SCRIPT, "--out", UNDER_A_FILE],
    ],
)
def test_an_output_path_is_refused_before_any_work(flag_argv: list[str], capsys: Any) -> None:
    _bad(flag_argv, capsys, names=flag_argv[-1])


def test_write_floors_is_refused_before_calibrating(tmp_path: Path, capsys: Any) -> None:
    from tests.test_floors import _runs

    runs = _runs(tmp_path, {"bench_a": [1.0, 1.01, 0.99]})
    target = UNDER_A_FILE + ".toml"
    argv = ["compare", "--calibrate", *map(str, runs), "--write-floors", target]
    _bad(argv, capsys, names=target)


def test_a_file_that_cannot_be_read_is_one_line_naming_it(capsys: Any) -> None:
    # /proc/self/mem is a regular file that even root cannot read with read(): EIO.
    _bad(["run", "/proc/self/mem"], capsys, names="/proc/self/mem")
    _bad(["topology", "/proc/self/mem"], capsys, names="/proc/self/mem")


@pytest.mark.parametrize(
    "argv",
    [
        ["init", "--data-dir", ""],
        ["scenarios", ""],
        ["run", DEFAULT, "--out", ""],
        ["compare", "", DEFAULT],
        ["replay", A_SCRIPT, "--out", ""],
        ["search", "--out", ""],
        ["stress", "--no-tests", "--out", ""],
        ["up", "--data-dir", ""],
        ["up", "--run-dir", ""],
        ["report", ""],
    ],
)
def test_an_empty_path_is_refused_not_read_as_the_current_directory(
    argv: list[str], tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "empty" in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_binary_topology_file_is_one_line_naming_it(tmp_path: Path, capsys: Any) -> None:
    junk = tmp_path / "junk.toml"
    junk.write_bytes(bytes(range(256)) * 8)
    _bad(["topology", str(junk)], capsys, names=str(junk))


def test_a_negative_seed_is_refused_before_the_run(tmp_path: Path, capsys: Any) -> None:
    _bad(["run", DEFAULT, "--seed", "-1", "--out", str(tmp_path / "r")], capsys, names="--seed")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--threshold", "bot.ticks_per_s=nan"], "nan"),
        (["--threshold", "bot.ticks_per_s=inf"], "inf"),
        (["--min-change", "nan"], "--min-change"),
        (["--min-change", "inf"], "--min-change"),
    ],
)
def test_compare_refuses_a_threshold_that_could_never_fail(
    flags: list[str], names: str, capsys: Any
) -> None:
    report = str(ROOT / "tests" / "fixtures" / "report-v1.json")
    _bad(["compare", report, report, *flags], capsys, names=names)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--max-seconds", "nan"), ("--max-seconds", "inf"), ("--max-steps", "100000")],
)
def test_search_refuses_a_budget_without_an_end(flag: str, value: str, capsys: Any) -> None:
    _bad(["search", "--no-replay", flag, value], capsys, names=flag)


def test_floors_file_refuses_a_floor_that_is_not_a_finite_number(
    tmp_path: Path, capsys: Any
) -> None:
    floors = tmp_path / "floors.toml"
    floors.write_text('[floors]\n"bench.test_x" = nan\n')
    report = str(ROOT / "tests" / "fixtures" / "report-v1.json")
    _bad(["compare", report, report, "--floors", str(floors)], capsys, names=str(floors))


def test_scenarios_says_on_stderr_how_many_files_are_invalid(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "bad.toml").write_text("duration = -1\n")
    (tmp_path / "good.toml").write_text((ROOT / "scenarios" / "default.toml").read_text())
    assert main(["scenarios", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "INVALID" in captured.out and "ok " in captured.out
    assert captured.err.strip() == "splitdb: error: 1 of 2 scenario files invalid"


def test_scenarios_outside_the_repo_says_where_to_run_it(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = _bad(["scenarios"], capsys, names="scenarios/")
    assert "splitdb scenarios" not in line


# Found by tests/test_cli_fuzz.py: each was a traceback (a RecursionError out of the parser).
_DEEP_TOML = b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n"
_DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("command", "name", "content"),
    [
        (["run"], "s.toml", _DEEP_TOML),
        (["topology"], "t.toml", _DEEP_TOML),
        (["replay"], "s.toml", _DEEP_TOML),
        (["report"], "report.json", _DEEP_JSON),
        (["compare", str(ROOT / "tests" / "fixtures" / "report-v1.json")], "new.json", _DEEP_JSON),
        (["replay"], "trace.json", _DEEP_JSON),
    ],
)
def test_a_file_nested_too_deeply_to_parse_is_one_line_naming_it(
    command: list[str], name: str, content: bytes, tmp_path: Path, capsys: Any
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    line = _bad([*command, str(path)], capsys, names=str(path))
    assert "nested too deeply" in line


# Found by tests/test_cli_fuzz.py: a check's evidence figure that is not a number was a
# ValueError or TypeError traceback out of `splitdb report` and `splitdb compare`.
@pytest.mark.parametrize(
    ("check", "key", "value"),
    [
        ("contention", "busy_events", ""),
        ("contention", "busy_events", [1]),
        ("permissions", "forbidden", "many"),
        ("duplicates", "duplicated_keys", 3),
        ("integrity", "problems", 2),
    ],
)
@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_report_whose_evidence_is_not_a_figure_is_one_line_naming_it(
    check: str, key: str, value: Any, command: str, tmp_path: Path, capsys: Any
) -> None:
    import json

    data = json.loads((ROOT / "tests" / "fixtures" / "report-v1.json").read_text())
    found = [c for c in data["repeats"][0]["checks"] if c["name"] == check]
    found[0]["evidence"][key] = value
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    argv = ["report", str(path)] if command == "report" else ["compare", str(path), str(path)]
    line = _bad(argv, capsys, names=str(path))
    assert f"{check}" in line and key in line
