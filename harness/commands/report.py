"""`splitdb report`: render a run's report as one self-contained HTML page (and Markdown)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.commands.exits import EXIT_OK
from harness.commands.paths import output_file, path_arg


def register(subparsers: Any) -> None:
    """Add `splitdb report` to the CLI."""
    parser = subparsers.add_parser(
        "report",
        help="render a run's report as one self-contained HTML page (and Markdown)",
        description=(
            "Write RUN's report as HTML (default: report.html in the run directory) and print "
            "where; --markdown also prints a Markdown summary and appends it to "
            "$GITHUB_STEP_SUMMARY when that is set."
        ),
    )
    parser.add_argument(
        "run", type=path_arg, metavar="RUN", help="a report.json or a run directory"
    )
    parser.add_argument("--html", type=path_arg, metavar="PATH", help="write the page here instead")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown summary")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.results.html import write_html
    from harness.results.markdown import append_step_summary, run_markdown
    from harness.results.report import load_report

    report = load_report(args.run)
    run_dir = args.run if args.run.is_dir() else args.run.parent
    target = write_html(
        report, output_file(args.html, "--html") if args.html else run_dir / "report.html"
    )
    print(f"wrote {target}", file=sys.stderr if args.markdown else sys.stdout)
    if args.markdown:
        summary = run_markdown(report)
        print(summary, end="")
        written = append_step_summary(summary)
        if written is not None:
            print(f"summary appended to {written}", file=sys.stderr)
    return EXIT_OK
