"""Bars and indicators from ticks: the analysis agent's arithmetic, with no I/O.

Ticks of one symbol are folded, in key order (time_msc, seq), into OHLC bars per timeframe
('1m', '5m'): bucket start = time_msc // tf * tf, price = bid, volume = sum of volume_real (a
missing volume counts 0). Only buckets with ticks have bars. The last bar of a series is *partial*:
it changes while ticks arrive; every bar before it is *final*, because ticks arrive in key order.

Indicators over the bar closes of each (symbol, timeframe), for bar k (0-based):

- `sma14`: mean of closes k-13..k, from k = 13.
- `ema14`: from k = 13; seeded with sma14 of the first 14 closes, then
  `alpha * close + (1 - alpha) * previous` with alpha = 2 / 15.
- `rsi14` (Wilder), from k = 14: the first average gain/loss is the plain mean of the first 14
  close-to-close gains/losses, then `(previous * 13 + current) / 14`; rsi = 100 when the average
  loss is 0, else `100 - 100 / (1 + avg_gain / avg_loss)`.
- `rsi14_avg_gain`, `rsi14_avg_loss`: Wilder's two averages at bar k, stored beside rsi14.

Why the two averages are stored: ema14 and the Wilder averages are recursions over the whole
history, so no window of recent bars reproduces them exactly, and rsi14 alone does not give back
the averages (only their ratio). With the averages stored, the state after the last final bar is
rebuilt exactly from the newest `RESTORE_BARS` bars and that bar's indicator rows
(`restore_series`), so a restart costs the same however long the history is. The partial bar's
indicators are computed from that state and its current close and are rewritten with it.

Everything here is immutable: folding returns a new state and the rows to upsert, so a caller can
throw both away when its commit fails and keep the state that matches the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from reference.errors import StateUnavailable

TIMEFRAMES: Mapping[str, int] = {"1m": 60_000, "5m": 300_000}
PERIOD = 14
ALPHA = 2 / (PERIOD + 1)

SMA = "sma14"
EMA = "ema14"
RSI = "rsi14"
RSI_AVG_GAIN = "rsi14_avg_gain"
RSI_AVG_LOSS = "rsi14_avg_loss"
INDICATORS: tuple[str, ...] = (SMA, EMA, RSI, RSI_AVG_GAIN, RSI_AVG_LOSS)

# 1 partial + PERIOD + 1 final bars: with fewer than this many bars in a series the whole series
# is replayed; with at least this many, ema14 and the Wilder averages are past their seed phase.
RESTORE_BARS = PERIOD + 2

Key = tuple[int, int]
BarRow = tuple[str, str, int, float, float, float, float, int, float]
IndicatorRow = tuple[str, str, int, str, float]


class Tick(NamedTuple):
    """The fields of a tick that analysis uses, in the order the agent selects them."""

    time_msc: int
    seq: int
    bid: float
    volume_real: float | None


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLC bar of a series; `start_msc` is the bucket start."""

    start_msc: int
    open: float
    high: float
    low: float
    close: float
    tick_count: int
    volume: float


