"""Bars and indicators: incremental folding equals folding at once, and equals the recomputation."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.runs.recompute import compare_analysis, ema, sma, wilder_rsi
from reference.agent import run_cycle
from reference.analysis import (
    EMA,
    RESTORE_BARS,
    RSI,
    RSI_AVG_GAIN,
    RSI_AVG_LOSS,
    SMA,
    TIMEFRAMES,
    Bar,
    SymbolState,
    Tick,
    Update,
    analyze,
    fold,
    restore_series,
)
from reference.errors import StateUnavailable
from reference.schema import ensure_schema
from reference.sqlite_store import SqliteAnalysisStore, load_symbol, store
from reference.tickstore import insert_ticks

Tables = tuple[dict[tuple[Any, ...], tuple[Any, ...]], dict[tuple[Any, ...], float]]


def apply(tables: Tables, update: Update) -> None:
    """Upsert an update's rows into in-memory tables, as the agent does in SQL."""
    bars, indicators = tables
    for row in update.bars:
        bars[row[:3]] = row[3:]
    for *key, value in update.indicators:
        indicators[tuple(key)] = value


def fold_in_chunks(symbol: str, ticks: Sequence[Tick], cuts: Sequence[int]) -> Any:
    state = SymbolState(symbol)
    tables: Tables = ({}, {})
    bounds = [0, *sorted(set(cuts)), len(ticks)]
    for lo, hi in itertools.pairwise(bounds):
        state, update = fold(state, ticks[lo:hi])
        apply(tables, update)
    return state, tables


@st.composite
def tick_lists(draw: st.DrawFn, max_size: int = 150) -> list[Tick]:
    """Ticks of one symbol in key order: bursts within a millisecond, gaps past several bars."""
    # Sized first: left to itself, hypothesis draws lists too short to reach 16 bars, where
    # ema14 and the Wilder averages leave their seed phase.
    size = draw(st.integers(0, max_size))
    steps = draw(
        st.lists(
            st.tuples(
                st.one_of(
                    st.sampled_from((0, 1, 999, 30_000, 60_000, 61_000, 300_000, 400_000)),
                    st.integers(0, 400_000),
                ),
                # Few distinct prices, so equal closes (zero change, zero average loss) happen.
                st.integers(100, 130).map(lambda cents: cents / 100),
                st.one_of(st.none(), st.floats(0, 10, allow_nan=False)),
            ),
            min_size=size,
            max_size=size,
        )
    )
    ticks: list[Tick] = []
    time_msc = draw(st.integers(0, 10**13))
    seq = 0
    for dt, bid, volume in steps:
        seq = seq + 1 if dt == 0 and ticks else 0
        time_msc += dt
        ticks.append(Tick(time_msc, seq, bid, volume))
    return ticks


def minute_ticks(closes: Sequence[float]) -> list[Tick]:
    """One tick per minute at the given prices: one 1m bar per close."""
    return [Tick(i * 60_000, 0, c, 1.0) for i, c in enumerate(closes)]


def indicator_series(tables: Tables, timeframe: str, name: str) -> list[float | None]:
    bars, indicators = tables
    starts = sorted(k[2] for k in bars if k[1] == timeframe)
    return [indicators.get(("S", timeframe, start, name)) for start in starts]


# -- folding in chunks -------------------------------------------------------------------------


@given(ticks=tick_lists(max_size=250), data=st.data())
@settings(max_examples=120, deadline=None)
def test_folding_in_any_chunks_gives_the_same_bars_and_indicators(
    ticks: list[Tick], data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(ticks)), max_size=10))
    whole_state, whole_tables = fold_in_chunks("S", ticks, [])
    chunked_state, chunked_tables = fold_in_chunks("S", ticks, cuts)
    assert chunked_tables == whole_tables
    assert chunked_state == whole_state


