"""What the access manager costs: the authorizer per query, and tick inserts per second.

Run: tox -e bench  (or: pytest tests/benchmarks/test_bench_access.py -p no:xdist --benchmark-only)
Each pair is measured in the same run on the same machine, so the ratio is what to read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reference.access import AccessManager
from reference.schema import ensure_schema
from reference.tickstore import INSERT_TICKS, TickRow, insert_ticks
from reference.topology import load_topology

SEED = load_topology("seed")
TOTAL_TICKS = 20_000
QUERIES = 2_000
LATEST = "SELECT bid, ask, time_msc FROM ticks WHERE symbol = ? ORDER BY time_msc DESC LIMIT 1"


def _rows(n: int, offset: int = 0) -> list[TickRow]:
    return [
        (
            f"SYM{i % 50:02d}",
            1_700_000_000_000 + offset + i,
            0,
            1_700_000_000,
            1.1,
            1.2,
            0.0,
            1,
            6,
            1.0,
        )
        for i in range(n)
    ]


@pytest.fixture
def filled(tmp_path: Path) -> AccessManager:
    access = AccessManager(SEED, tmp_path)
    access.initialize()
    insert_ticks(access.connect("bot", "ticks"), _rows(TOTAL_TICKS))
    return access


RANGE = "SELECT * FROM ticks WHERE symbol = ? ORDER BY time_msc LIMIT 100"


def _query_loop(conn: sqlite3.Connection, sql: str = LATEST) -> Callable[[], None]:
    def run() -> None:
        for i in range(QUERIES):
            conn.execute(sql, (f"SYM{i % 50:02d}",)).fetchall()

    return run


@pytest.mark.benchmark(group="authorizer: 2000 repeated 100-row range queries")
def test_bench_range_query_with_access_manager(benchmark: Any, filled: AccessManager) -> None:
    benchmark(_query_loop(filled.connect("api", "ticks"), RANGE))


@pytest.mark.benchmark(group="authorizer: 2000 repeated 100-row range queries")
def test_bench_range_query_plain_sqlite3(benchmark: Any, filled: AccessManager) -> None:
    path = SEED.file_of("ticks", filled.data_dir)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA query_only = 1")
    benchmark(_query_loop(conn, RANGE))


@pytest.mark.benchmark(group="authorizer: 2000 repeated reader queries")
def test_bench_reader_query_with_access_manager(benchmark: Any, filled: AccessManager) -> None:
    conn = filled.connect("api", "ticks")
    benchmark(_query_loop(conn))


@pytest.mark.benchmark(group="authorizer: 2000 repeated reader queries")
def test_bench_reader_query_plain_sqlite3(benchmark: Any, filled: AccessManager) -> None:
    path = SEED.file_of("ticks", filled.data_dir)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA query_only = 1")
    benchmark(_query_loop(conn))


@pytest.mark.benchmark(group="authorizer: 2000 repeated reader queries")
def test_bench_reader_query_plain_sqlite3_with_authorizer_only(
    benchmark: Any, filled: AccessManager
) -> None:
    path = SEED.file_of("ticks", filled.data_dir)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA query_only = 1")
    conn.set_authorizer(lambda *args: sqlite3.SQLITE_OK)
    benchmark(_query_loop(conn))


def _fresh_owner(tmp_path: Path, counter: list[int]) -> sqlite3.Connection:
    counter[0] += 1
    access = AccessManager(SEED, tmp_path / f"round{counter[0]}")
    conn = access.connect("bot", "ticks")
    ensure_schema(conn, "ticks")
    return conn


@pytest.mark.parametrize("batch", [1, 100, 1000])
@pytest.mark.benchmark(group=f"ingest: {TOTAL_TICKS} ticks")
def test_bench_ingest_through_access_manager(benchmark: Any, tmp_path: Path, batch: int) -> None:
    rows = _rows(TOTAL_TICKS)
    counter = [0]

    def setup() -> tuple[tuple[sqlite3.Connection], dict[str, Any]]:
        return (_fresh_owner(tmp_path, counter),), {}

    def run(conn: sqlite3.Connection) -> None:
        for start in range(0, len(rows), batch):
            insert_ticks(conn, rows[start : start + batch])

    benchmark.extra_info["ticks"] = TOTAL_TICKS
    # 5 rounds even for batch 1 (about 1 s each): the fewest with which the rank test of
    # `splitdb compare` can reach p <= 0.01 (2 / C(10, 5) = 0.008)
    benchmark.pedantic(run, setup=setup, rounds=5)


@pytest.mark.benchmark(group=f"ingest: {TOTAL_TICKS} ticks")
def test_bench_ingest_plain_sqlite3_executemany_batch_1000(benchmark: Any, tmp_path: Path) -> None:
    rows = _rows(TOTAL_TICKS)
    counter = [0]

    def setup() -> tuple[tuple[sqlite3.Connection], dict[str, Any]]:
        fresh = _fresh_owner(tmp_path, counter)
        path = fresh.execute("PRAGMA database_list").fetchone()[2]
        fresh.close()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = wal")
        conn.execute("PRAGMA synchronous = normal")
        return (conn,), {}

    def run(conn: sqlite3.Connection) -> None:
        for start in range(0, len(rows), 1000):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_TICKS, rows[start : start + 1000])
            conn.execute("COMMIT")

    benchmark.extra_info["ticks"] = TOTAL_TICKS
    benchmark.pedantic(run, setup=setup, rounds=5)
