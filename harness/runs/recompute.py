"""An independent recomputation of the analysis agent's output, and the check that compares them.

Written apart from `reference.analysis` on purpose (it imports nothing from it): bars come from
SQL over the ticks table (GROUP BY bucket, open/close picked by row_number over (time_msc, seq)),
indicators from plain whole-list Python over the closes. The definitions restated here:

- timeframes '1m' (60 000 ms) and '5m' (300 000 ms); bucket start = floor(time_msc / tf) * tf;
  price = bid; volume = the sum of volume_real (a NULL volume counts 0); only buckets with ticks.
- sma14 = mean of the last 14 closes; ema14 seeded with the first sma14, then
  alpha * close + (1 - alpha) * previous, alpha = 2/15; rsi14 Wilder: first averages = mean of
  the first 14 gains/losses, then (previous * 13 + current) / 14, 100 when the average loss is 0;
  rsi14_avg_gain / rsi14_avg_loss are those averages.

Only ticks up to the agent's watermark of each symbol count: the agent may lag, and a symbol it
has no watermark for should have no bars yet. `compare_analysis` also checks each watermark: it
must name a tick that exists, and `ticks_seen` must equal the ticks up to it (a tick counted twice
or skipped after a crash shows up there and in `tick_count`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.runs.reads import Reads

TIMEFRAMES: Mapping[str, int] = {"1m": 60_000, "5m": 300_000}
PERIOD = 14
BAR_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "tick_count", "volume")

BarKey = tuple[str, str, int]
IndicatorKey = tuple[str, str, int, str]
Value = float | int | str | None

# Floor division for the bucket: SQLite's % truncates toward zero, so a plain
# time_msc - time_msc % tf would put negative times in the wrong bucket.
_BARS_SQL = """
WITH t AS (
    SELECT
        time_msc - ((time_msc % :tf) + :tf) % :tf AS bucket,
        bid,
        volume_real,
        row_number() OVER (
            PARTITION BY time_msc - ((time_msc % :tf) + :tf) % :tf ORDER BY time_msc, seq
        ) AS nth,
        row_number() OVER (
            PARTITION BY time_msc - ((time_msc % :tf) + :tf) % :tf
            ORDER BY time_msc DESC, seq DESC
        ) AS nth_from_end
    FROM ticks
    WHERE symbol = :symbol AND (time_msc, seq) <= (:wm_time, :wm_seq)
)
SELECT
    bucket,
    max(CASE WHEN nth = 1 THEN bid END) AS open,
    max(bid) AS high,
    min(bid) AS low,
    max(CASE WHEN nth_from_end = 1 THEN bid END) AS close,
    count(*) AS tick_count,
    coalesce(sum(volume_real), 0.0) AS volume
FROM t
GROUP BY bucket
ORDER BY bucket
"""


@dataclass(frozen=True)
class ExpectedBar:
    """A bar as recomputed from the ticks."""

    start_msc: int
    open: float
    high: float
    low: float
    close: float
    tick_count: int
    volume: float


@dataclass(frozen=True)
class Offender:
    """One row that differs: its table, key, column ('*' for a whole row), and both values."""

    table: str
    key: tuple[Value, ...]
    column: str
    expected: Value
    actual: Value

    def __str__(self) -> str:
        return (
            f"{self.table}{list(self.key)} {self.column}: "
            f"expected {self.expected!r}, found {self.actual!r}"
        )


@dataclass(frozen=True)
class Finding:
    """How many rows have one kind of problem, and the first few of them."""

    count: int = 0
    first: tuple[Offender, ...] = ()


CATEGORIES: tuple[str, ...] = (
    "missing_bars",
    "extra_bars",
    "differing_bars",
    "duplicate_bars",
    "missing_indicators",
    "extra_indicators",
    "differing_indicators",
    "duplicate_indicators",
    "bad_watermarks",
)


@dataclass(frozen=True)
class AnalysisComparison:
    """The agent's analysis database against a recomputation from the ticks it had seen.

    `ok` is True when every finding is empty. `findings` maps each of `CATEGORIES` to a Finding.
    """

    symbols: tuple[str, ...]
    ticks_covered: int
    bars_expected: int
    indicators_expected: int
    findings: Mapping[str, Finding] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(f.count == 0 for f in self.findings.values())

    def count(self, category: str) -> int:
        """How many rows have the problem `category` (one of CATEGORIES)."""
        if category not in CATEGORIES:
            raise KeyError(f"unknown category {category!r}; categories are {', '.join(CATEGORIES)}")
        finding = self.findings.get(category)
        return 0 if finding is None else finding.count

    def summary(self) -> str:
        """One line per non-empty finding (with its first offenders), or one line saying ok."""
        head = (
            f"{len(self.symbols)} symbols, {self.ticks_covered} ticks up to the watermarks, "
            f"{self.bars_expected} bars and {self.indicators_expected} indicator rows expected"
        )
        if self.ok:
            return f"analysis matches the recomputation: {head}"
        lines = [f"analysis differs from the recomputation: {head}"]
        for category in CATEGORIES:
            finding = self.findings.get(category)
            if finding is None or finding.count == 0:
                continue
            lines.append(f"  {category}: {finding.count}")
            lines.extend(f"    {offender}" for offender in finding.first)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for reports."""
        return {
            "ok": self.ok,
            "symbols": list(self.symbols),
            "ticks_covered": self.ticks_covered,
            "bars_expected": self.bars_expected,
            "indicators_expected": self.indicators_expected,
            "findings": {
                category: {
                    "count": self.count(category),
                    "first": [str(o) for o in self.findings.get(category, Finding()).first],
                }
                for category in CATEGORIES
            },
        }


