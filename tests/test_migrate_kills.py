"""Stopping `splitdb split` at any moment: a SIGKILL never leaves a target in place that is not a
verified copy, and a rerun finishes; a Ctrl-C exits 130 with one line and leaves no temporary
file.

Each test splits a legacy file big enough that a split lasts a second or two, times one whole
split first (on this machine, as loaded as it is now), then stops the command at seeded random
moments from its start to a little past that time, so that every phase gets hit: start-up and
planning, the copy, the verification, the renames into place, and after the end. Nothing
asserts how fast anything was; the distribution of where the kills landed is printed (`-s`).

A random kill seldom lands between two renames into place (milliseconds of the whole), so one
more test kills the split exactly there, run after run, from inside the child.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.migrate.placing import MANIFEST
from harness.migrate.verify import TableFigures, table_figures
from reference.topology import load_topology
from tests.test_migrate import figures, legacy_file

REPO = Path(__file__).resolve().parent.parent
TICKS = 300_000
KILLS = 20
INTERRUPTS = 10
SEED = 16  # the number: the same moments on every run
# Give-up bound for one split on a loaded machine; not a claim about speed.
SPLIT_DEADLINE_S = 300.0
# The seed topology's files and the tables each holds; the ticks file is the big one.
TARGETS = {str(spec.path): spec.tables for spec in load_topology("seed").databases.values()}
TICKS_FILE = next(path for path, tables in TARGETS.items() if "ticks" in tables)

Identity = tuple[int, int, int]


def _identity(path: Path) -> Identity:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _sigint_as_at_a_terminal() -> None:
    # A job a non-interactive shell started in the background inherits SIGINT ignored, and
    # Python then raises no KeyboardInterrupt; a Ctrl-C test must not depend on that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Split:
    """A legacy source and the data directory `splitdb split` writes the seed layout into."""

    source: Path
    data_dir: Path
    want: dict[str, TableFigures]
    # Targets already verified, by identity: a file with the same inode, size and mtime is the
    # same file, and is not read again (the test's time goes to kills, not to re-reading).
    verified: set[tuple[str, Identity]] = field(default_factory=set)

    def args(self) -> list[str]:
        return [
            "split",
            str(self.source),
            "--topology",
            "seed",
            "--data-dir",
            str(self.data_dir),
            "--quiet",
        ]

    def start(self, *python: str) -> subprocess.Popen[str]:
        """`splitdb split` in a new process (`python` replaces `-m harness.cli` if given)."""
        return subprocess.Popen(
            [sys.executable, *(python or ("-m", "harness.cli")), *self.args()],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=_sigint_as_at_a_terminal,
        )

    def temp(self, name: str) -> Path:
        return self.data_dir / f".{name}.splitdb-tmp"

    def manifest(self) -> dict[str, object] | None:
        try:
            data = json.loads((self.data_dir / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        assert isinstance(data, dict)
        return data

    def finished(self) -> bool:
        manifest = self.manifest()
        return manifest is not None and bool(manifest.get("complete"))

    def timed(self) -> tuple[float, float]:
        """One whole split: seconds until its ticks file's temporary file appears, and in all."""
        started = time.monotonic()
        proc = self.start()
        temp_seen = None
        while proc.poll() is None:
            if temp_seen is None and self.temp(TICKS_FILE).exists():
                temp_seen = time.monotonic() - started
            time.sleep(0.002)
        took = time.monotonic() - started
        out, err = proc.communicate()
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
        assert temp_seen is not None
        self.assert_targets_verify()
        return temp_seen, took

    def assert_targets_verify(self) -> list[str]:
        """Every target in the data directory holds the source's rows (count and checksum per
        table) and passes integrity_check; returns the targets there."""
        present = []
        for name, tables in TARGETS.items():
            path = self.data_dir / name
            if not path.exists():
                continue
            present.append(name)
            # A target in place stands alone: no -wal a reader would replay into it.
            for side in ("-wal", "-shm", "-journal"):
                assert not Path(f"{path}{side}").exists(), f"{path}{side} beside a target"
            key = (name, _identity(path))
            if key in self.verified:
                continue
            # Read-write but query_only: closing removes the -wal and -shm a read-only
            # connection would leave, and nothing is written (the identity stays).
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
            try:
                conn.execute("PRAGMA query_only = 1")
                got = {t: table_figures(conn, "main", t) for t in tables}
                integrity = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
            finally:
                conn.close()
            assert got == {t: self.want[t] for t in tables}, f"{name} differs from the source"
            assert integrity == ["ok"], f"{name}: integrity_check {integrity}"
            assert _identity(path) == key[1], f"verifying {name} changed it"
            self.verified.add(key)
        return present

    def leftovers(self) -> list[str]:
        """Temporary files of a migration, a snapshot or an atomic write in the data directory."""
        return sorted(
            p.name
            for p in self.data_dir.iterdir()
            if ".splitdb-tmp" in p.name or ".splitdb-snapshot" in p.name or p.name.endswith(".tmp")
        )

    def start_over(self) -> None:
        """After a split that finished: its targets out of the way (a rerun would refuse them,
        rightly), so the next split starts from nothing again."""
        for path in self.data_dir.iterdir():
            path.unlink()
        self.verified.clear()


@pytest.fixture
def split(tmp_path: Path) -> Split:
    source = legacy_file(tmp_path / "old", TICKS)
    return Split(source, tmp_path / "new", figures(source))


@pytest.fixture
def small_split(tmp_path: Path) -> Split:
    source = legacy_file(tmp_path / "old")
    return Split(source, tmp_path / "new", figures(source))


@dataclass
class Before:
    """What the data directory held before a split started: enough to tell, after a kill,
    how far it got."""

    manifest: dict[str, object] | None
    temp: Identity | None


def _before(split: Split) -> Before:
    temp = split.temp(TICKS_FILE)
    return Before(split.manifest(), _identity(temp) if temp.exists() else None)


def _committed_rows(temp: Path, scratch: Path) -> int | None:
    """Ticks rows a killed split's temporary file holds committed: read from a copy of it and
    its -wal (without the -shm, so SQLite recovers the WAL's committed frames only)."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    copy = scratch / "ticks.db"
    try:
        shutil.copyfile(temp, copy)
        if Path(f"{temp}-wal").exists():
            shutil.copyfile(f"{temp}-wal", f"{copy}-wal")
    except FileNotFoundError:
        return None
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM ticks").fetchone()[0])
    except sqlite3.DatabaseError:
        return None  # created, no table yet
    finally:
        conn.close()


def _where_it_stopped(split: Split, before: Before, scratch: Path) -> str:
    """Which phase a killed split was in, from the files it left."""
    manifest = split.manifest()
    if manifest is not None and manifest != before.manifest:
        if manifest.get("complete"):
            return "after the end"
        targets = manifest["targets"]
        assert isinstance(targets, dict)
        renamed = sum(
            1
            for name in TARGETS
            if (split.data_dir / name).exists()
            and list(_identity(split.data_dir / name))
            == [targets[str(split.data_dir / name)][0][k] for k in ("inode", "size", "mtime_ns")]
        )
        return f"renaming into place ({renamed} of {len(TARGETS)} renamed)"
    temp = split.temp(TICKS_FILE)
    if not temp.exists() or _identity(temp) == before.temp:
        return "before the copy (start-up, planning)"
    if _committed_rows(temp, scratch) == split.want["ticks"].rows:
        return "verifying (copy committed)"
    return "copying"


@pytest.mark.slow
def test_a_split_killed_at_random_moments_never_leaves_an_unverified_target_and_a_rerun_finishes(
    split: Split, tmp_path: Path
) -> None:
    temp_after, whole = split.timed()
    split.start_over()
    rng = random.Random(SEED)
    landed: Counter[str] = Counter()
    for kill in range(KILLS):
        if split.finished():
            split.start_over()
        before = _before(split)
        delay = rng.uniform(0, 1.1 * whole)
        proc = split.start()
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=SPLIT_DEADLINE_S)
        # Killed, or done before the kill: never refused (a target a killed run left in place
        # is the migration's own), never failed.
        assert proc.returncode in (-signal.SIGKILL, 0), (
            f"kill {kill + 1} at {delay:.2f} s: exit {proc.returncode}\n{out}\n{err}"
        )
        where = _where_it_stopped(split, before, tmp_path / "scratch")
        landed[where] += 1
        present = split.assert_targets_verify()
        print(f"kill {kill + 1:2}: {delay:5.2f} s, {where}; in place: {', '.join(present) or '-'}")
    if split.finished():
        split.start_over()
    proc = split.start()
    out, err = proc.communicate(timeout=SPLIT_DEADLINE_S)
    assert proc.returncode == 0, f"the rerun: exit {proc.returncode}\n{out}\n{err}"
    assert "verified and put in place" in out
    assert sorted(split.assert_targets_verify()) == sorted(TARGETS)
    assert split.finished()
    assert split.leftovers() == []
    print(
        f"whole split {whole:.2f} s (temporary file after {temp_after:.2f} s); "
        f"{KILLS} kills landed: "
        + ", ".join(f"{phase} {n}" for phase, n in sorted(landed.items(), key=lambda kv: kv[0]))
    )


@pytest.mark.slow
def test_ctrl_c_during_a_split_exits_130_with_one_line_and_leaves_no_temporary_file(
    split: Split,
) -> None:
    temp_after, whole = split.timed()
    split.start_over()
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    for interrupt in range(INTERRUPTS):
        if split.finished():
            split.start_over()
        proc = split.start()
        # From the moment the split is under way (its first temporary file exists: the command
        # runs, inside its clean-up): a Ctrl-C while the interpreter itself starts is Python's.
        deadline = time.monotonic() + SPLIT_DEADLINE_S
        while not split.temp(TICKS_FILE).exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the split never started its copy"
            time.sleep(0.002)
        # Up to a little before its end: a Ctrl-C as the interpreter exits is not the split's.
        delay = rng.uniform(0, 0.9 * (whole - temp_after))
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=SPLIT_DEADLINE_S)
        said = f"interrupt {interrupt + 1} at +{delay:.2f} s: exit {proc.returncode}\n{out}\n{err}"
        if proc.returncode == 0:
            outcomes["finished first"] += 1
        else:
            assert proc.returncode == 130, said
            assert err.splitlines() == ["splitdb: interrupted; processes stopped"], said
            outcomes["exit 130"] += 1
        assert split.leftovers() == [], said
        split.assert_targets_verify()
    print(f"whole split {whole:.2f} s; {INTERRUPTS} Ctrl-C: {dict(outcomes)}")


# In the child: `splitdb split ARGS`, dying by SIGKILL just before its N-th rename into place
# (the manifest, then each target, then the manifest marked complete).
KILL_BEFORE_RENAME = """
import os, signal, sys
from pathlib import Path

