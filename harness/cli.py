"""The `splitdb` command line: one clear line and a non-zero exit for every error we expect."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reference.access import AccessManager, grants_table
from reference.errors import SplitdbError
from reference.topology import BUILTIN_TOPOLOGIES, load_topology

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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

    up = sub.add_parser(
        "up",
        help="start bot, agent and API, print the API address, stop them all on Ctrl-C",
    )
    up.add_argument("--topology", default="seed", help="built-in name or TOML file")
    up.add_argument("--data-dir", type=Path, default=Path("data"), help="default: ./data")
    up.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="where process logs and events go (default: DATA_DIR/run)",
    )
    up.add_argument("--symbols", default="10", help="bot: symbol count or comma-separated names")
    up.add_argument("--rate", type=float, default=2000.0, help="bot: synthetic ticks per second")
    up.add_argument("--port", type=int, default=0, help="API port on 127.0.0.1 (0: any free)")
    return parser


def _cmd_init(args: argparse.Namespace) -> int:
    topology = load_topology(args.topology)
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
    from harness.stack import run_stack

    return run_stack(
        topology=args.topology,
        data_dir=args.data_dir,
        run_dir=args.run_dir or args.data_dir / "run",
        bot_args=["--symbols", args.symbols, "--rate", str(args.rate)],
        api_args=["--port", str(args.port)],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a check failed, 2 bad input)."""
    args = _build_parser().parse_args(argv)
    commands = {"init": _cmd_init, "topology": _cmd_topology, "up": _cmd_up}
    try:
        return commands[args.command](args)
    except SplitdbError as exc:
        print(f"splitdb: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
