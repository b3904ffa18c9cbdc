"""Run an interleaving or a scenario again (`splitdb replay`, in `harness.commands.replay`).

- A step script (`.toml`): run it N times on fresh databases as real processes; each run says
  whether every step matched its expectation.
- A trace (`.json` written by `replay --out`): the same for the script it recorded (its text and
  topology are in the trace), and each run's outcomes are also compared with the recorded first run.
- A run report (`report.json` or its run directory, from `splitdb run`): re-run its scenario
  with the same seed and settings, N times, and compare which checks pass and fail (timings
  differ from run to run and are not compared; a threshold check on one may flip).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ReportFormatError
from harness.interleavings.interleave import run_script
from harness.interleavings.script import ScriptFile, parse_script
from harness.interleavings.trace import RunTrace, StepResult, check_trace
from harness.results.report import Repeat, Report, read_json
from harness.runs.scenario import Scenario
from reference.topology import BUILTIN_TOPOLOGIES, parse_topology

RunHook = Callable[[RunTrace], None]


def replay_script(
    loaded: ScriptFile, times: int, *, on_run: RunHook | None = None
) -> list[RunTrace]:
    """Run the script `times` times, each on fresh databases; `on_run` sees each finished run."""
    runs = []
    for index in range(1, times + 1):
        run = run_script(loaded, index=index)
        runs.append(run)
        if on_run is not None:
            on_run(run)
    return runs


def load_trace_script(path: Path) -> tuple[ScriptFile, dict[str, Any]]:
    """The script a trace file recorded (with its recorded topology), and the trace itself."""
    trace = check_trace(read_json(path, what="trace"), str(path))
    script = trace["script"]
    topology = parse_topology(script["topology"], source=f"{path}: script.topology")
    loaded = parse_script(
        script["settings"], source=f"{path}: script", topology=topology, text=script.get("text")
    )
    return loaded, trace


def outcome_differences(recorded: Sequence[StepResult], now: Sequence[StepResult]) -> list[str]:
    """Steps whose outcome or error code differs between two runs of one script."""
    before = {s.index: (s.outcome, s.code) for s in recorded}
    after = {s.index: (s.outcome, s.code) for s in now}
    return [
        f"step[{i}]: recorded {_pair(before.get(i))}, now {_pair(after.get(i))}"
        for i in sorted(before.keys() | after.keys())
        if before.get(i) != after.get(i)
    ]


def check_differences(original: Report, replayed: Report) -> list[str]:
    """Checks whose pass/fail differs between two reports of one scenario (values ignored).

    Checks are matched by (variant, repeat, name).
    """

    def verdicts(report: Report) -> dict[tuple[str, int, str], bool]:
        return {(r.variant or "", r.index, c.name): c.ok for r in report.repeats for c in r.checks}

    before, after = verdicts(original), verdicts(replayed)

    def word(ok: bool | None) -> str:
        return "absent" if ok is None else ("ok" if ok else "FAIL")

    return [
        f"{variant + ' ' if variant else ''}repeat {index} {name}: "
        f"was {word(before.get((variant, index, name)))}, "
        f"now {word(after.get((variant, index, name)))}"
        for variant, index, name in sorted(before.keys() | after.keys())
        if before.get((variant, index, name)) != after.get((variant, index, name))
    ]


def with_recorded_topologies(scenario: Scenario, repeats: Sequence[Repeat], into: Path) -> Scenario:
    """The scenario with each topology file it names replaced by the one its repeats recorded.

    The files a scenario named (relative to a scenario file that may be elsewhere, or gone) are
    not needed: every repeat recorded the topology it ran, settings applied, and applying the
    settings again changes nothing. Each recorded topology is written into `into`.
    """
    raw = scenario.model_dump(mode="json")
    by_variant = {v.name: v for v in scenario.variant}
    written: list[str] = []

    def recorded(ran: Callable[[Repeat], bool], label: str) -> str:
        repeat = next((r for r in repeats if ran(r)), None)
        if repeat is None:
            raise ReportFormatError(
                f"the report names topology file {label!r} but recorded no repeat that ran it"
            )
        topology = parse_topology(repeat.topology, source=f"report: {label} topology")
        name = f"topology-{len(written)}.toml"
        (into / name).write_text(topology.to_toml(), encoding="utf-8")
        written.append(name)
        return name

    def runs_base(repeat: Repeat) -> bool:
        variant = by_variant.get(repeat.variant or "")
        return variant is None or variant.topology is None

    if scenario.topology not in BUILTIN_TOPOLOGIES and any(runs_base(r) for r in repeats):
        raw["topology"] = recorded(runs_base, scenario.topology)
    for variant in raw["variant"]:
        ref = variant.get("topology")
        if ref is not None and ref not in BUILTIN_TOPOLOGIES:
            variant["topology"] = recorded(_of_variant(variant["name"]), ref)
    return Scenario.model_validate(raw)


def _of_variant(name: str) -> Callable[[Repeat], bool]:
    def ran(repeat: Repeat) -> bool:
        return repeat.variant == name

    return ran


def step_table(steps: Sequence[StepResult]) -> list[str]:
    """One line per step: who, what, on which database, outcome, duration, value, verdict."""
    lines = [
        f"  {'step':<6}{'process':<9}{'do':<19}{'db':<10}{'outcome':<20}{'ms':>9}  "
        f"{'value':<16}check"
    ]
    for s in steps:
        outcome = s.outcome + (f" ({s.code})" if s.code is not None else "")
        what = s.do + (" (bg)" if s.background else "")
        shown = s.rows[0] if s.do == "checkpoint" and s.rows else s.value
        value = "" if shown is None else json.dumps(shown)
        verdict = "ok" if s.matched else "MISMATCH: " + "; ".join(s.mismatches)
        note = f"  # {s.note}" if s.note and s.matched else ""
        lines.append(
            f"  {f'[{s.index}]':<6}{s.process or '-':<9}{what:<19}{s.db or '':<10}"
            f"{outcome:<20}{s.duration_ms:>9.1f}  {value[:16]:<16}{verdict}{note}"
        )
    return lines


def _pair(pair: tuple[str, int | None] | None) -> str:
    if pair is None:
        return "no step"
    outcome, code = pair
    return outcome if code is None else f"{outcome} ({code})"