n, watched = int(sys.argv[1]), set(sys.argv[2].split(","))
renames, real = [0], os.replace

def replace(src, dst, **kwargs):
    if Path(dst).name in watched:
        renames[0] += 1
        if renames[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, **kwargs)

os.replace = replace
from harness.cli import main
sys.exit(main(sys.argv[3:]))
"""
RENAMES = [MANIFEST, *TARGETS, f"{MANIFEST} (complete)"]


@pytest.mark.slow
def test_splits_killed_between_their_renames_run_after_run_leave_only_verified_targets(
    small_split: Split,
) -> None:
    split = small_split
    # Each run gets further, or less far, than the one before it, so a target in place can be
    # the previous run's, or the one before that's: the rerun must accept every one of them.
    for n in (4, 3, 2, 5, 1, 3):
        proc = split.start("-c", KILL_BEFORE_RENAME, str(n), ",".join([MANIFEST, *TARGETS]))
        out, err = proc.communicate(timeout=SPLIT_DEADLINE_S)
        said = f"killed before renaming {RENAMES[n - 1]}: exit {proc.returncode}\n{out}\n{err}"
        assert proc.returncode == -signal.SIGKILL, said
        assert not split.finished(), said
        present = split.assert_targets_verify()
        renamed_now = list(TARGETS)[: max(0, min(n - 2, len(TARGETS)))]
        assert set(renamed_now) <= set(present), said
    proc = split.start()
    out, err = proc.communicate(timeout=SPLIT_DEADLINE_S)
    assert proc.returncode == 0, f"the rerun: exit {proc.returncode}\n{out}\n{err}"
    assert sorted(split.assert_targets_verify()) == sorted(TARGETS)
    assert split.finished() and split.leftovers() == []
