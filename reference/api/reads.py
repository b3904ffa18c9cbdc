"""What the API's endpoints read, whatever holds the data: `Reads`, one snapshot per call.

The routes (`reference.api.routes`) call only this, so they are one code path on both
backends. On SQLite it is `SqliteReads` (`reference.api.sqlite_reads`: the SQL on the event
loop, a read that would wait for a lock handed to a worker thread); on a server it is
`StoreReads` (`reference.api.store_reads`: a `reference.storage.ApiStore` in worker threads).
"""

from __future__ import annotations

from typing import Any, Protocol

from reference.storage import Page

__all__ = ["Page", "Reads"]


class Reads(Protocol):
    """The endpoints' reads, as `reference.storage.ApiStore` has them, awaited.

    `limit` is how many rows to fetch (the endpoints ask for one more than they answer, to
    know whether a page is truncated). A database that cannot be read now raises
    `DatabaseUnavailable` (a 503).
    """

    async def symbols(self) -> list[str]: ...

    async def latest_tick(self, symbol: str) -> dict[str, Any] | None:
        """The tick with the greatest key, or None for a symbol without ticks."""
        ...

    async def ticks(self, symbol: str, start: int, last: int, limit: int) -> Page:
        """Ticks with start <= time_msc <= last in key order; known = the symbol has ticks."""
        ...

    async def bars(self, symbol: str, timeframe: str, start: int, last: int, limit: int) -> Page:
        """Bars with start <= start_msc <= last in order; known = the symbol has analysis."""
        ...

    async def indicators(
        self, symbol: str, timeframe: str, name: str | None, start: int, last: int, limit: int
    ) -> Page:
        """Values with start <= start_msc <= last ordered by (start_msc, name), all indicators
        unless `name` picks one; known = the symbol has analysis."""
        ...

    async def known_in_ticks(self, symbol: str) -> bool: ...
