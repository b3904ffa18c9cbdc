"""The endpoints' reads through a storage interface (`reference.storage.ApiStore`), for a
database server: each call runs in a worker thread of anyio's pool, since the store's driver
blocks (psycopg's connections are synchronous), while the event loop goes on serving.

A `StoreFailed` becomes `DatabaseUnavailable` (a 503 with Retry-After) and a `query` event
with the outcome and the backend's code, as a failed read on SQLite does; the store replaces a
broken connection on its next call, so the next request is read again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool

from reference.errors import DatabaseUnavailable, StoreFailed
from reference.events import EventLog
from reference.storage import ApiStore, Page

if TYPE_CHECKING:
    from reference.api.reads import Reads

__all__ = ["StoreReads"]

T = TypeVar("T")


class StoreReads:
    """The endpoints' reads from `store`, in worker threads."""

    def __init__(self, store: ApiStore, events: EventLog) -> None:
        self.store = store
        self.events = events

    async def symbols(self) -> list[str]:
        return await self._read("symbols", self.store.symbols)

    async def latest_tick(self, symbol: str) -> dict[str, Any] | None:
        return await self._read("latest", self.store.latest_tick, symbol)

    async def ticks(self, symbol: str, start: int, last: int, limit: int) -> Page:
        return await self._read("ticks", self.store.ticks, symbol, start, last, limit)

    async def bars(self, symbol: str, timeframe: str, start: int, last: int, limit: int) -> Page:
        return await self._read("bars", self.store.bars, symbol, timeframe, start, last, limit)

    async def indicators(
        self, symbol: str, timeframe: str, name: str | None, start: int, last: int, limit: int
    ) -> Page:
        return await self._read(
            "indicators", self.store.indicators, symbol, timeframe, name, start, last, limit
        )

    async def known_in_ticks(self, symbol: str) -> bool:
        return await self._read("symbol", self.store.known_in_ticks, symbol)

    async def _read(self, endpoint: str, call: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter_ns()
        try:
            return await run_in_threadpool(call, *args)
        except StoreFailed as exc:
            fields: dict[str, Any] = {"code": exc.code} if exc.code is not None else {}
            self.events.emit(
                "query",
                db=exc.database,
                endpoint=endpoint,
                dur_us=(time.perf_counter_ns() - started) // 1000,
                outcome=exc.outcome,
                error=exc.detail,
                **fields,
            )
            raise DatabaseUnavailable(exc.database, exc.detail) from exc


if TYPE_CHECKING:

    def _conforms(reads: StoreReads) -> Reads:
        return reads
