"""The storage interfaces on PostgreSQL (`reference/pg_store.py`): each role's store does what its
process needs under its own grants and nothing more, a batch of ticks is all there or none even
when its writer is killed, and the restart watermark is exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.pg.server import PgServer
from reference import crashpoints
from reference.analysis import Tick, analyze, fold
from reference.errors import StoreFailed, StoreSetupError
from reference.pg_store import CONNINFO_ENV, PgAnalysisStore, PgApiStore, PgTickWriter
from reference.requestlog import RequestRecord
from reference.storage import AnalysisStore, ApiStore, TickWriter
from reference.topology import load_topology
from tests.fixtures.pg_tick_batches import rows_of
from tests.pg_helpers import INSUFFICIENT_PRIVILEGE, Installed, install_fresh

pytestmark = pytest.mark.slow

SEED = load_topology("seed")
# A hang guard for waits on a child process, never an assertion about speed.
PATIENCE_S = 120.0


@pytest.fixture(scope="module")
def seed(pg_server: PgServer) -> Installed:
    return install_fresh(pg_server, SEED)


@pytest.fixture
def fresh(seed: Installed) -> Installed:
    """The seed installation with every table emptied (by the installer)."""
    with seed.admin() as admin:
        admin.execute(
            "TRUNCATE ticks.ticks, analysis.bars, analysis.indicators, analysis.watermarks, "
            "logs.request_log RESTART IDENTITY"
        )
    return seed


@pytest.fixture
def bot(fresh: Installed) -> Iterator[PgTickWriter]:
    writer = PgTickWriter(fresh.conninfo("bot"))
    yield writer
    writer.close()


def tick_rows(symbol: str, ticks: list[Tick]) -> list[tuple[Any, ...]]:
    return [
        (
            symbol,
            t.time_msc,
            t.seq,
            t.time_msc // 1000,
            t.bid,
            t.bid + 2e-5,
            t.bid,
            1,
            6,
            t.volume_real,
        )
        for t in ticks
    ]


def some_ticks(n: int, start: int = 1_700_000_000_000) -> list[Tick]:
    # 7 s apart: n ticks span several 1m bars, so bars close and indicators get values.
    return [Tick(start + i * 7_000, i % 3, 1.1 + (i % 11) * 1e-4, 0.5) for i in range(n)]


def count(installed: Installed, sql: str) -> int:
    with installed.admin() as admin:
        row = admin.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


# -- every role does what its interface needs, under its own grants --------------------------


def test_the_stores_satisfy_their_role_interfaces(fresh: Installed) -> None:
    stores: list[tuple[object, type]] = [
        (PgTickWriter(fresh.conninfo("bot")), TickWriter),
        (PgAnalysisStore(fresh.conninfo("agent")), AnalysisStore),
        (PgApiStore(fresh.conninfo("api")), ApiStore),
    ]
    for store, interface in stores:
        # Protocols are structural: the checker holds the signatures (mypy), this the names.
        missing = [n for n in dir(interface) if not n.startswith("_") and not hasattr(store, n)]
        assert missing == [], f"{type(store).__name__} lacks {missing}"
        store.close()  # type: ignore[attr-defined]


def test_bot_agent_and_api_run_the_data_path_on_their_own_logins(
    fresh: Installed, bot: PgTickWriter
) -> None:
    ticks = some_ticks(300)  # 35 minutes: enough 1m bars for every indicator to have values
    inserted = bot.append(tick_rows("EURUSD", ticks))
    assert inserted.new == 300
    assert bot.last_keys(["EURUSD", "GBPUSD"]) == {"EURUSD": (ticks[-1].time_msc, ticks[-1].seq)}

    agent = PgAnalysisStore(fresh.conninfo("agent"))
    try:
        assert agent.symbols() == ["EURUSD"]
        state = agent.load_symbol("EURUSD")
        assert state.watermark is None
        read = agent.ticks_after("EURUSD", None, 200)
        assert read == ticks[:200]
        state, update = fold(state, read)
        agent.store([update], now_ns=time.time_ns())
        rest = agent.ticks_after("EURUSD", state.watermark, 1000)
        assert rest == ticks[200:]
        state, update = fold(agent.load_symbol("EURUSD"), rest)
        agent.store([update], now_ns=time.time_ns())
        # What a restarted agent restores is what folding every tick at once gives.
        assert agent.load_symbol("EURUSD") == analyze("EURUSD", ticks)[0]
        assert agent.logs_summary() is None
    finally:
        agent.close()

    api = PgApiStore(fresh.conninfo("api"))
    try:
        assert api.symbols() == ["EURUSD"]
        latest = api.latest_tick("EURUSD")
        assert latest is not None and latest["time_msc"] == ticks[-1].time_msc
        assert api.latest_tick("NOSUCH") is None
        page = api.ticks("EURUSD", ticks[0].time_msc, ticks[9].time_msc, 5)
        assert [r["time_msc"] for r in page.rows] == [t.time_msc for t in ticks[:5]]
        assert page.known
        empty = api.ticks("EURUSD", 0, 1, 5)
        assert empty.rows == [] and empty.known
        assert not api.ticks("NOSUCH", 0, 1, 5).known
        bars = api.bars("EURUSD", "1m", 0, 2**62, 1000)
        assert bars.known and len(bars.rows) == count(
            fresh, "SELECT count(*) FROM analysis.bars WHERE timeframe = '1m'"
        )
        sma = api.indicators("EURUSD", "1m", "sma14", 0, 2**62, 1000)
        every = api.indicators("EURUSD", "1m", None, 0, 2**62, 1000)
        assert sma.rows and {r["name"] for r in sma.rows} == {"sma14"}
        assert len(every.rows) > len(sma.rows)
        assert api.known_in_ticks("EURUSD") and not api.known_in_ticks("NOSUCH")
        api.log_requests(
            [RequestRecord(time.time_ns(), "GET", "/symbols", 200, 150, "127.0.0.1")] * 3
        )
    finally:
        api.close()
    assert bot.monitor() == {"analysis": 1, "logs": 3}
    agent = PgAnalysisStore(fresh.conninfo("agent"))
    summary = agent.logs_summary()
    agent.close()
    assert summary is not None and (summary.requests, summary.last_status) == (3, 200)


def _one_update() -> list[Any]:
    return [analyze("EURUSD", some_ticks(20))[1]]


_TICKS = tick_rows("EURUSD", some_ticks(3))
_REQUEST = RequestRecord(1, "GET", "/", 200, 1, None)
REFUSED: dict[str, tuple[str, type, Any]] = {
    "agent-appends-ticks": ("agent", PgTickWriter, lambda s: s.append(_TICKS)),
    "api-appends-ticks": ("api", PgTickWriter, lambda s: s.append(_TICKS)),
    "bot-stores-analysis": ("bot", PgAnalysisStore, lambda s: s.store(_one_update(), now_ns=1)),
    "api-stores-analysis": ("api", PgAnalysisStore, lambda s: s.store(_one_update(), now_ns=1)),
    "bot-logs-requests": ("bot", PgApiStore, lambda s: s.log_requests([_REQUEST])),
    "agent-logs-requests": ("agent", PgApiStore, lambda s: s.log_requests([_REQUEST])),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_store_on_another_roles_login_is_refused_by_the_server(
    fresh: Installed, case: str
) -> None:
    role, store_class, write = REFUSED[case]
    store = store_class(fresh.conninfo(role))
    try:
        with pytest.raises(StoreFailed) as failed:
            write(store)
    finally:
        store.close()
    assert (failed.value.code, failed.value.outcome) == (INSUFFICIENT_PRIVILEGE, "denied")
    assert not failed.value.unclear
    assert count(fresh, "SELECT count(*) FROM ticks.ticks") == 0
    assert count(fresh, "SELECT count(*) FROM analysis.bars") == 0
    assert count(fresh, "SELECT count(*) FROM logs.request_log") == 0


def test_api_reads_are_read_only_snapshots(fresh: Installed) -> None:
    api = PgApiStore(fresh.conninfo("api"))
    try:
        # Even on logs, which the API may write: its reads cannot, and a page and its "is the
        # symbol known" see one snapshot.
        shown = api._read(
            "logs",
            "test",
            lambda c: [
                c.execute(f"SHOW {n}").fetchone()
                for n in ("transaction_isolation", "transaction_read_only")
            ],
        )
    finally:
        api.close()
    assert shown == [("repeatable read",), ("on",)]


def test_a_store_refuses_the_installers_superuser_login(fresh: Installed) -> None:
    with pytest.raises(StoreSetupError, match="role's login role"):
        PgTickWriter(fresh.server.conninfo(dbname=fresh.layout.dbname))


def test_a_resent_batch_is_a_no_op(fresh: Installed, bot: PgTickWriter) -> None:
    first = tick_rows("EURUSD", some_ticks(50))
    assert bot.append(first).new == 50
    # A re-send after an unclear COMMIT: partly new, partly stored. Only the new rows count.
    overlap = first[25:] + tick_rows("EURUSD", some_ticks(10, start=1_800_000_000_000))
    assert bot.append(overlap).new == 10
    assert bot.append(first).new == 0
    assert count(fresh, "SELECT count(*) FROM ticks.ticks") == 60


@pytest.mark.parametrize("committed", [True, False], ids=["commit-went-through", "commit-lost"])
def test_a_request_batch_resent_after_an_unclear_commit_is_logged_once(
    fresh: Installed, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    """The connection breaks around a COMMIT of the request log, so its outcome is unclear; the
    writer sends the batch again, and the store looks for it before writing it again."""
    batch = [
        RequestRecord(time.time_ns() + i, "GET", f"/r/{i}", 200, i, "127.0.0.1") for i in range(3)
    ]
    where = "txn.after_commit" if committed else "txn.before_commit"

    def connection_lost(point: str) -> None:
        if point == where:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    api = PgApiStore(fresh.conninfo("api"))
    try:
        with monkeypatch.context() as patched, pytest.raises(StoreFailed) as failed:
            patched.setattr(crashpoints, "reach", connection_lost)
            api.log_requests(batch)
        assert failed.value.unclear and failed.value.transient
        assert count(fresh, "SELECT count(*) FROM logs.request_log") == (3 if committed else 0)
        api.log_requests(batch)
        assert count(fresh, "SELECT count(*) FROM logs.request_log") == 3
        # Only a batch re-sent after an unclear commit is looked for; the next one is written.
        api.log_requests(batch[:1])
    finally:
        api.close()
    assert count(fresh, "SELECT count(*) FROM logs.request_log") == 4


# -- the restart watermark is exact ----------------------------------------------------------

STEP = st.one_of(
    st.tuples(st.just("batch"), st.lists(st.sampled_from("ABC"), min_size=1, max_size=40)),
    st.tuples(st.just("restart"), st.just([])),
    st.tuples(st.just("resend"), st.just([])),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEP, min_size=1, max_size=12))
def test_the_watermark_after_restart_is_the_last_committed_tick(
    seed: Installed, steps: list[tuple[str, list[str]]]
) -> None:
    with seed.admin() as admin:
        admin.execute("TRUNCATE ticks.ticks")
    writer = PgTickWriter(seed.conninfo("bot"))
    expected: dict[str, tuple[int, int]] = {}
    clock = 1_700_000_000_000
    sent: list[list[tuple[Any, ...]]] = []
    try:
        for kind, symbols in steps:
            if kind == "restart":
                writer.close()
                writer = PgTickWriter(seed.conninfo("bot"))
            elif kind == "resend" and sent:
                assert writer.append(sent[-1]).new == 0
            elif kind == "batch":
                rows = []
                for i, symbol in enumerate(symbols):
                    # Several ticks of one millisecond: seq breaks the tie, as on a real feed.
                    clock += i % 2
                    seq = expected[symbol][1] + 1 if expected.get(symbol, (0, 0))[0] == clock else 0
                    rows.append((symbol, clock, seq, clock // 1000, 1.1, 1.2, 1.1, 1, 6, 0.5))
                    expected[symbol] = (clock, seq)
                assert writer.append(rows).new == len(rows)
                sent.append(rows)
            assert writer.last_keys("ABCD") == expected
    finally:
        writer.close()


# -- a killed writer leaves whole batches ----------------------------------------------------


def _start_writer(
    installed: Installed, batches: int, size: int, crash_at: str | None
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SPLITDB_CRASH_AT"}
    env[CONNINFO_ENV] = installed.conninfo("bot")
    if crash_at is not None:
        env["SPLITDB_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.pg_tick_batches", str(batches), str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _batches_stored(installed: Installed) -> dict[int, int]:
    with installed.admin() as admin:
        return {
            int(seq): int(n)
            for seq, n in admin.execute("SELECT seq, count(*) FROM ticks.ticks GROUP BY seq")
        }


def _check_whole_batches(installed: Installed, acked: list[int], size: int) -> int:
    """Every stored batch is whole, they are 0..k with no gap, every acknowledged one is
    among them, and the watermark is the last stored batch's last keys; returns k + 1."""
    stored = _batches_stored(installed)
    assert all(n == size for n in stored.values()), f"a partial batch: {stored}"
    assert sorted(stored) == list(range(len(stored)))
    assert set(acked) <= set(stored)
    writer = PgTickWriter(installed.conninfo("bot"))
    try:
        keys = writer.last_keys(["EURUSD", "GBPUSD", "USDJPY"])
    finally:
        writer.close()
    expected: dict[str, tuple[int, int]] = {}
    for batch in range(len(stored)):
        for row in rows_of(batch, size):
            expected[row[0]] = (row[1], row[2])
    assert keys == expected
    return len(stored)


