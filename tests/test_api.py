"""The API server as a real process: answers equal the database, bad input is a 4xx naming the
parameter, every request reaches request_log, SIGTERM drains it and exits 0."""

from __future__ import annotations

import html
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote, urljoin

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import analysis
from reference.access import AccessManager, transaction
from reference.api import SYMBOL_PATTERN, SYMBOLS_SQL, IndicatorName, Timeframe
from reference.api.__main__ import build_parser, main
from reference.events import read_events
from reference.schema import ensure_schema
from reference.status import StatusBoard
from reference.tickstore import insert_ticks
from reference.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
SEED = load_topology("seed")
BASE = 1_700_000_000_000
SYMBOLS = ("EURUSD", "GBPUSD", "US500.cash")
TICK_COUNTS = {"EURUSD": 2500, "GBPUSD": 300, "US500.cash": 40}
Row = dict[str, Any]


# --- the data --------------------------------------------------------------------------------


def tick_rows(symbol: str, count: int, rng: random.Random) -> list[tuple[Any, ...]]:
    """Ticks in key order, several sharing a millisecond (so seq matters for the order)."""
    rows = []
    time_msc, seq, price = BASE, 0, 1.0 + rng.random()
    fx = symbol != "US500.cash"
    for _ in range(count):
        step = rng.choice((0, 0, 1, 3, 250))
        time_msc, seq = (time_msc, seq + 1) if step == 0 else (time_msc + step, 0)
        price += rng.gauss(0, 1e-4)
        rows.append(
            (
                symbol,
                time_msc,
                seq,
                time_msc // 1000,
                price,
                price + rng.random() * 1e-4,
                None if fx else price,
                0 if fx else rng.randint(1, 50),
                6 if fx else 8 | 16,
                None if fx else rng.random() * 10,
            )
        )
    return rows


def bar_rows(symbol: str, timeframe: str, count: int, rng: random.Random) -> list[tuple[Any, ...]]:
    width = analysis.TIMEFRAMES[timeframe]
    rows = []
    for k in range(count):
        o, c = rng.random(), rng.random()
        rows.append(
            (
                symbol,
                timeframe,
                BASE + k * width,
                o,
                max(o, c) + 0.1,
                min(o, c) - 0.1,
                c,
                k,
                k * 0.5,
            )
        )
    return rows


def indicator_rows(bars: Sequence[tuple[Any, ...]], rng: random.Random) -> list[tuple[Any, ...]]:
    rows = []
    for symbol, timeframe, start_msc, *_ in bars:
        for name in analysis.INDICATORS:
            rows.append((symbol, timeframe, start_msc, name, rng.random() * 100))
    return rows


def prepare(data_dir: Path) -> AccessManager:
    """A seed layout with ticks for SYMBOLS (written by the bot) and bars/indicators for
    EURUSD and GBPUSD (written by the agent); US500.cash has ticks but no bars yet."""
    rng = random.Random(20240229)
    access = AccessManager(SEED, data_dir)
    access.initialize()
    bot = access.connect("bot", "ticks")
    for symbol, count in TICK_COUNTS.items():
        insert_ticks(bot, tick_rows(symbol, count, rng))
    bot.close()
    bars = [
        *bar_rows("EURUSD", "1m", 40, rng),
        *bar_rows("EURUSD", "5m", 8, rng),
        *bar_rows("GBPUSD", "1m", 5, rng),
    ]
    agent = access.connect("agent", "analysis")
    with transaction(agent):
        agent.executemany("INSERT INTO bars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", bars)
        agent.executemany(
            "INSERT INTO indicators VALUES (?, ?, ?, ?, ?)", indicator_rows(bars, rng)
        )
        # The agent leaves a value NULL where it has none: the API must pass that through.
        agent.execute("UPDATE indicators SET value = NULL WHERE start_msc = ?", (BASE,))
    agent.close()
    return access


