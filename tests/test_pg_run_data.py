"""The checks of a run on PostgreSQL, each shown able to fail: on a database the stores wrote
(the bot's ticks by COPY, the agent's analysis from its own cycle), each check passes; then a
lost tick, a role that turned synchronous_commit off, a lock wait and a broken grant each turn
their check red."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from harness.pg.attacks import catalogue
from harness.pg.load import violator_op
from harness.pg.server import PgServer
from harness.runs.checks import permissions
from harness.runs.pg_data import PgRunData
from reference.agent import run_cycle
from reference.analysis import SymbolState
from reference.errors import SplitdbError
from reference.events import EventLog, read_events
from reference.pg_store import PgAnalysisStore, PgTickWriter
from reference.topology import load_topology
from tests.conftest import postgres_binaries_or_skip
from tests.test_agent_process import TickSource
from tests.test_pg_run import login

POSTGRES = load_topology("postgres")


@pytest.fixture
def data(tmp_path: Path) -> Iterator[PgRunData]:
    """A throwaway server of the run's own (the tests' shared one runs with fsync off, which the
    settings check would rightly refuse)."""
    postgres_binaries_or_skip()
    run = PgRunData.start(POSTGRES, url=None, run_dir=tmp_path, probes=True)
    try:
        yield run
    finally:
        run.close()


def fill(data: PgRunData, tmp_path: Path) -> Path:
    """Ticks written as the bot (its acks in an event file, as the bot writes them), then the
    agent's cycles over them as the agent; the event file's path."""
    source = TickSource(seed=7)
    writer = PgTickWriter(login(data.run, "bot"))
    events_path = tmp_path / "bot.jsonl"
    events = EventLog(events_path, role="bot")
    try:
        for _ in range(4):
            rows = source.batch(50)
            writer.append(rows)
            last: dict[str, list[int]] = {}
            counts: dict[str, int] = {}
            for row in rows:
                last[row[0]] = [row[1], row[2]]
                counts[row[0]] = counts.get(row[0], 0) + 1
            events.emit("ack", db="ticks", outcome="ok", last=last, rows=counts, n=len(rows))
    finally:
        events.close()
        writer.close()
    store = PgAnalysisStore(login(data.run, "agent"))
    try:
        states: dict[str, SymbolState] = {}
        while run_cycle(store, states, max_ticks=10_000).ticks:
            pass
    finally:
        store.close()
    return events_path


@pytest.mark.slow
def test_every_check_passes_on_what_the_stores_wrote(data: PgRunData, tmp_path: Path) -> None:
    acks = fill(data, tmp_path)
    found = {
        "durability": data.durability([acks]),
        "duplicates": data.duplicates(),
        "integrity": data.integrity(),
        "analysis": data.analysis(),
        "settings": data.settings({}),
        "contention": data.contention({}, max_busy=0),
    }
    for name, check in found.items():
        assert check.ok, (name, check.summary, check.evidence)
        assert check.warning is None, (name, check.warning)
    assert found["durability"].evidence["acked_ticks"] == 4 * 50 * 3
    assert found["analysis"].evidence["bars_expected"] > 0
    integrity = found["integrity"].evidence
    assert "ticks.ticks" in integrity["tables"] and "logs.request_log" in integrity["tables"]
    assert any(i.startswith("ticks.") for i in integrity["indexes"])


@pytest.mark.slow
def test_a_lost_tick_and_a_role_without_synchronous_commit_fail_their_checks(
    data: PgRunData, tmp_path: Path
) -> None:
    acks = fill(data, tmp_path)
    layout = data.run.layout
    with data.run.server.connect(dbname=layout.dbname) as admin:
        admin.execute(
            "DELETE FROM ticks.ticks WHERE (symbol, time_msc, seq) IN (SELECT symbol, time_msc, "
            "seq FROM ticks.ticks ORDER BY time_msc DESC, seq DESC LIMIT 1)"
        )
    durability = data.durability([acks])
    assert not durability.ok and durability.evidence["missing_keys"], durability.summary
    # A role may change its own session defaults: the check reads what its login gets.
    with psycopg.connect(login(data.run, "bot"), autocommit=True) as bot:
        bot.execute(f"ALTER ROLE {layout.login('bot').user} SET synchronous_commit = off")
    settings = data.settings({})
    assert not settings.ok
    assert settings.evidence["mismatches"] == [
        {"role": "bot", "setting": "synchronous_commit", "expected": "on", "actual": "off"}
    ]


@pytest.mark.slow
def test_a_lock_wait_of_a_role_counts_as_contention(data: PgRunData, tmp_path: Path) -> None:
    layout = data.run.layout
    with data.run.server.connect(dbname=layout.dbname, autocommit=False) as admin:
        admin.execute("LOCK TABLE ticks.ticks IN ACCESS EXCLUSIVE MODE")
        writer = PgTickWriter(login(data.run, "bot"))
        done = threading.Event()
        thread = threading.Thread(
            target=lambda: (writer.append(TickSource(seed=3).batch(1)), done.set())
        )
        thread.start()
        time.sleep(0.5)  # the COPY waits behind the lock meanwhile; sampled every 20 ms
        admin.rollback()
    thread.join(10)
    writer.close()
    assert done.is_set()
    check = data.contention({}, max_busy=0)
    assert not check.ok, check.summary
    assert check.evidence["lock_waits"] >= 1
    assert check.evidence["sampled"]["by_role"].get("bot", 0) >= 1


@pytest.mark.slow
def test_a_violator_of_the_run_is_denied_by_the_server_and_a_hole_shows(
    data: PgRunData, tmp_path: Path
) -> None:
    path = tmp_path / "violator.jsonl"
    events = EventLog(path, role="load-violators-0")
    access = data.worker_extra()["pg"]
    with contextlib.ExitStack() as stack:
        op = violator_op(access, "api", ["ticks", "analysis"], events, random.Random(1), stack)
        for _ in range(60):
            op(0)
    events.close()
    check = permissions({"load-violators-0": list(read_events(path))})
    assert check.ok, (check.summary, check.evidence)
    assert check.evidence["denied"] > 0
    # A hole in the grants: the api may now write ticks' probe table.
    with data.run.server.connect(dbname=data.run.layout.dbname) as admin:
        admin.execute(
            f"GRANT ALL ON ALL TABLES IN SCHEMA ticks TO {data.run.layout.login('api').user}"
        )
    path2 = tmp_path / "violator2.jsonl"
    events = EventLog(path2, role="load-violators-0")
    with contextlib.ExitStack() as stack:
        op = violator_op(access, "api", ["ticks"], events, random.Random(1), stack)
        for _ in range(200):
            op(0)
    events.close()
    check = permissions({"load-violators-0": list(read_events(path2))})
    assert not check.ok and check.evidence["succeeded"] > 0, check.summary


@pytest.mark.slow
def test_a_backend_of_a_server_named_by_url_is_not_ours_to_kill(
    pg_server: PgServer, tmp_path: Path
) -> None:
    url = f"postgresql://{pg_server.user}:{quote(pg_server.password or '')}@{pg_server.host}:"
    url += f"{pg_server.port}/"
    named = PgRunData.start(POSTGRES, url=url, run_dir=tmp_path)
    try:
        with pytest.raises(SplitdbError, match="use terminate_backend"):
            named.end_backends("bot", "kill")
        assert named.end_backends("bot", "terminate") == {"backends": []}
    finally:
        named.close()


@pytest.mark.slow
def test_violators_of_three_roles_granting_at_once_get_a_verdict_not_an_error(
    data: PgRunData, tmp_path: Path
) -> None:
    """GRANT and REVOKE without the right complete with a warning, but still rewrite the
    table's catalog row: three violators at once can meet "tuple concurrently updated"
    (XX000), a conflict among the attackers, not an answer about the grants. Retried, each
    attempt gets its verdict; none may count as a refusal for another reason."""
    access = data.worker_extra()["pg"]
    warned = [a for a in catalogue() if a.effect]
    assert warned

    def hammer(role: str) -> Path:
        path = tmp_path / f"{role}.jsonl"
        events = EventLog(path, role=f"load-as-{role}-0")
        with contextlib.ExitStack() as stack:
            op = violator_op(
                access,
                role,
                ["ticks", "analysis", "logs"],
                events,
                random.Random(role),
                stack,
                attempts=warned,
            )
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                op(0)
        events.close()
        return path

    threads = []
    paths: list[Path] = []
    for role in ("bot", "agent", "api"):
        thread = threading.Thread(target=lambda r=role: paths.append(hammer(r)))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(30)
    attempts = [e for p in paths for e in read_events(p) if e["op"] == "attempt"]
    assert len(attempts) > 100
    errors = [e for e in attempts if e["outcome"] == "error"]
    assert not errors, errors[:3]
    check = permissions({str(p): list(read_events(p)) for p in paths})
    assert check.ok, check.summary
    # Their waits on each other's catalog rows are the attackers' own, not the system's.
    contention = data.contention({}, max_busy=0)
    assert contention.ok, (contention.summary, contention.evidence["sampled"]["first"])
