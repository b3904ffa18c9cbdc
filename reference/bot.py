"""The tick bot: the only writer of the ticks database.

`python -m reference.bot --data-dir DIR --events FILE [--symbols 50 --rate 20000 ...]`

The bot writes and reads only through its writer (`reference.storage.TickWriter`): on the
topology's `backend`, its SQLite file through the access manager (`reference.sqlite_ticks`) or
a PostgreSQL server as the role's login, from `SPLITDB_PG_CONNINFO` (`reference.pg_store`).

Ticks come from a feed (the seeded simulator by default, the real MetaTrader5 package on Windows,
or a recorded file) and are inserted in batched transactions: a batch is committed when it holds
`--batch-size` ticks or its oldest tick has waited `--max-delay-ms`. After each commit the bot
appends an `ack` event (per symbol: the last committed key and the number of rows) to its event
log. An acknowledged tick must never be lost: acks are written only after COMMIT returns.
A busy or locked database, a full disk or a lost server connection is recorded as a `commit`
event and the batch retried, never dropped (a batch whose COMMIT's outcome was unclear too: it
is not acknowledged, and sent again); any other failure ends the process.
A malformed tick (NaN or a non-positive price, ask below bid, time going backwards, ...: the
rules are reference.tickcheck's) is not stored: it is counted and reported in a `tick_rejected`
event naming the reason, and the ticks around it are stored as usual.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from pathlib import Path

from reference import crashpoints
from reference.errors import SplitdbError, StoreFailed
from reference.feeds import Feed, ReplayFeed, SyntheticFeed, TickBatch, open_mt5_feed
from reference.market_clock import MAX_SPEED, MarketClock, SkewedWall
from reference.runtime import OneLineParser, Runtime, add_common_arguments, number_in
from reference.sqlite_ticks import SqliteTickWriter
from reference.storage import TickWriter
from reference.tickcheck import Checked, check_ticks
from reference.tickstore import TickRow

# Seconds the bot spends committing what it holds after a stop signal; well inside the 5 s a
# supervisor (`splitdb run`, `splitdb up`) waits before SIGKILL, with room for the final
# heartbeat and its monitoring read on a busy machine.
STOP_FLUSH_S = 2.0

# The feed hands out at most this many ticks per symbol and poll (`max_ticks`, capped so that
# a poll of every symbol fits in --max-pending): a backlog, whether a market start in the past or
# more ticks offered than the bot can take, is fetched a slice at a time, between which the bot
# commits, checks its stop flag and --duration. Fetching the whole gap instead made a start days
# back tens of GB, and 1,000,000 ticks/s offered 1.1 GB. Why 2000, not a batch: each poll reads
# the cursor's second again from its start (the API has second resolution), at 20,000 ticks/s
# a symbol about 10,000 ticks a poll, so a larger count copies less per tick handed out.
MAX_TICKS_PER_POLL = 2000

# The latest market start the clock can hold: 9999-12-31T23:59:59.999Z in epoch milliseconds
# (datetime's limit; SQLite's INTEGER and numpy's int64 hold more).
MAX_START_MSC = 253_402_300_799_999

# The most symbols `--symbols N` makes, and the longest --poll-ms / --max-delay-ms (a minute).
MAX_SYMBOLS = 10_000
MAX_WAIT_MS = 60_000.0
_COUNT = re.compile(r"[+-]?[0-9]+")

_MAJORS = (
    "EURUSD",
    "GBPUSD",
    "USDJPY",
    "USDCHF",
    "AUDUSD",
    "USDCAD",
    "NZDUSD",
    "EURGBP",
    "EURJPY",
    "XAUUSD",
)


def default_symbols(count: int) -> tuple[str, ...]:
    """`count` symbol names: the FX majors first, then SYM0011, SYM0012, ..."""
    if count < 1:
        raise ValueError(f"count={count} must be >= 1")
    names = list(_MAJORS[:count])
    names += [f"SYM{i:04d}" for i in range(len(names) + 1, count + 1)]
    return tuple(names)


def open_writer(runtime: Runtime) -> TickWriter:
    """The bot's writer on the topology's backend: the SQLite file through the access manager,
    or the PostgreSQL server as the role's login (`SPLITDB_PG_CONNINFO`)."""
    if runtime.topology.backend == "postgres":
        # psycopg is imported only by a process that uses it.
        from reference.pg_store import PgTickWriter, store_from_env

        return store_from_env(PgTickWriter)
    return SqliteTickWriter(runtime.access, runtime.role)


