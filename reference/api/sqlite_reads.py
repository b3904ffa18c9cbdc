"""The endpoints' reads on SQLite files (`reference.api.reads.Reads`): the routes' SQL, run by
`ReadConnections` (`reference.api.readers`) on the event loop, where a read never waits for a
lock (one that would is made again in a worker thread).

A one-statement read goes without BEGIN/COMMIT (`read_rows_now`: one statement is one
snapshot); a page and its "is the symbol known" are two statements in one read transaction
(`read_now`).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from reference import analysis_sql
from reference.api.readers import ReadConnections, rows_of
from reference.schema import BAR_COLUMNS, TICK_COLUMNS
from reference.storage import Page

if TYPE_CHECKING:
    from reference.api.reads import Reads

__all__ = ["INDICATOR_COLUMNS", "SYMBOLS_SQL", "SqliteReads"]

INDICATOR_COLUMNS: tuple[str, ...] = ("symbol", "timeframe", "start_msc", "name", "value")

# The skip scan the agent uses too (reference.analysis_sql).
SYMBOLS_SQL = analysis_sql.SYMBOLS
_TICKS_SQL = (
    f"SELECT {', '.join(TICK_COLUMNS)} FROM ticks "
    "WHERE symbol = ? AND time_msc BETWEEN ? AND ? ORDER BY time_msc, seq LIMIT ?"
)
_LATEST_SQL = (
    f"SELECT {', '.join(TICK_COLUMNS)} FROM ticks "
    "WHERE symbol = ? ORDER BY time_msc DESC, seq DESC LIMIT 1"
)
_BARS_SQL = (
    f"SELECT {', '.join(BAR_COLUMNS)} FROM bars "
    "WHERE symbol = ? AND timeframe = ? AND start_msc BETWEEN ? AND ? "
    "ORDER BY start_msc LIMIT ?"
)
_INDICATORS_SQL = (
    f"SELECT {', '.join(INDICATOR_COLUMNS)} FROM indicators "
    "WHERE symbol = ?2 AND timeframe = ?3 AND start_msc BETWEEN ?4 AND ?5 "
    "AND (?1 IS NULL OR name = ?1) ORDER BY start_msc, name LIMIT ?6"
)
_HAS_TICKS_SQL = "SELECT EXISTS (SELECT 1 FROM ticks WHERE symbol = ?)"
_HAS_ANALYSIS_SQL = (
    "SELECT EXISTS (SELECT 1 FROM bars WHERE symbol = ?1) "
    "OR EXISTS (SELECT 1 FROM indicators WHERE symbol = ?1)"
)


class SqliteReads:
    """The endpoints' reads through `readers`, the role's read connections."""

    def __init__(self, readers: ReadConnections) -> None:
        self.readers = readers

    async def symbols(self) -> list[str]:
        rows = await self.readers.read_rows_now("ticks", "symbols", SYMBOLS_SQL)
        return [row[0] for row in rows]

    async def latest_tick(self, symbol: str) -> dict[str, Any] | None:
        rows = await self.readers.read_rows_now("ticks", "latest", _LATEST_SQL, (symbol,))
        return dict(zip(TICK_COLUMNS, rows[0], strict=True)) if rows else None

    async def ticks(self, symbol: str, start: int, last: int, limit: int) -> Page:
        def query(conn: sqlite3.Connection) -> Page:
            rows = rows_of(conn.execute(_TICKS_SQL, (symbol, start, last, limit)), TICK_COLUMNS)
            return Page(rows, bool(rows) or _exists(conn, _HAS_TICKS_SQL, symbol))

        return await self.readers.read_now("ticks", "ticks", query)

    async def bars(self, symbol: str, timeframe: str, start: int, last: int, limit: int) -> Page:
        def query(conn: sqlite3.Connection) -> Page:
            parameters = (symbol, timeframe, start, last, limit)
            rows = rows_of(conn.execute(_BARS_SQL, parameters), BAR_COLUMNS)
            return Page(rows, bool(rows) or _exists(conn, _HAS_ANALYSIS_SQL, symbol))

        return await self.readers.read_now("analysis", "bars", query)

    async def indicators(
        self, symbol: str, timeframe: str, name: str | None, start: int, last: int, limit: int
    ) -> Page:
        def query(conn: sqlite3.Connection) -> Page:
            parameters = (name, symbol, timeframe, start, last, limit)
            rows = rows_of(conn.execute(_INDICATORS_SQL, parameters), INDICATOR_COLUMNS)
            return Page(rows, bool(rows) or _exists(conn, _HAS_ANALYSIS_SQL, symbol))

        return await self.readers.read_now("analysis", "indicators", query)

    async def known_in_ticks(self, symbol: str) -> bool:
        rows = await self.readers.read_rows_now("ticks", "symbol", _HAS_TICKS_SQL, (symbol,))
        return bool(rows[0][0])


def _exists(conn: sqlite3.Connection, sql: str, symbol: str) -> bool:
    return bool(conn.execute(sql, (symbol,)).fetchone()[0])


if TYPE_CHECKING:

    def _conforms(reads: SqliteReads) -> Reads:
        return reads
