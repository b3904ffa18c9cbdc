"""How fast `splitdb split` is, against SQLite copying the same file by itself.

A legacy-layout file (every table in one file, the reference schema) with --ticks ticks
(default 1,000,000) plus bars, indicators, watermarks and request-log rows is generated once
into --dir and reused while its row counts match. Then, after one warm-up round, round after
round in an order that rotates each round:

- `split`: `splitdb split SOURCE --topology seed` as a user runs it, a new process (plan; copy
  under one read snapshot; the checksum of each table in that snapshot; each target reopened,
  checksummed, integrity_check; renames), timed from start to exit; `split (in-process)` is
  the `seconds` its own report gives (without the interpreter's start-up);
- `VACUUM INTO`: one connection writes the whole file into a new one (rows re-inserted, indexes
  rebuilt; nothing verified);
- `backup API`: `sqlite3.Connection.backup`, page by page, the whole file at once.

Printed: per method the median, min and max wall seconds, rows/s (all the file's rows over the
median), and CPU seconds (user + system of the process doing it, which other jobs on the
machine move less than wall time); the split's ratio to each; the load average before and
after (was the machine quiet?); and the last split's verification report. `--compare-with
CHECKOUT` adds `split` run from another checkout of this repository (the commit before a
change, say), alternating with the others, so a before/after comparison shares the machine's
state.

`--parts` times the split's parts on the ticks table, each beside an alternative, alternating:
reading the rows only (the floor of any check done in Python), the checksum by `repr` (before),
pickled (now) and as one stream of pickled batches in rowid order (a proposal: order-dependent,
so it needs the same order on both sides); the copy as the split does it (chunks of 100,000
rows into a WAL file, then a checkpoint) and as one `INSERT INTO t SELECT * FROM s` into a file
without a journal (a proposal: SQLite's transfer optimization copies records and index entries
without decoding them; a temporary file needs no journal); integrity_check. `--profile` runs
one split in this process under cProfile and prints where its time went.

Run: python tests/benchmarks/split_speed.py [--ticks N] [--rounds R] [--dir DIR]
         [--compare-with CHECKOUT] [--parts] [--profile]
Not run by CI or `tox -e bench`: the file is ~100 MB and a run takes a minute or more.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pickle
import pstats
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.migrate.placing import remove_file
from reference.access import AccessManager
from reference.topology import load_topology

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "US500.cash")


def counts(ticks: int) -> dict[str, int]:
    """Rows per table of the generated file."""
    bars = ticks // 20
    return {
        "ticks": ticks,
        "bars": bars,
        "indicators": 2 * bars,
        "watermarks": len(SYMBOLS),
        "request_log": ticks // 10,
    }


def row_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in counts(0)}
    finally:
        conn.close()


def generate(where: Path, ticks: int) -> Path:
    """The legacy file, made unless one with the same row counts is there already."""
    path = where / "trading.db"
    want = counts(ticks)
    if path.exists():
        try:
            if row_counts(path) == want:
                return path
        except sqlite3.DatabaseError:
            pass
        shutil.rmtree(where)
    AccessManager(load_topology("legacy"), where).initialize()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    base = 1_700_000_000_000
    conn.executemany(
        "INSERT INTO ticks VALUES (?, ?, 0, ?, ?, ?, 0.0, ?, 6, ?)",
        (
            (
                SYMBOLS[i % len(SYMBOLS)],
                base + i,
                (base + i) // 1000,
                1.1 + (i % 9973) * 1e-5,
                1.1002 + (i % 9973) * 1e-5,
                1 + i % 7,
                0.5 + (i % 13) / 10,
            )
            for i in range(ticks)
        ),
    )
    conn.executemany(
        "INSERT INTO bars VALUES (?, '1m', ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                SYMBOLS[i % len(SYMBOLS)],
                60_000 * (i // len(SYMBOLS)),
                1.1 + i * 1e-6,
                1.2 + i * 1e-6,
                1.0 + i * 1e-6,
                1.15 + i * 1e-6,
                20,
                2.5,
            )
            for i in range(want["bars"])
        ),
    )
    conn.executemany(
        "INSERT INTO indicators VALUES (?, '1m', ?, ?, ?)",
        (
            (
                SYMBOLS[i // 2 % len(SYMBOLS)],
                60_000 * (i // (2 * len(SYMBOLS))),
                ("sma14", "ema20")[i % 2],
                1.1 + i / 1e6,
            )
            for i in range(want["indicators"])
        ),
    )
    conn.executemany(
        "INSERT INTO watermarks VALUES (?, ?, 0, ?, ?)",
        ((s, base + ticks, ticks // len(SYMBOLS), 5) for s in SYMBOLS),
    )
    conn.executemany(
        "INSERT INTO request_log (ts_ns, method, path, status, duration_us, client) "
        "VALUES (?, 'GET', ?, 200, ?, '127.0.0.1')",
        (
            (i * 1000, f"/ticks/{SYMBOLS[i % len(SYMBOLS)]}", 100 + i % 500)
            for i in range(want["request_log"])
        ),
    )
    conn.execute("COMMIT")
    conn.close()
    assert row_counts(path) == want
    return path


@dataclass(frozen=True)
class Sample:
    """One timed run: wall seconds, and CPU seconds (user + system) of the process doing it."""

    wall: float
    cpu: float | None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def split_command(checkout: Path, source: Path, out: Path) -> tuple[Sample, float, str]:
    """`splitdb split` from `checkout` in a new process: its time, the seconds its report
    gives, and what it printed."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "harness.cli", "split", str(source), "--topology", "seed"),
            *("--data-dir", str(out), "--report", str(out / "report.json")),
        ],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    sample = Sample(time.perf_counter() - started, _children_cpu() - cpu)
    if done.returncode != 0:
        raise SystemExit(f"split from {checkout} failed (exit {done.returncode}):\n{done.stdout}")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return sample, float(report["seconds"]), done.stdout


