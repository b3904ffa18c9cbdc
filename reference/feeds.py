"""Market-data feeds: where the bot's ticks come from.

Every feed hands out `TickBatch`es through the same small `Feed` interface (`symbols`, `poll()`,
`seek()`, `close()`):

- `MT5Feed` drives any object with the MetaTrader5 function names: the real `MetaTrader5`
  package (`open_mt5_feed`, Windows only), `reference.mt5sim`, or an `mt5sim.Terminal`.
- `SyntheticFeed` is an `MT5Feed` over its own simulated terminal (seeded random walk).
- `ReplayFeed` serves a tick file written by `record_ticks`.

A tick's key is `(symbol, time_msc, seq)`, where `seq` is the tick's ordinal among the ticks of
the same symbol in the same millisecond. It is derived from the data alone, so it is stable across
restarts: a consumer that stores the last key it committed resumes exactly after it with `seek()`.

Replay file format (version 1): a NumPy `.npz` archive (a zip of `.npy` members, readable with
`np.load(path)`) holding `__splitdb_ticks__`, a 0-d int array with the format version, and one
member per symbol, named after the symbol, holding a 1-D `TICK_DTYPE` array sorted by `time_msc`.
"""

from __future__ import annotations

import importlib
import math
import os
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from reference import mt5sim
from reference.errors import FeedApiError, FeedError

__all__ = [
    "REPLAY_FORMAT_VERSION",
    "TICK_DTYPE",
    "Feed",
    "FeedApiError",
    "MT5Api",
    "MT5Feed",
    "ReplayFeed",
    "SyntheticFeed",
    "TickBatch",
    "open_mt5_feed",
    "record_ticks",
    "sequence_numbers",
]

# One definition of the real package's tick layout: the simulator's.
TICK_DTYPE: np.dtype[Any] = mt5sim.TICK_DTYPE
REPLAY_FORMAT_VERSION = 1
_FORMAT_KEY = "__splitdb_ticks__"
_COPY_TICKS_ALL = -1  # MetaTrader5.COPY_TICKS_ALL


@dataclass(frozen=True, eq=False)
class TickBatch:
    """New ticks of one symbol, oldest first, with their per-millisecond sequence numbers.

    `ticks` has exactly `TICK_DTYPE`; `seq[i]` (uint32) is the ordinal of `ticks[i]` among the
    ticks of `symbol` with the same `time_msc` (0 for the first). Keys `(time_msc, seq)` strictly
    increase. Arrays are shared, not copied: do not modify them.
    """

    symbol: str
    ticks: npt.NDArray[Any]
    seq: npt.NDArray[np.uint32]

    def __post_init__(self) -> None:
        if self.ticks.dtype != TICK_DTYPE or self.ticks.ndim != 1:
            raise FeedError(
                f"TickBatch({self.symbol!r}): ticks must be a 1-D TICK_DTYPE array, "
                f"got dtype {self.ticks.dtype} with {self.ticks.ndim} dimension(s)"
            )
        if self.seq.dtype != np.uint32 or self.seq.shape != self.ticks.shape:
            raise FeedError(
                f"TickBatch({self.symbol!r}): seq must be uint32 with one entry per tick, "
                f"got dtype {self.seq.dtype} and shape {self.seq.shape} for {len(self.ticks)} ticks"
            )

    def __len__(self) -> int:
        return len(self.ticks)

    @property
    def last_key(self) -> tuple[int, int]:
        """(time_msc, seq) of the newest tick: what to pass to `seek()` after committing it."""
        if not len(self.ticks):
            raise FeedError(f"TickBatch({self.symbol!r}) is empty: it has no last key")
        return int(self.ticks["time_msc"][-1]), int(self.seq[-1])


@runtime_checkable
class Feed(Protocol):
    """What the bot needs from a source of ticks."""

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols this feed serves."""
        ...

    def poll(self) -> list[TickBatch]:
        """Ticks newer than each symbol's cursor, one batch per symbol that has some."""
        ...

    def seek(self, symbol: str, time_msc: int, seq: int) -> None:
        """Make the next poll() start right after the key (symbol, time_msc, seq)."""
        ...

    def close(self) -> None:
        """Release the source; poll() fails afterwards."""
        ...


