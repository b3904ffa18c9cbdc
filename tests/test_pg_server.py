"""A throwaway PostgreSQL server per run (or one named by URL): started, reachable, gone after."""

from __future__ import annotations

import os
import pwd
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from harness.errors import PostgresUnavailable
from harness.pg.server import (
    ADMIN_USER,
    SERVER_USER,
    PgServer,
    server_from_url,
    throwaway_server,
)
from tests.conftest import postgres_binaries_or_skip

FAST = {"fsync": "off"}


def _postmaster_alive(pid: int) -> bool:
    """Running: a zombie (stopped, not yet reaped by init, which here is slow to) is not."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _postmaster_pid(server: PgServer) -> int:
    with server.connect() as conn:
        data = conn.execute("SHOW data_directory").fetchone()
    assert data is not None
    return int((Path(str(data[0])) / "postmaster.pid").read_text().split()[0])


@pytest.mark.slow
def test_throwaway_server_accepts_connections_and_leaves_nothing_behind() -> None:
    postgres_binaries_or_skip()
    with throwaway_server(settings=FAST) as server:
        root = server.socket_dir
        assert root is not None and root.is_dir()
        pid = _postmaster_pid(server)
        for via in ("tcp", "socket"):
            with server.connect(via=via) as conn:
                row = conn.execute("SELECT current_user, 6 * 7").fetchone()
            assert row == (ADMIN_USER, 42)
        # PostgreSQL refuses root: as root, the server runs as its own user.
        owner = pwd.getpwuid((root / "data").stat().st_uid).pw_name
        assert owner == (SERVER_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())[0])
    assert not root.exists()
    assert not _postmaster_alive(pid)


@pytest.mark.slow
def test_two_servers_at_once_get_their_own_port_and_directory() -> None:
    postgres_binaries_or_skip()

    def one(_: int) -> tuple[int, Path, int]:
        with throwaway_server(settings=FAST) as server:
            with server.connect() as conn:
                conn.execute("CREATE TABLE mine (x int)")
                row = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'mine'")
                seen = row.fetchone()
            assert server.socket_dir is not None and seen is not None
            return server.port, server.socket_dir, int(seen[0])

    with ThreadPoolExecutor(2) as pool:
        (port_a, dir_a, seen_a), (port_b, dir_b, seen_b) = pool.map(one, range(2))
    assert port_a != port_b and dir_a != dir_b
    assert seen_a == seen_b == 1  # each saw its own table only
    assert not dir_a.exists() and not dir_b.exists()


@pytest.mark.slow
def test_server_stopped_and_directory_removed_when_the_block_raises() -> None:
    postgres_binaries_or_skip()
    with (
        pytest.raises(RuntimeError, match="the test failed"),
        throwaway_server(settings=FAST) as server,
    ):
        root = server.socket_dir
        pid = _postmaster_pid(server)
        raise RuntimeError("the test failed")
    assert root is not None and not root.exists()
    assert not _postmaster_alive(pid)


@pytest.mark.slow
def test_a_server_that_cannot_start_says_why_and_keeps_its_log(tmp_path: Path) -> None:
    postgres_binaries_or_skip()
    log = tmp_path / "postgres.log"
    # A base of its own (reachable by the server's user): other servers of a parallel run
    # come and go in the shared temporary directory.
    base = Path(tempfile.mkdtemp(prefix="splitdb-pg-test-"))
    base.chmod(0o755)
    with (
        pytest.raises(PostgresUnavailable) as caught,
        throwaway_server(base=base, settings={"shared_buffers": "'lots'"}, log_path=log),
    ):
        pass
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("the PostgreSQL server did not start: ")
    assert "shared_buffers" in message and f"its log: {log}" in message
    assert "shared_buffers" in log.read_text()
    # Nothing of it is left.
    assert list(base.iterdir()) == []
    base.rmdir()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="only root's server runs as another user")
def test_a_base_directory_the_server_user_cannot_reach_is_named(tmp_path: Path) -> None:
    postgres_binaries_or_skip()
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with (
        pytest.raises(PostgresUnavailable, match=r"cannot reach .*chmod o\+x"),
        throwaway_server(base=closed),
    ):
        pass
    assert list(closed.iterdir()) == []


@pytest.mark.slow
def test_a_server_named_by_url_is_used_as_it_is(pg_server: PgServer) -> None:
    url = (
        f"postgresql://{pg_server.user}:{pg_server.password}@{pg_server.host}:{pg_server.port}"
        "/postgres"
    )
    named = server_from_url(url)
    assert (named.host, named.port, named.user) == (pg_server.host, pg_server.port, ADMIN_USER)
    with named.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pg_server.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS splitdb_plain")
        conn.execute("CREATE ROLE splitdb_plain LOGIN PASSWORD 'plain'")
    plain = f"postgresql://splitdb_plain:plain@{pg_server.host}:{pg_server.port}/postgres"
    with pytest.raises(PostgresUnavailable, match="may not create databases and roles"):
        server_from_url(plain)
    with pytest.raises(PostgresUnavailable, match=r"cannot connect to .*:\*\*\*@"):
        server_from_url(plain.replace(":plain@", ":wrong@"))


@pytest.mark.slow
def test_a_role_without_the_admin_password_cannot_connect_as_admin(pg_server: PgServer) -> None:
    for via in ("tcp", "socket"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(pg_server.conninfo(user=ADMIN_USER, password="guess", via=via))


@pytest.mark.slow
def test_a_port_taken_before_the_server_binds_it_is_retried_on_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    postgres_binaries_or_skip()
    import socket

    import harness.pg.server as server_module

    # A real listener holds the first port offered: the race a free-port probe can lose.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        offered: list[int] = []
        real = server_module._free_port

        def offer() -> int:
            offered.append(busy if not offered else real())
            return offered[-1]

        monkeypatch.setattr(server_module, "_free_port", offer)
        with throwaway_server(settings=FAST) as server:
            assert offered[0] == busy and server.port == offered[1] != busy
            with server.connect() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