@given(ticks=tick_lists(max_size=300), data=st.data())
@settings(max_examples=100, deadline=None)
def test_a_series_restored_from_its_stored_rows_continues_exactly(
    ticks: list[Tick], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(ticks)))
    whole_state, whole_tables = fold_in_chunks("S", ticks, [])
    first, tables = fold_in_chunks("S", ticks[:cut], [])
    bars, indicators = tables
    # What the agent reads back after a restart: the newest bars and one bar's indicators.
    series = {}
    for timeframe in TIMEFRAMES:
        stored = sorted((k[2], v) for k, v in bars.items() if k[1] == timeframe)
        recent = [Bar(start, *values) for start, values in stored[-RESTORE_BARS:]]
        complete = len(stored) < RESTORE_BARS
        values = (
            {}
            if complete
            else {
                k[3]: v
                for k, v in indicators.items()
                if k[1] == timeframe and k[2] == recent[-2].start_msc
            }
        )
        series[timeframe] = restore_series(
            timeframe, recent, complete=complete, last_final_indicators=values
        )
    restored = SymbolState("S", first.watermark, first.ticks_seen, series)
    state, update = fold(restored, ticks[cut:])
    apply(tables, update)
    assert tables == whole_tables
    assert state == whole_state


def test_restoring_without_the_state_rows_asks_for_a_replay() -> None:
    _, update = analyze("S", minute_ticks([1.0] * RESTORE_BARS))
    recent = [Bar(*row[2:]) for row in update.bars if row[1] == "1m"]
    with pytest.raises(StateUnavailable, match="rsi14_avg_gain"):
        restore_series("1m", recent, complete=False, last_final_indicators={EMA: 1.0})


def test_ticks_out_of_key_order_are_refused() -> None:
    state, _ = analyze("S", [Tick(1_000, 0, 1.0, 1.0)])
    with pytest.raises(ValueError, match="not after"):
        fold(state, [Tick(1_000, 0, 1.0, 1.0)])


# -- hand-computed examples --------------------------------------------------------------------


def test_bars_are_ohlc_of_bids_per_bucket_with_summed_volume() -> None:
    ticks = [
        Tick(0, 0, 2.0, 1.0),
        Tick(30_000, 0, 3.0, 2.0),
        Tick(59_999, 0, 1.0, None),
        Tick(60_000, 0, 5.0, 0.5),
        Tick(299_999, 0, 4.0, 1.0),
        Tick(300_000, 0, 6.0, 1.0),
        Tick(300_000, 1, 5.5, 0.25),
    ]
    _, update = analyze("S", ticks)
    assert [row for row in update.bars if row[1] == "1m"] == [
        ("S", "1m", 0, 2.0, 3.0, 1.0, 1.0, 3, 3.0),
        ("S", "1m", 60_000, 5.0, 5.0, 5.0, 5.0, 1, 0.5),
        ("S", "1m", 240_000, 4.0, 4.0, 4.0, 4.0, 1, 1.0),
        ("S", "1m", 300_000, 6.0, 6.0, 5.5, 5.5, 2, 1.25),
    ]
    assert [row for row in update.bars if row[1] == "5m"] == [
        ("S", "5m", 0, 2.0, 5.0, 1.0, 4.0, 5, 4.5),
        ("S", "5m", 300_000, 6.0, 6.0, 5.5, 5.5, 2, 1.25),
    ]
    assert update.watermark == (300_000, 1)
    assert update.ticks_seen == 7


CLOSES_SMA_EMA = [*map(float, range(1, 15)), 22.5]
# Seven gains of 1 and seven losses of 1, then a gain of 2.
CLOSES_RSI = [10.0 + (i % 2) for i in range(15)] + [12.0]


