"""The PostgreSQL parts that need no server (this module starts no process, so it runs in the
fast lane): bad input in one line, the attack catalogue's map of the SQLite one, and how
the stores classify the server's errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import psycopg
import pytest

from harness.errors import PostgresUnavailable, PostgresUrlError
from harness.pg.attacks import NO_COUNTERPART, catalogue
from harness.pg.server import find_binaries, server_from_url
from harness.runs.catalogue import catalogue as sqlite_catalogue
from reference.errors import StoreSetupError
from reference.pg_store import CONNINFO_ENV, conninfo_from_env, outcome_of_pg


def test_missing_binaries_name_the_package_to_install(tmp_path: Path) -> None:
    with pytest.raises(PostgresUnavailable) as caught:
        find_binaries(tmp_path)
    assert str(caught.value) == (
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {tmp_path}; "
        "install them with `apt-get install postgresql-15`, or name a running server by URL"
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://u@h/db", "expected postgresql://USER[:PASSWORD]@HOST[:PORT][/DATABASE]"),
        ("postgresql:///db", "needs a user and a TCP host"),
        ("postgresql://h/db", "needs a user and a TCP host"),
        ("postgresql://u@h:port/db", "the port must be a number"),
    ],
)
def test_a_bad_url_is_one_line_naming_it(url: str, problem: str) -> None:
    with pytest.raises(PostgresUrlError) as caught:
        server_from_url(url)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"invalid PostgreSQL URL {url}: ")
    assert problem in str(caught.value)


def test_an_unreachable_server_is_one_line_without_its_password() -> None:
    # Port 1 on the loopback: nothing listens there, the connection is refused at once.
    with pytest.raises(PostgresUnavailable) as caught:
        server_from_url("postgresql://admin:s3cret@127.0.0.1:1/db")
    message = str(caught.value)
    assert "\n" not in message and "s3cret" not in message
    assert message.startswith("cannot connect to postgresql://admin:***@127.0.0.1:1/db: ")


def test_every_sqlite_attempt_has_a_postgres_counterpart_or_a_reason() -> None:
    sqlite_names = {a.name for a in sqlite_catalogue(attach_path="", copy_path="")}
    mapped = Counter(name for a in catalogue() for name in a.sqlite)
    assert set(mapped) <= sqlite_names, "a PostgreSQL attempt names no SQLite attempt"
    assert set(NO_COUNTERPART) <= sqlite_names
    assert not set(mapped) & set(NO_COUNTERPART)
    assert sqlite_names - set(mapped) - set(NO_COUNTERPART) == set()


def test_attempt_names_are_unique() -> None:
    names = [a.name for a in catalogue()]
    assert len(names) == len(set(names))


def test_the_command_refuses_a_bad_url_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["pg-attacks", "--url", "mysql://u@h/db"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "splitdb: error: invalid PostgreSQL URL mysql://u@h/db: expected "
        "postgresql://USER[:PASSWORD]@HOST[:PORT][/DATABASE]\n"
    )


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_connection_string_is_one_line_naming_the_variable(value: str | None) -> None:
    environ = {} if value is None else {CONNINFO_ENV: value}
    with pytest.raises(StoreSetupError) as caught:
        conninfo_from_env(environ)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("SPLITDB_PG_CONNINFO is not set: give the role's")


def test_the_connection_string_comes_from_the_environment() -> None:
    assert conninfo_from_env({CONNINFO_ENV: " host=h dbname=d user=u "}) == "host=h dbname=d user=u"


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (psycopg.errors.LockNotAvailable, ("busy", "55P03")),
        (psycopg.errors.DiskFull, ("full", "53100")),
        (psycopg.errors.InsufficientPrivilege, ("denied", "42501")),
        (psycopg.errors.UniqueViolation, ("error", "23505")),
        (psycopg.OperationalError, ("error", None)),
    ],
)
def test_server_errors_map_to_the_outcomes_the_processes_report(
    error: type[psycopg.Error], outcome: tuple[str, str | None]
) -> None:
    assert outcome_of_pg(error()) == outcome
