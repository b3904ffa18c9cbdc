"""Interleaved rounds: the base's and the head's benchmarks in turns, on one machine.

Each round measures each side once: its micro-benchmarks (`pytest tests/benchmarks` with the
flags `tox -e bench` has always used: CPU time, rounds saved) and the benchmark scenario (a real
run of the reference processes, whose wall-clock figures show what CPU time cannot, such as a
sleep per batch). Each side runs its own benchmark code; the scenario file is the same for both
(the head's unless given), as the load of a comparison must be.

The order alternates: base then head in odd rounds, head then base in even ones (ABBA). A machine
that gets steadily busier or quieter during the gate then weighs on both sides alike, where base,
head, base, head would always run the head later.

Each part's output goes to a log in the gate directory and the terminal gets one line as each
part starts. A part that fails (pytest exits non-zero, a scenario run leaves no report) ends the
gate: one side would lack its figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.atomic import write_atomically
from harness.bench.sources import BENCHMARKS_DIR, Tree
from harness.results.gate import GATE_FILE, SIDES
from harness.results.markdown import STEP_SUMMARY_VARIABLE

# What `tox -e bench` always ran: serially (pytest-benchmark switches itself off under xdist),
# timed in CPU time (wall time on a shared machine moved medians 1.8x to 3.4x), rounds saved.
MICRO_FLAGS = (
    "-p",
    "no:xdist",
    "--benchmark-only",
    "--benchmark-timer",
    "time.process_time",
    "--benchmark-save-data",
)
# Nothing measured needs them: the splitdb plugin (a base older than it could not import it)
# and the cache provider (it would write into the trees).
_UNUSED_PLUGINS = ("-p", "no:splitdb", "-p", "no:cacheprovider")
# A part's process got the terminal's Ctrl-C too, and stops what it started: time to do so.
_STOP_WAIT_S = 30.0


@dataclass(frozen=True)
class Plan:
    """What each round measures: `micro` (tests/benchmarks) and/or the `scenario` file."""

    rounds: int
    micro: bool = True
    scenario: Path | None = None
    duration: str | None = None
    pytest_args: tuple[str, ...] = ()
    scenario_label: str | None = None  # how progress lines name it (default: its path)

    @property
    def parts(self) -> tuple[str, ...]:
        """'micro' and 'scenario', those that are on, in the order each round runs them."""
        return (("micro",) if self.micro else ()) + (("scenario",) if self.scenario else ())


@dataclass
class Measurements:
    """Each side's inputs for the comparison, and why the gate stopped early (None: it did not)."""

    inputs: dict[str, list[Path]] = field(default_factory=lambda: {s: [] for s in SIDES})
    failure: str | None = None
    wall_s: float = 0.0


def side_order(rounds: int) -> list[tuple[int, str]]:
    """(round, side) in the order they run: base first in odd rounds, head first in even ones."""
    order = []
    for index in range(1, rounds + 1):
        sides = SIDES if index % 2 else tuple(reversed(SIDES))
        order += [(index, side) for side in sides]
    return order


def micro_command(json_path: Path, pytest_args: Sequence[str] = ()) -> list[str]:
    """The pytest command of one side's micro-benchmarks (run in its tree)."""
    return [
        sys.executable,
        "-m",
        "pytest",
        str(BENCHMARKS_DIR),
        "-q",
        *MICRO_FLAGS,
        *_UNUSED_PLUGINS,
        f"--benchmark-json={json_path}",
        *pytest_args,
    ]


def scenario_command(scenario: Path, out: Path, duration: str | None = None) -> list[str]:
    """The `splitdb run` of one side's scenario run (its own harness, in its tree)."""
    command = [sys.executable, "-m", "harness.cli", "run", str(scenario), "--quiet"]
    command += ["--out", str(out)]
    return command + (["--duration", duration] if duration is not None else [])


