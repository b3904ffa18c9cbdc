"""Writing and reading ticks: the one place that knows the ticks table's insert statement."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from reference.access import transaction
from reference.schema import TICK_COLUMNS

TickRow = tuple[Any, ...]

# OR IGNORE: the key is the tick's content, so a tick re-sent after a restart is a no-op.
INSERT_TICKS = (
    f"INSERT OR IGNORE INTO ticks ({', '.join(TICK_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in TICK_COLUMNS)})"
)


def insert_ticks(conn: sqlite3.Connection, rows: Sequence[TickRow]) -> int:
    """Insert rows (in TICK_COLUMNS order) in one write transaction; returns rows new to the table.

    When this returns, the rows are committed: that is the moment a writer may acknowledge them.
    """
    with transaction(conn):
        before = conn.total_changes
        conn.executemany(INSERT_TICKS, rows)
        return conn.total_changes - before
