"""What the probe costs a write-heavy loop: the same loop on a plain sqlite3 connection and on one
the probe instruments.

Run: tox -e bench  (or: pytest tests/benchmarks/test_probe_cost.py -p no:xdist --benchmark-only
--benchmark-timer time.process_time). Read the ratio of the two medians of each group.
Target: at most 5% (see the README, "splitdb watch", for what was measured and why the
single-row loop is above it).

Timed in this process, because pytest-benchmark can time only its own: the probe's module is
loaded from its file (harness/probe/site/splitdb_probe.py, as a probed child loads it) and
installed without patching sqlite3 (`install(patch=False)`), and the instrumented connection
comes from its `connect()`. The per-statement path is the same code a probed child runs:
patching only decides which connect a program calls, once per connection. The probe writes its
events to a real file and flushes once a second, as in a child. `probe_cost_child.py` beside
this file measures the same loops inside child processes started with and without the probe,
as a cross-check.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.probe import SITE_DIR

ROWS = 20_000
PER_TRANSACTION = 1_000
INSERT = "INSERT INTO t (a, b) VALUES (?, ?)"


def load_probe(events: Path) -> ModuleType:
    """A private copy of the probe module, reporting to `events`, sqlite3 left unpatched."""
    spec = importlib.util.spec_from_file_location(
        "splitdb_probe_bench", SITE_DIR / "splitdb_probe.py"
    )
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert probe.install(str(events), patch=False)
    return probe


def open_db(path: Path, connect: Callable[..., sqlite3.Connection]) -> sqlite3.Connection:
    """A new WAL file, synchronous=NORMAL, autocommit (the loop issues BEGIN and COMMIT)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b TEXT)")
    return conn


def single_row_inserts(conn: sqlite3.Connection) -> None:
    for _ in range(ROWS // PER_TRANSACTION):
        conn.execute("BEGIN")
        for i in range(PER_TRANSACTION):
            conn.execute(INSERT, (i, "x"))
        conn.execute("COMMIT")


def batched_inserts(conn: sqlite3.Connection) -> None:
    batch = [(i, "x") for i in range(PER_TRANSACTION)]
    for _ in range(ROWS // PER_TRANSACTION):
        conn.execute("BEGIN")
        conn.executemany(INSERT, batch)
        conn.execute("COMMIT")


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return load_probe(tmp_path_factory.mktemp("probe") / "events.jsonl")


def _bench(benchmark: Any, tmp_path: Path, connect: Callable[..., Any], loop: Any) -> None:
    conns: list[sqlite3.Connection] = []

    def setup() -> tuple[tuple[sqlite3.Connection], dict[str, Any]]:
        for old in conns:
            old.close()
        conns[:] = [open_db(tmp_path / "cost.db", connect)]
        return (conns[0],), {}

    benchmark.pedantic(loop, setup=setup, rounds=15)
    count = conns[0].execute("SELECT count(*) FROM t").fetchone()[0]
    assert count == ROWS  # every round did the whole loop


@pytest.mark.parametrize("probed", [False, True], ids=["plain", "probe"])
@pytest.mark.benchmark(group="probe cost: 20,000 single-row execute(INSERT), 1,000 per txn, WAL")
def test_bench_probe_cost_single_row_execute(
    benchmark: Any, tmp_path: Path, probe: ModuleType, probed: bool
) -> None:
    _bench(benchmark, tmp_path, probe.connect if probed else sqlite3.connect, single_row_inserts)


@pytest.mark.parametrize("probed", [False, True], ids=["plain", "probe"])
@pytest.mark.benchmark(group="probe cost: 20 executemany(INSERT) of 1,000 rows, WAL")
def test_bench_probe_cost_executemany(
    benchmark: Any, tmp_path: Path, probe: ModuleType, probed: bool
) -> None:
    _bench(benchmark, tmp_path, probe.connect if probed else sqlite3.connect, batched_inserts)
