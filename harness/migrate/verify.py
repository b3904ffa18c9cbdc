"""Is a copy the same as its source? Rows and a content checksum per table, `integrity_check`,
foreign keys, and the schema carried over (indexes, triggers, constraints in the table's SQL).

The checksum is order-free: the sum, modulo 2**64, of a 64-bit BLAKE2b hash of each row (its
carried rowid and every stored column, pickled: exact, and typed, so 1 and 1.0 and '1' and b'1'
differ). Equal sums with equal row counts mean the same rows, short of a hash collision.
Pickling a row takes about a third of the time its `repr` did (floats above all); most of what
is left is sqlite3 making each row's Python objects, which any check done in Python pays
(`python tests/benchmarks/split_speed.py --profile`).
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from harness.migrate.objects import Columns, SchemaObject, quote, schema_objects, table_columns

_MASK = (1 << 64) - 1
_BATCH = 10_000
# Fixed, so that a checksum does not change with the Python that computed it.
_PICKLE = 5


@dataclass(frozen=True)
class TableFigures:
    """What a table holds, to compare: its rows and content checksum."""

    rows: int
    checksum: str


def table_figures(
    conn: sqlite3.Connection, schema: str, table: str, columns: Columns | None = None
) -> TableFigures:
    """Rows and checksum of `schema.table`, read on `conn` (inside its transaction, if any)."""
    columns = columns or table_columns(conn, schema, table)
    total = 0
    rows = 0
    blake, dumps, number = hashlib.blake2b, pickle.dumps, int.from_bytes
    cursor = conn.execute(f"SELECT {columns.select_list()} FROM {quote(schema)}.{quote(table)}")
    while batch := cursor.fetchmany(_BATCH):
        rows += len(batch)
        total += sum(
            [number(blake(dumps(row, _PICKLE), digest_size=8).digest(), "big") for row in batch]
        )
    return TableFigures(rows, f"{total & _MASK:016x}")


@dataclass
class FileCheck:
    """One target file against what it should hold."""

    file: Path
    tables: dict[str, TableFigures] = field(default_factory=dict)
    integrity: str = "not checked"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_file(
    file: Path,
    expected_objects: tuple[SchemaObject, ...],
    expected: dict[str, TableFigures],
    journal_mode: str,
) -> FileCheck:
    """Open `file` afresh and compare it with what the source held.

    Opened read-write but `query_only`: nothing is written, and closing the last connection
    removes the -wal and -shm files a read-only one would leave behind the file.
    """
    check = FileCheck(file)
    conn = sqlite3.connect(f"file:{file}?mode=rw", uri=True)
    conn.execute("PRAGMA query_only = 1")
    try:
        found = schema_objects(conn)
        if sorted(_key(o) for o in found) != sorted(_key(o) for o in expected_objects):
            missing = {o.name for o in expected_objects} - {o.name for o in found}
            extra = {o.name for o in found} - {o.name for o in expected_objects}
            changed = {
                o.name
                for o in found
                if o.name not in extra and _key(o) not in map(_key, expected_objects)
            }
            check.problems.append(
                "schema differs from the source's: "
                + "; ".join(
                    f"{what} {', '.join(sorted(names))}"
                    for what, names in (
                        ("missing", missing),
                        ("extra", extra),
                        ("changed", changed),
                    )
                    if names
                )
            )
        for table, want in expected.items():
            got = table_figures(conn, "main", table)
            check.tables[table] = got
            if got != want:
                check.problems.append(
                    f"table {table}: {got.rows} rows, checksum {got.checksum}; the source's "
                    f"snapshot had {want.rows} rows, checksum {want.checksum}"
                )
        results = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        check.integrity = "ok" if results == ["ok"] else "; ".join(results[:5])
        if check.integrity != "ok":
            check.problems.append(f"integrity_check: {check.integrity}")
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            check.problems.append(
                f"foreign_key_check: {len(broken)} rows refer to missing parents, first in "
                f"table {broken[0][0]}"
            )
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        if mode != journal_mode:
            check.problems.append(f"journal_mode is {mode}, the topology says {journal_mode}")
    finally:
        conn.close()
    return check


def _key(obj: SchemaObject) -> tuple[str, str, str, str]:
    return (obj.type, obj.name, obj.table, " ".join(obj.sql.split()))
