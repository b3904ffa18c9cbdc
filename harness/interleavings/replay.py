"""`splitdb replay REPORT_OR_SCRIPT [--times N]`: run an interleaving or a scenario again.

- A step script (`.toml`): run it N times on fresh databases as real processes; each run says
  whether every step matched its expectation.
- A trace (`.json` written by `replay --out`): the same for the script it recorded (its text and
  topology are in the trace), and each run's outcomes are also compared with the recorded first run.
- A run report (`report.json` or its run directory, from `splitdb run`): re-run its scenario
  with the same seed and settings, N times, and compare which checks pass and fail (timings
  differ from run to run and are not compared; a threshold check on one may flip).

Exit status: 0 when every run matched, 1 when one did not, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.errors import ReportFormatError
from harness.interleavings.interleave import run_script
from harness.interleavings.script import ScriptFile, load_script, parse_script
from harness.interleavings.trace import (
    TRACE_SCHEMA,
    RunTrace,
    StepResult,
    check_trace,
    trace_document,
    write_trace,
)
from harness.results.report import REPORT_SCHEMA, Repeat, Report, environment, load_report
from harness.runs.scenario import Scenario
from reference.topology import BUILTIN_TOPOLOGIES, parse_topology

EXIT_OK = 0
EXIT_FAILED = 1

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
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportFormatError(f"{path}: no such trace") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportFormatError(f"{path}: not JSON ({exc})") from None
    trace = check_trace(data, str(path))
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


def _describe(loaded: ScriptFile) -> str:
    script, topology = loaded.script, loaded.topology
    spec = next(iter(topology.databases.values()))
    processes = ", ".join(f"{n} ({p.role})" for n, p in script.processes.items())
    return (
        f"{script.name}: {script.description}\n"
        f"  topology {topology.name} ({topology.layout} layout), journal_mode={spec.journal_mode} "
        f"busy_timeout_ms={spec.busy_timeout_ms}; processes {processes}; "
        f"{len(script.step)} steps"
    )


def _run_line(run: RunTrace, extra: Sequence[str] = ()) -> list[str]:
    if run.error is not None:
        return [f"run {run.index}: FAILED to run: {run.error}"]
    failed = run.failed_steps
    if not failed and not extra:
        return [
            f"run {run.index}: every expectation matched "
            f"({len(run.steps)} steps, {run.wall_s:.2f} s)"
        ]
    lines = [f"run {run.index}: MISMATCH in {len(failed) + len(extra)} place(s)"]
    lines += [
        f"  step[{s.index}] {s.process or '-'} {s.do}: {'; '.join(s.mismatches)}" for s in failed
    ]
    lines += [f"  {line}" for line in extra]
    return lines


def _cmd_replay(args: argparse.Namespace) -> int:
    path: Path = args.path
    if path.is_dir():
        return _replay_report(args)
    if path.suffix != ".json":
        return _replay_script(args, load_script(path), None)
    schema = _schema_of(path)
    if schema == REPORT_SCHEMA:
        return _replay_report(args)
    if schema != TRACE_SCHEMA:
        raise ReportFormatError(
            f"{path}: neither a splitdb report (schema {REPORT_SCHEMA!r}) nor a trace "
            f"(schema {TRACE_SCHEMA!r}); give a report.json, a run directory, a trace or a "
            "step script (.toml)"
        )
    loaded, trace = load_trace_script(path)
    try:
        recorded = RunTrace.from_json(trace["runs"][0]).steps if trace.get("runs") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportFormatError(f"{path}: runs[0] is not a recorded run ({exc!r})") from None
    return _replay_script(args, loaded, recorded)


def _schema_of(path: Path) -> Any:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportFormatError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportFormatError(f"{path}: not JSON ({exc})") from None
    return data.get("schema") if isinstance(data, dict) else None


def _replay_script(
    args: argparse.Namespace, loaded: ScriptFile, recorded: Sequence[StepResult] | None
) -> int:
    print(_describe(loaded), flush=True)

    def show(run: RunTrace) -> None:
        extra = outcome_differences(recorded, run.steps) if recorded is not None else []
        if run.index == 1 and not args.quiet:
            print("\n".join(step_table(run.steps)))
        print("\n".join(_run_line(run, extra)), flush=True)
        if extra:
            mismatched.add(run.index)

    mismatched: set[int] = set()
    runs = replay_script(loaded, args.times, on_run=show)
    matched = sum(1 for r in runs if r.ok and r.index not in mismatched)
    print(f"{loaded.script.name}: {matched} of {len(runs)} runs matched every expectation")
    if args.out is not None:
        out: Path = args.out
        if out.suffix != ".json":
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            out = out / f"{loaded.script.name}-{stamp}.json"
        document = trace_document(
            name=loaded.script.name,
            source=loaded.source,
            text=loaded.text,
            settings=loaded.script.model_dump(mode="json"),
            topology=loaded.topology.to_mapping(),
            runs=runs,
            environment=environment(),
        )
        write_trace(document, out)
        print(f"trace: {out}")
    return EXIT_OK if matched == len(runs) else EXIT_FAILED


def _replay_report(args: argparse.Namespace) -> int:
    from harness.runs.run import Progress, run_scenario

    report = load_report(args.path)
    stored = report.scenario
    try:
        scenario = Scenario.model_validate(stored.settings)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ReportFormatError(
            f"{args.path}: its scenario.settings do not validate with this splitdb "
            f"({problems}); replay it with the splitdb that wrote it"
        ) from None
    print(
        f"replaying {args.path}: scenario {scenario.name!r}, seed {scenario.seed}, "
        f"{scenario.repeat} repeat(s) of {scenario.duration:g} s, topology {scenario.topology}",
        flush=True,
    )
    out_dir: Path = args.out or Path("reports")
    matched = 0
    with tempfile.TemporaryDirectory(prefix="splitdb-replay-") as tmp:
        base_dir = Path(tmp)
        scenario = with_recorded_topologies(scenario, report.repeats, base_dir)
        for index in range(1, args.times + 1):
            result = run_scenario(
                scenario,
                out_dir=out_dir,
                base_dir=base_dir,
                source_text=stored.source,
                progress=Progress(quiet=args.quiet),
            )
            differences = check_differences(report, result.report)
            passing = sum(c.ok for r in result.report.repeats for c in r.checks)
            total = sum(len(r.checks) for r in result.report.repeats)
            if differences:
                print(f"replay {index}: DIFFERENT checks  report: {result.path}")
                print("\n".join(f"  {d}" for d in differences))
            else:
                matched += 1
                print(
                    f"replay {index}: same checks ({passing} of {total} pass, as recorded)  "
                    f"report: {result.path}",
                    flush=True,
                )
    print(f"{scenario.name}: {matched} of {args.times} replays gave the recorded checks")
    return EXIT_OK if matched == args.times else EXIT_FAILED


def _times(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--times must be a whole number, got {text!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"--times must be from 1 to 10000, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add the `replay` command."""
    parser = subparsers.add_parser(
        "replay",
        help="re-run a step script, a trace or a run report and say whether the outcomes matched",
        description=(
            "Re-run a step script (.toml), a trace (.json from replay --out) or a run report "
            "(report.json or its run directory) and say, per run, whether every outcome "
            "matched. Exit 0 when all matched, 1 when one did not, 2 for bad input."
        ),
    )
    parser.add_argument("path", type=Path, metavar="REPORT_OR_SCRIPT")
    parser.add_argument("--times", type=_times, default=1, help="runs (default: 1)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="scripts: write the trace to this .json file or directory; "
        "reports: the reports directory (default: reports/)",
    )
    parser.add_argument("--quiet", action="store_true", help="no step table, no run progress")
    parser.set_defaults(handler=_cmd_replay)
