"""Claims about reference.mt5sim: the real MetaTrader5 API's shape over a deterministic market."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import mt5sim
from tests.fixtures.mt5_facts import REAL_TICK_DTYPE

START_S = 1_700_000_000
START_MSC = START_S * 1000
SYMBOLS = ("EURUSD", "USDJPY", "US500")


class FakeClock:
    """A clock that says what the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_terminal(
    *,
    seed: int = 7,
    symbols: tuple[str, ...] = SYMBOLS,
    rate: float = 200.0,
    start_msc: int = START_MSC,
    now: float = START_S + 10.0,
) -> tuple[mt5sim.Terminal, FakeClock]:
    clock = FakeClock(now)
    terminal = mt5sim.Terminal(
        seed=seed, symbols=symbols, ticks_per_second=rate, start_msc=start_msc, clock=clock
    )
    assert terminal.initialize()
    return terminal, clock


def everything(terminal: mt5sim.Terminal, symbol: str) -> npt.NDArray[Any]:
    ticks = terminal.copy_ticks_range(symbol, 0, 4_000_000_000, mt5sim.COPY_TICKS_ALL)
    assert ticks is not None, terminal.last_error()
    return ticks


def test_tick_dtype_is_exactly_the_real_packages() -> None:
    terminal, _ = make_terminal()
    assert mt5sim.TICK_DTYPE == REAL_TICK_DTYPE
    assert everything(terminal, "EURUSD").dtype == REAL_TICK_DTYPE
    assert everything(terminal, "US500").dtype == REAL_TICK_DTYPE
    empty = terminal.copy_ticks_range("EURUSD", START_S + 100, START_S + 200, -1)
    assert empty is not None and len(empty) == 0 and empty.dtype == REAL_TICK_DTYPE


def test_constants_and_error_codes_have_the_real_values() -> None:
    assert (mt5sim.COPY_TICKS_ALL, mt5sim.COPY_TICKS_INFO, mt5sim.COPY_TICKS_TRADE) == (-1, 1, 2)
    flags = (
        mt5sim.TICK_FLAG_BID,
        mt5sim.TICK_FLAG_ASK,
        mt5sim.TICK_FLAG_LAST,
        mt5sim.TICK_FLAG_VOLUME,
        mt5sim.TICK_FLAG_BUY,
        mt5sim.TICK_FLAG_SELL,
    )
    assert flags == (2, 4, 8, 16, 32, 64)
    codes = (
        mt5sim.RES_S_OK,
        mt5sim.RES_E_FAIL,
        mt5sim.RES_E_INVALID_PARAMS,
        mt5sim.RES_E_NO_MEMORY,
        mt5sim.RES_E_NOT_FOUND,
        mt5sim.RES_E_INVALID_VERSION,
        mt5sim.RES_E_AUTH_FAILED,
        mt5sim.RES_E_UNSUPPORTED,
        mt5sim.RES_E_AUTO_TRADING_DISABLED,
        mt5sim.RES_E_INTERNAL_FAIL,
        mt5sim.RES_E_INTERNAL_FAIL_SEND,
        mt5sim.RES_E_INTERNAL_FAIL_RECEIVE,
        mt5sim.RES_E_INTERNAL_FAIL_INIT,
        mt5sim.RES_E_INTERNAL_FAIL_CONNECT,
        mt5sim.RES_E_INTERNAL_FAIL_TIMEOUT,
    )
    assert codes == (
        1,
        -1,
        -2,
        -3,
        -4,
        -5,
        -6,
        -7,
        -8,
        -10000,
        -10001,
        -10002,
        -10003,
        -10004,
        -10005,
    )


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=8), max_size=6),
    order=st.randoms(use_true_random=False),
    symbol=st.sampled_from(SYMBOLS),
)
def test_same_seed_gives_identical_ticks_however_the_range_is_split_into_calls(
    cuts: list[int], order: Any, symbol: str
) -> None:
    whole, _ = make_terminal(now=START_S + 8.0)
    expected = whole.copy_ticks_range(symbol, START_S, START_S + 8, mt5sim.COPY_TICKS_ALL)
    assert expected is not None and len(expected) > 0

    chunked, _ = make_terminal(now=START_S + 8.0)  # fresh caches
    bounds = sorted({0, 8, *cuts})
    spans = list(itertools.pairwise(bounds))
    order.shuffle(spans)  # the order of the calls must not matter either
    got = {
        lo: chunked.copy_ticks_range(symbol, START_S + lo, START_S + hi, mt5sim.COPY_TICKS_ALL)
        for lo, hi in spans
    }
    joined = np.concatenate([got[lo] for lo in sorted(got)])
    assert joined.tobytes() == expected.tobytes()