def recompute_bars(
    ticks_conn: Reads, symbol: str, timeframe: str, upto: tuple[int, int]
) -> list[ExpectedBar]:
    """The bars of one series from the ticks of `symbol` with key <= `upto`, oldest first."""
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe={timeframe!r}; known: {', '.join(TIMEFRAMES)}")
    rows = ticks_conn.execute(
        _BARS_SQL,
        {"tf": TIMEFRAMES[timeframe], "symbol": symbol, "wm_time": upto[0], "wm_seq": upto[1]},
    ).fetchall()
    return [
        ExpectedBar(int(b), float(o), float(h), float(lo), float(c), int(n), float(v))
        for b, o, h, lo, c, n, v in rows
    ]


def sma(closes: Sequence[float], n: int = PERIOD) -> list[float | None]:
    """Simple moving average of each close over the last `n` (None before there are `n`)."""
    return [sum(closes[i - n + 1 : i + 1]) / n if i >= n - 1 else None for i in range(len(closes))]


def ema(closes: Sequence[float], n: int = PERIOD) -> list[float | None]:
    """Exponential moving average, seeded with the SMA of the first `n` closes."""
    out: list[float | None] = [None] * len(closes)
    if len(closes) < n:
        return out
    alpha = 2 / (n + 1)
    value = sum(closes[:n]) / n
    out[n - 1] = value
    for i in range(n, len(closes)):
        value = alpha * closes[i] + (1 - alpha) * value
        out[i] = value
    return out


def wilder_rsi(
    closes: Sequence[float], n: int = PERIOD
) -> tuple[list[float | None], list[float | None], list[float | None]]:
    """Wilder's RSI of each close, and the average gain and loss behind it (None until bar n)."""
    size = len(closes)
    rsi: list[float | None] = [None] * size
    gains_avg: list[float | None] = [None] * size
    losses_avg: list[float | None] = [None] * size
    if size <= n:
        return rsi, gains_avg, losses_avg
    changes = [closes[i] - closes[i - 1] for i in range(1, size)]
    gains = [max(c, 0.0) for c in changes]
    losses = [max(-c, 0.0) for c in changes]
    avg_gain = sum(gains[:n]) / n
    avg_loss = sum(losses[:n]) / n
    for i in range(n, size):
        if i > n:
            avg_gain = (avg_gain * (n - 1) + gains[i - 1]) / n
            avg_loss = (avg_loss * (n - 1) + losses[i - 1]) / n
        gains_avg[i] = avg_gain
        losses_avg[i] = avg_loss
        rsi[i] = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1 + avg_gain / avg_loss)
    return rsi, gains_avg, losses_avg


def recompute_indicators(closes: Sequence[float]) -> dict[str, list[float | None]]:
    """Every indicator the agent stores, per bar index, from a series' closes."""
    rsi, avg_gain, avg_loss = wilder_rsi(closes)
    return {
        "sma14": sma(closes),
        "ema14": ema(closes),
        "rsi14": rsi,
        "rsi14_avg_gain": avg_gain,
        "rsi14_avg_loss": avg_loss,
    }


class _Findings:
    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.counts: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.first: dict[str, list[Offender]] = {c: [] for c in CATEGORIES}

    def add(self, category: str, offender: Offender) -> None:
        self.counts[category] += 1
        if len(self.first[category]) < self.keep:
            self.first[category].append(offender)

    def result(self) -> dict[str, Finding]:
        return {c: Finding(self.counts[c], tuple(self.first[c])) for c in CATEGORIES}


def _same(expected: Value, actual: Value, rel_tol: float, abs_tol: float) -> bool:
    if isinstance(expected, float) and isinstance(actual, int | float):
        return math.isclose(expected, float(actual), rel_tol=rel_tol, abs_tol=abs_tol)
    return expected == actual and type(expected) is type(actual)


def _symbols(ticks_conn: Reads) -> list[str]:
    # A checker may afford the full scan; the agent may not.
    return [row[0] for row in ticks_conn.execute("SELECT DISTINCT symbol FROM ticks")]


