"""Shared by the PostgreSQL tests: a fresh database with a topology installed, and statements
run as a role."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from harness.pg.server import PgServer
from reference.pg_access import PgLayout, install
from reference.topology import Topology

INSUFFICIENT_PRIVILEGE = "42501"


@dataclass(frozen=True)
class Installed:
    server: PgServer
    layout: PgLayout

    def connect(self, role: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        login = self.layout.login(role)
        return self.server.connect(
            user=login.user,
            password=login.password,
            dbname=self.layout.dbname,
            autocommit=autocommit,
        )

    def conninfo(self, role: str) -> str:
        """`role`'s connection string: its login role and password, never the admin's."""
        login = self.layout.login(role)
        return self.server.conninfo(
            user=login.user, password=login.password, dbname=self.layout.dbname
        )

    def admin(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        return self.server.connect(dbname=self.layout.dbname, autocommit=autocommit)

    def query(self, sql: str, parameters: Any = ()) -> list[tuple[Any, ...]]:
        """`sql`'s rows, run as the installer with every database's schema on the search path
        (unqualified table names, as the roles write them)."""
        with self.admin() as conn:
            conn.execute(f"SET search_path = {', '.join(self.layout.topology.databases)}")
            return [tuple(row) for row in conn.execute(sql, parameters).fetchall()]


def install_fresh(server: PgServer, topology: Topology) -> Installed:
    """`topology` installed on a new database of `server`, its roles under a new prefix (roles
    are the server's: two installations must not share them)."""
    tag = secrets.token_hex(4)
    with server.connect() as conn:
        conn.execute(f"CREATE DATABASE splitdb_{tag}")
    with server.connect(dbname=f"splitdb_{tag}", autocommit=False) as conn:
        layout = install(conn, topology, prefix=f"t{tag}_")
    return Installed(server, layout)


def outcome(conn: psycopg.Connection[Any], statement: str) -> str:
    """'ok', or the SQLSTATE the server refused `statement` with; the transaction is rolled
    back either way, so statements never see each other's effects."""
    try:
        conn.execute(statement)
        return "ok"
    except psycopg.Error as exc:
        return exc.sqlstate or type(exc).__name__
    finally:
        conn.rollback()
