"""The analysis agent: the only writer of the analysis database, a reader of ticks and logs.

`python -m reference.agent --data-dir DIR --events FILE [--interval 0.2] [--max-ticks 50000]`

The agent reads and writes only through its store (`reference.storage.AnalysisStore`): on the
topology's `backend`, SQLite files through the access manager (`reference.sqlite_store`) or a
PostgreSQL server as the role's login, from `SPLITDB_PG_CONNINFO` (`reference.pg_store`).

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
- `analysis_retry`: a cycle failed on a transient store error (busy, locked, disk full, a
  table not created yet, a lost server connection) and is retried next cycle; `db`, `stage`
  ('symbols', 'restore', 'read_ticks', 'commit', 'read_logs', 'open'), `outcome`, `code` (a
  SQLite extended code or a PostgreSQL SQLSTATE), `error`, `dur_us`.
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
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reference import crashpoints
from reference.analysis import SymbolState, Update, fold
from reference.errors import CycleFailed, DatabaseMissing, SplitdbError, StoreFailed
from reference.runtime import OneLineParser, Runtime, add_common_arguments, number_in
from reference.sqlite_store import SqliteAnalysisStore
from reference.storage import AnalysisStore


def open_store(runtime: Runtime) -> AnalysisStore:
    """The agent's store on the topology's backend: the SQLite files through the access
    manager, or the PostgreSQL server as the role's login (`SPLITDB_PG_CONNINFO`)."""
    if runtime.topology.backend == "postgres":
        # psycopg is imported only by a process that uses it.
        from reference.pg_store import PgAnalysisStore, open_from_env

        return open_from_env(PgAnalysisStore)
    return SqliteAnalysisStore.open(runtime.access, runtime.role)


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
    store: AnalysisStore,
    states: dict[str, SymbolState],
    *,
    max_ticks: int,
    stopping: Callable[[], bool] = lambda: False,
) -> CycleResult:
    """Fold the next ticks of every symbol (at most `max_ticks` in all) and commit them at once.

    `states` caches each symbol's state; entries change only after the commit. When the store
    fails raises CycleFailed (nothing committed, `states` as before); the caller should then
    clear `states` so the next cycle reloads from the database. DatabaseMissing (no ticks
    database yet) passes through. `stopping` is polled between symbols: when it turns True the
    cycle commits what it has read so far.
    """
    result = CycleResult()
    stage, database = "symbols", "ticks"
    try:
        symbols = store.symbols()
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
                state = store.load_symbol(symbol)
            stage, database = "read_ticks", "ticks"
            ticks = store.ticks_after(symbol, state.watermark, limit)
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
        store.store(updates, now_ns=time.time_ns())
        result.commit_us = (time.perf_counter_ns() - started) // 1000
    except StoreFailed as exc:
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
    """The agent's loop: open its store, run cycles, publish, stop on SIGTERM."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        interval: float,
        max_ticks: int,
        store: AnalysisStore | None = None,
    ) -> None:
        self.runtime = runtime
        self.interval = interval
        self.max_ticks = max_ticks
        self.counters = Counters()
        self.states: dict[str, SymbolState] = {}
        self.logs_summary: dict[str, Any] = {}
        self._waiting: set[str] = set()
        self._last_publish = float("-inf")
        self.store = open_store(runtime) if store is None else store
        try:
            self._prepare()
        except BaseException:
            self.store.close()
            raise

    def _prepare(self) -> None:
        while True:
            started = time.perf_counter_ns()
            try:
                self.store.prepare()
                return
            except StoreFailed as exc:
                if not exc.transient:
                    raise
                # Another writer of a shared file may hold the lock past busy_timeout.
                self._retry(CycleFailed("open", "analysis", exc), started)
                if self.runtime.wait(self.interval):
                    return

    def _reopen_replaced(self) -> None:
        """Databases replaced under the agent were reopened by the store; for its own, the
        cached states are dropped too (they may be ahead of what the new file holds: the next
        cycle starts from its watermarks)."""
        for database, where in self.store.reopen_replaced().items():
            self.runtime.events.emit(
                "file_replaced",
                db=database,
                outcome="error",
                error=f"{where} was replaced under the agent: reopening",
            )
            if database == "analysis":
                self.states.clear()
                self._prepare()

    def _missing(self, exc: DatabaseMissing) -> None:
        """Say once per database that the agent waits for it (until it appears)."""
        database = exc.database or "?"
        if database not in self._waiting:
            self._waiting.add(database)
            self.runtime.events.emit("waiting", db=database, path=exc.where)
            self.runtime.events.flush()

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
        try:
            result = run_cycle(
                self.store,
                self.states,
                max_ticks=self.max_ticks,
                stopping=lambda: self.runtime.stopping,
            )
        except DatabaseMissing as exc:
            self._missing(exc)
            return
        except CycleFailed as exc:
            # Whatever was cached may be ahead of the database if COMMIT's outcome is unclear:
            # reload every symbol from what is committed.
            self.states.clear()
            self._retry(exc, started)
            if not exc.error.transient:
                raise
            return
        finally:
            self.counters.last_cycle_ms = (time.perf_counter_ns() - started) / 1e6
        self._waiting.discard("ticks")
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
        self.counters.retries += 1
        self.runtime.events.emit(
            "analysis_retry",
            db=failure.database,
            stage=failure.stage,
            outcome=failure.error.outcome,
            code=failure.error.code,
            error=failure.error.detail,
            dur_us=(time.perf_counter_ns() - started_ns) // 1000,
        )
        self.runtime.events.flush()

    def _read_logs(self) -> None:
        """The seed's glance at system health: how many requests the API has logged."""
        started = time.perf_counter_ns()
        try:
            summary = self.store.logs_summary()
        except DatabaseMissing as exc:
            self._missing(exc)
            return
        except StoreFailed as exc:
            if not exc.transient:
                raise
            self._retry(CycleFailed("read_logs", "logs", exc), started)
            return
        self._waiting.discard("logs")
        self.logs_summary = {
            "log_requests": 0 if summary is None else summary.requests,
            "log_last_status": None if summary is None else summary.last_status,
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
        self.store.close()


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
    except SplitdbError as exc:
        print(f"reference.agent: error: {exc}", file=sys.stderr)
        return 2
    try:
        agent.run()
    except SplitdbError as exc:
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
