"""A named process of a step script: it holds its role's connections and runs one step at a time.

`python -m harness.interleavings.actor --topology FILE --data-dir DIR --role ROLE [--databases a,b]`
opens a connection (through the access manager, as ROLE) to each database, then speaks JSON lines:

- it writes `{"ready": PID, "connect_errors": {db: message}}` once connected;
- for each `{"index": I, "step": {...}, "background": bool}` read on stdin it runs the step and
  writes `{"done": I, "outcome": ..., "code": ..., "duration_ms": ..., ...}`; a background step
  first writes `{"started": I}`, so the coordinator knows the step is under way before it goes on;
- an `exit` step ends the process at once with its code, without a reply (a simulated crash);
- end of input: it closes its connections and exits 0.

`Actor` is the executor without the process around it: the search runs it in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from harness.interleavings.script import (
    STEP,
    AgentCycleStep,
    CheckpointStep,
    ExitStep,
    InsertTicksStep,
    SleepStep,
    SqlStep,
    Step,
    TxnStep,
    WalSizeStep,
)
from harness.interleavings.trace import MAX_ROWS, json_safe
from reference.access import AccessManager
from reference.agent import run_cycle
from reference.analysis import SymbolState
from reference.errors import CycleFailed, SplitdbError
from reference.events import outcome_of
from reference.sqlite_store import SqliteAnalysisStore
from reference.tickstore import insert_ticks
from reference.topology import Topology, load_topology

SQLITE_BUSY_SNAPSHOT = 517
_TXN_SQL = {
    "begin": "BEGIN",
    "begin_immediate": "BEGIN IMMEDIATE",
    "begin_exclusive": "BEGIN EXCLUSIVE",
    "commit": "COMMIT",
    "rollback": "ROLLBACK",
}
# Tick keys are derived from the step index, so ticks of different steps (and processes) never
# collide and every replay writes the very same rows.
_TICK_BASE_MSC = 1_700_000_000_000


@dataclass(frozen=True)
class Done:
    """What running one step gave, before the coordinator adds who, when and the verdict."""

    outcome: str
    code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0
    row_count: int | None = None
    rows: list[list[Any]] | None = None
    value: Any = None


def classify(exc: BaseException) -> tuple[str, int | None, str]:
    """(outcome, SQLite extended code, message) of an error a step raised.

    Like `reference.events.outcome_of`, with SQLITE_BUSY_SNAPSHOT (517) told apart from plain
    busy: the busy handler never runs for it, so waiting longer cannot fix it.
    """
    # A failed cycle carries the store's StoreFailed; the SQLite error is its cause.
    inner = (exc.error.__cause__ or exc.error) if isinstance(exc, CycleFailed) else exc
    outcome, code = outcome_of(inner)
    if code == SQLITE_BUSY_SNAPSHOT:
        outcome = "busy_snapshot"
    name = getattr(inner, "sqlite_errorname", None)
    message = f"{name}: {exc}" if name else f"{type(exc).__name__}: {exc}"
    return outcome, code, message


def tick_rows(index: int, count: int, symbol: str) -> list[tuple[Any, ...]]:
    """The ticks an `insert_ticks` step at `index` writes (TICK_COLUMNS order)."""
    rows = []
    for i in range(count):
        time_msc = _TICK_BASE_MSC + index * 1_000_000 + i
        bid = round(1.1 + (i % 100) * 1e-5, 5)
        rows.append((symbol, time_msc, 0, time_msc // 1000, bid, bid + 0.0002, 0.0, 1, 6, 1.0))
    return rows


class Actor:
    """Runs steps on one role's connections; the connections live as long as the actor.

    A database whose connection could not be opened makes every step on it fail with the
    reason (for example `denied` when the role has no grant at all).
    """

    def __init__(
        self, topology: Topology, data_dir: Path, role: str, databases: Iterable[str]
    ) -> None:
        self.topology = topology
        self.data_dir = Path(data_dir)
        self.role = role
        self.access = AccessManager(topology, self.data_dir)
        self.connections: dict[str, sqlite3.Connection] = {}
        self.connect_errors: dict[str, BaseException] = {}
        self.states: dict[str, SymbolState] = {}
        for db in databases:
            try:
                self.connections[db] = self.access.connect(role, db)
            except (SplitdbError, sqlite3.Error) as exc:
                self.connect_errors[db] = exc

    def connection(self, db: str) -> sqlite3.Connection:
        if db in self.connect_errors:
            raise self.connect_errors[db]
        if db not in self.connections:
            # Scripts declare their databases up front; a late one still works, just later.
            self.connections[db] = self.access.connect(self.role, db)
        return self.connections[db]

    def run(
        self, step: Step, index: int, db: str | None, *, started: Callable[[], None] | None = None
    ) -> Done:
        """Run `step` (the `index`-th of its script) on `db`; never raises for SQLite errors."""
        begun = time.perf_counter_ns()
        if started is not None:
            started()
        try:
            row_count, rows, value = self._do(step, index, db)
        except (sqlite3.Error, sqlite3.Warning, SplitdbError) as exc:
            outcome, code, message = classify(exc)
            return Done(outcome, code, message, _ms_since(begun))
        safe = None if rows is None else [[json_safe(v) for v in r] for r in rows[:MAX_ROWS]]
        return Done("ok", None, None, _ms_since(begun), row_count, safe, json_safe(value))

    def _do(
        self, step: Step, index: int, db: str | None
    ) -> tuple[int | None, list[Sequence[Any]] | None, Any]:
        if isinstance(step, SqlStep):
            assert db is not None
            conn = self.connection(db)
            before = conn.total_changes
            cursor = conn.execute(step.sql)
            fetched = cursor.fetchall()
            if cursor.description is None:
                return conn.total_changes - before, None, None
            return len(fetched), fetched, fetched[0][0] if fetched else None
        if isinstance(step, TxnStep):
            assert db is not None
            self.connection(db).execute(_TXN_SQL[step.do])
            return None, None, None
        if isinstance(step, CheckpointStep):
            assert db is not None
            fetched = (
                self.connection(db)
                .execute(f"PRAGMA wal_checkpoint({step.mode.upper()})")
                .fetchall()
            )
            # The value is the frames checkpointed; the busy flag and the WAL's frame count are
            # in the row (busy, log, checkpointed).
            return len(fetched), fetched, fetched[0][2] if fetched else None
        if isinstance(step, WalSizeStep):
            assert db is not None
            wal = Path(f"{self.topology.file_of(db, self.data_dir)}-wal")
            return None, None, wal.stat().st_size if wal.exists() else 0
        if isinstance(step, InsertTicksStep):
            inserted = insert_ticks(
                self.connection("ticks"), tick_rows(index, step.count, step.symbol)
            )
            return inserted.new, None, inserted.new
        if isinstance(step, AgentCycleStep):
            try:
                store = SqliteAnalysisStore.over(
                    self.connection("ticks"), self.connection("analysis")
                )
                # Not closed here: the connections are the actor's, for its later steps.
                cycle = run_cycle(store, self.states, max_ticks=step.max_ticks)
            except CycleFailed:
                # As the agent does: the cached state may be ahead of the database now.
                self.states.clear()
                raise
            return cycle.bars, None, cycle.ticks
        if isinstance(step, SleepStep):
            time.sleep(step.seconds)
            return None, None, None
        raise ValueError(f"step[{index}]: do = {step.do!r} is run by the coordinator")

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()
        self.connections.clear()


def _ms_since(begun_ns: int) -> float:
    return round((time.perf_counter_ns() - begun_ns) / 1e6, 3)


def _announcer(reply: Callable[[dict[str, Any]], None], index: int) -> Callable[[], None]:
    def announce() -> None:
        reply({"started": index})

    return announce


def serve(actor: Actor, requests: IO[str], replies: IO[str]) -> None:
    """The process loop: one step per request line, one reply line per step."""

    def reply(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    reply(
        {
            "ready": os.getpid(),
            "connect_errors": {db: str(exc) for db, exc in actor.connect_errors.items()},
        }
    )
    for line in requests:
        message = json.loads(line)
        index = int(message["index"])
        step = STEP.validate_python(message["step"])
        if isinstance(step, ExitStep):
            os._exit(step.code)
        announce = _announcer(reply, index) if message.get("background") else None
        done = actor.run(step, index, message.get("db"), started=announce)
        reply({"done": index, **asdict(done)})
    actor.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.interleavings.actor",
        description="One named process of a step script "
        "(started by harness.interleavings.interleave).",
    )
    parser.add_argument("--topology", required=True, help="topology TOML file or built-in name")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--role", required=True)
    parser.add_argument("--databases", default="", help="comma-separated databases to open")
    args = parser.parse_args(argv)
    # The protocol owns the real stdout; anything else printed goes to stderr, where it cannot
    # break a reply line.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout = sys.stderr
    topology = load_topology(args.topology)
    databases = [d for d in args.databases.split(",") if d]
    serve(Actor(topology, args.data_dir, args.role, databases), sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
