"""Cross-check of test_probe_cost.py in child processes: the same loops, each round in a fresh
Python started without the probe and then with it (through PYTHONPATH and
SPLITDB_PROBE_EVENTS, as `splitdb watch` starts a program), each child timing its own loop in
CPU time (time.process_time) and printing it. Start-up is not in the figure; the probe's
patched connect, audit hook and events file are.

Run: python tests/benchmarks/probe_cost_child.py [ROUNDS]   (prints medians and their ratio)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.probe import probe_env

CHILD = """
import os, sqlite3, sys, time
path, kind = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(path, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=NORMAL")
conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b TEXT)")
insert = "INSERT INTO t (a, b) VALUES (?, ?)"
batch = [(i, "x") for i in range(1000)]
start = time.process_time()
for _ in range(20):
    conn.execute("BEGIN")
    if kind == "execute":
        for i in range(1000):
            conn.execute(insert, (i, "x"))
    else:
        conn.executemany(insert, batch)
    conn.execute("COMMIT")
print(time.process_time() - start)
print(type(conn).__name__, file=sys.stderr)
"""


def one(kind: str, probed: bool, work: Path) -> float:
    db = work / "cost.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPLITDB_")}
    if probed:
        env = probe_env(work / "events.jsonl", process="bench", role="", base_env=env)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(db), kind],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    expected = "ProbeConnection" if probed else "Connection"
    assert proc.stderr.strip() == expected, proc.stderr
    return float(proc.stdout)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("execute", "executemany"):
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(rounds):
                for probed in (False, True):
                    times[probed].append(one(kind, probed, Path(tmp)))
            plain, probe = (statistics.median(times[p]) * 1000 for p in (False, True))
            print(
                f"{kind:12} plain {plain:7.2f} ms  probe {probe:7.2f} ms  "
                f"x{probe / plain:.3f}  (medians of {rounds} child processes each)"
            )


if __name__ == "__main__":
    main()
