"""`splitdb pg-attacks`: the attack catalogue against a topology's PostgreSQL roles."""

from __future__ import annotations

import argparse
from typing import Any

from harness.commands.exits import EXIT_FAILED, EXIT_OK
from reference.topology import BUILTIN_TOPOLOGIES, load_topology


def register(subparsers: Any) -> None:
    """Add `splitdb pg-attacks` to the CLI."""
    parser = subparsers.add_parser(
        "pg-attacks",
        help="install a topology on PostgreSQL (a schema per database, a role per role, the "
        "grants) and try every forbidden write as each role; exit 1 when one is not denied",
    )
    parser.add_argument(
        "--topology",
        default="seed",
        help=f"built-in name ({', '.join(BUILTIN_TOPOLOGIES)}) or TOML file (default: seed)",
    )
    parser.add_argument(
        "--url",
        help="a server to use, postgresql://USER[:PASSWORD]@HOST[:PORT][/DATABASE], whose user "
        "may create databases and roles (default: a throwaway server, removed after)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.pg.attacks import attack_topology, summary, table
    from harness.pg.server import pg_server, server_from_url

    topology = load_topology(args.topology, roles=None)
    if args.url is not None:
        server_from_url(args.url)  # a bad URL is one line before anything else
    with pg_server(args.url) as server:
        outcomes = attack_topology(server, topology)
    print(
        f"topology {topology.name!r} on PostgreSQL: {len(topology.roles)} roles x "
        f"{len(topology.databases)} schemas"
    )
    print(table(outcomes))
    print(summary(outcomes))
    return EXIT_OK if all(o.held for o in outcomes) else EXIT_FAILED
