"""`splitdb up`: start bot, agent and API, print the API address, stop them all on Ctrl-C.

Also what checks `splitdb up`'s flags before anything starts: the argparse types below (a bad
value is refused by the parser, naming the flag); `harness.runs.stack.prepare_directories`
checks the directories.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from harness.commands.exits import EXIT_FAILED, EXIT_OK
from harness.commands.paths import path_arg
from reference.errors import SplitdbError
from reference.market_clock import MAX_SPEED
from reference.topology import BUILTIN_TOPOLOGIES, load_topology


def tick_rate(text: str) -> float:
    """argparse type of `--rate`: synthetic ticks per second, a finite number > 0."""
    rate = _number(text)
    if not (math.isfinite(rate) and rate > 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a tick rate: give ticks per second > 0, for example 2000"
        )
    return rate


def market_speed(text: str) -> float:
    """argparse type of `--speed`: market seconds per wall-clock second, 0 < speed <= 3600."""
    speed = _number(text)
    if not 0 < speed <= MAX_SPEED:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a market speed: give a number > 0 and <= {MAX_SPEED:g} "
            "(1 is real time, 60 a market minute per second)"
        )
    return speed


def port_number(text: str) -> int:
    """argparse type of `--port`: a TCP port 1..65535, or 0 for any free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: give 1..65535, or 0 for any free port"
        )
    return port


def symbols_spec(text: str) -> str:
    """argparse type of `--symbols`: a count >= 1 or distinct comma-separated names.

    Returns the value as the bot takes it (`--symbols`), without surrounding blanks.
    """
    spec = text.strip()
    if spec.isdigit():
        if int(spec) < 1:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give a symbol count >= 1 or comma-separated names (EURUSD,GBPUSD)"
            )
        return spec
    names = [name.strip() for name in spec.split(",")]
    if not all(names) or any(len(name.split()) != 1 for name in names):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a symbol count >= 1 or comma-separated names without blanks "
            "(EURUSD,GBPUSD)"
        )
    if spec.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a symbol count must be >= 1")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(
            f"{text!r} names {', '.join(repeated)} more than once: give each symbol once"
        )
    return ",".join(names)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def register(subparsers: Any) -> None:
    """Add `splitdb up` to the CLI."""
    parser = subparsers.add_parser(
        "up",
        help="start bot, agent and API, print the API address, stop them all on Ctrl-C",
        description="Start the reference bot, agent and API as processes, print the API's "
        "address, and run until Ctrl-C (or SIGTERM) stops all three. Exit code 0 when all three "
        "stopped cleanly, 1 when one died or failed to start, 2 for a bad flag.",
    )
    parser.add_argument(
        "--topology",
        default="seed",
        help=f"built-in name ({', '.join(BUILTIN_TOPOLOGIES)}) or TOML file (default: seed)",
    )
    parser.add_argument(
        "--data-dir",
        type=path_arg,
        default=Path("data"),
        help="databases and status board; created if missing (default: ./data)",
    )
    parser.add_argument(
        "--run-dir",
        type=path_arg,
        default=None,
        help="process logs and events; created if missing (default: DATA_DIR/run)",
    )
    parser.add_argument(
        "--symbols",
        type=symbols_spec,
        default="10",
        help="bot: a symbol count or comma-separated names (default: 10)",
    )
    parser.add_argument(
        "--rate",
        type=tick_rate,
        default=2000.0,
        help="bot: synthetic ticks per wall-clock second, all symbols together (default: 2000)",
    )
    parser.add_argument(
        "--speed",
        type=market_speed,
        default=1.0,
        help="bot: market seconds per wall-clock second, > 0 and <= 3600; 1 is real time, where "
        "the first indicators (14 one-minute bars) take a quarter of an hour, 60 makes a "
        "one-minute bar every second (default: 1)",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=0,
        help="API port on 127.0.0.1; 0 picks a free one (default: 0)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.runs.stack import prepare_directories, run_stack
    from reference.errors import TopologyError

    # Everything is checked before the first directory is made or process started.
    try:
        topology = load_topology(args.topology)
    except TopologyError as exc:
        raise SplitdbError(f"--topology {args.topology}: {'; '.join(exc.problems)}") from None
    if topology.backend != "sqlite":
        raise SplitdbError(
            f"--topology {args.topology}: backend = {topology.backend!r}: `splitdb up` runs the "
            "stack on SQLite files; on PostgreSQL run a scenario: splitdb run "
            "scenarios/default.toml --topology postgres"
        )
    run_dir = args.run_dir or args.data_dir / "run"
    prepare_directories([("--data-dir", args.data_dir), ("--run-dir", run_dir)])
    clean = run_stack(
        topology=args.topology,
        data_dir=args.data_dir,
        run_dir=run_dir,
        bot_args=["--symbols", args.symbols, "--rate", str(args.rate), "--speed", str(args.speed)],
        api_args=["--port", str(args.port)],
    )
    return EXIT_OK if clean else EXIT_FAILED
