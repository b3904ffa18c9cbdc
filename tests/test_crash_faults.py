"""Crash faults: torn WAL frames and lost -shm files, a torn status board."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from harness.results.report import Repeat
from harness.runs.faults import garble_status_board, judge_board_repairs, tear_wal
from harness.runs.run import run_scenario
from harness.runs.scenario import load_scenario
from reference.status import StatusBoard

ROOT = Path(__file__).resolve().parent.parent


def passing_run(name: str, duration: float, out: Path) -> Repeat:
    """scenarios/NAME.toml, shortened to `duration` seconds: its one repeat, every check passed."""
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    result = run_scenario(
        scenario.model_copy(update={"duration": duration}), out_dir=out, base_dir=ROOT / "scenarios"
    )
    (repeat,) = result.report.repeats
    failed = {c.name: c.summary for c in repeat.checks if not c.ok}
    assert not failed, failed
    return repeat


def test_a_torn_wal_frame_is_ignored_and_every_committed_row_survives(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = wal")
    writer.execute("PRAGMA wal_autocheckpoint = 0")  # the rows stay in the WAL
    writer.execute("CREATE TABLE t (x)")
    for i in range(100):
        writer.execute("INSERT INTO t VALUES (?)", (i,))
    # A read-only connection closing last leaves the WAL and -shm as a crash would.
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    reader.execute("SELECT count(*) FROM t").fetchone()
    writer.close()
    reader.close()
    done = tear_wal(path)
    assert done["appended_bytes"] == (24 + 4096) // 2 and done["shm_deleted"]
    assert not Path(str(path) + "-shm").exists()
    again = sqlite3.connect(path)
    assert again.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert again.execute("SELECT count(*), sum(x) FROM t").fetchone() == (100, sum(range(100)))


def test_a_torn_status_board_is_repaired_by_the_next_update_and_judged(tmp_path: Path) -> None:
    board = StatusBoard(tmp_path / "board.json")
    board.update("bot", {"committed": 1})
    board.update("api", {"logged": 2})
    t0 = time.time()
    garble_status_board(board.path)
    records = [{"index": 0, "kind": "status_garbage", "applied": True, "at_s": 0.0}]
    judge_board_repairs(records, board, t0)
    assert records[0]["repaired"] is False
    assert str(records[0]["problem"]).startswith("the board was not repaired by the end of the run")
    board.update("bot", {"committed": 3})
    records = [{"index": 0, "kind": "status_garbage", "applied": True, "at_s": 0.0}]
    judge_board_repairs(records, board, t0)
    assert records[0]["repaired"] is True and "problem" not in records[0]
    assert board.read()["sections"]["api"]["logged"] == 2  # restored from its copy


@pytest.mark.slow
def test_the_system_comes_back_from_a_crash_with_nothing_acknowledged_lost(tmp_path: Path) -> None:
    repeat = passing_run("crash-faults", 8, tmp_path)
    torn, garbled = repeat.faults
    assert torn.applied and garbled.applied
    extra = torn.model_dump()
    assert sorted(extra["killed"]) == ["agent", "api", "bot"]
    assert all(v["shm_deleted"] for v in extra["torn"].values())
    assert garbled.model_dump()["repaired"] is True


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0, reason="disk_full mounts a tmpfs for the data directory: needs root"
)
def test_a_full_disk_is_waited_out_with_nothing_acknowledged_lost(tmp_path: Path) -> None:
    repeat = passing_run("disk-full", 7, tmp_path)
    (fault,) = repeat.faults
    record = fault.model_dump()
    # The disk was full (whether the bot's commit met it in those seconds depends on whether
    # its WAL had to grow: tests/test_bot.py covers the bot waiting it out).
    assert record["filled_bytes"] > 0 and record["free_bytes_after"] == 0
    assert record["freed_s"] is not None
    # The tmpfs is gone and its files were kept in the run directory.
    data = Path(repeat.dir) / "data"
    assert not os.path.ismount(data) and (data / "unified_tick_pipeline.db").is_file()
    assert not (data / ".splitdb-ballast").exists()


def test_sqlite_full_is_its_own_outcome() -> None:
    from reference.events import outcome_of

    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA max_page_count = 2")
    conn.execute("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.Error) as error:
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 4000,)] * 10)
    assert outcome_of(error.value) == ("full", 13)


def test_a_file_watch_notices_a_file_replaced_at_its_path(tmp_path: Path) -> None:
    from reference.file_identity import FileWatch

    path = tmp_path / "a.db"
    path.write_bytes(b"one")
    watch = FileWatch(path)
    assert not watch.replaced()
    path.write_bytes(b"same file, new content")
    assert not watch.replaced()
    (tmp_path / "b.db").write_bytes(b"two")
    os.replace(tmp_path / "b.db", path)
    assert watch.replaced()
    path.unlink()
    assert watch.replaced()


def test_a_file_watch_looking_lately_notices_a_replacement_at_its_next_look(
    tmp_path: Path,
) -> None:
    from reference.file_identity import FileWatch

    path = tmp_path / "a.db"
    path.write_bytes(b"one")
    watch = FileWatch(path)
    assert not watch.replaced_lately(3600)  # the first call looks
    (tmp_path / "b.db").write_bytes(b"two")
    os.replace(tmp_path / "b.db", path)
    assert not watch.replaced_lately(3600)  # within the hour: not looked at again
    watch._next_look = 0.0  # the hour is over
    assert watch.replaced_lately(3600)


def test_a_check_that_cannot_read_its_database_fails_saying_why() -> None:
    from harness.runs.checks import Check, judged

    def malformed() -> Check:
        raise sqlite3.DatabaseError("database disk image is malformed")

    check = judged("duplicates", malformed)
    assert not check.ok
    assert check.summary == ("could not be judged: DatabaseError: database disk image is malformed")


@pytest.mark.slow
def test_a_file_replaced_under_the_stack_is_noticed_by_every_process(tmp_path: Path) -> None:
    repeat = passing_run("replace-file", 6, tmp_path)
    for fault in repeat.faults:
        record = fault.model_dump()
        assert record["applied"] and record["old_inode"] != record["new_inode"]
    noticed = set()
    for name in ("bot", "agent", "api"):
        events = (Path(repeat.dir) / "events" / f"{name}.jsonl").read_text()
        if '"op":"file_replaced"' in events:
            noticed.add(name)
    assert noticed == {"bot", "agent", "api"}


def test_a_skewed_wall_clock_follows_its_file(tmp_path: Path) -> None:
    from reference.market_clock import SkewedWall

    skew = tmp_path / "clock-skew"
    wall = SkewedWall(skew)
    assert abs(wall() - time.time()) < 1.0  # no file: no skew
    skew.write_text("-3600\n")
    wall._next_read = 0.0  # read it now, not in 50 ms
    assert abs(wall() - (time.time() - 3600)) < 1.0


def test_a_clock_jump_needs_how_far() -> None:
    from harness.errors import ScenarioError
    from harness.runs.scenario import parse_scenario

    with pytest.raises(ScenarioError) as error:
        parse_scenario({"name": "x", "fault": [{"kind": "clock_jump", "at": 1}]})
    assert "by: a clock_jump fault steps the bot's clock by this many seconds" in str(error.value)


@pytest.mark.slow
def test_clock_jumps_are_said_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    repeat = passing_run("clock-jumps", 6, tmp_path)
    bot = [json.loads(line) for line in (Path(repeat.dir) / "events" / "bot.jsonl").open()]
    jumps = [e["by_s"] for e in bot if e["op"] == "clock_jump"]
    assert len(jumps) == 2 and jumps[0] > 0 > jumps[1]
    assert [f.model_dump()["skew_s"] for f in repeat.faults] == [30.0, -30.0]
