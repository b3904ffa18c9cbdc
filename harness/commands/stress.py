"""`splitdb stress`: the tests and the CI scenario subset, again and again, on a busy machine."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from harness.commands.exits import EXIT_FAILED, EXIT_OK
from harness.commands.paths import path_arg
from reference.errors import SplitdbError


def register(subparsers: Any) -> None:
    """Add `splitdb stress` to the CLI."""
    parser = subparsers.add_parser(
        "stress",
        help="run the tests and the CI scenario subset repeatedly on a busy machine; "
        "print the flake rate",
    )
    parser.add_argument("--times", type=int, default=10, help="rounds (default 10)")
    parser.add_argument(
        "--busy", type=int, default=1, help="busy processes per core (default 1; 0: quiet)"
    )
    parser.add_argument(
        "--out", type=path_arg, default=Path("reports/stress"), help="default: reports/stress"
    )
    parser.add_argument("--no-tests", action="store_true", help="only the scenario subset")
    parser.add_argument("--no-scenarios", action="store_true", help="only the tests")
    parser.add_argument(
        "pytest_args", nargs="*", help="extra pytest arguments (after --), e.g. -- -k faults"
    )
    parser.set_defaults(handler=handle)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def handle(args: argparse.Namespace) -> int:
    from harness.runs.stress import CI_SCENARIOS, stress

    if not args.no_tests:
        missing = [m for m in ("pytest", "xdist") if not _installed(m)]
        if missing:
            raise SplitdbError(
                f"splitdb stress runs the tests, which need {' and '.join(missing)}: "
                "pip install -e '.[test]' (or pass --no-tests to run only the scenarios)"
            )
    rounds = stress(
        times=args.times,
        busy_per_core=args.busy,
        out=args.out,
        tests=not args.no_tests,
        scenarios=() if args.no_scenarios else CI_SCENARIOS,
        pytest_args=args.pytest_args,
    )
    return EXIT_OK if all(r.ok for r in rounds) else EXIT_FAILED
