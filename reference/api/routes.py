"""The API's endpoints, on an APIRouter. What they share (the read connections, the request log
writer, the runtime) they reach through the `AppState` dependency: the app's `app.state`."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from reference.api.docs import render_docs
from reference.api.models import (
    ERRORS,
    SYMBOL_ERRORS,
    BarsOut,
    HealthOut,
    IndicatorsOut,
    StatusOut,
    SymbolsOut,
    TickOut,
    TicksOut,
)
from reference.api.parameters import (
    DEFAULT_LIMIT,
    Limit,
    NameQuery,
    Range,
    Symbol,
    TimeframeQuery,
    TimeRange,
)
from reference.api.readers import ReadConnections, rows_of
from reference.api.state import AppState, app_state
from reference.errors import StatusFileCorrupt, UnknownSymbol
from reference.schema import BAR_COLUMNS, TICK_COLUMNS

__all__ = ["SYMBOLS_SQL", "router"]

INDICATOR_COLUMNS: tuple[str, ...] = ("symbol", "timeframe", "start_msc", "name", "value")

# The distinct symbols in key order without a full scan: each step seeks the primary-key index
# to the first symbol after the previous one (a "skip scan"), so the cost grows with the number
# of symbols, not of ticks.
SYMBOLS_SQL = """
WITH RECURSIVE walk(symbol) AS (
    SELECT (SELECT MIN(symbol) FROM ticks)
    UNION ALL
    SELECT (SELECT MIN(symbol) FROM ticks WHERE symbol > walk.symbol)
    FROM walk
    WHERE walk.symbol IS NOT NULL
)
SELECT symbol FROM walk WHERE symbol IS NOT NULL
"""
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

router = APIRouter()
State = Annotated[AppState, Depends(app_state)]


@router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
async def docs(request: Request, state: State) -> HTMLResponse:
    """This API's documentation as one self-contained page."""
    if state.docs_page is None:
        app = request.app
        state.docs_page = render_docs(app.openapi(), openapi_url=app.openapi_url or "")
    return HTMLResponse(state.docs_page)


def _known_in_ticks(readers: ReadConnections, symbol: str) -> bool:
    return readers.read(
        "ticks",
        "symbol",
        lambda conn: bool(conn.execute(_HAS_TICKS_SQL, (symbol,)).fetchone()[0]),
    )


@router.get("/health", response_model=HealthOut, summary="Liveness")
async def health(state: State) -> dict[str, Any]:
    """Answers while the process serves; `degraded` when the request log writer is down."""
    writer = state.writer
    return {
        "status": "ok" if writer.running else "degraded",
        "role": state.runtime.role,
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - state.runtime.started, 3),
        "request_log_running": writer.running,
    }


@router.get("/status", response_model=StatusOut, summary="Status board and request log")
def status(state: State) -> dict[str, Any]:
    """The whole status board (every process's section) and this server's request log."""
    board: dict[str, Any] | None = None
    board_error: str | None = None
    try:
        board = state.runtime.status.read()
    except (StatusFileCorrupt, OSError) as exc:
        board_error = str(exc)
    return {
        "role": state.runtime.role,
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - state.runtime.started, 3),
        "request_log": dict(state.writer.stats()),
        "board": board,
        "board_error": board_error,
    }


@router.get("/symbols", response_model=SymbolsOut, responses=ERRORS, summary="Known symbols")
def symbols(state: State) -> dict[str, Any]:
    """Every symbol with at least one tick, in ascending order."""
    found = state.readers.read(
        "ticks", "symbols", lambda conn: [row[0] for row in conn.execute(SYMBOLS_SQL)]
    )
    return {"symbols": found}


