"""Malformed ticks from a feed: each rejected with its reason, never stored, never a crash, and
no good tick around a bad one lost. Checked on hypothesis-made batches against a plain-Python
statement of the rules, stored in a real ticks table; then through the bot's loop."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.bot import Bot
from reference.events import read_events
from reference.feeds import TICK_DTYPE, TickBatch, sequence_numbers
from reference.runtime import Runtime
from reference.schema import TICK_COLUMNS, ensure_schema
from reference.tickcheck import REASONS, check_ticks
from reference.tickstore import insert_ticks

BASE = 1_750_000_000_000
PRICES = st.one_of(
    st.floats(0.5, 2.0),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 5e-324, 1e308]),
)
VOLUMES = st.one_of(st.integers(0, 100), st.sampled_from([2**63 - 1, 2**63, 2**64 - 1]))
REALS = st.one_of(st.floats(0, 10), st.sampled_from([math.nan, math.inf, -1.0, 0.0]))


@st.composite
def raw_ticks(draw: st.DrawFn) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Ticks as a feed might hand them out, good ones and bad ones, with their `seq`."""
    n = draw(st.integers(0, 40))
    ticks = np.zeros(n, dtype=TICK_DTYPE)
    time_msc = BASE
    for i in range(n):
        # Mostly forward, sometimes the same millisecond, backwards, or before 1970.
        time_msc += draw(st.sampled_from([0, 0, 1, 7, 1000, -3, -1000]))
        msc = draw(st.sampled_from([time_msc] * 12 + [-5]))
        bid = draw(PRICES)
        spread = draw(st.sampled_from([0.0, 1e-5, 1e-4, 1e-4, -1e-4]))
        ask = draw(st.one_of(st.just(bid + spread), PRICES))
        second = msc // 1000 if draw(st.integers(0, 15)) else msc // 1000 + 1
        ticks[i] = (
            second,
            bid,
            ask,
            draw(st.one_of(st.just(0.0), REALS)),
            draw(VOLUMES),
            msc,
            draw(st.sampled_from([6, 2, 4, 8 | 16 | 32])),
            draw(REALS),
        )
    if draw(st.booleans()):
        seq = sequence_numbers(ticks["time_msc"])
    else:
        seq = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=np.uint32)
    return ticks, seq


def expected_reason(tick: Sequence[Any]) -> str | None:
    """The rules of reference.tickcheck, said again in plain Python: the first one broken."""
    time, bid, ask, last, volume, time_msc, _flags, real = tick
    checks = [
        ("time_negative", time_msc < 0),
        ("time_mismatch", time != time_msc // 1000),
        ("bid_not_finite", not math.isfinite(bid)),
        ("ask_not_finite", not math.isfinite(ask)),
        ("bid_not_positive", not bid > 0),
        ("ask_not_positive", not ask > 0),
        ("ask_below_bid", ask < bid),
        ("last_not_finite", not math.isfinite(last)),
        ("last_negative", last < 0),
        ("volume_real_not_finite", not math.isfinite(real)),
        ("volume_real_negative", real < 0),
        ("volume_too_large", volume > 2**63 - 1),
    ]
    return next((reason for reason, broken in checks if broken), None)


def stored_after_insert(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """`rows` through the bot's insert into a real ticks table, read back in key order."""
    conn = sqlite3.connect(":memory:", isolation_level=None)  # the real table, in memory
    try:
        ensure_schema(conn, "ticks")
        insert_ticks(conn, rows)
        return conn.execute(
            f"SELECT {', '.join(TICK_COLUMNS)} FROM ticks ORDER BY time_msc, seq"
        ).fetchall()
    finally:
        conn.close()


LAST_KEYS = st.one_of(st.none(), st.sampled_from([(BASE - 1, 0), (BASE, 0), (BASE + 5, 2)]))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(raw_ticks(), LAST_KEYS)
def test_every_tick_is_stored_or_rejected_for_the_first_rule_it_breaks(
    made: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]], last_key: tuple[int, int] | None
) -> None:
    ticks, seq = made
    checked = check_ticks("EURUSD", ticks, seq, last_key)
    # The rules, tick by tick: the key must follow the last one stored or accepted.
    rows, rejected, key = [], [], last_key
    for tick, s in zip(ticks.tolist(), seq.tolist(), strict=True):
        this = (tick[5], s)
        reason = expected_reason(tick)
        if reason is None and key is not None and this <= key:
            reason = "duplicate_key" if this == key else "time_backwards"
        if reason is None:
            rows.append(("EURUSD", tick[5], s, tick[0], *tick[1:5], tick[6], tick[7]))
            key = this
        else:
            rejected.append((this, reason))
    assert checked.rows == rows
    assert [((r.time_msc, r.seq), r.reason) for r in checked.rejected] == rejected
    assert checked.last_key == key
    assert all(r.reason in REASONS and r.detail for r in checked.rejected)
    # What is accepted stores as it is: no NaN turned into NULL, no integer overflow, no
    # key clash; and it reads back equal.
    assert stored_after_insert(checked.rows) == checked.rows


