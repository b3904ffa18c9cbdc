"""The API on either backend: the topology's `backend` picks where it reads and logs. On
PostgreSQL the real API process answers every request byte for byte as on SQLite over the same
rows, logs every request in the server's request_log, and keeps serving and logging when the
server ends its connections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.pg.server import PgServer
from reference.analysis import INDICATORS
from reference.events import read_events
from reference.pg_store import PgTickWriter
from reference.schema import BAR_COLUMNS, TICK_COLUMNS
from reference.status import StatusBoard
from reference.topology import parse_topology
from tests.pg_helpers import Installed, install_fresh
from tests.test_agent_backend import agent_env, postgres_seed
from tests.test_api import BASE, SEED, SYMBOLS, Server, prepare, select, start_server, wait_until

pytestmark = pytest.mark.slow

INDICATOR_COLUMNS = ("symbol", "timeframe", "start_msc", "name", "value")


# -- the same rows on both backends ------------------------------------------------------------


def copy_into_postgres(data_dir: Path, installed: Installed) -> None:
    """The SQLite files' ticks (as the bot) and bars and indicators (as the agent) written into
    the installed database, row for row."""

    def rows(database: str, table: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
        found = select(data_dir, database, f"SELECT {', '.join(columns)} FROM {table}")
        return [tuple(row[c] for c in columns) for row in found]

    bot = PgTickWriter(installed.conninfo("bot"))
    try:
        assert bot.append(rows("ticks", "ticks", TICK_COLUMNS)).new > 0
    finally:
        bot.close()
    with installed.connect("agent") as agent, agent.cursor() as cur:
        for table, columns in (("bars", BAR_COLUMNS), ("indicators", INDICATOR_COLUMNS)):
            found = rows("analysis", table, columns)
            assert found
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('%s' for _ in columns)})",
                found,
            )


def installed_with_rows(server: PgServer, data_dir: Path) -> Installed:
    installed = install_fresh(server, SEED)
    copy_into_postgres(data_dir, installed)
    return installed


def start_on_postgres(installed: Installed, directory: Path, *options: str) -> Server:
    """`python -m reference.api` on a postgres topology, as the api role's login."""
    directory.mkdir(parents=True, exist_ok=True)
    topology = directory / "seed-pg.toml"
    topology.write_text(parse_topology(postgres_seed()).to_toml())
    return start_server(
        directory / "data",
        "--log-max-delay",
        "0.02",
        *options,
        topology=str(topology),
        env=agent_env(installed.conninfo("api")),
    )


def admin_query(installed: Installed, sql: str) -> list[tuple[Any, ...]]:
    with installed.admin() as conn:
        return [tuple(row) for row in conn.execute(sql).fetchall()]


def logged(installed: Installed) -> Counter[tuple[str, int]]:
    rows = admin_query(installed, "SELECT path, status FROM logs.request_log")
    return Counter((str(path), int(status)) for path, status in rows)


@pytest.fixture(scope="module")
def sqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("api-sqlite") / "data"
    prepare(directory)
    return directory


