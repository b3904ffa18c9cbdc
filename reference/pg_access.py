"""A topology's permission matrix as PostgreSQL's own grants, so the server enforces it for any
client, not only ours (on SQLite the access manager inside each process does, `access.py`).

On one database:

- each logical database is a schema of the same name, owned (with its tables) by the installer:
  no role can alter, drop or truncate a table, create anything in a schema, or grant rights;
- each role is a login role `<prefix><role>` (no superuser, createdb, createrole, replication
  or bypassrls; a password of its own): a writer ('rw') gets USAGE on the schema and SELECT,
  INSERT, UPDATE and DELETE on its tables (and USAGE on their sequences, for identity columns),
  a reader ('ro') USAGE and SELECT, anyone else nothing. Default privileges give tables created
  later in the schema the same grants;
- PUBLIC (every role of the server) loses what PostgreSQL gives it by default in this database:
  CONNECT and TEMPORARY on the database, everything on schema `public`, and EXECUTE on the
  server-side large-object functions that write (`lo_create`, `lowrite`, ...), which would let
  a reader store data outside every schema;
- each role's `search_path` in this database lists the schemas it may read, in the topology's
  order, so the reference processes' unqualified SQL (`SELECT ... FROM ticks`) runs unchanged.

The layout (`separate` or `shared`) does not matter here: every schema is in one database, and
the grants alone say who writes what. Installing again is idempotent and takes back what a
changed topology no longer grants. Roles belong to the server, not to a database: give each
installation on a shared server its own `prefix`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from reference.errors import TopologyError
from reference.pg_schema import TABLES, create_tables
from reference.topology import Topology

DEFAULT_PREFIX = "splitdb_"
# PostgreSQL truncates identifiers past 63 bytes: two roles could silently become one.
IDENTIFIER_MAX = 63
_PREFIX = re.compile(r"^[a-z][a-z0-9_]*$")
# Reserved schema names: pg_* is the system's, and these two exist in every database.
_RESERVED_SCHEMAS = ("public", "information_schema")
WRITER_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
READER_PRIVILEGES = ("SELECT",)
# Server-side large-object functions that create or change data outside any schema. EXECUTE on
# them is PUBLIC's by default; lo_import(text) and lo_export are superuser-only already.
LARGE_OBJECT_WRITERS = (
    "lo_creat(integer)",
    "lo_create(oid)",
    "lo_from_bytea(oid, bytea)",
    "lo_put(oid, bigint, bytea)",
    "lowrite(integer, bytea)",
    "lo_truncate(integer, integer)",
    "lo_truncate64(integer, bigint)",
    "lo_unlink(oid)",
)


@dataclass(frozen=True)
class Login:
    """How one role connects: its login role and password (hidden from `repr`)."""

    role: str
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class PgLayout:
    """A topology installed on a database: its schemas and each role's login."""

    topology: Topology
    dbname: str
    owner: str  # the installer, owner of the schemas and their tables
    logins: Mapping[str, Login]

    def schema_of(self, database: str) -> str:
        """The schema holding a logical database (the same name)."""
        self.topology.mode(self.topology.roles[0], database)  # raises for an unknown one
        return database

    def login(self, role: str) -> Login:
        self.topology.mode(role, next(iter(self.topology.databases)))  # raises for unknown
        return self.logins[role]