@router.get(
    "/ticks/{symbol}/latest",
    response_model=TickOut,
    responses=SYMBOL_ERRORS,
    summary="A symbol's latest tick",
)
def latest_tick(symbol: Symbol, state: State) -> dict[str, Any]:
    """The tick with the greatest (time_msc, seq)."""
    rows = state.readers.read(
        "ticks",
        "latest",
        lambda conn: rows_of(conn.execute(_LATEST_SQL, (symbol,)), TICK_COLUMNS),
    )
    if not rows:
        raise UnknownSymbol(symbol)
    return rows[0]


@router.get(
    "/ticks/{symbol}",
    response_model=TicksOut,
    responses=SYMBOL_ERRORS,
    summary="A symbol's ticks in a time range",
)
def ticks(
    symbol: Symbol, window: Range, state: State, limit: Limit = DEFAULT_LIMIT
) -> dict[str, Any]:
    """The first `limit` ticks with start <= time_msc <= end, ordered by (time_msc, seq)."""

    def query(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], bool]:
        rows = rows_of(
            conn.execute(_TICKS_SQL, (symbol, window.start, window.last, limit + 1)),
            TICK_COLUMNS,
        )
        known = bool(rows) or bool(conn.execute(_HAS_TICKS_SQL, (symbol,)).fetchone()[0])
        return rows, known

    rows, known = state.readers.read("ticks", "ticks", query)
    if not known:
        raise UnknownSymbol(symbol)
    return _page("ticks", rows, window, limit, symbol=symbol)


@router.get(
    "/bars/{symbol}",
    response_model=BarsOut,
    responses=SYMBOL_ERRORS,
    summary="A symbol's OHLC bars",
)
def bars(
    symbol: Symbol,
    window: Range,
    state: State,
    timeframe: TimeframeQuery = "1m",
    limit: Limit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The first `limit` bars with start <= start_msc <= end, ordered by start_msc."""

    def query(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], bool]:
        rows = rows_of(
            conn.execute(_BARS_SQL, (symbol, timeframe, window.start, window.last, limit + 1)),
            BAR_COLUMNS,
        )
        known = bool(rows) or bool(conn.execute(_HAS_ANALYSIS_SQL, (symbol,)).fetchone()[0])
        return rows, known

    rows, known = state.readers.read("analysis", "bars", query)
    # A symbol the agent has not reached yet is known, just without bars.
    if not known and not _known_in_ticks(state.readers, symbol):
        raise UnknownSymbol(symbol)
    return _page("bars", rows, window, limit, symbol=symbol, timeframe=timeframe)


@router.get(
    "/indicators/{symbol}",
    response_model=IndicatorsOut,
    responses=SYMBOL_ERRORS,
    summary="A symbol's indicator values",
)
def indicators(
    symbol: Symbol,
    window: Range,
    state: State,
    timeframe: TimeframeQuery = "1m",
    name: NameQuery = None,
    limit: Limit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The first `limit` values with start <= start_msc <= end, ordered by (start_msc, name);
    all indicators unless `name` picks one."""

    def query(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], bool]:
        parameters = (name, symbol, timeframe, window.start, window.last, limit + 1)
        rows = rows_of(conn.execute(_INDICATORS_SQL, parameters), INDICATOR_COLUMNS)
        known = bool(rows) or bool(conn.execute(_HAS_ANALYSIS_SQL, (symbol,)).fetchone()[0])
        return rows, known

    rows, known = state.readers.read("analysis", "indicators", query)
    if not known and not _known_in_ticks(state.readers, symbol):
        raise UnknownSymbol(symbol)
    return _page("indicators", rows, window, limit, symbol=symbol, timeframe=timeframe, name=name)


def _page(
    key: str, rows: list[dict[str, Any]], window: TimeRange, limit: int, **fields: Any
) -> dict[str, Any]:
    """A list answer: the first `limit` rows (the query fetched one more to know if it was
    truncated), with the window and paging fields."""
    return {
        **fields,
        "start": window.start,
        "end": window.end,
        "limit": limit,
        "count": min(len(rows), limit),
        "truncated": len(rows) > limit,
        key: rows[:limit],
    }
