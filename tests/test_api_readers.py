"""The API's reads on its event loop: they never wait for a lock there; a read that meets one
is made again in a worker thread, which waits as every reader does, and is answered."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from reference.access import AccessManager
from reference.api.readers import NO_WAIT_REASON, ReadConnections
from reference.events import EventLog, read_events
from reference.schema import ensure_schema
from reference.topology import load_topology

# A rollback-journal layout: there a writer's exclusive lock makes readers busy (in WAL mode
# readers do not wait for writers, so the lock could not be shown).
ROLLBACK = """\
name = "rollback"
layout = "separate"
status = "status.json"

[defaults]
journal_mode = "delete"
synchronous = "full"
busy_timeout_ms = 5000

[databases.ticks]
path = "ticks.db"
tables = ["ticks"]

[databases.analysis]
path = "analysis.db"
tables = ["bars", "indicators", "watermarks"]

[databases.logs]
path = "logs.db"
tables = ["request_log"]

[roles.bot]
ticks = "rw"
analysis = "ro"
logs = "ro"

[roles.agent]
ticks = "ro"
analysis = "rw"
logs = "ro"

[roles.api]
ticks = "ro"
analysis = "ro"
logs = "rw"
"""


def _access(tmp_path: Path) -> AccessManager:
    topology_file = tmp_path / "rollback.toml"
    topology_file.write_text(ROLLBACK)
    access = AccessManager(load_topology(topology_file), tmp_path / "data")
    owner = access.connect("bot", "ticks")
    ensure_schema(owner, "ticks")
    owner.execute(
        "INSERT INTO ticks (symbol, time_msc, seq, time, bid, ask) VALUES ('EURUSD', 1, 0, 0, 1, 2)"
    )
    owner.close()
    return access


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM ticks").fetchone()[0])


def test_a_read_on_the_event_loop_is_declared_not_to_wait(tmp_path: Path) -> None:
    readers = ReadConnections(_access(tmp_path), "api", EventLog(None, role="api"))
    assert asyncio.run(readers.read_now("ticks", "count", _count)) == 1
    (conn,) = readers._connections(wait=False).values()
    assert conn.settings().busy_timeout_ms == 0
    assert conn.declared_busy_timeout == (0, NO_WAIT_REASON)


@pytest.mark.parametrize("one_statement", [False, True], ids=["read_now", "read_rows_now"])
def test_a_locked_read_moves_to_a_thread_and_the_loop_keeps_running(
    tmp_path: Path, one_statement: bool
) -> None:
    access = _access(tmp_path)
    readers = ReadConnections(access, "api", EventLog(None, role="api"))
    locked = threading.Event()
    release = threading.Event()

    def hold_exclusive_lock() -> None:
        writer = access.connect("bot", "ticks")
        writer.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(10)
        writer.execute("COMMIT")
        writer.close()

    holder = threading.Thread(target=hold_exclusive_lock)
    holder.start()
    assert locked.wait(10)

    async def read_while_locked() -> tuple[int, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                if ticks == 3:
                    # The loop ran while the read waited: now let the writer go.
                    release.set()
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        try:
            if one_statement:
                rows = await readers.read_rows_now("ticks", "count", "SELECT count(*) FROM ticks")
                found = int(rows[0][0])
            else:
                found = await readers.read_now("ticks", "count", _count)
        finally:
            ticker.cancel()
        return found, ticks

    found, ticks = asyncio.run(read_while_locked())
    holder.join(10)
    assert found == 1
    assert ticks >= 3


def test_a_file_replaced_under_the_reader_is_noticed_and_read_at_its_path(tmp_path: Path) -> None:
    access = _access(tmp_path)
    events = EventLog(tmp_path / "events.jsonl", role="api")
    readers = ReadConnections(access, "api", events)
    assert asyncio.run(readers.read_now("ticks", "count", _count)) == 1

    # A restore: a copy with one more tick put in place by a rename, as `mv` does.
    path = access.topology.file_of("ticks", access.data_dir)
    copy = tmp_path / "restored.db"
    shutil.copyfile(path, copy)
    with sqlite3.connect(copy) as conn:
        conn.execute(
            "INSERT INTO ticks (symbol, time_msc, seq, time, bid, ask) "
            "VALUES ('EURUSD', 2, 0, 0, 1, 2)"
        )
    conn.close()
    os.replace(copy, path)

    async def read_until_the_new_file_answers() -> int:
        found = 1
        deadline = time.monotonic() + 10
        while found == 1 and time.monotonic() < deadline:
            found = await readers.read_now("ticks", "count", _count)
            await asyncio.sleep(0.001)
        return found

    assert asyncio.run(read_until_the_new_file_answers()) == 2
    events.close()
    replaced = [e for e in read_events(tmp_path / "events.jsonl") if e["op"] == "file_replaced"]
    assert [(e["db"], e["outcome"]) for e in replaced] == [("ticks", "error")]
