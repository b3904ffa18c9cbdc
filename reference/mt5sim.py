"""A stand-in for the `MetaTrader5` package: the same API shape over a seeded, simulated market.

`sys.modules["MetaTrader5"] = reference.mt5sim` lets code written for the real package (Windows
only) run anywhere. The module-level functions delegate to a default `Terminal`, set up with
`configure()`; a `Terminal` can also be used directly as an API object.

What a caller must know:

- Determinism: a symbol's ticks are a pure function of `(seed, symbol, ticks_per_second)` and of
  the millisecond they fall in. Which calls ask for them, in what order or chunks, and which other
  symbols or `start_msc` a terminal has, change nothing. Ticks exist only from `start_msc` up to
  the terminal's clock, so a live poller sees a growing stream.
- Dates: like the real API, `datetime` (naive ones are read as UTC) or epoch seconds (int or
  float). Dates have second resolution: sub-second parts are dropped (floored), so
  `copy_ticks_range(s, 10.7, 12.2, f)` returns the ticks with `10 <= time < 12`.
- Errors: functions return None (`initialize` returns False) and `last_error()` tells why:
  RES_E_INTERNAL_FAIL_CONNECT before `initialize()` or after `shutdown()`, RES_E_NOT_FOUND for
  an unknown symbol, RES_E_INVALID_PARAMS for a bad argument.
- Symbols: six upper-case letters are FX-like (5 digits, 3 for JPY pairs, quote ticks only);
  any other name is exchange-like (2 digits, a share of the ticks are deals carrying `last`,
  `volume`, TICK_FLAG_LAST | TICK_FLAG_VOLUME and TICK_FLAG_BUY or TICK_FLAG_SELL). Quote ticks
  carry `last = 0`, `volume = 0`.
- Cost: ticks are generated one second at a time (about 0.1 ms per symbol-second at 400 ticks/s)
  and the last few seconds per symbol are cached (up to 8, fewer past 20,000 ticks), so a range
  over a long past costs in proportion to its length: keep `start_msc` near the history you need.

The market model (why it is random access): the log mid price is anchored at every whole hour
(independent draws around the symbol's base price), filled in with Brownian bridges between hour
anchors (minutes), minute anchors (seconds) and second anchors (ticks). Every anchor depends only
on its own seeded draws, so any second can be generated without generating the ones before it,
and consecutive seconds meet at the same anchor. The quote in force at a second boundary is the
anchor quote of the end of the last second that had ticks; the last quote tick of every second
carries the anchor quote of that second's end, so each tick's flags compare against the true
previous tick. Ticks whose
quote would not change are dropped, which keeps flags honest at the cost of a lower rate than
`ticks_per_second`: about 0.05% fewer ticks at 400/s, 1-2% at 10/s, up to 8% at 1/s for
exchange-like symbols. Hour anchors do not drift: prices wander around the base price.
"""

from __future__ import annotations

import fnmatch
import math
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

__version__ = "5.0.45"
__author__ = "splitdb simulator (API shape of MetaQuotes' MetaTrader5 package)"

COPY_TICKS_ALL = -1
COPY_TICKS_INFO = 1
COPY_TICKS_TRADE = 2

TICK_FLAG_BID = 2
TICK_FLAG_ASK = 4
TICK_FLAG_LAST = 8
TICK_FLAG_VOLUME = 16
TICK_FLAG_BUY = 32
TICK_FLAG_SELL = 64

RES_S_OK = 1
RES_E_FAIL = -1
RES_E_INVALID_PARAMS = -2
RES_E_NO_MEMORY = -3
RES_E_NOT_FOUND = -4
RES_E_INVALID_VERSION = -5
RES_E_AUTH_FAILED = -6
RES_E_UNSUPPORTED = -7
RES_E_AUTO_TRADING_DISABLED = -8
RES_E_INTERNAL_FAIL = -10000
RES_E_INTERNAL_FAIL_SEND = -10001
RES_E_INTERNAL_FAIL_RECEIVE = -10002
RES_E_INTERNAL_FAIL_INIT = -10003
RES_E_INTERNAL_FAIL_CONNECT = -10004
RES_E_INTERNAL_FAIL_TIMEOUT = -10005