def test_sma_and_ema_match_hand_computed_values() -> None:
    _, update = analyze("S", minute_ticks(CLOSES_SMA_EMA))
    tables: Tables = ({}, {})
    apply(tables, update)
    assert indicator_series(tables, "1m", SMA) == [None] * 13 + [
        pytest.approx(7.5),
        pytest.approx((sum(range(2, 15)) + 22.5) / 14),
    ]
    # Seeded with the SMA of the first 14 closes, then 2/15 * 22.5 + 13/15 * 7.5 = 3 + 6.5.
    assert indicator_series(tables, "1m", EMA) == [None] * 13 + [
        pytest.approx(7.5),
        pytest.approx(9.5),
    ]
    assert sma(CLOSES_SMA_EMA)[-2:] == [pytest.approx(7.5), pytest.approx(126.5 / 14)]
    assert ema(CLOSES_SMA_EMA)[-2:] == [pytest.approx(7.5), pytest.approx(9.5)]


def test_wilder_rsi_matches_hand_computed_values() -> None:
    _, update = analyze("S", minute_ticks(CLOSES_RSI))
    tables: Tables = ({}, {})
    apply(tables, update)
    # Bar 14: averages 7/14 each, RSI 50. Bar 15: gain 2 -> (0.5*13 + 2)/14 = 8.5/14 and
    # 6.5/14, RSI = 100 - 100 / (1 + 8.5/6.5) = 100 * 8.5/15.
    assert indicator_series(tables, "1m", RSI) == [None] * 14 + [
        pytest.approx(50.0),
        pytest.approx(850 / 15),
    ]
    assert indicator_series(tables, "1m", RSI_AVG_GAIN)[-2:] == [
        pytest.approx(0.5),
        pytest.approx(8.5 / 14),
    ]
    assert indicator_series(tables, "1m", RSI_AVG_LOSS)[-2:] == [
        pytest.approx(0.5),
        pytest.approx(6.5 / 14),
    ]
    rsi, _, _ = wilder_rsi(CLOSES_RSI)
    assert rsi[-2:] == [pytest.approx(50.0), pytest.approx(850 / 15)]


def test_rsi_is_100_when_there_are_no_losses() -> None:
    closes = [1.0] * 8 + [2.0] * 9
    _, update = analyze("S", minute_ticks(closes))
    tables: Tables = ({}, {})
    apply(tables, update)
    assert indicator_series(tables, "1m", RSI)[14:] == [100.0, 100.0, 100.0]
    assert wilder_rsi(closes)[0][14:] == [100.0, 100.0, 100.0]


def test_the_partial_bar_indicators_follow_its_close() -> None:
    state, update = analyze("S", minute_ticks(CLOSES_SMA_EMA[:14]))
    assert ("S", "1m", 13 * 60_000, SMA, 7.5) in update.indicators
    _, update = fold(state, [Tick(13 * 60_000 + 1, 0, 28.0, 1.0)])
    assert ("S", "1m", 13 * 60_000, SMA, 7.5 + 14 / 14) in update.indicators


# -- equal to the independent recomputation ----------------------------------------------------


def _memory_db(database: str) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    ensure_schema(conn, database)
    return conn


def _rows(symbol: str, ticks: Sequence[Tick]) -> Iterator[tuple[Any, ...]]:
    for t in ticks:
        yield (symbol, t.time_msc, t.seq, t.time_msc // 1000, t.bid, t.bid + 0.01, 0.0, 1, 6,
               t.volume_real)  # fmt: skip


