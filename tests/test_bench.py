"""`splitdb bench`, the benchmark gate: bad input is one line and exit 2, a regression is red, an
unchanged tree is green.

The gate runs in a toy repository (a git repo whose tests/benchmarks time one function) where a
test needs a base and a head it controls, and in this repository for the end-to-end run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
# The toy's benchmark: fast rounds, so a gate of 5 rounds a side takes seconds.
QUICK = ["--", "--benchmark-max-time=0.05", "--benchmark-min-rounds=5", "--benchmark-warmup=off"]
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "splitdb tests",
    "GIT_AUTHOR_EMAIL": "tests@splitdb.invalid",
    "GIT_COMMITTER_NAME": "splitdb tests",
    "GIT_COMMITTER_EMAIL": "tests@splitdb.invalid",
}
_WORK = "LOOPS = {loops}\n\n\ndef work() -> int:\n    return sum(i * i for i in range(LOOPS))\n"
_BENCHMARK = "from toy_work import work\n\n\ndef test_bench_work(benchmark):\n    benchmark(work)\n"

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **_GIT_ENV},
    )
    return done.stdout.strip()


def _toy(tmp_path: Path, *, loops: int = 20_000, benchmarks: bool = True) -> Path:
    """A git repository with one commit: toy_work.py and (unless not) its benchmark."""
    repo = tmp_path / "toy"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "toy_work.py").write_text(_WORK.format(loops=loops))
    (repo / ".gitignore").write_text("reports/\n")
    floors = repo / "tests" / "benchmarks"
    floors.mkdir(parents=True)
    (floors / "gate-floors.toml").write_text('[floors]\n"bench.*" = 25\n')
    if benchmarks:
        (floors / "test_toy.py").write_text(_BENCHMARK)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "toy")
    return repo


def _bad(argv: list[str], capsys: pytest.CaptureFixture[str], *, names: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code} for {argv}; stderr: {err}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line for {argv}, got:\n{err}"
    assert names in lines[0], f"{names!r} not named in: {lines[0]}"
    return lines[0]


# --- bad input: one line, exit 2, before anything runs ---------------------------------------


@pytest.mark.parametrize(
    ("argv", "names", "fix"),
    [
        (["--no-micro", "--no-scenario"], "--no-micro with --no-scenario", "drop one"),
        (["--write-floors", "f.toml"], "--write-floors f.toml", "--calibrate"),
        (["--no-scenario", "--duration", "2"], "--duration 2", "--no-scenario"),
        (["--base", "HEAD", "--merge-base", "main"], "--merge-base main", "give one"),
        (["--no-micro", "--", "-k", "x"], "-- -k x", "--no-micro"),
    ],
)
def test_flags_that_contradict_each_other_are_one_line(
    argv: list[str], names: str, fix: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _bad(["bench", "--out", str(tmp_path / "out"), *argv], capsys, names=names)
    assert fix in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@needs_git
def test_a_revision_git_does_not_know_is_one_line_naming_it_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(_toy(tmp_path))
    out = tmp_path / "out"
    line = _bad(["bench", "--base", "no-such-rev", "--out", str(out)], capsys, names="no-such-rev")
    assert line.startswith("splitdb: error: --base no-such-rev: no such revision in ")
    assert "give a commit, tag or branch" in line
    assert not out.exists()


@pytest.mark.slow
@needs_git
def test_the_base_from_the_environment_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(_toy(tmp_path))
    monkeypatch.setenv("SPLITDB_BENCH_BASE", "v9.9")
    _bad(["bench", "--out", str(tmp_path / "out")], capsys, names="SPLITDB_BENCH_BASE v9.9")


@pytest.mark.slow
@needs_git
def test_the_default_base_missing_from_a_shallow_clone_says_to_fetch_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    origin = _toy(tmp_path)
    (origin / "toy_work.py").write_text(_WORK.format(loops=30_000))
    _git(origin, "commit", "-q", "-am", "second")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(clone))
    monkeypatch.chdir(clone)
    monkeypatch.delenv("SPLITDB_BENCH_BASE", raising=False)
    line = _bad(["bench", "--out", str(tmp_path / "out")], capsys, names="HEAD~1")
    assert "shallow" in line and "fetch-depth: 2" in line and "SPLITDB_BENCH_BASE" in line


@pytest.mark.slow
@needs_git
def test_a_base_without_benchmarks_is_refused_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _toy(tmp_path, benchmarks=False)
    base = _git(repo, "rev-parse", "HEAD")
    (repo / "tests" / "benchmarks" / "test_toy.py").write_text(_BENCHMARK)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "benchmarks")
    monkeypatch.chdir(repo)
    argv = ["bench", "--base", "HEAD~1", "--no-scenario", "--out", str(tmp_path / "out")]
    line = _bad(argv, capsys, names=f"base {base[:12]} (HEAD~1): has no benchmarks")
    assert "pick a base that has them" in line


@pytest.mark.slow
@needs_git
def test_outside_a_git_checkout_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    line = _bad(["bench", "--out", str(tmp_path / "out")], capsys, names=str(tmp_path))
    assert "not in a git checkout" in line


@pytest.mark.slow
@needs_git
def test_fewer_rounds_than_the_rank_test_needs_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # With 3 rounds a side no p-value reaches 0.01: such a gate could never fail.
    monkeypatch.chdir(_toy(tmp_path))
    argv = ["bench", "--base", "HEAD", "--rounds", "3", "--out", str(tmp_path / "out")]
    line = _bad(argv, capsys, names="--rounds 3")
    assert "--rounds 5 or more" in line


@pytest.mark.slow
@needs_git
def test_a_repository_without_gate_floors_is_told_how_to_measure_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _toy(tmp_path)
    (repo / "tests" / "benchmarks" / "gate-floors.toml").unlink()
    monkeypatch.chdir(repo)
    line = _bad(["bench", "--base", "HEAD"], capsys, names="gate-floors.toml")
    assert "--calibrate" in line and "--floors FILE" in line


# --- the gate on a toy repository ------------------------------------------------------------


def _gate(repo: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(repo)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return main(["bench", "--base", "HEAD", "--no-scenario", "--out", str(out), *QUICK])


@pytest.mark.slow
@needs_git
def test_an_unchanged_toy_stays_green(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _toy(tmp_path)
    # Relative, as tox passes the default: the sides run in their own trees, not here.
    assert _gate(repo, Path("reports/bench"), monkeypatch) == 0
    out = capsys.readouterr().out
    assert "## ✅ splitdb bench: ok" in out
    assert "an A/A gate" in out
    assert "bench: round 5/5, head " in out
    (gate,) = (repo / "reports" / "bench").iterdir()
    assert len(list(gate.glob("*/round-*/micro.json"))) == 10


@pytest.mark.slow
@needs_git
def test_a_toy_made_three_times_slower_turns_the_gate_red(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _toy(tmp_path)
    (repo / "toy_work.py").write_text(_WORK.format(loops=60_000))  # uncommitted: the head
    summary = tmp_path / "step-summary.md"
    monkeypatch.chdir(repo)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    argv = ["bench", "--base", "HEAD", "--no-scenario", "--out", str(tmp_path / "out"), *QUICK]
    assert main(argv) == 1
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("| `bench.test_bench_work`")]
    assert "❌ worse — **FAILS**" in row
    assert "result: FAIL, worse past threshold: bench.test_bench_work +" in out
    assert summary.read_text(encoding="utf-8").startswith("## ❌ splitdb bench: FAIL")
    (gate,) = (tmp_path / "out").iterdir()
    assert (gate / "summary.md").read_text(encoding="utf-8") in out


@pytest.mark.slow
@needs_git
def test_a_head_whose_benchmarks_fail_ends_the_gate_red_naming_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _toy(tmp_path)
    (repo / "toy_work.py").write_text("def work() -> int:\n    raise RuntimeError('broken')\n")
    assert _gate(repo, tmp_path / "out", monkeypatch) == 1
    out = capsys.readouterr().out
    assert "round 2/5" not in out  # it stopped at the first failure
    (line,) = [x for x in out.splitlines() if x.startswith("result: FAIL")]
    assert "head working tree at " in line and "round 1: micro-benchmarks failed" in line
    assert "head/round-1/micro.log" in line


# --- end to end, on this repository ----------------------------------------------------------


@pytest.mark.slow
def test_the_gate_runs_the_scenario_on_both_sides_of_this_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no base revision to build")
    # The verdict's thresholds are tested above and in tests/test_gate.py; at 1 s a run, this
    # one checks the machinery, so the floors are wide.
    floors = tmp_path / "floors.toml"
    floors.write_text('[floors]\n"*" = 1000\n')
    monkeypatch.chdir(ROOT)
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    argv = ["bench", "--base", "HEAD", "--no-micro", "--duration", "1", "--floors", str(floors)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "#### scenario 'bench': BASE 5 reports, 5 repeats; NEW 5 reports, 5 repeats" in out
    assert "| `bot.ticks_per_s` |" in out
    (gate,) = (tmp_path / "out").iterdir()
    assert len(list(gate.glob("*/round-*/scenario/*/report.json"))) == 10
    # The job's page gets the gate's summary alone, not one more per scenario run of a side.
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## ✅ splitdb bench: ok") and "splitdb run" not in text


def test_tox_bench_runs_the_gate_with_the_base_and_the_step_summary_passed_through() -> None:
    import configparser

    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    env = tox["testenv:bench"]
    # The gate, then the side-by-side measurements (they report; they gate nothing).
    assert [line.split() for line in env["commands"].strip().splitlines()] == [
        ["splitdb", "bench", "{posargs}"],
        ["splitdb", "speed", "api"],
        ["splitdb", "speed", "bot"],
    ]
    assert set(env["pass_env"].split()) >= {"SPLITDB_BENCH_BASE", "GITHUB_STEP_SUMMARY"}
    assert "bench" not in tox["tox"]["env_list"]  # minutes long: only when asked for
