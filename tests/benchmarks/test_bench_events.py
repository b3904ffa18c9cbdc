"""What event logging costs the bot: the same ingest with the event log on and off.

Run: tox -e bench  (or: pytest tests/benchmarks/test_bench_events.py -p no:xdist --benchmark-only)
Target: event logging costs at most 5% of the bot's ingest rate. Read the two means' ratio.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reference.bot import Bot, default_symbols
from reference.feeds import SyntheticFeed
from reference.runtime import Runtime

START = 1_750_000_000_000
SECONDS = 10  # of market: 10 s x 5,000 ticks/s = about 50,000 ticks


def _setup(tmp_path: Path, counter: list[int], events: bool) -> tuple[tuple[Bot], dict[str, Any]]:
    counter[0] += 1
    data = tmp_path / f"round{counter[0]}"
    runtime = Runtime(
        "bot",
        data_dir=data,
        events=data / "bot.jsonl" if events else None,
        install_signals=False,
    )
    feed = SyntheticFeed(
        seed=1,
        symbols=default_symbols(50),
        ticks_per_second=100,
        start_msc=START,
        clock=lambda: START / 1000 + SECONDS,
    )
    return (Bot(runtime, feed, batch_size=100, max_delay_ms=0),), {}


def _ingest(bot: Bot) -> None:
    bot.step()
    while bot.pending:
        bot.commit_pending()


@pytest.mark.parametrize("events", [False, True], ids=["events-off", "events-on"])
@pytest.mark.benchmark(group="bot ingest of 10 s x 5,000 ticks/s, batch 100: event log on vs off")
def test_bench_bot_ingest_event_log(benchmark: Any, tmp_path: Path, events: bool) -> None:
    counter = [0]
    benchmark.pedantic(_ingest, setup=lambda: _setup(tmp_path, counter, events), rounds=8)
