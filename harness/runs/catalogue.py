"""The catalogue of attempts at every way to change a database, and who may make each.

Most are SQL statements; the rest are the `sqlite3` calls that change a database without SQL text
(backup into it, a writable blob, deserialize), undo the guard (set_authorizer, the extension
methods, initialising the connection again) or sneak a write into a read (a user function that
writes, a replayed iterdump). `perform` makes one on a connection.

Tests run it for every role x database to prove the access matrix; the harness's violator load runs
it from a role to prove no forbidden attempt succeeds in a live system. Attempts act on probe
objects (`PROBE_SETUP`) that an owner creates, so a DROP finds something to drop and an allowed
attempt really executes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

Who = Literal["owner", "nobody", "everyone"]
# How an attempt is made: `execute` its statement (the default), run it as a `script`, run it
# from a user `function` called by a SELECT, or one of the calls named after its method.
Call = Literal[
    "execute",
    "script",
    "function",
    "backup_into",
    "backup_out",
    "blob_write",
    "blob_read",
    "deserialize",
    "serialize",
    "iterdump",
    "set_authorizer",
    "enable_load_extension",
    "load_extension",
    "reopen",
]

PROBE_SETUP = """
CREATE TABLE IF NOT EXISTS splitdb_probe (k INTEGER PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS splitdb_probe_drop (x);
CREATE INDEX IF NOT EXISTS splitdb_probe_v ON splitdb_probe (v);
CREATE VIEW IF NOT EXISTS splitdb_probe_view AS SELECT k, v FROM splitdb_probe;
CREATE TRIGGER IF NOT EXISTS splitdb_probe_trigger AFTER DELETE ON splitdb_probe_drop
    BEGIN SELECT 1; END;
INSERT OR IGNORE INTO splitdb_probe (k, v) VALUES (1, 'one');
CREATE TABLE IF NOT EXISTS splitdb_probe_blob (k INTEGER PRIMARY KEY, b BLOB);
INSERT OR IGNORE INTO splitdb_probe_blob (k, b) VALUES (1, zeroblob(8));
"""


@dataclass(frozen=True)
class Attempt:
    """One catalogue attempt: `who` may make it ('owner', 'nobody' or 'everyone').

    `sql` is the statement it runs (`execute`, `function`) or the script (`script`); empty for
    the other calls, which run none.
    """

    name: str
    sql: str
    who: Who
    call: Call = "execute"


def catalogue(*, attach_path: str, copy_path: str) -> tuple[Attempt, ...]:
    """Every catalogue attempt; the two paths are files outside the topology to ATTACH and
    VACUUM INTO (they must not exist afterwards if the attempt was denied)."""
    owner: list[tuple[str, str]] = [
        ("INSERT", "INSERT INTO splitdb_probe (v) VALUES ('x')"),
        ("INSERT OR REPLACE", "INSERT OR REPLACE INTO splitdb_probe (k, v) VALUES (1, 'y')"),
        ("REPLACE", "REPLACE INTO splitdb_probe (k, v) VALUES (1, 'y')"),
        (
            "UPSERT",
            "INSERT INTO splitdb_probe (k, v) VALUES (1, 'z') "
            "ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        ),
        ("INSERT RETURNING", "INSERT INTO splitdb_probe (v) VALUES ('r') RETURNING k"),
        (
            "WITH INSERT",
            "WITH src (v) AS (SELECT 'w') INSERT INTO splitdb_probe (v) SELECT v FROM src",
        ),
        ("UPDATE", "UPDATE splitdb_probe SET v = 'u' WHERE k = 1"),
        ("DELETE", "DELETE FROM splitdb_probe WHERE k = 1"),
        ("CREATE TABLE", "CREATE TABLE splitdb_new (x)"),
        ("CREATE TABLE AS", "CREATE TABLE splitdb_copy AS SELECT * FROM splitdb_probe"),
        ("CREATE INDEX", "CREATE INDEX splitdb_new_index ON splitdb_probe (k, v)"),
        ("CREATE VIEW", "CREATE VIEW splitdb_new_view AS SELECT 1"),
        (
            "CREATE TRIGGER",
            "CREATE TRIGGER splitdb_new_trigger AFTER INSERT ON splitdb_probe BEGIN SELECT 1; END",
        ),
        ("CREATE TEMP TABLE", "CREATE TEMP TABLE splitdb_scratch (x)"),
        ("CREATE TEMP VIEW", "CREATE TEMP VIEW splitdb_probe AS SELECT 2 AS k, 'shadow' AS v"),
        ("DROP TABLE", "DROP TABLE splitdb_probe_drop"),
        ("DROP INDEX", "DROP INDEX splitdb_probe_v"),
        ("DROP VIEW", "DROP VIEW splitdb_probe_view"),
        ("DROP TRIGGER", "DROP TRIGGER splitdb_probe_trigger"),
        ("ALTER TABLE ADD COLUMN", "ALTER TABLE splitdb_probe ADD COLUMN extra TEXT"),
        ("ALTER TABLE RENAME", "ALTER TABLE splitdb_probe_drop RENAME TO splitdb_renamed"),
        ("VACUUM", "VACUUM"),
        ("REINDEX", "REINDEX"),
        ("ANALYZE", "ANALYZE"),
        ("PRAGMA journal_mode", "PRAGMA journal_mode = DELETE"),
        ("PRAGMA user_version", "PRAGMA user_version = 42"),
        ("PRAGMA wal_checkpoint", "PRAGMA wal_checkpoint(TRUNCATE)"),
        ("PRAGMA query_only", "PRAGMA query_only = 0"),
    ]
    owner_calls: list[tuple[str, str, Call]] = [
        ("BACKUP INTO", "", "backup_into"),
        ("BLOB WRITE", "", "blob_write"),
        ("FUNCTION WRITE", "UPDATE splitdb_probe SET v = 'f' WHERE k = 1", "function"),
        ("ITERDUMP REPLAY", _dump_to_replay(), "script"),
    ]
    nobody: list[tuple[str, str]] = [
        ("ATTACH", f"ATTACH DATABASE '{attach_path}' AS splitdb_other"),
        # SQLite gives the authorizer no file name when it is not a literal.
        ("ATTACH expression", f"ATTACH DATABASE '{attach_path}' || '' AS splitdb_other"),
        ("DETACH", "DETACH DATABASE splitdb_other"),
        ("VACUUM INTO", f"VACUUM INTO '{copy_path}'"),
        ("PRAGMA writable_schema", "PRAGMA writable_schema = ON"),
        ("load_extension", "SELECT load_extension('splitdb_no_such_extension')"),
    ]
    nobody_calls: list[tuple[str, Call]] = [
        ("DESERIALIZE", "deserialize"),
        ("SET AUTHORIZER", "set_authorizer"),
        ("enable_load_extension()", "enable_load_extension"),
        ("load_extension()", "load_extension"),
        ("REOPEN", "reopen"),
    ]
    everyone: list[tuple[str, str]] = [
        ("SELECT", "SELECT count(*) FROM splitdb_probe"),
        ("SELECT VIEW", "SELECT * FROM splitdb_probe_view"),
        (
            "WITH RECURSIVE",
            "WITH RECURSIVE c (x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) "
            "SELECT sum(x) FROM c",
        ),
        ("PRAGMA table_info", "PRAGMA table_info(splitdb_probe)"),
        ("PRAGMA user_version read", "PRAGMA user_version"),
        ("PRAGMA journal_mode read", "PRAGMA journal_mode"),
        ("PRAGMA integrity_check", "PRAGMA integrity_check"),
    ]
    everyone_calls: list[tuple[str, Call]] = [
        ("BACKUP OUT", "backup_out"),
        ("BLOB READ", "blob_read"),
        ("SERIALIZE", "serialize"),
        ("ITERDUMP", "iterdump"),
    ]
    return (
        *(Attempt(n, s, "owner") for n, s in owner),
        *(Attempt(n, s, "owner", c) for n, s, c in owner_calls),
        *(Attempt(n, s, "nobody") for n, s in nobody),
        *(Attempt(n, "", "nobody", c) for n, c in nobody_calls),
        *(Attempt(n, s, "everyone") for n, s in everyone),
        *(Attempt(n, "", "everyone", c) for n, c in everyone_calls),
    )


def perform(
    attempt: Attempt, conn: sqlite3.Connection, *, source: sqlite3.Connection | None = None
) -> None:
    """Make `attempt` on `conn`; raises whatever refuses it.

    `source` is what a `backup_into` attempt copies from, required for it: another connection
    the access manager gave the same role (the guard sees a backup through the source's
    `backup`, so a source it did not make is not seen: README, "Security model").
    """
    call = attempt.call
    if call == "execute":
        conn.execute(attempt.sql).fetchall()
    elif call == "script":
        conn.executescript(attempt.sql)
    elif call == "function":
        statement = attempt.sql

        def write() -> int:
            conn.execute(statement)
            return 1

        conn.create_function("splitdb_probe_write", 0, write)
        conn.execute("SELECT splitdb_probe_write()").fetchall()
    elif call == "backup_into":
        if source is None:
            raise ValueError(f"attempt {attempt.name!r} needs a source connection to copy from")
        source.backup(conn)
    elif call == "backup_out":
        conn.backup(sqlite3.connect(":memory:"))
    elif call == "blob_write":
        with conn.blobopen("splitdb_probe_blob", "b", 1, readonly=False) as blob:
            blob.write(b"splitdb!")
    elif call == "blob_read":
        with conn.blobopen("splitdb_probe_blob", "b", 1, readonly=True) as blob:
            blob.read()
    elif call == "deserialize":
        conn.deserialize(_forged_image())
    elif call == "serialize":
        conn.serialize()
    elif call == "iterdump":
        list(conn.iterdump())
    elif call == "set_authorizer":
        conn.set_authorizer(None)
    elif call == "enable_load_extension":
        conn.enable_load_extension(True)
    elif call == "load_extension":
        conn.load_extension("splitdb_no_such_extension")
    else:
        assert call == "reopen"
        (path,) = (row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")
        # Through the connection's class, as a program would: sqlite3.Connection.__init__
        # itself would step around any subclass.
        type(conn).__init__(conn, path)


def _dump_to_replay() -> str:
    """What `iterdump` gives for a small table: BEGIN, CREATE TABLE, INSERT, COMMIT."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.execute("CREATE TABLE splitdb_dumped (k INTEGER PRIMARY KEY, v TEXT)")
        mem.execute("INSERT INTO splitdb_dumped (k, v) VALUES (1, 'dumped')")
        mem.commit()
        return "\n".join(mem.iterdump())
    finally:
        mem.close()


def _forged_image() -> bytes:
    """A serialized database whose probe row is forged: what a deserialize would swap in."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.execute("CREATE TABLE splitdb_probe (k INTEGER PRIMARY KEY, v TEXT)")
        mem.execute("INSERT INTO splitdb_probe (k, v) VALUES (1, 'forged')")
        mem.commit()
        return mem.serialize()
    finally:
        mem.close()


def allowed(attempt: Attempt, *, owner: bool) -> bool:
    """Whether the access manager must let this attempt through for an owner or a reader."""
    return attempt.who == "everyone" or (attempt.who == "owner" and owner)