def select(data_dir: Path, database: str, sql: str, parameters: Sequence[Any] = ()) -> list[Row]:
    """Rows as dicts, read by a role that only reads `database`."""
    reader = {"ticks": "agent", "analysis": "bot", "logs": "bot"}[database]
    conn = AccessManager(SEED, data_dir).connect(reader, database)
    try:
        cursor = conn.execute(sql, parameters)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor]
    finally:
        conn.close()


# --- the server process ----------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    events: Path
    stderr: Path

    def stop(self) -> int:
        """SIGTERM, then the exit code; fails if the process takes more than 5 s."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the API did not exit within 5 s of SIGTERM; stderr:\n{self.log()}")

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.01)


def start_server(
    data_dir: Path, *options: str, topology: str = "seed", env: Mapping[str, str] | None = None
) -> Server:
    """`python -m reference.api` on a free port; its URL comes from the status board. `env`
    replaces the inherited environment (PYTHONPATH is added)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    events = data_dir.parent / "api-events.jsonl"
    stderr = data_dir.parent / "api-stderr.txt"
    env = {
        **(os.environ if env is None else env),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    argv = [sys.executable, "-m", "reference.api", "--topology", topology]
    argv += ["--data-dir", str(data_dir), "--events", str(events), "--port", "0"]
    argv += ["--heartbeat", "0.2", "--log-level", "warning", *options]
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    board = StatusBoard(data_dir / SEED.status)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"the API exited with {proc.returncode}: {stderr.read_text(errors='replace')}"
            )
        section = board.section("api") if board.path.exists() else {}
        return section.get("state") == "ready" and section.get("pid") == proc.pid

    try:
        wait_until(ready, "the API is ready on the status board")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    url = board.section("api")["url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
    return Server(proc, url, data_dir, events, stderr)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("api") / "data"
    prepare(directory)
    return directory


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[Server]:
    running = start_server(data_dir, "--log-max-delay", "0.02")
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def get_json(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# --- answers equal the database --------------------------------------------------------------


def all_ticks(data_dir: Path, symbol: str) -> list[Row]:
    rows = select(data_dir, "ticks", "SELECT * FROM ticks WHERE symbol = ?", (symbol,))
    # Ordered here, not by SQL, so the expected order does not come from the server's query.
    return sorted(rows, key=lambda r: (r["time_msc"], r["seq"]))


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_ticks_answer_equals_the_database(
    client: httpx.Client, data_dir: Path, symbol: str
) -> None:
    body = get_json(client, f"/ticks/{symbol}", limit=10_000)
    expected = all_ticks(data_dir, symbol)
    assert len(expected) == TICK_COUNTS[symbol]
    assert body["ticks"] == expected
    assert (body["count"], body["truncated"]) == (len(expected), False)


@pytest.mark.parametrize(
    ("start", "end", "limit"),
    [
        (BASE + 100, BASE + 90_000, 50),
        (BASE + 1, BASE + 1, 10),  # start == end: the ticks of one millisecond
        (0, BASE - 1, 5),  # before the first tick: an empty answer, not a 404
        (BASE + 20_000, None, None),  # default end and limit: truncated at 1000
        (None, None, 10_000),
    ],
)
def test_ticks_in_a_window_are_the_databases_in_key_order(
    client: httpx.Client, data_dir: Path, start: int | None, end: int | None, limit: int | None
) -> None:
    params = {k: v for k, v in (("start", start), ("end", end), ("limit", limit)) if v is not None}
    body = get_json(client, "/ticks/EURUSD", **params)
    lo, n = start or 0, limit or 1000
    hi = end if end is not None else 2**63 - 1
    matching = [t for t in all_ticks(data_dir, "EURUSD") if lo <= t["time_msc"] <= hi]
    assert body["ticks"] == matching[:n]
    assert body["truncated"] == (len(matching) > n)
    # No `end`: no upper bound, echoed as null.
    assert (body["start"], body["end"], body["limit"]) == (lo, end, n)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_latest_tick_is_the_one_with_the_greatest_key(
    client: httpx.Client, data_dir: Path, symbol: str
) -> None:
    assert get_json(client, f"/ticks/{symbol}/latest") == all_ticks(data_dir, symbol)[-1]


def test_symbols_lists_each_symbol_once_in_order(client: httpx.Client, data_dir: Path) -> None:
    rows = select(data_dir, "ticks", "SELECT symbol FROM ticks")
    assert get_json(client, "/symbols") == {"symbols": sorted({r["symbol"] for r in rows})}


def test_symbols_query_seeks_the_primary_key_instead_of_scanning(data_dir: Path) -> None:
    conn = AccessManager(SEED, data_dir).connect("api", "ticks")
    plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {SYMBOLS_SQL}")]
    conn.close()
    on_ticks = [step for step in plan if " ticks" in step]
    assert on_ticks and all(
        step.startswith("SEARCH ticks USING COVERING INDEX") for step in on_ticks
    ), plan


@pytest.mark.parametrize(
    ("symbol", "timeframe", "params"),
    [
        ("EURUSD", "1m", {}),
        ("EURUSD", "5m", {}),
        ("EURUSD", "1m", {"start": BASE + 60_000, "end": BASE + 600_000, "limit": 4}),
        ("GBPUSD", "1m", {"limit": 10_000}),
        ("GBPUSD", "5m", {}),  # no 5m bars yet: empty, not a 404
    ],
)
def test_bars_answer_equals_the_database(
    client: httpx.Client, data_dir: Path, symbol: str, timeframe: str, params: dict[str, int]
) -> None:
    body = get_json(client, f"/bars/{symbol}", timeframe=timeframe, **params)
    rows = select(
        data_dir,
        "analysis",
        "SELECT * FROM bars WHERE symbol = ? AND timeframe = ?",
        (symbol, timeframe),
    )
    lo, hi, n = params.get("start", 0), params.get("end", 2**63), params.get("limit", 1000)
    matching = sorted((r for r in rows if lo <= r["start_msc"] <= hi), key=lambda r: r["start_msc"])
    assert body["bars"] == matching[:n]
    assert body["truncated"] == (len(matching) > n)


@pytest.mark.parametrize("name", [None, *analysis.INDICATORS])
@pytest.mark.parametrize("timeframe", ["1m", "5m"])
def test_indicators_answer_equals_the_database(
    client: httpx.Client, data_dir: Path, name: str | None, timeframe: str
) -> None:
    params: dict[str, Any] = {"timeframe": timeframe, "limit": 10_000}
    if name is not None:
        params["name"] = name
    body = get_json(client, "/indicators/EURUSD", **params)
    rows = select(
        data_dir,
        "analysis",
        "SELECT * FROM indicators WHERE symbol = 'EURUSD' AND timeframe = ?",
        (timeframe,),
    )
    expected = sorted(
        (r for r in rows if name is None or r["name"] == name),
        key=lambda r: (r["start_msc"], r["name"]),
    )
    assert expected and body["indicators"] == expected
    assert any(r["value"] is None for r in body["indicators"])


def test_a_symbol_with_ticks_but_no_bars_yet_is_known(client: httpx.Client) -> None:
    assert get_json(client, "/bars/US500.cash")["bars"] == []
    assert get_json(client, "/indicators/US500.cash")["indicators"] == []


def test_api_parameters_match_what_the_agent_writes() -> None:
    assert set(get_args(Timeframe)) == set(analysis.TIMEFRAMES)
    assert set(get_args(IndicatorName)) == set(analysis.INDICATORS)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/ticks/NOSUCH", "/ticks/NOSUCH/latest", "/bars/NOSUCH", "/indicators/NOSUCH"]
)
def test_unknown_symbol_is_a_404_saying_so(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    body = response.json()
    assert (body["error"], body["symbol"]) == ("unknown symbol", "NOSUCH")
    assert "/symbols" in body["detail"]


@pytest.mark.parametrize(
    ("path", "params", "parameter", "where", "allowed"),
    [
        ("/ticks/EURUSD", {"limit": "0"}, "limit", "query", "1..10000"),
        ("/ticks/EURUSD", {"limit": "abc"}, "limit", "query", "1..10000"),
        ("/ticks/EURUSD", {"limit": "10001"}, "limit", "query", "1..10000"),
        ("/ticks/EURUSD", {"limit": ""}, "limit", "query", "1..10000"),
        ("/ticks/EURUSD", {"start": "-1"}, "start", "query", "0..9223372036854775807"),
        ("/ticks/EURUSD", {"start": str(2**70)}, "start", "query", "0..9223372036854775807"),
        ("/bars/EURUSD", {"timeframe": "2m"}, "timeframe", "query", "1m, 5m"),
        ("/indicators/EURUSD", {"name": "macd"}, "name", "query", "sma14"),
        ("/ticks/EURUSD/latest", {"limit": "5"}, "limit", "query", "none"),
        ("/ticks/EURUSD", {"limt": "5"}, "limt", "query", "end, limit, start"),
        ("/ticks/EURUSD", [("limit", "1"), ("limit", "2")], "limit", "query", "1..10000"),
        ("/ticks/EUR%20USD", {}, "symbol", "path", "1 to 32 characters"),
        ("/ticks/" + "A" * 33, {}, "symbol", "path", "1 to 32 characters"),
        ("/bars/%C3%A9", {}, "symbol", "path", "1 to 32 characters"),
    ],
)
def test_bad_parameter_is_a_422_naming_it_and_what_is_allowed(
    client: httpx.Client,
    path: str,
    params: Any,
    parameter: str,
    where: str,
    allowed: str,
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid request"
    assert [(p["parameter"], p["in"]) for p in body["problems"]] == [(parameter, where)]
    assert allowed in body["problems"][0]["allowed"]


def test_every_problem_is_reported_at_once(client: httpx.Client) -> None:
    response = client.get("/bars/EURUSD", params={"limit": "0", "timeframe": "7m", "start": "x"})
    assert response.status_code == 422
    named = {p["parameter"] for p in response.json()["problems"]}
    assert named == {"limit", "timeframe", "start"}


@pytest.mark.slow
def test_missing_database_is_a_503_until_its_owner_creates_it(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--log-max-delay", "0.02")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for path, database in [
                ("/ticks/EURUSD", "ticks"),
                ("/symbols", "ticks"),
                ("/bars/EURUSD", "analysis"),
            ]:
                response = http.get(path)
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "1"
                body = response.json()
                assert (body["error"], body["database"]) == ("database unavailable", database)
                assert "does not exist yet" in body["detail"]

            # The owner opens the file but has not created the tables yet.
            access = AccessManager(SEED, server.data_dir)
            bot = access.connect("bot", "ticks")
            response = http.get("/ticks/EURUSD")
            assert response.status_code == 503
            assert "no such table" in response.json()["detail"]

            ensure_schema(bot, "ticks")
            assert http.get("/ticks/EURUSD").status_code == 404
            insert_ticks(bot, tick_rows("EURUSD", 10, random.Random(1)))
            bot.close()
            assert http.get("/ticks/EURUSD").json()["ticks"] == all_ticks(server.data_dir, "EURUSD")
            assert http.get("/bars/EURUSD").status_code == 503
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("path", ["/ticks/EURUSD", "/bars/EURUSD", "/indicators/EURUSD"])
def test_end_before_start_is_an_empty_page(client: httpx.Client, path: str) -> None:
    key = path.split("/")[1]
    # The same bounds the right way round match rows: the empty answer comes from the order.
    assert get_json(client, path, start=BASE, end=BASE + 60_000)["count"] > 0
    body = get_json(client, path, start=BASE + 60_000, end=BASE)
    assert (body[key], body["count"], body["truncated"]) == ([], 0, False)
    assert (body["start"], body["end"]) == (BASE + 60_000, BASE)
    # An unknown symbol is still unknown.
    unknown = client.get(path.replace("EURUSD", "NOSUCH"), params={"start": 10, "end": 5})
    assert unknown.status_code == 404, unknown.text


def _defaults(node: Any) -> list[Any]:
    """Every `default` in a JSON document."""
    if isinstance(node, dict):
        found = [node["default"]] if "default" in node else []
        return found + [d for value in node.values() for d in _defaults(value)]
    if isinstance(node, list):
        return [d for value in node for d in _defaults(value)]
    return []


def test_end_defaults_to_no_upper_bound_not_to_a_huge_number(client: httpx.Client) -> None:
    huge = str(2**63 - 1)
    for path in ("/ticks/EURUSD", "/bars/EURUSD", "/indicators/EURUSD"):
        response = client.get(path, params={"limit": 1})
        assert response.status_code == 200, response.text
        assert response.json()["end"] is None
        assert huge not in response.text
    spec = get_json(client, "/openapi.json")
    ends = [
        parameter
        for operations in spec["paths"].values()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "end"
    ]
    assert len(ends) == 3
    assert all(not parameter.get("required", False) for parameter in ends)
    assert 2**63 - 1 not in _defaults(spec)
    assert all(f"default {huge}" not in parameter["description"] for parameter in ends)


# --- docs, unknown paths, methods ----------------------------------------------------------------


class _Links(HTMLParser):
    """Every URL a page has the browser load or offers as a link."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value:
                self.urls.append(value)


def test_docs_page_needs_nothing_from_outside_the_server(
    client: httpx.Client, server: Server
) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    outside = [
        url
        for url in re.findall(r"(?i)(?:https?:)?//[^\s\"'<>()]+", page)
        if not url.startswith(server.url + "/")
    ]
    assert outside == []
    assert "@import" not in page
    links = _Links()
    links.feed(page)
    statuses = {}
    for url in links.urls:
        if url.startswith(("#", "data:")):
            continue
        target = urljoin(server.url + "/docs", url)
        assert target.startswith(server.url + "/"), url
        statuses[url] = client.get(target).status_code
    assert "/openapi.json" in statuses
    assert all(status == 200 for status in statuses.values()), statuses
    # The page itself documents every operation and parameter (no script has to run for it).
    spec = get_json(client, "/openapi.json")
    for path, operations in spec["paths"].items():
        assert f"<code>{path}</code>" in page, path
        for operation in operations.values():
            assert html.escape(operation["summary"], quote=False) in page
            for parameter in operation.get("parameters", []):
                assert html.escape(parameter["description"], quote=False) in page
    # Redoc, FastAPI's other docs page, loads its script from a CDN too: it is not served.
    assert client.get("/redoc").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/nosuch", "/ticks", "/ticks/EURUSD/latest/more", "/redoc", "/docs/oauth2-redirect"],
)
def test_unknown_path_is_a_404_in_the_documented_shape(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["error"], body["path"]) == ("not found", path)
    assert "/docs" in body["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/ticks/EURUSD"),
        ("PUT", "/symbols"),
        ("DELETE", "/health"),
        ("PATCH", "/bars/EURUSD"),
        ("OPTIONS", "/indicators/EURUSD"),
        ("POST", "/openapi.json"),
        ("POST", "/docs"),
    ],
)
def test_unsupported_method_is_a_405_in_the_documented_shape(
    client: httpx.Client, method: str, path: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/json"
    assert response.headers["allow"] == "GET, HEAD"
    body = response.json()
    assert (body["error"], body["method"], body["path"]) == ("method not allowed", method, path)
    assert body["allowed"] == ["GET", "HEAD"]


def test_head_answers_like_get_without_a_body(client: httpx.Client) -> None:
    spec = get_json(client, "/openapi.json")
    paths = [path.replace("{symbol}", "EURUSD") for path in spec["paths"]]
    assert len(paths) == 7
    paths += [
        "/docs",
        "/openapi.json",
        "/ticks/EURUSD?limit=3&start=1700000000100",
        "/indicators/GBPUSD?name=sma14",
        "/ticks/NOSUCH",
        "/ticks/EURUSD?limit=0",
        "/ticks/EURUSD?limt=5",
        "/nosuch",
    ]
    differences = {}
    for path in paths:
        got, head = client.get(path), client.head(path)
        # /health and /status carry the uptime: their length may differ from one call to the next.
        volatile = {"date"} | ({"content-length"} if path in ("/health", "/status") else set())
        expected = (got.status_code, {k: v for k, v in got.headers.items() if k not in volatile})
        answered = (head.status_code, {k: v for k, v in head.headers.items() if k not in volatile})
        if answered != expected or head.content != b"":
            differences[path] = (expected, answered, head.content[:100])
    assert differences == {}


def test_head_requests_are_logged_as_head(client: httpx.Client, server: Server) -> None:
    marker = "HD" + secrets.token_hex(4).upper()
    assert client.head(f"/ticks/{marker}").status_code == 404

    def logged() -> list[Row]:
        return select(
            server.data_dir,
            "logs",
            "SELECT method, path, status FROM request_log WHERE path = ?",
            (f"/ticks/{marker}",),
        )

    wait_until(lambda: len(logged()) >= 1, "the writer committed it")
    assert logged() == [{"method": "HEAD", "path": f"/ticks/{marker}", "status": 404}]


# --- request log, status, health ----------------------------------------------------------------


def test_every_request_reaches_the_request_log(client: httpx.Client, server: Server) -> None:
    marker = "RQ" + secrets.token_hex(4).upper()
    before = time.time_ns()
    made = Counter(
        {
            ("GET", f"/ticks/{marker}", 404): 2,
            ("GET", f"/ticks/{marker}/latest", 404): 1,
            ("GET", f"/bars/{marker}", 422): 1,
        }
    )
    client.get(f"/ticks/{marker}")
    client.get(f"/ticks/{marker}", params={"start": 5})
    client.get(f"/ticks/{marker}/latest")
    client.get(f"/bars/{marker}", params={"timeframe": "2m"})
    after = time.time_ns()

    def logged() -> list[Row]:
        return select(
            server.data_dir,
            "logs",
            "SELECT * FROM request_log WHERE path LIKE ? ORDER BY id",
            (f"%{marker}%",),
        )

    wait_until(lambda: len(logged()) >= sum(made.values()), "the writer committed them")
    rows = logged()
    assert Counter((r["method"], r["path"], r["status"]) for r in rows) == made
    assert all(r["client"] == "127.0.0.1" for r in rows)
    assert all(before <= r["ts_ns"] <= after and r["duration_us"] >= 0 for r in rows)


def test_status_reports_the_request_log_counts(client: httpx.Client, server: Server) -> None:
    first = get_json(client, "/status")["request_log"]
    for _ in range(5):
        client.get("/health")
    # The five, and the first /status itself (logged after its answer was made).
    target = first["logged"] + 6

    def stats() -> Any:
        return get_json(client, "/status")

    wait_until(lambda: stats()["request_log"]["logged"] >= target, "/status counts them")
    status = stats()
    log = status["request_log"]
    assert (log["dropped"], log["failed"], log["errors"]) == (0, 0, 0)
    assert set(log) == {"logged", "dropped", "failed", "queued", "batches", "errors", "last_error"}
    section = status["board"]["sections"]["api"]
    assert (section["url"], section["pid"]) == (server.url, server.proc.pid)

    def heartbeat_counts() -> bool:
        beat = StatusBoard(server.data_dir / SEED.status).section("api").get("request_log", {})
        return bool(beat.get("logged", -1) >= target)

    wait_until(heartbeat_counts, "the heartbeat on the status board carries the counts")


def test_health_and_openapi_document_every_endpoint(client: httpx.Client) -> None:
    health = get_json(client, "/health")
    assert (health["status"], health["role"], health["request_log_running"]) == ("ok", "api", True)
    spec = get_json(client, "/openapi.json")
    assert set(spec["paths"]) == {
        "/health",
        "/status",
        "/symbols",
        "/ticks/{symbol}",
        "/ticks/{symbol}/latest",
        "/bars/{symbol}",
        "/indicators/{symbol}",
    }
    ticks = spec["paths"]["/ticks/{symbol}"]["get"]
    assert {p["name"] for p in ticks["parameters"]} == {"symbol", "start", "end", "limit"}
    assert ticks["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InvalidRequestOut"
    }
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")


@pytest.mark.slow
def test_sigterm_commits_every_queued_request_and_exits_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    prepare(data)
    # Nothing is committed before the stop: every row must come from the drain.
    server = start_server(
        data, "--log-max-delay", "3600", "--log-batch-size", "100000", "--request-events"
    )
    made = 0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path in ["/health", "/symbols", "/ticks/EURUSD", "/ticks/NOSUCH", "/bars/EURUSD"] * 5:
            http.get(path, params={"limit": 3} if path.startswith("/ticks/E") else {})
            made += 1
        http.get("/ticks/EURUSD", params={"limit": 0})
        made += 1
        log = http.get("/status").json()["request_log"]
        made += 1
    assert log["logged"] == 0 and log["queued"] >= 1

    assert server.stop() == 0, server.log()
    count = select(data, "logs", "SELECT COUNT(*) AS n FROM request_log")[0]["n"]
    assert count == made
    events = list(read_events(server.events))
    drain = [e for e in events if e["op"] == "log_drain"]
    assert [(e["rows"], e["failed"], e["outcome"]) for e in drain] == [(made, 0, "ok")]
    assert len([e for e in events if e["op"] == "request"]) == made
    assert events[-1]["op"] == "stopped"
    assert events[-1]["request_log"]["logged"] == made
    section = StatusBoard(data / SEED.status).section("api")
    assert section["state"] == "stopped" and section["request_log"]["queued"] == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com", "10.0.0.1"])
def test_non_loopback_host_is_refused(
    host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--data-dir", str(tmp_path), "--host", host])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--host" in err and "not a loopback address" in err


@pytest.mark.parametrize(
    ("host", "bound"), [("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"), ("::1", "::1")]
)
def test_loopback_hosts_are_accepted(host: str, bound: str) -> None:
    assert build_parser().parse_args(["--host", host]).host == bound


# --- any input -----------------------------------------------------------------------------------

ENDPOINTS = (
    "/ticks/{}",
    "/ticks/{}/latest",
    "/bars/{}",
    "/indicators/{}",
    "/symbols",
    "/health",
    "/status",
)
PARAMETERS = ("start", "end", "limit", "timeframe", "name")
values = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, 10**4).map(str),
    st.sampled_from(
        [
            "",
            "1m",
            "5m",
            "2m",
            *analysis.INDICATORS,
            "abc",
            "1e3",
            "0x10",
            "NaN",
            "-0",
            "\uff11\uff12",
        ]
    ),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(PARAMETERS), st.text(max_size=8))
symbols = st.one_of(
    st.sampled_from([*SYMBOLS, "NOSUCH"]),
    st.from_regex(SYMBOL_PATTERN, fullmatch=True),
    st.text(max_size=40),
)


@settings(max_examples=250, deadline=None)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    symbol=symbols,
    params=st.lists(st.tuples(keys, values), max_size=5),
)
def test_no_input_gets_a_5xx_and_every_422_names_a_parameter_that_was_sent(
    client: httpx.Client, endpoint: str, symbol: str, params: list[tuple[str, str]]
) -> None:
    response = client.get(endpoint.format(quote(symbol, safe="")), params=tuple(params))
    assert response.status_code < 500, response.text
    if response.status_code == 422:
        sent = {key for key, _ in params} | ({"symbol"} if "{}" in endpoint else set())
        problems = response.json()["problems"]
        assert problems
        for problem in problems:
            assert problem["parameter"] in sent, problem
            assert problem["allowed"] and problem["problem"], problem
