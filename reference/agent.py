"""The analysis agent: the only writer of the analysis database, a reader of ticks and logs.

`python -m reference.agent --data-dir DIR --events FILE [--interval 0.2] [--max-ticks 50000]`

Each cycle finds the symbols in the ticks database (a skip-scan over the primary key, not a full
scan), reads each symbol's ticks past its watermark in key order, folds them into bars and
indicators (`reference.analysis`) and writes bars, indicators and the new watermarks in one
transaction. A crash at any moment therefore leaves the watermark and the bars in step: a restart
resumes from the watermarks and counts no tick twice and skips none. The in-memory state of a
symbol is replaced only after its commit; after any failed cycle it is reloaded from the database.

Events (JSON lines, see `reference.events`):

- `analysis_commit`: after each commit; `db="analysis"`, `outcome="ok"`, `dur_us` (BEGIN to
  COMMIT), `ticks` (folded in this commit), `bars` and `indicators` (rows upserted),
  `watermarks` ({symbol: [time_msc, seq]} for the symbols this commit advanced; a symbol absent
  keeps its previous watermark). Flushed at once: the harness measures analysis lag from these.
- `analysis_retry`: a cycle failed on an operational SQLite error (busy, locked, disk full, a
  table not created yet) and is retried next cycle; `db`, `stage` ('symbols', 'restore',
  'read_ticks', 'commit', 'read_logs', 'open'), `outcome`, `code`, `error`, `dur_us`.
- `waiting`: a database to read does not exist yet (`db`, `path`); the agent keeps running.
- `ready`, `stopped`, `signal` (from `reference.runtime`), `fatal` (`error`) before exit 1.

Status board section `agent`: ticks_processed, bars_written, indicators_written, commits,
cycles, retries, last_cycle_ms, symbols, backlog (the last cycle hit --max-ticks),
watermark_age_ms (wall clock minus the newest watermark's time_msc: a lag when the feed stamps
ticks with wall-clock time), and from the logs database (read-only) log_requests and
log_last_status.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reference import crashpoints
from reference.access import transaction
from reference.analysis import (
    RESTORE_BARS,
    TIMEFRAMES,
    Bar,
    Key,
    SeriesState,
    SymbolState,
    Tick,
    Update,
    fold,
    replay_series,
    restore_series,
)
from reference.errors import CycleFailed, SplitdbError, StateUnavailable
from reference.events import outcome_of
from reference.runtime import OneLineParser, Runtime, add_common_arguments, number_in
from reference.schema import BAR_COLUMNS, ensure_schema

# Each step seeks the primary key to the next symbol: O(symbols * log ticks), where
# SELECT DISTINCT would read every tick.
SYMBOLS_SQL = """
WITH RECURSIVE s(symbol) AS (
    SELECT min(symbol) FROM ticks
    UNION ALL
    SELECT (SELECT min(symbol) FROM ticks WHERE symbol > s.symbol) FROM s
    WHERE s.symbol IS NOT NULL
)
SELECT symbol FROM s WHERE symbol IS NOT NULL
"""
TICKS_AFTER_SQL = (
    "SELECT time_msc, seq, bid, volume_real FROM ticks "
    "WHERE symbol = ? AND (time_msc, seq) > (?, ?) ORDER BY time_msc, seq LIMIT ?"
)
TICKS_FIRST_SQL = (
    "SELECT time_msc, seq, bid, volume_real FROM ticks "
    "WHERE symbol = ? ORDER BY time_msc, seq LIMIT ?"
)
_BAR_SELECT = "SELECT start_msc, open, high, low, close, tick_count, volume FROM bars"
UPSERT_BARS = (
    f"INSERT INTO bars ({', '.join(BAR_COLUMNS)}) VALUES ({', '.join('?' for _ in BAR_COLUMNS)}) "
    "ON CONFLICT (symbol, timeframe, start_msc) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in BAR_COLUMNS[3:])
)
UPSERT_INDICATORS = (
    "INSERT INTO indicators (symbol, timeframe, start_msc, name, value) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (symbol, timeframe, start_msc, name) DO UPDATE SET value = excluded.value"
)
UPSERT_WATERMARKS = (
    "INSERT INTO watermarks (symbol, time_msc, seq, ticks_seen, updated_ns) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (symbol) DO UPDATE SET time_msc = excluded.time_msc, "
    "seq = excluded.seq, ticks_seen = excluded.ticks_seen, updated_ns = excluded.updated_ns"
)
LOGS_SUMMARY_SQL = "SELECT id, status FROM request_log ORDER BY id DESC LIMIT 1"


def discover_symbols(ticks_conn: sqlite3.Connection) -> list[str]:
    """The symbols present in the ticks table, in order, by skip-scan of its primary key."""
    return [row[0] for row in ticks_conn.execute(SYMBOLS_SQL)]


def read_ticks(
    ticks_conn: sqlite3.Connection, symbol: str, after: Key | None, limit: int
) -> list[Tick]:
    """Up to `limit` ticks of `symbol` with key > `after` (all from the first if None), in order."""
    if after is None:
        rows = ticks_conn.execute(TICKS_FIRST_SQL, (symbol, limit))
    else:
        rows = ticks_conn.execute(TICKS_AFTER_SQL, (symbol, after[0], after[1], limit))
    return [Tick(*row) for row in rows]


def _bars(rows: Sequence[Sequence[Any]]) -> list[Bar]:
    return [Bar(*row) for row in rows]


def load_symbol(analysis_conn: sqlite3.Connection, symbol: str) -> SymbolState:
    """The state of `symbol` as the last commit left it: watermark, partial bars, indicators.

    Reads the newest `RESTORE_BARS` bars per timeframe and one bar's indicator rows; replays a
    whole series only when those rows are missing (for example, written by another version).
    """
    row = analysis_conn.execute(
        "SELECT time_msc, seq, ticks_seen FROM watermarks WHERE symbol = ?", (symbol,)
    ).fetchone()
    if row is None:
        return SymbolState(symbol)
    series: dict[str, SeriesState] = {}
    for timeframe in TIMEFRAMES:
        newest = analysis_conn.execute(
            f"{_BAR_SELECT} WHERE symbol = ? AND timeframe = ? ORDER BY start_msc DESC LIMIT ?",
            (symbol, timeframe, RESTORE_BARS),
        ).fetchall()
        recent = _bars(newest[::-1])
        complete = len(recent) < RESTORE_BARS
        values: dict[str, float] = {}
        if not complete:
            values = {
                name: value
                for name, value in analysis_conn.execute(
                    "SELECT name, value FROM indicators "
                    "WHERE symbol = ? AND timeframe = ? AND start_msc = ?",
                    (symbol, timeframe, recent[-2].start_msc),
                )
                if value is not None
            }
        try:
            series[timeframe] = restore_series(
                timeframe, recent, complete=complete, last_final_indicators=values
            )
        except StateUnavailable:
            everything = analysis_conn.execute(
                f"{_BAR_SELECT} WHERE symbol = ? AND timeframe = ? ORDER BY start_msc",
                (symbol, timeframe),
            ).fetchall()
            series[timeframe] = replay_series(timeframe, _bars(everything))
    return SymbolState(symbol, (int(row[0]), int(row[1])), int(row[2]), series)


def store(analysis_conn: sqlite3.Connection, updates: Sequence[Update], *, now_ns: int) -> None:
    """Upsert the updates' bars, indicators and watermarks; run it inside one transaction."""
    analysis_conn.executemany(UPSERT_BARS, [row for u in updates for row in u.bars])
    analysis_conn.executemany(UPSERT_INDICATORS, [row for u in updates for row in u.indicators])
    analysis_conn.executemany(
        UPSERT_WATERMARKS,
        [
            (u.symbol, u.watermark[0], u.watermark[1], u.ticks_seen, now_ns)
            for u in updates
            if u.watermark is not None
        ],
    )


