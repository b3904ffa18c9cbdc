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
    """A reader asked for a database whose owner has not created it yet; `database` and `where`
    (its file, or its place on a server) when the raiser knows them."""

    def __init__(self, message: str, *, database: str | None = None, where: str | None = None):
        self.database = database
        self.where = where
        super().__init__(message)


class DatabaseUnusable(SplitdbError):
    """A database file cannot be opened or read as SQLite (junk, a directory, unreadable)."""


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


class FeedApiError(FeedError):
    """A MetaTrader5 API call failed (returned None or False); carries its last_error()."""

    def __init__(self, symbol: str | None, call: str, code: int, text: str) -> None:
        self.symbol = symbol
        self.call = call
        self.code = code
        self.text = text
        where = f" for {symbol}" if symbol is not None else ""
        super().__init__(f"MetaTrader5 {call} failed{where}: last_error() = ({code}, {text!r})")


class DatabaseUnavailable(SplitdbError):
    """A database cannot be read right now (missing, no schema yet, busy, failing): a 503."""

    def __init__(self, database: str, detail: str) -> None:
        self.database = database
        self.detail = detail
        super().__init__(f"database {database!r} unavailable: {detail}")


class UnknownSymbol(SplitdbError):
    """No data at all for a symbol: a 404."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        super().__init__(f"unknown symbol {symbol!r}: no ticks for it; GET /symbols lists them")


class CycleFailed(SplitdbError):
    """A database failure ended an agent cycle at `stage`; nothing of the cycle was committed.

    `error` is the store's `StoreFailed` (its `__cause__` the backend's own exception).
    """

    def __init__(self, stage: str, database: str, error: StoreFailed) -> None:
        self.stage = stage
        self.database = database
        self.error = error
        # The backend's message, as before the storage interface: the same line on SQLite.
        super().__init__(f"{stage} on database {database!r} failed: {error.detail}")


class StateUnavailable(SplitdbError):
    """The stored rows do not hold the state needed to continue a series; replay it instead."""


class StoreFailed(SplitdbError):
    """A storage operation (`reference.storage`) failed in the database; nothing of it was
    committed unless `unclear` (the connection broke during COMMIT: it may have been).

    `outcome` is the event outcome ('busy', 'locked', 'full', 'denied', 'error'); `code` the
    backend's (a SQLite extended error code, or a PostgreSQL SQLSTATE such as '42501'), None when
    it gave none. `transient`: the failure is of the moment (a lock, a full disk, a broken
    connection, a table not created yet: the DB-API's OperationalError on either backend), so
    the same call may succeed later; otherwise retrying cannot help. The caller retries a
    transient failure and stops on any other. One narrower: the SQLite tick writer's is busy,
    locked and full only, what the bot always waited out (`reference.sqlite_ticks`).
    """

    def __init__(
        self,
        operation: str,
        database: str,
        outcome: str,
        code: int | str | None,
        detail: str,
        *,
        unclear: bool = False,
        transient: bool = False,
    ) -> None:
        self.operation = operation
        self.database = database
        self.outcome = outcome
        self.code = code
        self.detail = detail
        self.unclear = unclear
        self.transient = transient
        shown = f" [{code}]" if code is not None else ""
        super().__init__(f"{operation} on database {database!r} failed{shown}: {detail}")


class StoreSetupError(SplitdbError):
    """A store cannot be opened as configured (no connection string, a superuser's login)."""
