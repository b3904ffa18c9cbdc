"""The analysis side's SQL, written once for both backends.

The agent's statements (and the symbol walk the API shares) in SQLite's `?` placeholder style;
`for_psycopg` turns one into psycopg's `%s` style. Every statement here is plain SQL both
SQLite and PostgreSQL accept, with no literal `?` or `%` of its own.
"""

from __future__ import annotations

from reference.schema import BAR_COLUMNS

__all__ = [
    "BARS_ALL",
    "BARS_NEWEST",
    "INDICATOR_VALUES",
    "LOGS_SUMMARY",
    "SYMBOLS",
    "TICKS_AFTER",
    "TICKS_FIRST",
    "UPSERT_BARS",
    "UPSERT_INDICATORS",
    "UPSERT_WATERMARKS",
    "WATERMARK_OF",
    "for_psycopg",
]

# The distinct symbols in key order without a full scan: each step seeks the primary-key index
# to the first symbol after the previous one (a "skip scan"), so the cost grows with the number
# of symbols, not of ticks.
SYMBOLS = """
WITH RECURSIVE walk(symbol) AS (
    SELECT (SELECT MIN(symbol) FROM ticks)
    UNION ALL
    SELECT (SELECT MIN(symbol) FROM ticks WHERE symbol > walk.symbol)
    FROM walk
    WHERE walk.symbol IS NOT NULL
)
SELECT symbol FROM walk WHERE symbol IS NOT NULL
"""
TICKS_AFTER = (
    "SELECT time_msc, seq, bid, volume_real FROM ticks "
    "WHERE symbol = ? AND (time_msc, seq) > (?, ?) ORDER BY time_msc, seq LIMIT ?"
)
TICKS_FIRST = (
    "SELECT time_msc, seq, bid, volume_real FROM ticks "
    "WHERE symbol = ? ORDER BY time_msc, seq LIMIT ?"
)
_BAR_SELECT = "SELECT start_msc, open, high, low, close, tick_count, volume FROM bars"
BARS_NEWEST = f"{_BAR_SELECT} WHERE symbol = ? AND timeframe = ? ORDER BY start_msc DESC LIMIT ?"
BARS_ALL = f"{_BAR_SELECT} WHERE symbol = ? AND timeframe = ? ORDER BY start_msc"
WATERMARK_OF = "SELECT time_msc, seq, ticks_seen FROM watermarks WHERE symbol = ?"
INDICATOR_VALUES = (
    "SELECT name, value FROM indicators "
    "WHERE symbol = ? AND timeframe = ? AND start_msc = ? AND value IS NOT NULL"
)
UPSERT_BARS = (
    f"INSERT INTO bars ({', '.join(BAR_COLUMNS)}) VALUES ({', '.join('?' for _ in BAR_COLUMNS)}) "
    "ON CONFLICT (symbol, timeframe, start_msc) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in BAR_COLUMNS[3:])
)
UPSERT_INDICATORS = (
    "INSERT INTO indicators (symbol, timeframe, start_msc, name, value) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (symbol, timeframe, start_msc, name) DO UPDATE SET value = excluded.value"
)
UPSERT_WATERMARKS = (
    "INSERT INTO watermarks (symbol, time_msc, seq, ticks_seen, updated_ns) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (symbol) DO UPDATE SET time_msc = excluded.time_msc, "
    "seq = excluded.seq, ticks_seen = excluded.ticks_seen, updated_ns = excluded.updated_ns"
)
LOGS_SUMMARY = "SELECT id, status FROM request_log ORDER BY id DESC LIMIT 1"


def for_psycopg(sql: str) -> str:
    """`sql` with psycopg's `%s` placeholders where it has SQLite's `?`."""
    return sql.replace("?", "%s")
