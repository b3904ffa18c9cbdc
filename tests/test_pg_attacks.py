"""The attack catalogue against PostgreSQL roles: every forbidden attempt, as every role on every
schema, is denied by the server itself (counted, with its SQLSTATE); every allowed one goes
through."""

from __future__ import annotations

import pytest

from harness.pg.attacks import catalogue, run_catalogue, summary
from harness.pg.server import PgServer
from reference.topology import load_topology, parse_topology
from tests.pg_helpers import install_fresh

# The server's answers to a forbidden attempt: an error, insufficient_privilege (or, for a
# login with another role's name, invalid_password); or a warning and no effect: GRANT without
# the grant option (01007), REVOKE likewise (01006), VACUUM or ANALYZE of a table the role does
# not own (01000).
REFUSALS = {"42501", "28P01"}
NO_EFFECT_WARNINGS = {"01000", "01006", "01007"}


def _denied_by_the_server(outcome_result: str, sqlstate: str | None) -> bool:
    if outcome_result == "refused":
        return sqlstate in REFUSALS
    return outcome_result == "no effect" and sqlstate in NO_EFFECT_WARNINGS


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["seed", "legacy"])
def test_every_forbidden_write_is_denied_by_the_server_as_each_role(
    pg_server: PgServer, layout: str
) -> None:
    topology = load_topology(layout)
    installed = install_fresh(pg_server, topology)
    outcomes = run_catalogue(pg_server, installed.layout)
    report = summary(outcomes)
    assert all(o.held for o in outcomes), report
    attempts = catalogue()
    assert len(outcomes) == len(attempts) * len(topology.roles) * len(topology.databases)
    for o in outcomes:
        if o.expected == "denied":
            assert _denied_by_the_server(o.result, o.sqlstate), (o, report)
    # The schema changes and the server's own powers are nobody's, even in the legacy layout,
    # where every role writes every schema.
    nobody = {a.name for a in attempts if a.who == "nobody"}
    assert {o.attempt for o in outcomes if o.expected == "denied"} >= nobody
    print(report)


@pytest.mark.slow
def test_a_role_without_a_grant_on_a_schema_cannot_even_read_it(pg_server: PgServer) -> None:
    raw = load_topology("seed").to_mapping()
    del raw["roles"]["api"]["ticks"]
    installed = install_fresh(pg_server, parse_topology(raw))
    outcomes = run_catalogue(pg_server, installed.layout)
    assert all(o.held for o in outcomes), summary(outcomes)
    blind = [o for o in outcomes if o.role == "api" and o.database == "ticks"]
    assert {o.result for o in blind} <= {"refused", "no effect"}
    select = next(o for o in blind if o.attempt == "SELECT")
    assert (select.sqlstate, select.message) == ("42501", "permission denied for schema ticks")


@pytest.mark.slow
def test_a_hole_in_the_grants_is_reported_as_not_held(pg_server: PgServer) -> None:
    installed = install_fresh(pg_server, load_topology("seed"))
    bot = installed.layout.login("bot").user
    with installed.admin() as conn:
        conn.execute(f"GRANT CREATE ON SCHEMA analysis TO {bot}")  # a deliberate mistake
    outcomes = run_catalogue(pg_server, installed.layout)
    broken = {(o.role, o.database, o.attempt) for o in outcomes if not o.held}
    assert ("bot", "analysis", "CREATE TABLE") in broken
    assert {role for role, _, _ in broken} == {"bot"}
    assert "NOT HELD bot on analysis: CREATE TABLE (denied; done)" in summary(outcomes)


@pytest.mark.slow
def test_the_command_runs_the_catalogue_on_a_named_server_and_leaves_nothing(
    pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    url = (
        f"postgresql://{pg_server.user}:{pg_server.password}@{pg_server.host}:{pg_server.port}"
        "/postgres"
    )
    assert main(["pg-attacks", "--topology", "seed", "--url", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("topology 'seed' on PostgreSQL: 3 roles x 3 schemas\n")
    assert "  TRUNCATE " in out and "nobody  refused 42501 x9" in out
    assert "570 forbidden attempts: 570 denied by the server" in out
    assert "NOT HELD" not in out
    with pg_server.connect() as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname LIKE 'splitdb_attacks_%'), "
            "(SELECT count(*) FROM pg_roles WHERE rolname LIKE 'attack_%')"
        ).fetchone()
    assert left == (0, 0)
