"""The API server (role `api`): ticks, bars and indicators over HTTP, on loopback only.

`python -m reference.api --topology seed --data-dir DIR --events FILE [--host 127.0.0.1]
[--port 0]` serves the app under uvicorn. Port 0 picks a free port; once the socket listens, the
address is published on the status board (section 'api', key 'url') and a `ready` event is
written. SIGTERM or SIGINT: uvicorn finishes in-flight requests (1 s at most), the request log
drains and commits (`--log-drain-timeout`, 2 s), the section says 'stopped', exit code 0.

Endpoints (OpenAPI at /openapi.json, a docs page made from it at /docs that needs no network:
reference.api_docs); each answers HEAD too, like GET without the body:

- `GET /health`, `GET /status` (the status board and the request log's counters), `GET /symbols`
- `GET /ticks/{symbol}/latest`, `GET /ticks/{symbol}?start&end&limit`
- `GET /bars/{symbol}?timeframe&start&end&limit`
- `GET /indicators/{symbol}?timeframe&name&start&end&limit`

Rows come ordered by their key: ticks by (time_msc, seq), bars by start_msc, indicators by
(start_msc, name); `start` and `end` are inclusive epoch milliseconds. Without `end` there is no
upper bound (the answer echoes `"end": null`); an `end` before `start` matches nothing, so the
answer is an empty page (a 200), not an error. A list answer carries `truncated: true` when more
rows matched than `limit`.

Errors are JSON, never a 5xx for any input:

- 422 `{"error": "invalid request", "problems": [{"parameter", "in", "problem", "allowed",
  "given"}]}`: one problem per bad parameter. Unknown and repeated query parameters are
  checked first and, when there are any, reported alone.
- 404 `{"error": "unknown symbol", "symbol", "detail"}`: the symbol has no ticks (nor bars).
- 404 `{"error": "not found", "path", "detail"}`: no endpoint at this path.
- 405 `{"error": "method not allowed", "method", "path", "allowed", "detail"}` with `Allow`:
  the endpoints answer GET and HEAD only.
- 503 `{"error": "database unavailable", "database", "detail"}` with `Retry-After`: a database
  its owner has not created yet, a missing table, a busy or failing database.

Threading: the data endpoints are plain `def`s, so FastAPI runs them in its worker thread pool
(anyio's, 40 threads by default) and a slow read (a busy database, 10000 rows) never stalls the
event loop, which keeps accepting requests and feeding the request log. sqlite3 connections
belong to the thread that opened them, so each worker thread opens its own read connection per
database on first use and keeps it (at most 40 per database); a thread's connections close when
the thread ends. A database that does not exist yet is tried again on the next request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import ipaddress
import os
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference import analysis
from reference.access import AccessManager, declare_busy_timeout, transaction
from reference.api_docs import render_docs
from reference.errors import DatabaseUnavailable, SplitdbError, StatusFileCorrupt, UnknownSymbol
from reference.events import EventLog, outcome_of
from reference.requestlog import (
    BUSY_TIMEOUT_REASON,
    RequestLogMiddleware,
    RequestLogSettings,
    RequestLogWriter,
)
from reference.runtime import Runtime, add_common_arguments
from reference.schema import BAR_COLUMNS, TICK_COLUMNS, ensure_schema

__all__ = [
    "DEFAULT_LIMIT",
    "INDICATOR_NAMES",
    "MAX_LIMIT",
    "MAX_MSC",
    "SYMBOLS_SQL",
    "SYMBOL_PATTERN",
    "TIMEFRAMES",
    "DatabaseUnavailable",
    "HeadAsGet",
    "UnknownSymbol",
    "announce_ready",
    "build_parser",
    "create_app",
    "main",
    "request_log_of",
]

ROLE = "api"
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._#+-]{0,31}$"
SYMBOL_MAX_LENGTH = 32
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
# SQLite integers are signed 64-bit: a larger bound would overflow the parameter binding.
MAX_MSC = 2**63 - 1
# What the analysis agent writes. The Literals spell the values out for the type checker and
# the OpenAPI enums; tests/test_api.py checks they equal reference.analysis's.
TIMEFRAMES: tuple[str, ...] = tuple(analysis.TIMEFRAMES)
INDICATOR_NAMES: tuple[str, ...] = tuple(sorted(analysis.INDICATORS))
Timeframe = Literal["1m", "5m"]
IndicatorName = Literal["ema14", "rsi14", "rsi14_avg_gain", "rsi14_avg_loss", "sma14"]

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

# What each parameter accepts, in words, for 422 bodies and the OpenAPI descriptions.
ALLOWED: dict[str, str] = {
    "symbol": (
        f"1 to {SYMBOL_MAX_LENGTH} characters: a letter or digit, then letters, digits or "
        f". _ # + - (pattern {SYMBOL_PATTERN})"
    ),
    "start": f"integer epoch milliseconds 0..{MAX_MSC}, inclusive (default 0)",
    "end": (
        f"integer epoch milliseconds 0..{MAX_MSC}, inclusive (default: no upper bound); "
        "an end before start matches nothing"
    ),
    "limit": f"integer 1..{MAX_LIMIT} (default {DEFAULT_LIMIT})",
    "timeframe": f"one of {', '.join(TIMEFRAMES)} (default 1m)",
    "name": f"one of {', '.join(INDICATOR_NAMES)} (default: all of them)",
}

Symbol = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=SYMBOL_MAX_LENGTH,
        pattern=SYMBOL_PATTERN,
        description=ALLOWED["symbol"],
        examples=["EURUSD"],
    ),
]
Start = Annotated[int, Query(ge=0, le=MAX_MSC, description=ALLOWED["start"])]
End = Annotated[int | None, Query(ge=0, le=MAX_MSC, description=ALLOWED["end"])]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=ALLOWED["limit"])]
TimeframeQuery = Annotated[Timeframe, Query(description=ALLOWED["timeframe"])]
NameQuery = Annotated[IndicatorName | None, Query(description=ALLOWED["name"])]

T = TypeVar("T")


# --- response models (the OpenAPI schema; rows keep the tables' column names) ----------------


class TickOut(BaseModel):
    symbol: str
    time_msc: int
    seq: int
    time: int
    bid: float
    ask: float
    last: float | None
    volume: int | None
    flags: int | None
    volume_real: float | None


class TicksOut(BaseModel):
    symbol: str
    start: int
    end: int | None = Field(description="null: no upper bound")
    limit: int
    count: int
    truncated: bool = Field(description="more ticks matched than `limit`")
    ticks: list[TickOut]


class BarOut(BaseModel):
    symbol: str
    timeframe: str
    start_msc: int
    open: float
    high: float
    low: float
    close: float
    tick_count: int | None
    volume: float | None


class BarsOut(BaseModel):
    symbol: str
    timeframe: str
    start: int
    end: int | None = Field(description="null: no upper bound")
    limit: int
    count: int
    truncated: bool
    bars: list[BarOut]


class IndicatorOut(BaseModel):
    symbol: str
    timeframe: str
    start_msc: int
    name: str
    value: float | None


class IndicatorsOut(BaseModel):
    symbol: str
    timeframe: str
    name: str | None
    start: int
    end: int | None = Field(description="null: no upper bound")
    limit: int
    count: int
    truncated: bool
    indicators: list[IndicatorOut]


class SymbolsOut(BaseModel):
    symbols: list[str]


class RequestLogStatsOut(BaseModel):
    logged: int = Field(description="rows committed to request_log")
    dropped: int = Field(description="records refused because the queue was full (or stopped)")
    failed: int = Field(description="records given up after database errors")
    queued: int = Field(description="records waiting to be committed")
    batches: int = Field(description="transactions committed")
    errors: int = Field(description="failed commit attempts (each retried or failed)")
    last_error: str | None


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    role: str
    pid: int
    uptime_s: float
    request_log_running: bool


class StatusOut(BaseModel):
    role: str
    pid: int
    uptime_s: float
    request_log: RequestLogStatsOut
    board: dict[str, Any] | None = Field(description="the status board, null if unreadable")
    board_error: str | None


class ProblemOut(BaseModel):
    parameter: str
    in_: str = Field(alias="in")
    problem: str
    allowed: str
    given: str | None = None


class InvalidRequestOut(BaseModel):
    error: Literal["invalid request"]
    problems: list[ProblemOut]


class UnknownSymbolOut(BaseModel):
    error: Literal["unknown symbol"]
    symbol: str
    detail: str


class UnavailableOut(BaseModel):
    error: Literal["database unavailable"]
    database: str
    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": InvalidRequestOut, "description": "a parameter is invalid"},
    503: {"model": UnavailableOut, "description": "a database is not readable right now"},
}
_SYMBOL_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: {"model": UnknownSymbolOut, "description": "no data for this symbol"},
}


# --- parameters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeRange:
    """An inclusive [start, end] range of epoch milliseconds; empty if end < start."""

    start: int
    end: int | None  # None: no upper bound

    @property
    def last(self) -> int:
        """The inclusive upper bound for SQL: `end`, or the largest SQLite integer."""
        return MAX_MSC if self.end is None else self.end


def _problem(parameter: str, problem: str, given: object, *, allowed: str) -> dict[str, Any]:
    return {
        "type": "value_error",
        "loc": ("query", parameter),
        "msg": problem,
        "input": given,
        "ctx": {"allowed": allowed},
    }


async def time_range(start: Start = 0, end: End = None) -> TimeRange:
    """The start/end query parameters.

    An end before start is not refused: the OpenAPI schema cannot state a rule between two
    parameters, so such a request is valid by the schema, and it matches nothing.
    """
    return TimeRange(start, end)


Range = Annotated[TimeRange, Depends(time_range)]


def _query_parameters(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_parameters(sub)
    return names


async def _reject_unknown_and_repeated(request: Request) -> None:
    """Refuse a query parameter the route does not take, or one given twice.

    A typo (`limt=5`) would otherwise be ignored silently and the answer look right.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = sorted(_query_parameters(route.dependant))
    seen: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        seen.setdefault(key, []).append(value)
    takes = f"this endpoint's parameters: {', '.join(known)}" if known else "none"
    problems = [
        _problem(key, "unknown parameter", values[-1], allowed=takes)
        for key, values in seen.items()
        if key not in known
    ]
    problems += [
        _problem(
            key,
            f"given {len(values)} times; give it once",
            ", ".join(values),
            allowed=ALLOWED.get(key, "see /docs"),
        )
        for key, values in seen.items()
        if len(values) > 1 and key in known
    ]
    if problems:
        raise RequestValidationError(problems)


