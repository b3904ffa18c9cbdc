"""`splitdb topology`: validate a topology and print its access matrix."""

from __future__ import annotations

import argparse
from typing import Any

from harness.commands.exits import EXIT_OK
from reference.topology import load_topology


def register(subparsers: Any) -> None:
    """Add `splitdb topology` to the CLI."""
    parser = subparsers.add_parser(
        "topology", help="validate a topology and print its access matrix"
    )
    parser.add_argument("topology", help="built-in name or TOML file")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from reference.access import grants_table

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
