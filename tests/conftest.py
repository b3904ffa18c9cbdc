"""Shared fixtures: every test gets fresh files, never a shared database."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.errors import PostgresUnavailable
from harness.pg.server import PgServer, find_binaries, throwaway_server
from reference.access import AccessManager
from reference.topology import Topology, load_topology


@pytest.fixture
def seed_topology() -> Topology:
    return load_topology("seed")


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Topology], Path]:
    """`initialized(topology)`: a data directory the access manager initialised for the layout,
    made once per test module; each test copies it (creating the files costs their fsyncs)."""
    made: dict[str, Path] = {}

    def template(topology: Topology) -> Path:
        key = json.dumps(topology.to_mapping(), sort_keys=True)
        if key not in made:
            data_dir = tmp_path_factory.mktemp("initialized") / "data"
            AccessManager(topology, data_dir).initialize()
            made[key] = data_dir
        return made[key]

    return template


@pytest.fixture
def seed_access(tmp_path: Path, seed_topology: Topology) -> AccessManager:
    """An initialised seed layout in a fresh data directory."""
    access = AccessManager(seed_topology, tmp_path / "data")
    access.initialize()
    return access


# --- the fast lane ---------------------------------------------------------------------------
# `pytest -m "not slow"` runs the unit tests in well under a minute. What makes a test slow here
# is starting processes (the reference processes, a scenario run, a CLI in a subprocess, forked
# load workers), so that is what the marker means, and this guard keeps it true: a test without
# the marker that starts a process fails, saying to mark it. Without the guard the lane would
# slow down one unmarked test at a time.
_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn"})
_in_fast_test: list[str] = []


def _refuse_processes_in_fast_tests(event: str, args: tuple[object, ...]) -> None:
    if _in_fast_test and event in _PROCESS_EVENTS:
        raise RuntimeError(
            f"{_in_fast_test[0]} starts a process ({event}) but is not marked slow; add "
            "@pytest.mark.slow (the fast lane, pytest -m 'not slow', runs no processes)"
        )


sys.addaudithook(_refuse_processes_in_fast_tests)


# --- PostgreSQL ------------------------------------------------------------------------------
# Tests of the PostgreSQL topology skip where the server binaries are missing, with the reason;
# CI installs them (.ci/run) and sets SPLITDB_REQUIRE_POSTGRES=1, and there a missing server fails.
REQUIRE_POSTGRES = os.environ.get("SPLITDB_REQUIRE_POSTGRES") == "1"


def postgres_binaries_or_skip() -> None:
    try:
        find_binaries()
    except PostgresUnavailable as exc:
        if REQUIRE_POSTGRES:
            raise
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL server per test module; tests make their own databases on it.
    Per module, not per session: a fixture is torn down inside the last test that used its
    scope, and a session's last test may be a fast one, which may not start `pg_ctl stop`.
    fsync off: these tests check permissions and SQL, not durability."""
    postgres_binaries_or_skip()
    with throwaway_server(settings={"fsync": "off"}) as server:
        yield server


# Fixtures that start a process for the tests using them (tests/test_api.py's running API, a
# PostgreSQL server).
PROCESS_FIXTURES = frozenset({"server", "pg_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # Around setup, call and teardown: a module-scoped fixture that starts a server is set up
    # inside the first test that needs it, and counts against that test.
    if item.get_closest_marker("slow") is not None:
        return (yield)
    _in_fast_test.append(item.nodeid)
    try:
        return (yield)
    finally:
        _in_fast_test.clear()
