"""Lock waits on a PostgreSQL run's database, counted per role (`harness/pg/locks.py`): a real
wait (one session holding a lock another needs) is seen and counted once for the waiting role;
sessions that do not contend count zero."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from harness.pg.locks import LockWaitCounter
from harness.pg.server import PgServer
from reference.topology import load_topology
from tests.pg_helpers import Installed, install_fresh

pytestmark = pytest.mark.slow

# A hang guard while waiting for a wait to show, never an assertion about speed.
PATIENCE_S = 60.0


@pytest.fixture
def seed(pg_server: PgServer) -> Installed:
    installed = install_fresh(pg_server, load_topology("seed"))
    with installed.connect("agent", autocommit=True) as agent:
        agent.execute(
            "INSERT INTO watermarks VALUES ('EURUSD', 1, 0, 1, 0), ('GBPUSD', 1, 0, 1, 0)"
        )
    return installed


def counter_for(installed: Installed) -> LockWaitCounter:
    roles = {login.user: role for role, login in installed.layout.logins.items()}
    return LockWaitCounter(installed.admin(), installed.layout.dbname, roles)


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting (a hang guard, not a timing check)"
        time.sleep(0.01)


def in_thread(work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_row_lock_wait_is_counted_once_for_the_waiting_role(seed: Installed) -> None:
    counter = counter_for(seed)
    holder = seed.connect("agent")
    waiter = seed.connect("agent", autocommit=True)
    holder.execute("SELECT * FROM watermarks WHERE symbol = 'EURUSD' FOR UPDATE")
    holder_pid = holder.info.backend_pid
    with counter.sampling(interval_s=0.01):
        blocked = in_thread(
            lambda: waiter.execute("UPDATE watermarks SET ticks_seen = 2 WHERE symbol = 'EURUSD'")
        )
        until(lambda: bool(counter.waits))
        # Sampled many times while it lasts, the one wait still counts once.
        until(lambda: counter.samples >= 5)
        holder.commit()
        blocked.join()
    assert counter.counts() == {"agent": 1}
    [wait] = counter.waits
    assert wait.blocked_by == (holder_pid,)
    assert wait.wait_event == "transactionid"
    assert "UPDATE watermarks" in wait.query
    holder.close()
    waiter.close()
    counter.conn.close()


def test_a_reader_behind_a_writers_table_lock_is_counted_for_the_reader(seed: Installed) -> None:
    counter = counter_for(seed)
    agent = seed.connect("agent")
    bot = seed.connect("bot", autocommit=True)
    # UPDATE on a table lets its writer take any table lock there, ACCESS EXCLUSIVE included:
    # every reader of the table then waits.
    agent.execute("LOCK TABLE watermarks IN ACCESS EXCLUSIVE MODE")
    blocked = in_thread(lambda: bot.execute("SELECT count(*) FROM watermarks"))
    until(lambda: bool(counter.sample()))
    agent.commit()
    blocked.join()
    assert counter.counts() == {"bot": 1}
    [wait] = counter.waits
    assert (wait.wait_event, wait.relation, wait.mode) == (
        "relation",
        "analysis.watermarks",
        "AccessShareLock",
    )
    agent.close()
    bot.close()
    counter.conn.close()


def test_sessions_on_different_rows_count_no_wait(seed: Installed) -> None:
    counter = counter_for(seed)
    first = seed.connect("agent")
    second = seed.connect("agent")
    first.execute("UPDATE watermarks SET ticks_seen = 2 WHERE symbol = 'EURUSD'")
    # It returns: a different row is not locked by the first session's open transaction.
    second.execute("UPDATE watermarks SET ticks_seen = 2 WHERE symbol = 'GBPUSD'")
    with seed.connect("bot", autocommit=True) as bot:
        assert bot.execute("SELECT count(*) FROM watermarks").fetchone() == (2,)
    for _ in range(5):
        counter.sample()
    first.commit()
    second.commit()
    assert counter.counts() == {}
    assert counter.samples == 5
    first.close()
    second.close()
    counter.conn.close()
