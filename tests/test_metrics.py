"""Metrics from event logs (harness.runs.metrics), on event files written by reference.events.

The event writer stamps each event with `t` (monotonic ns) and `wall` (epoch s) from the `time`
module; here a `Clock` stands in for that module inside reference.events, so every figure the
metrics derive from times is known exactly and no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference.events
from harness.runs.metrics import (
    STALL_MS,
    analysis_lag,
    bot_metrics,
    histogram,
    latency_summary,
    operation_metrics,
    percentile,
    time_series,
)
from reference.access import AccessManager
from reference.agent import run_cycle
from reference.analysis import SymbolState
from reference.events import Event, EventLog, read_events
from reference.sqlite_store import SqliteAnalysisStore
from reference.tickstore import insert_ticks

START = 1_700_000_000.0  # a wall-clock instant; binary fractions of a second add to it exactly
BASE_MSC = 1_700_000_000_000
# Examples are judged by what they return, never by how long they took on a busy machine.
NO_DEADLINE = settings(deadline=None)


class Clock:
    """Stands in for the `time` module inside reference.events: the writer stamps with it."""

    def __init__(self) -> None:
        self.wall = START
        self.mono_ns = 50_000_000_000

    def time(self) -> float:
        return self.wall

    def monotonic_ns(self) -> int:
        return self.mono_ns

    def at(self, wall: float) -> None:
        """Move both clocks to `wall` (forward or back: a test may write events out of order)."""
        self.mono_ns += round((wall - self.wall) * 1e9)
        self.wall = wall

    def advance(self, seconds: float) -> None:
        self.at(self.wall + seconds)


class Logs:
    """One event file per process in a directory, read back the way `splitdb run` does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.open: dict[str, EventLog] = {}

    def log(self, name: str, role: str | None = None) -> EventLog:
        if name not in self.open:
            self.open[name] = EventLog(self.directory / f"{name}.jsonl", role=role or name)
        return self.open[name]

    def events(self) -> dict[str, list[Event]]:
        for log in self.open.values():
            log.close()
        return {p.stem: list(read_events(p)) for p in sorted(self.directory.glob("*.jsonl"))}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(reference.events, "time", fake)
    return fake


@pytest.fixture
def logs(tmp_path: Path, clock: Clock) -> Iterator[Logs]:
    found = Logs(tmp_path / "events")
    yield found
    for log in found.open.values():
        log.close()


def ack(
    log: EventLog,
    n: int,
    *,
    symbol: str = "EURUSD",
    key: tuple[int, int] | None = None,
    dur_us: int = 1000,
    wait_us: int = 0,
    age_ms: int = 0,
    pending: int = 0,
) -> None:
    """A bot ack as reference.bot records one after each COMMIT."""
    last = key or (BASE_MSC + n, 0)
    log.emit(
        "ack",
        db="ticks",
        dur_us=dur_us,
        wait_us=wait_us,
        age_ms=age_ms,
        pending=pending,
        outcome="ok",
        last={symbol: list(last)},
        rows={symbol: n},
        n=n,
    )


def agent_commit(log: EventLog, watermarks: dict[str, tuple[int, int]], ticks: int = 1) -> None:
    """An agent commit as reference.agent records it, with each symbol's new watermark."""
    log.emit(
        "analysis_commit",
        db="analysis",
        outcome="ok",
        dur_us=500,
        ticks=ticks,
        bars=1,
        indicators=0,
        watermarks={s: list(k) for s, k in watermarks.items()},
    )


def operation(
    log: EventLog,
    op: str = "read",
    outcome: str = "ok",
    *,
    dur_us: int = 1000,
    late_us: int = 0,
    **fields: Any,
) -> None:
    """One timed operation of a load worker (harness.runs.load's `_timed`)."""
    log.emit(op, db="ticks", dur_us=dur_us, late_us=late_us, outcome=outcome, **fields)


# --- percentile --------------------------------------------------------------------------------


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 50) is None
    assert percentile([], 0) is None


@pytest.mark.parametrize("q", [0, 1, 50, 99, 100])
def test_percentile_of_one_value_is_that_value_at_every_q(q: float) -> None:
    assert percentile([7.5], q) == 7.5


