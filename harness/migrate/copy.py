"""The copy: every table of a plan into temporary files, under one read snapshot of each source.

One connection attaches the sources (read-only) and the targets, and copies every table inside
one transaction: each source is read at a single moment, so a writer that goes on inserting
into it neither tears the copy nor waits for it (in WAL mode readers do not block writers). A
source not in WAL mode would make its writer wait for the whole copy, so it is first copied
whole with SQLite's backup API (a page copy, far shorter) and split from that copy.

Tables are created from the source's own SQL before the rows, indexes and triggers after them
(faster, and no trigger fires on copied rows); rowids are kept; AUTOINCREMENT counters,
`user_version`, `application_id`, `page_size` and `auto_vacuum` are carried. The source's
figures (rows, checksum) are taken inside the same snapshot, for `verify` to compare with.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from harness.migrate.objects import quote, schema_objects, table_columns
from harness.migrate.plan import MigrationError, Plan, Target
from harness.migrate.verify import TableFigures, table_figures

CHUNK_ROWS = 100_000

Report = Callable[[str], None]


def snapshot_needed(source: Path) -> bool:
    """Whether `source` is not in WAL mode (a long read would block its writer)."""
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal"
    finally:
        conn.close()


def backup_snapshot(source: Path, into: Path) -> None:
    """A consistent copy of `source` at one moment, by the backup API in one step."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(into)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def copy_plan(
    plan: Plan,
    read_from: dict[Path, Path],
    write_to: dict[Path, Path],
    live: Report,
) -> dict[str, TableFigures]:
    """Copy every move of `plan`, reading each source from `read_from[source]` (itself or its
    snapshot) into `write_to[target.file]` (fresh temporary files); returns the source's
    figures per table, from the snapshot the copy read."""
    for target in plan.targets:
        _create(target, write_to[target.file], plan, read_from)
    conn = sqlite3.connect("file::memory:", uri=True, isolation_level=None)
    try:
        alias_of_source = {}
        for i, source in enumerate(plan.sources):
            alias_of_source[source] = f"s{i}"
            conn.execute(f"ATTACH ? AS s{i}", (f"file:{read_from[source]}?mode=ro",))
        alias_of_target = {}
        for j, target in enumerate(plan.targets):
            alias_of_target[target.file] = f"t{j}"
            conn.execute(f"ATTACH ? AS t{j}", (f"file:{write_to[target.file]}?mode=rw",))
        figures: dict[str, TableFigures] = {}
        conn.execute("BEGIN")
        try:
            for source, alias in alias_of_source.items():
                # The snapshot starts at this first read: the source's schema must still be
                # the one the plan was made from.
                planned = {m.table for m in plan.moves if m.source == source}
                now = {o.name for o in schema_objects(conn, alias) if o.type == "table"}
                if not planned <= now:
                    raise MigrationError(
                        str(source),
                        [
                            f"tables {', '.join(sorted(planned - now))} disappeared while the "
                            "migration was being planned; run it again"
                        ],
                    )
            for move in plan.moves:
                s, t = alias_of_source[move.source], alias_of_target[move.target]
                columns = table_columns(conn, s, move.table)
                total = int(
                    conn.execute(f"SELECT count(*) FROM {s}.{quote(move.table)}").fetchone()[0]
                )
                _copy_rows(
                    conn, s, t, move.table, columns.select_list(), columns.rowid_table, total, live
                )
                figures[move.table] = table_figures(conn, s, move.table, columns)
                live(f"  checked {move.table} in the source's snapshot: {total:,} rows")
            for move in plan.moves:
                _carry_sequence(
                    conn, alias_of_source[move.source], alias_of_target[move.target], move.table
                )
            conn.execute("COMMIT")
        except BaseException:
            # Not after a COMMIT that went through (a Ctrl-C lands as it returns): ROLLBACK
            # would fail, and its error would replace the interruption.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    for target in plan.targets:
        _finish(target, write_to[target.file])
    return figures


def _create(target: Target, path: Path, plan: Plan, read_from: dict[Path, Path]) -> None:
    """A fresh file with the source's header settings, journal mode and tables (no rows)."""
    # A target that gets no table (its database is empty) takes the first source's header.
    first = next((m.source for m in plan.moves if m.target == target.file), plan.sources[0])
    version, app_id = plan.headers.get(first, (0, 0))
    src = sqlite3.connect(f"file:{read_from[first]}?mode=ro", uri=True)
    try:
        page_size = int(src.execute("PRAGMA page_size").fetchone()[0])
        auto_vacuum = int(src.execute("PRAGMA auto_vacuum").fetchone()[0])
    finally:
        src.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {page_size}")
        conn.execute(f"PRAGMA auto_vacuum = {auto_vacuum}")
        conn.execute(f"PRAGMA journal_mode = {target.journal_mode}")
        conn.execute("BEGIN")
        for obj in target.objects:
            if obj.type == "table":
                conn.execute(obj.sql)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute(f"PRAGMA application_id = {app_id}")
        conn.execute("COMMIT")
    finally:
        conn.close()


def _copy_rows(
    conn: sqlite3.Connection,
    s: str,
    t: str,
    table: str,
    cols: str,
    by_rowid: bool,
    total: int,
    live: Report,
) -> None:
    name = quote(table)
    if not by_rowid:  # WITHOUT ROWID: one statement
        live(f"  copying {table}: {total:,} rows")
        conn.execute(f"INSERT INTO {t}.{name} ({cols}) SELECT {cols} FROM {s}.{name}")
        return
    copied = 0
    last: int | None = None
    while True:
        where, params = ("", ()) if last is None else ("WHERE rowid > ?", (last,))
        cursor = conn.execute(
            f"INSERT INTO {t}.{name} ({cols}) SELECT {cols} FROM {s}.{name} {where} "
            f"ORDER BY rowid LIMIT {CHUNK_ROWS}",
            params,
        )
        done = cursor.rowcount
        if done <= 0:
            break
        copied += done
        last = int(conn.execute(f"SELECT max(rowid) FROM {t}.{name}").fetchone()[0])
        share = f" ({100 * copied // total}%)" if total else ""
        live(f"  copying {table}: {copied:,} of {total:,} rows{share}")
        if done < CHUNK_ROWS:
            break


def _carry_sequence(conn: sqlite3.Connection, s: str, t: str, table: str) -> None:
    """The AUTOINCREMENT counter, which can be past the largest rowid (deleted rows)."""
    has = "SELECT 1 FROM {}.sqlite_schema WHERE name = 'sqlite_sequence'"
    if not conn.execute(has.format(s)).fetchone() or not conn.execute(has.format(t)).fetchone():
        return
    conn.execute(f"DELETE FROM {t}.sqlite_sequence WHERE name = ?", (table,))
    conn.execute(
        f"INSERT INTO {t}.sqlite_sequence (name, seq) "
        f"SELECT name, seq FROM {s}.sqlite_sequence WHERE name = ?",
        (table,),
    )


def _finish(target: Target, path: Path) -> None:
    """Indexes, triggers and views after the rows; the WAL folded into the file."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for obj in target.objects:
            if obj.type != "table":
                conn.execute(obj.sql)
        conn.execute("COMMIT")
        if target.journal_mode == "wal":
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