# --- HEAD ------------------------------------------------------------------------------------


class HeadAsGet:
    """ASGI middleware: a HEAD request is answered as the GET of the same URL, without the body.

    FastAPI routes take only the methods they declare, so without this every HEAD was a 405.
    The status and headers (Content-Length included) are the GET's; the inner app sees a GET,
    the layers outside this one (the request log) still see the HEAD.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        done = False

        async def send_without_body(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.body":
                if done or message.get("more_body", False):
                    return
                done = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # A copy: the server reads the method from its own scope to know the answer has no body.
        await self.app({**scope, "method": "GET"}, receive, send_without_body)


# --- database access ---------------------------------------------------------------------------


class ReadConnections:
    """Read connections of one role, one per (thread, database), opened on first use."""

    def __init__(self, access: AccessManager, role: str, events: EventLog) -> None:
        self.access = access
        self.role = role
        self.events = events
        self._local = threading.local()

    def read(self, database: str, endpoint: str, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query` in one read transaction (one snapshot) on this thread's connection.

        Raises DatabaseUnavailable for a database that is missing or fails; the failure is
        also recorded as a `query` event with its outcome and SQLite error code.
        """
        conn = self._connection(database)
        started = time.perf_counter_ns()
        try:
            with transaction(conn, immediate=False):
                return query(conn)
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a bug in the query, not the database's state: let it be a 500
        except sqlite3.Error as exc:
            outcome, code = outcome_of(exc)
            fields: dict[str, Any] = {"code": code} if code is not None else {}
            self.events.emit(
                "query",
                db=database,
                endpoint=endpoint,
                dur_us=(time.perf_counter_ns() - started) // 1000,
                outcome=outcome,
                error=str(exc),
                **fields,
            )
            if outcome not in ("busy", "locked"):
                # The file may have been replaced or the connection left unusable: the next
                # request on this thread opens a fresh one.
                self._discard(database)
            raise DatabaseUnavailable(database, _explain(exc, database)) from exc

    def _connections(self) -> dict[str, sqlite3.Connection]:
        conns: dict[str, sqlite3.Connection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def _discard(self, database: str) -> None:
        conn = self._connections().pop(database, None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _connection(self, database: str) -> sqlite3.Connection:
        conns = self._connections()
        conn = conns.get(database)
        if conn is None:
            try:
                conn = self.access.connect(self.role, database)
            except (SplitdbError, sqlite3.Error, OSError) as exc:
                if not isinstance(exc, SplitdbError):
                    outcome, _ = outcome_of(exc)
                    self.events.emit("query", db=database, outcome=outcome, error=str(exc))
                # Not cached: the next request tries again, so the API recovers by itself
                # once the owner has created the file.
                raise DatabaseUnavailable(database, str(exc)) from exc
            conns[database] = conn
        return conn


def _explain(exc: sqlite3.Error, database: str) -> str:
    outcome, _ = outcome_of(exc)
    if outcome in ("busy", "locked"):
        return f"{exc}: another connection holds the lock; try again"
    if "no such table" in str(exc):
        return f"{exc}: the owner of {database!r} has not created its schema yet; try again"
    return str(exc)


def _rows(cursor: sqlite3.Cursor, columns: Sequence[str]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in cursor]


# --- the app -----------------------------------------------------------------------------------


def create_app(
    runtime: Runtime,
    *,
    log_settings: RequestLogSettings | None = None,
    drain_timeout: float = 2.0,
    request_events: bool = False,
) -> FastAPI:
    """The API as an ASGI app reading and logging through `runtime` (its role must own 'logs').

    The app's lifespan starts the request log writer and a heartbeat task (every
    `runtime.heartbeat_s`, the writer's counters go to the status board) and, at shutdown,
    drains the writer within `drain_timeout` seconds. One lifespan per app: the writer cannot
    be restarted. Readiness is the caller's to announce, with `announce_ready(app, url)` once
    the socket listens (`main` does): heartbeats start only after it, so the section's first
    update says 'ready'. Raises SplitdbError if the role does not own 'logs'.
    """
    role = runtime.role
    if runtime.topology.mode(role, "logs") != "rw":
        raise SplitdbError(
            f"role {role!r} does not own database 'logs' in topology "
            f"{runtime.topology.name!r}; the API writes its request log there: grant it 'rw'"
        )
    events = runtime.events
    settings = log_settings or RequestLogSettings()

    def open_logs() -> sqlite3.Connection:
        conn = runtime.access.connect(role, "logs")
        try:
            # The writer's short per-attempt busy timeout applies to creating the schema too,
            # so a contended first connect cannot hold up a stop (legacy layout: one file).
            timeout_ms = round(settings.attempt_timeout * 1000)
            declare_busy_timeout(conn, timeout_ms, reason=BUSY_TIMEOUT_REASON)
            ensure_schema(conn, "logs")
        except BaseException:
            conn.close()
            raise
        return conn

    writer = RequestLogWriter(open_logs, settings=settings, events=events, database="logs")
    readers = ReadConnections(runtime.access, role, events)
    state = _AppState(runtime, writer)

    def publish() -> None:
        try:
            runtime.heartbeat(force=True, request_log=dict(writer.stats()))
        except (OSError, SplitdbError, ValueError, TypeError) as exc:
            events.emit("status_error", outcome="error", error=str(exc))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer.start()
        stop_beating = asyncio.Event()

        async def beat() -> None:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_beating.wait(), runtime.heartbeat_s)
                    return
                if state.announced.is_set():
                    await asyncio.to_thread(publish)

        beating = asyncio.create_task(beat())
        try:
            yield
        finally:
            # Not cancelled: a cancelled task would leave its status update running in its
            # thread, racing the final one below.
            stop_beating.set()
            await beating
            await asyncio.to_thread(writer.stop, drain_timeout)
            if state.announced.is_set():
                await asyncio.to_thread(publish)

    app = FastAPI(
        title="splitdb reference API",
        summary="Ticks, bars and indicators of the splitdb reference system (loopback only).",
        version="1",
        lifespan=lifespan,
        dependencies=[Depends(_reject_unknown_and_repeated)],
        # FastAPI's pages load Swagger UI and Redoc from a CDN: blank without the network.
        # /docs is ours (below), made from the OpenAPI document with nothing to fetch.
        docs_url=None,
        redoc_url=None,
    )
    app.state.splitdb = state
    # Inside the request log (the middleware added last runs first), which logs it as a HEAD.
    app.add_middleware(HeadAsGet)
    app.add_middleware(
        RequestLogMiddleware, writer=writer, events=events, request_events=request_events
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(UnknownSymbol, _unknown_symbol)
    app.add_exception_handler(DatabaseUnavailable, _unavailable)

    def internal_error(request: Request, exc: Exception) -> Response:
        events.emit("internal_error", path=request.url.path, outcome="error", error=repr(exc))
        return JSONResponse(
            {"error": "internal error", "detail": f"{type(exc).__name__}; see the server log"},
            status_code=500,
        )

    app.add_exception_handler(Exception, internal_error)

    docs_page: list[str] = []

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    async def docs() -> HTMLResponse:
        """This API's documentation as one self-contained page."""
        if not docs_page:
            docs_page.append(render_docs(app.openapi(), openapi_url=app.openapi_url or ""))
        return HTMLResponse(docs_page[0])

    def known_in_ticks(symbol: str) -> bool:
        return readers.read(
            "ticks",
            "symbol",
            lambda conn: bool(conn.execute(_HAS_TICKS_SQL, (symbol,)).fetchone()[0]),
        )

    @app.get("/health", response_model=HealthOut, summary="Liveness")
    async def health() -> dict[str, Any]:
        """Answers while the process serves; `degraded` when the request log writer is down."""
        return {
            "status": "ok" if writer.running else "degraded",
            "role": role,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - runtime.started, 3),
            "request_log_running": writer.running,
        }

    @app.get("/status", response_model=StatusOut, summary="Status board and request log")
    def status() -> dict[str, Any]:
        """The whole status board (every process's section) and this server's request log."""
        board: dict[str, Any] | None = None
        board_error: str | None = None
        try:
            board = runtime.status.read()
        except (StatusFileCorrupt, OSError) as exc:
            board_error = str(exc)
        return {
            "role": role,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - runtime.started, 3),
            "request_log": dict(writer.stats()),
            "board": board,
            "board_error": board_error,
        }

    @app.get("/symbols", response_model=SymbolsOut, responses=_ERRORS, summary="Known symbols")
    def symbols() -> dict[str, Any]:
        """Every symbol with at least one tick, in ascending order."""
        found = readers.read(
            "ticks", "symbols", lambda conn: [row[0] for row in conn.execute(SYMBOLS_SQL)]
        )
        return {"symbols": found}

    @app.get(
        "/ticks/{symbol}/latest",
        response_model=TickOut,
        responses=_SYMBOL_ERRORS,
        summary="A symbol's latest tick",
    )
    def latest_tick(symbol: Symbol) -> dict[str, Any]:
        """The tick with the greatest (time_msc, seq)."""
        rows = readers.read(
            "ticks",
            "latest",
            lambda conn: _rows(conn.execute(_LATEST_SQL, (symbol,)), TICK_COLUMNS),
        )
        if not rows:
            raise UnknownSymbol(symbol)
        return rows[0]

    @app.get(
        "/ticks/{symbol}",
        response_model=TicksOut,
        responses=_SYMBOL_ERRORS,
        summary="A symbol's ticks in a time range",
    )
    def ticks(symbol: Symbol, window: Range, limit: Limit = DEFAULT_LIMIT) -> dict[str, Any]:
        """The first `limit` ticks with start <= time_msc <= end, ordered by (time_msc, seq)."""

        def query(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], bool]:
            rows = _rows(
                conn.execute(_TICKS_SQL, (symbol, window.start, window.last, limit + 1)),
                TICK_COLUMNS,
            )
            known = bool(rows) or bool(conn.execute(_HAS_TICKS_SQL, (symbol,)).fetchone()[0])
            return rows, known

        rows, known = readers.read("ticks", "ticks", query)
        if not known:
            raise UnknownSymbol(symbol)
        return _page("ticks", rows, window, limit, symbol=symbol)

    @app.get(
        "/bars/{symbol}",
        response_model=BarsOut,
        responses=_SYMBOL_ERRORS,
        summary="A symbol's OHLC bars",
    )
    def bars(
        symbol: Symbol,
        window: Range,
        timeframe: TimeframeQuery = "1m",
        limit: Limit = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """The first `limit` bars with start <= start_msc <= end, ordered by start_msc."""

        def query(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], bool]:
            rows = _rows(
                conn.execute(_BARS_SQL, (symbol, timeframe, window.start, window.last, limit + 1)),
                BAR_COLUMNS,
            )
            known = bool(rows) or bool(conn.execute(_HAS_ANALYSIS_SQL, (symbol,)).fetchone()[0])
            return rows, known

        rows, known = readers.read("analysis", "bars", query)
        # A symbol the agent has not reached yet is known, just without bars.
        if not known and not known_in_ticks(symbol):
            raise UnknownSymbol(symbol)
        return _page("bars", rows, window, limit, symbol=symbol, timeframe=timeframe)

    @app.get(
        "/indicators/{symbol}",
        response_model=IndicatorsOut,
        responses=_SYMBOL_ERRORS,
        summary="A symbol's indicator values",
    )
    def indicators(
        symbol: Symbol,
        window: Range,
        timeframe: TimeframeQuery = "1m",
        name: NameQuery = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """The first `limit` values with start <= start_msc <= end, ordered by (start_msc, name);
        all indicators unless `name` picks one."""

        def query(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], bool]:
            parameters = (name, symbol, timeframe, window.start, window.last, limit + 1)
            rows = _rows(conn.execute(_INDICATORS_SQL, parameters), INDICATOR_COLUMNS)
            known = bool(rows) or bool(conn.execute(_HAS_ANALYSIS_SQL, (symbol,)).fetchone()[0])
            return rows, known

        rows, known = readers.read("analysis", "indicators", query)
        if not known and not known_in_ticks(symbol):
            raise UnknownSymbol(symbol)
        return _page(
            "indicators", rows, window, limit, symbol=symbol, timeframe=timeframe, name=name
        )

    return app


