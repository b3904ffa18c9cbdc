"""`splitdb replay REPORT_OR_SCRIPT [--times N]`: run an interleaving or a scenario again.

What is replayed and compared is `harness.interleavings.replay`'s; this module picks the kind
of input, prints each run, writes the trace and says the exit code: 0 when every run matched,
1 when one did not, 2 for bad input.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands.exits import EXIT_FAILED, EXIT_OK
from harness.commands.paths import output_dir, output_file, path_arg
from harness.errors import ReportFormatError

if TYPE_CHECKING:
    from harness.interleavings.script import ScriptFile
    from harness.interleavings.trace import RunTrace, StepResult


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
    parser.add_argument("path", type=path_arg, metavar="REPORT_OR_SCRIPT")
    parser.add_argument("--times", type=_times, default=1, help="runs (default: 1)")
    parser.add_argument(
        "--out",
        type=path_arg,
        default=None,
        help="scripts: write the trace to this .json file or directory; "
        "reports: the reports directory (default: reports/)",
    )
    parser.add_argument("--quiet", action="store_true", help="no step table, no run progress")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.interleavings.replay import load_trace_script
    from harness.interleavings.script import load_script
    from harness.interleavings.trace import TRACE_SCHEMA, RunTrace
    from harness.results.report import REPORT_SCHEMA

    path: Path = args.path
    if args.out is not None:
        # Checked before anything runs: a trace file (.json) or a directory for traces/reports.
        if args.out.suffix == ".json":
            output_file(args.out, "--out")
        else:
            output_dir(args.out, "--out")
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
    from harness.results.report import read_json

    data = read_json(path)
    return data.get("schema") if isinstance(data, dict) else None


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


def _replay_script(
    args: argparse.Namespace, loaded: ScriptFile, recorded: Sequence[StepResult] | None
) -> int:
    from datetime import UTC, datetime

    from harness.interleavings.replay import outcome_differences, replay_script, step_table
    from harness.interleavings.trace import trace_document, write_trace
    from harness.results.report import environment

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
    import tempfile

    from pydantic import ValidationError

    from harness.interleavings.replay import check_differences, with_recorded_topologies
    from harness.results.report import load_report
    from harness.runs.progress import Progress
    from harness.runs.run import run_scenario
    from harness.runs.scenario import Scenario

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
