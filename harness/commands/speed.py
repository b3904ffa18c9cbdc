"""`splitdb speed WHAT`: the reference system against a plain implementation of the same work,
measured in turns on this machine; each writes `<out>/<time>/WHAT.json` and `WHAT.md` and prints
the Markdown summary. They report, never assert: the exit code says whether a figure was measured.

- `splitdb speed api` (`harness.speed.api`): the reference API and a plain FastAPI anchor. 0
  measured, 1 when a round had errors (answers that were not 2xx, socket errors).
- `splitdb speed bot` (`harness.speed.bot`): the tick bot at its ceiling against a raw
  `executemany` loop. 0 measured, 1 when a run of the bot failed its checks (its figures are no
  ceiling).

This module reads the flags (bad ones: one line naming the flag, exit 2) and checks what must
hold before anything starts (wrk installed, the output directory writable).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness.commands.exits import EXIT_FAILED, EXIT_OK
from harness.commands.paths import output_dir, path_arg

DEFAULT_OUT = Path("reports") / "speed"


def number_in(
    low: float, high: float, *, integer: bool = False, unit: str = ""
) -> Callable[[str], Any]:
    """An argparse type: a finite number (an integer with `integer`) in [low, high].

    Here rather than reference.runtime's twin: importing that module loads the reference
    system, which `splitdb --help` must not.
    """
    kind = "an integer" if integer else "a number"
    wanted = f"give {kind} >= {low:g} and <= {high:g}{' ' + unit if unit else ''}"

    def parse(text: str) -> Any:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}; {wanted}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is out of range; {wanted}")
        return value

    return parse


def symbol_name(text: str) -> str:
    """argparse type of `--symbol`: a name the reference API accepts in its path."""
    # Imported when the flag is given, not with the CLI: reference.api loads FastAPI.
    from reference.api import SYMBOL_PATTERN

    if not re.fullmatch(SYMBOL_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a symbol the API takes: 1 to 32 letters, digits or . _ # + - "
            "starting with a letter or digit, for example EURUSD"
        )
    return text


def register(subparsers: Any) -> None:
    """Add `splitdb speed` and its measurements (`api`, `bot`) to the CLI."""
    parser = subparsers.add_parser(
        "speed",
        help="measure the reference system against a plain anchor, side by side",
        description="Side-by-side speed measurements of the reference system against a plain "
        "implementation of the same work, run in turns on this machine. They report; they "
        "assert nothing.",
    )
    sub = parser.add_subparsers(dest="measurement", required=True, metavar="WHAT")
    api = sub.add_parser(
        "api",
        help="the reference API against a plain FastAPI app on GET /ticks/SYMBOL/latest",
        description="Fill a ticks database, start the reference API and a plain FastAPI app "
        "(harness/speed/anchor_api.py: async def, one mode=ro connection, uvicorn, 1 worker) on "
        "the same file, warm both up, then measure them in turns with wrk (reference, anchor, "
        "reference, ...: ROUNDS each, same wrk settings). Writes OUT/<time>/api.json and api.md "
        "(req/s and p99 per side per round, medians with their spread, the ratio reference / "
        "anchor) and prints the summary. Exit 0 when measured, 1 when a round had errors, 2 for "
        "bad input (wrk missing included: apt-get install wrk).",
    )
    api.add_argument(
        "--rounds",
        type=number_in(1, 100, integer=True),
        default=5,
        help="wrk runs per side, alternating (default: 5)",
    )
    api.add_argument(
        "--duration",
        type=number_in(1, 3600, integer=True, unit="seconds"),
        default=20,
        help="seconds per wrk run (default: 20)",
    )
    api.add_argument(
        "--warmup",
        type=number_in(0, 600, integer=True, unit="seconds"),
        default=2,
        help="seconds of unrecorded load per side before the first round; 0 for none (default: 2)",
    )
    api.add_argument(
        "--threads",
        type=number_in(1, 64, integer=True),
        default=2,
        help="wrk threads, -t (default: 2)",
    )
    api.add_argument(
        "--connections",
        type=number_in(1, 10_000, integer=True),
        default=10,
        help="wrk connections, -c; at least --threads (default: 10)",
    )
    api.add_argument(
        "--symbol",
        type=symbol_name,
        default="EURUSD",
        help="the symbol whose latest tick is asked for (default: EURUSD)",
    )
    api.add_argument(
        "--symbols",
        type=number_in(1, 10_000, integer=True),
        default=10,
        help="symbols in the filled database, --symbol among them (default: 10)",
    )
    api.add_argument(
        "--ticks",
        type=number_in(1, 100_000_000, integer=True),
        default=100_000,
        help="ticks written before the servers start (default: 100000)",
    )
    api.add_argument(
        "--ingest",
        type=number_in(0, 10_000_000, unit="ticks/s"),
        default=0.0,
        help="ticks/s the reference bot writes into the same file while both sides are "
        "measured; 0 for a still file (default: 0)",
    )
    api.add_argument(
        "--out",
        type=path_arg,
        default=DEFAULT_OUT,
        help=f"where each run writes its directory (default: {DEFAULT_OUT})",
    )
    api.set_defaults(handler=handle_api)
    _register_bot(sub)


def handle_api(args: argparse.Namespace) -> int:
    from harness.speed.api import REPORT_JSON, SpeedSettings, markdown_summary, measure_api
    from harness.speed.wrk import require_wrk
    from reference.errors import SplitdbError

    if args.connections < args.threads:
        raise SplitdbError(
            f"--connections {args.connections} is fewer than --threads {args.threads}: wrk "
            "needs a connection per thread; raise --connections or lower --threads"
        )
    require_wrk()
    out = output_dir(args.out, "--out")
    run_dir = _measurement_dir(out)
    run_dir.mkdir(parents=True)
    settings = SpeedSettings(
        rounds=args.rounds,
        duration_s=args.duration,
        warmup_s=args.warmup,
        threads=args.threads,
        connections=args.connections,
        symbol=args.symbol,
        symbols=args.symbols,
        ticks=args.ticks,
        ingest=args.ingest,
    )

    def progress(line: str) -> None:
        print(f"speed api: {line}", file=sys.stderr, flush=True)

    report = measure_api(settings, run_dir, progress)
    print(markdown_summary(report), end="")
    print(f"report: {run_dir / REPORT_JSON}", file=sys.stderr)
    if report["errors"]:
        print(
            f"splitdb speed api: {report['errors']:,} errors (answers not 2xx, socket errors); "
            "the figures do not measure the query alone",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


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
        print(
            "speed bot: a run of the bot failed its checks or committed no tick in its window "
            "(lengthen --duration); see its report",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK
