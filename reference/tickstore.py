"""Writing and reading ticks: the one place that knows the bot's statements (the insert, the
restart watermark, the monitoring glance), in SQLite's `?` placeholder style
(`reference.analysis_sql.for_psycopg` makes psycopg's)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reference.access import transaction
from reference.schema import TICK_COLUMNS

TickRow = tuple[Any, ...]


@dataclass(frozen=True)
class Inserted:
    """Rows new to the table, and how long the transaction waited for the write lock."""

    new: int
    wait_ns: int


# OR IGNORE: the key is the tick's content, so a tick re-sent after a restart is a no-op.
INSERT_TICKS = (
    f"INSERT OR IGNORE INTO ticks ({', '.join(TICK_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in TICK_COLUMNS)})"
)

# The restart watermark of one symbol: one probe, backwards on the primary key.
LAST_KEY = (
    "SELECT time_msc, seq FROM ticks WHERE symbol = ? ORDER BY time_msc DESC, seq DESC LIMIT 1"
)
# The seed bot's glance at the other databases: how many symbols the agent has a watermark for,
# and the newest request id the API logged.
MONITOR = (
    ("analysis", "SELECT count(*) FROM watermarks"),
    ("logs", "SELECT max(id) FROM request_log"),
)


def insert_ticks(conn: sqlite3.Connection, rows: Sequence[TickRow]) -> Inserted:
    """Insert rows (in TICK_COLUMNS order) in one write transaction.

    When this returns, the rows are committed: that is the moment a writer may acknowledge them.
    """
    with transaction(conn) as txn:
        before = conn.total_changes
        conn.executemany(INSERT_TICKS, rows)
        new = conn.total_changes - before
    return Inserted(new=new, wait_ns=txn.wait_ns)
