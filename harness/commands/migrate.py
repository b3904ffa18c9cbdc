"""`splitdb split` and `splitdb merge`: move a system's tables between one file and a file per
database, verified (see `harness.migrate`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.commands.exits import EXIT_FAILED, EXIT_OK
from harness.commands.paths import output_dir, output_file, path_arg
from reference.topology import BUILTIN_TOPOLOGIES


def register(subparsers: Any) -> None:
    """Add `splitdb split` and `splitdb merge` to the CLI."""
    split = subparsers.add_parser(
        "split",
        help="copy each table of one SQLite file into the file of the database the topology "
        "places it in; verified before anything is put in place",
    )
    split.add_argument("source", type=path_arg, metavar="SOURCE.db", help="the file to split")
    _common(split, "where the topology's files are written")
    split.set_defaults(handler=handle_split)
    merge = subparsers.add_parser(
        "merge",
        help="copy every table of a topology's files into one SQLite file; verified the same way",
    )
    merge.add_argument("target", type=path_arg, metavar="TARGET.db", help="the file to write")
    _common(merge, "where the topology's files are read from")
    merge.set_defaults(handler=handle_merge)


def _common(parser: argparse.ArgumentParser, data_dir_help: str) -> None:
    parser.add_argument(
        "--topology",
        required=True,
        help=f"built-in name ({', '.join(BUILTIN_TOPOLOGIES)}) or TOML file whose databases "
        "list their tables",
    )
    parser.add_argument("--data-dir", type=path_arg, required=True, help=data_dir_help)
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace target files that exist (default: refuse, naming them)",
    )
    parser.add_argument(
        "--report",
        type=path_arg,
        default=None,
        help="where the verification report (JSON) goes (default: KIND-report.json beside the "
        "targets)",
    )
    parser.add_argument("--quiet", action="store_true", help="print the verdict line only")


def handle_split(args: argparse.Namespace) -> int:
    from harness.migrate.plan import split_plan
    from reference.topology import load_topology

    topology = load_topology(args.topology, roles=None)
    output_dir(args.data_dir, "--data-dir")
    plan = split_plan(args.source, topology, args.data_dir)
    return _run(plan, args, default_report=args.data_dir / "split-report.json")


def handle_merge(args: argparse.Namespace) -> int:
    from harness.migrate.plan import merge_plan
    from reference.topology import load_topology

    topology = load_topology(args.topology, roles=None)
    output_file(args.target, "TARGET.db")
    plan = merge_plan(topology, args.data_dir, args.target)
    return _run(plan, args, default_report=args.target.parent / "merge-report.json")


def _run(plan: Any, args: argparse.Namespace, *, default_report: Path) -> int:
    from harness.migrate.migration import migrate
    from harness.runs.progress import Progress

    report = output_file(args.report or default_report, "--report")
    progress = Progress(quiet=args.quiet)
    targets = ", ".join(t.file.name for t in plan.targets)
    progress.phase(
        f"{plan.kind}: {', '.join(s.name for s in plan.sources)} -> {targets} "
        f"({len(plan.moves)} tables)"
    )
    result = migrate(plan, force=args.force, live=progress.live, report=report)
    progress.end_line()
    lines = result.lines()
    for line in lines if not args.quiet else lines[-1:]:
        print(line)
    print(f"report: {result.report_path}")
    return EXIT_OK if result.ok else EXIT_FAILED
