"""`splitdb bench`: the benchmark gate. The base revision and the working tree, measured in turns
on this machine, compared; exit 1 when a metric is worse past its threshold.

The trees are `harness.bench.sources`'s, the rounds `harness.bench.rounds`'s, the verdict
`harness.results.gate`'s; this module reads the flags, prints, and says the exit code. With
`--calibrate` it measures the gate's floors from gates of unchanged code instead
(`harness.results.pair_floors`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands.exits import EXIT_FAILED, EXIT_OK
from harness.commands.paths import output_dir, output_file, path_arg
from harness.errors import BenchError

if TYPE_CHECKING:
    from harness.bench.rounds import Plan
    from harness.bench.sources import Tree
    from harness.results.comparison import Settings

DEFAULT_SCENARIO = Path("scenarios") / "bench.toml"
DEFAULT_FLOORS = Path("tests") / "benchmarks" / "gate-floors.toml"


def register(subparsers: Any) -> None:
    """Add `splitdb bench` to the CLI."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmark gate: the base revision and the working tree in turns, compared",
        description=(
            "Measure the base revision's code and the working tree's (the head) in turns on "
            "this machine: N rounds, each running both sides' micro-benchmarks (tests/benchmarks, "
            "CPU time) and the benchmark scenario, base first in odd rounds and head first in even "
            "ones. Then compare the pooled sides as splitdb compare does, print the Markdown "
            "summary (also to $GITHUB_STEP_SUMMARY) and exit 0 when no metric is worse past its "
            "threshold, 1 when one is (or a side's benchmarks failed), 2 for bad input (a base "
            "that cannot be built included). Extra pytest arguments for the micro-benchmarks go "
            "after --."
        ),
    )
    parser.add_argument(
        "--base",
        metavar="REV",
        help="the base revision (default: $SPLITDB_BENCH_BASE, else HEAD~1)",
    )
    parser.add_argument(
        "--merge-base",
        metavar="BRANCH",
        help="the base is where HEAD left BRANCH (git merge-base HEAD BRANCH)",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds per side (default 5, what alpha 0.01 needs)"
    )
    parser.add_argument(
        "--scenario",
        type=path_arg,
        metavar="FILE",
        help=f"benchmark scenario, run by both sides (default: the head's {DEFAULT_SCENARIO})",
    )
    parser.add_argument("--duration", help="override the scenario's duration (s)")
    parser.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    parser.add_argument("--no-scenario", action="store_true", help="skip the scenario")
    parser.add_argument(
        "--floors",
        type=path_arg,
        metavar="FILE",
        help=f"the gate's floors (default: the head's {DEFAULT_FLOORS}, what --calibrate writes)",
    )
    parser.add_argument(
        "--thresholds",
        type=path_arg,
        metavar="FILE",
        help="TOML as splitdb compare reads it: alpha, [thresholds] METRIC = PCT",
    )
    parser.add_argument(
        "--out",
        type=path_arg,
        default=Path("reports/bench"),
        help="where each gate writes its directory (default: reports/bench)",
    )
    parser.add_argument(
        "--calibrate",
        type=path_arg,
        nargs="+",
        metavar="GATE",
        help="measure the gate's floors from gate directories of unchanged code "
        "(splitdb bench --base HEAD on a clean tree; 3 or more, 10 give tighter floors)",
    )
    parser.add_argument(
        "--write-floors",
        type=path_arg,
        metavar="FILE",
        help="with --calibrate: write the floors file here (default: print it)",
    )
    parser.add_argument(
        "pytest_args", nargs="*", help="extra pytest arguments (after --), e.g. -- -k ingest"
    )
    parser.set_defaults(handler=handle)


def _base(args: argparse.Namespace, repo: Path) -> tuple[str, str]:
    """The base commit and how to name it."""
    from harness.bench.sources import BASE_VARIABLE, DEFAULT_BASE, merge_base, resolve

    if args.merge_base is not None:
        commit = merge_base(repo, args.merge_base)
        return commit, f"{commit[:12]} (merge-base with {args.merge_base})"
    if args.base is not None:
        revision, flag = args.base, "--base"
    elif os.environ.get(BASE_VARIABLE):
        revision, flag = os.environ[BASE_VARIABLE], BASE_VARIABLE
    else:
        revision, flag = DEFAULT_BASE, "the default base"
    commit = resolve(repo, revision, flag)
    same = commit.startswith(revision) or revision == commit
    return commit, commit[:12] if same else f"{commit[:12]} ({revision})"


