"""`splitdb compare BASE NEW...`: better, worse or within noise, metric by metric.

The rule is `harness.results.compare`'s; this module reads the flags, prints, and says the exit
code. With `--calibrate` it measures benchmark floors instead (`harness.results.floors`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.atomic import write_atomically
from harness.commands.exits import EXIT_FAILED, EXIT_OK
from harness.commands.paths import output_file, path_arg
from harness.errors import ComparisonError


def register(subparsers: Any) -> None:
    """Add `splitdb compare` to the CLI."""
    # Only the standard library behind it: the help stays fast.
    from harness.results.stats import DEFAULT_ALPHA

    parser = subparsers.add_parser(
        "compare",
        help="compare runs (or pytest-benchmark files): better, worse or within noise",
        description=(
            "Compare NEW with BASE metric by metric. Exit 0 when no metric is worse past its "
            "threshold, 1 when one is, 2 for bad input. A change counts when the rank test "
            "(Mann-Whitney U on repeats or benchmark rounds) is significant and the median "
            "moved past the metric's run-to-run floor (see docs/report-format.md). With "
            "--calibrate, BASE NEW... are pytest-benchmark files of unchanged code, one per run, "
            "and the command measures each benchmark's floor instead."
        ),
    )
    parser.add_argument(
        "base", type=path_arg, metavar="BASE", help="report, run dir, dir of runs, benchmark JSON"
    )
    parser.add_argument("new", type=path_arg, nargs="+", metavar="NEW", help="same kinds; pooled")
    parser.add_argument(
        "--threshold",
        action="append",
        metavar="METRIC=PCT",
        help="regression in percent that fails METRIC (a name or glob); repeatable "
        "(default: the metric's own, 10 for throughput)",
    )
    parser.add_argument(
        "--thresholds",
        type=path_arg,
        metavar="FILE",
        help="TOML: alpha, min_change, [thresholds] and [floors] METRIC = PCT",
    )
    parser.add_argument(
        "--alpha", type=float, default=None, help=f"significance level (default {DEFAULT_ALPHA})"
    )
    parser.add_argument(
        "--min-change",
        type=float,
        default=None,
        metavar="PCT",
        help="one floor for every metric: smaller changes count as noise "
        "(default: each metric's run-to-run floor)",
    )
    parser.add_argument(
        "--floors",
        type=path_arg,
        metavar="FILE",
        help="TOML [floors] METRIC = PCT, such as tests/benchmarks/floors.toml (what "
        "--calibrate writes); over the thresholds file's [floors]",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="measure benchmark floors from BASE NEW...: pytest-benchmark files of unchanged "
        "code, one per run (3 or more; 10 give tighter floors)",
    )
    parser.add_argument(
        "--write-floors",
        type=path_arg,
        metavar="FILE",
        help="with --calibrate: write the floors file here (default: print it)",
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown, not a table")
    parser.add_argument("--all", action="store_true", help="also list counts that are zero")
    parser.set_defaults(handler=handle)


def _calibrate(args: argparse.Namespace) -> int:
    import shlex
    from datetime import UTC, datetime

    from harness.results.floors import calibrate, floors_toml
    from harness.results.units import quantity

    if args.write_floors is not None:
        output_file(args.write_floors, "--write-floors")

    runs = [args.base, *args.new]
    calibration = calibrate(runs)
    if len(calibration.machines) > 1:
        print(
            "warning: the runs come from different machines ("
            + " / ".join(calibration.machines)
            + "); floors are for one machine",
            file=sys.stderr,
        )
    for name in calibration.skipped:
        print(f"warning: {name} is not in every run; no floor", file=sys.stderr)
    command = ["splitdb", "compare", "--calibrate", *map(str, runs)]
    if args.write_floors is not None:
        command += ["--write-floors", str(args.write_floors)]
    text = floors_toml(
        calibration, command=shlex.join(command), when=datetime.now(UTC).astimezone()
    )
    if args.write_floors is None:
        print(text, end="")
        return EXIT_OK
    write_atomically(args.write_floors, text)
    rows = [("benchmark", "run medians", "largest change", "floor")]
    for name, medians in calibration.medians.items():
        low, high = min(medians), max(medians)
        rows.append(
            (
                name,
                f"{quantity(low, 's', scale_by=high)} .. {quantity(high, 's', scale_by=low)}",
                f"{calibration.largest_change_pct[name]:.1f}%",
                f"{calibration.floors[name]:g}%",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    print(
        f"floors written to {args.write_floors}: {len(calibration.runs)} runs, floor = "
        f"(largest / smallest) ** {calibration.factor:.2f} - 1"
    )
    return EXIT_OK


def handle(args: argparse.Namespace) -> int:
    from harness.results.compare import (
        compare_paths,
        format_text,
        settings_from_flags,
        unmatched_thresholds,
    )
    from harness.results.markdown import append_step_summary, comparison_markdown

    if args.calibrate:
        return _calibrate(args)
    if args.write_floors is not None:
        raise ComparisonError(
            f"--write-floors {args.write_floors}: goes with --calibrate, as in splitdb compare "
            "--calibrate RUN1.json RUN2.json RUN3.json --write-floors FILE.toml"
        )
    settings = settings_from_flags(
        thresholds_file=args.thresholds,
        thresholds=args.threshold or (),
        alpha=args.alpha,
        min_change=args.min_change,
        floors_file=args.floors,
    )
    comparison = compare_paths([args.base], args.new, settings)
    for pattern in unmatched_thresholds(comparison):
        print(f"warning: threshold {pattern!r} matches no compared metric", file=sys.stderr)
    markdown = comparison_markdown(comparison)
    print(markdown if args.markdown else format_text(comparison, show_all=args.all))
    written = append_step_summary(markdown)
    if written is not None and not args.markdown:
        print(f"summary appended to {written}", file=sys.stderr)
    return EXIT_FAILED if comparison.failed else EXIT_OK
