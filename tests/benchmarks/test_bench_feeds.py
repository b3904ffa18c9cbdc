"""What market data costs: one simulated second at 20,000 ticks/s over 50 symbols (400 each).

Run: python3 -m pytest tests/benchmarks/test_bench_feeds.py -p no:xdist --benchmark-only
Each round covers a new second (the clock moves on), so no round is served from a cache; the
mean time per round is the share of one core that the feed costs when it keeps up live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reference import feeds, mt5sim

START_S = 1_700_000_000
RATE = 400.0  # per symbol: 20,000 ticks/s over 50 symbols
SYMBOLS = tuple(
    [f"{a}{b}" for a in ("EUR", "GBP", "AUD", "NZD", "CAD") for b in ("USD", "JPY", "CHF", "SEK")]
    + [f"STOCK{i:02d}" for i in range(30)]
)
assert len(SYMBOLS) == 50 and len(set(SYMBOLS)) == 50


class SteppingClock:
    """A clock the benchmark moves forward one second per round."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_bench_synthetic_feed_poll_one_second_of_20k_ticks_over_50_symbols(
    benchmark: Any,
) -> None:
    clock = SteppingClock(START_S + 1.0)
    feed = feeds.SyntheticFeed(
        seed=1, symbols=SYMBOLS, ticks_per_second=RATE, start_msc=START_S * 1000, clock=clock
    )
    feed.poll()  # the ticks of the first second, before the measured rounds
    counts: list[int] = []

    def one_second() -> None:
        clock.now += 1.0
        counts.append(sum(len(b) for b in feed.poll()))

    benchmark(one_second)
    mean = sum(counts) / len(counts)
    benchmark.extra_info["ticks_per_round_mean"] = mean
    assert mean == pytest.approx(20_000, rel=0.03)


def test_bench_simulator_generates_one_second_for_50_symbols(benchmark: Any) -> None:
    clock = SteppingClock(START_S + 100_000.0)
    terminal = mt5sim.Terminal(
        seed=2, symbols=SYMBOLS, ticks_per_second=RATE, start_msc=START_S * 1000, clock=clock
    )
    assert terminal.initialize()
    second = [START_S]

    def one_second() -> int:
        second[0] += 1
        total = 0
        for symbol in SYMBOLS:
            ticks = terminal.copy_ticks_range(symbol, second[0], second[0] + 1, -1)
            assert ticks is not None
            total += len(ticks)
        return total

    total = benchmark(one_second)
    assert total == pytest.approx(20_000, rel=0.05)


def test_bench_replay_poll_of_one_second_of_20k_ticks(benchmark: Any, tmp_path: Path) -> None:
    clock = SteppingClock(START_S + 60.0)
    source = feeds.SyntheticFeed(
        seed=3, symbols=SYMBOLS, ticks_per_second=RATE, start_msc=START_S * 1000, clock=clock
    )
    path = tmp_path / "ticks.npz"
    feeds.record_ticks(source, path)
    replay_clock = SteppingClock(START_S)
    replay = feeds.ReplayFeed(path, clock=replay_clock)

    def one_second() -> None:
        if replay_clock.now >= START_S + 60:  # wrap around: replay the minute again
            replay_clock.now = START_S
            for symbol in SYMBOLS:
                replay.seek(symbol, 0, -1)
        replay_clock.now += 1.0
        replay.poll()

    benchmark(one_second)