@dataclass
class CycleResult:
    """What one cycle did; `commit_us` is 0 when there was nothing to commit."""

    symbols: int = 0
    ticks: int = 0
    bars: int = 0
    indicators: int = 0
    commit_us: int = 0
    backlog: bool = False
    watermarks: dict[str, list[int]] = field(default_factory=dict)


def run_cycle(
    ticks_conn: sqlite3.Connection,
    analysis_conn: sqlite3.Connection,
    states: dict[str, SymbolState],
    *,
    max_ticks: int,
    stopping: Callable[[], bool] = lambda: False,
) -> CycleResult:
    """Fold the next ticks of every symbol (at most `max_ticks` in all) and commit them at once.

    `states` caches each symbol's state; entries change only after the commit. On a SQLite error
    raises CycleFailed (nothing committed, `states` as before); the caller should then clear
    `states` so the next cycle reloads from the database. `stopping` is polled between symbols:
    when it turns True the cycle commits what it has read so far.
    """
    result = CycleResult()
    stage, database = "symbols", "ticks"
    try:
        symbols = discover_symbols(ticks_conn)
        result.symbols = len(symbols)
        if not symbols:
            return result
        # An equal share per symbol, so one busy symbol cannot starve the others.
        limit = max(1, max_ticks // len(symbols))
        new_states: dict[str, SymbolState] = {}
        updates: list[Update] = []
        for symbol in symbols:
            if stopping() and updates:
                break
            state = states.get(symbol)
            if state is None:
                stage, database = "restore", "analysis"
                state = load_symbol(analysis_conn, symbol)
            stage, database = "read_ticks", "ticks"
            ticks = read_ticks(ticks_conn, symbol, state.watermark, limit)
            if not ticks:
                states.setdefault(symbol, state)
                continue
            result.backlog = result.backlog or len(ticks) == limit
            new_states[symbol], update = fold(state, ticks)
            updates.append(update)
        if not updates:
            return result
        stage, database = "commit", "analysis"
        started = time.perf_counter_ns()
        with transaction(analysis_conn):
            store(analysis_conn, updates, now_ns=time.time_ns())
        result.commit_us = (time.perf_counter_ns() - started) // 1000
    except sqlite3.Error as exc:
        raise CycleFailed(stage, database, exc) from exc
    states.update(new_states)
    for update in updates:
        assert update.watermark is not None
        result.ticks += update.ticks
        result.bars += len(update.bars)
        result.indicators += len(update.indicators)
        result.watermarks[update.symbol] = list(update.watermark)
    return result


@dataclass
class Counters:
    """What this agent process has done; published on the status board."""

    ticks_processed: int = 0
    bars_written: int = 0
    indicators_written: int = 0
    commits: int = 0
    cycles: int = 0
    retries: int = 0
    last_cycle_ms: float = 0.0
    symbols: int = 0
    backlog: bool = False
    newest_tick_msc: int | None = None

    def board(self) -> dict[str, Any]:
        age = None
        if self.newest_tick_msc is not None:
            age = time.time_ns() // 1_000_000 - self.newest_tick_msc
        return {
            "ticks_processed": self.ticks_processed,
            "bars_written": self.bars_written,
            "indicators_written": self.indicators_written,
            "commits": self.commits,
            "cycles": self.cycles,
            "retries": self.retries,
            "last_cycle_ms": round(self.last_cycle_ms, 3),
            "symbols": self.symbols,
            "backlog": self.backlog,
            "watermark_age_ms": age,
        }


class Agent:
    """The agent's loop: open connections, run cycles, publish, stop on SIGTERM."""

    def __init__(self, runtime: Runtime, *, interval: float, max_ticks: int) -> None:
        self.runtime = runtime
        self.interval = interval
        self.max_ticks = max_ticks
        self.counters = Counters()
        self.states: dict[str, SymbolState] = {}
        self.readers: dict[str, sqlite3.Connection] = {}
        self.logs_summary: dict[str, Any] = {}
        self._waiting: set[str] = set()
        self._last_publish = float("-inf")
        self.analysis = self._open_analysis()

    def _open_analysis(self) -> sqlite3.Connection:
        conn = self.runtime.access.connect(self.runtime.role, "analysis")
        while True:
            started = time.perf_counter_ns()
            try:
                ensure_schema(conn, "analysis")
                return conn
            except sqlite3.OperationalError as exc:
                # Another writer of a shared file may hold the lock past busy_timeout.
                self._retry(CycleFailed("open", "analysis", exc), started)
                if self.runtime.wait(self.interval):
                    return conn

    def _reopen_replaced(self) -> None:
        """Connections whose file was replaced under the agent are reopened on the file now at
        the path; for its own database, the cached states are dropped too (they may be ahead
        of what the new file holds: the next cycle starts from its watermarks)."""
        conns: dict[str, Any] = {"analysis": self.analysis, **self.readers}
        for database, conn in conns.items():
            if not conn.watch.replaced():
                continue
            self.runtime.events.emit(
                "file_replaced",
                db=database,
                outcome="error",
                error=f"{conn.watch.path} was replaced under the agent: reopening",
            )
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            if database == "analysis":
                self.states.clear()
                self.analysis = self._open_analysis()
            else:
                del self.readers[database]

    def reader(self, database: str) -> sqlite3.Connection | None:
        """A read connection to `database`, or None while its file does not exist yet."""
        conn = self.readers.get(database)
        if conn is not None:
            return conn
        path = self.runtime.topology.file_of(database, self.runtime.data_dir)
        if not path.exists():
            if database not in self._waiting:
                self._waiting.add(database)
                self.runtime.events.emit("waiting", db=database, path=str(path))
                self.runtime.events.flush()
            return None
        self._waiting.discard(database)
        conn = self.runtime.access.connect(self.runtime.role, database)
        self.readers[database] = conn
        return conn

    def run(self) -> None:
        """Cycle until SIGTERM; the cycle in progress commits before this returns."""
        runtime = self.runtime
        runtime.ready(interval=self.interval, max_ticks=self.max_ticks)
        while not runtime.stopping:
            self.cycle()
            self.publish()
            if not self.counters.backlog:
                runtime.wait(self.interval)
        self.publish(force=True)

    def cycle(self) -> None:
        """One cycle: fold and commit, or record why not and retry next time."""
        started = time.perf_counter_ns()
        self.counters.cycles += 1
        self.counters.backlog = False
        self._reopen_replaced()
        ticks_conn = self.reader("ticks")
        if ticks_conn is None:
            return
        try:
            result = run_cycle(
                ticks_conn,
                self.analysis,
                self.states,
                max_ticks=self.max_ticks,
                stopping=lambda: self.runtime.stopping,
            )
        except CycleFailed as exc:
            # Whatever was cached may be ahead of the database if COMMIT's outcome is unclear:
            # reload every symbol from what is committed.
            self.states.clear()
            self._retry(exc, started)
            if not isinstance(exc.error, sqlite3.OperationalError):
                raise
            return
        finally:
            self.counters.last_cycle_ms = (time.perf_counter_ns() - started) / 1e6
        c = self.counters
        c.symbols = result.symbols
        c.backlog = result.backlog
        if result.ticks:
            c.ticks_processed += result.ticks
            c.bars_written += result.bars
            c.indicators_written += result.indicators
            c.commits += 1
            newest = max(t for t, _ in result.watermarks.values())
            if c.newest_tick_msc is None or newest > c.newest_tick_msc:
                c.newest_tick_msc = newest
            self.runtime.events.emit(
                "analysis_commit",
                db="analysis",
                outcome="ok",
                dur_us=result.commit_us,
                ticks=result.ticks,
                bars=result.bars,
                indicators=result.indicators,
                watermarks=result.watermarks,
            )
            # Lag is measured from this event: push it to the OS now, so a kill keeps it.
            self.runtime.events.flush()
            crashpoints.reach("agent.after_commit")

    def _retry(self, failure: CycleFailed, started_ns: int) -> None:
        outcome, code = outcome_of(failure.error)
        self.counters.retries += 1
        self.runtime.events.emit(
            "analysis_retry",
            db=failure.database,
            stage=failure.stage,
            outcome=outcome,
            code=code,
            error=str(failure.error),
            dur_us=(time.perf_counter_ns() - started_ns) // 1000,
        )
        self.runtime.events.flush()

    def _read_logs(self) -> None:
        """The seed's glance at system health: how many requests the API has logged."""
        conn = self.reader("logs")
        if conn is None:
            return
        started = time.perf_counter_ns()
        try:
            row = conn.execute(LOGS_SUMMARY_SQL).fetchone()
        except sqlite3.OperationalError as exc:
            self._retry(CycleFailed("read_logs", "logs", exc), started)
            return
        # Ids count up from 1 and rows are never deleted, so the newest id is the count.
        self.logs_summary = {
            "log_requests": 0 if row is None else int(row[0]),
            "log_last_status": None if row is None else row[1],
        }

    def publish(self, *, force: bool = False) -> None:
        """Heartbeat with the counters and the logs summary, at most once per interval."""
        now = time.monotonic()
        if not force and now - self._last_publish < self.runtime.heartbeat_s:
            return
        self._last_publish = now
        self._read_logs()
        self.runtime.heartbeat(force=force, **self.counters.board(), **self.logs_summary)

    def close(self) -> None:
        for conn in (*self.readers.values(), self.analysis):
            conn.close()


# The longest pause between cycles the agent takes, in seconds.
MAX_INTERVAL_S = 3600.0


def _positive(kind: Callable[[str], float], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be > 0")
        return value

    return parse


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m reference.agent",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--interval",
        type=number_in(0, MAX_INTERVAL_S, above=True, unit="seconds"),
        default=0.2,
        help="seconds between cycles when there is no backlog (default 0.2)",
    )
    parser.add_argument(
        "--max-ticks",
        type=_positive(int, "an integer"),
        default=50_000,
        help="most ticks folded per cycle, shared equally by the symbols (default 50000)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent until SIGTERM; 0 after a clean stop, 1 on a fatal error, 2 on bad setup."""
    args = _parse_args(argv)
    try:
        runtime = Runtime.from_args("agent", args)
        agent = Agent(runtime, interval=args.interval, max_ticks=args.max_ticks)
    except (SplitdbError, sqlite3.Error) as exc:
        print(f"reference.agent: error: {exc}", file=sys.stderr)
        return 2
    try:
        agent.run()
    except (SplitdbError, sqlite3.Error) as exc:
        runtime.events.emit("fatal", error=str(exc))
        runtime.events.close()
        print(f"reference.agent: error: {exc}", file=sys.stderr)
        return 1
    finally:
        agent.close()
    c = agent.counters
    runtime.finish(
        ticks_processed=c.ticks_processed, commits=c.commits, bars_written=c.bars_written
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
