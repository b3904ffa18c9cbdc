"""The one exception hierarchy of splitdb, shared by `reference` and `harness`.

Callers catch at the level they care about: `SplitdbError` for anything of ours, or a subclass.
"""

from __future__ import annotations

from pathlib import Path


class SplitdbError(Exception):
    """Base of every error splitdb raises on purpose."""


class InvalidInput(SplitdbError):
    """A file or mapping failed validation; `problems` lists each as 'field: what; the fix'."""

    what = "input"

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        if len(self.problems) == 1:
            # One problem, one line: what a terminal, a CI log and grep handle best.
            super().__init__(f"invalid {self.what} {source}: {self.problems[0]}")
            return
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {self.what} {source}:\n{lines}")


class TopologyError(InvalidInput):
    """A topology is invalid."""

    what = "topology"


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


class PermissionViolation(SplitdbError):
    """A role attempted an operation its topology does not grant on a database."""

    def __init__(self, role: str, database: str, operation: str) -> None:
        self.role = role
        self.database = database
        self.operation = operation
        super().__init__(
            f"permission denied: role {role!r} may not {operation} on database {database!r}"
        )


class DatabaseMissing(SplitdbError):
    """A reader asked for a database whose owner has not created it yet."""


class SchemaError(SplitdbError):
    """A database file carries a schema this version cannot use (for example a newer one)."""


class StatusFileCorrupt(SplitdbError):
    """The status board file is not a status board this version can read."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"status file {path} is corrupt: {reason}")


class StatusBoardBusy(SplitdbError):
    """Another process held the status board's lock longer than the caller would wait."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        super().__init__(
            f"status board {path} stayed locked for {timeout:g} s "
            "(is a process holding it stopped?)"
        )


class FeedError(SplitdbError):
    """A market-data feed could not start or deliver ticks."""


class CrashPointError(SplitdbError):
    """`SPLITDB_CRASH_AT` does not name a crash point this process could reach."""
