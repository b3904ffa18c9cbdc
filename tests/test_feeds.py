"""Claims about reference.feeds: keys, cursors, the MT5 code path, replay files."""

from __future__ import annotations

import itertools
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import feeds, mt5sim
from reference.errors import FeedError, SplitdbError
from tests.fixtures.mt5_facts import REAL_TICK_DTYPE

START_S = 1_700_000_000
START_MSC = START_S * 1000
SYMBOLS = ("EURUSD", "US500")


class FakeClock:
    """A clock that says what the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def synthetic(
    *, seed: int = 5, rate: float = 300.0, now: float = START_S, symbols: tuple[str, ...] = SYMBOLS
) -> tuple[feeds.SyntheticFeed, FakeClock]:
    clock = FakeClock(now)
    feed = feeds.SyntheticFeed(
        seed=seed, symbols=symbols, ticks_per_second=rate, start_msc=START_MSC, clock=clock
    )
    return feed, clock


def collect(batches: list[feeds.TickBatch], into: dict[str, list[feeds.TickBatch]]) -> None:
    for batch in batches:
        into.setdefault(batch.symbol, []).append(batch)


def joined(batches: list[feeds.TickBatch]) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint32]]:
    if not batches:
        return np.empty(0, dtype=feeds.TICK_DTYPE), np.empty(0, dtype=np.uint32)
    return np.concatenate([b.ticks for b in batches]), np.concatenate([b.seq for b in batches])


def keys(ticks: npt.NDArray[Any], seq: npt.NDArray[np.uint32]) -> list[tuple[int, int]]:
    return list(zip(ticks["time_msc"].tolist(), seq.tolist(), strict=True))


def test_tick_dtype_is_exactly_the_real_packages() -> None:
    assert feeds.TICK_DTYPE == REAL_TICK_DTYPE
    feed, _ = synthetic(now=START_S + 2.0)
    assert all(b.ticks.dtype == REAL_TICK_DTYPE for b in feed.poll())


def test_sequence_numbers_count_ticks_within_each_millisecond() -> None:
    times = np.array([5, 5, 7, 8, 8, 8, 9], dtype=np.int64)
    assert feeds.sequence_numbers(times).tolist() == [0, 1, 0, 0, 1, 2, 0]
    assert feeds.sequence_numbers(times).dtype == np.uint32
    assert len(feeds.sequence_numbers(np.empty(0, dtype=np.int64))) == 0


@settings(max_examples=50, deadline=None)
@given(
    steps_ms=st.lists(st.integers(min_value=0, max_value=2_500), min_size=1, max_size=12),
    seed=st.integers(min_value=0, max_value=1_000),
)
def test_polls_over_an_advancing_clock_equal_one_poll_over_the_whole_span(
    steps_ms: list[int], seed: int
) -> None:
    # A high rate, so that many milliseconds hold several ticks and polls split them.
    stepped, clock = synthetic(seed=seed, rate=2_000.0)
    pieces: dict[str, list[feeds.TickBatch]] = {}
    for step in steps_ms:
        clock.now = round(clock.now + step / 1000, 3)
        collect(stepped.poll(), pieces)

    once, _ = synthetic(seed=seed, rate=2_000.0, now=clock.now)
    whole: dict[str, list[feeds.TickBatch]] = {}
    collect(once.poll(), whole)
    assert once.poll() == []  # nothing new without time passing
    for symbol in SYMBOLS:
        ticks, seq = joined(pieces.get(symbol, []))
        want_ticks, want_seq = joined(whole.get(symbol, []))
        assert ticks.tobytes() == want_ticks.tobytes()
        assert np.array_equal(seq, want_seq)


@settings(max_examples=30, deadline=None)
@given(steps_ms=st.lists(st.integers(min_value=1, max_value=1_500), min_size=1, max_size=10))
def test_poll_keys_strictly_increase_without_duplicates_or_gaps(steps_ms: list[int]) -> None:
    feed, clock = synthetic(rate=1_500.0)
    pieces: dict[str, list[feeds.TickBatch]] = {}
    for step in steps_ms:
        clock.now = round(clock.now + step / 1000, 3)
        collect(feed.poll(), pieces)
    for symbol in SYMBOLS:
        ticks, seq = joined(pieces.get(symbol, []))
        got = keys(ticks, seq)
        assert all(a < b for a, b in itertools.pairwise(got))  # increasing: no duplicate
        reference = feed.terminal.copy_ticks_range(symbol, 0, 4_000_000_000, -1)
        assert reference is not None
        assert ticks.tobytes() == reference.tobytes()  # no gap: every tick, once
        assert np.array_equal(seq, feeds.sequence_numbers(reference["time_msc"]))


def test_seq_restarts_at_zero_in_each_millisecond_and_counts_up() -> None:
    feed, _ = synthetic(rate=3_000.0, now=START_S + 1.0)
    for batch in feed.poll():
        times = batch.ticks["time_msc"]
        same_ms = times[1:] == times[:-1]
        assert np.all(batch.seq[1:][same_ms] == batch.seq[:-1][same_ms] + 1)
        assert np.all(batch.seq[1:][~same_ms] == 0)
        assert same_ms.any()


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_seek_resumes_exactly_after_the_given_key(data: st.DataObject) -> None:
    full_feed, _ = synthetic(rate=2_000.0, now=START_S + 3.0)
    everything = {b.symbol: b for b in full_feed.poll()}
    symbol = data.draw(st.sampled_from(SYMBOLS))
    batch = everything[symbol]
    i = data.draw(st.integers(min_value=0, max_value=len(batch) - 1))
    time_msc, seq = int(batch.ticks["time_msc"][i]), int(batch.seq[i])

    resumed, _ = synthetic(rate=2_000.0, now=START_S + 3.0)
    resumed.seek(symbol, time_msc, seq)
    assert resumed.cursor(symbol) == (time_msc, seq)
    after = {b.symbol: b for b in resumed.poll()}
    rest = after.get(symbol)
    got_ticks = rest.ticks if rest is not None else batch.ticks[:0]
    got_seq = rest.seq if rest is not None else batch.seq[:0]
    assert got_ticks.tobytes() == batch.ticks[i + 1 :].tobytes()
    assert np.array_equal(got_seq, batch.seq[i + 1 :])


def test_seek_with_seq_minus_one_starts_at_the_first_tick_of_that_millisecond() -> None:
    feed, _ = synthetic(rate=2_000.0, now=START_S + 2.0)
    batch = {b.symbol: b for b in feed.poll()}["EURUSD"]
    times = batch.ticks["time_msc"]
    shared = int(times[np.flatnonzero(times[1:] == times[:-1])[0]])  # a ms with several ticks
    feed.seek("EURUSD", shared, -1)
    again = {b.symbol: b for b in feed.poll()}["EURUSD"]
    assert int(again.ticks["time_msc"][0]) == shared and int(again.seq[0]) == 0
    assert again.ticks.tobytes() == batch.ticks[times >= shared].tobytes()


def test_seek_refuses_unknown_symbols_and_bad_keys() -> None:
    feed, _ = synthetic()
    with pytest.raises(FeedError, match="unknown symbol 'XAUUSD'"):
        feed.seek("XAUUSD", START_MSC, 0)
    with pytest.raises(FeedError, match="time_msc=-3"):
        feed.seek("EURUSD", -3, 0)
    with pytest.raises(FeedError, match="seq=-2"):
        feed.seek("EURUSD", START_MSC, -2)


def test_mt5_code_path_runs_on_the_simulator_installed_as_metatrader5(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock(START_S + 1.5)
    mt5sim.configure(
        seed=9, symbols=list(SYMBOLS), ticks_per_second=500, start_msc=START_MSC, clock=clock
    )
    monkeypatch.setitem(sys.modules, "MetaTrader5", mt5sim)
    feed = feeds.open_mt5_feed(SYMBOLS, since_msc=START_MSC, clock=clock)
    assert isinstance(feed, feeds.MT5Feed) and feed.api is mt5sim
    pieces: dict[str, list[feeds.TickBatch]] = {}
    collect(feed.poll(), pieces)
    clock.now = START_S + 3.25
    collect(feed.poll(), pieces)
    for symbol in SYMBOLS:
        expected = mt5sim.copy_ticks_range(symbol, START_S, START_S + 10, mt5sim.COPY_TICKS_ALL)
        assert expected is not None and len(expected) > 1_000
        ticks, seq = joined(pieces[symbol])
        assert ticks.tobytes() == expected.tobytes()
        assert np.array_equal(seq, feeds.sequence_numbers(expected["time_msc"]))
    feed.close()
    assert mt5sim.symbol_info_tick("EURUSD") is None  # close() called shutdown()
    assert mt5sim.last_error()[0] == mt5sim.RES_E_INTERNAL_FAIL_CONNECT


def test_new_mt5_feed_starts_after_the_newest_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(START_S + 2.0)
    terminal = mt5sim.configure(
        seed=4, symbols=["EURUSD"], ticks_per_second=800, start_msc=START_MSC, clock=clock
    )
    monkeypatch.setitem(sys.modules, "MetaTrader5", mt5sim)
    feed = feeds.open_mt5_feed(["EURUSD"], clock=clock)
    newest = terminal.symbol_info_tick("EURUSD")
    assert newest is not None
    assert feed.cursor("EURUSD")[0] == newest.time_msc
    assert feed.poll() == []
    clock.now = START_S + 3.0
    (batch,) = feed.poll()
    every = terminal.copy_ticks_range("EURUSD", 0, 4_000_000_000, -1)
    assert every is not None
    assert batch.ticks.tobytes() == every[every["time_msc"] > newest.time_msc].tobytes()
    feed.close()


def test_open_mt5_feed_without_the_package_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "MetaTrader5", None)  # makes the import fail
    with pytest.raises(FeedError) as caught:
        feeds.open_mt5_feed(["EURUSD"])
    message = str(caught.value)
    assert "MetaTrader5" in message and "Windows" in message
    assert "splitdb[mt5]" in message and "SyntheticFeed" in message


def test_unknown_symbol_raises_feed_error_with_the_symbol_and_last_error() -> None:
    terminal = mt5sim.Terminal(seed=1, symbols=["EURUSD"], ticks_per_second=10)
    with pytest.raises(feeds.FeedApiError) as caught:
        feeds.MT5Feed(terminal, ["EURUSD", "NOPE"], since_msc=START_MSC)
    err = caught.value
    assert err.symbol == "NOPE" and err.code == mt5sim.RES_E_NOT_FOUND
    assert "NOPE" in str(err) and str(mt5sim.RES_E_NOT_FOUND) in str(err)
    assert isinstance(err, FeedError) and isinstance(err, SplitdbError)
    assert terminal.symbols_total() is None  # the failed feed shut its connection down


def test_api_failure_during_poll_raises_feed_error_with_the_symbol_and_last_error() -> None:
    feed, clock = synthetic(now=START_S + 1.0)
    feed.poll()
    feed.terminal.shutdown()  # the terminal goes away behind the feed's back
    clock.now += 1
    with pytest.raises(feeds.FeedApiError) as caught:
        feed.poll()
    assert caught.value.symbol == "EURUSD"
    assert caught.value.code == mt5sim.RES_E_INTERNAL_FAIL_CONNECT
    assert "No IPC connection" in str(caught.value) and "EURUSD" in str(caught.value)


def test_api_without_symbol_select_failing_copy_ticks_range_raises_feed_error() -> None:
    class BrokenApi:
        def initialize(self, *args: Any, **kwargs: Any) -> bool:
            return True

        def shutdown(self) -> None:
            pass

        def last_error(self) -> tuple[int, str]:
            return (mt5sim.RES_E_INTERNAL_FAIL_TIMEOUT, "Timeout")

        def symbol_info_tick(self, symbol: str, /) -> Any:
            return None

        def copy_ticks_range(self, symbol: str, a: Any, b: Any, flags: int, /) -> Any:
            return None

    feed = feeds.MT5Feed(BrokenApi(), ["EURUSD"], since_msc=START_MSC)
    with pytest.raises(feeds.FeedApiError, match=r"EURUSD.*-10005.*Timeout"):
        feed.poll()
    with pytest.raises(feeds.FeedApiError, match="symbol_info_tick"):
        feeds.MT5Feed(BrokenApi(), ["EURUSD"])


def test_initialize_failure_raises_feed_error_with_last_error() -> None:
    terminal = mt5sim.Terminal(seed=1, symbols=["EURUSD"], ticks_per_second=10)
    with pytest.raises(feeds.FeedApiError, match="initialize") as caught:
        feeds.MT5Feed(terminal, ["EURUSD"], timeout=-5)
    assert caught.value.code == mt5sim.RES_E_INVALID_PARAMS and caught.value.symbol is None


def test_close_calls_shutdown_and_poll_after_close_fails() -> None:
    feed, _ = synthetic(now=START_S + 1.0)
    with feed:
        assert feed.terminal.symbols_total() == 2
    assert feed.terminal.symbols_total() is None
    feed.close()  # idempotent
    with pytest.raises(FeedError, match="closed"):
        feed.poll()


@pytest.mark.parametrize(
    "kwargs",
    [{"seed": -1}, {"ticks_per_second": 0}, {"symbols": []}, {"symbols": "EURUSD"}],
)
def test_bad_synthetic_feed_configuration_raises_feed_error(kwargs: dict[str, Any]) -> None:
    config: dict[str, Any] = {"seed": 1, "symbols": ["EURUSD"], "ticks_per_second": 10}
    config.update(kwargs)
    with pytest.raises(FeedError, match=r"symbols|seed|ticks_per_second"):
        feeds.SyntheticFeed(**config)


def test_tick_batch_refuses_arrays_of_the_wrong_shape() -> None:
    ticks = np.zeros(3, dtype=feeds.TICK_DTYPE)
    feeds.TickBatch("EURUSD", ticks, np.zeros(3, dtype=np.uint32))
    with pytest.raises(FeedError, match="TICK_DTYPE"):
        feeds.TickBatch("EURUSD", np.zeros(3, dtype=np.float64), np.zeros(3, dtype=np.uint32))
    with pytest.raises(FeedError, match="uint32"):
        feeds.TickBatch("EURUSD", ticks, np.zeros(3, dtype=np.int64))
    with pytest.raises(FeedError, match="one entry per tick"):
        feeds.TickBatch("EURUSD", ticks, np.zeros(2, dtype=np.uint32))


def test_every_feed_satisfies_the_feed_protocol(tmp_path: Path) -> None:
    feed, _ = synthetic(now=START_S + 1.0)
    path = tmp_path / "ticks.npz"
    feeds.record_ticks(feed, path)
    assert isinstance(feed, feeds.Feed)
    assert isinstance(feeds.ReplayFeed(path), feeds.Feed)


def test_replay_roundtrip_equals_the_recorded_ticks(tmp_path: Path) -> None:
    source, _ = synthetic(rate=1_000.0, now=START_S + 2.5)
    path = tmp_path / "ticks.npz"
    assert feeds.record_ticks(source, path) > 4_000
    recorded = source.terminal  # the source of truth
    replay = feeds.ReplayFeed(path)
    assert replay.symbols == SYMBOLS
    got = {b.symbol: b for b in replay.poll()}
    for symbol in SYMBOLS:
        expected = recorded.copy_ticks_range(symbol, 0, 4_000_000_000, -1)
        assert expected is not None
        assert got[symbol].ticks.tobytes() == expected.tobytes()
        assert np.array_equal(got[symbol].seq, feeds.sequence_numbers(expected["time_msc"]))
    assert replay.poll() == []
    replay.close()
    with pytest.raises(FeedError, match="closed"):
        replay.poll()


def test_recording_batches_of_several_polls_equals_recording_one_poll(tmp_path: Path) -> None:
    stepped, clock = synthetic(now=START_S)
    batches: list[feeds.TickBatch] = []
    for _ in range(4):
        clock.now += 0.75
        batches.extend(stepped.poll())
    feeds.record_ticks(batches, tmp_path / "stepped.npz")
    once, _ = synthetic(now=clock.now)
    feeds.record_ticks(once, tmp_path / "once.npz")
    with np.load(tmp_path / "stepped.npz") as a, np.load(tmp_path / "once.npz") as b:
        assert a.files == b.files == ["__splitdb_ticks__", *SYMBOLS]
        for name in SYMBOLS:
            assert a[name].dtype == REAL_TICK_DTYPE
            assert a[name].tobytes() == b[name].tobytes()


def test_paced_replay_serves_only_ticks_up_to_its_clock(tmp_path: Path) -> None:
    source, _ = synthetic(now=START_S + 3.0)
    path = tmp_path / "ticks.npz"
    feeds.record_ticks(source, path)
    clock = FakeClock(START_S + 1.2)
    replay = feeds.ReplayFeed(path, clock=clock)
    assert replay.span() is not None and replay.span()[0] >= START_MSC  # type: ignore[index]
    first: dict[str, list[feeds.TickBatch]] = {}
    collect(replay.poll(), first)
    for symbol in SYMBOLS:
        ticks, _ = joined(first[symbol])
        assert ticks["time_msc"].max() <= START_MSC + 1_200
    clock.now = START_S + 10.0
    collect(replay.poll(), first)
    with np.load(path) as archive:
        for symbol in SYMBOLS:
            assert joined(first[symbol])[0].tobytes() == archive[symbol].tobytes()


def test_replay_seek_resumes_after_the_key(tmp_path: Path) -> None:
    source, _ = synthetic(rate=2_000.0, now=START_S + 1.0)
    path = tmp_path / "ticks.npz"
    feeds.record_ticks(source, path)
    replay = feeds.ReplayFeed(path)
    batch = {b.symbol: b for b in replay.poll()}["US500"]
    i = len(batch) // 2
    replay.seek("US500", int(batch.ticks["time_msc"][i]), int(batch.seq[i]))
    (rest,) = replay.poll()
    assert rest.symbol == "US500" and rest.ticks.tobytes() == batch.ticks[i + 1 :].tobytes()


def _write_npz(path: Path, members: dict[str, npt.NDArray[Any]]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in members.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array)


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    ticks = np.zeros(3, dtype=REAL_TICK_DTYPE)
    unsorted = ticks.copy()
    unsorted["time_msc"] = [3, 1, 2]
    version = np.array(1)
    cases: dict[str, tuple[Path, str]] = {}

    def case(name: str, problem: str, members: dict[str, npt.NDArray[Any]] | bytes) -> None:
        path = tmp / f"{name}.npz"
        if isinstance(members, bytes):
            path.write_bytes(members)
        else:
            _write_npz(path, members)
        cases[name] = (path, problem)

    case("garbage", "cannot be read", b"this is not a zip file at all\n" * 10)
    case("no-marker", "__splitdb_ticks__", {"EURUSD": ticks})
    case("wrong-version", "format version 7", {"__splitdb_ticks__": np.array(7), "EURUSD": ticks})
    case("wrong-dtype", "'EURUSD'", {"__splitdb_ticks__": version, "EURUSD": np.zeros(3)})
    case("unsorted", "not sorted", {"__splitdb_ticks__": version, "EURUSD": unsorted})
    npy = tmp / "bare.npz"
    np.save(tmp / "bare.npy", ticks)
    (tmp / "bare.npy").rename(npy)
    cases["bare-npy"] = (npy, "not an .npz archive")
    cases["missing"] = (tmp / "missing.npz", "no such file")
    return cases


@pytest.mark.parametrize(
    "case",
    ["garbage", "no-marker", "wrong-version", "wrong-dtype", "unsorted", "bare-npy", "missing"],
)
def test_bad_replay_file_raises_feed_error_naming_the_path_and_problem(
    tmp_path: Path, case: str
) -> None:
    path, problem = _bad_files(tmp_path)[case]
    with pytest.raises(FeedError) as caught:
        feeds.ReplayFeed(path)
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_record_ticks_refuses_batches_that_go_back_in_time(tmp_path: Path) -> None:
    feed, _ = synthetic(now=START_S + 1.0)
    batch = feed.poll()[0]
    with pytest.raises(FeedError, match="back in time"):
        feeds.record_ticks([batch, batch], tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("rate", [0.05, 50.0])
def test_a_bounded_catch_up_serves_the_same_ticks_a_slice_per_poll(rate: float) -> None:
    """With max_span_s a start far in the past comes a slice per poll (empty windows skipped),
    and the slices add up to exactly what one unbounded poll returns."""
    start = 1_700_000_000_000
    now = start / 1000 + 500.5

    def feed(span: int | None) -> feeds.SyntheticFeed:
        return feeds.SyntheticFeed(
            seed=5,
            symbols=("EURUSD", "GBPUSD"),
            ticks_per_second=rate,
            start_msc=start,
            clock=lambda: now,
            max_span_s=span,
        )

    whole = {b.symbol: b.ticks.tobytes() for b in feed(None).poll()}
    sliced = feed(7)
    parts: dict[str, bytes] = {}
    polls = 0
    while polls < 1000:
        polls += 1
        batches = sliced.poll()
        for batch in batches:
            assert batch.ticks["time_msc"][-1] - batch.ticks["time_msc"][0] < 7000
            parts[batch.symbol] = parts.get(batch.symbol, b"") + batch.ticks.tobytes()
        if all(sliced.cursor(s)[0] >= start + 500_000 for s in sliced.symbols) and not batches:
            break
    assert parts == whole
    assert polls > 500 // 7


# --- max_ticks: a poll bounded by a count per symbol (copy_ticks_from) ------------------------

_LIMIT_SYMBOLS = ("EURUSD", "US500")


def _reference_ticks(
    seed: int, rate: float, until_s: float
) -> dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.uint32]]]:
    """Every tick of each symbol from START_MSC up to `until_s`, with its seq: the truth."""
    feed, _ = synthetic(seed=seed, rate=rate, now=until_s, symbols=_LIMIT_SYMBOLS)
    got: dict[str, list[feeds.TickBatch]] = {}
    collect(feed.poll(), got)
    return {s: joined(got.get(s, [])) for s in _LIMIT_SYMBOLS}


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 50),
    rate=st.sampled_from([3.0, 200.0, 2500.0]),
    limit=st.integers(1, 400),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["poll", "advance", "seek"]),
            st.integers(0, 2500),  # ms to advance the clock
            st.floats(0.0, 1.0),  # where to seek back to, as a share of what was handed out
        ),
        max_size=40,
    ),
)
def test_polls_with_a_count_limit_yield_exactly_the_feeds_ticks_in_order(
    seed: int, rate: float, limit: int, steps: list[tuple[str, int, float]]
) -> None:
    """Whatever the polls, clock moves and seeks back, each batch is the next `limit` (or
    fewer, when no more exist yet) of the symbol's ticks after its cursor, keys and seq
    included: nothing skipped, nothing twice."""
    clock = FakeClock(START_S + 0.5)
    feed = feeds.SyntheticFeed(
        seed=seed,
        symbols=_LIMIT_SYMBOLS,
        ticks_per_second=rate,
        start_msc=START_MSC,
        clock=clock,
        max_ticks=limit,
    )
    end_s = START_S + 0.5 + sum(ms for _, ms, _ in steps) / 1000 + 1
    truth = _reference_ticks(seed, rate, end_s)
    at = dict.fromkeys(_LIMIT_SYMBOLS, 0)  # per symbol: how many ticks handed out so far

    def poll() -> None:
        now_msc = int(clock.now * 1000)
        got = {b.symbol: b for b in feed.poll()}
        for symbol in _LIMIT_SYMBOLS:
            ticks, seq = truth[symbol]
            available = int(np.searchsorted(ticks["time_msc"], now_msc, side="right"))
            batch = got.get(symbol)
            if batch is None:
                assert at[symbol] == available
                continue
            n = len(batch)
            assert 1 <= n <= limit
            assert batch.ticks.tobytes() == ticks[at[symbol] : at[symbol] + n].tobytes()
            assert batch.seq.tolist() == seq[at[symbol] : at[symbol] + n].tolist()
            at[symbol] += n
            assert n == limit or at[symbol] == available

    for op, ms, share in steps:
        if op == "advance":
            clock.now += ms / 1000
        elif op == "seek":
            for symbol in _LIMIT_SYMBOLS:
                back = int(at[symbol] * share)
                ticks, seq = truth[symbol]
                if back == 0:
                    feed.seek(symbol, START_MSC, -1)
                else:
                    feed.seek(symbol, int(ticks["time_msc"][back - 1]), int(seq[back - 1]))
                at[symbol] = back
        else:
            poll()
    clock.now = end_s
    # Every tick now exists, so each poll must hand each unfinished symbol min(limit, rest)
    # (poll() asserts it): this many polls drain the feed, however long the clock ran.
    rest = max(len(truth[s][0]) - at[s] for s in _LIMIT_SYMBOLS)
    for _ in range(-(-rest // limit)):
        poll()
    assert all(at[s] == len(truth[s][0]) for s in _LIMIT_SYMBOLS)


def test_a_count_limited_poll_of_a_consumer_far_behind_holds_only_the_count() -> None:
    """A consumer minutes behind a fast market gets `max_ticks` per symbol per poll, not the
    whole gap (at 1,000,000 ticks/s the gap was the bot's 1.1 GB)."""
    clock = FakeClock(START_S + 120.0)
    feed = feeds.SyntheticFeed(
        seed=1,
        symbols=_LIMIT_SYMBOLS,
        ticks_per_second=20_000,
        start_msc=START_MSC,
        clock=clock,
        max_ticks=1000,
    )
    for _ in range(5):
        batches = feed.poll()
        assert [len(b) for b in batches] == [1000, 1000]
        # A view of what was fetched: the count asked, plus the second's ticks handed out.
        for batch in batches:
            base = batch.ticks.base if batch.ticks.base is not None else batch.ticks
            assert base.nbytes <= 2 * 20_000 * feeds.TICK_DTYPE.itemsize


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "10"])
def test_a_bad_max_ticks_is_refused(bad: Any) -> None:
    with pytest.raises(FeedError, match="max_ticks"):
        feeds.SyntheticFeed(
            seed=1, symbols=SYMBOLS, ticks_per_second=10, start_msc=START_MSC, max_ticks=bad
        )


def test_max_ticks_and_max_span_s_are_one_or_the_other() -> None:
    with pytest.raises(FeedError, match="give one of them"):
        feeds.SyntheticFeed(
            seed=1,
            symbols=SYMBOLS,
            ticks_per_second=10,
            start_msc=START_MSC,
            max_ticks=10,
            max_span_s=5,
        )
