"""`splitdb stress`: rounds on a busy machine, and a flake rate that names what failed."""

from __future__ import annotations

import configparser
import os
import shlex
from pathlib import Path

import pytest

from harness.cli import main
from harness.runs.stress import CI_SCENARIOS, flake_table, stress

ROOT = Path(__file__).resolve().parent.parent


def test_the_stress_command_runs_the_same_scenario_subset_as_ci() -> None:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    words = shlex.split(tox["testenv:scenarios"]["commands"].replace("\\\n", " "))
    assert tuple(w for w in words if w.endswith(".toml")) == CI_SCENARIOS


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["--times", "0"], "--times 0"), (["--busy", "-1"], "--busy -1")],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stress", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


@pytest.mark.slow
def test_a_failing_test_makes_its_round_red_and_is_named_in_the_flake_rate(
    tmp_path: Path,
) -> None:
    tests = tmp_path / "suite"
    tests.mkdir()
    (tests / "test_claims.py").write_text(
        "def test_holds():\n    assert True\n\n\ndef test_breaks():\n    assert 1 == 2\n"
    )
    lines: list[str] = []
    rounds = stress(
        times=2,
        busy_per_core=1,
        out=tmp_path / "out",
        scenarios=(),
        pytest_args=[str(tests), "-n", "0", "--rootdir", str(tmp_path)],
        echo=lines.append,
    )
    assert [r.ok for r in rounds] == [False, False]
    ((name, count),) = flake_table(rounds)
    assert name.endswith("test_claims.py::test_breaks") and count == 2
    assert "flake rate: 2 of 2 rounds red (100%)" in lines
    assert f"{os.cpu_count()} busy processes" in lines[0]
    # The busy processes are gone when the command returns.
    assert not _spinners()


def _spinners() -> list[int]:
    """This process's children that are still spinning."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if b"while True:" in cmdline and parent == os.getpid():
            found.append(int(entry.name))
    return found
