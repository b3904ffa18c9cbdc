"""What each role's process needs from its databases, whatever holds them: one interface per
role, so the bot, the agent and the API can run unchanged on SQLite or on PostgreSQL
(`reference/pg_store.py`; design in docs/postgres.md).

Each interface is the smallest that covers what the process does today:

- `TickWriter` (the bot): commit one batch of ticks in one transaction; the restart watermark
  (the last committed tick of each symbol); the monitoring glance at the other databases; and
  on SQLite, a file replaced under it.
- `AnalysisStore` (the agent): the symbols, a symbol's ticks after a cursor, its state as the
  last commit left it, and one transaction of bars, indicators and watermarks; the logs summary.
- `ApiStore` (the API): the read queries its endpoints serve, each in one snapshot, and one
  transaction per batch of request-log rows.

Every failure of the database is a `StoreFailed` carrying the event outcome ('busy', 'full',
'denied', 'error') and the backend's code (a SQLite error code or a PostgreSQL SQLSTATE), so a
process handles it the same way on either backend.

A caution the watermark carries on any backend: the agent's cursor is a key, and "every tick of
a symbol with a key up to the watermark has been read" holds only while a symbol's ticks commit
in key order. The bot writes through one connection, its commits are serial and its batches
ascend per symbol, so it holds; several concurrent writers of one symbol would break it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reference.analysis import (
    RESTORE_BARS,
    TIMEFRAMES,
    Bar,
    Key,
    SeriesState,
    SymbolState,
    Tick,
    Update,
    replay_series,
    restore_series,
)
from reference.errors import StateUnavailable
from reference.requestlog import RequestRecord
from reference.tickstore import Inserted, TickRow

__all__ = [
    "AnalysisStore",
    "ApiStore",
    "LogsSummary",
    "Page",
    "SymbolRows",
    "TickWriter",
    "restore_symbol",
]


@dataclass(frozen=True)
class Page:
    """Rows of one API query (column name -> value), and whether the symbol is known at all
    (it may be known and have no rows in the window); both from one snapshot."""

    rows: list[dict[str, Any]]
    known: bool


@dataclass(frozen=True)
class LogsSummary:
    """The request log at a glance: rows logged (ids count up from 1, rows are never deleted,
    so the newest id is the count) and the newest row's status."""

    requests: int
    last_status: int | None


class TickWriter(Protocol):
    """The bot's storage: the only writer of ticks."""

    def append(self, rows: Sequence[TickRow]) -> Inserted:
        """Commit `rows` (in TICK_COLUMNS order) in one transaction: all of them or none.

        When this returns they are committed, the moment the bot may acknowledge them. Rows
        already stored (a batch re-sent after a commit whose outcome was unclear) are no-ops.
        """
        ...

    def last_keys(self, symbols: Iterable[str]) -> dict[str, Key]:
        """The key (time_msc, seq) of each symbol's last committed tick; symbols without ticks
        are absent. A restarted bot resumes each symbol's feed right after it."""
        ...

    def reopen_replaced(self) -> str | None:
        """Where the ticks database was replaced under this writer (SQLite: another file moved
        to its path), once it is reopened on what is there now; None when it was not (never on
        a server). A batch committed before the replacement went into a file that no longer
        has a name: the caller writes it again and acknowledges it only when this says None
        after the append."""
        ...

    def monitor(self) -> dict[str, object]:
        """The seed's glance at the other databases: `analysis` (watermark rows) and `logs`
        (the newest request id), each a number, None, or 'unavailable: why'."""
        ...

    def close(self) -> None: ...


