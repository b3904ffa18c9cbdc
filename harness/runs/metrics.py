"""Metrics from event logs: throughput, latency percentiles with a histogram, busy time, lag.

Percentiles use the nearest-rank method on raw samples (no interpolation), so a reported p99 is
a latency that really happened.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from itertools import pairwise
from typing import Any

from reference.events import Event


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of already sorted values; None when empty."""
    if not sorted_values:
        return None
    # In exact decimals: 99.9 / 100 * 1000 in floats is 999.0000000000001, one rank too high.
    rank = max(1, math.ceil(Fraction(str(q)) * len(sorted_values) / 100))
    return float(sorted_values[rank - 1])


def histogram(values_us: Iterable[float]) -> dict[str, int]:
    """Counts per power-of-two microsecond bucket: key 'le_<upper bound in us>'."""
    counts: dict[int, int] = {}
    for value in values_us:
        bound = 1 << max(0, math.ceil(math.log2(max(value, 1))))
        counts[bound] = counts.get(bound, 0) + 1
    return {f"le_{bound}": counts[bound] for bound in sorted(counts)}


def latency_summary(durations_us: Iterable[float]) -> dict[str, Any]:
    """count, p50/p95/p99/max in milliseconds, and the raw histogram."""
    values = sorted(durations_us)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v / 1000, 3)

    return {
        "count": len(values),
        "p50_ms": ms(percentile(values, 50)),
        "p95_ms": ms(percentile(values, 95)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(values[-1] if values else None),
        "histogram_us": histogram(values),
    }


# A response this long after its scheduled send counts as a stall.
STALL_MS = 1000


def operation_metrics(events: Sequence[Event], *, ops: set[str], seconds: float) -> dict[str, Any]:
    """Throughput and latency of the events whose op is in `ops`, over `seconds` of load.

    `latency` is service time (send to answer). For workers with a rate, `response` counts
    from each operation's scheduled time (service time plus how late it was sent), so a stall
    shows in every request it held up; `offered` is how many sends the schedule asked for,
    `answered_fraction` the share of them answered ok, and `generator_wake_p99_ms` how late
    the OS woke an idle worker: the load generator's own delay, a busy machine's signature.
    """
    chosen = [e for e in events if e.get("op") in ops]
    ok = [e for e in chosen if e.get("outcome") == "ok"]
    busy = [e for e in chosen if e.get("outcome") in ("busy", "locked")]
    stops = [e for e in events if e.get("op") == "worker_stop" and e.get("scheduled") is not None]
    offered = sum(int(e["scheduled"]) for e in stops) if stops else None
    wakes = sorted(e["wake_us"] for e in chosen if "wake_us" in e)
    response = sorted(e.get("dur_us", 0) + e.get("late_us", 0) for e in ok)
    paced: dict[str, Any] = {}
    if offered is not None:
        # The longest time nothing came back while the group ran: a server that stops
        # answering shows here as a gap, a merely slow one (a busy machine) as slow answers.
        marks = sorted(
            [e["t"] for e in events if e.get("op") in ("worker_start", "worker_stop")]
            + [e["t"] for e in chosen]
        )
        gaps = [(b - a) / 1e6 for a, b in pairwise(marks)]
        paced = {
            "offered": offered,
            "offered_per_s": round(offered / seconds, 3) if seconds > 0 else None,
            "answered_fraction": round(len(ok) / offered, 4) if offered else None,
            "response": latency_summary(response),
            "stalls": sum(1 for v in response if v >= STALL_MS * 1000),
            "longest_silence_ms": round(max(gaps), 3) if gaps else None,
            "generator_wake_p99_ms": (
                None if not wakes else round((percentile(wakes, 99) or 0) / 1000, 3)
            ),
        }
    return {
        "operations": len(chosen),
        "ok": len(ok),
        "errors": sum(1 for e in chosen if e.get("outcome") == "error"),
        "busy": len(busy),
        "denied": sum(1 for e in chosen if e.get("outcome") == "denied"),
        "ok_per_s": round(len(ok) / seconds, 3) if seconds > 0 else None,
        "latency": latency_summary(e.get("dur_us", 0) for e in ok),
        "blocked_ms": round(
            sum(e.get("dur_us", 0) for e in busy) / 1000
            + sum(e.get("wait_us", 0) for e in chosen) / 1000,
            3,
        ),
        **paced,
    }


def bot_metrics(
    events: Sequence[Event], *, window: tuple[float, float] | None = None
) -> dict[str, Any]:
    """Ingest within the load window (wall-clock seconds): ticks committed per second, commit
    latency, lock wait, busy commits. Without a window, the whole log."""
    if window is not None:
        events = [e for e in events if window[0] <= e.get("wall", 0) < window[1]]
        seconds = window[1] - window[0]
    elif events:
        seconds = events[-1]["wall"] - events[0]["wall"]
    else:
        seconds = 0.0
    acks = [e for e in events if e.get("op") == "ack"]
    failed = [e for e in events if e.get("op") == "commit"]
    ticks = sum(int(e.get("n", 0)) for e in acks)
    waits = sorted(e.get("wait_us", 0) for e in acks)
    return {
        "ticks_committed": ticks,
        "ticks_per_s": round(ticks / seconds, 1) if seconds > 0 else None,
        "commits": len(acks),
        "commits_per_s": round(len(acks) / seconds, 2) if seconds > 0 else None,
        # Work per tick: a regression to tiny batches keeps ticks/s and multiplies this.
        "rows_per_commit": round(ticks / len(acks), 2) if acks else None,
        "busy_commits": sum(1 for e in failed if e.get("outcome") in ("busy", "locked")),
        "failed_commits": len(failed),
        "commit_latency": latency_summary(e.get("dur_us", 0) for e in acks),
        "tick_age_at_commit": latency_summary(e.get("age_ms", 0) * 1000 for e in acks),
        "backlog_max": max((e.get("pending", 0) for e in acks), default=0),
        "lock_wait_ms_total": round(sum(waits) / 1000, 3),
        "lock_wait_p99_ms": None if not waits else round((percentile(waits, 99) or 0) / 1000, 3),
    }


def analysis_lag(bot_events: Sequence[Event], agent_events: Sequence[Event]) -> dict[str, Any]:
    """Seconds from a bot ack to the first agent commit whose watermark covers it.

    Monotonic clocks are shared by processes on one machine, so `t` compares across files.
    Acks the agent never covered (still lagging at the end) are counted, not guessed.
    """
    # Per symbol, the agent's commits in time order; a watermark only moves forward, so both
    # the times and the keys are sorted and the first covering commit is found by bisection.
    times: dict[str, list[int]] = {}
    keys: dict[str, list[tuple[int, int]]] = {}
    for event in sorted(
        (e for e in agent_events if e.get("op") == "analysis_commit"), key=lambda e: e["t"]
    ):
        for symbol, mark in event.get("watermarks", {}).items():
            times.setdefault(symbol, []).append(event["t"])
            keys.setdefault(symbol, []).append((int(mark[0]), int(mark[1])))
    lags: list[float] = []
    uncovered = 0
    for ack in (e for e in bot_events if e.get("op") == "ack"):
        for symbol, key in ack.get("last", {}).items():
            sym_times = times.get(symbol, [])
            i = max(
                bisect_left(sym_times, ack["t"]),
                bisect_left(keys.get(symbol, []), (int(key[0]), int(key[1]))),
            )
            if i < len(sym_times):
                lags.append((sym_times[i] - ack["t"]) / 1e9)
            else:
                uncovered += 1
    lags.sort()
    return {
        "samples": len(lags),
        "uncovered": uncovered,
        "p50_s": percentile(lags, 50),
        "p99_s": percentile(lags, 99),
        "max_s": lags[-1] if lags else None,
    }


def time_series(
    events: Mapping[str, Sequence[Event]],
    *,
    start_wall: float,
    seconds: float,
    bucket_s: float = 1.0,
) -> dict[str, Any]:
    """Per-bucket series over the load window, for plots: ticks committed (bot acks), ok
    operations per process, busy/locked errors, and the agent's ticks folded.

    Bucket i covers [start + i*bucket_s, start + (i+1)*bucket_s) in wall-clock seconds.
    """
    n = max(1, math.ceil(seconds / bucket_s))

    def bucket(event: Event) -> int | None:
        i = int((event.get("wall", 0) - start_wall) // bucket_s)
        return i if 0 <= i < n else None

    ticks = [0] * n
    analysed = [0] * n
    busy = [0] * n
    ops: dict[str, list[int]] = {}
    for name, evs in events.items():
        per = [0] * n
        counted = False
        for event in evs:
            i = bucket(event)
            if i is None:
                continue
            op = event.get("op")
            outcome = event.get("outcome")
            if outcome in ("busy", "locked"):
                busy[i] += 1
            if op == "ack":
                ticks[i] += int(event.get("n", 0))
            elif op == "analysis_commit":
                analysed[i] += int(event.get("ticks", 0))
            elif op in ("read", "http", "write", "attempt") and outcome in ("ok", "denied"):
                per[i] += 1
                counted = True
        if counted:
            ops[name] = per
    return {
        "bucket_s": bucket_s,
        "ticks_committed": ticks,
        "ticks_analysed": analysed,
        "busy_errors": busy,
        "operations": ops,
    }
