"""`splitdb split` of a source a writer goes on inserting into: the copy is the source at one
moment, and the writer is never blocked.

The writer (`tests/fixtures/tick_writer.py`) inserts ticks in small transactions with
`time_msc` increasing, with a busy timeout of 0, from before the split starts until after it
ends. Nothing here asserts how fast anything was; the writer's commits during the split and
its longest pause are printed (`-s`).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.test_migrate import legacy_file

REPO = Path(__file__).resolve().parent.parent
TICKS = 200_000
# Give-up bounds for a loaded machine; not claims about speed.
DEADLINE_S = 300.0


def _ticks(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
    try:
        conn.execute("PRAGMA query_only = 1")
        return conn.execute("SELECT rowid, * FROM ticks").fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_a_split_while_a_writer_inserts_copies_one_moment_of_the_source_and_never_blocks_it(
    tmp_path: Path,
) -> None:
    source = legacy_file(tmp_path / "old", TICKS)
    data_dir = tmp_path / "new"
    stop, log = tmp_path / "stop", tmp_path / "writer.json"
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.tick_writer", str(source), str(stop), str(log)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready", writer.communicate(timeout=DEADLINE_S)
        started = time.monotonic()
        split = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "split",
                str(source),
                "--topology",
                "seed",
                "--data-dir",
                str(data_dir),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
        ended = time.monotonic()
        time.sleep(0.2)  # the writer goes on after the split too
    finally:
        stop.touch()
        _, err = writer.communicate(timeout=DEADLINE_S)
    assert split.returncode == 0, f"exit {split.returncode}\n{split.stdout}\n{split.stderr}"
    assert "verified and put in place" in split.stdout
    history = json.loads(log.read_text(encoding="utf-8"))
    assert history["error"] is None, history["error"]
    assert writer.returncode == 0, err
    commits = [(float(t), int(key)) for t, key in history["commits"]]
    during = [t for t, _ in commits if started <= t <= ended]
    # Not blocked: the writer committed while the split ran (and never waited for a lock: its
    # busy timeout is 0).
    assert during, "the writer committed nothing while the split ran"

    target, now = _ticks(data_dir / "unified_tick_pipeline.db"), _ticks(source)
    # Every row of the copy is a row of the source (rowid and every column).
    assert set(target) <= set(now)
    # And the copy is the source at one moment: ticks only grow, in key order, so that moment
    # holds exactly the rows up to the copy's largest key.
    newest = max(row[2] for row in target)  # time_msc
    assert sorted(target) == sorted(row for row in now if row[2] <= newest)
    # A moment inside the split: after the writer's first commit, before its last.
    assert TICKS < len(target) < len(now)
    report = json.loads((data_dir / "split-report.json").read_text(encoding="utf-8"))
    (ticks,) = [f["tables"]["ticks"] for f in report["files"] if "ticks" in f["tables"]]
    assert ticks["source_rows"] == ticks["rows"] == len(target) and ticks["equal"]
    pauses = [b - a for (a, _), (b, _) in pairwise(commits) if started <= b <= ended]
    print(
        f"split {ended - started:.2f} s; the writer committed {len(during)} times during it "
        f"({len(commits)} in all), longest pause between commits during it "
        f"{1000 * max(pauses):.1f} ms; the copy holds {len(target) - TICKS} of its "
        f"{len(now) - TICKS} rows"
    )