@settings(max_examples=30, deadline=None)
@given(
    start_offset_ms=st.integers(min_value=0, max_value=4_000),
    later_start=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_ticks_depend_only_on_seed_symbol_and_time_not_on_start_or_other_symbols(
    start_offset_ms: int, later_start: bool, seed: int
) -> None:
    alone, _ = make_terminal(seed=seed, symbols=("EURUSD",))
    other_start = START_MSC + start_offset_ms if later_start else START_MSC - start_offset_ms
    crowd, _ = make_terminal(seed=seed, symbols=("GBPUSD", "EURUSD"), start_msc=other_start)
    a, b = everything(alone, "EURUSD"), everything(crowd, "EURUSD")
    common = max(START_MSC, other_start)
    assert a[a["time_msc"] >= common].tobytes() == b[b["time_msc"] >= common].tobytes()


def test_different_seeds_give_different_ticks() -> None:
    for symbol in SYMBOLS:
        a = everything(make_terminal(seed=1)[0], symbol)
        b = everything(make_terminal(seed=2)[0], symbol)
        assert a.tobytes() != b.tobytes()
        assert not np.array_equal(a["bid"][:100], b["bid"][:100])


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_bid_is_below_ask_and_prices_are_rounded_to_the_symbols_digits(symbol: str) -> None:
    terminal, _ = make_terminal(now=START_S + 60.0)
    ticks = everything(terminal, symbol)
    digits = mt5sim.symbol_spec(symbol).digits
    assert digits == {"EURUSD": 5, "USDJPY": 3, "US500": 2}[symbol]
    assert len(ticks) > 10_000
    assert np.all(ticks["bid"] < ticks["ask"])
    assert np.all(ticks["bid"] > 0)
    for field in ("bid", "ask", "last"):
        assert np.array_equal(np.round(ticks[field], digits), ticks[field]), field


def test_time_is_time_msc_floor_divided_by_1000() -> None:
    terminal, _ = make_terminal()
    for symbol in SYMBOLS:
        ticks = everything(terminal, symbol)
        assert np.array_equal(ticks["time"], ticks["time_msc"] // 1000)


@settings(max_examples=40, deadline=None)
@given(nows_ms=st.lists(st.integers(min_value=-2_000, max_value=9_000), min_size=1, max_size=5))
def test_ticks_exist_only_from_start_up_to_the_clock_sorted_and_growing(nows_ms: list[int]) -> None:
    terminal, clock = make_terminal()
    previous: npt.NDArray[Any] | None = None
    for now_ms in sorted(nows_ms):
        clock.now = (START_MSC + now_ms) / 1000
        ticks = everything(terminal, "US500")
        times = ticks["time_msc"]
        assert np.all(times >= START_MSC)
        assert np.all(times <= START_MSC + now_ms)
        assert np.all(np.diff(times) >= 0)
        if previous is not None:  # a live poller sees the same past, plus new ticks
            assert ticks[: len(previous)].tobytes() == previous.tobytes()
        previous = ticks


def test_several_ticks_share_a_millisecond_at_high_rates() -> None:
    terminal, _ = make_terminal(rate=2_000.0, now=START_S + 2.0)
    times = everything(terminal, "EURUSD")["time_msc"]
    _, counts = np.unique(times, return_counts=True)
    assert counts.max() >= 3


def test_tick_rate_is_close_to_ticks_per_second() -> None:
    terminal, _ = make_terminal(rate=100.0, now=START_S + 120.0)
    for symbol in SYMBOLS:
        n = len(everything(terminal, symbol))
        assert abs(n - 12_000) < 600, (symbol, n)


@pytest.mark.parametrize("rate", [0.5, 20.0])  # 0.5: many seconds without a tick
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_flags_say_exactly_what_changed(symbol: str, rate: float) -> None:
    terminal, _ = make_terminal(rate=rate, now=START_S + 1_200.0)
    ticks = everything(terminal, symbol)
    flags = ticks["flags"].astype(np.int64)
    prev, cur = ticks[:-1], ticks[1:]
    deal = (flags[1:] & mt5sim.TICK_FLAG_LAST) != 0
    bid_flag = (flags[1:] & mt5sim.TICK_FLAG_BID) != 0
    ask_flag = (flags[1:] & mt5sim.TICK_FLAG_ASK) != 0
    # Quote ticks: a flag for each side that moved, and something moved.
    quote = ~deal
    assert np.array_equal(bid_flag[quote], (cur["bid"] != prev["bid"])[quote])
    assert np.array_equal(ask_flag[quote], (cur["ask"] != prev["ask"])[quote])
    assert np.all(bid_flag[quote] | ask_flag[quote])
    # Deals: the quote stays, last is the side dealt on, with a volume.
    assert np.all(cur["bid"][deal] == prev["bid"][deal])
    assert np.all(cur["ask"][deal] == prev["ask"][deal])
    all_flags = ticks["flags"].astype(np.int64)
    is_deal = (all_flags & mt5sim.TICK_FLAG_LAST) != 0
    buy = (all_flags & mt5sim.TICK_FLAG_BUY) != 0
    sell = (all_flags & mt5sim.TICK_FLAG_SELL) != 0
    assert np.array_equal(is_deal, buy | sell) and not np.any(buy & sell)
    assert np.all((all_flags[is_deal] & mt5sim.TICK_FLAG_VOLUME) != 0)
    assert np.all(ticks["last"][buy] == ticks["ask"][buy])
    assert np.all(ticks["last"][sell] == ticks["bid"][sell])
    assert np.all(ticks["volume"][is_deal] >= 1)
    assert np.all(ticks["volume_real"] == ticks["volume"].astype(np.float64))
    assert np.all(ticks["volume"][~is_deal] == 0) and np.all(ticks["last"][~is_deal] == 0.0)
    assert is_deal.any() == (not mt5sim.symbol_spec(symbol).fx)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_prices_are_continuous_across_second_boundaries(symbol: str) -> None:
    terminal, _ = make_terminal(rate=50.0, now=START_S + 600.0)
    ticks = everything(terminal, symbol)
    point = 10.0 ** -mt5sim.symbol_spec(symbol).digits
    jumps = np.abs(np.diff(ticks["bid"])) / point
    crossing = np.diff(ticks["time"]) > 0
    assert crossing.sum() > 500
    # A step into a new second is no bigger than the steps within a second.
    assert jumps[crossing].max() <= max(jumps[~crossing].max(), 20)


def test_calls_before_initialize_fail_with_no_ipc_connection() -> None:
    clock = FakeClock(START_S + 5.0)
    terminal = mt5sim.Terminal(
        seed=1, symbols=SYMBOLS, ticks_per_second=10, start_msc=START_MSC, clock=clock
    )
    calls: list[Callable[[], object]] = [
        lambda: terminal.copy_ticks_range("EURUSD", START_S, START_S + 5, -1),
        lambda: terminal.copy_ticks_from("EURUSD", START_S, 10, -1),
        lambda: terminal.symbol_info_tick("EURUSD"),
        lambda: terminal.symbols_total(),
        lambda: terminal.symbols_get(),
        lambda: terminal.version(),
    ]
    for call in calls:
        assert call() is None
        assert terminal.last_error()[0] == mt5sim.RES_E_INTERNAL_FAIL_CONNECT
    assert terminal.symbol_select("EURUSD") is False


def test_calls_after_shutdown_fail_until_initialize_again() -> None:
    terminal, _ = make_terminal()
    assert terminal.symbol_info_tick("EURUSD") is not None
    terminal.shutdown()
    assert terminal.symbol_info_tick("EURUSD") is None
    assert terminal.last_error()[0] == mt5sim.RES_E_INTERNAL_FAIL_CONNECT
    assert terminal.initialize()
    assert terminal.last_error() == (mt5sim.RES_S_OK, "Success")
    assert terminal.symbol_info_tick("EURUSD") is not None


def test_unknown_symbol_fails_with_not_found() -> None:
    terminal, _ = make_terminal()
    assert terminal.copy_ticks_range("NOPE", START_S, START_S + 5, -1) is None
    assert terminal.last_error()[0] == mt5sim.RES_E_NOT_FOUND
    assert "NOPE" in terminal.last_error()[1]
    assert terminal.copy_ticks_from("NOPE", START_S, 5, -1) is None
    assert terminal.last_error()[0] == mt5sim.RES_E_NOT_FOUND
    assert terminal.symbol_info_tick("NOPE") is None
    assert terminal.last_error()[0] == mt5sim.RES_E_NOT_FOUND
    assert terminal.symbol_select("NOPE") is False
    assert terminal.last_error()[0] == mt5sim.RES_E_NOT_FOUND


@pytest.mark.parametrize(
    "args",
    [
        (42, START_S, START_S + 5, -1),
        ("EURUSD", "yesterday", START_S + 5, -1),
        ("EURUSD", START_S, None, -1),
        ("EURUSD", -5, START_S + 5, -1),
        ("EURUSD", math.nan, START_S + 5, -1),
        ("EURUSD", True, START_S + 5, -1),
        ("EURUSD", START_S, START_S + 5, 3),
        ("EURUSD", START_S, START_S + 5, "all"),
    ],
)
def test_bad_copy_ticks_range_parameters_fail_with_invalid_params(args: tuple[Any, ...]) -> None:
    terminal, _ = make_terminal()
    assert terminal.copy_ticks_range(*args) is None
    assert terminal.last_error()[0] == mt5sim.RES_E_INVALID_PARAMS


@pytest.mark.parametrize("count", [0, -1, 2.5, "10", True])
def test_bad_copy_ticks_from_count_fails_with_invalid_params(count: Any) -> None:
    terminal, _ = make_terminal()
    assert terminal.copy_ticks_from("EURUSD", START_S, count, -1) is None
    assert terminal.last_error()[0] == mt5sim.RES_E_INVALID_PARAMS


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": -1}, {"login": "me"}, {"password": 1234}, {"server": 5}, {"portable": "yes"}],
)
def test_initialize_with_bad_arguments_returns_false_with_invalid_params(
    kwargs: dict[str, Any],
) -> None:
    terminal = mt5sim.Terminal(seed=1, symbols=SYMBOLS, ticks_per_second=10)
    assert terminal.initialize(**kwargs) is False
    assert terminal.last_error()[0] == mt5sim.RES_E_INVALID_PARAMS
    assert terminal.symbols_total() is None  # still not connected


def test_initialize_accepts_the_real_signature() -> None:
    terminal = mt5sim.Terminal(seed=1, symbols=SYMBOLS, ticks_per_second=10)
    assert terminal.initialize(
        "C:\\terminal64.exe", login=123, password="pw", server="Demo", timeout=1000, portable=True
    )
    assert terminal.last_error() == (mt5sim.RES_S_OK, "Success")


def test_copy_ticks_info_and_trade_filter_by_flags() -> None:
    terminal, _ = make_terminal(now=START_S + 20.0)
    for symbol in SYMBOLS:
        every = everything(terminal, symbol)
        info = terminal.copy_ticks_range(symbol, START_S, START_S + 30, mt5sim.COPY_TICKS_INFO)
        trade = terminal.copy_ticks_range(symbol, START_S, START_S + 30, mt5sim.COPY_TICKS_TRADE)
        assert info is not None and trade is not None
        quote_bits = mt5sim.TICK_FLAG_BID | mt5sim.TICK_FLAG_ASK
        deal_bits = mt5sim.TICK_FLAG_LAST | mt5sim.TICK_FLAG_VOLUME
        assert np.all(info["flags"] & quote_bits)
        assert np.all(trade["flags"] & deal_bits)
        assert len(info) + len(trade) == len(every)  # each tick is a quote or a deal
        merged = np.sort(np.concatenate([info, trade]), order=["time_msc"], kind="stable")
        assert np.array_equal(np.sort(merged["time_msc"]), every["time_msc"])
        assert (len(trade) == 0) == mt5sim.symbol_spec(symbol).fx


def test_copy_ticks_from_returns_count_ticks_from_the_date() -> None:
    terminal, _ = make_terminal(now=START_S + 10.0)
    every = everything(terminal, "US500")
    got = terminal.copy_ticks_from("US500", START_S + 3, 250, mt5sim.COPY_TICKS_ALL)
    assert got is not None
    expected = every[every["time_msc"] >= (START_S + 3) * 1000][:250]
    assert len(got) == 250 and got.tobytes() == expected.tobytes()
    deals = terminal.copy_ticks_from("US500", START_S, 40, mt5sim.COPY_TICKS_TRADE)
    assert deals is not None and len(deals) == 40 and np.all(deals["volume"] > 0)
    rest = terminal.copy_ticks_from("US500", START_S + 9, 10**6, mt5sim.COPY_TICKS_ALL)
    assert rest is not None and rest.tobytes() == every[every["time"] >= START_S + 9].tobytes()


def test_copy_ticks_from_a_fast_market_holds_the_count_not_the_second() -> None:
    """At 20,000 ticks a second, 100 ticks asked are 100 ticks of memory, not a second's 20,000
    (the bot polls with a count so that a backlog does not become its memory)."""
    terminal = mt5sim.Terminal(
        seed=1,
        symbols=("EURUSD",),
        ticks_per_second=20_000,
        start_msc=START_S * 1000,
        clock=lambda: START_S + 20.0,
    )
    assert terminal.initialize()
    for second in range(START_S, START_S + 12):
        got = terminal.copy_ticks_from("EURUSD", second, 100, mt5sim.COPY_TICKS_ALL)
        assert got is not None and len(got) == 100 and got.base is None
        assert got.nbytes == 100 * mt5sim.TICK_DTYPE.itemsize
        # The same ticks as a range read of that second: caching one second changes nothing.
        whole = terminal.copy_ticks_range("EURUSD", second, second + 1, mt5sim.COPY_TICKS_ALL)
        assert whole is not None and got.tobytes() == whole[:100].tobytes()


def test_copy_ticks_range_drops_sub_second_parts_of_dates() -> None:
    terminal, _ = make_terminal()
    whole = terminal.copy_ticks_range("EURUSD", START_S + 2, START_S + 5, -1)
    fractional = terminal.copy_ticks_range("EURUSD", START_S + 2.9, START_S + 5.7, -1)
    assert whole is not None and fractional is not None
    assert fractional.tobytes() == whole.tobytes()
    assert whole["time"].min() == START_S + 2 and whole["time"].max() == START_S + 4


def test_datetimes_and_epoch_seconds_select_the_same_ticks() -> None:
    terminal, _ = make_terminal()
    by_seconds = terminal.copy_ticks_range("EURUSD", START_S + 1, START_S + 4, -1)
    aware = terminal.copy_ticks_range(
        "EURUSD",
        datetime.fromtimestamp(START_S + 1, UTC),
        datetime.fromtimestamp(START_S + 4.5, UTC),  # sub-second part dropped
        -1,
    )
    naive_utc = terminal.copy_ticks_range(
        "EURUSD",
        datetime.fromtimestamp(START_S + 1, UTC).replace(tzinfo=None),
        datetime.fromtimestamp(START_S + 4, UTC).replace(tzinfo=None),
        -1,
    )
    assert by_seconds is not None and aware is not None and naive_utc is not None
    assert by_seconds.tobytes() == aware.tobytes() == naive_utc.tobytes()


def test_symbol_info_tick_is_the_latest_tick_up_to_the_clock() -> None:
    terminal, clock = make_terminal()
    for now in (START_S + 3.3335, START_S + 7.0, START_S + 9.999):
        clock.now = now
        for symbol in SYMBOLS:
            tick = terminal.symbol_info_tick(symbol)
            assert tick is not None
            last = everything(terminal, symbol)[-1]
            assert tick == tuple(last.tolist())
            assert list(tick._asdict()) == list(REAL_TICK_DTYPE.names or ())


def test_symbol_info_tick_before_the_first_tick_is_not_found() -> None:
    terminal, _ = make_terminal(now=START_S - 1.0)
    assert terminal.symbol_info_tick("EURUSD") is None
    assert terminal.last_error()[0] == mt5sim.RES_E_NOT_FOUND


def test_symbols_get_and_total_describe_the_configured_symbols() -> None:
    terminal, _ = make_terminal()
    assert terminal.symbols_total() == 3
    infos = terminal.symbols_get()
    assert infos is not None
    assert [i.name for i in infos] == list(SYMBOLS)
    assert [i.digits for i in infos] == [5, 3, 2]
    only_usd = terminal.symbols_get("*USD*,!EUR*")
    assert only_usd is not None and [i.name for i in only_usd] == ["USDJPY"]
    assert terminal.symbols_get(group=7) is None  # type: ignore[arg-type]
    assert terminal.last_error()[0] == mt5sim.RES_E_INVALID_PARAMS


def test_module_functions_delegate_to_the_configured_default_terminal() -> None:
    clock = FakeClock(START_S + 4.0)
    configured = mt5sim.configure(
        seed=11, symbols=["EURUSD"], ticks_per_second=50, start_msc=START_MSC, clock=clock
    )
    assert mt5sim.default_terminal() is configured
    assert mt5sim.copy_ticks_range("EURUSD", START_S, START_S + 4, -1) is None
    assert mt5sim.last_error()[0] == mt5sim.RES_E_INTERNAL_FAIL_CONNECT
    assert mt5sim.initialize()
    ticks = mt5sim.copy_ticks_range("EURUSD", START_S, START_S + 4, mt5sim.COPY_TICKS_ALL)
    twin, _ = make_terminal(seed=11, symbols=("EURUSD",), rate=50, now=START_S + 4.0)
    assert ticks is not None and ticks.tobytes() == everything(twin, "EURUSD").tobytes()
    assert mt5sim.symbols_total() == 1
    assert mt5sim.symbol_info_tick("EURUSD") is not None
    mt5sim.shutdown()
    assert mt5sim.symbol_info_tick("EURUSD") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"seed": 1.5},
        {"symbols": "EURUSD"},
        {"symbols": []},
        {"symbols": ["EURUSD", "EURUSD"]},
        {"symbols": [""]},
        {"ticks_per_second": 0},
        {"ticks_per_second": 10**9},
        {"start_msc": -5},
    ],
)
def test_bad_configuration_is_refused_naming_the_argument(kwargs: dict[str, Any]) -> None:
    config: dict[str, Any] = {"seed": 1, "symbols": ["EURUSD"], "ticks_per_second": 10}
    config.update(kwargs)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        mt5sim.Terminal(**config)


def test_returned_arrays_are_the_callers_to_modify() -> None:
    terminal, _ = make_terminal()
    first = terminal.copy_ticks_range("EURUSD", START_S + 1, START_S + 2, -1)
    assert first is not None
    first["bid"] = 0.0
    again = terminal.copy_ticks_range("EURUSD", START_S + 1, START_S + 2, -1)
    assert again is not None and np.all(again["bid"] > 0)