def test_percentile_at_q0_is_the_minimum_and_at_q100_the_maximum() -> None:
    values = [1.0, 2.0, 3.0, 40.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 40.0


@pytest.mark.parametrize(
    ("q", "expected"),
    [(1, 10.0), (10, 10.0), (11, 20.0), (50, 50.0), (55, 60.0), (90, 90.0), (91, 100.0)],
)
def test_percentile_is_the_nearest_rank_without_interpolation(q: float, expected: float) -> None:
    values = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    assert percentile(values, q) == expected


def test_percentile_returns_a_float_for_integer_samples() -> None:
    result = percentile([1, 2, 3], 50)
    assert result == 2.0 and isinstance(result, float)


@NO_DEADLINE
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=300),
    st.integers(min_value=0, max_value=100),
)
def test_percentile_is_the_sample_at_rank_ceil_q_n_over_100(values: list[float], q: int) -> None:
    values.sort()
    rank = max(1, -(-q * len(values) // 100))  # exact integer ceiling
    assert percentile(values, q) == values[rank - 1]


@NO_DEADLINE
@given(
    st.lists(st.integers(min_value=-(10**6), max_value=10**6), min_size=1, max_size=100),
    st.integers(min_value=0, max_value=99),
)
def test_percentile_never_decreases_as_q_grows(values: list[int], q: int) -> None:
    values.sort()
    low, high = percentile(values, q), percentile(values, q + 1)
    assert low is not None and high is not None and low <= high


def test_percentile_at_a_fractional_q_is_the_nearest_rank() -> None:
    values = [float(i) for i in range(1, 1001)]
    assert percentile(values, 99.9) == 999.0


# --- histogram and latency_summary -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "bucket"),
    [
        (-3, "le_1"),
        (0, "le_1"),
        (0.5, "le_1"),
        (1, "le_1"),
        (1.5, "le_2"),
        (2, "le_2"),
        (3, "le_4"),
        (4, "le_4"),
        (5, "le_8"),
        (1024, "le_1024"),
        (1025, "le_2048"),
        (1_000_000, "le_1048576"),
    ],
)
def test_histogram_bucket_is_the_power_of_two_at_or_above_the_value(
    value: float, bucket: str
) -> None:
    assert histogram([value]) == {bucket: 1}


def test_histogram_keys_ascend_by_bound_not_by_text() -> None:
    found = histogram([1000, 3, 20, 3, 1000, 1000])
    assert list(found) == ["le_4", "le_32", "le_1024"]
    assert found == {"le_4": 2, "le_32": 1, "le_1024": 3}


def test_histogram_of_nothing_is_empty() -> None:
    assert histogram([]) == {}


@NO_DEADLINE
@given(st.lists(st.integers(min_value=1, max_value=10**12), max_size=50))
def test_histogram_counts_every_value_once_in_its_smallest_bound(values: list[int]) -> None:
    found = histogram(values)
    assert sum(found.values()) == len(values)
    for value in values:
        (key,) = histogram([value])
        bound = int(key.removeprefix("le_"))
        assert bound >= value and (bound == 1 or bound // 2 < value)


def test_latency_summary_of_nothing_has_count_zero_and_no_percentiles() -> None:
    assert latency_summary([]) == {
        "count": 0,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
        "max_ms": None,
        "histogram_us": {},
    }


def test_latency_summary_sorts_microseconds_and_reports_milliseconds() -> None:
    found = latency_summary([3000, 1000, 250_000, 2000])
    assert found["count"] == 4
    assert found["p50_ms"] == 2.0
    assert found["p95_ms"] == 250.0 and found["p99_ms"] == 250.0 and found["max_ms"] == 250.0
    assert found["histogram_us"] == {"le_1024": 1, "le_2048": 1, "le_4096": 1, "le_262144": 1}


def test_latency_summary_rounds_to_the_microsecond() -> None:
    assert latency_summary([1234.4])["max_ms"] == 1.234


# --- operation_metrics -------------------------------------------------------------------------

READS = {"read", "attempt"}


def test_operation_metrics_counts_each_outcome_of_the_chosen_ops_only(logs: Logs) -> None:
    log = logs.log("load-readers-0")
    log.emit("worker_start", kind="reader")
    for _ in range(3):
        operation(log)
    operation(log, outcome="busy", code=5)
    operation(log, outcome="error", code=1)
    operation(log, "attempt", "denied", must_deny=True, attempt="INSERT")
    operation(log, "http", "ok")  # not one of the chosen ops
    log.emit("worker_stop", ops=7, scheduled=None)
    found = operation_metrics(logs.events()["load-readers-0"], ops=READS, seconds=2.0)
    assert (found["operations"], found["ok"], found["busy"], found["errors"], found["denied"]) == (
        6,
        3,
        1,
        1,
        1,
    )


def test_operation_metrics_rate_is_ok_operations_over_the_given_seconds(logs: Logs) -> None:
    log = logs.log("load-readers-0")
    for _ in range(3):
        operation(log)
    operation(log, outcome="busy")
    events = logs.events()["load-readers-0"]
    assert operation_metrics(events, ops=READS, seconds=2.0)["ok_per_s"] == 1.5
    assert operation_metrics(events, ops=READS, seconds=0.0)["ok_per_s"] is None


def test_operation_metrics_latency_comes_from_ok_operations_only(logs: Logs) -> None:
    log = logs.log("load-readers-0")
    for dur in (1000, 2000, 3000):
        operation(log, dur_us=dur)
    operation(log, outcome="busy", dur_us=5_000_000)
    latency = operation_metrics(logs.events()["load-readers-0"], ops=READS, seconds=1.0)["latency"]
    assert latency["count"] == 3 and latency["max_ms"] == 3.0 and latency["p50_ms"] == 2.0


def test_operation_metrics_blocked_time_is_failed_attempts_plus_lock_waits(logs: Logs) -> None:
    log = logs.log("load-writers-0")
    operation(log, "write", "busy", dur_us=50_000, code=5)
    operation(log, "write", "ok", dur_us=4000, wait_us=2000)
    operation(log, "write", "ok", dur_us=4000, wait_us=3000)
    operation(log, "read", "ok", dur_us=9000, wait_us=7000)  # not chosen: its wait is not counted
    found = operation_metrics(logs.events()["load-writers-0"], ops={"write"}, seconds=1.0)
    assert found["blocked_ms"] == 55.0


def test_operation_metrics_of_a_closed_loop_group_reports_no_offered_load(logs: Logs) -> None:
    log = logs.log("load-readers-0")
    log.emit("worker_start", kind="reader")
    operation(log)
    log.emit("worker_stop", ops=1, scheduled=None)
    found = operation_metrics(logs.events()["load-readers-0"], ops=READS, seconds=1.0)
    for key in ("offered", "answered_fraction", "response", "stalls", "longest_silence_ms"):
        assert key not in found


def test_operation_metrics_of_an_open_loop_group_reports_offered_answered_and_response(
    logs: Logs,
) -> None:
    first, second = logs.log("load-api-0"), logs.log("load-api-1")
    for log, scheduled, ok in ((first, 10, 8), (second, 6, 4)):
        log.emit("worker_start", kind="api")
        for _ in range(ok):
            operation(log, "http", dur_us=1000, late_us=3000, endpoint="latest", status=200)
        operation(log, "http", "error", dur_us=1000, endpoint="latest", status=503)
        log.emit("worker_stop", ops=ok + 1, scheduled=scheduled)
    events = logs.events()
    group = [*events["load-api-0"], *events["load-api-1"]]
    found = operation_metrics(group, ops={"http"}, seconds=4.0)
    assert found["offered"] == 16
    assert found["offered_per_s"] == 4.0
    assert found["answered_fraction"] == 0.75
    # Response counts from the scheduled send: service time plus how late it went out.
    assert found["response"]["count"] == 12 and found["response"]["max_ms"] == 4.0
    assert found["latency"]["max_ms"] == 1.0


def test_operation_metrics_counts_a_stall_from_exactly_the_stall_threshold(logs: Logs) -> None:
    log = logs.log("load-api-0")
    threshold_us = STALL_MS * 1000
    operation(log, "http", dur_us=threshold_us - 1)
    operation(log, "http", dur_us=threshold_us - 500, late_us=500)
    operation(log, "http", dur_us=10, late_us=threshold_us + 1)
    log.emit("worker_stop", ops=3, scheduled=3)
    found = operation_metrics(logs.events()["load-api-0"], ops={"http"}, seconds=1.0)
    assert found["stalls"] == 2


def test_operation_metrics_longest_silence_is_the_widest_gap_between_events(
    logs: Logs, clock: Clock
) -> None:
    log = logs.log("load-api-0")
    log.emit("worker_start", kind="api")
    for gap in (0.125, 0.75, 0.25):
        clock.advance(gap)
        operation(log, "http")
    clock.advance(0.5)
    log.emit("worker_stop", ops=3, scheduled=3)
    found = operation_metrics(logs.events()["load-api-0"], ops={"http"}, seconds=2.0)
    assert found["longest_silence_ms"] == 750.0


def test_operation_metrics_generator_wake_p99_comes_from_the_wake_delays(logs: Logs) -> None:
    log = logs.log("load-api-0")
    for wake in (100, 200, 15_000):
        operation(log, "http", wake_us=wake)
    log.emit("worker_stop", ops=3, scheduled=3)
    found = operation_metrics(logs.events()["load-api-0"], ops={"http"}, seconds=1.0)
    assert found["generator_wake_p99_ms"] == 15.0


def test_operation_metrics_without_wake_delays_has_no_generator_wake(logs: Logs) -> None:
    log = logs.log("load-api-0")
    operation(log, "http")
    log.emit("worker_stop", ops=1, scheduled=1)
    found = operation_metrics(logs.events()["load-api-0"], ops={"http"}, seconds=1.0)
    assert found["generator_wake_p99_ms"] is None


def test_operation_metrics_with_nothing_offered_has_no_answered_fraction(logs: Logs) -> None:
    log = logs.log("load-api-0")
    log.emit("worker_start", kind="api")
    log.emit("worker_stop", ops=0, scheduled=0)
    found = operation_metrics(logs.events()["load-api-0"], ops={"http"}, seconds=2.0)
    assert found["offered"] == 0 and found["offered_per_s"] == 0.0
    assert found["answered_fraction"] is None


def test_operation_metrics_of_no_events_is_all_zero() -> None:
    found = operation_metrics([], ops=READS, seconds=3.0)
    assert (found["operations"], found["ok"], found["ok_per_s"], found["blocked_ms"]) == (
        0,
        0,
        0.0,
        0.0,
    )
    assert found["latency"]["count"] == 0 and "offered" not in found


# --- bot_metrics -------------------------------------------------------------------------------


def test_bot_metrics_counts_acks_from_the_window_start_up_to_but_not_at_its_end(
    logs: Logs, clock: Clock
) -> None:
    log = logs.log("bot")
    for offset, n in ((-0.5, 1000), (0.0, 10), (1.5, 20), (3.75, 30), (4.0, 2000)):
        clock.at(START + offset)
        ack(log, n)
    found = bot_metrics(logs.events()["bot"], window=(START, START + 4.0))
    assert found["ticks_committed"] == 60
    assert found["commits"] == 3
    assert found["ticks_per_s"] == 15.0
    assert found["commits_per_s"] == 0.75
    assert found["rows_per_commit"] == 20.0


def test_bot_metrics_busy_commits_are_the_busy_or_locked_failed_commits(
    logs: Logs, clock: Clock
) -> None:
    log = logs.log("bot")
    ack(log, 5)
    for outcome, code in (("busy", 5), ("locked", 6), ("busy", 517), ("error", 1)):
        log.emit("commit", db="ticks", dur_us=10, rows=5, outcome=outcome, code=code, error="x")
    clock.advance(1.0)
    found = bot_metrics(logs.events()["bot"])
    assert found["busy_commits"] == 3
    assert found["failed_commits"] == 4
    assert found["commits"] == 1


def test_bot_metrics_reports_commit_latency_tick_age_backlog_and_lock_wait(logs: Logs) -> None:
    log = logs.log("bot")
    ack(log, 10, dur_us=2000, wait_us=500, age_ms=40, pending=7)
    ack(log, 10, dur_us=4000, wait_us=1500, age_ms=120, pending=30)
    ack(log, 10, dur_us=3000, wait_us=0, age_ms=80, pending=2)
    found = bot_metrics(logs.events()["bot"])
    assert found["commit_latency"]["count"] == 3
    assert found["commit_latency"]["max_ms"] == 4.0
    assert found["commit_latency"]["p50_ms"] == 3.0
    assert found["tick_age_at_commit"]["max_ms"] == 120.0
    assert found["backlog_max"] == 30
    assert found["lock_wait_ms_total"] == 2.0
    assert found["lock_wait_p99_ms"] == 1.5


def test_bot_metrics_without_a_window_spans_the_first_to_the_last_event(
    logs: Logs, clock: Clock
) -> None:
    log = logs.log("bot")
    log.emit("ready")
    clock.advance(2.0)
    ack(log, 30)
    clock.advance(2.0)
    log.emit("stopped")
    found = bot_metrics(logs.events()["bot"])
    assert found["ticks_per_s"] == 7.5
    assert found["commits_per_s"] == 0.25


def test_bot_metrics_of_no_events_has_no_rates() -> None:
    found = bot_metrics([])
    assert found["ticks_committed"] == 0 and found["commits"] == 0
    assert found["ticks_per_s"] is None and found["commits_per_s"] is None
    assert found["rows_per_commit"] is None
    assert found["backlog_max"] == 0
    assert found["lock_wait_ms_total"] == 0.0 and found["lock_wait_p99_ms"] is None


def test_bot_metrics_of_a_single_event_without_a_window_has_no_rates(logs: Logs) -> None:
    ack(logs.log("bot"), 10)
    found = bot_metrics(logs.events()["bot"])
    assert found["ticks_committed"] == 10
    assert found["ticks_per_s"] is None and found["rows_per_commit"] == 10.0


def test_bot_metrics_of_a_window_with_no_acks_commits_nothing(logs: Logs, clock: Clock) -> None:
    ack(logs.log("bot"), 10)
    found = bot_metrics(logs.events()["bot"], window=(START + 10, START + 12))
    assert found["ticks_committed"] == 0 and found["ticks_per_s"] == 0.0
    assert found["rows_per_commit"] is None


def test_bot_metrics_count_the_rows_real_commits_acknowledged(
    logs: Logs, seed_access: AccessManager
) -> None:
    conn = seed_access.connect("bot", "ticks")
    log = logs.log("bot")
    for batch in range(3):
        rows = tick_rows("EURUSD", 40, start=batch * 40)
        inserted = insert_ticks(conn, rows)
        ack(log, len(rows), key=(rows[-1][1], rows[-1][2]), wait_us=inserted.wait_ns // 1000)
    conn.close()
    found = bot_metrics(logs.events()["bot"])
    assert found["ticks_committed"] == 120 and found["commits"] == 3
    assert found["rows_per_commit"] == 40.0


# --- analysis_lag ------------------------------------------------------------------------------


def test_analysis_lag_is_the_time_to_the_first_agent_commit_covering_the_ack(
    logs: Logs, clock: Clock
) -> None:
    bot, agent = logs.log("bot"), logs.log("agent")
    ack(bot, 10, key=(BASE_MSC + 10, 0))
    clock.advance(0.25)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 10, 0)})
    clock.advance(0.5)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 20, 0)})
    events = logs.events()
    found = analysis_lag(events["bot"], events["agent"])
    assert found == {"samples": 1, "uncovered": 0, "p50_s": 0.25, "p99_s": 0.25, "max_s": 0.25}