@dataclass
class _AppState:
    runtime: Runtime
    writer: RequestLogWriter
    announced: threading.Event = field(default_factory=threading.Event)


def _state_of(app: FastAPI) -> _AppState:
    state = getattr(app.state, "splitdb", None)
    if not isinstance(state, _AppState):
        raise SplitdbError("this app was not made by reference.api.create_app")
    return state


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


def request_log_of(app: FastAPI) -> RequestLogWriter:
    """The request log writer of an app made by `create_app`."""
    return _state_of(app).writer


def announce_ready(app: FastAPI, url: str) -> None:
    """Publish `url` on the status board (state 'ready', key 'url') and start the heartbeats.

    Call once the server listens at `url`; blocks for one status-board update.
    """
    state = _state_of(app)
    state.runtime.ready(url=url)
    state.announced.set()


# --- error bodies ------------------------------------------------------------------------------


def _given(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    # Echo enough to recognise the input, not a client's megabyte.
    return text if len(text) <= 100 else text[:97] + "..."


def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems: list[dict[str, Any]] = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        where = str(loc[0]) if loc else "request"
        parameter = str(loc[1]) if len(loc) > 1 else where
        ctx = error.get("ctx") or {}
        allowed = ctx.get("allowed") if isinstance(ctx.get("allowed"), str) else None
        problems.append(
            {
                "parameter": parameter,
                "in": where,
                "problem": str(error.get("msg", "invalid")),
                "allowed": allowed or ALLOWED.get(parameter, "see /docs"),
                "given": _given(error.get("input")),
            }
        )
    return JSONResponse({"error": "invalid request", "problems": problems}, status_code=422)


def _unknown_symbol(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UnknownSymbol)
    return JSONResponse(
        {
            "error": "unknown symbol",
            "symbol": exc.symbol,
            "detail": f"no ticks for symbol {exc.symbol!r}; GET /symbols lists the known ones",
        },
        status_code=404,
    )


# Any method taking GET takes HEAD too (HeadAsGet); listed in this order, then the others.
_METHOD_ORDER = ("GET", "HEAD")


def _allowed_methods(allow: str) -> list[str]:
    methods = {method.strip().upper() for method in allow.split(",") if method.strip()}
    if "GET" in methods:
        methods.add("HEAD")
    first = [method for method in _METHOD_ORDER if method in methods]
    return first + sorted(methods - set(first))


def _http_error(request: Request, exc: Exception) -> Response:
    """The errors the routing raises itself (no such path, method not allowed), as JSON."""
    assert isinstance(exc, HTTPException)
    path = _given(request.url.path)
    headers = dict(exc.headers or {})
    body: dict[str, Any]
    if exc.status_code == 404:
        body = {
            "error": "not found",
            "path": path,
            "detail": "no endpoint at this path; /docs lists them",
        }
    elif exc.status_code == 405:
        allowed = _allowed_methods(headers.pop("Allow", headers.pop("allow", "")))
        headers["Allow"] = ", ".join(allowed)
        body = {
            "error": "method not allowed",
            "method": _given(request.method),
            "path": path,
            "allowed": allowed,
            "detail": f"this endpoint answers {' and '.join(allowed) or 'nothing'} only",
        }
    else:
        try:
            phrase = http.HTTPStatus(exc.status_code).phrase.lower()
        except ValueError:
            phrase = "error"
        body = {"error": phrase, "path": path, "detail": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def _unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DatabaseUnavailable)
    return JSONResponse(
        {"error": "database unavailable", "database": exc.database, "detail": exc.detail},
        status_code=503,
        headers={"Retry-After": "1"},
    )


# --- the process -------------------------------------------------------------------------------


def _loopback_host(value: str) -> str:
    if value == "localhost":
        # Not resolved: a hosts file could map the name elsewhere.
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a loopback address; the API serves this machine only: "
            "use 127.0.0.1 (or another 127.x.y.z), ::1 or localhost"
        )
    return str(address)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a TCP port; give 0..65535 (0 picks a free port)"
        )
    return port


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be an integer >= 1")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 3600:
        raise argparse.ArgumentTypeError(f"{value!r} must be a number of seconds, 0..3600")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m reference.api`."""
    defaults = RequestLogSettings()
    parser = argparse.ArgumentParser(
        prog="python -m reference.api",
        description=(
            "Serve ticks, bars and indicators over HTTP on a loopback address, log every "
            "request to the logs database, publish the URL on the status board (section "
            "'api', key 'url')."
        ),
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--host",
        type=_loopback_host,
        default="127.0.0.1",
        help="loopback address to listen on: 127.x.y.z, ::1 or localhost (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="TCP port; 0 picks a free one (default: 0)"
    )
    parser.add_argument(
        "--log-queue-size",
        type=_positive_int,
        default=defaults.queue_size,
        help="request records that may wait for the writer; more are dropped and counted "
        f"(default: {defaults.queue_size})",
    )
    parser.add_argument(
        "--log-batch-size",
        type=_positive_int,
        default=defaults.batch_size,
        help=f"request records per transaction at most (default: {defaults.batch_size})",
    )
    parser.add_argument(
        "--log-max-delay",
        type=_seconds,
        default=defaults.max_delay,
        help="seconds a request record may wait for its batch to fill "
        f"(default: {defaults.max_delay})",
    )
    parser.add_argument(
        "--log-drain-timeout",
        type=_seconds,
        default=2.0,
        help="seconds the writer may take to commit what is queued at shutdown (default: 2.0)",
    )
    parser.add_argument(
        "--request-events",
        action="store_true",
        help="also write one 'request' event per request (costs a JSON line each)",
    )
    parser.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="uvicorn's log level on stderr (default: info)",
    )
    return parser


class _Server(uvicorn.Server):
    """uvicorn, announcing the bound address once its socket listens."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit or not self.servers:
            return
        port = int(self.servers[0].sockets[0].getsockname()[1])
        self._on_listening(port)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the API server until SIGTERM/SIGINT; 0 after a clean stop, 2 on a setup error."""
    args = build_parser().parse_args(argv)
    try:
        settings = RequestLogSettings(
            queue_size=args.log_queue_size,
            batch_size=args.log_batch_size,
            max_delay=args.log_max_delay,
        )
        # The runtime's signal handlers stay installed: uvicorn replaces them while it serves
        # and, after its graceful shutdown, restores them and re-raises the signal, which then
        # only sets the runtime's stop flag instead of killing the process with the default
        # action (exit status -15 rather than 0).
        runtime = Runtime.from_args(ROLE, args)
        app = create_app(
            runtime,
            log_settings=settings,
            drain_timeout=args.log_drain_timeout,
            request_events=args.request_events,
        )
    except (SplitdbError, ValueError, OSError) as exc:
        print(f"reference.api: {exc}", file=sys.stderr)
        return 2
    writer = request_log_of(app)

    def listening(port: int) -> None:
        announce_ready(app, _url(args.host, port))

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,  # the request log is ours, in the logs database
        lifespan="on",
        # Loopback, no proxy in front: a client must not choose its logged address with
        # X-Forwarded-For.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=1,
    )
    server = _Server(config, listening)
    if not runtime.stopping:
        server.run()
    runtime.finish(request_log=dict(writer.stats()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