TICK_DTYPE: np.dtype[Any] = np.dtype(
    [
        ("time", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("last", "<f8"),
        ("volume", "<u8"),
        ("time_msc", "<i8"),
        ("flags", "<u4"),
        ("volume_real", "<f8"),
    ]
)

DEFAULT_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "US500")
MIN_TICKS_PER_SECOND = 0.01
MAX_TICKS_PER_SECOND = 100_000.0

DateLike = datetime | int | float
_T = TypeVar("_T")

_COPY_FLAGS = (COPY_TICKS_ALL, COPY_TICKS_INFO, COPY_TICKS_TRADE)
_QUOTE_FLAGS = TICK_FLAG_BID | TICK_FLAG_ASK
_DEAL_FLAGS = TICK_FLAG_LAST | TICK_FLAG_VOLUME
# Seed namespaces, so that the draws of a block, an hour, a minute... never share a stream.
_TAG_BLOCK, _TAG_HOUR, _TAG_MINUTES, _TAG_SECONDS = 0, 1, 2, 3
# How far back (seconds) the quote in force is searched for; only reachable at rates so low that a
# day passes without a tick, where the first tick after the gap compares against a day-old quote.
_LOOKBACK_LIMIT_S = 86_400
_BLOCK_CACHE = 8
# At most this many ticks cached per symbol beyond its newest block: at 20,000 ticks/s a symbol
# keeps one second (1.3 MB), not eight, so 50 fast symbols hold 64 MB rather than 512 MB. One
# block is enough for a reader moving forward: the next call starts in the newest second read.
_BLOCK_CACHE_TICKS = 20_000
_ANCHOR_CACHE = 256


class Tick(NamedTuple):
    """The last tick of a symbol, as `symbol_info_tick` returns it."""

    time: int
    bid: float
    ask: float
    last: float
    volume: int
    time_msc: int
    flags: int
    volume_real: float


class SymbolInfo(NamedTuple):
    """The few symbol properties the simulator knows (the real tuple has many more)."""

    name: str
    description: str
    path: str
    digits: int
    point: float
    spread: int


@dataclass(frozen=True)
class SymbolSpec:
    """How the simulator trades one symbol; derived from the name by `symbol_spec`."""

    name: str
    digits: int
    base_price: float
    volatility: float  # standard deviation of the log price over one second
    min_spread: int  # points
    spread_values: int  # the spread takes this many consecutive values from min_spread on
    deal_share: float  # fraction of ticks that are deals (exchange-like symbols)

    @property
    def fx(self) -> bool:
        """True for FX-like symbols (quote ticks only)."""
        return self.deal_share == 0.0


def symbol_spec(name: str) -> SymbolSpec:
    """Return the simulated properties of symbol `name` (a pure function of the name)."""
    crc = zlib.crc32(name.encode("utf-8"))
    frac = (crc % 100_003) / 100_003
    if len(name) == 6 and name.isalpha() and name.isupper():
        if "JPY" in name:
            return SymbolSpec(name, 3, 100.0 + 60.0 * frac, 2e-5, 8, 5, 0.0)
        return SymbolSpec(name, 5, 0.6 + 1.0 * frac, 2e-5, 8, 5, 0.0)
    return SymbolSpec(name, 2, 20.0 * 100.0**frac, 5e-5, 1, 4, 0.3)