def batch_rows(batch: TickBatch, last_key: tuple[int, int] | None = None) -> Checked:
    """A feed batch checked: rows to store (the ticks table's column order), rejected ticks.

    `last_key` is the symbol's last stored or accepted key; a tick not after it is rejected.
    """
    return check_ticks(batch.symbol, batch.ticks, batch.seq, last_key)


@dataclass
class Counters:
    """What the bot has done so far; published on the status board."""

    received: int = 0
    committed: int = 0
    commits: int = 0
    busy: int = 0
    errors: int = 0
    max_pending: int = 0
    # Malformed ticks not stored (reference.tickcheck), in all and per reason.
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    last_ack: dict[str, list[int]] = field(default_factory=dict)


# A market clock off by this much from what the wall time explains has jumped.
CLOCK_JUMP_S = 5.0

_SYMBOL = itemgetter(0)  # of a row in TICK_COLUMNS order


class Bot:
    """The ingest loop: poll the feed, batch, commit, acknowledge."""

    def __init__(
        self,
        runtime: Runtime,
        feed: Feed,
        *,
        batch_size: int = 1000,
        max_delay_ms: float = 50.0,
        poll_ms: float = 5.0,
        monitor_s: float = 2.0,
        max_pending: int = 200_000,
        clock: MarketClock | None = None,
        writer: TickWriter | None = None,
    ) -> None:
        self.runtime = runtime
        self.feed = feed
        self.clock = clock or MarketClock()
        self._last_clock: tuple[float, float] | None = None
        self.batch_size = batch_size
        self.max_delay_s = max_delay_ms / 1000
        self.poll_s = poll_ms / 1000
        self.monitor_s = monitor_s
        self.max_pending = max_pending
        self.counters = Counters()
        self.pending: list[TickRow] = []
        # Per symbol, the key of the last tick stored or waiting to be: a later tick must follow.
        self._last_key: dict[str, tuple[int, int]] = {}
        self._oldest_pending = 0.0
        self._last_monitor = 0.0
        self.writer = open_writer(runtime) if writer is None else writer
        try:
            self._resume()
        except BaseException:
            self.writer.close()
            raise

    @property
    def conn(self) -> sqlite3.Connection:
        """The SQLite writer's connection (tests and their fixtures reach the file through it);
        AttributeError on another backend."""
        if not isinstance(self.writer, SqliteTickWriter):
            raise AttributeError(f"{type(self.writer).__name__} has no SQLite connection")
        return self.writer.conn

    def _resume(self) -> None:
        """Seek the feed past what the database already holds, so a restart re-sends nothing."""
        for symbol, (time_msc, seq) in self.writer.last_keys(self.feed.symbols).items():
            self.feed.seek(symbol, time_msc, seq)
            self.counters.last_ack[symbol] = [time_msc, seq]
            self._last_key[symbol] = (time_msc, seq)
            # A faster market must not restart behind what is stored, or ingest stalls.
            self.clock.advance_to(time_msc / 1000)

    def run(self, *, duration_s: float | None = None) -> Counters:
        """Ingest until stopped (SIGTERM) or `duration_s` passes; commits what is pending."""
        runtime = self.runtime
        runtime.ready(symbols=len(self.feed.symbols), batch_size=self.batch_size)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not runtime.stopping:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if not self.step():
                runtime.wait(self.poll_s)
        # Stopping: commit what was received for up to STOP_FLUSH_S (retrying a busy
        # database), then report. The budget counts from the signal, not from the end of the
        # step it interrupted, so the bot exits inside a supervisor's grace period even when
        # it was far behind. Ticks still pending were never acknowledged; a restart fetches
        # them again.
        flush_deadline = (runtime.stop_requested or time.monotonic()) + STOP_FLUSH_S
        while self.pending and time.monotonic() < flush_deadline:
            if not self.commit_pending(deadline=flush_deadline):
                time.sleep(0.05)
        self.publish(force=True)
        return self.counters

    def _notice_clock_jump(self) -> None:
        """A market clock that moved by more than `CLOCK_JUMP_S` beyond what the wall time
        since the last step explains (the system clock stepped): said once, as an event. The
        feed is cursor-based, so a step back fetches nothing new until the clock passes the
        cursor again, and a step forward fetches the gap (backpressure bounds it)."""
        market, wall = self.clock(), time.monotonic()
        last = self._last_clock
        self._last_clock = (market, wall)
        if last is None:
            return
        speed = float(getattr(self.clock, "speed", 1.0))
        drift = (market - last[0]) - (wall - last[1]) * speed
        if abs(drift) >= CLOCK_JUMP_S:
            self.runtime.events.emit(
                "clock_jump",
                outcome="error",
                by_s=round(drift, 3),
                error=f"the market clock jumped {drift:+.1f} s (the system clock stepped)",
            )
            self.runtime.events.flush()

    def step(self) -> bool:
        """One poll of the feed, and a commit if the batch is full or old enough.

        Backpressure: with `max_pending` ticks waiting, the feed is not polled; its cursor stays,
        so the ticks are fetched later instead of piling up in memory (the feed keeps history).

        Returns True when the feed is behind (the poll brought at least a batch) and every
        commit went through: then the next poll is due at once, not after `poll_ms`.
        """
        self._notice_clock_jump()
        room = self.max_pending - len(self.pending)
        batches = self.feed.poll() if room > 0 else []
        share = max(1, room // max(1, len(batches)))
        polled = 0
        for batch in batches:
            if not len(batch.ticks):
                continue
            polled += len(batch.ticks)
            if len(batch.ticks) > share:
                # Keep this symbol's fair share and rewind its cursor to the last tick kept.
                batch = TickBatch(batch.symbol, batch.ticks[:share], batch.seq[:share])
                self.feed.seek(batch.symbol, *batch.last_key)
            checked = batch_rows(batch, self._last_key.get(batch.symbol))
            self.counters.received += len(batch.ticks)
            if checked.rejected:
                self._reject(batch.symbol, checked)
            if not checked.rows:
                continue
            assert checked.last_key is not None
            self._last_key[batch.symbol] = checked.last_key
            if not self.pending:
                self._oldest_pending = time.monotonic()
            self.pending.extend(checked.rows)
        self.counters.max_pending = max(self.counters.max_pending, len(self.pending))
        committed = True
        if self.pending and (
            len(self.pending) >= self.batch_size
            or time.monotonic() - self._oldest_pending >= self.max_delay_s
        ):
            committed = self.commit_pending()
        self.publish()
        # A busy or full database is waited out with the pause, never in a tight loop.
        return committed and polled >= self.batch_size

    def _reject(self, symbol: str, checked: Checked) -> None:
        """Count the batch's malformed ticks; one `tick_rejected` event per reason, with the
        first such tick's key and values (a feed gone wrong sends thousands: one line each
        would drown the log)."""
        c = self.counters
        c.rejected += len(checked.rejected)
        for reason, n in checked.counts().items():
            c.rejected_by_reason[reason] = c.rejected_by_reason.get(reason, 0) + n
            first = next(r for r in checked.rejected if r.reason == reason)
            self.runtime.events.emit(
                "tick_rejected",
                db="ticks",
                symbol=symbol,
                reason=reason,
                n=n,
                first=[first.time_msc, first.seq],
                detail=first.detail,
                outcome="rejected",
            )

    def commit_pending(self, *, deadline: float | None = None) -> bool:
        """Commit pending rows batch by batch, acking each; False if a commit failed and waits
        for the next step (a busy or locked database, a full disk, a lost server connection).

        With a `deadline` (monotonic seconds), stops starting new batches after it; without
        one, stops when a stop signal arrives (the stop path then flushes on its own budget).
        """
        # Committed rows leave `pending` once, on the way out: deleting each batch from the
        # front moved the whole list (up to --max-pending rows) once per batch.
        done = 0
        writer = self.writer
        try:
            while done < len(self.pending) and (
                time.monotonic() < deadline if deadline is not None else not self.runtime.stopping
            ):
                chunk = self.pending[done : done + self.batch_size]
                # Before writing too: the smaller the window in which commits (and a checkpoint
                # they trigger) reach a replaced file, the less there is to put right.
                replaced = writer.reopen_replaced()
                if replaced is not None:
                    self._replaced(replaced)
                started = time.perf_counter_ns()
                try:
                    inserted = writer.append(chunk)
                except StoreFailed as exc:
                    if exc.outcome in ("busy", "locked"):
                        self.counters.busy += 1
                    else:
                        self.counters.errors += 1
                    self.runtime.events.emit(
                        "commit",
                        db="ticks",
                        dur_us=(time.perf_counter_ns() - started) // 1000,
                        rows=len(chunk),
                        outcome=exc.outcome,
                        code=exc.code,
                        error=exc.detail,
                    )
                    # Busy, a full disk, a lost server connection: waited out, the rows stay
                    # pending (not acknowledged), backpressure stops the feed, the next step tries
                    # again. A COMMIT whose outcome was unclear too: the rows are sent again, a
                    # no-op for any the database holds (keyed by content).
                    if not exc.transient:
                        raise
                    return False
                dur_us = (time.perf_counter_ns() - started) // 1000
                replaced = writer.reopen_replaced()
                if replaced is not None:
                    # The rows went to a file that no longer has a name: not acknowledged. The
                    # writer is on the file now at the path: write the same rows there (keyed by
                    # content, so rows the new file already holds are not stored twice).
                    self._replaced(replaced)
                    continue
                done += len(chunk)
                left = len(self.pending) - done
                self._acknowledge(chunk, dur_us, inserted.wait_ns // 1000, left=left)
            return True
        finally:
            del self.pending[:done]

    def _replaced(self, where: str) -> None:
        """Say that the ticks database at `where` was replaced (the writer has reopened it)."""
        self.counters.errors += 1
        self.runtime.events.emit(
            "file_replaced",
            db="ticks",
            outcome="error",
            error=f"{where} was replaced under the bot: reopening; rows not "
            "yet acknowledged are written again into the file now at the path",
        )
        self.runtime.events.flush()

    def _acknowledge(
        self, chunk: Sequence[TickRow], dur_us: int, wait_us: int, *, left: int | None = None
    ) -> None:
        """Record a committed batch and write its ack event; `left`: rows still pending after
        it (default: all of `pending`)."""
        if left is None:
            left = len(self.pending)
        # Rows come in runs of one symbol, keys increasing within a run (a poll's batch per
        # symbol): per run, its last row is the symbol's last key so far and its first the
        # oldest tick. Python work per run, not per row (a loop over the rows was 4% of the bot
        # at its ceiling); a symbol in two runs gets the later key and both counts.
        last: dict[str, list[int]] = {}
        rows: dict[str, int] = {}
        oldest = None
        end = 0
        for symbol, run in groupby(map(_SYMBOL, chunk)):
            first = chunk[end][1]
            oldest = first if oldest is None or first < oldest else oldest
            n = len(list(run))
            end += n
            row = chunk[end - 1]
            last[symbol] = [row[1], row[2]]
            rows[symbol] = rows.get(symbol, 0) + n
        self.counters.committed += len(chunk)
        self.counters.commits += 1
        self.counters.last_ack.update(last)
        if left:
            self._oldest_pending = time.monotonic()
        # How old the oldest tick of the batch was when it became durable: a backlog shows up
        # here as a growing age long before memory runs out.
        age_ms = int(self.clock.wall_ms(self.clock() * 1000 - (oldest or 0)))
        self.runtime.events.emit(
            "ack",
            db="ticks",
            dur_us=dur_us,
            wait_us=wait_us,
            age_ms=age_ms,
            pending=left,
            outcome="ok",
            last=last,
            rows=rows,
            n=len(chunk),
        )
        # An ack is a promise to the outside: push it to the OS now, so a kill keeps it.
        self.runtime.events.flush()
        crashpoints.reach("bot.after_ack")

    def publish(self, *, force: bool = False) -> None:
        """Heartbeat with counters, plus the seed's monitoring summary of the other databases.

        The summary is read only for a heartbeat that goes out (every `monitor_s` at most):
        read for one the runtime then throttled, it was lost, and its clock said it was done,
        so the board kept the first summary (both databases missing) for good.
        """
        if not force and not self.runtime.heartbeat_due():
            return
        c = self.counters
        summary: dict[str, object] = {}
        now = time.monotonic()
        if force or now - self._last_monitor >= self.monitor_s:
            self._last_monitor = now
            summary = {"monitor": self._monitor()}
        self.runtime.heartbeat(
            force=True,
            received=c.received,
            committed=c.committed,
            commits=c.commits,
            busy=c.busy,
            errors=c.errors,
            pending=len(self.pending),
            max_pending=c.max_pending,
            rejected=c.rejected,
            rejected_by_reason=dict(c.rejected_by_reason),
            **summary,
        )

    def _monitor(self) -> dict[str, object]:
        """Read-only glance at the analysis and logs databases, as the seed's bot does."""
        return self.writer.monitor()

    def close(self) -> None:
        self.writer.close()
        self.feed.close()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m reference.bot", description=__doc__)
    add_common_arguments(parser)
    parser.add_argument(
        "--feed", choices=("synthetic", "mt5", "replay"), default="synthetic", help="tick source"
    )
    parser.add_argument("--replay-file", type=Path, help="recorded ticks (.npz) for --feed replay")
    parser.add_argument(
        "--symbols",
        default="10",
        help="a count (default 10) or a comma-separated list of symbol names",
    )
    parser.add_argument(
        "--rate",
        type=number_in(0, 1e9, above=True, unit="ticks per second"),
        default=2000.0,
        help="synthetic ticks per second, all symbols",
    )
    parser.add_argument("--seed", type=int, default=1, help="synthetic feed seed")
    parser.add_argument(
        "--start-msc",
        type=int,
        default=None,
        help="synthetic market start (epoch ms); fix it to replay the same ticks",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="synthetic market time per wall-clock second (60: a minute a second)",
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="max ticks per transaction")
    parser.add_argument(
        "--max-delay-ms",
        type=number_in(0, MAX_WAIT_MS, unit="ms"),
        default=50.0,
        help="max wait before a partial batch commits",
    )
    parser.add_argument(
        "--poll-ms",
        type=number_in(0, MAX_WAIT_MS, unit="ms"),
        default=5.0,
        help="pause between feed polls",
    )
    parser.add_argument(
        "--max-pending",
        type=int,
        default=200_000,
        help="stop polling the feed while this many ticks wait to be committed",
    )
    parser.add_argument(
        "--duration",
        type=number_in(0, 1e9, above=True, unit="seconds"),
        default=None,
        help="stop after N seconds",
    )
    args = parser.parse_args(argv)
    if args.max_pending < args.batch_size:
        parser.error(f"--max-pending={args.max_pending} must be >= --batch-size={args.batch_size}")
    if args.batch_size < 1:
        parser.error(f"--batch-size={args.batch_size} must be >= 1")
    if not 0 < args.speed <= MAX_SPEED:
        parser.error(f"--speed={args.speed} must be > 0 and <= {MAX_SPEED:g}")
    count = args.symbols.strip()
    if _COUNT.fullmatch(count) and not 1 <= int(count) <= MAX_SYMBOLS:
        parser.error(
            f"--symbols={args.symbols}: give a count from 1 to {MAX_SYMBOLS} or a "
            "comma-separated list of names"
        )
    if args.start_msc is not None and not 0 <= args.start_msc <= MAX_START_MSC:
        parser.error(
            f"--start-msc={args.start_msc} must be epoch milliseconds, 0..{MAX_START_MSC} "
            "(up to the year 9999)"
        )
    if args.feed == "replay" and args.replay_file is None:
        parser.error("--feed replay needs --replay-file PATH (a file written by record_ticks)")
    return args


def _symbols(spec: str) -> tuple[str, ...]:
    if _COUNT.fullmatch(spec.strip()):
        return default_symbols(int(spec))
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    if not names:
        raise SplitdbError(f"--symbols={spec!r}: give a count or a comma-separated list of names")
    return names


def open_feed(args: argparse.Namespace, clock: MarketClock) -> Feed:
    """The feed the arguments ask for; the synthetic one runs on `clock`."""
    symbols = _symbols(args.symbols)
    if args.feed == "replay":
        return ReplayFeed(args.replay_file)
    if args.feed == "mt5":
        return open_mt5_feed(symbols, max_ticks=per_poll_limit(len(symbols), args.max_pending))
    # --rate is per wall-clock second; the simulator counts market seconds.
    market_rate = args.rate / clock.speed
    return SyntheticFeed(
        seed=args.seed,
        symbols=symbols,
        ticks_per_second=market_rate / len(symbols),
        start_msc=args.start_msc,
        clock=clock,
        max_ticks=per_poll_limit(len(symbols), args.max_pending),
    )


def per_poll_limit(symbols: int, max_pending: int) -> int:
    """Most ticks one poll hands out per symbol: MAX_TICKS_PER_POLL, less when a poll of every
    symbol would not fit in `max_pending`."""
    return max(1, min(MAX_TICKS_PER_POLL, max_pending // max(1, symbols)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bot until SIGTERM; exit 0 after committing what it received."""
    args = _parse_args(argv)
    try:
        runtime = Runtime.from_args("bot", args)
        origin = None if args.start_msc is None else args.start_msc / 1000
        skew_file = os.environ.get("SPLITDB_CLOCK_SKEW_FILE")
        clock = MarketClock(
            speed=args.speed,
            origin=origin if args.speed != 1 else None,
            **({"wall": SkewedWall(skew_file)} if skew_file else {}),
        )
        bot = Bot(
            runtime,
            open_feed(args, clock),
            batch_size=args.batch_size,
            max_delay_ms=args.max_delay_ms,
            poll_ms=args.poll_ms,
            max_pending=args.max_pending,
            clock=clock,
        )
    except SplitdbError as exc:
        print(f"reference.bot: error: {exc}", file=sys.stderr)
        return 2
    try:
        counters = bot.run(duration_s=args.duration)
    finally:
        bot.close()
    runtime.finish(
        committed=counters.committed,
        commits=counters.commits,
        busy=counters.busy,
        rejected=counters.rejected,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
