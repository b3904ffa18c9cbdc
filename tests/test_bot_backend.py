"""The bot on either backend: the topology's `backend` picks its `TickWriter`; on SQLite the bot
behaves as before (busy waited out, a replaced file written again), and on PostgreSQL the real
bot process loses and repeats no acknowledged tick, across kill -9 and a terminated backend."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from harness.pg.server import PgServer
from harness.runs.supervisor import Supervisor
from reference.bot import Bot, default_symbols, open_writer
from reference.errors import StoreFailed, StoreSetupError
from reference.events import read_events
from reference.feeds import SyntheticFeed
from reference.pg_store import CONNINFO_ENV
from reference.runtime import Runtime
from reference.sqlite_ticks import SqliteTickWriter
from reference.tickstore import Inserted, TickRow
from reference.topology import parse_topology
from tests.pg_helpers import Installed, install_fresh
from tests.test_agent_backend import postgres_seed
from tests.test_bot_process import bot_args, stream_keys, wait_for_acks

START = 1_750_000_000_000
Key = tuple[int, int]


def _bot(tmp_path: Path, *, writer: Any = None, seconds: float = 2) -> Bot:
    runtime = Runtime(
        "bot", data_dir=tmp_path / "data", events=tmp_path / "bot.jsonl", install_signals=False
    )
    feed = SyntheticFeed(
        seed=3,
        symbols=default_symbols(3),
        ticks_per_second=300,
        start_msc=START,
        clock=lambda: START / 1000 + seconds,
    )
    return Bot(runtime, feed, batch_size=200, max_delay_ms=0, writer=writer)


def _events(bot: Bot, op: str) -> list[dict[str, Any]]:
    bot.runtime.events.flush()
    assert bot.runtime.events.path is not None
    return [e for e in read_events(bot.runtime.events.path) if e["op"] == op]


def _acked(bot: Bot) -> int:
    return sum(e["n"] for e in _events(bot, "ack"))


# -- the switch, and the bot on the SQLite writer ----------------------------------------------


def test_the_topologys_backend_picks_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = _bot(tmp_path)
    assert isinstance(bot.writer, SqliteTickWriter)
    bot.close()
    monkeypatch.delenv(CONNINFO_ENV, raising=False)
    runtime = Runtime(
        "bot",
        topology=parse_topology(postgres_seed()),
        data_dir=tmp_path / "pg",
        install_signals=False,
    )
    with pytest.raises(StoreSetupError, match=f"{CONNINFO_ENV} is not set"):
        open_writer(runtime)


def test_a_busy_ticks_file_is_waited_out_nothing_acknowledged_until_it_is_stored(
    tmp_path: Path,
) -> None:
    bot = _bot(tmp_path)
    bot.conn.execute("PRAGMA busy_timeout = 0")
    holder = sqlite3.connect(tmp_path / "data" / "unified_tick_pipeline.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    bot.step()  # polls, and its commit meets the other writer's lock
    assert bot.pending and bot.counters.busy == 1 and bot.counters.committed == 0
    (commit,) = _events(bot, "commit")
    assert (commit["outcome"], commit["code"]) == ("busy", sqlite3.SQLITE_BUSY)
    assert commit["error"] == "database is locked"
    holder.execute("ROLLBACK")
    received = len(bot.pending)
    assert bot.commit_pending()
    assert not bot.pending and _acked(bot) == received


class Flaky:
    """A TickWriter that fails its first appends with `failures`, then stores in a list."""

    def __init__(self, *failures: StoreFailed) -> None:
        self.failures = list(failures)
        self.sent: list[list[TickRow]] = []
        self.stored: list[TickRow] = []

    def append(self, rows: Sequence[TickRow]) -> Inserted:
        self.sent.append(list(rows))
        if self.failures:
            raise self.failures.pop(0)
        self.stored += rows
        return Inserted(new=len(rows), wait_ns=0)

    def last_keys(self, symbols: object) -> dict[str, Key]:
        return {}

    def reopen_replaced(self) -> str | None:
        return None

    def monitor(self) -> dict[str, object]:
        return {}

    def close(self) -> None:
        pass


def test_a_commit_whose_outcome_is_unclear_is_not_acknowledged_and_is_sent_again(
    tmp_path: Path,
) -> None:
    """A broken server connection (here during COMMIT) is of the moment: an error event, the
    rows stay pending, the next step sends them again (a no-op for rows that did commit)."""
    lost = StoreFailed(
        "append ticks", "ticks", "error", None, "server closed the connection unexpectedly",
        unclear=True, transient=True,
    )  # fmt: skip
    writer = Flaky(lost)
    bot = _bot(tmp_path, writer=writer)
    assert not bot.step()
    (commit,) = _events(bot, "commit")
    assert commit["outcome"] == "error" and commit["code"] is None
    assert bot.counters.errors == 1 and bot.counters.busy == 0
    assert _acked(bot) == 0 and bot.counters.last_ack == {}
    pending = list(bot.pending)
    assert bot.commit_pending()
    assert writer.sent[1] == writer.sent[0]  # the same rows again, first
    assert writer.stored == pending and _acked(bot) == len(pending)


def test_a_failure_waiting_cannot_mend_ends_the_bot_after_its_event(tmp_path: Path) -> None:
    denied = StoreFailed("append ticks", "ticks", "denied", "42501", "permission denied")
    bot = _bot(tmp_path, writer=Flaky(denied))
    with pytest.raises(StoreFailed):
        bot.step()
    (commit,) = _events(bot, "commit")
    assert (commit["outcome"], commit["code"]) == ("denied", "42501")
    assert _acked(bot) == 0


def _snapshot(path: Path, copy: Path) -> None:
    """A copy of the database at `path`, by the backup API (a restore's file)."""
    source = sqlite3.connect(path)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _stored(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM ticks").fetchone()[0])
    finally:
        conn.close()


def test_rows_written_into_a_replaced_file_are_written_again_and_acknowledged_once(
    tmp_path: Path,
) -> None:
    """The file at the path is swapped, right after the first batch committed, for a copy taken
    before it (a restore): the batch went into a file that no longer has a name, so it is not
    acknowledged; the bot reopens the path, writes it again there and acknowledges it once."""
    bot = _bot(tmp_path, seconds=1)
    path = tmp_path / "data" / "unified_tick_pipeline.db"
    copy = tmp_path / "restore.db"
    writer = bot.writer
    assert isinstance(writer, SqliteTickWriter)
    append = writer.append
    sent: list[list[TickRow]] = []

    def append_then_restore(rows: Sequence[TickRow]) -> Inserted:
        sent.append(list(rows))
        if len(sent) > 1:
            return append(rows)
        _snapshot(path, copy)
        inserted = append(rows)
        os.replace(copy, path)
        return inserted

    writer.append = append_then_restore  # type: ignore[method-assign]
    bot.step()
    (replaced,) = _events(bot, "file_replaced")
    assert replaced["db"] == "ticks" and replaced["outcome"] == "error"
    assert str(path) in replaced["error"] and "written again" in replaced["error"]
    assert sent[1] == sent[0] and bot.counters.errors == 1 and not bot.pending
    acks = _events(bot, "ack")
    assert len(acks) == len(sent) - 1 and acks[0]["n"] == len(sent[0])
    bot.close()
    assert _stored(path) == _acked(bot) == bot.counters.received


def test_a_file_replaced_between_batches_is_reopened_and_the_next_batch_stored_in_it(
    tmp_path: Path,
) -> None:
    clock = [START / 1000 + 1]
    runtime = Runtime(
        "bot", data_dir=tmp_path / "data", events=tmp_path / "bot.jsonl", install_signals=False
    )
    feed = SyntheticFeed(
        seed=3, symbols=("EURUSD",), ticks_per_second=300, start_msc=START, clock=lambda: clock[0]
    )
    bot = Bot(runtime, feed, batch_size=200, max_delay_ms=0)
    bot.step()
    first = _acked(bot)
    path = tmp_path / "data" / "unified_tick_pipeline.db"
    copy = tmp_path / "restore.db"
    _snapshot(path, copy)
    os.replace(copy, path)
    clock[0] += 1
    bot.step()
    assert len(_events(bot, "file_replaced")) == 1 and bot.counters.errors == 1
    bot.close()
    assert _stored(path) == _acked(bot) > first  # the copy's rows and the new batch, in it


# -- the bot process on PostgreSQL ---------------------------------------------------------------

WAIT_S = 30.0


class PgBot:
    """A topology installed on a fresh database, and a supervisor that starts the bot on it as
    `python -m reference.bot`, on the bot's login."""

    def __init__(self, server: PgServer, tmp_path: Path) -> None:
        topology = parse_topology(postgres_seed())
        self.installed: Installed = install_fresh(server, topology)
        topology_file = tmp_path / "seed-pg.toml"
        topology_file.write_text(topology.to_toml())
        self.supervisor = Supervisor(
            tmp_path / "run",
            topology,
            topology_arg=topology_file,
            role_env={"bot": {CONNINFO_ENV: self.installed.conninfo("bot")}},
        )

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(read_events(self.supervisor.events_path("bot")))

    def stored(self) -> dict[str, list[Key]]:
        rows = self.installed.query("SELECT symbol, time_msc, seq FROM ticks ORDER BY 1, 2, 3")
        out: dict[str, list[Key]] = {}
        for symbol, time_msc, seq in rows:
            out.setdefault(symbol, []).append((time_msc, seq))
        return out

    def bot_backends(self) -> int:
        (row,) = self.installed.query(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'splitdb-bot' AND datname = current_database()"
        )
        return int(row[0])

    def wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            managed = self.supervisor.processes.get("bot")
            if managed is not None and not managed.alive():
                log = self.supervisor.run_dir / "logs" / "bot.stderr"
                pytest.fail(f"bot exited before {what}:\n{log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {WAIT_S} s")
            time.sleep(0.02)


@pytest.fixture
def pg_bot(pg_server: PgServer, tmp_path: Path) -> Iterator[PgBot]:
    stack = PgBot(pg_server, tmp_path)
    with stack.supervisor:
        yield stack


def acknowledged(
    pg_bot: PgBot, args: list[str]
) -> tuple[dict[str, list[tuple[int, range]]], dict[str, list[Key]]]:
    """Assert every acknowledged tick is on the server, once: the stored keys of each symbol
    are a prefix of the seeded stream (no gap, no duplicate, nothing else), each ack's ticks lie
    in it, and acks ascend without overlap (contiguous within one incarnation). Returns per
    symbol the stream indexes each ack covered, with its pid, and the stored keys."""
    stored = pg_bot.stored()
    newest = max(keys[-1][0] for keys in stored.values())
    stream = stream_keys(args, newest)
    for symbol, keys in stored.items():
        assert keys == stream[symbol][: len(keys)], f"{symbol}: not the stream's prefix"
    where = {symbol: {key: i for i, key in enumerate(keys)} for symbol, keys in stream.items()}
    acked: dict[str, list[tuple[int, range]]] = {}
    for event in pg_bot.events:
        if event["op"] != "ack":
            continue
        for symbol, last in event["last"].items():
            end = where[symbol][(last[0], last[1])] + 1
            acked.setdefault(symbol, []).append(
                (event["pid"], range(end - event["rows"][symbol], end))
            )
    for symbol, ranges in acked.items():
        assert ranges[-1][1].stop <= len(stored[symbol]), f"{symbol}: acknowledged, not stored"
        for (pid, before), (next_pid, after) in pairwise(ranges):
            assert after.start >= before.stop, f"{symbol}: acknowledged twice"
            if next_pid == pid:
                assert after.start == before.stop, f"{symbol}: a gap within one incarnation"
    return acked, stored


@pytest.mark.slow
def test_bot_on_postgres_commits_and_every_ack_is_on_the_server(pg_bot: PgBot) -> None:
    args = bot_args()
    supervisor = pg_bot.supervisor
    supervisor.start("bot", args)
    supervisor.wait_ready("bot", timeout=WAIT_S)
    wait_for_acks(supervisor, "bot", 5)
    record = supervisor.stop("bot")
    assert (record.code, record.how) == (0, "sigterm")
    acked, stored = acknowledged(pg_bot, args)
    # A clean stop commits and acknowledges everything: acks and rows agree exactly.
    assert {s: sum(len(r) for _, r in ranges) for s, ranges in acked.items()} == {
        s: len(keys) for s, keys in stored.items()
    }
    assert set(stored) == set(default_symbols(5))
    section = supervisor.board.section("bot")
    assert section["state"] == "stopped"
    assert section["committed"] == section["received"] == sum(map(len, stored.values()))
    # Nothing went to SQLite: the data directory holds the status board (and its lock) only.
    board = supervisor.topology.status.name
    assert [p.name for p in supervisor.data_dir.iterdir() if not p.name.startswith(board)] == []


@pytest.mark.slow
def test_bot_on_postgres_killed_and_restarted_resumes_after_the_last_committed_tick(
    pg_bot: PgBot,
) -> None:
    args = bot_args(symbols=5, rate=5000.0, batch=100)
    supervisor = pg_bot.supervisor
    supervisor.start("bot", args)
    supervisor.wait_ready("bot", timeout=WAIT_S)
    # Per restart: how many ticks of each symbol the server held when the new bot started.
    held: list[dict[str, int]] = []
    for pause in (0.05, 0.3, 0.1, 0.2, 0.15):
        time.sleep(pause)
        supervisor.kill("bot")
        # The killed bot's server backend may still be finishing a COMMIT it received: look
        # once it is gone.
        pg_bot.wait_for("the killed bot's backend to end", lambda: pg_bot.bot_backends() == 0)
        held.append({s: len(keys) for s, keys in pg_bot.stored().items()})
        supervisor.restart("bot", timeout=WAIT_S)
    acks = sum(e["op"] == "ack" for e in pg_bot.events)
    wait_for_acks(supervisor, "bot", acks + 3)
    supervisor.stop("bot")
    acked, _ = acknowledged(pg_bot, args)
    assert sum(len(ranges) for ranges in acked.values()) > 20
    # Each restarted incarnation's first ack of a symbol starts right after what the server
    # held: nothing sent again before it, nothing skipped.
    incarnations = [e["pid"] for e in pg_bot.events if e["op"] == "ready"]
    assert len(incarnations) == len(held) + 1
    checked = 0
    for pid, before in zip(incarnations[1:], held, strict=True):
        for symbol, ranges in acked.items():
            first = next((r for p, r in ranges if p == pid), None)
            if first is not None:
                assert first.start == before.get(symbol, 0), f"{symbol} after restart"
                checked += 1
    assert checked > 0


@pytest.mark.slow
def test_bot_on_postgres_survives_its_server_backend_being_terminated(pg_bot: PgBot) -> None:
    args = bot_args()
    supervisor = pg_bot.supervisor
    # A long heartbeat, and its first glance done: the monitoring glance (on the same
    # connection) must not be the first to meet the broken connection, a commit is.
    supervisor.start("bot", [*args, "--heartbeat", "30"])
    supervisor.wait_ready("bot", timeout=WAIT_S)
    wait_for_acks(supervisor, "bot", 3)
    pg_bot.wait_for("the first glance", lambda: "monitor" in supervisor.board.section("bot"))
    killed = pg_bot.installed.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'splitdb-bot' AND datname = current_database()"
    )
    assert killed == [(True,)]

    def failed_and_acked_again() -> bool:
        events = pg_bot.events
        failed = [i for i, e in enumerate(events) if e["op"] == "commit"]
        return bool(failed) and sum(e["op"] == "ack" for e in events[failed[0] :]) >= 3

    pg_bot.wait_for("a failed commit, then acks", failed_and_acked_again)
    assert pg_bot.bot_backends() == 1  # reconnected
    record = supervisor.stop("bot")
    assert (record.code, record.how) == (0, "sigterm")
    commits = [e for e in pg_bot.events if e["op"] == "commit"]
    # The broken connection was an error event (57P01, or no SQLSTATE when it broke mid-COPY
    # or mid-COMMIT), not an exit.
    assert commits and all(e["outcome"] == "error" for e in commits)
    assert {e["pid"] for e in pg_bot.events} == {supervisor.processes["bot"].pid}
    acked, stored = acknowledged(pg_bot, args)
    assert set(acked) == set(stored)
