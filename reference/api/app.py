"""The API as an ASGI app: `create_app` assembles the storage (`reference.api.backend`), the
routes, the middleware (request log, HEAD as GET), the error handlers and the lifespan (request
log writer, heartbeats)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference.api import errors
from reference.api.backend import open_backend
from reference.api.routes import router
from reference.api.state import AppState, state_of
from reference.errors import DatabaseUnavailable, SplitdbError, UnknownSymbol
from reference.requestlog import RequestLogMiddleware, RequestLogSettings, RequestLogWriter
from reference.runtime import Runtime

__all__ = ["HeadAsGet", "announce_ready", "create_app", "request_log_of"]


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


def create_app(
    runtime: Runtime,
    *,
    log_settings: RequestLogSettings | None = None,
    drain_timeout: float = 2.0,
    request_events: bool = False,
) -> FastAPI:
    """The API as an ASGI app reading and logging through `runtime` (its role must own 'logs'),
    on the topology's backend (SQLite files, or PostgreSQL from `SPLITDB_PG_CONNINFO`).

    The app's lifespan starts the request log writer and a heartbeat task (every
    `runtime.heartbeat_s`, the writer's counters go to the status board) and, at shutdown,
    drains the writer within `drain_timeout` seconds, then closes the store. One lifespan per
    app: the writer cannot be restarted. Readiness is the caller's to announce, with
    `announce_ready(app, url)` once the socket listens (`reference.api.__main__` does):
    heartbeats start only after it, so the section's first update says 'ready'. Raises
    SplitdbError if the role does not own 'logs' or its storage cannot be opened
    (`reference.api.backend.open_backend`).
    """
    role = runtime.role
    if runtime.topology.mode(role, "logs") != "rw":
        raise SplitdbError(
            f"role {role!r} does not own database 'logs' in topology "
            f"{runtime.topology.name!r}; the API writes its request log there: grant it 'rw'"
        )
    backend = open_backend(runtime, log_settings or RequestLogSettings())
    writer = backend.writer
    app = FastAPI(
        title="splitdb reference API",
        summary="Ticks, bars and indicators of the splitdb reference system (loopback only).",
        version="1",
        lifespan=_lifespan,
        # FastAPI's pages load Swagger UI and Redoc from a CDN: blank without the network.
        # /docs is ours (reference.api.routes), made from the OpenAPI document with nothing
        # to fetch.
        docs_url=None,
        redoc_url=None,
    )
    app.state.splitdb = AppState(runtime, writer, backend.reads, drain_timeout, backend.close)
    # Inside the request log (the middleware added last runs first), which logs it as a HEAD.
    app.add_middleware(HeadAsGet)
    app.add_middleware(
        RequestLogMiddleware, writer=writer, events=runtime.events, request_events=request_events
    )
    app.add_exception_handler(RequestValidationError, errors.invalid_request)
    app.add_exception_handler(HTTPException, errors.http_error)
    app.add_exception_handler(UnknownSymbol, errors.unknown_symbol)
    app.add_exception_handler(DatabaseUnavailable, errors.unavailable)
    app.add_exception_handler(Exception, errors.internal_error)
    # The routes go onto the app's own router. FastAPI's include_router wraps an included
    # router so that every request is matched twice (once to choose the router, once the
    # route): profiled at about a tenth of the API's CPU per request (docs/perf/README.md).
    app.router.routes.extend(router.routes)
    return app


def _publish(state: AppState) -> None:
    """The request log's counters to the status board (a forced heartbeat)."""
    try:
        state.runtime.heartbeat(force=True, request_log=dict(state.writer.stats()))
    except (OSError, SplitdbError, ValueError, TypeError) as exc:
        state.runtime.events.emit("status_error", outcome="error", error=str(exc))


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = state_of(app)
    state.writer.start()
    stop_beating = asyncio.Event()

    async def beat() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_beating.wait(), state.runtime.heartbeat_s)
                return
            if state.announced.is_set():
                await asyncio.to_thread(_publish, state)

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        # Not cancelled: a cancelled task would leave its status update running in its
        # thread, racing the final one below.
        stop_beating.set()
        await beating
        await asyncio.to_thread(state.writer.stop, state.drain_timeout)
        await asyncio.to_thread(state.close_store)
        if state.announced.is_set():
            await asyncio.to_thread(_publish, state)


def request_log_of(app: FastAPI) -> RequestLogWriter:
    """The request log writer of an app made by `create_app`."""
    return state_of(app).writer


def announce_ready(app: FastAPI, url: str) -> None:
    """Publish `url` on the status board (state 'ready', key 'url') and start the heartbeats.

    Call once the server listens at `url`; blocks for one status-board update.
    """
    state = state_of(app)
    state.runtime.ready(url=url)
    state.announced.set()
