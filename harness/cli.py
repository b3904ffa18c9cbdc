"""The `splitdb` command line: one clear line and a non-zero exit for every error we expect.

Each command is a module of `harness.commands` with `register(subparsers)`, which adds its parser
and sets `handler` (a function of the parsed arguments returning an exit code of
`harness.commands.exits`). A command module imports its domain code inside the handler, so
`splitdb --help` loads none of it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

# Only constants besides the standard library at module level: the entry script
# (`splitdb = "harness.cli:main"`) runs `from harness.cli import main` before main can catch
# anything, so the command modules and argparse are imported inside main, where a Ctrl-C during
# start-up is one line and exit 130, not a traceback.
from harness.commands.exits import EXIT_INTERRUPTED

if TYPE_CHECKING:
    import argparse


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a check failed, 2 bad input, 130 Ctrl-C)."""
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        # Anywhere: importing the commands, building the parser, running one. Supervised
        # processes were stopped on the way out (each run stops its own).
        from harness.errors import RunInterrupted

        left = f"; {exc.left}" if isinstance(exc, RunInterrupted) else ""
        print(f"splitdb: interrupted; processes stopped{left}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _build_parser() -> argparse.ArgumentParser:
    import argparse
    from typing import NoReturn

    from harness.commands import (
        bench,
        compare,
        init,
        migrate,
        replay,
        report,
        run,
        scenarios,
        search,
        speed,
        stress,
        topology,
        up,
        watch,
    )
    from harness.commands.exits import EXIT_BAD_INPUT

    class OneLineParser(argparse.ArgumentParser):
        """argparse, but a usage error is one line: what was wrong, and where the help is."""

        def error(self, message: str) -> NoReturn:
            self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see {self.prog} --help\n")

    parser = OneLineParser(
        prog="splitdb",
        description="Reference multi-process SQLite system and the harness that verifies it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In the order `splitdb --help` lists them.
    for command in (
        init,
        topology,
        up,
        run,
        scenarios,
        report,
        compare,
        bench,
        speed,
        replay,
        search,
        stress,
        watch,
        migrate,
    ):
        command.register(sub)
    return parser


def _main(argv: Sequence[str] | None) -> int:
    from harness.commands.exits import EXIT_BAD_INPUT
    from reference.errors import SplitdbError

    try:
        # argparse exits on --help and on a usage error (one line, exit 2): returned, not raised.
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        return int(args.handler(args))
    except SplitdbError as exc:
        print(f"splitdb: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        # A file the checks could not foresee (permissions, a full disk, a read that fails):
        # one line naming it, never a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"splitdb: error: {where}{exc.strerror or exc}; check the path, its permissions "
            "and free space",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
