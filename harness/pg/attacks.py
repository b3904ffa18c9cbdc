"""The attack catalogue against PostgreSQL roles: every way a role's connection could change data
it does not own, or gain the rights to, made as each role on each schema, and the server's
answer counted with its SQLSTATE.

It is the SQLite catalogue's counterpart (`harness/runs/catalogue.py`): each attempt names the
SQLite attempts it stands for (`sqlite`), and `NO_COUNTERPART` says why the rest have none.
Attempts act on probe objects (`probe_setup`, made by the installer, so they carry the schema's
default grants), never on the reference tables, and run in a transaction that is rolled back,
so allowed attempts really execute and leave nothing. Two kinds run in autocommit: statements
PostgreSQL refuses inside a transaction block (VACUUM, CREATE DATABASE, ...), which would
otherwise fail for that reason rather than a permission; and statements the server answers
with a warning and no error when the role lacks the right (GRANT or REVOKE without the grant
option, VACUUM or ANALYZE of a table the role does not own). For the latter an `effect` query,
run by the installer before and after, shows nothing changed: their denial is a fact, not a
message.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from harness.pg.server import PgServer
from reference.pg_access import PgLayout, install
from reference.topology import Topology

Who = Literal["owner", "reader", "nobody"]
# How an attempt is made: `execute` its statement; `copy_in`/`copy_out` through the COPY
# protocol (a client's bulk load or dump); `connect` as another role with our own password.
Call = Literal["execute", "copy_in", "copy_out", "connect"]
INSUFFICIENT_PRIVILEGE = "42501"
PROBE = "splitdb_probe"


def probe_setup(schema: str) -> sql.Composed:
    """The probe objects of `schema`, run by the installer (their owner)."""
    text = """
    CREATE TABLE IF NOT EXISTS {s}.splitdb_probe (k bigint PRIMARY KEY, v text);
    CREATE TABLE IF NOT EXISTS {s}.splitdb_probe_drop (x bigint);
    INSERT INTO {s}.splitdb_probe (k, v) VALUES (1, 'one') ON CONFLICT DO NOTHING;
    """
    return sql.SQL(text).format(s=sql.Identifier(schema))


@dataclass(frozen=True)
class PgAttempt:
    """One attempt. `who`: the least a role needs for it to be allowed ('reader': any grant on
    the schema; 'owner': 'rw'; 'nobody': no role of a topology, whatever it grants).

    `sql` is a template: {schema}, {probe} (the schema's probe table, qualified), {drop} (a
    second probe table), {self}, {other} (another role's login; the installer's when the
    topology has one role), {owner} (the installer), {db} (the database), {pid} (the backend of
    a connection of {other}'s). `effect`, for a statement the server may complete with a
    warning, is a query run by the installer before and after: equal results, nothing changed.
    """

    name: str
    sql: str
    who: Who
    sqlite: tuple[str, ...] = ()
    call: Call = "execute"
    autocommit: bool = False
    effect: str = ""


def catalogue() -> tuple[PgAttempt, ...]:
    """Every attempt, readers' first, then owners', then those nobody may make."""
    a = PgAttempt
    return (
        # --- reads: any role with a grant on the schema -------------------------------------
        a("SELECT", "SELECT count(*) FROM {probe}", "reader", ("SELECT", "SELECT VIEW")),
        a(
            "WITH RECURSIVE",
            "WITH RECURSIVE c (x) AS (SELECT k FROM {probe} UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 5) SELECT sum(x) FROM c",
            "reader",
            ("WITH RECURSIVE",),
        ),
        a(
            "COPY TO STDOUT",
            "COPY {probe} TO STDOUT",
            "reader",
            ("BACKUP OUT", "SERIALIZE", "ITERDUMP", "BLOB READ"),
            call="copy_out",
        ),
        # --- row writes: the schema's writer ------------------------------------------------
        a("INSERT", "INSERT INTO {probe} (k, v) VALUES (100, 'x')", "owner", ("INSERT",)),
        a(
            "UPSERT",
            "INSERT INTO {probe} (k, v) VALUES (1, 'z') ON CONFLICT (k) DO UPDATE "
            "SET v = excluded.v",
            "owner",
            ("UPSERT", "INSERT OR REPLACE", "REPLACE"),
        ),
        a(
            "INSERT RETURNING",
            "INSERT INTO {probe} (k, v) VALUES (101, 'r') RETURNING k",
            "owner",
            ("INSERT RETURNING",),
        ),
        a(
            "WITH INSERT",
            "WITH src (k, v) AS (SELECT 102, 'w') INSERT INTO {probe} SELECT k, v FROM src",
            "owner",
            ("WITH INSERT",),
        ),
        a("UPDATE", "UPDATE {probe} SET v = 'u' WHERE k = 1", "owner", ("UPDATE",)),
        a("DELETE", "DELETE FROM {probe} WHERE k = 1", "owner", ("DELETE",)),
        a(
            "MERGE",
            "MERGE INTO {probe} t USING (SELECT 1 AS k) s ON t.k = s.k "
            "WHEN MATCHED THEN UPDATE SET v = 'm'",
            "owner",
        ),
        a("COPY FROM STDIN", "COPY {probe} (k, v) FROM STDIN", "owner", call="copy_in"),
        a(
            "WRITE INSIDE DO",
            "DO $$ BEGIN INSERT INTO {probe} (k, v) VALUES (103, 'do'); END $$",
            "owner",
            ("FUNCTION WRITE",),
        ),
        # Row and table locks block the writer as surely as a write: they need write rights.
        a("SELECT FOR UPDATE", "SELECT * FROM {probe} FOR UPDATE", "owner"),
        a("LOCK TABLE EXCLUSIVE", "LOCK TABLE {probe} IN ACCESS EXCLUSIVE MODE", "owner"),
        # --- schema changes: the installer's alone -----------------------------------------
        a("CREATE TABLE", "CREATE TABLE {schema}.splitdb_new (x int)", "nobody", ("CREATE TABLE",)),
        a(
            "CREATE TABLE AS",
            "CREATE TABLE {schema}.splitdb_copy AS SELECT * FROM {probe}",
            "nobody",
            ("CREATE TABLE AS",),
        ),
        a("SELECT INTO", "SELECT * INTO {schema}.splitdb_into FROM {probe}", "nobody"),
        a(
            "CREATE INDEX",
            "CREATE INDEX splitdb_new_index ON {probe} (v)",
            "nobody",
            ("CREATE INDEX",),
        ),
        a(
            "CREATE VIEW",
            "CREATE VIEW {schema}.splitdb_new_view AS SELECT 1 AS one",
            "nobody",
            ("CREATE VIEW",),
        ),
        a(
            "CREATE TRIGGER",
            "CREATE TRIGGER splitdb_new_trigger BEFORE UPDATE ON {probe} FOR EACH ROW "
            "EXECUTE FUNCTION suppress_redundant_updates_trigger()",
            "nobody",
            ("CREATE TRIGGER",),
        ),
        a(
            "CREATE RULE",
            "CREATE RULE splitdb_new_rule AS ON INSERT TO {probe} DO INSTEAD NOTHING",
            "nobody",
        ),
        a(
            "CREATE FUNCTION",
            "CREATE FUNCTION {schema}.splitdb_f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "nobody",
        ),
        a("CREATE SEQUENCE", "CREATE SEQUENCE {schema}.splitdb_seq", "nobody"),
        a(
            "CREATE TEMP TABLE",
            "CREATE TEMP TABLE splitdb_scratch (x int)",
            "nobody",
            ("CREATE TEMP TABLE",),
        ),
        # A temporary view or function of the same name would shadow the real one for this
        # session only; still, no role needs a temporary schema, so none gets one.
        a(
            "CREATE TEMP VIEW",
            "CREATE TEMP VIEW splitdb_probe AS SELECT 2 AS k, 'shadow' AS v",
            "nobody",
            ("CREATE TEMP VIEW",),
        ),
        a(
            "SCRIPT REPLAY",
            "CREATE TABLE {schema}.splitdb_dumped (k bigint PRIMARY KEY, v text); "
            "INSERT INTO {schema}.splitdb_dumped VALUES (1, 'dumped')",
            "nobody",
            ("ITERDUMP REPLAY",),
        ),
        a("DROP TABLE", "DROP TABLE {drop}", "nobody", ("DROP TABLE", "DROP VIEW", "DROP TRIGGER")),
        a("DROP INDEX", "DROP INDEX {schema}.splitdb_probe_pkey", "nobody", ("DROP INDEX",)),
        a("DROP SCHEMA", "DROP SCHEMA {schema} CASCADE", "nobody"),
        a(
            "ALTER TABLE ADD COLUMN",
            "ALTER TABLE {probe} ADD COLUMN extra text",
            "nobody",
            ("ALTER TABLE ADD COLUMN",),
        ),
        a(
            "ALTER TABLE RENAME",
            "ALTER TABLE {drop} RENAME TO splitdb_renamed",
            "nobody",
            ("ALTER TABLE RENAME",),
        ),
        a("ALTER TABLE OWNER", "ALTER TABLE {probe} OWNER TO {self}", "nobody"),
        a("ALTER TABLE ENABLE RLS", "ALTER TABLE {probe} ENABLE ROW LEVEL SECURITY", "nobody"),
        a("TRUNCATE", "TRUNCATE {probe}", "nobody"),
        a(
            "COMMENT ON TABLE",
            "COMMENT ON TABLE {probe} IS 'mine'",
            "nobody",
            ("PRAGMA user_version",),
        ),
        a("REINDEX", "REINDEX TABLE {probe}", "nobody", ("REINDEX",)),
        a("CLUSTER", "CLUSTER {probe} USING splitdb_probe_pkey", "nobody"),
        a(
            "VACUUM FULL",
            "VACUUM FULL {probe}",
            "nobody",
            ("VACUUM",),
            autocommit=True,
            effect="SELECT relfilenode FROM pg_class WHERE oid = '{probe}'::regclass",
        ),
        a(
            "ANALYZE",
            "ANALYZE {probe}",
            "nobody",
            ("ANALYZE",),
            autocommit=True,
            effect="SELECT count(*) FROM pg_statistic WHERE starelid = '{probe}'::regclass",
        ),
        # --- rights: nobody grants, takes or borrows them -----------------------------------
        a(
            "GRANT TO SELF",
            "GRANT TRUNCATE, TRIGGER ON {probe} TO {self}",
            "nobody",
            autocommit=True,
            effect="SELECT has_table_privilege('{self}', '{probe}', 'TRUNCATE, TRIGGER')",
        ),
        a(
            "GRANT SCHEMA CREATE",
            "GRANT CREATE ON SCHEMA {schema} TO {self}",
            "nobody",
            autocommit=True,
            effect="SELECT has_schema_privilege('{self}', '{schema}', 'CREATE')",
        ),
        a(
            "REVOKE FROM OTHER",
            "REVOKE ALL ON {probe} FROM {other}",
            "nobody",
            autocommit=True,
            effect="SELECT array_agg(p ORDER BY p) FROM unnest(ARRAY['SELECT', 'INSERT', "
            "'UPDATE', 'DELETE']) p WHERE has_table_privilege('{other}', '{probe}', p)",
        ),
        a("GRANT ROLE TO SELF", "GRANT {other} TO {self}", "nobody"),
        a(
            "DEFAULT PRIVILEGES",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
            "GRANT ALL ON TABLES TO {self}",
            "nobody",
        ),
        a("SET ROLE", "SET ROLE {other}", "nobody", ("SET AUTHORIZER",)),
        a("SET ROLE INSTALLER", "SET ROLE {owner}", "nobody"),
        a("SET SESSION AUTHORIZATION", "SET SESSION AUTHORIZATION {owner}", "nobody"),
        a("CONNECT AS OTHER", "", "nobody", ("REOPEN",), call="connect"),
        a("ALTER ROLE SUPERUSER", "ALTER ROLE {self} SUPERUSER", "nobody"),
        a("ALTER ROLE OTHER PASSWORD", "ALTER ROLE {other} PASSWORD 'taken'", "nobody"),
        a("CREATE ROLE", "CREATE ROLE splitdb_new_role LOGIN", "nobody"),
        a("CREATE SCHEMA", "CREATE SCHEMA splitdb_new_schema", "nobody"),
        a("CREATE DATABASE", "CREATE DATABASE splitdb_new_db", "nobody", autocommit=True),
        # --- the server's files, settings, catalogues and other sessions --------------------
        a("COPY FROM FILE", "COPY {probe} (v) FROM '/etc/hostname'", "nobody", ("BACKUP INTO",)),
        a("COPY TO FILE", "COPY {probe} TO '/tmp/splitdb_copy_out'", "nobody", ("VACUUM INTO",)),
        a("COPY TO PROGRAM", "COPY {probe} TO PROGRAM 'cat >/dev/null'", "nobody"),
        a("pg_read_file", "SELECT pg_read_file('/etc/hostname')", "nobody"),
        a("lo_import (server)", "SELECT lo_import('/etc/hostname')", "nobody"),
        a("lo_from_bytea", "SELECT lo_from_bytea(0, 'splitdb!')", "nobody", ("BLOB WRITE",)),
        a("lo_create", "SELECT lo_create(0)", "nobody"),
        a(
            "CREATE EXTENSION (untrusted)",
            "CREATE EXTENSION postgres_fdw SCHEMA {schema}",
            "nobody",
            ("ATTACH", "ATTACH expression", "DETACH"),
        ),
        a("CREATE EXTENSION (trusted)", "CREATE EXTENSION hstore SCHEMA {schema}", "nobody"),
        a(
            "LOAD LIBRARY",
            "LOAD '/usr/lib/x86_64-linux-gnu/libm.so.6'",
            "nobody",
            ("load_extension", "enable_load_extension()", "load_extension()"),
        ),
        a(
            "CATALOGUE WRITE",
            "UPDATE pg_catalog.pg_class SET relname = 'splitdb_x' WHERE oid = '{probe}'::regclass",
            "nobody",
            ("PRAGMA writable_schema",),
        ),
        a(
            "ALTER SYSTEM",
            "ALTER SYSTEM SET fsync = off",
            "nobody",
            ("PRAGMA journal_mode",),
            autocommit=True,
        ),
        a("SET REPLICA ROLE", "SET session_replication_role = replica", "nobody"),
        a("CHECKPOINT", "CHECKPOINT", "nobody", ("PRAGMA wal_checkpoint",)),
        a("TERMINATE OTHER", "SELECT pg_terminate_backend({pid})", "nobody"),
        a("CANCEL OTHER", "SELECT pg_cancel_backend({pid})", "nobody"),
        a("CREATE PUBLICATION", "CREATE PUBLICATION splitdb_pub FOR TABLE {probe}", "nobody"),
    )


# SQLite attempts with no PostgreSQL counterpart, and why.
NO_COUNTERPART: dict[str, str] = {
    "DESERIALIZE": "a client cannot swap in a database image: the server's files are its own",
    "PRAGMA query_only": (
        "read-only is the grants, not a session flag a client could turn off; "
        "`SET default_transaction_read_only = off` changes nothing a role may do"
    ),
    "PRAGMA user_version read": "a read of the file header; the server has no per-file header",
    "PRAGMA journal_mode read": "the journal (WAL) is the server's setting, read with SHOW",
    "PRAGMA table_info": "a read of the schema: information_schema shows each role its own",
    "PRAGMA integrity_check": (
        "a read of the file; the server's counterpart (amcheck) is an extension the "
        "installer may grant"
    ),
}


def allowed(attempt: PgAttempt, mode: str | None) -> bool:
    """Whether a role with `mode` ('rw', 'ro', None) on the schema may make the attempt."""
    if attempt.who == "reader":
        return mode is not None
    return attempt.who == "owner" and mode == "rw"


@dataclass(frozen=True)
class Outcome:
    """What the server did with one attempt by one role on one schema.

    `result`: 'done' (it executed), 'refused' (an error: `sqlstate`, `message`), or 'no effect'
    (completed with a warning, its `sqlstate` and `message`, and the effect query saw nothing
    change).
    """

    role: str
    database: str
    attempt: str
    expected: Literal["allowed", "denied"]
    result: Literal["done", "refused", "no effect"]
    sqlstate: str | None
    message: str

    @property
    def held(self) -> bool:
        """The server did what the topology says: allowed ones done, the others not."""
        return (self.result == "done") == (self.expected == "allowed")


def run_catalogue(
    server: PgServer, layout: PgLayout, *, attempts: Sequence[PgAttempt] | None = None
) -> list[Outcome]:
    """Make every attempt as every role of `layout` on every schema; the server's answers.

    Creates the probe objects first (as the installer). Roles with no grant on a schema try it
    too: everything must be refused them.
    """
    topology = layout.topology
    chosen = catalogue() if attempts is None else tuple(attempts)
    make_probes(server, layout)
    found: list[Outcome] = []
    with server.connect(dbname=layout.dbname) as admin:
        for role in topology.roles:
            others = [r for r in topology.roles if r != role]
            for database in topology.databases:
                with (
                    victim(server, layout, others[0] if others else None) as pid,
                    connect_as(server, layout, role) as conn,
                ):
                    names = attempt_names(layout, role, database, victim_pid=pid)
                    for attempt in chosen:
                        made = make_attempt(
                            attempt, conn, admin, server, layout, role, database, names
                        )
                        found.append(made)
    return found


def attempt_names(layout: PgLayout, role: str, database: str, *, victim_pid: int) -> dict[str, str]:
    """What the catalogue's statements name, for `role`'s attempts on `database`'s schema:
    the probe objects, the role itself, another role (the installer when there is none), the
    installer, the database, and the pid of another role's session to end or cancel."""
    others = [r for r in layout.topology.roles if r != role]
    other_user = layout.login(others[0]).user if others else layout.owner
    return {
        "schema": _ident(database),
        "probe": f"{_ident(database)}.{PROBE}",
        "drop": f"{_ident(database)}.splitdb_probe_drop",
        "self": _ident(layout.login(role).user),
        "other": _ident(other_user),
        "owner": _ident(layout.owner),
        "db": _ident(layout.dbname),
        "pid": str(victim_pid),
    }


def make_probes(server: PgServer, layout: PgLayout) -> None:
    """The probe objects on every schema, made by the installer (so they carry the schema's
    default grants): what the attempts act on, never the reference tables."""
    with server.connect(dbname=layout.dbname) as admin:
        for database in layout.topology.databases:
            admin.execute(probe_setup(layout.schema_of(database)))


def _ident(name: str) -> str:
    # Topology names match ^[a-z][a-z0-9_]*$, and login prefixes too: bare identifiers, so the
    # same text works in SQL and inside the quoted arguments of has_table_privilege().
    return name


@contextlib.contextmanager
def victim(server: PgServer, layout: PgLayout, role: str | None) -> Iterator[int]:
    """A live session of another role (the installer's when there is none), for the attempts
    that would end or cancel it; its backend pid."""
    if role is None:
        conn = server.connect(dbname=layout.dbname)
    else:
        conn = connect_as(server, layout, role, autocommit=True)
    with conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        yield int(row[0])


def connect_as(
    server: PgServer, layout: PgLayout, role: str, *, autocommit: bool = False
) -> psycopg.Connection[Any]:
    """A connection as `role`'s login (not autocommit unless told: attempts are rolled back)."""
    login = layout.login(role)
    return server.connect(
        user=login.user, password=login.password, dbname=layout.dbname, autocommit=autocommit
    )


def make_attempt(
    attempt: PgAttempt,
    conn: psycopg.Connection[Any],
    admin: psycopg.Connection[Any],
    server: PgServer,
    layout: PgLayout,
    role: str,
    database: str,
    names: dict[str, str],
) -> Outcome:
    """Make one attempt as `role` (on `conn`, its login's) on `database`'s schema, rolled back;
    `admin` (the installer's) runs the effect query before and after. The server's answer."""
    mode = layout.topology.mode(role, database)
    statement = attempt.sql.format(**names)
    effect = attempt.effect.format(**names)
    before = admin.execute(effect).fetchall() if effect else None
    warnings: list[tuple[str | None, str]] = []

    def keep(notice: psycopg.errors.Diagnostic) -> None:
        if notice.severity_nonlocalized == "WARNING":
            warnings.append((notice.sqlstate, notice.message_primary or ""))

    conn.add_notice_handler(keep)
    conn.autocommit = attempt.autocommit
    try:
        _perform(attempt, statement, conn, server, layout, role)
        result: Literal["done", "refused", "no effect"] = "done"
        sqlstate: str | None = None
        message = ""
    except psycopg.Error as exc:
        result, sqlstate = "refused", exc.sqlstate
        message = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
        if attempt.call == "connect" and "password authentication failed" in str(exc):
            # libpq gives a refused connection no SQLSTATE; the server's FATAL is 28P01.
            sqlstate = "28P01"
            message = str(exc).strip().splitlines()[-1].split("FATAL:", 1)[-1].strip()
    finally:
        conn.remove_notice_handler(keep)
        if not conn.closed:
            conn.rollback()
            conn.autocommit = False
    if result == "done" and before is not None and warnings:
        after = admin.execute(effect).fetchall()
        if after == before:
            result, (sqlstate, message) = "no effect", warnings[0]
    expected: Literal["allowed", "denied"] = "allowed" if allowed(attempt, mode) else "denied"
    return Outcome(role, database, attempt.name, expected, result, sqlstate, message)


def _perform(
    attempt: PgAttempt,
    statement: str,
    conn: psycopg.Connection[Any],
    server: PgServer,
    layout: PgLayout,
    role: str,
) -> None:
    call = attempt.call
    if call == "execute":
        conn.execute(statement.encode())  # bytes: a literal statement, no parameters parsed
    elif call == "copy_in":
        with conn.cursor() as cur, cur.copy(statement.encode()) as copy:
            copy.write_row((104, "copied"))
    elif call == "copy_out":
        with conn.cursor() as cur, cur.copy(statement.encode()) as copy:
            for _ in copy:
                pass
    else:
        assert call == "connect"
        # Every other login of the topology (and the installer), with this role's password:
        # a role knows its own secret only.
        own = layout.login(role).password
        users = [layout.login(r).user for r in layout.topology.roles if r != role]
        for user in [*users, layout.owner]:
            server.connect(user=user, password=own, dbname=layout.dbname).close()


def summary(outcomes: Sequence[Outcome]) -> str:
    """Counts per result and SQLSTATE, and every attempt the server did not hold, one a line."""
    denied = [o for o in outcomes if o.expected == "denied"]
    allowed_ = [o for o in outcomes if o.expected == "allowed"]
    by_state: dict[str, int] = {}
    for o in denied:
        key = f"{o.sqlstate}" if o.result == "refused" else f"{o.sqlstate} no effect"
        by_state[key] = by_state.get(key, 0) + 1
    states = ", ".join(f"{k} x{v}" for k, v in sorted(by_state.items()))
    lines = [
        f"{len(denied)} forbidden attempts: "
        f"{sum(o.held for o in denied)} denied by the server ({states}); "
        f"{len(allowed_)} allowed attempts: {sum(o.held for o in allowed_)} done"
    ]
    for o in outcomes:
        if not o.held:
            got = o.result if o.result != "refused" else f"refused {o.sqlstate}: {o.message}"
            lines.append(f"  NOT HELD {o.role} on {o.database}: {o.attempt} ({o.expected}; {got})")
    return "\n".join(lines)


def attack_topology(server: PgServer, topology: Topology) -> list[Outcome]:
    """Install `topology` on a new database of `server` (its roles under a new prefix), run the
    catalogue against it, then drop the database and the roles: on a server the user named,
    nothing of ours is left."""
    tag = secrets.token_hex(4)
    dbname = f"splitdb_attacks_{tag}"
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    layout: PgLayout | None = None
    try:
        with server.connect(dbname=dbname, autocommit=False) as conn:
            layout = install(conn, topology, prefix=f"attack_{tag}_")
        return run_catalogue(server, layout)
    finally:
        with server.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
            for login in layout.logins.values() if layout is not None else ():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login.user)))


def table(outcomes: Sequence[Outcome]) -> str:
    """One line per attempt: who may make it, and what the server did across roles and schemas
    (counts per result and SQLSTATE)."""
    attempts = {a.name: a for a in catalogue()}
    rows: dict[str, Counter[str]] = {}
    for o in outcomes:
        key = "done" if o.result == "done" else f"{o.result} {o.sqlstate}"
        rows.setdefault(o.attempt, Counter())[key] += 1
    width = max(len(name) for name in rows)
    lines = []
    for name, counts in rows.items():
        who = attempts[name].who if name in attempts else "?"
        said = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
        lines.append(f"  {name:<{width}}  {who:<6}  {said}")
    return "\n".join(lines)
