"""The topology's permission matrix as PostgreSQL grants: the server itself allows exactly what
the topology grants, to any client, and refuses the rest with insufficient_privilege (42501)."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.pg.server import PgServer
from reference.errors import TopologyError
from reference.pg_access import install
from reference.pg_schema import TABLES, Table
from reference.schema import ensure_schema
from reference.topology import Topology, load_topology, parse_topology
from tests.pg_helpers import INSUFFICIENT_PRIVILEGE, Installed, install_fresh, outcome

pytestmark = pytest.mark.slow

OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE")
_SAMPLE = {"bigint": "1", "double precision": "1.5", "text": "'x'"}


def statement(operation: str, schema: str, table: Table) -> str:
    """One statement of `operation` on `schema.table` that really reads or writes a row."""
    name = f'"{schema}"."{table.name}"'
    columns = [c for c in table.columns if not c.identity]
    if operation == "SELECT":
        return f"SELECT count(*) FROM {name}"
    if operation == "INSERT":
        values = ", ".join(_SAMPLE[c.type] for c in columns)
        return f"INSERT INTO {name} ({', '.join(c.name for c in columns)}) VALUES ({values})"
    if operation == "UPDATE":
        return f'UPDATE {name} SET "{columns[-1].name}" = "{columns[-1].name}"'
    assert operation == "DELETE"
    return f"DELETE FROM {name}"


def expected(mode: str | None, operation: str) -> str:
    allowed = mode == "rw" or (mode == "ro" and operation == "SELECT")
    return "ok" if allowed else INSUFFICIENT_PRIVILEGE


@pytest.fixture(scope="module")
def seed(pg_server: PgServer) -> Installed:
    return install_fresh(pg_server, load_topology("seed"))


SEED = load_topology("seed")


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("database", list(SEED.databases))
@pytest.mark.parametrize("role", SEED.roles)
def test_the_server_enforces_the_seed_matrix(
    seed: Installed, role: str, database: str, operation: str
) -> None:
    mode = SEED.mode(role, database)
    with seed.connect(role) as conn:
        for table in TABLES[database]:
            got = outcome(conn, statement(operation, database, table))
            assert got == expected(mode, operation), (role, mode, f"{database}.{table.name}")


def test_every_role_writes_everything_in_the_legacy_layout(pg_server: PgServer) -> None:
    legacy = install_fresh(pg_server, load_topology("legacy"))
    for role in legacy.layout.topology.roles:
        with legacy.connect(role) as conn:
            for database, tables in TABLES.items():
                for table in tables:
                    for operation in OPERATIONS:
                        assert outcome(conn, statement(operation, database, table)) == "ok"


def test_unqualified_names_reach_the_tables_as_on_sqlite(seed: Installed) -> None:
    with seed.connect("api", autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO request_log (ts_ns, method, path, status, duration_us) "
            "VALUES (1, 'GET', '/symbols', 200, 35) RETURNING id"
        ).fetchone()
        assert row is not None and int(row[0]) >= 1  # the identity column numbers it
        assert conn.execute("SELECT count(*) FROM ticks").fetchone() == (0,)
        conn.execute("DELETE FROM request_log")


_SQLITE_TYPES = {"INTEGER": "bigint", "REAL": "double precision", "TEXT": "text"}


@pytest.mark.parametrize("database", list(TABLES))
def test_the_tables_are_the_sqlite_ones_in_postgres_types(seed: Installed, database: str) -> None:
    lite = sqlite3.connect(":memory:", isolation_level=None)
    ensure_schema(lite, database)
    with seed.admin() as conn:
        for table in TABLES[database]:
            info = lite.execute(f"PRAGMA table_info({table.name})").fetchall()
            # SQLite's rowid alias (request_log.id) is not declared NOT NULL but cannot be null.
            want = [(r[1], _SQLITE_TYPES[r[2]], bool(r[3]) or r[5] > 0) for r in info]
            pk_want = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
            got = conn.execute(
                "SELECT column_name, data_type, is_nullable = 'NO' FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (database, table.name),
            ).fetchall()
            pk_got = conn.execute(
                "SELECT a.attname FROM pg_index i "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = %s::regclass AND i.indisprimary "
                "ORDER BY array_position(i.indkey, a.attnum)",
                (f"{database}.{table.name}",),
            ).fetchall()
            assert got == want, table.name
            assert [r[0] for r in pk_got] == pk_want, table.name


def test_installing_again_takes_back_what_the_topology_no_longer_grants(
    pg_server: PgServer,
) -> None:
    installed = install_fresh(pg_server, load_topology("legacy"))
    seed_now = load_topology("seed")
    passwords = {r: login.password for r, login in installed.layout.logins.items()}
    prefix = installed.layout.logins["bot"].user.removesuffix("bot")
    with installed.admin(autocommit=False) as conn:
        install(conn, seed_now, prefix=prefix, passwords=passwords)
    with installed.connect("api") as conn:
        ticks = TABLES["ticks"][0]
        assert outcome(conn, statement("INSERT", "ticks", ticks)) == INSUFFICIENT_PRIVILEGE
        assert outcome(conn, statement("SELECT", "ticks", ticks)) == "ok"


def test_names_postgres_cannot_take_are_refused_naming_the_field(pg_server: PgServer) -> None:
    raw = SEED.to_mapping()
    raw["databases"]["pg_ticks"] = raw["databases"].pop("ticks")
    for grants in raw["roles"].values():
        grants["pg_ticks"] = grants.pop("ticks")
    with pg_server.connect(autocommit=False) as conn, pytest.raises(TopologyError) as caught:
        install(conn, parse_topology(raw), prefix="x" * 60)
    message = str(caught.value)
    assert "databases.pg_ticks: on PostgreSQL each database is a schema" in message
    assert "roles.agent: its login role 'xxxx" in message
    assert "roles.bot:" not in message  # 63 characters fit


# --- any topology -----------------------------------------------------------------------------

_ROLES = ("alpha", "beta", "gamma")
_DATABASES = ("one", "two", "three")


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    roles = draw(st.lists(st.sampled_from(_ROLES), min_size=1, max_size=3, unique=True))
    databases = draw(st.lists(st.sampled_from(_DATABASES), min_size=1, max_size=3, unique=True))
    grants: dict[str, dict[str, str]] = {role: {} for role in roles}
    for database in databases:
        for role in roles:
            mode = draw(st.sampled_from(("rw", "ro", None)))
            if mode is not None:
                grants[role][database] = mode
        if not any(g.get(database) == "rw" for g in grants.values()):
            grants[draw(st.sampled_from(roles))][database] = "rw"
    shared = any(sum(g.get(db) == "rw" for g in grants.values()) > 1 for db in databases)
    return parse_topology(
        {
            "layout": "shared" if shared else "separate",
            "databases": {db: {"path": f"{db}.db"} for db in databases},
            "roles": grants,
        },
        roles=None,
    )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(topology=topologies())
def test_the_server_enforces_any_topologys_matrix(pg_server: PgServer, topology: Topology) -> None:
    installed = install_fresh(pg_server, topology)
    # A table made after the installation: the default privileges must cover it as well.
    probe = Table("probe", TABLES["ticks"][0].columns[:3], ("symbol",))
    with installed.admin() as conn:
        for database in topology.databases:
            conn.execute(probe.ddl(database))
    for role in topology.roles:
        with installed.connect(role) as conn:
            for database in topology.databases:
                mode = topology.mode(role, database)
                for operation in OPERATIONS:
                    got = outcome(conn, statement(operation, database, probe))
                    assert got == expected(mode, operation), (role, database, mode, operation)