def _index(
    rows: Iterable[Sequence[Any]], width: int, table: str, findings: _Findings, category: str
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Rows keyed by their first `width` columns; a key seen twice is a duplicate."""
    out: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        key, rest = tuple(row[:width]), tuple(row[width:])
        if key in out:
            findings.add(category, Offender(table, key, "*", "one row", "another row"))
        out[key] = rest
    return out


def compare_analysis(
    ticks_conn: Reads,
    analysis_conn: Reads,
    *,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-12,
    examples: int = 5,
) -> AnalysisComparison:
    """Compare the analysis database with a recomputation from the ticks up to its watermarks.

    Floats compare with `math.isclose(rel_tol, abs_tol)`, counts and keys exactly. Each finding
    keeps its first `examples` offenders. Read-only on both connections; take it while the agent
    is stopped, or accept that a concurrent commit may show as a difference.
    """
    findings = _Findings(examples)
    watermarks: dict[str, tuple[int, int, int]] = {}
    for symbol, wm_time, wm_seq, seen in analysis_conn.execute(
        "SELECT symbol, time_msc, seq, ticks_seen FROM watermarks"
    ):
        watermarks[symbol] = (int(wm_time), int(wm_seq), int(seen))
    actual_bars = _index(
        analysis_conn.execute(
            "SELECT symbol, timeframe, start_msc, open, high, low, close, tick_count, volume "
            "FROM bars"
        ),
        3,
        "bars",
        findings,
        "duplicate_bars",
    )
    actual_indicators = _index(
        analysis_conn.execute("SELECT symbol, timeframe, start_msc, name, value FROM indicators"),
        4,
        "indicators",
        findings,
        "duplicate_indicators",
    )

    expected_bars: dict[tuple[Any, ...], ExpectedBar] = {}
    expected_indicators: dict[tuple[Any, ...], float] = {}
    symbols = sorted(set(_symbols(ticks_conn)) | set(watermarks))
    ticks_covered = 0
    for symbol in symbols:
        if symbol not in watermarks:
            continue
        wm_time, wm_seq, seen = watermarks[symbol]
        exists = ticks_conn.execute(
            "SELECT 1 FROM ticks WHERE symbol = ? AND time_msc = ? AND seq = ?",
            (symbol, wm_time, wm_seq),
        ).fetchone()
        if exists is None:
            findings.add(
                "bad_watermarks",
                Offender(
                    "watermarks",
                    (symbol,),
                    "(time_msc, seq)",
                    "a key in ticks",
                    f"({wm_time}, {wm_seq})",
                ),
            )
        for timeframe in TIMEFRAMES:
            bars = recompute_bars(ticks_conn, symbol, timeframe, (wm_time, wm_seq))
            covered = sum(bar.tick_count for bar in bars)
            if timeframe == next(iter(TIMEFRAMES)):
                ticks_covered += covered
                if covered != seen:
                    findings.add(
                        "bad_watermarks",
                        Offender("watermarks", (symbol,), "ticks_seen", covered, seen),
                    )
            for bar in bars:
                expected_bars[(symbol, timeframe, bar.start_msc)] = bar
            indicators = recompute_indicators([bar.close for bar in bars])
            for name, values in indicators.items():
                for bar, value in zip(bars, values, strict=True):
                    if value is not None:
                        expected_indicators[(symbol, timeframe, bar.start_msc, name)] = value

    for key, bar in expected_bars.items():
        if key not in actual_bars:
            findings.add("missing_bars", Offender("bars", key, "*", "a row", None))
            continue
        row = actual_bars[key]
        wanted: tuple[Value, ...] = (
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.tick_count,
            bar.volume,
        )
        for column, expected, actual in zip(BAR_FIELDS, wanted, row, strict=True):
            if not _same(expected, actual, rel_tol, abs_tol):
                findings.add("differing_bars", Offender("bars", key, column, expected, actual))
                break
    for key in sorted(actual_bars.keys() - expected_bars.keys()):
        findings.add("extra_bars", Offender("bars", key, "*", None, "a row"))
    for key, value in expected_indicators.items():
        if key not in actual_indicators:
            findings.add("missing_indicators", Offender("indicators", key, "value", value, None))
        elif not _same(value, actual_indicators[key][0], rel_tol, abs_tol):
            findings.add(
                "differing_indicators",
                Offender("indicators", key, "value", value, actual_indicators[key][0]),
            )
    for key in sorted(actual_indicators.keys() - expected_indicators.keys()):
        findings.add(
            "extra_indicators",
            Offender("indicators", key, "value", None, actual_indicators[key][0]),
        )
    return AnalysisComparison(
        symbols=tuple(symbols),
        ticks_covered=ticks_covered,
        bars_expected=len(expected_bars),
        indicators_expected=len(expected_indicators),
        findings=findings.result(),
    )