def test_analysis_lag_skips_commits_whose_watermark_is_still_behind_the_ack(
    logs: Logs, clock: Clock
) -> None:
    bot, agent = logs.log("bot"), logs.log("agent")
    ack(bot, 10, key=(BASE_MSC + 10, 3))
    clock.advance(0.25)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 10, 2)})  # same millisecond, earlier seq
    clock.advance(0.25)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 10, 3)})
    events = logs.events()
    assert analysis_lag(events["bot"], events["agent"])["max_s"] == 0.5


def test_analysis_lag_does_not_count_a_commit_made_before_the_ack(logs: Logs, clock: Clock) -> None:
    bot, agent = logs.log("bot"), logs.log("agent")
    agent_commit(agent, {"EURUSD": (BASE_MSC + 99, 0)})
    clock.advance(1.0)
    ack(bot, 10, key=(BASE_MSC + 10, 0))
    clock.advance(0.125)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 99, 0)})
    events = logs.events()
    assert analysis_lag(events["bot"], events["agent"])["max_s"] == 0.125


def test_analysis_lag_of_a_commit_at_the_instant_of_the_ack_is_zero(logs: Logs) -> None:
    ack(logs.log("bot"), 10, key=(BASE_MSC + 10, 0))
    agent_commit(logs.log("agent"), {"EURUSD": (BASE_MSC + 10, 0)})
    events = logs.events()
    assert analysis_lag(events["bot"], events["agent"])["p50_s"] == 0.0


