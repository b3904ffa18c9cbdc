"""Schemas of the three databases, created idempotently with sqlite-utils.

Each logical database (ticks, analysis, logs) has its own tables, so the legacy layout can put all
three in one file without clashes. `PRAGMA user_version` records the schema version of the file;
a file written by a newer splitdb is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from reference.errors import SchemaError

SCHEMA_VERSION = 1

TICK_COLUMNS: tuple[str, ...] = (
    "symbol",
    "time_msc",
    "seq",
    "time",
    "bid",
    "ask",
    "last",
    "volume",
    "flags",
    "volume_real",
)
BAR_COLUMNS: tuple[str, ...] = (
    "symbol",
    "timeframe",
    "start_msc",
    "open",
    "high",
    "low",
    "close",
    "tick_count",
    "volume",
)

# Which tables belong to which logical database: the harness and the access tests use this to
# know what a role owns in a shared file.
TABLES: dict[str, tuple[str, ...]] = {
    "ticks": ("ticks",),
    "analysis": ("bars", "indicators", "watermarks"),
    "logs": ("request_log",),
}


def _ticks(db: sqlite_utils.Database) -> None:
    # Keyed by content (symbol, time_msc, seq) so a re-sent tick after a restart is a no-op,
    # never a duplicate.
    db.table("ticks").create(
        {
            "symbol": str,
            "time_msc": int,
            "seq": int,
            "time": int,
            "bid": float,
            "ask": float,
            "last": float,
            "volume": int,
            "flags": int,
            "volume_real": float,
        },
        pk=("symbol", "time_msc", "seq"),
        not_null=("symbol", "time_msc", "seq", "time", "bid", "ask"),
        if_not_exists=True,
        strict=True,
    )


def _analysis(db: sqlite_utils.Database) -> None:
    db.table("bars").create(
        {
            "symbol": str,
            "timeframe": str,
            "start_msc": int,
            "open": float,
            "high": float,
            "low": float,
            "close": float,
            "tick_count": int,
            "volume": float,
        },
        pk=("symbol", "timeframe", "start_msc"),
        not_null=("symbol", "timeframe", "start_msc", "open", "high", "low", "close"),
        if_not_exists=True,
        strict=True,
    )
    db.table("indicators").create(
        {
            "symbol": str,
            "timeframe": str,
            "start_msc": int,
            "name": str,
            "value": float,
        },
        pk=("symbol", "timeframe", "start_msc", "name"),
        not_null=("symbol", "timeframe", "start_msc", "name"),
        if_not_exists=True,
        strict=True,
    )
    # The watermark is the key of the last tick folded into bars; it is written in the same
    # transaction as the bars, so a crash can neither count a tick twice nor skip one.
    db.table("watermarks").create(
        {
            "symbol": str,
            "time_msc": int,
            "seq": int,
            "ticks_seen": int,
            "updated_ns": int,
        },
        pk="symbol",
        not_null=("symbol", "time_msc", "seq", "ticks_seen"),
        if_not_exists=True,
        strict=True,
    )


def _logs(db: sqlite_utils.Database) -> None:
    db.table("request_log").create(
        {
            "id": int,
            "ts_ns": int,
            "method": str,
            "path": str,
            "status": int,
            "duration_us": int,
            "client": str,
        },
        pk="id",
        not_null=("ts_ns", "method", "path", "status", "duration_us"),
        if_not_exists=True,
        strict=True,
    )


_CREATORS: dict[str, Callable[[sqlite_utils.Database], None]] = {
    "ticks": _ticks,
    "analysis": _analysis,
    "logs": _logs,
}


def has_schema(database: str) -> bool:
    """Whether splitdb knows the tables of `database` (the reference databases); a user's
    topology names databases whose tables its own processes create."""
    return database in _CREATORS


def ensure_schema(conn: sqlite3.Connection, database: str) -> None:
    """Create the tables of `database` on an owner's connection if they are missing.

    Idempotent; safe to run from every owner at every start. Raises SchemaError when the file
    was written by a newer schema version, or `database` has no schema.
    """
    if database not in _CREATORS:
        raise SchemaError(
            f"no schema for database {database!r}; splitdb knows {', '.join(_CREATORS)}"
        )
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"database {database!r} has schema version {version}, newer than this splitdb "
            f"supports ({SCHEMA_VERSION}); upgrade splitdb or use a fresh data directory"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        _CREATORS[database](
            sqlite_utils.Database(conn, execute_plugins=False, recursive_triggers=False)
        )
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's `PRAGMA user_version`: 0 for a new file."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])