def test_a_writer_killed_before_commit_leaves_no_partial_batch(fresh: Installed) -> None:
    size = 500
    # Dies by SIGKILL in its 4th write transaction, after the COPY sent every row, before COMMIT.
    child = _start_writer(fresh, 10, size, "bot/txn.before_commit:4")
    out, err = child.communicate(timeout=PATIENCE_S)
    assert child.returncode == -signal.SIGKILL, err
    acked = [int(line.split()[1]) for line in out.splitlines() if line.startswith("ack")]
    assert acked == [0, 1, 2]
    assert _check_whole_batches(fresh, acked, size) == 3


def test_a_writer_killed_from_outside_mid_batch_leaves_whole_batches(fresh: Installed) -> None:
    size = 20_000
    child = _start_writer(fresh, 50, size, None)
    assert child.stdout is not None
    acked: list[int] = []
    # Killed right after it says it began its 3rd batch: 20,000 rows are still on their way.
    for line in child.stdout:
        if line.startswith("ack"):
            acked.append(int(line.split()[1]))
        if line.strip() == "begin 2":
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=PATIENCE_S)
    child.stdout.close()
    assert child.stderr is not None
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert acked == [0, 1]
    stored = _check_whole_batches(fresh, acked, size)
    assert stored in (2, 3)  # batch 2 is whole if its COMMIT beat the kill, else absent