def _check_flags(args: argparse.Namespace) -> None:
    if args.calibrate is None and args.write_floors is not None:
        raise BenchError(
            f"--write-floors {args.write_floors}: goes with --calibrate, as in splitdb bench "
            "--calibrate GATE1 GATE2 GATE3 --write-floors FILE.toml"
        )
    if args.no_micro and args.no_scenario:
        raise BenchError("--no-micro with --no-scenario: nothing left to measure; drop one of them")
    if args.base is not None and args.merge_base is not None:
        raise BenchError(
            f"--base {args.base} with --merge-base {args.merge_base}: give one of them"
        )
    if args.no_scenario and (args.duration is not None or args.scenario is not None):
        flag = f"--duration {args.duration}" if args.duration is not None else "--scenario"
        raise BenchError(f"{flag}: goes with the scenario, which --no-scenario turns off")
    if args.no_micro and args.pytest_args:
        raise BenchError(
            f"-- {' '.join(args.pytest_args)}: pytest arguments go to the micro-benchmarks, "
            "which --no-micro turns off; drop one of them"
        )


def _calibrate(args: argparse.Namespace) -> int:
    import shlex

    from harness.atomic import write_atomically
    from harness.results.pair_floors import calibrate_pairs, pair_floors_toml

    if args.write_floors is not None:
        output_file(args.write_floors, "--write-floors")
    calibration = calibrate_pairs(args.calibrate)
    for name in calibration.skipped:
        print(
            f"warning: {name} is not measured (or is zero) in every gate; no floor", file=sys.stderr
        )
    command = ["splitdb", "bench", "--calibrate", *map(str, args.calibrate)]
    if args.write_floors is not None:
        command += ["--write-floors", str(args.write_floors)]
    text = pair_floors_toml(
        calibration, command=shlex.join(command), when=datetime.now(UTC).astimezone()
    )
    if args.write_floors is None:
        print(text, end="")
        return EXIT_OK
    write_atomically(args.write_floors, text)
    rows = [("metric", "ratio of the pooled medians, per gate", "largest", "floor")]
    for name, ratios in calibration.ratios.items():
        rows.append(
            (
                name,
                " ".join(f"{r:.3f}" for r in ratios),
                f"{calibration.largest_change_pct(name):.1f}%",
                f"{calibration.floors[name]:g}%",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    print(
        f"floors written to {args.write_floors}: {len(calibration.gates)} gates, floor = "
        f"(largest ratio) ** {calibration.factor:.2f} - 1"
    )
    return EXIT_OK


def _gate_dir(out: Path) -> Path:
    out = out.absolute()  # the sides run in their own trees, where a relative path would land
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for suffix in range(1000):
        candidate = out / (stamp if suffix == 0 else f"{stamp}-{suffix}")
        if not candidate.exists():
            candidate.mkdir(parents=True)
            return candidate
    raise BenchError(f"--out {out}: 1000 gates started this second; pass another directory")


def _settings(args: argparse.Namespace, repo: Path) -> Settings:
    """The comparison's settings: the gate's floors (its own file unless --floors) and the
    thresholds file; refuses fewer rounds than the rank test needs at its alpha."""
    from harness.results.compare import needed_samples, settings_from_flags

    floors = args.floors
    if floors is None:
        floors = repo / DEFAULT_FLOORS
        if not floors.is_file():
            raise BenchError(
                f"{floors}: no floors for the gate; measure them (splitdb bench --base HEAD on a "
                "clean tree, ten times, then splitdb bench --calibrate reports/bench/* "
                f"--write-floors {DEFAULT_FLOORS}) or pass --floors FILE"
            )
    settings = settings_from_flags(thresholds_file=args.thresholds, floors_file=floors)
    needed = needed_samples(settings.alpha)
    if args.rounds < needed:
        raise BenchError(
            f"--rounds {args.rounds}: the rank test needs {needed} rounds per side to reach alpha "
            f"{settings.alpha:g}, and a gate that cannot judge would always pass; give "
            f"--rounds {needed} or more"
        )
    return settings


def _check_scenario(args: argparse.Namespace, repo: Path) -> None:
    """Validate the scenario and its --duration before anything runs."""
    from harness.runs.scenario import load_scenario, with_overrides

    scenario = load_scenario((args.scenario or repo / DEFAULT_SCENARIO).absolute())
    if args.duration is not None:
        with_overrides(scenario, {"duration": args.duration})


def _plan(args: argparse.Namespace, sides: Mapping[str, Tree]) -> Plan:
    from harness.bench.rounds import Plan

    scenario = None
    if not args.no_scenario:
        # The head's copy by default: the file as it is in the working tree.
        scenario = (args.scenario or sides["head"].root / DEFAULT_SCENARIO).absolute()
    return Plan(
        rounds=args.rounds,
        micro=not args.no_micro,
        scenario=scenario,
        duration=args.duration,
        pytest_args=tuple(args.pytest_args),
        scenario_label=str(args.scenario or DEFAULT_SCENARIO),
    )


def _what(plan: Plan) -> str:
    parts = ["micro-benchmarks (tests/benchmarks, CPU time)"] if plan.micro else []
    if plan.scenario is not None:
        at = f" at {plan.duration} s" if plan.duration else ""
        parts.append(f"scenario {plan.scenario_label}{at}")
    return " and ".join(parts)


def handle(args: argparse.Namespace) -> int:
    from harness.bench.rounds import measure
    from harness.bench.sources import dependency_note, repository, require_benchmarks, trees
    from harness.results.gate import SUMMARY_FILE, failure_markdown, gate_markdown, judge
    from harness.results.markdown import append_step_summary

    _check_flags(args)
    if args.calibrate is not None:
        return _calibrate(args)
    repo = repository(Path.cwd())
    base_commit, base_label = _base(args, repo)
    settings = _settings(args, repo)
    if not args.no_scenario:
        _check_scenario(args, repo)
    output_dir(args.out, "--out")

    with trees(repo, base_commit, base_label) as sides:
        if not args.no_micro:
            require_benchmarks(
                sides["base"],
                "pick a base that has them (--base REV, or SPLITDB_BENCH_BASE), or pass --no-micro",
            )
            require_benchmarks(sides["head"], "add some, or pass --no-micro")
        notes = []
        note = dependency_note(sides["base"], sides["head"])
        if note is not None:
            notes.append(note)
            print(f"warning: {note}", file=sys.stderr)
        if sides["head"].is_commit and sides["head"].commit == base_commit:
            notes.append("base and head are the same code: an A/A gate (what --calibrate reads)")
        plan = _plan(args, sides)
        gate_dir = _gate_dir(args.out)
        print(f"bench: base {base_label} against head: {sides['head'].label} of {repo}")
        print(
            f"bench: {plan.rounds} rounds, the sides in turns (base first in odd rounds, head "
            f"first in even ones): {_what(plan)}; output in {gate_dir}",
            flush=True,
        )
        measured = measure(
            sides,
            plan,
            gate_dir,
            echo=lambda line: print(line, flush=True),
            describe={"scenario": plan.scenario_label if plan.scenario else None},
        )

    title = f"base `{base_label}` against head ({sides['head'].label})"
    notes.append(
        f"{plan.rounds} rounds per side, interleaved, {measured.wall_s / 60:.1f} min; "
        f"output in `{gate_dir}`"
    )
    if measured.failure is not None:
        text = failure_markdown(measured.failure, title=title, notes=notes)
        code = EXIT_FAILED
    else:
        result = judge(measured.inputs["base"], measured.inputs["head"], settings)
        text = gate_markdown(result, title=title, notes=notes)
        code = EXIT_FAILED if result.failed else EXIT_OK
    (gate_dir / SUMMARY_FILE).write_text(text, encoding="utf-8")
    print(text, end="")
    written = append_step_summary(text)
    if written is not None:
        print(f"summary appended to {written}", file=sys.stderr)
    return code