def test_analysis_lag_counts_acks_never_covered_as_uncovered_not_as_samples(
    logs: Logs, clock: Clock
) -> None:
    bot, agent = logs.log("bot"), logs.log("agent")
    ack(bot, 10, key=(BASE_MSC + 10, 0))
    ack(bot, 5, symbol="GBPUSD", key=(BASE_MSC + 5, 0))  # a symbol the agent never folded
    clock.advance(0.5)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 10, 0)})
    ack(bot, 10, key=(BASE_MSC + 20, 0))  # after the agent's last commit
    events = logs.events()
    found = analysis_lag(events["bot"], events["agent"])
    assert found["samples"] == 1 and found["uncovered"] == 2


def test_analysis_lag_measures_every_symbol_of_one_ack(logs: Logs, clock: Clock) -> None:
    bot, agent = logs.log("bot"), logs.log("agent")
    bot.emit(
        "ack",
        outcome="ok",
        n=3,
        last={"EURUSD": [BASE_MSC + 1, 0], "GBPUSD": [BASE_MSC + 2, 0]},
        rows={"EURUSD": 1, "GBPUSD": 2},
    )
    clock.advance(0.25)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 1, 0)})
    clock.advance(0.5)
    agent_commit(agent, {"GBPUSD": (BASE_MSC + 2, 0)})
    events = logs.events()
    found = analysis_lag(events["bot"], events["agent"])
    assert found["samples"] == 2 and found["p50_s"] == 0.25 and found["max_s"] == 0.75


