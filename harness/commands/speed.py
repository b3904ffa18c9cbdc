"""`splitdb speed TARGET`: a reference process against a plain anchor, side by side in one run.

`splitdb speed bot`: the tick bot at its ceiling against a raw `executemany` loop
(`harness.speed.bot`). A benchmark that reports: it exits 0 whatever the ratio, 1 when a run of
the bot failed its checks (its figures are no ceiling), 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness.commands.exits import EXIT_FAILED, EXIT_OK
from harness.commands.paths import output_dir, path_arg

DEFAULT_OUT = Path("reports") / "speed"


def register(subparsers: Any) -> None:
    """Add `splitdb speed` and its targets to the CLI."""
    parser = subparsers.add_parser(
        "speed",
        help="a reference process against a plain anchor, side by side in one run",
        description="Measure a reference process against the simplest program doing the same "
        "work, in turns on this machine, and write reports/speed/<time>/TARGET.json with a "
        "Markdown summary.",
    )
    targets = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    _register_bot(targets)


# harness.speed.bot.Plan's defaults, written out here: importing it (numpy, the reference) at
# parser-building time would slow `splitdb --help` down.
_BOT_DEFAULTS = SimpleNamespace(
    rounds=5, duration_s=3.0, symbols=50, rate=1_000_000.0, batch_size=1000
)


def _register_bot(targets: Any) -> None:
    default = _BOT_DEFAULTS
    parser = targets.add_parser(
        "bot",
        help="the bot at its ceiling against raw executemany of 1,000-row batches",
        description="Rounds of: the bot alone with far more ticks offered than it takes (a real "
        "splitdb run, every check included), then a raw executemany loop of the same rows into "
        "a fresh copy of the same schema. Prints a line per round and the Markdown summary "
        "(ticks/s per side per round, medians with min and max, the ratio bot/raw, the bot's "
        "peak RSS); exit 0, 1 when a bot run failed its checks, 2 for bad input.",
    )
    parser.add_argument(
        "--rounds", type=int, default=default.rounds, help=f"rounds (default {default.rounds})"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=default.duration_s,
        help=f"seconds of load per side and round (default {default.duration_s:g})",
    )
    parser.add_argument(
        "--symbols", type=int, default=default.symbols, help=f"default {default.symbols}"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=default.rate,
        help=f"ticks/s offered to the bot, all symbols (default {default.rate:,.0f})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=default.batch_size,
        help=f"rows per transaction, both sides (default {default.batch_size})",
    )
    parser.add_argument(
        "--out",
        type=path_arg,
        default=DEFAULT_OUT,
        help=f"where each measurement writes its directory (default {DEFAULT_OUT})",
    )
    parser.set_defaults(handler=handle_bot)


def _measurement_dir(out: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for suffix in range(1000):
        candidate = out / (stamp if suffix == 0 else f"{stamp}-{suffix}")
        if not candidate.exists():
            return candidate
    return out / f"{stamp}-{datetime.now(UTC).microsecond}"


def handle_bot(args: argparse.Namespace) -> int:
    """Measure, write bot.json and bot.md, print the summary."""
    from harness.speed.bot import Plan, markdown, measure, write_results

    plan = Plan(
        rounds=args.rounds,
        duration_s=args.duration,
        symbols=args.symbols,
        rate=args.rate,
        batch_size=args.batch_size,
    ).check()
    directory = _measurement_dir(output_dir(args.out, "--out"))
    directory.mkdir(parents=True)
    print(f"speed bot: {plan.rounds} rounds of {plan.duration_s:g} s a side into {directory}")
    record = measure(plan, directory, progress=lambda line: print(line, flush=True))
    json_path, _ = write_results(record, directory)
    print(markdown(record), end="")
    print(f"written: {json_path}")
    if not record["summary"]["ok"]:
        print("speed bot: a run of the bot failed its checks; see its report", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
