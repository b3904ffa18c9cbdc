"""`splitdb stress`: the test suite and the CI scenario subset, again and again, on a busy machine.

A harness whose verdict flips when another job runs gets switched off, so every change that
touches timing is tried here: N busy processes per core (plain CPU spinners, unrelated to the
project) compete with each round of `pytest -n auto` and of the CI scenario subset. The command
prints each round's verdict, then the flake rate: per failing test or scenario check, in how
many rounds it failed. A test that fails only here is a bug in the test or in the code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference.errors import SplitdbError

# The quick subset of the scenario library that CI runs (tox env `scenarios`); a test keeps this
# list and tox.ini the same.
CI_SCENARIOS: tuple[str, ...] = (
    "scenarios/default.toml",
    "scenarios/permission-attacks.toml",
    "scenarios/kill-each.toml",
    "scenarios/status-race.toml",
)
CI_DURATION_S = 6.0
_SPIN = "while True:\n    pass\n"


@dataclass
class Round:
    """One round: which tests and scenario checks failed, and how long it took."""

    index: int
    tests_rc: int | None = None
    scenarios_rc: int | None = None
    failed: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    load_avg: float = 0.0

    @property
    def ok(self) -> bool:
        return self.tests_rc in (0, None) and self.scenarios_rc in (0, None)


def start_spinners(count: int) -> list[subprocess.Popen[bytes]]:
    """`count` busy processes, each spinning one core at normal priority."""
    return [
        subprocess.Popen(
            [sys.executable, "-c", _SPIN],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def stop_spinners(spinners: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in spinners:
        proc.kill()
    for proc in spinners:
        proc.wait()


def junit_failures(path: Path) -> list[str]:
    """Test ids (file::name) that failed or errored in a pytest JUnit XML file."""
    if not path.exists():
        return ["pytest wrote no JUnit file (it did not run to the end)"]
    failed = []
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            module = (case.get("classname") or "").replace(".", "/")
            failed.append(f"{module}.py::{case.get('name')}")
    return failed


def report_failures(reports_dir: Path) -> list[str]:
    """`scenario: check` for every failed check in the reports under `reports_dir`."""
    import json

    failed: list[str] = []
    for path in sorted(reports_dir.glob("*/report.json")):
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        name = report["scenario"]["name"]
        failed.extend(f"{name}: {item}" for item in report["verdict"]["failed"])
    return failed


def run_round(
    index: int,
    out: Path,
    *,
    tests: bool,
    scenarios: Sequence[str],
    pytest_args: Sequence[str],
) -> Round:
    """One round of the suite and the scenario subset; output goes to files under `out`."""
    result = Round(index, load_avg=os.getloadavg()[0])
    started = time.monotonic()
    round_dir = out / f"round-{index}"
    round_dir.mkdir(parents=True, exist_ok=True)
    if tests:
        junit = round_dir / "pytest.xml"
        pytest = ["pytest", "-n", "auto", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        result.tests_rc = _call([*pytest, *pytest_args], round_dir / "pytest.log")
        if result.tests_rc != 0:
            result.failed.extend(junit_failures(junit))
    if scenarios:
        reports = round_dir / "reports"
        flags = ["--duration", f"{CI_DURATION_S:g}", "--quiet", "--out", str(reports)]
        result.scenarios_rc = _call(
            ["harness.cli", "run", *scenarios, *flags], round_dir / "scenarios.log"
        )
        if result.scenarios_rc != 0:
            found = report_failures(reports)
            result.failed.extend(found or [f"splitdb run exited {result.scenarios_rc}"])
    result.wall_s = time.monotonic() - started
    return result


def _call(module_and_args: Sequence[str], log_path: Path) -> int:
    """`python -m MODULE ARGS...` with its output in `log_path`; its exit code."""
    with open(log_path, "wb") as log:
        return subprocess.call(
            [sys.executable, "-m", *module_and_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def flake_table(rounds: Sequence[Round]) -> list[tuple[str, int]]:
    """(test or check, rounds it failed in), most frequent first."""
    counts = Counter(name for r in rounds for name in set(r.failed))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def stress(
    *,
    times: int,
    busy_per_core: int,
    out: Path,
    tests: bool = True,
    scenarios: Sequence[str] = CI_SCENARIOS,
    pytest_args: Sequence[str] = (),
    echo: Any = print,
) -> list[Round]:
    """Run `times` rounds with `busy_per_core` spinners per core; returns the rounds."""
    if times < 1:
        raise SplitdbError(f"--times {times}: give at least 1 round")
    if busy_per_core < 0:
        raise SplitdbError(f"--busy {busy_per_core}: give 0 or more busy processes per core")
    cores = os.cpu_count() or 1
    spinners = start_spinners(busy_per_core * cores)
    echo(
        f"stress: {times} rounds, {len(spinners)} busy processes on {cores} cores; "
        f"tests {'on' if tests else 'off'}, scenarios {', '.join(scenarios) or 'off'}; "
        f"logs in {out}"
    )
    rounds = []
    try:
        for index in range(1, times + 1):
            result = run_round(
                index, out, tests=tests, scenarios=scenarios, pytest_args=pytest_args
            )
            rounds.append(result)
            echo(
                f"round {index}: {'green' if result.ok else 'RED'} in {result.wall_s:.0f} s "
                f"(load average {result.load_avg:.1f})"
                + (f": {'; '.join(result.failed[:5])}" if result.failed else "")
            )
    finally:
        stop_spinners(spinners)
    red = sum(1 for r in rounds if not r.ok)
    echo(f"flake rate: {red} of {len(rounds)} rounds red ({100 * red / len(rounds):.0f}%)")
    for name, count in flake_table(rounds):
        echo(f"  {count}/{len(rounds)}  {name}")
    return rounds
