"""The request log writer on its own: bounded queue, batched transactions, retries, draining."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from reference.access import AccessManager, ConnectionSettings
from reference.errors import StoreFailed
from reference.events import Event, EventLog, read_events
from reference.requestlog import (
    RequestLogMiddleware,
    RequestLogSettings,
    RequestLogWriter,
    RequestRecord,
)
from reference.schema import ensure_schema
from reference.topology import load_topology

SEED = load_topology("seed")


def record(i: int, *, method: str | None = "GET") -> RequestRecord:
    # A None method violates request_log's NOT NULL: the way to make one row of a batch fail.
    return RequestRecord(time.time_ns(), method, f"/r/{i}", 200, i, "127.0.0.1")  # type: ignore[arg-type]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.01)


def logged_paths(access: AccessManager) -> list[str]:
    conn = access.connect("bot", "logs")
    try:
        return [row[0] for row in conn.execute("SELECT path FROM request_log ORDER BY id")]
    finally:
        conn.close()


def commits(path: Path) -> list[Event]:
    return [e for e in read_events(path) if e["op"] == "log_commit"]


@pytest.fixture
def logs_access(tmp_path: Path) -> AccessManager:
    access = AccessManager(SEED, tmp_path / "data")
    conn = access.connect("api", "logs")
    ensure_schema(conn, "logs")
    conn.close()
    return access


@pytest.fixture
def write_lock(logs_access: AccessManager) -> Iterator[Callable[[bool], None]]:
    """hold(True) takes the logs database's write lock from another connection; hold(False)
    releases it."""
    conn = logs_access.connect("api", "logs")

    def hold(on: bool) -> None:
        if on:
            conn.execute("BEGIN IMMEDIATE")
        elif conn.in_transaction:
            conn.execute("COMMIT")

    yield hold
    hold(False)
    conn.close()


def test_full_queue_drops_and_counts_instead_of_blocking(
    logs_access: AccessManager, write_lock: Callable[[bool], None]
) -> None:
    writer = RequestLogWriter(
        lambda: logs_access.connect("api", "logs"),
        settings=RequestLogSettings(queue_size=5, batch_size=2, max_delay=0, attempt_timeout=0.02),
    )
    write_lock(True)
    writer.start()
    assert writer.submit(record(0))
    # The writer now holds record 0 and retries it against the lock; the queue is empty.
    wait_until(lambda: writer.stats()["errors"] >= 1, "the writer hit the lock")
    accepted = [writer.submit(record(i)) for i in range(1, 11)]
    assert accepted == [True] * 5 + [False] * 5
    stats = writer.stats()
    assert (stats["dropped"], stats["queued"], stats["logged"]) == (5, 6, 0)

    write_lock(False)
    assert writer.stop(timeout=5)
    stats = writer.stats()
    assert (stats["logged"], stats["dropped"], stats["failed"], stats["queued"]) == (6, 5, 0, 0)
    assert logged_paths(logs_access) == [f"/r/{i}" for i in range(6)]


def test_each_batch_is_one_transaction(logs_access: AccessManager, tmp_path: Path) -> None:
    statements: list[str] = []

    def connect() -> sqlite3.Connection:
        conn = logs_access.connect("api", "logs")
        conn.set_trace_callback(statements.append)
        return conn

    events = EventLog(tmp_path / "events.jsonl", role="api")
    writer = RequestLogWriter(
        connect, settings=RequestLogSettings(batch_size=4, max_delay=0), events=events
    )
    for i in range(10):  # queued before the thread starts, so the batches are exactly 4, 4, 2
        assert writer.submit(record(i))
    writer.start()
    assert writer.stop(timeout=5)
    events.close()

    shape = [
        "INSERT" if s.startswith("INSERT") else s for s in statements if not s.startswith("PRAGMA")
    ]
    one = ["BEGIN IMMEDIATE", *["INSERT"] * 4, "COMMIT"]
    assert shape == one + one + ["BEGIN IMMEDIATE", "INSERT", "INSERT", "COMMIT"]
    assert [(e["rows"], e["outcome"]) for e in commits(tmp_path / "events.jsonl")] == [
        (4, "ok"),
        (4, "ok"),
        (2, "ok"),
    ]
    assert writer.stats()["batches"] == 3
    assert logged_paths(logs_access) == [f"/r/{i}" for i in range(10)]


def test_a_failed_batch_writes_none_of_its_rows(logs_access: AccessManager, tmp_path: Path) -> None:
    events = EventLog(tmp_path / "events.jsonl", role="api")
    writer = RequestLogWriter(
        lambda: logs_access.connect("api", "logs"),
        settings=RequestLogSettings(batch_size=4, max_delay=0),
        events=events,
    )
    batch = [record(0), record(1), record(2, method=None), record(3)]
    for r in [*batch, record(4), record(5)]:
        assert writer.submit(r)
    writer.start()
    wait_until(lambda: writer.stats()["queued"] == 0, "both batches were tried")
    assert writer.stop(timeout=5)
    events.close()

    # The first batch broke a constraint: none of its rows, good ones included, were written,
    # and it did not block the batch after it.
    assert logged_paths(logs_access) == ["/r/4", "/r/5"]
    stats = writer.stats()
    assert (stats["logged"], stats["failed"], stats["batches"]) == (2, 4, 1)
    assert stats["last_error"] is not None and "NOT NULL" in stats["last_error"]
    failed, ok = commits(tmp_path / "events.jsonl")
    assert (failed["rows"], failed["outcome"], failed["code"] & 0xFF) == (4, "error", 19)
    assert (ok["rows"], ok["outcome"]) == (2, "ok")


def test_a_large_batch_is_written_whole_and_in_order_in_one_transaction(
    logs_access: AccessManager, tmp_path: Path
) -> None:
    # 250 rows: two multi-row INSERTs of 100 and 50 single rows, all in one transaction.
    statements: list[str] = []

    def connect() -> sqlite3.Connection:
        conn = logs_access.connect("api", "logs")
        conn.set_trace_callback(statements.append)
        return conn

    writer = RequestLogWriter(connect, settings=RequestLogSettings(batch_size=250, max_delay=0))
    for i in range(260):  # queued before the thread starts: batches of 250 and 10
        assert writer.submit(record(i))
    writer.start()
    assert writer.stop(timeout=5)

    assert logged_paths(logs_access) == [f"/r/{i}" for i in range(260)]
    transactions = [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")]
    assert transactions == ["BEGIN IMMEDIATE", "COMMIT"] * 2
    assert writer.stats()["batches"] == 2


def test_a_bad_row_in_a_large_batch_writes_none_of_its_rows(logs_access: AccessManager) -> None:
    writer = RequestLogWriter(
        lambda: logs_access.connect("api", "logs"),
        settings=RequestLogSettings(batch_size=250, max_delay=0),
    )
    # The bad row is in the second multi-row INSERT: the first one's rows are rolled back too.
    for i in range(250):
        assert writer.submit(record(i, method=None if i == 150 else "GET"))
    assert writer.submit(record(250))
    writer.start()
    wait_until(lambda: writer.stats()["queued"] == 0, "both batches were tried")
    assert writer.stop(timeout=5)

    assert logged_paths(logs_access) == ["/r/250"]
    stats = writer.stats()
    assert (stats["logged"], stats["failed"], stats["batches"]) == (1, 250, 1)


def test_stop_commits_everything_still_queued(logs_access: AccessManager, tmp_path: Path) -> None:
    events = EventLog(tmp_path / "events.jsonl", role="api")
    writer = RequestLogWriter(
        lambda: logs_access.connect("api", "logs"),
        settings=RequestLogSettings(batch_size=100_000, max_delay=3600),
        events=events,
    )
    writer.start()
    for i in range(50):
        assert writer.submit(record(i))
    wait_until(lambda: writer.stats()["queued"] == 50, "all 50 records are waiting")
    assert writer.stats()["logged"] == 0

    assert writer.stop(timeout=5)
    events.close()
    assert logged_paths(logs_access) == [f"/r/{i}" for i in range(50)]
    assert not writer.running
    drain = [e for e in read_events(tmp_path / "events.jsonl") if e["op"] == "log_drain"]
    assert [(e["rows"], e["failed"], e["outcome"]) for e in drain] == [(50, 0, "ok")]


def test_busy_database_is_retried_until_it_is_free(
    logs_access: AccessManager, write_lock: Callable[[bool], None], tmp_path: Path
) -> None:
    events = EventLog(tmp_path / "events.jsonl", role="api")
    writer = RequestLogWriter(
        lambda: logs_access.connect("api", "logs"),
        settings=RequestLogSettings(max_delay=0, attempt_timeout=0.02),
        events=events,
    )
    write_lock(True)
    writer.start()
    for i in range(3):
        writer.submit(record(i))
    wait_until(lambda: writer.stats()["errors"] >= 2, "the writer retried")
    assert writer.stats()["logged"] == 0
    write_lock(False)
    wait_until(lambda: writer.stats()["logged"] == 3, "the writer wrote after the lock went")
    assert writer.stop(timeout=5)
    events.close()

    stats = writer.stats()
    assert stats["failed"] == 0 and stats["last_error"] is not None
    assert "locked" in stats["last_error"]
    attempts = commits(tmp_path / "events.jsonl")
    assert any(e["outcome"] == "busy" and e["code"] & 0xFF == 5 for e in attempts)
    assert sum(e["rows"] for e in attempts if e["outcome"] == "ok") == 3
    assert logged_paths(logs_access) == ["/r/0", "/r/1", "/r/2"]


def test_a_commit_refused_as_busy_is_retried_as_a_whole(tmp_path: Path) -> None:
    # Rollback-journal mode: a reader's open transaction makes the writer's COMMIT itself fail
    # with SQLITE_BUSY, after its INSERTs, leaving the transaction open.
    access = AccessManager(SEED.with_settings(journal_mode="delete"), tmp_path / "data")
    owner = access.connect("api", "logs")
    ensure_schema(owner, "logs")
    owner.close()
    reader = access.connect("bot", "logs")
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM request_log").fetchone()
    events = EventLog(tmp_path / "events.jsonl", role="api")
    writer = RequestLogWriter(
        lambda: access.connect("api", "logs"),
        settings=RequestLogSettings(max_delay=0, attempt_timeout=0.02),
        events=events,
    )
    for i in range(3):
        writer.submit(record(i))
    writer.start()
    wait_until(lambda: writer.stats()["errors"] >= 2, "the writer's commit was refused")
    reader.execute("COMMIT")
    reader.close()
    wait_until(lambda: writer.stats()["logged"] == 3, "the retried batch committed")
    assert writer.stop(timeout=5)
    events.close()

    assert logged_paths(access) == ["/r/0", "/r/1", "/r/2"]
    attempts = commits(tmp_path / "events.jsonl")
    assert {e["outcome"] for e in attempts[:-1]} == {"busy"}
    assert (attempts[-1]["outcome"], attempts[-1]["rows"]) == ("ok", 3)


def test_stop_gives_up_at_its_deadline_and_counts_what_it_could_not_write(
    logs_access: AccessManager, write_lock: Callable[[bool], None], tmp_path: Path
) -> None:
    events = EventLog(tmp_path / "events.jsonl", role="api")
    writer = RequestLogWriter(
        lambda: logs_access.connect("api", "logs"),
        settings=RequestLogSettings(batch_size=2, max_delay=0, attempt_timeout=0.02),
        events=events,
    )
    write_lock(True)
    writer.start()
    for i in range(5):
        writer.submit(record(i))
    assert not writer.stop(timeout=0.2)
    events.close()

    assert not writer.running
    stats = writer.stats()
    assert (stats["logged"], stats["failed"], stats["queued"]) == (0, 5, 0)
    drain = [e for e in read_events(tmp_path / "events.jsonl") if e["op"] == "log_drain"]
    assert [(e["failed"], e["outcome"]) for e in drain] == [(5, "error")]


def test_submit_after_stop_is_dropped(logs_access: AccessManager) -> None:
    writer = RequestLogWriter(lambda: logs_access.connect("api", "logs"))
    writer.start()
    assert writer.stop(timeout=5)
    assert not writer.submit(record(0))
    assert writer.stats()["dropped"] == 1


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"queue_size": 0}, "queue_size=0 must be an integer >= 1"),
        ({"batch_size": 2.5}, "batch_size=2.5 must be an integer >= 1"),
        ({"max_delay": -1}, "max_delay=-1 must be a finite number of seconds >= 0"),
        ({"attempt_timeout": float("nan")}, "attempt_timeout=nan must be a finite number"),
    ],
)
def test_settings_name_the_bad_value(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        RequestLogSettings(**changes)  # type: ignore[arg-type]


def test_middleware_records_method_path_status_and_client(logs_access: AccessManager) -> None:
    def ok(request: Request) -> Response:
        return PlainTextResponse("ok")

    def teapot(request: Request) -> Response:
        return PlainTextResponse("no", status_code=418)

    def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    writer = RequestLogWriter(lambda: logs_access.connect("api", "logs"))
    app = Starlette(
        routes=[Route("/ok", ok), Route("/teapot", teapot, methods=["POST"]), Route("/boom", boom)]
    )
    app.add_middleware(RequestLogMiddleware, writer=writer)
    writer.start()

    async def requests() -> list[int]:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False, client=("10.1.2.3", 5))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return [
                (await client.get("/ok?x=1")).status_code,
                (await client.post("/teapot")).status_code,
                (await client.get("/boom")).status_code,
                (await client.get("/missing")).status_code,
            ]

    assert asyncio.run(requests()) == [200, 418, 500, 404]
    assert writer.stop(timeout=5)

    conn = logs_access.connect("bot", "logs")
    rows = conn.execute(
        "SELECT method, path, status, client, duration_us >= 0, ts_ns > 0 "
        "FROM request_log ORDER BY id"
    ).fetchall()
    conn.close()
    assert rows == [
        ("GET", "/ok", 200, "10.1.2.3", 1, 1),
        ("POST", "/teapot", 418, "10.1.2.3", 1, 1),
        ("GET", "/boom", 500, "10.1.2.3", 1, 1),
        ("GET", "/missing", 404, "10.1.2.3", 1, 1),
    ]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    queue_size=st.integers(1, 20),
    batch_size=st.integers(1, 8),
    submitters=st.lists(st.integers(0, 30), min_size=1, max_size=3),
)
def test_every_submitted_record_is_logged_dropped_or_failed(
    queue_size: int, batch_size: int, submitters: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        access = AccessManager(SEED, Path(tmp) / "data")
        writer = RequestLogWriter(
            lambda: access.connect("api", "logs"),
            settings=RequestLogSettings(queue_size=queue_size, batch_size=batch_size, max_delay=0),
        )
        conn = access.connect("api", "logs")
        ensure_schema(conn, "logs")
        conn.close()
        writer.start()
        accepted: list[bool] = []

        def submit(n: int, first: int) -> None:
            accepted.extend(writer.submit(record(first + i)) for i in range(n))

        threads = [
            threading.Thread(target=submit, args=(n, 1000 * k)) for k, n in enumerate(submitters)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert writer.stop(timeout=5)

        stats = writer.stats()
        assert stats["queued"] == 0 and stats["failed"] == 0
        assert stats["logged"] + stats["dropped"] == sum(submitters)
        assert stats["logged"] == accepted.count(True) == len(logged_paths(access))


def test_the_writers_short_busy_timeout_is_declared_with_its_reason(tmp_path: Path) -> None:
    """It differs from the topology on purpose (the writer retries on its own): it says so."""
    seen: list[tuple[str, object]] = []
    access = AccessManager(
        SEED, tmp_path / "data", on_settings=lambda s, when: seen.append((when, s))
    )
    access.initialize()
    seen.clear()
    writer = RequestLogWriter(
        lambda: access.connect("api", "logs"), settings=RequestLogSettings(attempt_timeout=0.3)
    )
    writer.start()
    assert writer.submit(record(1))
    assert writer.stop(timeout=5)
    closed = [s for when, s in seen if when == "close"]
    assert closed, seen
    for settings_ in closed:
        assert isinstance(settings_, ConnectionSettings)
        assert settings_.busy_timeout_ms == settings_.declared_busy_timeout_ms == 300
        assert settings_.declared_reason and "retries" in settings_.declared_reason


# --- the writer over a store's write function (the API on PostgreSQL) --------------------------


class FlakyStore:
    """An `ApiStore.log_requests` that fails its first `failures` calls as a server that ended
    the connection does (57P01, transient), or with a failure that cannot pass; then commits."""

    def __init__(self, failures: int, *, transient: bool = True) -> None:
        self.failures = failures
        self.transient = transient
        self.calls = 0
        self.rows: list[RequestRecord] = []

    def log_requests(self, records: Sequence[RequestRecord]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreFailed(
                "log requests",
                "logs",
                "error" if self.transient else "denied",
                "57P01" if self.transient else "42501",
                "terminating connection due to administrator command",
                transient=self.transient,
            )
        self.rows.extend(records)


def test_a_batch_the_store_failed_stays_queued_and_is_written_once(tmp_path: Path) -> None:
    events = EventLog(tmp_path / "events.jsonl", role="api")
    store = FlakyStore(failures=3)
    writer = RequestLogWriter(
        write=store.log_requests,
        settings=RequestLogSettings(batch_size=4, max_delay=0),
        events=events,
    )
    for i in range(10):  # queued before the thread starts: batches of 4, 4 and 2
        assert writer.submit(record(i))
    writer.start()
    wait_until(lambda: writer.stats()["logged"] == 10, "the writer wrote after the failures")
    assert writer.running
    assert writer.stop(timeout=5)
    events.close()

    assert [r.path for r in store.rows] == [f"/r/{i}" for i in range(10)]
    stats = writer.stats()
    assert (stats["logged"], stats["failed"], stats["errors"], stats["batches"]) == (10, 0, 3, 3)
    assert stats["last_error"] is not None and "57P01" in stats["last_error"]
    attempts = [
        (e["rows"], e["attempt"], e["outcome"], e.get("code"))
        for e in commits(tmp_path / "events.jsonl")
    ]
    assert attempts == [
        (4, 1, "error", "57P01"),
        (4, 2, "error", "57P01"),
        (4, 3, "error", "57P01"),
        (4, 4, "ok", None),
        (4, 1, "ok", None),
        (2, 1, "ok", None),
    ]


def test_a_store_failure_that_cannot_pass_fails_its_batch_and_the_log_goes_on(
    tmp_path: Path,
) -> None:
    store = FlakyStore(failures=1, transient=False)
    writer = RequestLogWriter(
        write=store.log_requests, settings=RequestLogSettings(batch_size=4, max_delay=0)
    )
    for i in range(6):
        assert writer.submit(record(i))
    writer.start()
    assert writer.stop(timeout=5)
    assert [r.path for r in store.rows] == ["/r/4", "/r/5"]
    stats = writer.stats()
    assert (stats["logged"], stats["failed"], stats["errors"]) == (2, 4, 1)


def test_while_the_store_fails_records_queue_and_a_stop_counts_what_is_left(
    tmp_path: Path,
) -> None:
    events = EventLog(tmp_path / "events.jsonl", role="api")
    store = FlakyStore(failures=10**9)
    writer = RequestLogWriter(
        write=store.log_requests,
        settings=RequestLogSettings(batch_size=2, max_delay=0),
        events=events,
    )
    writer.start()
    for i in range(5):
        assert writer.submit(record(i))
    wait_until(lambda: store.calls >= 2, "the writer retried")
    assert writer.running and writer.stats()["queued"] == 5
    assert not writer.stop(timeout=0.2)
    events.close()

    stats = writer.stats()
    assert (stats["logged"], stats["failed"], stats["queued"]) == (0, 5, 0)
    drain = [e for e in read_events(tmp_path / "events.jsonl") if e["op"] == "log_drain"]
    assert [(e["failed"], e["outcome"]) for e in drain] == [(5, "error")]


def test_a_writer_writes_through_a_connection_or_a_write_function_not_both(
    logs_access: AccessManager,
) -> None:
    store = FlakyStore(failures=0)
    with pytest.raises(ValueError, match="either"):
        RequestLogWriter(lambda: logs_access.connect("api", "logs"), write=store.log_requests)
    with pytest.raises(ValueError, match="either"):
        RequestLogWriter()
