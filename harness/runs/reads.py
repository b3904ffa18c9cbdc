"""What a check needs of a database connection: `execute(sql, parameters)` returning a cursor
(`fetchone`, `fetchall`, iteration), as sqlite3's connections have it. A server's connection is
given this shape by `harness.pg.dialect.SqliteStyle`, so each check's SQL is written once."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Reads"]


class Reads(Protocol):
    """A connection the checks read through (sqlite3's, or a server's in SQLite's dialect)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...
