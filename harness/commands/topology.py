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

    # Any roles: a topology of the user's own processes names its own.
    topology = load_topology(args.topology, roles=None)
    print(f"topology {topology.name!r} ({topology.layout} layout) from {topology.source}")
    # Columns as wide as the longest name: a user's topology names its own.
    width = max(9, *(len(n) for n in topology.databases))
    role_width = max(9, *(len(r) for r in topology.roles))
    for name, spec in topology.databases.items():
        print(
            f"  database {name:<{width}} {spec.path}  journal_mode={spec.journal_mode} "
            f"synchronous={spec.synchronous} busy_timeout_ms={spec.busy_timeout_ms}"
        )
    databases = list(topology.databases)
    print(f"  {'role':<{role_width}} " + " ".join(f"{db:<{width}}" for db in databases))
    for role, row in grants_table(topology).items():
        print(f"  {role:<{role_width}} " + " ".join(f"{row[db]:<{width}}" for db in databases))
    return EXIT_OK
