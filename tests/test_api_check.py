"""The checks that compare processes' outputs (harness.runs.api_check): the agent's analysis against
a recomputation from the ticks, and the API's answers against the databases.

`analysis_matches` runs on databases the bot's write path and the agent's cycle filled in this
process. `api_answers` needs a running API: the tests that start one are marked slow (started as
tests/test_api.py starts it); the ones about an API that is not there run without a process.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.runs.api_check import SAMPLE_SYMBOLS, analysis_matches, api_answers
from harness.runs.checks import FIRST
from reference.access import AccessManager, transaction
from reference.agent import run_cycle
from reference.analysis import SymbolState
from reference.sqlite_store import SqliteAnalysisStore
from reference.tickstore import insert_ticks
from reference.topology import load_topology
from tests.test_api import TICK_COUNTS, Server, prepare, start_server

SEED = load_topology("seed")
BASE_MSC = 1_700_000_000_000 - 1_700_000_000_000 % 300_000  # on a 5-minute boundary


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed layout initialised once per module; each test copies it."""
    data_dir = tmp_path_factory.mktemp("initialized") / "data"
    AccessManager(SEED, data_dir).initialize()
    return data_dir


@pytest.fixture
def data_dir(tmp_path: Path, initialized: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(initialized, copy)
    return copy


def tick_rows(symbol: str, count: int, *, start: int = 0, every_ms: int = 5000) -> list[Any]:
    """`count` ticks of `symbol`, `every_ms` apart, in the ticks table's column order."""
    rows = []
    for i in range(start, start + count):
        time_msc = BASE_MSC + i * every_ms
        bid = round(1.1 + ((i * 7) % 23) * 1e-4, 5)
        rows.append((symbol, time_msc, 0, time_msc // 1000, bid, bid + 2e-4, None, 0, 6, 0.5))
    return rows


def write_ticks(data_dir: Path, rows: list[Any]) -> None:
    """The bot's write path."""
    conn = AccessManager(SEED, data_dir).connect("bot", "ticks")
    try:
        insert_ticks(conn, rows)
    finally:
        conn.close()


def agent_cycle(data_dir: Path) -> int:
    """One cycle of the agent, in this process; the ticks it folded."""
    access = AccessManager(SEED, data_dir)
    ticks, analysis = access.connect("agent", "ticks"), access.connect("agent", "analysis")
    states: dict[str, SymbolState] = {}
    try:
        return run_cycle(SqliteAnalysisStore.over(ticks, analysis), states, max_ticks=100_000).ticks
    finally:
        ticks.close()
        analysis.close()


def as_agent(data_dir: Path, sql: str, parameters: tuple[Any, ...] = ()) -> None:
    """A change to the analysis database, made by its owner: what a buggy agent would write."""
    conn = AccessManager(SEED, data_dir).connect("agent", "analysis")
    try:
        with transaction(conn):
            conn.execute(sql, parameters)
    finally:
        conn.close()


@pytest.fixture
def analysed(data_dir: Path) -> Path:
    """20 minutes of EURUSD and 10 of GBPUSD, folded by the agent: enough bars for indicators."""
    write_ticks(data_dir, [*tick_rows("EURUSD", 240), *tick_rows("GBPUSD", 120, every_ms=5000)])
    assert agent_cycle(data_dir) == 360
    return data_dir


# --- analysis_matches ----------------------------------------------------------------------------


def test_analysis_matches_when_the_agent_folded_the_ticks_itself(analysed: Path) -> None:
    check = analysis_matches(SEED, analysed)
    assert check.ok, check.summary
    assert check.name == "analysis"
    assert check.summary.startswith("analysis matches the recomputation: 2 symbols, 360 ticks")
    assert check.evidence["bars_expected"] == 20 + 4 + 10 + 2
    assert check.evidence["indicators_expected"] > 0
    assert all(f["count"] == 0 for f in check.evidence["findings"].values())


def test_analysis_fails_naming_a_bar_that_differs_from_the_recomputation(
    analysed: Path,
) -> None:
    start = BASE_MSC + 5 * 60_000
    as_agent(
        analysed,
        "UPDATE bars SET close = close + 0.5 "
        "WHERE symbol = 'EURUSD' AND timeframe = '1m' AND start_msc = ?",
        (start,),
    )
    check = analysis_matches(SEED, analysed)
    assert not check.ok
    assert check.summary.startswith("analysis differs from the recomputation")
    findings = check.evidence["findings"]
    assert findings["differing_bars"]["count"] == 1
    (offender,) = findings["differing_bars"]["first"]
    assert offender.startswith(f"bars['EURUSD', '1m', {start}] close: expected ")
    assert sum(f["count"] for f in findings.values()) == 1


def test_analysis_fails_naming_a_missing_bar_and_a_watermark_that_miscounts(
    analysed: Path,
) -> None:
    as_agent(analysed, "DELETE FROM bars WHERE symbol = 'GBPUSD' AND timeframe = '5m'")
    as_agent(analysed, "UPDATE watermarks SET ticks_seen = ticks_seen + 1 WHERE symbol = 'EURUSD'")
    check = analysis_matches(SEED, analysed)
    assert not check.ok
    findings = check.evidence["findings"]
    assert findings["missing_bars"]["count"] == 2
    assert findings["missing_bars"]["first"][0].startswith("bars['GBPUSD', '5m', ")
    (bad,) = findings["bad_watermarks"]["first"]
    assert bad == "watermarks['EURUSD'] ticks_seen: expected 240, found 241"


def test_analysis_of_an_agent_lagging_behind_the_bot_still_matches(analysed: Path) -> None:
    write_ticks(analysed, tick_rows("EURUSD", 60, start=240))  # after the agent's watermark
    check = analysis_matches(SEED, analysed)
    assert check.ok, check.summary
    assert check.evidence["ticks_covered"] == 360


@pytest.mark.parametrize("ticks", [0, 50])
def test_analysis_fails_when_the_agent_produced_no_bars(data_dir: Path, ticks: int) -> None:
    if ticks:
        write_ticks(data_dir, tick_rows("EURUSD", ticks))  # the agent never ran
    check = analysis_matches(SEED, data_dir)
    assert not check.ok
    assert check.summary == "the agent produced no bars: nothing to compare"
    assert check.evidence["bars_expected"] == 0


# --- api_answers without an API ------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_api_answers_fails_naming_the_url_when_nothing_answers(data_dir: Path) -> None:
    write_ticks(data_dir, tick_rows("EURUSD", 5))
    url = f"http://127.0.0.1:{closed_port()}"
    check = api_answers(url, SEED, data_dir, ["EURUSD"])
    assert not check.ok
    assert check.name == "api_answers"
    assert check.summary.startswith(f"API unreachable at {url}: ")
    assert check.evidence == {}


def test_api_answers_fails_when_there_is_no_symbol_to_ask_about(data_dir: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"  # never asked: there is nothing to ask
    check = api_answers(url, SEED, data_dir, [])
    assert not check.ok
    assert check.summary == "0 API answers compared with the databases, 0 differ"
    assert check.evidence == {"compared": 0, "first_differences": []}


# --- api_answers against the real API ------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API on data prepared as tests/test_api.py prepares it (ticks, bars, indicators)."""
    directory = tmp_path_factory.mktemp("api-check") / "data"
    prepare(directory)
    running = start_server(directory, "--log-max-delay", "0.02")
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture
def copy_of_served(
    served: Server, tmp_path: Path
) -> Callable[[Callable[[sqlite3.Connection, sqlite3.Connection], None]], Path]:
    """`copy(change)`: the same data prepared again elsewhere, changed by its owners."""

    def copy(change: Callable[[sqlite3.Connection, sqlite3.Connection], None]) -> Path:
        other = tmp_path / "other" / "data"
        access = prepare(other)
        ticks, analysis = access.connect("bot", "ticks"), access.connect("agent", "analysis")
        try:
            with transaction(ticks), transaction(analysis):
                change(ticks, analysis)
        finally:
            ticks.close()
            analysis.close()
        return other

    return copy


@pytest.mark.slow
def test_api_answers_pass_when_every_answer_equals_the_database(served: Server) -> None:
    check = api_answers(served.url, SEED, served.data_dir, list(TICK_COUNTS))
    assert check.ok, json.dumps(check.evidence, indent=1)[:2000]
    # Each symbol with ticks: latest, first ticks, first bars (US500.cash has no bars: equal too).
    assert check.evidence == {"compared": 3 * len(TICK_COUNTS), "first_differences": []}
    assert check.summary == "9 API answers compared with the databases, 0 differ"


@pytest.mark.slow
def test_api_answers_for_a_symbol_without_ticks_expect_a_404(served: Server) -> None:
    check = api_answers(served.url, SEED, served.data_dir, ["NOSUCH"])
    assert check.ok, check.summary
    assert check.evidence["compared"] == 1


@pytest.mark.slow
def test_api_answers_ask_about_the_first_five_symbols_only(served: Server) -> None:
    symbols = [*TICK_COUNTS, "NONE1", "NONE2", "NONE3", "NONE4"]
    assert len(symbols) > SAMPLE_SYMBOLS
    check = api_answers(served.url, SEED, served.data_dir, symbols)
    assert check.ok, check.summary
    assert check.evidence["compared"] == 3 * len(TICK_COUNTS) + (SAMPLE_SYMBOLS - len(TICK_COUNTS))


@pytest.mark.slow
def test_api_answers_fail_naming_each_endpoint_whose_answer_differs(
    served: Server,
    copy_of_served: Callable[[Callable[[sqlite3.Connection, sqlite3.Connection], None]], Path],
) -> None:
    def change(ticks: sqlite3.Connection, analysis: sqlite3.Connection) -> None:
        # The newest EURUSD tick is gone; GBPUSD's first one-minute bar closes elsewhere.
        ticks.execute(
            "DELETE FROM ticks WHERE rowid = (SELECT rowid FROM ticks WHERE symbol = 'EURUSD' "
            "ORDER BY time_msc DESC, seq DESC LIMIT 1)"
        )
        analysis.execute(
            "UPDATE bars SET close = close + 1 WHERE rowid = (SELECT rowid FROM bars "
            "WHERE symbol = 'GBPUSD' AND timeframe = '1m' ORDER BY start_msc LIMIT 1)"
        )

    other = copy_of_served(change)
    check = api_answers(served.url, SEED, other, ["EURUSD", "GBPUSD"])
    assert not check.ok
    assert check.summary == "6 API answers compared with the databases, 2 differ"
    latest, bars = check.evidence["first_differences"]
    assert latest["endpoint"] == "/ticks/EURUSD/latest"
    assert latest["api"]["time_msc"] > latest["database"]["time_msc"]
    assert bars["endpoint"] == "/bars/GBPUSD"
    # Long answers are clipped to their first rows and a count of the rest.
    assert bars["api"][3] == "... 2 more" and bars["database"][3] == "... 2 more"
    assert bars["api"][0]["close"] + 1 == pytest.approx(bars["database"][0]["close"])


@pytest.mark.slow
def test_api_answers_name_at_most_five_differences(
    served: Server,
    copy_of_served: Callable[[Callable[[sqlite3.Connection, sqlite3.Connection], None]], Path],
) -> None:
    def change(ticks: sqlite3.Connection, analysis: sqlite3.Connection) -> None:
        ticks.execute("UPDATE ticks SET bid = bid + 1")  # every tick answer differs
        analysis.execute("UPDATE bars SET open = open + 1")  # and every bars answer

    other = copy_of_served(change)
    check = api_answers(served.url, SEED, other, list(TICK_COUNTS))
    assert not check.ok
    assert check.summary == "9 API answers compared with the databases, 8 differ"
    assert len(check.evidence["first_differences"]) == FIRST