def test_a_bad_tick_between_good_ones_costs_only_itself() -> None:
    ticks = np.zeros(5, dtype=TICK_DTYPE)
    for i in range(5):
        ticks[i] = (BASE // 1000, 1.1, 1.1001, 0.0, 0, BASE + i, 6, 0.0)
    ticks[2]["bid"] = math.nan
    ticks[3]["ask"] = 1.0  # below the bid
    checked = check_ticks("EURUSD", ticks, sequence_numbers(ticks["time_msc"]), None)
    assert [row[1] for row in checked.rows] == [BASE, BASE + 1, BASE + 4]
    assert [(r.time_msc, r.reason, r.detail) for r in checked.rejected] == [
        (BASE + 2, "bid_not_finite", "bid=nan"),
        (BASE + 3, "ask_below_bid", "ask=1.0 < bid=1.1"),
    ]


# --- through the bot's loop ---------------------------------------------------------------------


class ListFeed:
    """A `Feed` handing out prepared batches, one per poll: a user's own feed gone wrong."""

    def __init__(self, polls: list[list[TickBatch]]) -> None:
        self.polls = polls

    @property
    def symbols(self) -> tuple[str, ...]:
        return ("EURUSD",)

    def poll(self) -> list[TickBatch]:
        return self.polls.pop(0) if self.polls else []

    def seek(self, symbol: str, time_msc: int, seq: int) -> None:
        pass

    def close(self) -> None:
        pass


def _batch(values: list[tuple[int, float, float]]) -> TickBatch:
    ticks = np.zeros(len(values), dtype=TICK_DTYPE)
    for i, (msc, bid, ask) in enumerate(values):
        ticks[i] = (msc // 1000, bid, ask, 0.0, 0, msc, 6, 0.0)
    return TickBatch("EURUSD", ticks, sequence_numbers(ticks["time_msc"]))


@pytest.fixture
def bot_with(tmp_path: Path) -> Iterator[Any]:
    made: list[Bot] = []

    def make(polls: list[list[TickBatch]]) -> Bot:
        runtime = Runtime(
            "bot", data_dir=tmp_path, events=tmp_path / "events.jsonl", install_signals=False
        )
        bot = Bot(runtime, ListFeed(polls), batch_size=100, max_delay_ms=0)  # type: ignore[arg-type]
        made.append(bot)
        return bot

    yield make
    for bot in made:
        bot.close()
        bot.runtime.events.close()


def test_the_bot_stores_the_good_ticks_and_reports_each_bad_one_with_its_reason(
    tmp_path: Path, bot_with: Any
) -> None:
    polls = [
        [_batch([(BASE, 1.1, 1.2), (BASE + 1, math.nan, 1.2), (BASE + 2, 1.1, 1.2)])],
        # Time going backwards across polls (behind what is stored), then a crossed quote
        # and a negative price among good ones.
        [_batch([(BASE - 10, 1.1, 1.2), (BASE + 3, 1.3, 1.2), (BASE + 4, -1.0, 1.2)])],
        [_batch([(BASE + 5, 1.1, 1.2)])],
    ]
    bot = bot_with(polls)
    for _ in range(3):
        bot.step()
        bot.commit_pending()
    conn = sqlite3.connect(tmp_path / "unified_tick_pipeline.db")
    stored = conn.execute("SELECT time_msc, bid FROM ticks ORDER BY time_msc").fetchall()
    conn.close()
    assert stored == [(BASE, 1.1), (BASE + 2, 1.1), (BASE + 5, 1.1)]
    c = bot.counters
    assert (c.received, c.committed, c.rejected) == (7, 3, 4)
    assert c.rejected_by_reason == {
        "bid_not_finite": 1,
        "time_backwards": 1,
        "ask_below_bid": 1,
        "bid_not_positive": 1,
    }
    bot.runtime.events.flush()
    events = [e for e in read_events(tmp_path / "events.jsonl") if e["op"] == "tick_rejected"]
    assert [(e["reason"], e["n"], e["first"]) for e in events] == [
        ("bid_not_finite", 1, [BASE + 1, 0]),
        ("time_backwards", 1, [BASE - 10, 0]),
        ("ask_below_bid", 1, [BASE + 3, 0]),
        ("bid_not_positive", 1, [BASE + 4, 0]),
    ]
    assert all(e["symbol"] == "EURUSD" and e["detail"] for e in events)


def test_a_restarted_bot_rejects_a_tick_behind_what_is_stored(
    tmp_path: Path, bot_with: Any
) -> None:
    first = bot_with([[_batch([(BASE, 1.1, 1.2), (BASE + 10, 1.1, 1.2)])]])
    first.step()
    first.commit_pending()
    first.close()
    second = bot_with([[_batch([(BASE + 10, 1.1, 1.2), (BASE + 5, 1.1, 1.2)])]])
    second.step()
    assert second.pending == []
    assert second.counters.rejected_by_reason == {"duplicate_key": 1, "time_backwards": 1}


@pytest.mark.slow
def test_the_bot_process_stores_a_recording_s_good_ticks_around_its_bad_ones(
    tmp_path: Path,
) -> None:
    from harness.runs.durability import check_durability
    from harness.runs.supervisor import Supervisor
    from reference.feeds import record_ticks
    from reference.topology import load_topology

    good = [(BASE + i, 1.1 + i * 1e-4, 1.1002 + i * 1e-4) for i in range(0, 40, 2)]
    bad = [(BASE + 5, math.nan, 1.2), (BASE + 7, 1.3, 1.2), (BASE + 9, -1.0, 1.2)]
    batch = _batch(sorted(good + bad))
    huge = _batch([(BASE + 41, 1.1, 1.2)])
    huge.ticks["volume"][0] = 2**64 - 1
    recording = tmp_path / "bad.npz"
    record_ticks([batch, huge], recording)
    seed = load_topology("seed")
    with Supervisor(tmp_path, seed) as supervisor:
        supervisor.start("bot", ["--feed", "replay", "--replay-file", str(recording)])
        supervisor.wait_ready("bot")
        deadline = time.monotonic() + 20
        while supervisor.board.section("bot").get("rejected", 0) < 4:
            assert time.monotonic() < deadline, supervisor.board.section("bot")
            time.sleep(0.05)
        record = supervisor.stop("bot")
        path = seed.file_of("ticks", supervisor.data_dir)
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        stored = conn.execute("SELECT time_msc, bid, ask FROM ticks ORDER BY time_msc").fetchall()
        result = check_durability([supervisor.events_path("bot")], conn)
        events = list(read_events(supervisor.events_path("bot")))
        section = supervisor.board.section("bot")
    assert (record.code, record.how) == (0, "sigterm")
    assert stored == good
    assert result.ok, result.describe()
    assert sorted((e["reason"], e["first"][0]) for e in events if e["op"] == "tick_rejected") == [
        ("ask_below_bid", BASE + 7),
        ("bid_not_finite", BASE + 5),
        ("bid_not_positive", BASE + 9),
        ("volume_too_large", BASE + 41),
    ]
    assert (section["received"], section["committed"], section["rejected"]) == (24, 20, 4)