def side_env(tree: Tree, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a side's processes: its tree first on PYTHONPATH.

    Without $GITHUB_STEP_SUMMARY (the job's page gets the gate's summary, not one per scenario
    run) and without the variables a surrounding pytest sets for its own tests (a gate run from
    a test under xdist): pytest-benchmark reads PYTEST_XDIST_WORKER as "xdist is on" and turns
    off.
    """
    dropped = {STEP_SUMMARY_VARIABLE, "PYTEST_CURRENT_TEST"}
    env = {
        k: v
        for k, v in (os.environ if environ is None else environ).items()
        if k not in dropped and not k.startswith("PYTEST_XDIST_")
    }
    inherited = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree.root), inherited) if p)
    return env


def _call(command: Sequence[str], tree: Tree, log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(command),
            cwd=tree.root,
            env=side_env(tree),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            return proc.wait()
        except KeyboardInterrupt:
            try:
                proc.wait(timeout=_STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise


def _last_line(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return lines[-1].strip() if lines else "no output"


def _run_part(part: str, tree: Tree, plan: Plan, round_dir: Path) -> tuple[Path | None, str]:
    """Run one part; its input for the comparison (None: it failed) and what happened."""
    if part == "micro":
        json_path = round_dir / "micro.json"
        log = round_dir / "micro.log"
        rc = _call(micro_command(json_path, plan.pytest_args), tree, log)
        if rc == 0 and json_path.is_file():
            return json_path, "ok"
        return None, f"micro-benchmarks failed: pytest exited {rc} ({_last_line(log)}; log {log})"
    assert plan.scenario is not None
    out = round_dir / "scenario"
    log = round_dir / "scenario.log"
    rc = _call(scenario_command(plan.scenario, out, plan.duration), tree, log)
    runs = sorted(p.parent for p in out.glob("*/report.json"))
    # Exit 1 is a run whose checks failed: its report says which, and the comparison judges it.
    if rc in (0, 1) and len(runs) == 1:
        return runs[0], "ok" if rc == 0 else "a check failed"
    return None, f"scenario failed: splitdb run exited {rc} ({_last_line(log)}; log {log})"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def write_gate_file(gate_dir: Path, record: Mapping[str, Any]) -> None:
    """What the gate measured, for the reader of the directory and for --calibrate."""
    write_atomically(gate_dir / GATE_FILE, json.dumps(record, indent=2) + "\n")


def measure(
    sides: Mapping[str, Tree],
    plan: Plan,
    gate_dir: Path,
    *,
    echo: Callable[[str], Any] = print,
    describe: Mapping[str, Any] | None = None,
) -> Measurements:
    """Run every round of every side in ABBA order; returns the inputs, or the first failure.

    `gate_dir/gate.json` records what ran (with `describe` over it), before and after.
    """
    # Each part runs in its side's tree: a relative path would land there.
    gate_dir = gate_dir.absolute()
    started = time.monotonic()
    record: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "finished": None,
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "rounds": plan.rounds,
        "order": [f"{i}:{side}" for i, side in side_order(plan.rounds)],
        "parts": list(plan.parts),
        "scenario": None if plan.scenario is None else str(plan.scenario),
        "duration": plan.duration,
        "pytest_args": list(plan.pytest_args),
        "python": sys.executable,
        "sides": {s: {"label": t.label, "commit": t.commit} for s, t in sides.items()},
        **(describe or {}),
    }
    write_gate_file(gate_dir, record)
    result = Measurements()
    spent: dict[str, list[float]] = {part: [] for part in plan.parts}
    steps = [(i, side, part) for i, side in side_order(plan.rounds) for part in plan.parts]
    for done, (index, side, part) in enumerate(steps):
        tree = sides[side]
        left = "about " if all(spent.values()) else "at least "
        estimate = sum(sum(spent[p]) / len(spent[p]) for _, _, p in steps[done:] if spent[p])
        timing = f"elapsed {_clock(time.monotonic() - started)}"
        if any(spent.values()):
            timing += f", {left}{_clock(estimate)} left"
        name = (
            "micro-benchmarks"
            if part == "micro"
            else f"scenario {plan.scenario_label or plan.scenario}"
        )
        echo(f"bench: round {index}/{plan.rounds}, {side} {tree.label}: {name} ({timing})")
        part_started = time.monotonic()
        found, what = _run_part(part, tree, plan, gate_dir / side / f"round-{index}")
        spent[part].append(time.monotonic() - part_started)
        if found is None:
            result.failure = f"{side} {tree.label}, round {index}: {what}"
            break
        if what != "ok":
            echo(f"bench: round {index}/{plan.rounds}, {side}: {what} (see its report: {found})")
        result.inputs[side].append(found)
    result.wall_s = time.monotonic() - started
    record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    record["wall_s"] = round(result.wall_s, 1)
    record["load_average_at_end"] = round(os.getloadavg()[0], 2)
    record["failure"] = result.failure
    write_gate_file(gate_dir, record)
    return result