@dataclass(frozen=True, slots=True)
class IndicatorState:
    """What the indicators of a series need to go on after its last final bar."""

    window: tuple[float, ...] = ()  # the last PERIOD closes at most, oldest first
    prev_close: float | None = None
    ema: float | None = None
    avg_gain: float | None = None
    avg_loss: float | None = None
    seed_changes: tuple[float, ...] = ()  # close-to-close changes until the averages exist

    def step(self, close: float) -> tuple[IndicatorState, dict[str, float]]:
        """The state after one more final bar closing at `close`, and that bar's indicators."""
        window = (*self.window, close)[-PERIOD:]
        values: dict[str, float] = {}
        ema = self.ema
        if len(window) == PERIOD:
            sma = sum(window) / PERIOD
            values[SMA] = sma
            ema = sma if ema is None else ALPHA * close + (1 - ALPHA) * ema
            values[EMA] = ema
        avg_gain, avg_loss, seed = self.avg_gain, self.avg_loss, self.seed_changes
        if self.prev_close is not None:
            change = close - self.prev_close
            if avg_gain is None or avg_loss is None:
                seed = (*seed, change)
                if len(seed) == PERIOD:
                    avg_gain = sum(max(c, 0.0) for c in seed) / PERIOD
                    avg_loss = sum(max(-c, 0.0) for c in seed) / PERIOD
                    seed = ()
            else:
                avg_gain = (avg_gain * (PERIOD - 1) + max(change, 0.0)) / PERIOD
                avg_loss = (avg_loss * (PERIOD - 1) + max(-change, 0.0)) / PERIOD
            if avg_gain is not None and avg_loss is not None:
                values[RSI] = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1 + avg_gain / avg_loss)
                values[RSI_AVG_GAIN] = avg_gain
                values[RSI_AVG_LOSS] = avg_loss
        state = IndicatorState(window, close, ema, avg_gain, avg_loss, seed)
        return state, values


@dataclass(frozen=True, slots=True)
class SeriesState:
    """One (symbol, timeframe) series: its partial bar and the indicator state before it."""

    timeframe: str
    partial: Bar | None = None
    indicators: IndicatorState = field(default_factory=IndicatorState)


@dataclass(frozen=True, slots=True)
class SymbolState:
    """Everything analysis knows about one symbol: the watermark and a series per timeframe.

    `watermark` is the key of the last tick folded in (None before the first), `ticks_seen` how
    many ticks were folded in all.
    """

    symbol: str
    watermark: Key | None = None
    ticks_seen: int = 0
    series: Mapping[str, SeriesState] = field(
        default_factory=lambda: {tf: SeriesState(tf) for tf in TIMEFRAMES}
    )


@dataclass(frozen=True, slots=True)
class Update:
    """The rows one fold changed: upsert all of them, with the watermark, in one transaction."""

    symbol: str
    ticks: int
    watermark: Key | None
    ticks_seen: int
    bars: tuple[BarRow, ...] = ()
    indicators: tuple[IndicatorRow, ...] = ()


def fold_series(
    state: SeriesState, ticks: Sequence[Tick]
) -> tuple[SeriesState, list[tuple[Bar, dict[str, float]]]]:
    """Fold ticks (in key order, all past the series' partial bar) into the series.

    Returns the new state and each bar the ticks touched (bars they finalised, then the new
    partial bar), with its indicators.
    """
    tf_ms = TIMEFRAMES[state.timeframe]
    indicators = state.indicators
    changed: list[tuple[Bar, dict[str, float]]] = []
    if not ticks:
        return state, changed
    partial = state.partial
    if partial is None:
        start = None
        open_ = high = low = close = volume = 0.0
        count = 0
    else:
        start, open_, high, low = partial.start_msc, partial.open, partial.high, partial.low
        close, count, volume = partial.close, partial.tick_count, partial.volume
    for tick in ticks:
        bucket = tick.time_msc // tf_ms * tf_ms
        bid = tick.bid
        # Added one tick at a time, in key order, so the sum is the same however the ticks
        # were split into chunks.
        vol = tick.volume_real if tick.volume_real is not None else 0.0
        if bucket == start:
            high = bid if bid > high else high
            low = bid if bid < low else low
            close = bid
            count += 1
            volume += vol
            continue
        if start is not None:
            if bucket < start:
                raise ValueError(
                    f"tick at time_msc={tick.time_msc} belongs before bar {start} of "
                    f"timeframe {state.timeframe}; ticks must be folded in key order"
                )
            final = Bar(start, open_, high, low, close, count, volume)
            indicators, values = indicators.step(close)
            changed.append((final, values))
        start, open_, high, low, close, count, volume = bucket, bid, bid, bid, bid, 1, vol
    assert start is not None  # there was at least one tick
    new_partial = Bar(start, open_, high, low, close, count, volume)
    _, values = indicators.step(close)
    changed.append((new_partial, values))
    return SeriesState(state.timeframe, new_partial, indicators), changed


