"""`splitdb scenarios`: list and validate scenario files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.commands.exits import EXIT_BAD_INPUT, EXIT_OK
from harness.commands.paths import path_arg


def register(subparsers: Any) -> None:
    """Add `splitdb scenarios` to the CLI."""
    parser = subparsers.add_parser("scenarios", help="list and validate scenario files")
    parser.add_argument(
        "paths",
        nargs="*",
        type=path_arg,
        default=[Path("scenarios")],
        help="files or directories (default: scenarios/)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.errors import ScenarioError
    from harness.runs.scenario import load_scenario

    files: list[Path] = []
    for path in args.paths:
        files.extend(sorted(path.glob("*.toml")) if path.is_dir() else [path])
    if not files:
        print(
            f"splitdb: error: no scenario files in {', '.join(map(str, args.paths))}; "
            "give a directory of .toml scenarios (the repo ships scenarios/) or a file",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    missing = [p for p in args.paths if not p.exists()]
    if missing and args.paths == [Path("scenarios")]:
        print(
            "splitdb: error: no scenarios/ here; run from the repo's root or give a path",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    bad = 0
    for file in files:
        if file.parent in args.paths and _topology(file):
            # A directory of a user's system holds its topology beside its scenarios.
            print(f"topology {file}  (checked by splitdb topology, not run)")
            continue
        try:
            scenario = load_scenario(file)
        except ScenarioError as exc:
            bad += 1
            print(f"INVALID {file}\n" + "\n".join(f"  - {p}" for p in exc.problems))
            continue
        loads = ", ".join(g.kind for g in scenario.load) or "no extra load"
        if scenario.commands:
            loads = f"processes {', '.join(scenario.commands)}; {loads}"
        print(
            f"ok      {file}  [{scenario.topology}] {scenario.duration:g} s x{scenario.repeat}; "
            f"{loads}; {_count(len(scenario.fault), 'fault')}"
            + (f"; {_count(len(scenario.variant), 'variant')}" if scenario.variant else "")
            + f"  {scenario.description}"
        )
    if bad:
        # The listing is the output (stdout); the verdict goes where errors go.
        print(f"splitdb: error: {bad} of {len(files)} scenario files invalid", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _topology(file: Path) -> bool:
    import tomllib

    from harness.runs.scenario import is_topology

    try:
        return is_topology(tomllib.loads(file.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return False  # reported as an invalid scenario, with the reason


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
