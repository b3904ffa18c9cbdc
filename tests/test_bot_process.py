"""The tick bot as a real OS process: what it acknowledges is never lost, even under kill -9."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from harness.runs.durability import check_durability
from harness.runs.supervisor import Supervisor
from reference.bot import default_symbols
from reference.events import read_events
from reference.feeds import SyntheticFeed
from reference.topology import load_topology

SEED = load_topology("seed")
START_MSC = 1_750_000_000_000


def bot_args(symbols: int = 5, rate: float = 4000.0, batch: int = 200) -> list[str]:
    """The bot's arguments for a seeded stream; its fixed market start makes every incarnation
    of the bot see the same deterministic stream (`stream_keys`)."""
    return [
        "--symbols",
        str(symbols),
        "--rate",
        str(rate),
        "--batch-size",
        str(batch),
        "--seed",
        "7",
        "--start-msc",
        str(int(time.time() * 1000) - 1000),
    ]


def stream_keys(args: list[str], until_msc: int) -> dict[str, list[tuple[int, int]]]:
    """The keys of the seeded stream `bot_args` makes every incarnation see, per symbol, up to
    a second past `until_msc`."""
    symbols = default_symbols(int(args[args.index("--symbols") + 1]))
    feed = SyntheticFeed(
        seed=int(args[args.index("--seed") + 1]),
        symbols=symbols,
        ticks_per_second=float(args[args.index("--rate") + 1]) / len(symbols),
        start_msc=int(args[args.index("--start-msc") + 1]),
        clock=lambda: until_msc / 1000 + 1,
    )
    return {
        b.symbol: list(zip(b.ticks["time_msc"].tolist(), b.seq.tolist(), strict=True))
        for b in feed.poll()
    }


def _ticks(supervisor: Supervisor) -> sqlite3.Connection:
    path = SEED.file_of("ticks", supervisor.data_dir)
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def wait_for_acks(supervisor: Supervisor, name: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    path = supervisor.events_path(name)
    while time.monotonic() < deadline:
        if path.exists() and sum(e["op"] == "ack" for e in read_events(path)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"bot made fewer than {count} acks in {timeout} s")


@pytest.mark.slow
def test_bot_commits_everything_it_received_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    with Supervisor(tmp_path, SEED) as supervisor:
        supervisor.start("bot", bot_args())
        supervisor.wait_ready("bot")
        wait_for_acks(supervisor, "bot", 5)
        record = supervisor.stop("bot")
    assert (record.code, record.how) == (0, "sigterm")
    events = list(read_events(supervisor.events_path("bot")))
    assert events[-1]["op"] == "stopped"
    result = check_durability([supervisor.events_path("bot")], _ticks(supervisor))
    assert result.ok, result.describe()
    # A clean stop commits and acknowledges everything: acks and rows agree exactly.
    assert result.acked_rows == result.stored_rows
    section = supervisor.board.section("bot")
    assert section["state"] == "stopped"
    assert section["committed"] == section["received"] == sum(result.stored_rows.values())


@pytest.mark.slow
def test_killed_bot_loses_no_acknowledged_tick(tmp_path: Path) -> None:
    rng = random.Random(20)
    args = bot_args(symbols=5, rate=5000.0, batch=100)
    with Supervisor(tmp_path, SEED) as supervisor:
        supervisor.start("bot", args)
        supervisor.wait_ready("bot")
        for _ in range(20):
            time.sleep(rng.uniform(0.02, 0.3))
            supervisor.kill("bot")
            supervisor.restart("bot")
        wait_for_acks(supervisor, "bot", 1)
        supervisor.stop("bot")
    ticks = _ticks(supervisor)
    result = check_durability([supervisor.events_path("bot")], ticks)
    assert result.acks > 20
    assert result.ok, result.describe()
    assert ticks.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    # The restarted bots resumed exactly: what is stored is a gap-free prefix of the seeded stream.
    newest = ticks.execute("SELECT max(time_msc) FROM ticks").fetchone()[0]
    for symbol, keys in stream_keys(args, newest).items():
        stored = ticks.execute(
            "SELECT time_msc, seq FROM ticks WHERE symbol = ? ORDER BY time_msc, seq", (symbol,)
        ).fetchall()
        assert stored == keys[: len(stored)], f"{symbol}: stored ticks are not the stream's prefix"


@pytest.mark.slow
@pytest.mark.parametrize("kills", [8])
def test_durability_check_catches_a_bot_that_acks_before_commit(tmp_path: Path, kills: int) -> None:
    rng = random.Random(3)
    with Supervisor(tmp_path, SEED) as supervisor:
        supervisor.start("bot", bot_args(batch=50), module="tests.fixtures.ack_before_commit_bot")
        supervisor.wait_ready("bot")
        for _ in range(kills):
            wait_for_acks(supervisor, "bot", 1)
            time.sleep(rng.uniform(0.05, 0.2))
            supervisor.kill("bot")
            supervisor.restart("bot")
        supervisor.kill("bot")
    result = check_durability([supervisor.events_path("bot")], _ticks(supervisor))
    assert not result.ok
    assert "fewer stored than acknowledged" in result.describe()


@pytest.mark.slow
def test_a_bot_far_behind_still_stops_cleanly_within_the_supervisors_grace(
    tmp_path: Path,
) -> None:
    """Under overload the stop is bounded: the bot commits for its flush budget, then exits 0
    on SIGTERM instead of working through its whole backlog and being SIGKILLed."""
    with Supervisor(tmp_path, SEED) as supervisor:
        # Tiny batches and a huge offered rate: the bot falls far behind at once.
        supervisor.start(
            "bot",
            [*bot_args(symbols=20, rate=1_000_000, batch=5), "--max-pending", "200000"],
        )
        supervisor.wait_ready("bot")
        deadline = time.monotonic() + 30
        events = supervisor.events_path("bot")
        # Each ack says how many received ticks still wait to be committed.
        while not any(e["op"] == "ack" and e["pending"] >= 20_000 for e in read_events(events)):
            assert time.monotonic() < deadline, "the bot never built a backlog"
            time.sleep(0.05)
        record = supervisor.stop("bot")
    assert (record.code, record.how) == (0, "sigterm")
    # Far behind when the signal came: the test really interrupted a backlog, not an idle bot.
    # Read from the acks before the signal, not from the backlog left at exit: a fast machine
    # may commit all of it within the flush budget, which is a clean stop too.
    bot_events = list(read_events(events))
    signalled = next(i for i, e in enumerate(bot_events) if e["op"] == "signal")
    acks_before = [e for e in bot_events[:signalled] if e["op"] == "ack"]
    assert acks_before and max(e["pending"] for e in acks_before) >= 20_000
    result = check_durability([supervisor.events_path("bot")], _ticks(supervisor))
    assert result.ok, result.describe()
