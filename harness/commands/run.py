"""`splitdb run`: run scenarios end to end and write a report for each."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.commands.exits import EXIT_FAILED, EXIT_OK
from harness.commands.paths import output_dir, path_arg
from reference.errors import SplitdbError


def register(subparsers: Any) -> None:
    """Add `splitdb run` to the CLI."""
    parser = subparsers.add_parser(
        "run", help="run scenarios end to end and write a report for each"
    )
    parser.add_argument(
        "scenarios", nargs="+", type=path_arg, metavar="SCENARIO", help="scenario TOML"
    )
    parser.add_argument(
        "--out",
        type=path_arg,
        default=Path("reports"),
        help="reports directory (default: reports/)",
    )
    # Kept as typed: the scenario model checks them, and an error quotes what the user wrote.
    parser.add_argument("--repeat", default=None, help="override the scenario's repeat (1 to 100)")
    parser.add_argument("--duration", default=None, help="override its duration (s, up to 3600)")
    parser.add_argument("--seed", default=None, help="override its seed (a whole number)")
    parser.add_argument(
        "--topology",
        default=None,
        metavar="NAME_OR_TOML",
        help="run on this topology instead of the scenario's: a built-in name (seed, legacy, "
        "postgres) or a TOML file; variants that name their own keep it",
    )
    parser.add_argument(
        "--pg-url",
        default=None,
        metavar="URL",
        help="on a PostgreSQL topology, use this server (postgresql://USER[:PASSWORD]@HOST"
        "[:PORT][/DB], a user who may create databases and roles) instead of a throwaway one",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on the terminal")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.results.headline import headline
    from harness.runs.progress import Progress
    from harness.runs.run import run_scenario
    from harness.runs.scenario import load_scenario, variants_of, with_overrides, with_topology

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
        if args.topology is not None:
            scenario = with_topology(scenario, args.topology, source=str(path))
        loaded.append((path, scenario))
    if args.pg_url is not None:
        on_server = [
            arm
            for where, scenario in loaded
            for _, arm in variants_of(scenario)
            if _backend(arm, where.parent) == "postgres"
        ]
        if not on_server:
            raise SplitdbError(
                f"--pg-url: {', '.join(s.name for _, s in loaded)} run on SQLite topologies, "
                "which need no server; add --topology postgres, or leave --pg-url out"
            )
        from harness.pg.server import server_from_url

        server_from_url(args.pg_url)  # reachable and privileged, or one line now
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
            pg_url=args.pg_url,
        )
        verdict = result.report.verdict
        print(f"{scenario.name}: {'PASS' if verdict.ok else 'FAIL'}  report: {result.path}")
        html = result.path.with_name("report.html")
        if html.exists():
            print(f"  readable: {html}")
        for repeat in result.report.repeats:
            where = f" (repeat {repeat.index})" if len(result.report.repeats) > 1 else ""
            if repeat.variant:
                where = f" ({repeat.variant}, repeat {repeat.index})"
            print(f"  figures{where}: {headline(repeat.metrics)}")
            for check in repeat.checks:
                mark = "FAIL" if not check.ok else "warn" if check.warning else "ok  "
                print(f"  [{mark}] {check.name}: {check.summary}")
        if not verdict.ok:
            worst = EXIT_FAILED
    return worst


def _backend(scenario: Any, base_dir: Path) -> str:
    from harness.runs.scenario import resolve_topology

    return resolve_topology(scenario, base_dir).backend
