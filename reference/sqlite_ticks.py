"""The bot's storage interface (`reference.storage.TickWriter`) on a SQLite file.

This is the bot's SQL as it was before the interface, moved here unchanged: its connection is
opened through the access manager as the role (whose authorizer enforces the grants: a
`PermissionViolation` passes through as it always did), the ticks table is created by its owner
at start, a batch is one `BEGIN IMMEDIATE` of `INSERT OR IGNORE` (`tickstore.insert_ticks`),
and a file replaced under the process (its path now names another file) is reopened when the
bot asks, before and after each batch (`reopen_replaced`).

Every `sqlite3.Error` becomes a `StoreFailed` with the outcome and extended error code the bot
always reported (`reference.events.outcome_of`). `transient` is set for busy, locked and full
only, the errors the bot always waited out; any other ended the process, and still does.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from reference.access import AccessManager, GuardedConnection
from reference.analysis import Key
from reference.errors import SplitdbError, StoreFailed
from reference.events import outcome_of
from reference.schema import ensure_schema
from reference.storage import TickWriter
from reference.tickstore import LAST_KEY, MONITOR, Inserted, TickRow, insert_ticks

__all__ = ["WAITED_OUT", "SqliteTickWriter"]

T = TypeVar("T")

# The outcomes a writer waits out: the rows stay pending and the next step tries again.
WAITED_OUT = frozenset({"busy", "locked", "full"})


def _failed(operation: str, exc: sqlite3.Error) -> StoreFailed:
    outcome, code = outcome_of(exc)
    return StoreFailed(operation, "ticks", outcome, code, str(exc), transient=outcome in WAITED_OUT)


def _run(operation: str, body: Callable[[], T]) -> T:
    try:
        return body()
    except sqlite3.Error as exc:
        raise _failed(operation, exc) from exc


class SqliteTickWriter:
    """The bot's storage on SQLite (`reference.storage.TickWriter`), its connection from the
    access manager. `conn` is that connection: after a reopen, the new one."""

    def __init__(self, access: AccessManager, role: str = "bot") -> None:
        self._access = access
        self._role = role
        self.conn = self._open()

    def _open(self) -> GuardedConnection:
        conn = _run("open", lambda: self._access.connect(self._role, "ticks"))
        try:
            _run("open", lambda: ensure_schema(conn, "ticks"))
        except BaseException:
            conn.close()
            raise
        return conn

    def append(self, rows: Sequence[TickRow]) -> Inserted:
        try:
            return insert_ticks(self.conn, rows)
        except sqlite3.Error as exc:
            raise _failed("append ticks", exc) from exc

    def last_keys(self, symbols: Iterable[str]) -> dict[str, Key]:
        def body() -> dict[str, Key]:
            out: dict[str, Key] = {}
            for symbol in symbols:
                row = self.conn.execute(LAST_KEY, (symbol,)).fetchone()
                if row is not None:
                    out[symbol] = (int(row[0]), int(row[1]))
            return out

        return _run("read the last keys", body)

    def reopen_replaced(self) -> str | None:
        watch = self.conn.watch
        if not watch.replaced():
            return None
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        self.conn = self._open()
        return watch.path

    def monitor(self) -> dict[str, object]:
        # A connection per glance, closed after it: a reader's file may appear, or be replaced,
        # between two glances.
        out: dict[str, object] = {}
        for database, query in MONITOR:
            try:
                conn = self._access.connect(self._role, database)
                try:
                    out[database] = conn.execute(query).fetchone()[0]
                finally:
                    conn.close()
            except (SplitdbError, sqlite3.Error) as exc:
                out[database] = f"unavailable: {exc}"
        return out

    def close(self) -> None:
        self.conn.close()


if TYPE_CHECKING:

    def _conforms(bot: SqliteTickWriter) -> TickWriter:
        return bot
