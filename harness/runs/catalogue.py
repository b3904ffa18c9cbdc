"""The catalogue of statements that try every way to change a database, and who may run each.

Tests run it for every role x database to prove the access matrix; the harness's violator load runs
it from a role to prove no forbidden attempt succeeds in a live system. Statements act on probe
objects (`PROBE_SETUP`) that an owner creates, so a DROP finds something to drop and an allowed
statement really executes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Who = Literal["owner", "nobody", "everyone"]

PROBE_SETUP = """
CREATE TABLE IF NOT EXISTS splitdb_probe (k INTEGER PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS splitdb_probe_drop (x);
CREATE INDEX IF NOT EXISTS splitdb_probe_v ON splitdb_probe (v);
CREATE VIEW IF NOT EXISTS splitdb_probe_view AS SELECT k, v FROM splitdb_probe;
CREATE TRIGGER IF NOT EXISTS splitdb_probe_trigger AFTER DELETE ON splitdb_probe_drop
    BEGIN SELECT 1; END;
INSERT OR IGNORE INTO splitdb_probe (k, v) VALUES (1, 'one');
"""


@dataclass(frozen=True)
class Attempt:
    """One catalogue statement: `who` may run it ('owner', 'nobody' or 'everyone')."""

    name: str
    sql: str
    who: Who


def catalogue(*, attach_path: str, copy_path: str) -> tuple[Attempt, ...]:
    """Every catalogue statement; the two paths are files outside the topology to ATTACH and
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
    nobody: list[tuple[str, str]] = [
        ("ATTACH", f"ATTACH DATABASE '{attach_path}' AS splitdb_other"),
        ("DETACH", "DETACH DATABASE splitdb_other"),
        ("VACUUM INTO", f"VACUUM INTO '{copy_path}'"),
        ("PRAGMA writable_schema", "PRAGMA writable_schema = ON"),
        ("load_extension", "SELECT load_extension('splitdb_no_such_extension')"),
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
    return (
        *(Attempt(n, s, "owner") for n, s in owner),
        *(Attempt(n, s, "nobody") for n, s in nobody),
        *(Attempt(n, s, "everyone") for n, s in everyone),
    )


def allowed(attempt: Attempt, *, owner: bool) -> bool:
    """Whether the access manager must let this attempt through for an owner or a reader."""
    return attempt.who == "everyone" or (attempt.who == "owner" and owner)
