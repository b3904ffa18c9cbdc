"""The harness's errors: bad scenario, script, threshold or report files, output paths, and
supervised processes that fail. Each is a `SplitdbError`, which the command line turns into
one line and exit code 2; the reference processes' own errors are in `reference/errors.py`.
"""

from __future__ import annotations

from reference.errors import InvalidInput, SplitdbError


class ScenarioError(InvalidInput):
    """A scenario file is invalid."""

    what = "scenario"


class ScriptError(InvalidInput):
    """A step script (scripted interleaving) is invalid."""

    what = "script"


class ThresholdError(InvalidInput):
    """A --threshold flag or a thresholds file is invalid."""

    what = "thresholds"


class ComparisonError(SplitdbError):
    """Reports cannot be compared (different scenarios, nothing in common, nothing found)."""


class ReportFormatError(SplitdbError):
    """A file is not a splitdb report this version can read."""


class OutputPathError(SplitdbError):
    """An output path cannot be created or written."""


class BenchError(SplitdbError):
    """The benchmark gate cannot start: a base revision that cannot be built (unknown, missing
    from a shallow clone, without benchmarks), or a head that is not a git checkout."""


class SpeedError(SplitdbError):
    """A speed measurement (`splitdb speed`) cannot start (a bad setting) or gave no figure."""


class ToolMissing(SplitdbError):
    """A program a command runs is not installed (wrk for `splitdb speed`); the message says
    how to install it."""


class ProcessFailed(SplitdbError):
    """A supervised process exited when it should not have, or never became ready."""


class NotReady(ProcessFailed):
    """A user's process did not meet its readiness condition in time (`ended` None), or ended
    first (`ended` says how, as the supervisor words an exit: 'exited with code 1', 'killed by
    SIGKILL'; plain 'exited' when the caller could not tell).

    The message is one sentence naming the process and the condition; the caller adds the
    tail of the process's stderr.
    """

    def __init__(
        self, message: str, *, process: str, condition: str, waited_s: float, ended: str | None
    ) -> None:
        super().__init__(message)
        self.process = process
        self.condition = condition
        self.waited_s = waited_s
        self.ended = ended


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a command after it stopped its processes; `left` says, in one clause,
    what it left behind (such as an unfinished run directory, marked)."""

    def __init__(self, left: str) -> None:
        super().__init__(left)
        self.left = left


class PostgresUrlError(InvalidInput):
    """A PostgreSQL server URL is not one splitdb can use (`postgresql://USER@HOST:PORT/DB`)."""

    what = "PostgreSQL URL"


class PostgresUnavailable(SplitdbError):
    """No PostgreSQL server can be had: the binaries are missing, the server would not start,
    or a named server cannot be reached or administered."""
