"""The API's endpoints, on an APIRouter. What they share (the read connections, the request log
writer, the runtime) they reach through `state_of(request.app)`: the app's `app.state`.

The data endpoints are `async def` and read on the event loop (`ReadConnections.read_now`,
which hands a read that would wait for a lock to a worker thread). They answer with a
`JSONAnswer` (a `JSONResponse` rendered by pydantic-core, `reference.api.answers`) made from
the rows: the response models (`reference.api.models`) document the
answers in the OpenAPI schema, and FastAPI does not validate a returned Response against them,
which on every request cost more than the query (docs/perf/README.md). The rows are the
database's own values, of the STRICT tables' types, so they are what the models say.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from reference import analysis_sql
from reference.api.answers import JSONAnswer
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
    CheckedQueryRoute,
    Limit,
    NameQuery,
    Range,
    Symbol,
    TimeframeQuery,
    TimeRange,
)
from reference.api.readers import ReadConnections, rows_of
from reference.api.state import state_of
from reference.errors import StatusFileCorrupt, UnknownSymbol
from reference.schema import BAR_COLUMNS, TICK_COLUMNS

__all__ = ["SYMBOLS_SQL", "router"]

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

router = APIRouter(route_class=CheckedQueryRoute)


@router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    """This API's documentation as one self-contained page."""
    state = state_of(request.app)
    if state.docs_page is None:
        app = request.app
        state.docs_page = render_docs(app.openapi(), openapi_url=app.openapi_url or "")
    return HTMLResponse(state.docs_page)


async def _known_in_ticks(readers: ReadConnections, symbol: str) -> bool:
    rows = await readers.read_rows_now("ticks", "symbol", _HAS_TICKS_SQL, (symbol,))
    return bool(rows[0][0])


@router.get("/health", response_model=HealthOut, summary="Liveness")
async def health(request: Request) -> dict[str, Any]:
    """Answers while the process serves; `degraded` when the request log writer is down."""
    state = state_of(request.app)
    writer = state.writer
    return {
        "status": "ok" if writer.running else "degraded",
        "role": state.runtime.role,
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - state.runtime.started, 3),
        "request_log_running": writer.running,
    }


@router.get("/status", response_model=StatusOut, summary="Status board and request log")
def status(request: Request) -> dict[str, Any]:
    """The whole status board (every process's section) and this server's request log."""
    # A plain def, in a worker thread: reading the board takes its file lock, which may wait.
    state = state_of(request.app)
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
async def symbols(request: Request) -> JSONAnswer:
    """Every symbol with at least one tick, in ascending order."""
    rows = await state_of(request.app).readers.read_rows_now("ticks", "symbols", SYMBOLS_SQL)
    return JSONAnswer({"symbols": [row[0] for row in rows]})


@router.get(
    "/ticks/{symbol}/latest",
    response_model=TickOut,
    responses=SYMBOL_ERRORS,
    summary="A symbol's latest tick",
)
async def latest_tick(symbol: Symbol, request: Request) -> JSONAnswer:
    """The tick with the greatest (time_msc, seq)."""
    rows = await state_of(request.app).readers.read_rows_now(
        "ticks", "latest", _LATEST_SQL, (symbol,)
    )
    if not rows:
        raise UnknownSymbol(symbol)
    return JSONAnswer(dict(zip(TICK_COLUMNS, rows[0], strict=True)))


@router.get(
    "/ticks/{symbol}",
    response_model=TicksOut,
    responses=SYMBOL_ERRORS,
    summary="A symbol's ticks in a time range",
)
async def ticks(
    symbol: Symbol, window: Range, request: Request, limit: Limit = DEFAULT_LIMIT
) -> JSONAnswer:
    """The first `limit` ticks with start <= time_msc <= end, ordered by (time_msc, seq)."""

    def query(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], bool]:
        rows = rows_of(
            conn.execute(_TICKS_SQL, (symbol, window.start, window.last, limit + 1)),
            TICK_COLUMNS,
        )
        known = bool(rows) or bool(conn.execute(_HAS_TICKS_SQL, (symbol,)).fetchone()[0])
        return rows, known

    rows, known = await state_of(request.app).readers.read_now("ticks", "ticks", query)
    if not known:
        raise UnknownSymbol(symbol)
    return _page("ticks", rows, window, limit, symbol=symbol)


@router.get(
    "/bars/{symbol}",
    response_model=BarsOut,
    responses=SYMBOL_ERRORS,
    summary="A symbol's OHLC bars",
)
async def bars(
    symbol: Symbol,
    window: Range,
    request: Request,
    timeframe: TimeframeQuery = "1m",
    limit: Limit = DEFAULT_LIMIT,
) -> JSONAnswer:
    """The first `limit` bars with start <= start_msc <= end, ordered by start_msc."""

    def query(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], bool]:
        rows = rows_of(
            conn.execute(_BARS_SQL, (symbol, timeframe, window.start, window.last, limit + 1)),
            BAR_COLUMNS,
        )
        known = bool(rows) or bool(conn.execute(_HAS_ANALYSIS_SQL, (symbol,)).fetchone()[0])
        return rows, known

    readers = state_of(request.app).readers
    rows, known = await readers.read_now("analysis", "bars", query)
    # A symbol the agent has not reached yet is known, just without bars.
    if not known and not await _known_in_ticks(readers, symbol):
        raise UnknownSymbol(symbol)
    return _page("bars", rows, window, limit, symbol=symbol, timeframe=timeframe)


@router.get(
    "/indicators/{symbol}",
    response_model=IndicatorsOut,
    responses=SYMBOL_ERRORS,
    summary="A symbol's indicator values",
)
async def indicators(
    symbol: Symbol,
    window: Range,
    request: Request,
    timeframe: TimeframeQuery = "1m",
    name: NameQuery = None,
    limit: Limit = DEFAULT_LIMIT,
) -> JSONAnswer:
    """The first `limit` values with start <= start_msc <= end, ordered by (start_msc, name);
    all indicators unless `name` picks one."""

    def query(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], bool]:
        parameters = (name, symbol, timeframe, window.start, window.last, limit + 1)
        rows = rows_of(conn.execute(_INDICATORS_SQL, parameters), INDICATOR_COLUMNS)
        known = bool(rows) or bool(conn.execute(_HAS_ANALYSIS_SQL, (symbol,)).fetchone()[0])
        return rows, known

    readers = state_of(request.app).readers
    rows, known = await readers.read_now("analysis", "indicators", query)
    if not known and not await _known_in_ticks(readers, symbol):
        raise UnknownSymbol(symbol)
    return _page("indicators", rows, window, limit, symbol=symbol, timeframe=timeframe, name=name)


def _page(
    key: str, rows: list[dict[str, Any]], window: TimeRange, limit: int, **fields: Any
) -> JSONAnswer:
    """A list answer: the first `limit` rows (the query fetched one more to know if it was
    truncated), with the window and paging fields."""
    return JSONAnswer(
        {
            **fields,
            "start": window.start,
            "end": window.end,
            "limit": limit,
            "count": min(len(rows), limit),
            "truncated": len(rows) > limit,
            key: rows[:limit],
        }
    )