def fold(state: SymbolState, ticks: Sequence[Tick]) -> tuple[SymbolState, Update]:
    """Fold one symbol's next ticks into every timeframe; returns the new state and its rows.

    The ticks must be in key order and all after `state.watermark` (ValueError otherwise).
    """
    symbol = state.symbol
    previous = state.watermark
    for tick in ticks:
        key = (tick.time_msc, tick.seq)
        if previous is not None and key <= previous:
            raise ValueError(
                f"{symbol}: tick {key} is not after {previous}; ticks must be folded once each, "
                "in key order (time_msc, seq)"
            )
        previous = key
    if not ticks:
        return state, Update(symbol, 0, state.watermark, state.ticks_seen)
    series: dict[str, SeriesState] = {}
    bars: list[BarRow] = []
    rows: list[IndicatorRow] = []
    for timeframe, current in state.series.items():
        series[timeframe], changed = fold_series(current, ticks)
        for bar, values in changed:
            bars.append(bar_row(symbol, timeframe, bar))
            rows.extend(
                (symbol, timeframe, bar.start_msc, name, values[name])
                for name in INDICATORS
                if name in values
            )
    new_state = SymbolState(symbol, previous, state.ticks_seen + len(ticks), series)
    update = Update(symbol, len(ticks), previous, new_state.ticks_seen, tuple(bars), tuple(rows))
    return new_state, update


def bar_row(symbol: str, timeframe: str, bar: Bar) -> BarRow:
    """The bar as a row of the bars table, in `reference.schema.BAR_COLUMNS` order."""
    return (
        symbol,
        timeframe,
        bar.start_msc,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.tick_count,
        bar.volume,
    )


def replay_series(timeframe: str, bars: Iterable[Bar]) -> SeriesState:
    """A series rebuilt from all its bars, oldest first; the last one becomes the partial bar."""
    indicators = IndicatorState()
    partial: Bar | None = None
    for bar in bars:
        if partial is not None:
            indicators, _ = indicators.step(partial.close)
        partial = bar
    return SeriesState(timeframe, partial, indicators)


def restore_series(
    timeframe: str,
    recent: Sequence[Bar],
    *,
    complete: bool,
    last_final_indicators: Mapping[str, float],
) -> SeriesState:
    """A series rebuilt from its newest bars (oldest first) as stored by an earlier fold.

    `complete` says `recent` is the whole series (then it is replayed); otherwise it must hold
    at least `RESTORE_BARS` bars and `last_final_indicators` the indicator rows of the bar before
    the last one (ema14 and the two Wilder averages). Raises StateUnavailable when they are
    missing: the caller should then replay the whole series.
    """
    if complete:
        return replay_series(timeframe, recent)
    if len(recent) < RESTORE_BARS:
        raise StateUnavailable(
            f"{timeframe}: {len(recent)} bars given, restoring needs the newest {RESTORE_BARS} "
            "(or all of them with complete=True)"
        )
    missing = [n for n in (EMA, RSI_AVG_GAIN, RSI_AVG_LOSS) if n not in last_final_indicators]
    if missing:
        raise StateUnavailable(
            f"{timeframe}: bar {recent[-2].start_msc} has no {', '.join(missing)} row; "
            "replay the series from its first bar"
        )
    finals = recent[:-1]
    indicators = IndicatorState(
        window=tuple(bar.close for bar in finals[-PERIOD:]),
        prev_close=finals[-1].close,
        ema=last_final_indicators[EMA],
        avg_gain=last_final_indicators[RSI_AVG_GAIN],
        avg_loss=last_final_indicators[RSI_AVG_LOSS],
    )
    return SeriesState(timeframe, recent[-1], indicators)


def analyze(symbol: str, ticks: Sequence[Tick]) -> tuple[SymbolState, Update]:
    """Fold all of a symbol's ticks at once, from nothing."""
    return fold(SymbolState(symbol), ticks)