def test_analysis_lag_orders_agent_commits_by_time_not_by_position(
    logs: Logs, clock: Clock
) -> None:
    bot, agent = logs.log("bot"), logs.log("agent")
    ack(bot, 10, key=(BASE_MSC + 10, 0))
    clock.advance(0.25)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 10, 0)})
    clock.advance(1.0)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 30, 0)})
    events = logs.events()
    found = analysis_lag(events["bot"], list(reversed(events["agent"])))
    assert found["max_s"] == 0.25


def test_analysis_lag_of_no_acks_has_no_samples(logs: Logs) -> None:
    agent_commit(logs.log("agent"), {"EURUSD": (BASE_MSC, 0)})
    found = analysis_lag([], logs.events()["agent"])
    assert found == {"samples": 0, "uncovered": 0, "p50_s": None, "p99_s": None, "max_s": None}


def tick_rows(symbol: str, count: int, *, start: int = 0) -> list[tuple[Any, ...]]:
    """`count` ticks a quarter second apart, in the ticks table's column order."""
    rows = []
    for i in range(start, start + count):
        time_msc = BASE_MSC + i * 250
        bid = 1.1 + (i % 17) * 1e-4
        rows.append((symbol, time_msc, 0, time_msc // 1000, bid, bid + 2e-4, 0.0, 0, 6, 1.0))
    return rows


def test_analysis_lag_of_real_commits_and_real_agent_cycles(
    logs: Logs, clock: Clock, seed_access: AccessManager
) -> None:
    """The bot's write path and the agent's cycle, run in this process, as the events show them."""
    bot_conn = seed_access.connect("bot", "ticks")
    ticks_conn = seed_access.connect("agent", "ticks")
    analysis_conn = seed_access.connect("agent", "analysis")
    states: dict[str, SymbolState] = {}
    analysis_store = SqliteAnalysisStore.over(ticks_conn, analysis_conn)
    bot, agent = logs.log("bot"), logs.log("agent")

    def commit(rows: Sequence[tuple[Any, ...]]) -> None:
        insert_ticks(bot_conn, rows)
        ack(bot, len(rows), symbol=rows[0][0], key=(rows[-1][1], rows[-1][2]))

    def cycle() -> None:
        result = run_cycle(analysis_store, states, max_ticks=10_000)
        marks = {s: (k[0], k[1]) for s, k in result.watermarks.items()}
        agent_commit(agent, marks, ticks=result.ticks)

    commit(tick_rows("EURUSD", 50))
    clock.advance(0.25)
    commit(tick_rows("GBPUSD", 30))
    clock.advance(0.5)
    cycle()  # covers both: 0.75 s after the first ack, 0.5 s after the second
    clock.advance(1.0)
    commit(tick_rows("EURUSD", 20, start=50))  # the agent never runs again
    for conn in (bot_conn, ticks_conn, analysis_conn):
        conn.close()
    events = logs.events()
    found = analysis_lag(events["bot"], events["agent"])
    assert found == {"samples": 2, "uncovered": 1, "p50_s": 0.5, "p99_s": 0.75, "max_s": 0.75}
    (commit_event,) = [e for e in events["agent"] if e["op"] == "analysis_commit"]
    assert commit_event["ticks"] == 80


# --- time_series -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "bucket_s", "buckets"),
    [(4.0, 1.0, 4), (2.5, 1.0, 3), (0.0, 1.0, 1), (4.0, 0.5, 8), (0.25, 1.0, 1)],
)
def test_time_series_has_one_bucket_per_started_bucket_of_the_window(
    seconds: float, bucket_s: float, buckets: int
) -> None:
    found = time_series({}, start_wall=START, seconds=seconds, bucket_s=bucket_s)
    assert found["bucket_s"] == bucket_s
    for key in ("ticks_committed", "ticks_analysed", "busy_errors"):
        assert found[key] == [0] * buckets
    assert found["operations"] == {}


def test_time_series_puts_an_event_on_a_bucket_edge_in_the_later_bucket(
    logs: Logs, clock: Clock
) -> None:
    bot = logs.log("bot")
    for offset, n in ((0.0, 1), (0.5, 2), (1.0, 4), (1.5, 8), (2.999, 16)):
        clock.at(START + offset)
        ack(bot, n)
    found = time_series(logs.events(), start_wall=START, seconds=3.0)
    assert found["ticks_committed"] == [3, 12, 16]


def test_time_series_drops_events_before_the_start_and_from_the_end_on(
    logs: Logs, clock: Clock
) -> None:
    bot = logs.log("bot")
    for offset, n in ((-0.25, 100), (0.25, 1), (1.75, 2), (2.0, 200), (9.0, 300)):
        clock.at(START + offset)
        ack(bot, n)
    found = time_series(logs.events(), start_wall=START, seconds=2.0)
    assert found["ticks_committed"] == [1, 2]


def test_time_series_sums_ticks_analysed_from_agent_commits(logs: Logs, clock: Clock) -> None:
    agent = logs.log("agent")
    agent_commit(agent, {"EURUSD": (BASE_MSC, 0)}, ticks=40)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 1, 0)}, ticks=2)
    clock.advance(1.25)
    agent_commit(agent, {"EURUSD": (BASE_MSC + 2, 0)}, ticks=7)
    found = time_series(logs.events(), start_wall=START, seconds=2.0)
    assert found["ticks_analysed"] == [42, 7]
    assert found["ticks_committed"] == [0, 0]


