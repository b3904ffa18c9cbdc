"""What a SQLite file holds, read from its schema: tables, indexes, triggers and views."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class SchemaObject:
    """One row of `sqlite_schema` that a copy must carry: its type, name, table and SQL."""

    type: str  # 'table', 'index', 'trigger' or 'view'
    name: str
    table: str
    sql: str


def quote(name: str) -> str:
    """`name` as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def schema_objects(conn: sqlite3.Connection, schema: str = "main") -> list[SchemaObject]:
    """Every object of `schema` a copy carries, in creation order: SQLite's own tables
    (`sqlite_sequence`, `sqlite_stat1`, ...) and the indexes it makes for UNIQUE and PRIMARY KEY
    constraints (no SQL; the table's SQL makes them again) are left out."""
    rows = conn.execute(
        f"SELECT type, name, tbl_name, sql FROM {quote(schema)}.sqlite_schema "
        "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite~_%' ESCAPE '~' ORDER BY rowid"
    ).fetchall()
    return [SchemaObject(str(t), str(n), str(tb), str(sql)) for t, n, tb, sql in rows]


def is_virtual(obj: SchemaObject) -> bool:
    return obj.type == "table" and obj.sql.lstrip().upper().startswith("CREATE VIRTUAL")


@dataclass(frozen=True)
class Columns:
    """How a table's rows are copied and compared: the stored columns, and whether its rowid is
    carried too (a rowid table without an INTEGER PRIMARY KEY, whose rowid a plain
    `SELECT *` would not keep)."""

    names: tuple[str, ...]
    with_rowid: bool
    # A rowid table (rowid carried, or its INTEGER PRIMARY KEY): copied in rowid ranges.
    rowid_table: bool

    def select_list(self) -> str:
        cols = ", ".join(quote(c) for c in self.names)
        return f"rowid, {cols}" if self.with_rowid else cols


def table_columns(conn: sqlite3.Connection, schema: str, table: str) -> Columns:
    """The columns of `schema.table` that hold data (generated and hidden ones are computed)."""
    info = conn.execute(f"PRAGMA {quote(schema)}.table_xinfo({quote(table)})").fetchall()
    names = tuple(str(row[1]) for row in info if row[6] == 0)
    pk = [row for row in info if row[5] > 0]
    integer_pk = len(pk) == 1 and str(pk[0][2]).upper() == "INTEGER"
    rowid_table = _has_rowid(conn, schema, table, names)
    return Columns(names, with_rowid=rowid_table and not integer_pk, rowid_table=rowid_table)


def _has_rowid(conn: sqlite3.Connection, schema: str, table: str, names: tuple[str, ...]) -> bool:
    if "rowid" in (n.lower() for n in names):
        return False  # a column of that name hides the rowid; the column itself is copied
    try:
        conn.execute(f"SELECT rowid FROM {quote(schema)}.{quote(table)} LIMIT 0")
    except sqlite3.OperationalError:
        return False  # WITHOUT ROWID
    return True