@pytest.fixture(scope="module")
def clients(
    pg_server: PgServer, sqlite_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """An API on the SQLite files and one on PostgreSQL holding the same rows."""
    installed = installed_with_rows(pg_server, sqlite_dir)
    on_sqlite = start_server(sqlite_dir, "--log-max-delay", "0.02")
    try:
        on_postgres = start_on_postgres(installed, tmp_path_factory.mktemp("api-pg"))
    except BaseException:
        on_sqlite.stop()
        raise
    try:
        with (
            httpx.Client(base_url=on_sqlite.url, timeout=30) as sqlite,
            httpx.Client(base_url=on_postgres.url, timeout=30) as postgres,
        ):
            yield sqlite, postgres
    finally:
        assert on_postgres.stop() == 0, on_postgres.log()
        assert on_sqlite.stop() == 0, on_sqlite.log()


# -- every answer equal ------------------------------------------------------------------------

ANSWERS: list[tuple[str, dict[str, Any], int]] = [
    ("/symbols", {}, 200),
    *((f"/ticks/{symbol}/latest", {}, 200) for symbol in SYMBOLS),
    *((f"/ticks/{symbol}", {"limit": 10_000}, 200) for symbol in SYMBOLS),
    ("/ticks/EURUSD", {}, 200),  # the default limit: truncated at 1000
    ("/ticks/EURUSD", {"start": BASE + 100, "end": BASE + 90_000, "limit": 50}, 200),
    ("/ticks/EURUSD", {"start": BASE + 1, "end": BASE + 1}, 200),
    ("/ticks/EURUSD", {"start": 0, "end": BASE - 1}, 200),
    ("/ticks/EURUSD", {"start": BASE + 60_000, "end": BASE}, 200),
    ("/bars/EURUSD", {}, 200),
    ("/bars/EURUSD", {"timeframe": "5m"}, 200),
    ("/bars/EURUSD", {"start": BASE + 60_000, "end": BASE + 600_000, "limit": 4}, 200),
    ("/bars/GBPUSD", {"timeframe": "5m"}, 200),  # known, no 5m bars
    ("/bars/US500.cash", {}, 200),  # ticks but no analysis yet
    ("/indicators/EURUSD", {"limit": 10_000}, 200),
    ("/indicators/EURUSD", {"timeframe": "5m", "name": INDICATORS[2]}, 200),
    ("/indicators/EURUSD", {"limit": 7}, 200),
    ("/indicators/US500.cash", {}, 200),
    *((path, {}, 404) for path in ("/ticks/NOSUCH", "/ticks/NOSUCH/latest")),
    *((path, {}, 404) for path in ("/bars/NOSUCH", "/indicators/NOSUCH")),
    ("/ticks/EURUSD", {"limit": 0}, 422),
]


@pytest.mark.parametrize(("path", "params", "status"), ANSWERS)
def test_each_answer_on_postgres_is_the_answer_on_sqlite_byte_for_byte(
    clients: tuple[httpx.Client, httpx.Client], path: str, params: dict[str, Any], status: int
) -> None:
    sqlite, postgres = clients
    expected, got = sqlite.get(path, params=params), postgres.get(path, params=params)
    assert expected.status_code == status, expected.text
    assert got.status_code == status, got.text
    assert got.headers["content-type"] == expected.headers["content-type"]
    assert got.content == expected.content


def test_the_compared_answers_hold_truncation_nulls_ints_and_floats(
    clients: tuple[httpx.Client, httpx.Client],
) -> None:
    """The equality above covers what could differ between the drivers: a page cut at its
    limit, NULLs, and integer and REAL columns keeping their JSON types."""
    _, postgres = clients
    ticks = postgres.get("/ticks/EURUSD").json()
    assert ticks["truncated"] is True and ticks["count"] == 1000
    fx = ticks["ticks"][0]
    assert fx["last"] is None and fx["volume_real"] is None
    assert type(fx["bid"]) is float and type(fx["volume"]) is int and type(fx["seq"]) is int
    index = postgres.get("/ticks/US500.cash/latest").json()
    assert type(index["last"]) is float and type(index["volume_real"]) is float
    bar = postgres.get("/bars/EURUSD").json()["bars"][0]
    assert type(bar["tick_count"]) is int and type(bar["volume"]) is float
    assert type(bar["start_msc"]) is int and type(bar["open"]) is float
    values = [r["value"] for r in postgres.get("/indicators/EURUSD").json()["indicators"]]
    assert None in values and any(type(v) is float for v in values)


# -- the request log ---------------------------------------------------------------------------

# Paths a client asks for and the status each answers with; 404s and 422s are logged too.
ASKED = [
    ("/symbols", 200),
    ("/ticks/EURUSD/latest", 200),
    ("/ticks/EURUSD", 200),
    ("/bars/GBPUSD", 200),
    ("/indicators/EURUSD", 200),
    ("/ticks/NOSUCH", 404),
    ("/health", 200),
]


def ask(http: httpx.Client, n: int) -> list[tuple[str, int]]:
    answered = []
    for i in range(n):
        path, _ = ASKED[i % len(ASKED)]
        response = http.get(path, params={"limit": 5} if path == "/ticks/EURUSD" else {})
        if response.status_code == 503:
            body = response.json()
            assert body["error"] == "database unavailable", body
            assert response.headers["retry-after"] == "1"
        answered.append((path, response.status_code))
    return answered


def test_every_request_on_postgres_is_in_its_request_log_once(
    pg_server: PgServer, sqlite_dir: Path, tmp_path: Path
) -> None:
    installed = installed_with_rows(pg_server, sqlite_dir)
    server = start_on_postgres(installed, tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            answered = ask(http, 70)
            assert answered == [ASKED[i % len(ASKED)] for i in range(70)]
    finally:
        assert server.stop() == 0, server.log()
    assert logged(installed) == Counter(answered)
    # Nothing went to SQLite: the data directory holds the status board (and its lock) only.
    board = SEED.status.name
    assert [p.name for p in server.data_dir.iterdir() if not p.name.startswith(board)] == []
    section = StatusBoard(server.data_dir / SEED.status).section("api")
    assert section["state"] == "stopped"
    assert section["request_log"]["logged"] == 70


def test_api_on_postgres_keeps_serving_and_logging_when_the_server_ends_its_connections(
    pg_server: PgServer, sqlite_dir: Path, tmp_path: Path
) -> None:
    """The server ends the API's backends (reads and the request log's) while it serves.

    A read on a connection that was ended answers 503 (Retry-After: 1) and the next one
    reconnects; the request log's batch that met the break stays queued and is written again.
    The guarantee, shown here: after a clean stop every request answered is in request_log
    exactly once (a batch re-sent after a commit whose outcome was unclear is first looked
    for). None is lost silently: a record the writer could not write by the stop's deadline
    is counted `failed` on the status board and in the `log_drain` event."""
    installed = installed_with_rows(pg_server, sqlite_dir)
    server = start_on_postgres(installed, tmp_path)
    answered: list[tuple[str, int]] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            answered += ask(http, 35)
            wait_until(lambda: logged(installed).total() == 35, "the first requests are logged")
            ended = admin_query(
                installed,
                "SELECT application_name, pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name IN ('splitdb-api', 'splitdb-api-log') "
                "AND datname = current_database()",
            )
            assert {name for name, done in ended if done} == {"splitdb-api", "splitdb-api-log"}
            answered += ask(http, 210)
    finally:
        assert server.stop() == 0, server.log()
    expected = [ASKED[i % len(ASKED)] for i in range(len(answered))]
    during = [(got, want) for got, want in zip(answered, expected, strict=True) if got != want]
    assert all(got == (path, 503) for got, (path, _) in during), during
    assert answered[-140:] == expected[-140:], "still failing long after the break"

    assert logged(installed) == Counter(answered)
    events = list(read_events(server.events))
    broken = [e for e in events if e["op"] == "log_commit" and e["outcome"] != "ok"]
    assert broken, "the request log never met the break"
    drain = [e for e in events if e["op"] == "log_drain"]
    assert [(e["failed"], e["outcome"]) for e in drain] == [(0, "ok")]
    stats = StatusBoard(server.data_dir / SEED.status).section("api")["request_log"]
    assert (stats["logged"], stats["dropped"], stats["failed"]) == (len(answered), 0, 0)