class MT5Api(Protocol):
    """The part of the MetaTrader5 module that `MT5Feed` calls."""

    def initialize(self, *args: Any, **kwargs: Any) -> bool: ...

    def shutdown(self) -> Any: ...

    def last_error(self) -> tuple[int, str]: ...

    def symbol_info_tick(self, symbol: str, /) -> Any: ...

    def copy_ticks_range(
        self, symbol: str, date_from: Any, date_to: Any, flags: int, /
    ) -> npt.NDArray[Any] | None: ...

    def copy_ticks_from(
        self, symbol: str, date_from: Any, count: int, flags: int, /
    ) -> npt.NDArray[Any] | None: ...


def sequence_numbers(time_msc: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
    """Per-millisecond ordinals of ticks sorted by time_msc: [5, 5, 7, 7, 7] -> [0, 1, 0, 1, 2].

    The array must begin at the first tick of its first millisecond (it does when it begins at a
    whole second or at the start of the data), otherwise that millisecond's ordinals are shifted.
    """
    n = len(time_msc)
    if n == 0:
        return np.empty(0, dtype=np.uint32)
    index = np.arange(n)
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(time_msc[1:], time_msc[:-1], out=starts[1:])
    first = np.maximum.accumulate(np.where(starts, index, 0))
    return (index - first).astype(np.uint32)


def _after_cursor(time_msc: npt.NDArray[np.int64], cursor: tuple[int, int]) -> int:
    """Index of the first tick whose key is greater than `cursor` in a whole-millisecond array."""
    cursor_msc, cursor_seq = cursor
    lo = int(np.searchsorted(time_msc, cursor_msc, side="left"))
    hi = int(np.searchsorted(time_msc, cursor_msc, side="right"))
    return lo + min(max(cursor_seq + 1, 0), hi - lo)


def _check_symbols(symbols: object, where: str) -> tuple[str, ...]:
    if isinstance(symbols, str) or not isinstance(symbols, Iterable):
        raise FeedError(f"{where}: symbols={symbols!r} must be a list of names, e.g. ['EURUSD']")
    names = tuple(symbols)
    if not names:
        raise FeedError(f"{where}: symbols is empty; name at least one symbol")
    for name in names:
        if not isinstance(name, str) or not name:
            raise FeedError(f"{where}: symbols: {name!r} is not a symbol name")
    if len(set(names)) != len(names):
        raise FeedError(f"{where}: symbols={list(names)!r} names a symbol twice")
    return names


def _check_key(
    where: str, symbol: str, known: Sequence[str], time_msc: object, seq: object
) -> None:
    if symbol not in known:
        raise FeedError(f"{where}: unknown symbol {symbol!r}; this feed serves {list(known)!r}")
    if isinstance(time_msc, bool) or not isinstance(time_msc, int | np.integer) or time_msc < 0:
        raise FeedError(f"{where}: time_msc={time_msc!r} must be an int >= 0 (epoch ms)")
    if isinstance(seq, bool) or not isinstance(seq, int | np.integer) or seq < -1:
        raise FeedError(
            f"{where}: seq={seq!r} must be an int >= -1 (-1: before that millisecond's first tick)"
        )


class _Cursors:
    """What the feeds share: per-symbol cursors (the key of the last tick handed out), and
    closing on leaving a `with` block."""

    _cursors: dict[str, tuple[int, int]]

    @property
    def symbols(self) -> tuple[str, ...]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cursor(self, symbol: str) -> tuple[int, int]:
        """(time_msc, seq) of the last tick of `symbol` handed out (seq -1: none of that ms)."""
        _check_key("cursor()", symbol, self.symbols, 0, 0)
        return self._cursors[symbol]

    def seek(self, symbol: str, time_msc: int, seq: int) -> None:
        """Make the next poll() return the ticks of `symbol` with key > (time_msc, seq)."""
        _check_key("seek()", symbol, self.symbols, time_msc, seq)
        self._cursors[symbol] = (int(time_msc), int(seq))


class MT5Feed(_Cursors):
    """Ticks from a MetaTrader5-shaped API, polled with copy_ticks_range.

    `api` is the real `MetaTrader5` module, `reference.mt5sim` or an `mt5sim.Terminal`. With
    `initialize=True` the feed calls `api.initialize(path, login=..., password=..., server=...,
    timeout=...)` (only the arguments given), and `close()` calls `api.shutdown()`.

    Cursors: each symbol's cursor is the key of the last tick handed out. `since_msc` starts every
    cursor just before that millisecond; without it, each starts at the newest tick the terminal
    has when the feed opens (so the first poll returns only later ticks). `seek()` moves one.

    `poll()` asks, per symbol, for `copy_ticks_range(symbol, cursor second, now + horizon_s,
    COPY_TICKS_ALL)`: the API has second resolution, so the cursor's whole second is fetched again
    and every tick with key <= cursor is dropped; `seq` is computed over whole milliseconds, so it
    agrees across polls. `now` is `clock()`; `horizon_s` (default a day) covers brokers whose
    server time runs ahead of UTC. A failed call (None) raises `FeedApiError` with the symbol and
    `last_error()`.

    Catching up: without `max_span_s` or `max_ticks`, a poll after a long outage (or a cursor far
    in the past, or a consumer slower than the market) fetches the whole gap at once. With
    `max_span_s`, a poll asks for at most `max_span_s` seconds per symbol from the cursor on; a
    window that holds no tick moves the cursor past it once it lies `horizon_s` behind now
    (before that, later ticks may still arrive there, so the poll asks up to now instead).

    With `max_ticks` (give one of the two), a poll hands out at most `max_ticks` ticks per
    symbol, whatever the rate: it asks `copy_ticks_from(symbol, cursor second, count,
    COPY_TICKS_ALL)`, count being `max_ticks` plus the ticks of the cursor's second already handed
    out (remembered from the last poll; after a `seek()` into a second, counted from a first
    answer and asked again). Memory per
    poll is then bounded by the count, not by how far behind the consumer is, and the cursor
    stays exact: the next poll starts right after the last tick handed out.
    """

    def __init__(
        self,
        api: MT5Api,
        symbols: Iterable[str],
        *,
        since_msc: int | None = None,
        initialize: bool = True,
        path: str | None = None,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
        clock: Callable[[], float] = time.time,
        horizon_s: int = 86_400,
        max_span_s: int | None = None,
        max_ticks: int | None = None,
    ) -> None:
        self._symbols = _check_symbols(symbols, type(self).__name__)
        if max_ticks is not None and (
            isinstance(max_ticks, bool) or not isinstance(max_ticks, int) or max_ticks < 1
        ):
            raise FeedError(
                f"{type(self).__name__}: max_ticks={max_ticks!r} must be an int >= 1 or None"
            )
        if max_ticks is not None and max_span_s is not None:
            raise FeedError(
                f"{type(self).__name__}: max_ticks={max_ticks} with max_span_s={max_span_s}: "
                "give one of them (max_ticks bounds a poll by itself)"
            )
        self._max_ticks = max_ticks
        # Per symbol: (cursor, ticks of the cursor's second up to it), from the last poll.
        self._handed: dict[str, tuple[tuple[int, int], int]] = {}
        if max_span_s is not None and (
            isinstance(max_span_s, bool) or not isinstance(max_span_s, int) or max_span_s < 1
        ):
            raise FeedError(
                f"{type(self).__name__}: max_span_s={max_span_s!r} must be an int >= 1 or None"
            )
        self._max_span_s = max_span_s
        if since_msc is not None and (
            isinstance(since_msc, bool) or not isinstance(since_msc, int) or since_msc < 0
        ):
            raise FeedError(f"{type(self).__name__}: since_msc={since_msc!r} must be an int >= 0")
        if isinstance(horizon_s, bool) or not isinstance(horizon_s, int) or horizon_s < 1:
            raise FeedError(f"{type(self).__name__}: horizon_s={horizon_s!r} must be an int >= 1")
        self._api = api
        self._clock = clock
        self._horizon_s = horizon_s
        self._closed = False
        self._owns_connection = initialize
        if initialize:
            kwargs: dict[str, Any] = {
                key: value
                for key, value in (
                    ("login", login),
                    ("password", password),
                    ("server", server),
                    ("timeout", timeout),
                )
                if value is not None
            }
            args = () if path is None else (path,)
            if not api.initialize(*args, **kwargs):
                code, text = api.last_error()
                raise FeedApiError(None, "initialize()", code, text)
        try:
            self._check_symbols_exist()
            self._cursors: dict[str, tuple[int, int]] = {
                symbol: (since_msc, -1) if since_msc is not None else self._newest_key(symbol)
                for symbol in self._symbols
            }
        except BaseException:
            self.close()
            raise

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols this feed serves, in the order given."""
        return self._symbols

    @property
    def api(self) -> MT5Api:
        """The MetaTrader5-shaped object behind this feed."""
        return self._api

    def poll(self) -> list[TickBatch]:
        """New ticks per symbol up to now; symbols without new ticks are left out."""
        if self._closed:
            raise FeedError(f"{type(self).__name__} is closed: poll() after close()")
        if self._max_ticks is not None:
            counted = (self._poll_counted(symbol, self._max_ticks) for symbol in self._symbols)
            return [batch for batch in counted if batch is not None]
        now = math.floor(self._clock())
        until = now + self._horizon_s
        batches: list[TickBatch] = []
        for symbol in self._symbols:
            cursor = self._cursors[symbol]
            first = max(cursor[0], 0) // 1000
            stop = max(until, first + 1)
            capped = self._max_span_s is not None and first + self._max_span_s < stop
            if capped:
                stop = first + (self._max_span_s or 1)
            ticks = self._fetch(symbol, first, stop)
            start = _after_cursor(ticks["time_msc"], cursor)
            if capped and start == len(ticks):
                if stop + self._horizon_s <= now + 1:
                    # A settled window without a tick: the next poll starts after it.
                    self._cursors[symbol] = (stop * 1000, -1)
                    continue
                stop = max(until, first + 1)
                ticks = self._fetch(symbol, first, stop)
                start = _after_cursor(ticks["time_msc"], cursor)
            if start < len(ticks):
                seq = sequence_numbers(ticks["time_msc"])
                batch = TickBatch(symbol, ticks[start:], seq[start:])
                self._cursors[symbol] = batch.last_key
                batches.append(batch)
        return batches

    def _poll_counted(self, symbol: str, limit: int) -> TickBatch | None:
        """At most `limit` ticks of `symbol` after its cursor, or None when there are none."""
        cursor = self._cursors[symbol]
        first = max(cursor[0], 0) // 1000
        handed = self._handed.get(symbol)
        # The fetch starts at the cursor's whole second (the API has second resolution, and seq
        # needs whole milliseconds): ask for the ticks of that second already handed out too.
        count = limit + (handed[1] if handed is not None and handed[0] == cursor else 0)
        while True:
            ticks = self._fetch_from(symbol, first, count)
            times = ticks["time_msc"]
            start = _after_cursor(times, cursor)
            if len(ticks) < count or len(ticks) - start >= limit:
                break
            # Fewer than `limit` after the cursor, and the terminal may hold more: the cursor
            # was moved (seek) into a second whose ticks up to it we did not count. Now we have.
            count = start + limit
        if start == len(ticks):
            return None
        stop = min(len(ticks), start + limit)
        # seq from the first tick of the batch's first millisecond on: the ticks before it,
        # up to a second's worth at a high rate, cannot change it.
        ms_start = int(np.searchsorted(times, times[start], side="left"))
        seq = sequence_numbers(times[ms_start:stop])[start - ms_start :]
        mine = ticks[start:stop]
        if start > stop - start:
            # Mostly ticks handed out before: a copy, so the batch does not keep them alive.
            mine = mine.copy()
        batch = TickBatch(symbol, mine, seq)
        last_second = int(times[stop - 1]) // 1000 * 1000
        self._handed[symbol] = (
            batch.last_key,
            stop - int(np.searchsorted(times, last_second, side="left")),
        )
        self._cursors[symbol] = batch.last_key
        return batch

    def close(self) -> None:
        """Call api.shutdown() (if this feed initialized it); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_connection:
            self._api.shutdown()

    def _check_symbols_exist(self) -> None:
        select = getattr(self._api, "symbol_select", None)
        if select is None:
            return
        for symbol in self._symbols:
            if not select(symbol, True):
                code, text = self._api.last_error()
                raise FeedApiError(symbol, "symbol_select()", code, text)

    def _newest_key(self, symbol: str) -> tuple[int, int]:
        tick = self._api.symbol_info_tick(symbol)
        if tick is None:
            code, text = self._api.last_error()
            raise FeedApiError(symbol, "symbol_info_tick()", code, text)
        newest = int(tick.time_msc)
        ticks = self._fetch(symbol, newest // 1000, newest // 1000 + 1)
        times = ticks["time_msc"]
        upto = int(np.searchsorted(times, newest, side="right"))
        if upto == 0 or times[upto - 1] != newest:
            return newest, -1
        return newest, int(sequence_numbers(times[:upto])[-1])

    def _fetch(self, symbol: str, first_s: int, stop_s: int) -> npt.NDArray[Any]:
        got = self._api.copy_ticks_range(symbol, first_s, stop_s, _COPY_TICKS_ALL)
        if got is None:
            code, text = self._api.last_error()
            raise FeedApiError(symbol, f"copy_ticks_range({first_s}, {stop_s})", code, text)
        return _as_ticks(got, f"copy_ticks_range for {symbol}")

    def _fetch_from(self, symbol: str, first_s: int, count: int) -> npt.NDArray[Any]:
        got = self._api.copy_ticks_from(symbol, first_s, count, _COPY_TICKS_ALL)
        if got is None:
            code, text = self._api.last_error()
            raise FeedApiError(symbol, f"copy_ticks_from({first_s}, {count})", code, text)
        return _as_ticks(got, f"copy_ticks_from for {symbol}")


def _as_ticks(array: object, where: str) -> npt.NDArray[Any]:
    """`array` as a TICK_DTYPE array sorted by time_msc (the same object when it already is)."""
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.names is None:
        raise FeedError(f"{where}: expected a 1-D numpy structured array, got {type(array)}")
    ticks: npt.NDArray[Any] = array
    if array.dtype != TICK_DTYPE:
        missing = [name for name in TICK_DTYPE.names or () if name not in array.dtype.names]
        if missing:
            raise FeedError(f"{where}: tick array lacks the field(s) {missing}")
        ticks = np.empty(len(array), dtype=TICK_DTYPE)
        for name in TICK_DTYPE.names or ():
            ticks[name] = array[name]
    times = ticks["time_msc"]
    if len(times) > 1 and bool(np.any(times[1:] < times[:-1])):
        ticks = ticks[np.argsort(times, kind="stable")]
    return ticks


class SyntheticFeed(MT5Feed):
    """An `MT5Feed` over its own `mt5sim.Terminal`: a seeded market, all ticks from `start_msc` on.

    The same seed, symbols and rate give the same ticks whatever the polling pattern; `clock`
    (epoch seconds) drives both the market and the feed, so a test can pass a fake one.
    `max_span_s` or `max_ticks` bounds what one poll catches up (see `MT5Feed`): a `start_msc`
    days in the past, or a consumer far behind the market, is then served a slice per poll
    rather than generated in one go.
    """

    def __init__(
        self,
        *,
        seed: int,
        symbols: Sequence[str],
        ticks_per_second: float,
        start_msc: int | None = None,
        clock: Callable[[], float] = time.time,
        max_span_s: int | None = None,
        max_ticks: int | None = None,
    ) -> None:
        names = _check_symbols(symbols, "SyntheticFeed")
        try:
            terminal = mt5sim.Terminal(
                seed=seed,
                symbols=names,
                ticks_per_second=ticks_per_second,
                start_msc=start_msc,
                clock=clock,
            )
        except ValueError as err:
            raise FeedError(f"SyntheticFeed: {err}") from err
        self.terminal = terminal
        # The terminal runs on the feed's own clock: no tick lies ahead of it, so a one-second
        # horizon sees everything and lets an empty catch-up window settle at once.
        super().__init__(
            terminal,
            names,
            since_msc=terminal.start_msc,
            clock=clock,
            horizon_s=1,
            max_span_s=max_span_s,
            max_ticks=max_ticks,
        )


def open_mt5_feed(
    symbols: Iterable[str],
    *,
    since_msc: int | None = None,
    path: str | None = None,
    login: int | None = None,
    password: str | None = None,
    server: str | None = None,
    timeout: int | None = None,
    clock: Callable[[], float] = time.time,
    max_ticks: int | None = None,
) -> MT5Feed:
    """An `MT5Feed` over the real `MetaTrader5` package (Windows only, the `mt5` extra).

    `max_ticks` bounds the ticks one poll hands out per symbol (see `MT5Feed`).

    Raises FeedError saying how to get the package, or to use SyntheticFeed or ReplayFeed, when
    it does not import; FeedApiError when the terminal refuses to initialize.
    """
    try:
        module = importlib.import_module("MetaTrader5")
    except ImportError as err:
        raise FeedError(
            f"cannot import the MetaTrader5 package ({err}). MetaQuotes ships it for Windows "
            "only: on Windows run `pip install 'splitdb[mt5]'`; elsewhere use SyntheticFeed "
            "(simulated market) or ReplayFeed (recorded ticks)"
        ) from err
    return MT5Feed(
        module,
        symbols,
        since_msc=since_msc,
        path=path,
        login=login,
        password=password,
        server=server,
        timeout=timeout,
        clock=clock,
        max_ticks=max_ticks,
    )


class ReplayFeed(_Cursors):
    """Serves a tick file written by `record_ticks` through poll()/seek().

    Without `clock`, the first poll returns every tick (after the cursors); with it, each poll
    returns the ticks up to `clock()` (epoch seconds in the recording's own time), so a paced
    replay passes e.g. `lambda: first_s + (time.monotonic() - t0) * speed` (see `span()`).
    The whole file is read (and checked) when the feed is made: a missing or malformed file
    raises FeedError naming the path and the problem.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] | None = None):
        self._path = Path(path)
        self._ticks = _read_replay(self._path)
        # Contiguous copies: searchsorted on a strided field view would copy it on every poll.
        self._times = {s: np.ascontiguousarray(t["time_msc"]) for s, t in self._ticks.items()}
        self._seqs = {symbol: sequence_numbers(times) for symbol, times in self._times.items()}
        self._cursors: dict[str, tuple[int, int]] = {symbol: (-1, -1) for symbol in self._ticks}
        self._clock = clock
        self._closed = False

    @property
    def path(self) -> Path:
        """The tick file."""
        return self._path

    @property
    def symbols(self) -> tuple[str, ...]:
        """The recorded symbols, in file order."""
        return tuple(self._ticks)

    def span(self) -> tuple[int, int] | None:
        """(first, last) time_msc over all symbols, or None for a file without ticks."""
        firsts = [int(t["time_msc"][0]) for t in self._ticks.values() if len(t)]
        lasts = [int(t["time_msc"][-1]) for t in self._ticks.values() if len(t)]
        return (min(firsts), max(lasts)) if firsts else None

    def poll(self) -> list[TickBatch]:
        """Recorded ticks after each cursor (up to clock() when paced); empty symbols left out."""
        if self._closed:
            raise FeedError(f"ReplayFeed({self._path}) is closed: poll() after close()")
        now_msc = None if self._clock is None else math.floor(round(self._clock() * 1000.0, 3))
        batches: list[TickBatch] = []
        for symbol, ticks in self._ticks.items():
            times = self._times[symbol]
            start = _after_cursor(times, self._cursors[symbol])
            stop = len(ticks) if now_msc is None else int(np.searchsorted(times, now_msc, "right"))
            if start < stop:
                batch = TickBatch(symbol, ticks[start:stop], self._seqs[symbol][start:stop])
                self._cursors[symbol] = batch.last_key
                batches.append(batch)
        return batches

    def close(self) -> None:
        """Stop serving; idempotent."""
        self._closed = True


def _read_replay(path: Path) -> dict[str, npt.NDArray[Any]]:
    def bad(problem: str) -> FeedError:
        return FeedError(f"replay file {path}: {problem}")

    if not path.exists():
        raise bad("no such file")
    if not path.is_file():
        raise bad("not a regular file")
    unreadable = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
    try:
        loaded = np.load(path, allow_pickle=False)
    except unreadable as err:
        raise bad(f"cannot be read as an .npz archive ({type(err).__name__}: {err})") from err
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy file loads as an array
        raise bad("not an .npz archive (record_ticks writes one)")
    with loaded as archive:
        names = list(archive.files)
        if _FORMAT_KEY not in names:
            raise bad(f"no {_FORMAT_KEY} member: not a tick file written by record_ticks")
        try:
            version = archive[_FORMAT_KEY]
            arrays = {name: archive[name] for name in names if name != _FORMAT_KEY}
        except unreadable as err:
            raise bad(f"corrupt member ({type(err).__name__}: {err})") from err
    if version.shape != () or version.dtype.kind not in "iu":
        raise bad(f"{_FORMAT_KEY} is {version!r}, expected a 0-d int array")
    if int(version) != REPLAY_FORMAT_VERSION:
        raise bad(f"format version {int(version)}; this reader knows {REPLAY_FORMAT_VERSION}")
    for symbol, ticks in arrays.items():
        if ticks.dtype != TICK_DTYPE or ticks.ndim != 1:
            raise bad(
                f"member {symbol!r} is a {ticks.ndim}-D array of dtype {ticks.dtype}, "
                "expected a 1-D TICK_DTYPE array"
            )
        times = ticks["time_msc"]
        if len(times) > 1 and bool(np.any(times[1:] < times[:-1])):
            raise bad(f"member {symbol!r} is not sorted by time_msc")
    return arrays


def record_ticks(source: Feed | Iterable[TickBatch], path: str | os.PathLike[str]) -> int:
    """Write ticks to a replay file at `path` (atomically); return the number of ticks written.

    `source` is a `Feed` (polled once: a SyntheticFeed yields everything up to its clock; every
    one of its symbols is recorded, with or without ticks) or batches (a symbol's batches are
    concatenated in order and must be in time order). Symbol names may not start with "__".
    """
    target = Path(path)
    parts: dict[str, list[npt.NDArray[Any]]] = {}
    if isinstance(source, Feed):
        for symbol in source.symbols:
            parts[symbol] = []
        batches: Iterable[TickBatch] = source.poll()
    else:
        batches = source
    for batch in batches:
        if not isinstance(batch, TickBatch):
            raise FeedError(f"record_ticks({target}): expected TickBatch items, got {type(batch)}")
        parts.setdefault(batch.symbol, []).append(batch.ticks)
    arrays: dict[str, npt.NDArray[Any]] = {}
    for symbol, chunks in parts.items():
        if symbol.startswith("__"):
            raise FeedError(f"record_ticks({target}): symbol {symbol!r} uses the reserved '__'")
        ticks = np.concatenate(chunks) if chunks else np.empty(0, dtype=TICK_DTYPE)
        times = ticks["time_msc"]
        if len(times) > 1 and bool(np.any(times[1:] < times[:-1])):
            raise FeedError(f"record_ticks({target}): the batches of {symbol} go back in time")
        arrays[symbol] = ticks
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            # Members written one by one, not np.savez(**arrays): a symbol may be named "file".
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                members = [(_FORMAT_KEY, np.array(REPLAY_FORMAT_VERSION)), *arrays.items()]
                for name, array in members:
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sum(len(a) for a in arrays.values())
