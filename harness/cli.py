"""The `splitdb` command line: one clear line and a non-zero exit for every error we expect."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from harness.commands.paths import output_dir
from reference.access import AccessManager, grants_table
from reference.errors import SplitdbError
from reference.topology import BUILTIN_TOPOLOGIES, load_topology

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# Commands that live in their own module: each has `register(subparsers)`, which adds its parser
# and sets `handler` (a function of the parsed arguments returning the exit code).
COMMAND_MODULES: tuple[str, ...] = (
    "harness.results.html",
    "harness.results.compare",
    "harness.interleavings.replay",
    "harness.interleavings.search",
    "harness.runs.stress",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: what was wrong, and where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="splitdb",
        description="Reference multi-process SQLite system and the harness that verifies it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="create the databases of a topology with their schemas")
    init.add_argument(
        "--topology",
        default="seed",
        help=f"built-in name ({', '.join(BUILTIN_TOPOLOGIES)}) or TOML file (default: seed)",
    )
    init.add_argument("--data-dir", type=Path, default=Path("data"), help="default: ./data")

    topo = sub.add_parser("topology", help="validate a topology and print its access matrix")
    topo.add_argument("topology", help="built-in name or TOML file")

    from harness.runs.stack import market_speed, port_number, symbols_spec, tick_rate

    up = sub.add_parser(
        "up",
        help="start bot, agent and API, print the API address, stop them all on Ctrl-C",
        description="Start the reference bot, agent and API as processes, print the API's "
        "address, and run until Ctrl-C (or SIGTERM) stops all three. Exit code 0 when all three "
        "stopped cleanly, 1 when one died or failed to start, 2 for a bad flag.",
    )
    up.add_argument(
        "--topology",
        default="seed",
        help=f"built-in name ({', '.join(BUILTIN_TOPOLOGIES)}) or TOML file (default: seed)",
    )
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="databases and status board; created if missing (default: ./data)",
    )
    up.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="process logs and events; created if missing (default: DATA_DIR/run)",
    )
    up.add_argument(
        "--symbols",
        type=symbols_spec,
        default="10",
        help="bot: a symbol count or comma-separated names (default: 10)",
    )
    up.add_argument(
        "--rate",
        type=tick_rate,
        default=2000.0,
        help="bot: synthetic ticks per wall-clock second, all symbols together (default: 2000)",
    )
    up.add_argument(
        "--speed",
        type=market_speed,
        default=1.0,
        help="bot: market seconds per wall-clock second, > 0 and <= 3600; 1 is real time, where "
        "the first indicators (14 one-minute bars) take a quarter of an hour, 60 makes a "
        "one-minute bar every second (default: 1)",
    )
    up.add_argument(
        "--port",
        type=port_number,
        default=0,
        help="API port on 127.0.0.1; 0 picks a free one (default: 0)",
    )
    run = sub.add_parser("run", help="run scenarios end to end and write a report for each")
    run.add_argument("scenarios", nargs="+", type=Path, metavar="SCENARIO", help="scenario TOML")
    run.add_argument(
        "--out", type=Path, default=Path("reports"), help="reports directory (default: reports/)"
    )
    # Kept as typed: the scenario model checks them, and an error quotes what the user wrote.
    run.add_argument("--repeat", default=None, help="override the scenario's repeat (1 to 100)")
    run.add_argument("--duration", default=None, help="override its duration (s, up to 3600)")
    run.add_argument("--seed", default=None, help="override its seed (a whole number)")
    run.add_argument("--quiet", action="store_true", help="no progress on the terminal")

    scen = sub.add_parser("scenarios", help="list and validate scenario files")
    scen.add_argument(
        "paths",
        nargs="*",
        type=Path,
        default=[Path("scenarios")],
        help="files or directories (default: scenarios/)",
    )
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.results.headline import headline
    from harness.runs.run import Progress, run_scenario
    from harness.runs.scenario import load_scenario, with_overrides

    overrides = {
        k: v
        for k, v in (("repeat", args.repeat), ("duration", args.duration), ("seed", args.seed))
        if v is not None
    }
    # Validate every file and flag before running any, so a typo in the last one costs no time.
    loaded = []
    for path in args.scenarios:
        scenario = load_scenario(path)
        if overrides:
            scenario = with_overrides(scenario, overrides)
        loaded.append((path, scenario))
    output_dir(args.out, "--out")
    progress = Progress(quiet=args.quiet)
    worst = EXIT_OK
    for path, scenario in loaded:
        result = run_scenario(
            scenario,
            out_dir=args.out,
            base_dir=path.parent,
            source_text=path.read_text(encoding="utf-8"),
            progress=progress,
        )
        verdict = result.report.verdict
        print(f"{scenario.name}: {'PASS' if verdict.ok else 'FAIL'}  report: {result.path}")
        html = result.path.with_name("report.html")
        if html.exists():
            print(f"  readable: {html}")
        for repeat in result.report.repeats:
            where = f" (repeat {repeat.index})" if len(result.report.repeats) > 1 else ""
            print(f"  figures{where}: {headline(repeat.metrics)}")
            for check in repeat.checks:
                mark = "FAIL" if not check.ok else "warn" if check.warning else "ok  "
                print(f"  [{mark}] {check.name}: {check.summary}")
        if not verdict.ok:
            worst = EXIT_FAILED
    return worst


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from harness.errors import ScenarioError
    from harness.runs.scenario import load_scenario

    files: list[Path] = []
    for path in args.paths:
        files.extend(sorted(path.glob("*.toml")) if path.is_dir() else [path])
    if not files:
        print(f"no scenario files in {', '.join(map(str, args.paths))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    bad = 0
    for file in files:
        try:
            scenario = load_scenario(file)
        except ScenarioError as exc:
            bad += 1
            print(f"INVALID {file}\n" + "\n".join(f"  - {p}" for p in exc.problems))
            continue
        loads = ", ".join(g.kind for g in scenario.load) or "no extra load"
        print(
            f"ok      {file}  [{scenario.topology}] {scenario.duration:g} s x{scenario.repeat}; "
            f"{loads}; {_count(len(scenario.fault), 'fault')}"
            + (f"; {_count(len(scenario.variant), 'variant')}" if scenario.variant else "")
            + f"  {scenario.description}"
        )
    return EXIT_BAD_INPUT if bad else EXIT_OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cmd_init(args: argparse.Namespace) -> int:
    topology = load_topology(args.topology)
    output_dir(args.data_dir, "--data-dir")
    AccessManager(topology, args.data_dir).initialize()
    for name, spec in topology.databases.items():
        print(f"{name:<10} {args.data_dir / spec.path}")
    return EXIT_OK


def _cmd_topology(args: argparse.Namespace) -> int:
    topology = load_topology(args.topology)
    print(f"topology {topology.name!r} ({topology.layout} layout) from {topology.source}")
    for name, spec in topology.databases.items():
        print(
            f"  database {name:<9} {spec.path}  journal_mode={spec.journal_mode} "
            f"synchronous={spec.synchronous} busy_timeout_ms={spec.busy_timeout_ms}"
        )
    databases = list(topology.databases)
    print("  role      " + " ".join(f"{db:<9}" for db in databases))
    for role, row in grants_table(topology).items():
        print(f"  {role:<9} " + " ".join(f"{row[db]:<9}" for db in databases))
    return EXIT_OK


def _cmd_up(args: argparse.Namespace) -> int:
    from harness.runs.stack import prepare_directories, run_stack
    from reference.errors import TopologyError

    # Everything is checked before the first directory is made or process started.
    try:
        load_topology(args.topology)
    except TopologyError as exc:
        raise SplitdbError(f"--topology {args.topology}: {'; '.join(exc.problems)}") from None
    run_dir = args.run_dir or args.data_dir / "run"
    prepare_directories([("--data-dir", args.data_dir), ("--run-dir", run_dir)])
    return run_stack(
        topology=args.topology,
        data_dir=args.data_dir,
        run_dir=run_dir,
        bot_args=["--symbols", args.symbols, "--rate", str(args.rate), "--speed", str(args.speed)],
        api_args=["--port", str(args.port)],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a check failed, 2 bad input)."""
    args = _build_parser().parse_args(argv)
    commands = {
        "init": _cmd_init,
        "topology": _cmd_topology,
        "up": _cmd_up,
        "run": _cmd_run,
        "scenarios": _cmd_scenarios,
    }
    try:
        handler = getattr(args, "handler", None) or commands[args.command]
        return int(handler(args))
    except SplitdbError as exc:
        print(f"splitdb: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        # Supervised processes were stopped on the way out (each run stops its own).
        print("splitdb: interrupted; processes stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
