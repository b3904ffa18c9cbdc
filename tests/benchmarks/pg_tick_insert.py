"""How the bot should write a batch of ticks to PostgreSQL: five ways, timed against each other.

Each way commits one batch of --batch ticks (the bot's default is 1,000) in one transaction,
as the bot's login role of the seed topology on a throwaway server (fsync on, the server's
defaults: what a run uses), and must leave a re-sent tick a no-op (ticks are keyed by content):

- `executemany`: `INSERT ... VALUES (%s, ...) ON CONFLICT DO NOTHING`, psycopg's executemany
  (which pipelines the statements: one round trip per batch, one statement per row);
- `unnest`: one `INSERT ... SELECT * FROM unnest(%s::text[], %s::bigint[], ...) ON CONFLICT DO
  NOTHING`, a column per array parameter (one statement per batch);
- `copy+staging`: COPY (binary) into a temporary table, then `INSERT ... SELECT ... ON CONFLICT
  DO NOTHING` and TRUNCATE it (needs TEMPORARY on the database, granted here for the bench);
  `copy+staging/oc` the same into a temporary table `ON COMMIT DELETE ROWS` (no TRUNCATE);
- `copy direct`: COPY (binary) straight into `ticks`: the floor, not a candidate (COPY cannot say
  ON CONFLICT, so a re-sent batch fails with 23505).

Rounds rotate the order; the table is emptied (by the installer) before each method's turn so
every method writes into a table of the same size. Printed per method: the median, min and max
over rounds of rows/s (wall), the median batch commit in ms, and the client's CPU seconds per
100,000 rows; with `--sync off` the session sets `synchronous_commit = off` (the WAL flush at
COMMIT, the same for every method, left out) to compare the methods' own cost.

Run: python tests/benchmarks/pg_tick_insert.py [--batch 1000] [--batches 50] [--rounds 5]
         [--sync on|off]
Not run by CI or `tox -e bench`: it starts a PostgreSQL server and takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from harness.pg.server import PgServer, throwaway_server
from reference.pg_access import install
from reference.schema import TICK_COLUMNS
from reference.topology import load_topology

Rows = Sequence[tuple[Any, ...]]
_COLS = ", ".join(TICK_COLUMNS)
_TYPES = ("text", "bigint", "bigint", "bigint", "float8", "float8", "float8", "bigint", "bigint")
_TYPES += ("float8",)
INSERT_ONE = (
    f"INSERT INTO ticks ({_COLS}) VALUES ({', '.join('%s' for _ in TICK_COLUMNS)}) "
    "ON CONFLICT DO NOTHING"
)
INSERT_UNNEST = (
    f"INSERT INTO ticks ({_COLS}) SELECT * FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _TYPES)
    + ") ON CONFLICT DO NOTHING"
)


def executemany(conn: psycopg.Connection[Any], rows: Rows) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(INSERT_ONE, rows)


def unnest(conn: psycopg.Connection[Any], rows: Rows) -> None:
    with conn.transaction():
        conn.execute(INSERT_UNNEST, [list(column) for column in zip(*rows, strict=True)])


def copy_staging(conn: psycopg.Connection[Any], rows: Rows) -> None:
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(f"COPY staging ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(_TYPES))
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO ticks ({_COLS}) SELECT {_COLS} FROM staging ON CONFLICT DO NOTHING"
        )
        cur.execute("TRUNCATE staging")


def copy_staging_on_commit(conn: psycopg.Connection[Any], rows: Rows) -> None:
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(f"COPY staging2 ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(_TYPES))
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO ticks ({_COLS}) SELECT {_COLS} FROM staging2 ON CONFLICT DO NOTHING"
        )


def copy_direct(conn: psycopg.Connection[Any], rows: Rows) -> None:
    with (
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy(f"COPY ticks ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(list(_TYPES))
        for row in rows:
            copy.write_row(row)


METHODS: dict[str, Callable[[psycopg.Connection[Any], Rows], None]] = {
    "executemany": executemany,
    "unnest": unnest,
    "copy+staging": copy_staging,
    "copy+staging/oc": copy_staging_on_commit,
    "copy direct": copy_direct,
}


def batches(n: int, size: int, start: int) -> list[list[tuple[Any, ...]]]:
    """`n` batches of `size` ticks over 10 symbols, keys increasing from `start`."""
    out = []
    t = start
    for _ in range(n):
        batch = []
        for i in range(size):
            t += 1
            bid = 1.1 + (t % 997) * 1e-5
            batch.append((f"SYM{i % 10}", t, i, t // 1000, bid, bid + 2e-5, bid, 1, 6, 1.5))
        out.append(batch)
    return out


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sync", choices=("on", "off"), default="on")
    args = parser.parse_args(argv)
    with throwaway_server() as server:
        return _bench(server, args)


def _bench(server: PgServer, args: argparse.Namespace) -> int:
    with server.connect() as admin:
        admin.execute("CREATE DATABASE bench")
    admin = server.connect(dbname="bench")
    with server.connect(dbname="bench", autocommit=False) as conn:
        layout = install(conn, load_topology("seed"))
    login = layout.login("bot")
    admin.execute(f"GRANT TEMPORARY ON DATABASE bench TO {login.user}")
    conn = server.connect(user=login.user, password=login.password, dbname="bench")
    conn.execute(f"SET synchronous_commit = {args.sync}")
    conn.execute("CREATE TEMP TABLE staging (LIKE ticks)")
    conn.execute("CREATE TEMP TABLE staging2 (LIKE ticks) ON COMMIT DELETE ROWS")
    names = list(METHODS)
    rates: dict[str, list[float]] = {n: [] for n in names}
    commits: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    key = 0
    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    for round_ in range(args.rounds + 1):  # round 0 warms up and is not counted
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            work = batches(args.batches, args.batch, key)
            key += args.batches * args.batch
            admin.execute("TRUNCATE ticks.ticks")
            started, cpu_started = time.perf_counter(), _cpu()
            durations = []
            for batch in work:
                t0 = time.perf_counter()
                METHODS[name](conn, batch)
                durations.append(time.perf_counter() - t0)
            wall, used = time.perf_counter() - started, _cpu() - cpu_started
            if round_ == 0:
                continue
            rows = args.batches * args.batch
            rates[name].append(rows / wall)
            commits[name].extend(durations)
            cpu[name].append(used / rows * 100_000)
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print(
        f"{args.rounds} rounds x {args.batches} batches x {args.batch} ticks, "
        f"synchronous_commit={args.sync}, as {login.user}"
    )
    header = ("rows/s median", 14), ("min", 10), ("max", 10), ("batch ms", 9), ("cpu s/100k", 11)
    print(f"{'method':<16} " + " ".join(f"{text:>{width}}" for text, width in header))
    for name in names:
        r = rates[name]
        print(
            f"{name:<16} {statistics.median(r):>14,.0f} {min(r):>10,.0f} {max(r):>10,.0f} "
            f"{statistics.median(commits[name]) * 1000:>9.2f} {statistics.median(cpu[name]):>11.3f}"
        )
    conn.close()
    admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