class AnalysisStore(Protocol):
    """The agent's storage: the only writer of analysis, a reader of ticks and logs.

    Reads of a database that does not exist yet (SQLite: its owner has not created its file)
    raise `DatabaseMissing`; the agent waits for it. Every other failure is a `StoreFailed`.
    """

    def prepare(self) -> None:
        """Make the analysis tables ready to write (SQLite: create them; PostgreSQL: the
        installer made them, nothing to do). Idempotent; a `transient` failure may be retried."""
        ...

    def reopen_replaced(self) -> dict[str, str]:
        """Databases replaced under this store since the last call ({database: where}), each
        reopened on what is there now (SQLite: another file moved to its path; never on a
        server). When 'analysis' is among them, state cached from earlier reads may be ahead of
        it: the caller drops it and calls `prepare` again."""
        ...

    def symbols(self) -> list[str]:
        """The symbols with ticks, in ascending order."""
        ...

    def ticks_after(self, symbol: str, after: Key | None, limit: int) -> list[Tick]:
        """Up to `limit` ticks of `symbol` with key > `after` (from the first if None), in key
        order."""
        ...

    def load_symbol(self, symbol: str) -> SymbolState:
        """`symbol`'s state as the last commit left it (watermark, partial bars, indicators)."""
        ...

    def store(self, updates: Sequence[Update], *, now_ns: int) -> None:
        """Upsert the updates' bars, indicators and watermarks in one transaction: a crash
        leaves the watermarks and the bars in step."""
        ...

    def logs_summary(self) -> LogsSummary | None:
        """The request log at a glance; None when it holds no row."""
        ...

    def close(self) -> None: ...


class ApiStore(Protocol):
    """The API's storage: a reader of ticks and analysis, the only writer of the request log.

    Read methods may be called from several threads at once. `limit` is how many rows to fetch:
    the endpoints ask for one more than they answer, to know whether a page is truncated.
    """

    def symbols(self) -> list[str]: ...

    def latest_tick(self, symbol: str) -> dict[str, Any] | None:
        """The tick with the greatest key, or None for a symbol without ticks."""
        ...

    def ticks(self, symbol: str, start: int, last: int, limit: int) -> Page:
        """Ticks with start <= time_msc <= last, in key order."""
        ...

    def bars(self, symbol: str, timeframe: str, start: int, last: int, limit: int) -> Page:
        """Bars with start <= start_msc <= last, in order; known = the symbol has analysis."""
        ...

    def indicators(
        self, symbol: str, timeframe: str, name: str | None, start: int, last: int, limit: int
    ) -> Page:
        """Indicator values with start <= start_msc <= last, ordered by (start_msc, name); all
        indicators unless `name` picks one; known = the symbol has analysis."""
        ...

    def known_in_ticks(self, symbol: str) -> bool: ...

    def log_requests(self, records: Sequence[RequestRecord]) -> None:
        """Commit `records` to the request log in one transaction (from one writer thread)."""
        ...

    def close(self) -> None: ...


class SymbolRows(Protocol):
    """The analysis rows a symbol's state is restored from (see `restore_symbol`)."""

    def watermark(self, symbol: str) -> tuple[Key, int] | None:
        """The symbol's watermark key and ticks_seen, or None if it has none."""
        ...

    def newest_bars(self, symbol: str, timeframe: str, n: int) -> list[Bar]:
        """The newest `n` bars of a series, oldest first."""
        ...

    def all_bars(self, symbol: str, timeframe: str) -> list[Bar]: ...

    def indicator_values(self, symbol: str, timeframe: str, start_msc: int) -> dict[str, float]:
        """The non-NULL indicator values of one bar."""
        ...


def restore_symbol(rows: SymbolRows, symbol: str) -> SymbolState:
    """The state of `symbol` as the last commit left it, from its newest `RESTORE_BARS` bars
    per timeframe and one bar's indicator values; a whole series is replayed only when those
    rows do not hold its state (for example, written by another version). The same logic as
    the SQLite agent's `load_symbol`, over any backend's rows."""
    found = rows.watermark(symbol)
    if found is None:
        return SymbolState(symbol)
    key, ticks_seen = found
    series: dict[str, SeriesState] = {}
    for timeframe in TIMEFRAMES:
        recent = rows.newest_bars(symbol, timeframe, RESTORE_BARS)
        complete = len(recent) < RESTORE_BARS
        values: dict[str, float] = {}
        if not complete:
            values = rows.indicator_values(symbol, timeframe, recent[-2].start_msc)
        try:
            series[timeframe] = restore_series(
                timeframe, recent, complete=complete, last_final_indicators=values
            )
        except StateUnavailable:
            series[timeframe] = replay_series(timeframe, rows.all_bars(symbol, timeframe))
    return SymbolState(symbol, key, ticks_seen, series)
