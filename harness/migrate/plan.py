"""Which table goes from which file to which: a migration's plan, and every problem with it
found before anything is written.

`split_plan` places each table of one source file in the database the topology lists it under;
`merge_plan` puts every table of a topology's files into one file. A problem (a table placed
nowhere, a listed table the source lacks, a foreign key that would cross files, a virtual
table, a target that is the source) is one line naming the table, the field and the fix.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from harness.migrate.objects import SchemaObject, is_virtual, quote, schema_objects
from reference.errors import InvalidInput
from reference.topology import Topology


class MigrationError(InvalidInput):
    """A migration cannot be planned: its input says something impossible."""

    what = "migration"


@dataclass(frozen=True)
class Target:
    """One file a migration writes, with the settings of its databases and what it holds."""

    file: Path
    databases: tuple[str, ...]
    journal_mode: str
    objects: tuple[SchemaObject, ...]

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objects if o.type == "table")


@dataclass(frozen=True)
class Move:
    """Table `table` is copied from `source` into `target`."""

    table: str
    source: Path
    target: Path


@dataclass(frozen=True)
class Plan:
    kind: str  # 'split' or 'merge'
    sources: tuple[Path, ...]
    targets: tuple[Target, ...]
    moves: tuple[Move, ...]
    # Per source: PRAGMA user_version and application_id, carried to its targets.
    headers: dict[Path, tuple[int, int]] = field(default_factory=dict)


def split_plan(source: Path, topology: Topology, data_dir: Path) -> Plan:
    """Each table of `source` to the file of the database whose `tables` list it."""
    source = source.resolve()
    objects, header = _read_source(source)
    problems: list[str] = []
    home: dict[str, str] = {}
    for name, spec in topology.databases.items():
        for table in spec.tables:
            home[table] = name
    tables = [o for o in objects if o.type in ("table", "view")]
    names = {o.name for o in tables}
    for obj in tables:
        if is_virtual(obj):
            problems.append(
                f"table {obj.name!r} of {source.name} is a virtual table; split copies ordinary "
                "tables only: drop it (and its shadow tables) or rebuild it after the split"
            )
        elif obj.name not in home:
            problems.append(
                f"{obj.type} {obj.name!r} of {source.name} is placed in no database: add it to "
                f"the tables of one database in {topology.source} (databases.NAME.tables)"
            )
    for table, database in home.items():
        if table not in names:
            problems.append(
                f"databases.{database}.tables: {table!r} is not a table of {source.name}; "
                "remove it from the list or check its spelling"
            )
    files = {name: (data_dir / spec.path).resolve() for name, spec in topology.databases.items()}
    for name, file in files.items():
        if file == source:
            problems.append(
                f"databases.{name}: its file {file} is the source itself; give another --data-dir"
            )
    problems += _foreign_keys_across(source, {t: files[d] for t, d in home.items()})
    if problems:
        raise MigrationError(str(source), problems)
    targets: dict[Path, list[str]] = {}
    for name, file in files.items():
        targets.setdefault(file, []).append(name)
    by_file = {file: [t for t in names if files[home[t]] == file] for file in targets}
    return Plan(
        kind="split",
        sources=(source,),
        targets=tuple(
            Target(
                file=file,
                databases=tuple(dbs),
                journal_mode=topology.databases[dbs[0]].journal_mode,
                objects=tuple(_carried(objects, set(by_file[file]))),
            )
            for file, dbs in targets.items()
        ),
        moves=tuple(Move(o.name, source, files[home[o.name]]) for o in tables if o.type == "table"),
        headers={source: header},
    )


def merge_plan(topology: Topology, data_dir: Path, target: Path) -> Plan:
    """Every table of the topology's files into the one file `target`."""
    target = target.resolve()
    sources: list[Path] = []
    for spec in topology.databases.values():
        file = (data_dir / spec.path).resolve()
        if file not in sources:
            sources.append(file)
    problems: list[str] = []
    objects: list[SchemaObject] = []
    moves: list[Move] = []
    headers: dict[Path, tuple[int, int]] = {}
    owner: dict[str, Path] = {}
    for source in sources:
        if source == target:
            problems.append(f"{target} is one of the files to merge; give another target file")
            continue
        if not source.is_file():
            problems.append(f"{source}: no such file; --data-dir must hold the topology's files")
            continue
        found, headers[source] = _read_source(source)
        for obj in found:
            if obj.type in ("table", "view"):
                if is_virtual(obj):
                    problems.append(
                        f"table {obj.name!r} of {source.name} is a virtual table; merge copies "
                        "ordinary tables only"
                    )
                    continue
                if obj.name in owner:
                    problems.append(
                        f"{obj.type} {obj.name!r} is in both {owner[obj.name].name} and "
                        f"{source.name}; rename one before merging"
                    )
                    continue
                owner[obj.name] = source
                if obj.type == "table":
                    moves.append(Move(obj.name, source, target))
            objects.append(obj)
    if problems:
        raise MigrationError(str(data_dir), problems)
    first = next(iter(topology.databases.values()))
    return Plan(
        kind="merge",
        sources=tuple(sources),
        targets=(
            Target(
                file=target,
                databases=tuple(topology.databases),
                journal_mode=first.journal_mode,
                objects=tuple(objects),
            ),
        ),
        moves=tuple(moves),
        headers=headers,
    )


def _read_source(path: Path) -> tuple[list[SchemaObject], tuple[int, int]]:
    if not path.is_file():
        raise MigrationError(str(path), ["no such file; give the SQLite file to split"])
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            objects = schema_objects(conn)
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise MigrationError(
            str(path), [f"not a SQLite database ({exc}); give the SQLite file to split"]
        ) from None
    return objects, (version, app_id)


def _carried(objects: list[SchemaObject], tables: set[str]) -> list[SchemaObject]:
    """The objects that go with `tables`: the tables and views themselves, and the indexes
    and triggers on them."""
    return [o for o in objects if o.name in tables or (o.type != "view" and o.table in tables)]


def _foreign_keys_across(source: Path, file_of: dict[str, Path]) -> list[str]:
    problems = []
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        for table, file in file_of.items():
            try:
                keys = conn.execute(f"PRAGMA foreign_key_list({quote(table)})").fetchall()
            except sqlite3.DatabaseError:
                continue
            for key in keys:
                parent = str(key[2])
                if parent in file_of and file_of[parent] != file:
                    problems.append(
                        f"table {table!r} has a foreign key to {parent!r}, which goes to another "
                        f"file ({file_of[parent].name}, not {file.name}); SQLite cannot enforce "
                        "it across files: place both tables in one database"
                    )
    finally:
        conn.close()
    return problems