class _Market:
    """One symbol's simulated market: seeded, random access, one second ("block") at a time."""

    def __init__(self, seed: int, spec: SymbolSpec, rate: float) -> None:
        self.spec = spec
        self.rate = rate
        self._entropy = (seed, zlib.crc32(spec.name.encode("utf-8")))
        self._scale = 10**spec.digits
        self._log_base = math.log(spec.base_price)
        self._hours: dict[int, float] = {}
        self._minutes: dict[int, npt.NDArray[np.float64]] = {}
        # minute -> (log mid, bid points, ask points) at each of its 60 second boundaries
        self._seconds: dict[
            int,
            tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]],
        ] = {}
        self._counts: dict[int, int] = {}
        self._blocks: OrderedDict[int, npt.NDArray[Any]] = OrderedDict()
        self._cached_ticks = 0

    def _rng(self, tag: int, index: int) -> np.random.Generator:
        seq = np.random.SeedSequence([self._entropy[0], self._entropy[1], tag, index])
        return np.random.Generator(np.random.PCG64(seq))

    @staticmethod
    def _remember(cache: dict[int, Any], key: int, value: Any) -> None:
        if len(cache) >= _ANCHOR_CACHE:
            cache.clear()
        cache[key] = value

    def _hour_anchor(self, hour: int) -> float:
        value = self._hours.get(hour)
        if value is None:
            z = float(self._rng(_TAG_HOUR, hour).standard_normal())
            # Hour anchors scatter around the base price by about two hours' worth of moves.
            value = self._log_base + 120.0 * self.spec.volatility * z
            self._remember(self._hours, hour, value)
        return value

    @staticmethod
    def _bridge(start: float, end: float, steps: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        """Values at 0..n-1 of n steps from `start` towards `end` (reached at n, not returned)."""
        n = len(steps)
        walk = np.concatenate(([0.0], np.cumsum(steps)[:-1]))
        frac = np.arange(n) / n
        values: npt.NDArray[np.float64] = start + frac * (end - start) + (walk - frac * steps.sum())
        values[0] = start  # exactly, so that neighbouring units meet at the same anchor
        return values

    def _minute_anchors(self, hour: int) -> npt.NDArray[np.float64]:
        values = self._minutes.get(hour)
        if values is None:
            steps = self._rng(_TAG_MINUTES, hour).standard_normal(60)
            steps *= self.spec.volatility * math.sqrt(60.0)
            values = self._bridge(self._hour_anchor(hour), self._hour_anchor(hour + 1), steps)
            self._remember(self._minutes, hour, values)
        return values

    def _minute_anchor(self, minute: int) -> float:
        return float(self._minute_anchors(minute // 60)[minute % 60])

    def _second_anchors(
        self, minute: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        found = self._seconds.get(minute)
        if found is None:
            rng = self._rng(_TAG_SECONDS, minute)
            steps = rng.standard_normal(60) * self.spec.volatility
            spread = self.spec.min_spread + rng.integers(0, self.spec.spread_values, 60)
            log_mid = self._bridge(
                self._minute_anchor(minute), self._minute_anchor(minute + 1), steps
            )
            bid = np.rint(np.exp(log_mid) * self._scale - spread / 2).astype(np.int64)
            found = (log_mid, bid, bid + spread)
            self._remember(self._seconds, minute, found)
        return found

    def _log_mid_at(self, second: int) -> float:
        return float(self._second_anchors(second // 60)[0][second % 60])

    def _quote_at(self, second: int) -> tuple[int, int]:
        _, bid, ask = self._second_anchors(second // 60)
        return int(bid[second % 60]), int(ask[second % 60])

    def count(self, second: int) -> int:
        """Number of raw arrivals in `second` (before dropping ticks that change nothing)."""
        if second < 0:
            return 0
        n = self._counts.get(second)
        if n is None:
            n = int(self._rng(_TAG_BLOCK, second).poisson(self.rate))
            self._remember(self._counts, second, n)
        return n

    def _quote_in_force(self, second: int) -> tuple[int, int]:
        """The quote of the last tick before `second`: the end anchor of the last busy second."""
        boundary = second
        while boundary > 0 and second - boundary < _LOOKBACK_LIMIT_S:
            if self.count(boundary - 1) > 0:
                break
            boundary -= 1
        return self._quote_at(boundary)

    def block(self, second: int) -> npt.NDArray[Any]:
        """All ticks of one second, sorted by time_msc (cached; callers must not modify it)."""
        cached = self._blocks.get(second)
        if cached is not None:
            self._blocks.move_to_end(second)
            return cached
        ticks = self._generate(second)
        self._blocks[second] = ticks
        self._cached_ticks += len(ticks)
        while len(self._blocks) > 1 and (
            len(self._blocks) > _BLOCK_CACHE or self._cached_ticks > _BLOCK_CACHE_TICKS
        ):
            self._cached_ticks -= len(self._blocks.popitem(last=False)[1])
        return ticks

    def _generate(self, second: int) -> npt.NDArray[Any]:
        rng = self._rng(_TAG_BLOCK, second)
        n = int(rng.poisson(self.rate))  # first draw: `count` relies on it
        self._remember(self._counts, second, n)
        if n == 0:
            return np.empty(0, dtype=TICK_DTYPE)
        spec = self.spec
        offsets = np.sort(rng.integers(0, 1000, n))
        uniforms = rng.random((4, n))
        normals = rng.standard_normal(n)

        is_deal = uniforms[0] < spec.deal_share
        is_deal[-1] = False  # so that a second always has a quote tick to carry its end anchor
        quote_pos = np.flatnonzero(~is_deal)
        inner = quote_pos[:-1]
        prev_bid, prev_ask = self._quote_in_force(second)
        end_bid, end_ask = self._quote_at(second + 1)

        # Quote ticks before the last: mid from a Brownian bridge between the second's anchors,
        # spread walking over its allowed values without ever repeating, so each quote changes.
        t = (offsets[inner] + 0.5) / 1000.0
        if len(t):
            walk = np.cumsum(np.sqrt(np.diff(t, prepend=0.0)) * normals[inner])
            walk_end = walk[-1] + math.sqrt(1.0 - t[-1]) * normals[-1]
            start, end = self._log_mid_at(second), self._log_mid_at(second + 1)
            log_mid = start + t * (end - start) + spec.volatility * (walk - t * walk_end)
            steps = 1 + (uniforms[2, inner] * (spec.spread_values - 1)).astype(np.int64)
            spread = spec.min_spread + (
                (prev_ask - prev_bid - spec.min_spread + np.cumsum(steps)) % spec.spread_values
            )
            inner_bid = np.rint(np.exp(log_mid) * self._scale - spread / 2).astype(np.int64)
            quote_bid = np.append(inner_bid, end_bid)
            quote_ask = np.append(inner_bid + spread, end_ask)
        else:
            quote_bid = np.array([end_bid], dtype=np.int64)
            quote_ask = np.array([end_ask], dtype=np.int64)
        bid_changed = quote_bid != np.concatenate(([prev_bid], quote_bid[:-1]))
        ask_changed = quote_ask != np.concatenate(([prev_ask], quote_ask[:-1]))

        bid = np.empty(n, dtype=np.int64)
        ask = np.empty(n, dtype=np.int64)
        flags = np.empty(n, dtype=np.uint32)
        bid[quote_pos] = quote_bid
        ask[quote_pos] = quote_ask
        flags[quote_pos] = np.where(bid_changed, TICK_FLAG_BID, 0) | np.where(
            ask_changed, TICK_FLAG_ASK, 0
        )
        keep = is_deal.copy()
        keep[quote_pos] = bid_changed | ask_changed
        last = np.zeros(n, dtype=np.float64)
        volume = np.zeros(n, dtype=np.uint64)
        deal_pos = np.flatnonzero(is_deal)
        if len(deal_pos):
            # A deal leaves the quote as it was: the latest quote tick's, or the one in force.
            latest = np.maximum.accumulate(np.where(is_deal, -1, np.arange(n)))[deal_pos]
            bid[deal_pos] = np.where(latest >= 0, bid[latest], prev_bid)
            ask[deal_pos] = np.where(latest >= 0, ask[latest], prev_ask)
            buy = uniforms[1, deal_pos] < 0.5
            last[deal_pos] = np.where(buy, ask[deal_pos], bid[deal_pos]) / self._scale
            volume[deal_pos] = 1 + (uniforms[3, deal_pos] ** 4 * 99).astype(np.uint64)
            flags[deal_pos] = _DEAL_FLAGS | np.where(buy, TICK_FLAG_BUY, TICK_FLAG_SELL)

        out = np.empty(int(keep.sum()), dtype=TICK_DTYPE)
        out["time"] = second
        out["bid"] = bid[keep] / self._scale
        out["ask"] = ask[keep] / self._scale
        out["last"] = last[keep]
        out["volume"] = volume[keep]
        out["time_msc"] = second * 1000 + offsets[keep]
        out["flags"] = flags[keep]
        out["volume_real"] = volume[keep].astype(np.float64)
        return out


class _CallFailed(Exception):
    """Internal: a call fails with this last_error."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _check_symbols(symbols: object) -> tuple[str, ...]:
    if isinstance(symbols, str) or not isinstance(symbols, Sequence):
        raise ValueError(f"symbols={symbols!r} must be a sequence of names, e.g. ['EURUSD']")
    names = tuple(symbols)
    if not names:
        raise ValueError("symbols=() must name at least one symbol")
    for name in names:
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"symbols: {name!r} is not a symbol name (a non-empty string)")
    if len(set(names)) != len(names):
        raise ValueError(f"symbols={list(names)!r} names a symbol twice")
    return names


def _to_second(value: object, name: str) -> int:
    """Epoch second of a date argument (sub-second parts floored), or _CallFailed."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        seconds = math.floor(aware.timestamp())
    elif isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _CallFailed(
            RES_E_INVALID_PARAMS, f"Invalid params: {name}={value!r} is not a datetime or seconds"
        )
    elif not math.isfinite(float(value)):
        raise _CallFailed(RES_E_INVALID_PARAMS, f"Invalid params: {name}={value!r} is not finite")
    else:
        seconds = math.floor(value)
    if seconds < 0:
        raise _CallFailed(RES_E_INVALID_PARAMS, f"Invalid params: {name}={value!r} is before 1970")
    return int(seconds)


def _filter_flags(ticks: npt.NDArray[Any], flags: int) -> npt.NDArray[Any]:
    if flags == COPY_TICKS_ALL:
        return ticks
    wanted = _QUOTE_FLAGS if flags == COPY_TICKS_INFO else _DEAL_FLAGS
    selected: npt.NDArray[Any] = ticks[(ticks["flags"] & wanted) != 0]
    return selected


class Terminal:
    """A simulated MetaTrader 5 terminal; its methods are the MetaTrader5 module's functions.

    `seed` (int >= 0), `symbols` and `ticks_per_second` (per symbol, Poisson arrivals, between
    MIN_TICKS_PER_SECOND and MAX_TICKS_PER_SECOND) fix the market. `clock()` returns "now" in
    epoch seconds (read to the microsecond); ticks exist from `start_msc` (default: the clock at
    construction) up to now. Bad configuration raises ValueError. Methods are thread-safe.
    """

    COPY_TICKS_ALL = COPY_TICKS_ALL
    COPY_TICKS_INFO = COPY_TICKS_INFO
    COPY_TICKS_TRADE = COPY_TICKS_TRADE

    def __init__(
        self,
        *,
        seed: int,
        symbols: Sequence[str],
        ticks_per_second: float,
        start_msc: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} must be an int >= 0")
        names = _check_symbols(symbols)
        rate = ticks_per_second
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
            raise ValueError(f"ticks_per_second={rate!r} must be a number")
        if not MIN_TICKS_PER_SECOND <= rate <= MAX_TICKS_PER_SECOND:
            raise ValueError(
                f"ticks_per_second={rate!r} must be between {MIN_TICKS_PER_SECOND} and "
                f"{MAX_TICKS_PER_SECOND}"
            )
        if not callable(clock):
            raise ValueError(f"clock={clock!r} must be a callable returning epoch seconds")
        self._clock = clock
        if start_msc is None:
            start_msc = self._now_msc()
        if isinstance(start_msc, bool) or not isinstance(start_msc, int) or start_msc < 0:
            raise ValueError(f"start_msc={start_msc!r} must be an int >= 0 (epoch milliseconds)")
        self._seed = seed
        self._rate = float(rate)
        self._start_msc = start_msc
        self._markets = {name: _Market(seed, symbol_spec(name), float(rate)) for name in names}
        self._initialized = False
        self._error: tuple[int, str] = (RES_S_OK, "Success")
        self._lock = threading.RLock()

    @property
    def seed(self) -> int:
        """The market's seed."""
        return self._seed

    @property
    def symbols(self) -> tuple[str, ...]:
        """The simulated symbols, in configuration order."""
        return tuple(self._markets)

    @property
    def ticks_per_second(self) -> float:
        """Mean tick arrivals per second and symbol."""
        return self._rate

    @property
    def start_msc(self) -> int:
        """Epoch millisecond of the first instant that has ticks."""
        return self._start_msc

    def now_msc(self) -> int:
        """The clock's now in epoch milliseconds (the last millisecond that has ticks)."""
        return self._now_msc()

    def _now_msc(self) -> int:
        return math.floor(round(float(self._clock()) * 1000.0, 3))

    # -- the MetaTrader5 API --------------------------------------------------------------

    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int = 60000,
        portable: bool = False,
    ) -> bool:
        """Connect to the (simulated) terminal; False with last_error set on bad arguments."""
        with self._lock:
            problem = _initialize_problem(path, login, password, server, timeout, portable)
            if problem:
                self._error = (RES_E_INVALID_PARAMS, f"Invalid params: {problem}")
                return False
            self._initialized = True
            self._error = (RES_S_OK, "Success")
            return True

    def shutdown(self) -> None:
        """Disconnect; later calls fail until initialize() is called again."""
        with self._lock:
            self._initialized = False

    def last_error(self) -> tuple[int, str]:
        """(code, description) of the last call."""
        with self._lock:
            return self._error

    def version(self) -> tuple[int, int, str] | None:
        """(terminal version, build, release date), or None when not initialized."""
        return self._call(lambda: (500, 4000, "1 Jan 2024"))

    def symbols_total(self) -> int | None:
        """Number of symbols, or None when not initialized."""
        return self._call(lambda: len(self._markets))

    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        """The symbols, filtered by `group` ("*USD*,!EUR*": comma-separated, ! excludes)."""

        def run() -> tuple[SymbolInfo, ...]:
            return tuple(
                _symbol_info(m.spec) for m in self._markets.values() if _in_group(m.spec, group)
            )

        return self._call(run)

    def symbol_select(self, symbol: str, enable: bool = True, /) -> bool:
        """Select `symbol` in Market Watch: True for a known symbol (all are always shown)."""
        return self._call(lambda: self._market(symbol) is not None) is True

    def symbol_info_tick(self, symbol: str, /) -> Tick | None:
        """The latest tick of `symbol` up to now, or None (NOT_FOUND also when none yet)."""

        def run() -> Tick:
            market = self._market(symbol)
            now = self._now_msc()
            second = now // 1000
            while second * 1000 + 999 >= self._start_msc:
                if market.count(second) > 0:
                    ticks = self._clip(market.block(second), self._start_msc, now)
                    if len(ticks):
                        return _tick(ticks[-1])
                second -= 1
            raise _CallFailed(RES_E_NOT_FOUND, f"Not found: no tick of {symbol} yet")

        return self._call(run)

    def copy_ticks_from(
        self, symbol: str, date_from: DateLike, count: int, flags: int, /
    ) -> npt.NDArray[Any] | None:
        """Up to `count` ticks with time_msc >= date_from (second resolution), up to now."""

        def run() -> npt.NDArray[Any]:
            market = self._market(symbol)
            first = _to_second(date_from, "date_from") * 1000
            if isinstance(count, bool) or not isinstance(count, int | np.integer) or count <= 0:
                raise _CallFailed(
                    RES_E_INVALID_PARAMS, f"Invalid params: count={count!r} must be an int > 0"
                )
            _check_copy_flags(flags)
            lo, hi = max(first, self._start_msc), self._now_msc()
            parts: list[npt.NDArray[Any]] = []
            found = 0
            for second in range(lo // 1000, hi // 1000 + 1):
                part = _filter_flags(self._clip(market.block(second), lo, hi), flags)
                # Only what is asked is copied out: a block can hold far more than `count`.
                part = part[: int(count) - found]
                parts.append(part)
                found += len(part)
                if found >= count:
                    break
            return _join(parts)

        return self._call(run)

    def copy_ticks_range(
        self, symbol: str, date_from: DateLike, date_to: DateLike, flags: int, /
    ) -> npt.NDArray[Any] | None:
        """Ticks with date_from <= time < date_to (second resolution), up to now."""

        def run() -> npt.NDArray[Any]:
            market = self._market(symbol)
            first = _to_second(date_from, "date_from") * 1000
            stop = _to_second(date_to, "date_to") * 1000
            _check_copy_flags(flags)
            lo, hi = max(first, self._start_msc), min(stop - 1, self._now_msc())
            parts = [
                _filter_flags(self._clip(market.block(second), lo, hi), flags)
                for second in range(lo // 1000, hi // 1000 + 1)
            ]
            return _join(parts)

        return self._call(run)

    # -- plumbing --------------------------------------------------------------------------

    def _call(self, run: Callable[[], _T]) -> _T | None:
        with self._lock:
            if not self._initialized:
                self._error = (RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
                return None
            try:
                result = run()
            except _CallFailed as failed:
                self._error = (failed.code, failed.text)
                return None
            self._error = (RES_S_OK, "Success")
            return result

    def _market(self, symbol: object) -> _Market:
        if not isinstance(symbol, str):
            raise _CallFailed(RES_E_INVALID_PARAMS, f"Invalid params: symbol={symbol!r}")
        market = self._markets.get(symbol)
        if market is None:
            raise _CallFailed(RES_E_NOT_FOUND, f"Not found: unknown symbol {symbol!r}")
        return market

    @staticmethod
    def _clip(ticks: npt.NDArray[Any], lo_msc: int, hi_msc: int) -> npt.NDArray[Any]:
        """The ticks with lo_msc <= time_msc <= hi_msc (a view)."""
        times = ticks["time_msc"]
        if len(times) == 0 or (times[0] >= lo_msc and times[-1] <= hi_msc):
            return ticks
        start = int(np.searchsorted(times, lo_msc, side="left"))
        stop = int(np.searchsorted(times, hi_msc, side="right"))
        return ticks[start:stop]


def _initialize_problem(
    path: object, login: object, password: object, server: object, timeout: object, portable: object
) -> str:
    if path is not None and not isinstance(path, str):
        return f"path={path!r} must be a string"
    if login is not None and (isinstance(login, bool) or not isinstance(login, int)):
        return f"login={login!r} must be an int"
    if password is not None and not isinstance(password, str):
        return "password must be a string"
    if server is not None and not isinstance(server, str):
        return f"server={server!r} must be a string"
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        return f"timeout={timeout!r} must be an int > 0 (milliseconds)"
    if not isinstance(portable, bool):
        return f"portable={portable!r} must be a bool"
    return ""


def _check_copy_flags(flags: object) -> None:
    if isinstance(flags, bool) or flags not in _COPY_FLAGS:
        raise _CallFailed(
            RES_E_INVALID_PARAMS,
            f"Invalid params: flags={flags!r} must be COPY_TICKS_ALL, _INFO or _TRADE",
        )


def _join(parts: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    if not parts:
        return np.empty(0, dtype=TICK_DTYPE)
    # Always a fresh array: callers may modify what they get without touching the block cache.
    return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()


def _tick(row: np.void) -> Tick:
    return Tick(
        int(row["time"]),
        float(row["bid"]),
        float(row["ask"]),
        float(row["last"]),
        int(row["volume"]),
        int(row["time_msc"]),
        int(row["flags"]),
        float(row["volume_real"]),
    )


def _symbol_info(spec: SymbolSpec) -> SymbolInfo:
    kind = "Forex" if spec.fx else "Exchange"
    return SymbolInfo(
        name=spec.name,
        description=f"{spec.name} (simulated)",
        path=f"{kind}\\{spec.name}",
        digits=spec.digits,
        point=1.0 / 10**spec.digits,
        spread=spec.min_spread,
    )


def _in_group(spec: SymbolSpec, group: object) -> bool:
    if group is None or group == "":
        return True
    if not isinstance(group, str):
        raise _CallFailed(RES_E_INVALID_PARAMS, f"Invalid params: group={group!r}")
    patterns = [p.strip() for p in group.split(",") if p.strip()]
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    if include and not any(fnmatch.fnmatchcase(spec.name, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(spec.name, p) for p in exclude)


# -- the module-level API: the default terminal ---------------------------------------------

_default: Terminal | None = None
_default_lock = threading.Lock()


def configure(
    *,
    seed: int,
    symbols: Sequence[str],
    ticks_per_second: float,
    start_msc: int | None = None,
    clock: Callable[[], float] = time.time,
) -> Terminal:
    """Replace the default terminal behind the module functions and return it (not initialized).

    Without a call, the default terminal is `Terminal(seed=0, symbols=DEFAULT_SYMBOLS,
    ticks_per_second=10)` started on first use.
    """
    global _default
    terminal = Terminal(
        seed=seed,
        symbols=symbols,
        ticks_per_second=ticks_per_second,
        start_msc=start_msc,
        clock=clock,
    )
    with _default_lock:
        _default = terminal
    return terminal


def default_terminal() -> Terminal:
    """The terminal the module-level functions use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Terminal(seed=0, symbols=DEFAULT_SYMBOLS, ticks_per_second=10.0)
        return _default


def initialize(
    path: str | None = None,
    *,
    login: int | None = None,
    password: str | None = None,
    server: str | None = None,
    timeout: int = 60000,
    portable: bool = False,
) -> bool:
    """Connect to the default terminal; see `Terminal.initialize`."""
    return default_terminal().initialize(
        path, login=login, password=password, server=server, timeout=timeout, portable=portable
    )


def shutdown() -> None:
    """Disconnect from the default terminal."""
    default_terminal().shutdown()


def last_error() -> tuple[int, str]:
    """(code, description) of the default terminal's last call."""
    return default_terminal().last_error()


def version() -> tuple[int, int, str] | None:
    """See `Terminal.version`."""
    return default_terminal().version()


def symbols_total() -> int | None:
    """See `Terminal.symbols_total`."""
    return default_terminal().symbols_total()


def symbols_get(group: str | None = None) -> tuple[SymbolInfo, ...] | None:
    """See `Terminal.symbols_get`."""
    return default_terminal().symbols_get(group)


def symbol_select(symbol: str, enable: bool = True, /) -> bool:
    """See `Terminal.symbol_select`."""
    return default_terminal().symbol_select(symbol, enable)


def symbol_info_tick(symbol: str, /) -> Tick | None:
    """See `Terminal.symbol_info_tick`."""
    return default_terminal().symbol_info_tick(symbol)


def copy_ticks_from(
    symbol: str, date_from: DateLike, count: int, flags: int, /
) -> npt.NDArray[Any] | None:
    """See `Terminal.copy_ticks_from`."""
    return default_terminal().copy_ticks_from(symbol, date_from, count, flags)


def copy_ticks_range(
    symbol: str, date_from: DateLike, date_to: DateLike, flags: int, /
) -> npt.NDArray[Any] | None:
    """See `Terminal.copy_ticks_range`."""
    return default_terminal().copy_ticks_range(symbol, date_from, date_to, flags)
