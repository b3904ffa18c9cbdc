"""The API's endpoints, on an APIRouter. What they share (the reads, the request log writer, the
runtime) they reach through `state_of(request.app)`: the app's `app.state`.

The data endpoints are `async def` and read through `Reads` (`reference.api.reads`), one code
path on either backend: on SQLite on the event loop (a read that would wait for a lock goes to
a worker thread), on PostgreSQL in worker threads. They answer with a `JSONAnswer` (a
`JSONResponse` rendered by pydantic-core, `reference.api.answers`) made from the rows: the
response models (`reference.api.models`) document the answers in the OpenAPI schema, and
FastAPI does not validate a returned Response against them, which on every request cost more
than the query (docs/perf/README.md). The rows are the
database's own values, of the STRICT tables' types (on PostgreSQL bigint, double precision and
text: the same Python types), so they are what the models say.
"""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

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
from reference.api.state import state_of
from reference.errors import StatusFileCorrupt, UnknownSymbol

__all__ = ["router"]

router = APIRouter(route_class=CheckedQueryRoute)


@router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    """This API's documentation as one self-contained page."""
    state = state_of(request.app)
    if state.docs_page is None:
        app = request.app
        state.docs_page = render_docs(app.openapi(), openapi_url=app.openapi_url or "")
    return HTMLResponse(state.docs_page)


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
    return JSONAnswer({"symbols": await state_of(request.app).reads.symbols()})


@router.get(
    "/ticks/{symbol}/latest",
    response_model=TickOut,
    responses=SYMBOL_ERRORS,
    summary="A symbol's latest tick",
)
async def latest_tick(symbol: Symbol, request: Request) -> JSONAnswer:
    """The tick with the greatest (time_msc, seq)."""
    tick = await state_of(request.app).reads.latest_tick(symbol)
    if tick is None:
        raise UnknownSymbol(symbol)
    return JSONAnswer(tick)


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
    reads = state_of(request.app).reads
    page = await reads.ticks(symbol, window.start, window.last, limit + 1)
    if not page.known:
        raise UnknownSymbol(symbol)
    return _page("ticks", page.rows, window, limit, symbol=symbol)


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
    reads = state_of(request.app).reads
    page = await reads.bars(symbol, timeframe, window.start, window.last, limit + 1)
    # A symbol the agent has not reached yet is known, just without bars.
    if not page.known and not await reads.known_in_ticks(symbol):
        raise UnknownSymbol(symbol)
    return _page("bars", page.rows, window, limit, symbol=symbol, timeframe=timeframe)


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
    reads = state_of(request.app).reads
    page = await reads.indicators(symbol, timeframe, name, window.start, window.last, limit + 1)
    if not page.known and not await reads.known_in_ticks(symbol):
        raise UnknownSymbol(symbol)
    return _page(
        "indicators", page.rows, window, limit, symbol=symbol, timeframe=timeframe, name=name
    )


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