def test_time_series_counts_busy_and_locked_errors_of_every_process_and_op(
    logs: Logs, clock: Clock
) -> None:
    logs.log("bot").emit("commit", outcome="busy", code=5, rows=10)
    operation(logs.log("load-readers-0"), outcome="locked", code=6)
    clock.advance(1.0)
    operation(logs.log("load-writers-0"), "write", "busy", code=5)
    operation(logs.log("load-writers-0"), "write", "error", code=1)
    found = time_series(logs.events(), start_wall=START, seconds=2.0)
    assert found["busy_errors"] == [2, 1]


def test_time_series_counts_ok_and_denied_operations_per_process_and_omits_the_others(
    logs: Logs, clock: Clock
) -> None:
    readers, attackers = logs.log("load-readers-0"), logs.log("load-attack-0")
    operation(readers)
    operation(readers, outcome="busy")
    operation(attackers, "attempt", "denied", must_deny=True)
    clock.advance(1.0)
    operation(readers)
    operation(readers, "http")
    operation(logs.log("load-hold-0"), "hold")  # hold is not an operation in the series
    ack(logs.log("bot"), 10)
    found = time_series(logs.events(), start_wall=START, seconds=2.0)
    assert found["operations"] == {"load-readers-0": [1, 2], "load-attack-0": [1, 0]}


def test_time_series_of_processes_that_recorded_nothing_is_zeros() -> None:
    found = time_series({"bot": [], "agent": []}, start_wall=START, seconds=2.0)
    assert found == {
        "bucket_s": 1.0,
        "ticks_committed": [0, 0],
        "ticks_analysed": [0, 0],
        "busy_errors": [0, 0],
        "operations": {},
    }


def test_clock_moves_event_times_exactly(logs: Logs, clock: Clock) -> None:
    """The stand-in clock itself: what the writer stamps is what the tests above rely on."""
    log = logs.log("bot")
    log.emit("ready")
    clock.advance(0.75)
    log.emit("stopped")
    first, second = logs.events()["bot"]
    assert second["wall"] - first["wall"] == 0.75
    assert second["t"] - first["t"] == 750_000_000
    assert math.isclose(first["wall"], START)