def in_process(copy: Callable[[], None]) -> Sample:
    cpu, started = time.process_time(), time.perf_counter()
    copy()
    return Sample(time.perf_counter() - started, time.process_time() - cpu)


def vacuum_into(source: Path, out: Path) -> None:
    out.unlink(missing_ok=True)
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    conn.execute("VACUUM INTO ?", (str(out),))
    conn.close()


def backup_api(source: Path, out: Path) -> None:
    out.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(out)
    src.backup(dst)
    dst.close()
    src.close()


def profile_split(source: Path, out: Path) -> None:
    from harness.cli import main

    shutil.rmtree(out, ignore_errors=True)
    args = ["split", str(source), "--topology", "seed", "--data-dir", str(out), "--quiet"]
    profiler = cProfile.Profile()
    profiler.runcall(main, args)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(12)
    stats.sort_stats("cumulative").print_stats(r"harness/migrate", 12)
    print(text.getvalue())


def _ticks_target(source: Path, path: Path, journal_mode: str) -> sqlite3.Connection:
    """A connection with the source (s, read-only) and an empty ticks table in `path` (t)."""
    remove_file(path)
    make = sqlite3.connect(path, isolation_level=None)
    make.execute(f"PRAGMA journal_mode = {journal_mode}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    make.execute(src.execute("SELECT sql FROM sqlite_schema WHERE name = 'ticks'").fetchone()[0])
    src.close()
    make.close()
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("ATTACH ? AS s", (f"file:{source}?mode=ro",))
    conn.execute("ATTACH ? AS t", (str(path),))
    return conn


def time_parts(source: Path, work: Path, rounds: int) -> None:
    """The split's parts on the ticks table, each beside an alternative, alternating: where the
    time goes, and what the alternatives would save."""
    from harness.migrate.copy import _copy_rows
    from harness.migrate.objects import table_columns
    from harness.migrate.verify import table_figures

    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    columns = table_columns(reader, "main", "ticks")
    select = f"SELECT {columns.select_list()} FROM ticks"

    def fetch_only() -> None:
        cursor = reader.execute(select)
        while cursor.fetchmany(10_000):
            pass

    def checksum_by_repr() -> None:
        total, blake = 0, hashlib.blake2b
        cursor = reader.execute(select)
        while batch := cursor.fetchmany(10_000):
            for row in batch:
                total += int.from_bytes(blake(repr(row).encode(), digest_size=8).digest(), "big")

    def checksum_ordered_stream() -> None:
        digest = hashlib.blake2b(digest_size=16)
        cursor = reader.execute(f"{select} ORDER BY rowid")
        while batch := cursor.fetchmany(10_000):
            digest.update(pickle.dumps(batch, 5))

    def copy_as_split() -> None:
        conn = _ticks_target(source, work / "parts-copy.db", "wal")
        conn.execute("BEGIN")
        total = int(conn.execute("SELECT count(*) FROM s.ticks").fetchone()[0])
        _copy_rows(conn, "s", "t", "ticks", columns.select_list(), True, total, lambda _: None)
        conn.execute("COMMIT")
        conn.close()
        finish = sqlite3.connect(work / "parts-copy.db")
        finish.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finish.close()

    def copy_transfer() -> None:
        conn = _ticks_target(source, work / "parts-copy.db", "off")
        conn.execute("INSERT INTO t.ticks SELECT * FROM s.ticks")
        conn.close()
        finish = sqlite3.connect(work / "parts-copy.db", isolation_level=None)
        finish.execute("PRAGMA journal_mode = wal")
        finish.close()

    def integrity_check() -> None:
        conn = sqlite3.connect(work / "parts-copy.db")
        conn.execute("PRAGMA integrity_check").fetchall()
        conn.close()

    parts: dict[str, Callable[[], None]] = {
        "read the rows only (the floor)": fetch_only,
        "checksum, by repr (before)": checksum_by_repr,
        "checksum, pickled (now)": lambda: table_figures(reader, "main", "ticks", columns),
        "checksum, one ordered stream": checksum_ordered_stream,
        "copy, as split does it": copy_as_split,
        "integrity_check of that copy": integrity_check,
        "copy, transfer optimization": copy_transfer,
    }
    samples: dict[str, list[Sample]] = {name: [] for name in parts}
    for round_ in range(rounds + 1):
        for name, part in parts.items():
            sample = in_process(part)
            if round_ > 0:
                samples[name].append(sample)
    rows = int(reader.execute("SELECT count(*) FROM ticks").fetchone()[0])
    reader.close()
    print(f"The parts, on the ticks table ({rows:,} rows), {rounds} rounds after a warm-up:")
    print(f"{'part':<34} {'wall s: median':>14} {'CPU s: median':>14} {'min':>6} {'max':>6}")
    for name, values in samples.items():
        cpu = [v.cpu or 0.0 for v in values]
        print(
            f"{name:<34} {statistics.median(v.wall for v in values):>14.2f} "
            f"{statistics.median(cpu):>14.2f} {min(cpu):>6.2f} {max(cpu):>6.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "splitdb-split-speed",
        help="where the source is generated (and kept) and the copies written",
    )
    parser.add_argument("--compare-with", type=Path, help="another checkout's splitdb split too")
    parser.add_argument("--profile", action="store_true", help="and one split under cProfile")
    parser.add_argument(
        "--parts", action="store_true", help="and the split's parts beside alternatives"
    )
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    made = time.perf_counter()
    source = generate(args.dir / "source", args.ticks)
    rows = sum(row_counts(source).values())
    print(
        f"source: {source} ({source.stat().st_size / 1e6:.0f} MB, {rows:,} rows: "
        f"{row_counts(source)}), ready in {time.perf_counter() - made:.1f} s"
    )
    print(
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()}"
    )
    samples: dict[str, list[Sample]] = {}
    last_report = [""]

    def split_from(checkout: Path, name: str) -> Callable[[], Sample]:
        def run() -> Sample:
            sample, own, last_report[0] = split_command(checkout, source, args.dir / name)
            samples.setdefault(f"{name} (in-process)", []).append(Sample(own, None))
            return sample

        return run

    methods: dict[str, Callable[[], Sample]] = {
        "split": split_from(REPO, "split"),
        "VACUUM INTO": lambda: in_process(lambda: vacuum_into(source, args.dir / "vacuum.db")),
        "backup API": lambda: in_process(lambda: backup_api(source, args.dir / "backup.db")),
    }
    if args.compare_with:
        other = args.compare_with.resolve()
        methods[f"split@{other.name}"] = split_from(other, f"split@{other.name}")
    names = list(methods)
    for round_ in range(args.rounds + 1):
        if round_ == 1:
            samples.clear()  # round 0 warmed the page cache and the interpreter's files
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            samples.setdefault(name, []).append(methods[name]())
    print(f"load average after: {os.getloadavg()}\n")
    print(
        f"{'method':<30} {'wall s: median':>14} {'min':>6} {'max':>6} {'rows/s':>10}"
        f"  {'CPU s: median':>13} {'min':>6} {'max':>6}"
    )
    median: dict[str, float] = {}
    median_cpu: dict[str, float] = {}
    for name in sorted(samples, key=lambda n: (n.split(" ")[0] not in names, n)):
        wall = [s.wall for s in samples[name]]
        median[name] = statistics.median(wall)
        cpu = [s.cpu for s in samples[name] if s.cpu is not None]
        cpus = ""
        if cpu:
            median_cpu[name] = statistics.median(cpu)
            cpus = f"{median_cpu[name]:>13.2f} {min(cpu):>6.2f} {max(cpu):>6.2f}"
        print(
            f"{name:<30} {median[name]:>14.2f} {min(wall):>6.2f} {max(wall):>6.2f} "
            f"{rows / median[name]:>10,.0f}  {cpus}"
        )
    for name in names[1:]:
        print(
            f"split / {name}: {median['split'] / median[name]:.1f}x the wall time, "
            f"{median_cpu['split'] / median_cpu[name]:.1f}x the CPU time"
        )
    print(f"\n{args.rounds} rounds after a warm-up, order rotating. The last split's report:")
    print(last_report[0])
    if args.parts:
        time_parts(source, args.dir, args.rounds)
    if args.profile:
        profile_split(source, args.dir / "split-profiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
