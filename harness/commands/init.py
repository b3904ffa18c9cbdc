"""`splitdb init`: create the databases of a topology with their schemas."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.commands.exits import EXIT_OK
from harness.commands.paths import output_dir, path_arg
from reference.errors import SplitdbError
from reference.topology import BUILTIN_TOPOLOGIES, load_topology


def register(subparsers: Any) -> None:
    """Add `splitdb init` to the CLI."""
    parser = subparsers.add_parser(
        "init",
        help="create the databases of a topology (with their schemas for the reference ones)",
    )
    parser.add_argument(
        "--topology",
        default="seed",
        help=f"built-in name ({', '.join(BUILTIN_TOPOLOGIES)}) or TOML file (default: seed)",
    )
    parser.add_argument("--data-dir", type=path_arg, default=Path("data"), help="default: ./data")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from reference.access import AccessManager
    from reference.schema import has_schema

    # Any roles: a topology of the user's own processes names its own.
    topology = load_topology(args.topology, roles=None)
    if topology.backend != "sqlite":
        raise SplitdbError(
            f"--topology {args.topology}: backend = {topology.backend!r} keeps its tables on a "
            "server, not in --data-dir: `splitdb pg-attacks --topology T` installs them on a "
            "throwaway server (or --url)"
        )
    output_dir(args.data_dir, "--data-dir")
    AccessManager(topology, args.data_dir).initialize()
    for name, spec in topology.databases.items():
        note = "" if has_schema(name) else "  (no tables: your processes create them)"
        print(f"{name:<10} {args.data_dir / spec.path}{note}")
    return EXIT_OK
