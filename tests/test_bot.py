"""The bot's ingest loop in-process: batching, backpressure and resume lose or repeat nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reference.bot import Bot, _parse_args, default_symbols
from reference.feeds import SyntheticFeed
from reference.runtime import Runtime

START = 1_750_000_000_000


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _bot(tmp_path: Path, clock: Clock, *, max_pending: int, batch: int = 500) -> Bot:
    runtime = Runtime("bot", data_dir=tmp_path, install_signals=False)
    feed = SyntheticFeed(
        seed=3, symbols=default_symbols(4), ticks_per_second=500, start_msc=START, clock=clock
    )
    return Bot(runtime, feed, batch_size=batch, max_delay_ms=0, max_pending=max_pending)


def _stored(tmp_path: Path) -> list[tuple[str, int, int]]:
    conn = sqlite3.connect(tmp_path / "unified_tick_pipeline.db")
    return conn.execute("SELECT symbol, time_msc, seq FROM ticks ORDER BY 1, 2, 3").fetchall()


def _expected(clock: Clock) -> list[tuple[str, int, int]]:
    feed = SyntheticFeed(
        seed=3, symbols=default_symbols(4), ticks_per_second=500, start_msc=START, clock=clock
    )
    return sorted(
        (b.symbol, t, s)
        for b in feed.poll()
        for t, s in zip(b.ticks["time_msc"].tolist(), b.seq.tolist(), strict=True)
    )


def test_backpressure_caps_pending_and_skips_no_tick(tmp_path: Path) -> None:
    clock = Clock(START / 1000 + 20)  # 20 s of market at once: about 40,000 ticks
    expected = _expected(clock)
    bot = _bot(tmp_path, clock, max_pending=1000)
    for _ in range(500):
        bot.step()
        assert len(bot.pending) <= 1000 + len(bot.feed.symbols)
        bot.commit_pending()
        if bot.counters.committed >= len(expected):
            break
    assert _stored(tmp_path) == expected


def test_restarted_bot_resumes_after_the_stored_ticks(tmp_path: Path) -> None:
    clock = Clock(START / 1000 + 5)
    first = _bot(tmp_path, clock, max_pending=100_000)
    first.step()
    first.commit_pending()
    first.close()
    clock.now += 5
    second = _bot(tmp_path, clock, max_pending=100_000)
    second.step()
    second.commit_pending()
    assert _stored(tmp_path) == _expected(clock)


def test_bad_bot_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, needle in (
        (["--batch-size", "0"], "--batch-size=0 must be >= 1"),
        (["--rate", "-1"], "--rate: -1 is out of range; give a number > 0"),
        (["--feed", "replay"], "--feed replay needs --replay-file"),
        (["--max-pending", "10"], "--max-pending=10 must be >= --batch-size"),
    ):
        with pytest.raises(SystemExit) as info:
            _parse_args(argv)
        assert info.value.code == 2
        assert needle in capsys.readouterr().err


def test_a_restarted_fast_market_continues_after_the_stored_ticks(tmp_path: Path) -> None:
    from reference.market_clock import MarketClock

    wall = Clock(1_000.0)
    first_clock = MarketClock(speed=60, origin=START / 1000, wall=wall)
    runtime = Runtime("bot", data_dir=tmp_path, install_signals=False)
    feed = SyntheticFeed(
        seed=3, symbols=("EURUSD",), ticks_per_second=5, start_msc=START, clock=first_clock
    )
    bot = Bot(runtime, feed, batch_size=100, max_delay_ms=0, clock=first_clock)
    wall.now += 10  # ten minutes of market
    bot.step()
    bot.commit_pending()
    stored = _stored(tmp_path)
    bot.close()
    # A new process starts its clock at the same origin: it must jump to the stored ticks.
    second_clock = MarketClock(speed=60, origin=START / 1000, wall=wall)
    feed = SyntheticFeed(
        seed=3, symbols=("EURUSD",), ticks_per_second=5, start_msc=START, clock=second_clock
    )
    Bot(runtime, feed, batch_size=100, max_delay_ms=0, clock=second_clock)
    assert second_clock() * 1000 >= stored[-1][1]


def test_a_full_disk_is_waited_out_nothing_acknowledged_until_it_is_stored(
    tmp_path: Path,
) -> None:
    clock = Clock(START / 1000 + 4)
    expected = _expected(clock)
    bot = _bot(tmp_path, clock, max_pending=100_000)
    pages = bot.conn.execute("PRAGMA page_count").fetchone()[0]
    bot.conn.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: disk full
    bot.step()  # polls, and its commit fails with SQLITE_FULL
    assert len(bot.pending) == len(expected) and bot.counters.committed == 0
    assert not bot.commit_pending()
    assert bot.counters.errors >= 2 and bot.counters.last_ack == {}
    bot.conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    while bot.pending:
        assert bot.commit_pending()
    assert _stored(tmp_path) == expected


def test_each_ack_names_every_symbol_of_its_batch_with_its_last_key_and_rows(
    tmp_path: Path,
) -> None:
    """An ack is what a restart and the durability check trust: per symbol of the committed
    batch, its last key and row count, however the batch mixes symbols."""
    import json

    clock = Clock(START / 1000 + 3)
    runtime = Runtime(
        "bot", data_dir=tmp_path, events=tmp_path / "bot.jsonl", install_signals=False
    )
    feed = SyntheticFeed(
        seed=3, symbols=default_symbols(4), ticks_per_second=500, start_msc=START, clock=clock
    )
    bot = Bot(runtime, feed, batch_size=100_000, max_delay_ms=60_000)
    bot.step()  # polls (about 6,000 ticks), commits nothing yet
    bot.batch_size = 337
    by_symbol: dict[str, list[tuple[object, ...]]] = {}
    for row in bot.pending:
        by_symbol.setdefault(row[0], []).append(row)
    first, second, *others = by_symbol.values()
    assert len(first) > 337 and len(second) > 100
    # The first batch holds the first symbol in two runs, the second symbol between them.
    bot.pending[:] = first[:100] + second[:100] + first[100:] + second[100:]
    bot.pending += [row for rows in others for row in rows]
    expected = list(bot.pending)
    assert bot.commit_pending()
    runtime.events.flush()
    acks = [
        e
        for e in map(json.loads, (tmp_path / "bot.jsonl").read_text().splitlines())
        if e["op"] == "ack"
    ]
    for i, ack in enumerate(acks):
        chunk = expected[i * 337 : (i + 1) * 337]
        assert ack["n"] == len(chunk)
        rows: dict[str, int] = {}
        last: dict[str, list[int]] = {}
        for row in chunk:
            rows[row[0]] = rows.get(row[0], 0) + 1
            if row[0] not in last or (row[1], row[2]) > tuple(last[row[0]]):
                last[row[0]] = [row[1], row[2]]
        assert ack["rows"] == rows and ack["last"] == last
    assert sum(a["n"] for a in acks) == len(expected)