@given(
    per_symbol=st.lists(tick_lists(max_size=250), min_size=1, max_size=3),
    limits=st.lists(st.integers(1, 60), min_size=1, max_size=8),
    forget=st.lists(st.booleans(), min_size=1, max_size=8),
)
@settings(max_examples=40, deadline=None)
def test_agent_cycles_equal_the_independent_recomputation(
    per_symbol: list[list[Tick]], limits: list[int], forget: list[bool]
) -> None:
    ticks_conn = _memory_db("ticks")
    analysis_conn = _memory_db("analysis")
    symbols = [f"SYM{i}" for i in range(len(per_symbol))]
    for symbol, ticks in zip(symbols, per_symbol, strict=True):
        insert_ticks(ticks_conn, list(_rows(symbol, ticks)))
    states: dict[str, SymbolState] = {}
    analysis_store = SqliteAnalysisStore.over(ticks_conn, analysis_conn)
    for cycle in range(10_000):
        # Dropping the cache is what a restart does: the next cycle reloads from the database.
        if forget[cycle % len(forget)]:
            states.clear()
        result = run_cycle(analysis_store, states, max_ticks=limits[cycle % len(limits)])
        comparison = compare_analysis(ticks_conn, analysis_conn)
        assert comparison.ok, comparison.summary()
        if result.ticks == 0:
            break
    assert comparison.ticks_covered == sum(map(len, per_symbol))
    for symbol, ticks in zip(symbols, per_symbol, strict=True):
        if ticks:
            assert load_symbol(analysis_conn, symbol) == analyze(symbol, ticks)[0]


# -- the checker finds what is wrong -----------------------------------------------------------


@pytest.fixture
def analysed() -> tuple[sqlite3.Connection, sqlite3.Connection]:
    ticks_conn = _memory_db("ticks")
    analysis_conn = _memory_db("analysis")
    ticks = [Tick(i * 20_000, 0, 1.0 + (i * 7 % 11) / 100, 1.0) for i in range(100)]
    insert_ticks(ticks_conn, list(_rows("S", ticks)))
    _, update = analyze("S", ticks)
    analysis_conn.execute("BEGIN")
    store(analysis_conn, [update], now_ns=0)
    analysis_conn.execute("COMMIT")
    assert compare_analysis(ticks_conn, analysis_conn).ok
    return ticks_conn, analysis_conn


def test_compare_reports_a_double_counted_tick(
    analysed: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    ticks_conn, analysis_conn = analysed
    analysis_conn.execute(
        "UPDATE bars SET tick_count = tick_count + 1 WHERE timeframe = '1m' AND start_msc = 0"
    )
    analysis_conn.execute("UPDATE watermarks SET ticks_seen = ticks_seen + 1")
    result = compare_analysis(ticks_conn, analysis_conn)
    assert result.count("differing_bars") == 1
    assert result.count("bad_watermarks") == 1
    assert "tick_count" in result.summary()


def test_compare_reports_missing_extra_and_differing_rows(
    analysed: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    ticks_conn, analysis_conn = analysed
    analysis_conn.execute("DELETE FROM bars WHERE timeframe = '5m' AND start_msc = 0")
    analysis_conn.execute("INSERT INTO bars VALUES ('S', '1m', -60000, 1.0, 1.0, 1.0, 1.0, 1, 1.0)")
    analysis_conn.execute(
        "UPDATE indicators SET value = value * (1 + 1e-6) WHERE name = 'ema14' "
        "AND timeframe = '1m' AND start_msc = (SELECT max(start_msc) FROM bars)"
    )
    analysis_conn.execute("DELETE FROM indicators WHERE name = 'rsi14' AND start_msc = 1200000")
    result = compare_analysis(ticks_conn, analysis_conn)
    assert (
        result.count("missing_bars"),
        result.count("extra_bars"),
        result.count("differing_indicators"),
        result.count("missing_indicators"),
    ) == (1, 1, 1, 1)
    assert not result.ok


def test_compare_counts_only_ticks_up_to_the_watermark(
    analysed: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    ticks_conn, analysis_conn = analysed
    insert_ticks(ticks_conn, list(_rows("S", [Tick(10**9, 0, 2.0, 1.0)])))
    insert_ticks(ticks_conn, list(_rows("NEW", [Tick(0, 0, 2.0, 1.0)])))
    assert compare_analysis(ticks_conn, analysis_conn).ok
    analysis_conn.execute("UPDATE watermarks SET time_msc = 1, seq = 0")
    result = compare_analysis(ticks_conn, analysis_conn)
    assert result.count("bad_watermarks") == 2  # no such tick, and ticks_seen disagrees
    assert result.count("extra_bars") > 0