def install(
    conn: psycopg.Connection[Any],
    topology: Topology,
    *,
    prefix: str = DEFAULT_PREFIX,
    passwords: Mapping[str, str] | None = None,
) -> PgLayout:
    """Create the topology's schemas, the reference tables, its login roles and its grants on
    the database `conn` is connected to, in one transaction.

    `conn` must be its owner's, or a superuser's (one who may create roles). Each role gets a
    new random password unless `passwords` names one. Raises TopologyError, naming the field,
    for a database or role whose name PostgreSQL cannot take.
    """
    _check_names(topology, prefix)
    passwords = dict(passwords or {})
    logins = {
        role: Login(role, prefix + role, passwords.get(role) or secrets.token_urlsafe(24))
        for role in topology.roles
    }
    with conn.transaction():
        row = conn.execute("SELECT current_database(), current_user").fetchone()
        assert row is not None
        dbname, owner = str(row[0]), str(row[1])
        db, own = sql.Identifier(dbname), sql.Identifier(owner)
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for signature in LARGE_OBJECT_WRITERS:
            conn.execute(sql.SQL(f"REVOKE EXECUTE ON FUNCTION {signature} FROM PUBLIC"))
        for login in logins.values():
            _ensure_login(conn, login)
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, _id(login)))
        for database in topology.databases:
            schema = sql.Identifier(database)
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema, own)
            )
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
            if database in TABLES:
                create_tables(conn, database, database)
            for role, login in logins.items():
                _grant(conn, own, schema, _id(login), topology.grants[role].get(database))
        for role, login in logins.items():
            readable = [db for db in topology.databases if topology.grants[role].get(db)]
            path = sql.SQL(", ").join(map(sql.Identifier, readable)) if readable else sql.SQL("''")
            conn.execute(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
                    _id(login), db, path
                )
            )
    return PgLayout(topology=topology, dbname=dbname, owner=owner, logins=logins)


def _id(login: Login) -> sql.Identifier:
    return sql.Identifier(login.user)


def _ensure_login(conn: psycopg.Connection[Any], login: Login) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login.user,)).fetchone()
    verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
    # NOINHERIT: should someone grant it another role's membership, it still has to SET ROLE
    # (which the grants test sees) rather than silently holding the other's rights.
    conn.execute(
        sql.SQL(
            "{} {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
            "NOINHERIT PASSWORD {}"
        ).format(verb, _id(login), sql.Literal(login.password))
    )


def _grant(
    conn: psycopg.Connection[Any],
    owner: sql.Identifier,
    schema: sql.Identifier,
    grantee: sql.Identifier,
    mode: str | None,
) -> None:
    """Give `grantee` exactly what `mode` grants on `schema`: first take everything back, so a
    changed topology leaves nothing of the old grants."""
    statements = [
        "REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {grantee}",
        "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {grantee}",
        "REVOKE ALL ON SCHEMA {schema} FROM {grantee}",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
        "REVOKE ALL ON TABLES FROM {grantee}",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
        "REVOKE ALL ON SEQUENCES FROM {grantee}",
    ]
    if mode is not None:
        privileges = ", ".join(WRITER_PRIVILEGES if mode == "rw" else READER_PRIVILEGES)
        statements += [
            "GRANT USAGE ON SCHEMA {schema} TO {grantee}",
            f"GRANT {privileges} ON ALL TABLES IN SCHEMA {{schema}} TO {{grantee}}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {{owner}} IN SCHEMA {{schema}} "
            f"GRANT {privileges} ON TABLES TO {{grantee}}",
        ]
        if mode == "rw":
            statements += [
                "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {grantee}",
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
                "GRANT USAGE ON SEQUENCES TO {grantee}",
            ]
    for statement in statements:
        conn.execute(sql.SQL(statement).format(owner=owner, schema=schema, grantee=grantee))


def _check_names(topology: Topology, prefix: str) -> None:
    problems = []
    if not _PREFIX.fullmatch(prefix):
        problems.append(
            f"prefix {prefix!r}: a role prefix must match {_PREFIX.pattern}, such as 'splitdb_'"
        )
    for database in topology.databases:
        if database.startswith("pg_") or database in _RESERVED_SCHEMAS:
            problems.append(
                f"databases.{database}: on PostgreSQL each database is a schema of that name, "
                "and pg_*, public and information_schema are the server's; rename it"
            )
    for role in topology.roles:
        if len(prefix + role) > IDENTIFIER_MAX:
            problems.append(
                f"roles.{role}: its login role {prefix + role!r} is longer than PostgreSQL's "
                f"{IDENTIFIER_MAX} characters; shorten the role or the prefix"
            )
    if problems:
        raise TopologyError(topology.source, problems)
