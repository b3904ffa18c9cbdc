"""The checks' SQL on PostgreSQL: statements written once, in SQLite's dialect, run on a psycopg
connection, so a check cannot mean one thing on one backend and another on the other.

`to_psycopg` rewrites the placeholders: `?` becomes `%s`; `?N` and `:name` become named ones
(`%(pN)s`, `%(name)s`); a `%` (SQLite's modulo, or one inside a quoted literal) becomes `%%`.
Text inside quotes keeps its `?` and `:`. A function only SQLite has is refused by name rather
than sent to the server to fail there.

`SqliteStyle` wraps a connection with `execute(sql, parameters)` as sqlite3's, returning the
cursor, which is what the checks call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

__all__ = ["SqliteStyle", "to_psycopg"]

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?(\d+)|\?|:([A-Za-z_]\w*)|%")
_SQLITE_ONLY = re.compile(r"\b(total|ifnull|group_concat|printf|instr)\s*\(", re.IGNORECASE)


def to_psycopg(
    sql: str, parameters: Sequence[Any] | Mapping[str, Any]
) -> tuple[str, Sequence[Any] | dict[str, Any]]:
    """`sql` and `parameters` in psycopg's form (see the module's note)."""
    only = _SQLITE_ONLY.search(sql)
    if only:
        raise ValueError(
            f"{only.group(1)}() is SQLite's only; write the statement with a function both "
            "backends have (e.g. coalesce(sum(x), 0.0) for total(x))"
        )
    named: dict[str, Any] = {}
    numbered = False

    def rewrite(match: re.Match[str]) -> str:
        nonlocal numbered
        text = match.group(0)
        if text[0] in "'\"":
            return text.replace("%", "%%")
        if text == "%":
            return "%%"
        if match.group(1) is not None:
            numbered = True
            return f"%(p{match.group(1)})s"
        if match.group(2) is not None:
            return f"%({match.group(2)})s"
        return "%s"

    converted = _TOKEN.sub(rewrite, sql)
    if numbered:
        assert not isinstance(parameters, Mapping)
        named = {f"p{i}": value for i, value in enumerate(parameters, start=1)}
        return converted, named
    if isinstance(parameters, Mapping):
        return converted, dict(parameters)
    return converted, tuple(parameters)


class SqliteStyle:
    """A psycopg connection that takes SQLite-dialect statements (`execute` as sqlite3's)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = (), /
    ) -> psycopg.Cursor[Any]:
        query, params = to_psycopg(sql, parameters)
        return self.conn.execute(query.encode(), params)

    def close(self) -> None:
        self.conn.close()
