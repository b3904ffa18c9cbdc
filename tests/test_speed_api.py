"""`splitdb speed api`: the reference API and the plain FastAPI anchor measured in turns.

The command is a benchmark that reports, so nothing here asserts a speed: the tests check that
a run measures both sides for real and writes a report whose medians and ratio come from its
own rounds, that the anchor answers the same query as the reference API, and that bad input is
one line and exit 2 before anything starts.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import statistics
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.cli import main
from harness.speed.anchor_api import LATEST_SQL, create_anchor
from harness.speed.api import REPORT_JSON, REPORT_MARKDOWN, fill_ticks
from harness.speed.wrk import INSTALL_HINT, parse_wrk
from reference.api import sqlite_reads
from reference.schema import TICK_COLUMNS

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")

# Real wrk 4.1.0 output (`wrk -t2 -c10 -d2s --latency`), one with failures added.
WRK_OK = """\
Running 2s test @ http://127.0.0.1:42823/ticks/EURUSD/latest
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.77ms    7.06ms 100.71ms   94.72%
    Req/Sec     1.06k   354.30     2.26k    70.85%
  Latency Distribution
     50%  402.00us
     75%    5.76ms
     90%    8.84ms
     99%    1.04s
  21105 requests in 10.09s, 5.17MB read
Requests/sec:   2092.34
Transfer/sec:    524.37KB
"""
WRK_FAILING = WRK_OK.replace(
    "Requests/sec:",
    "  Socket errors: connect 0, read 2, write 1, timeout 3\n"
    "  Non-2xx or 3xx responses: 40\nRequests/sec:",
)


def test_wrk_output_is_read_with_its_units() -> None:
    result = parse_wrk(WRK_OK)
    assert result.requests_per_s == 2092.34
    assert result.requests == 21105
    assert result.seconds == pytest.approx(10.09)
    assert result.p50_ms == pytest.approx(0.402)
    assert result.p90_ms == pytest.approx(8.84)
    assert result.p99_ms == pytest.approx(1040.0)
    assert result.errors == 0


def test_wrk_failures_count_as_errors() -> None:
    assert parse_wrk(WRK_FAILING).errors == 40 + 2 + 1 + 3


def test_wrk_output_without_the_latency_distribution_is_refused_naming_it() -> None:
    without = "\n".join(line for line in WRK_OK.splitlines() if "%  " not in line)
    with pytest.raises(ValueError, match="latency distribution"):
        parse_wrk(without)


def test_anchor_runs_the_reference_apis_latest_tick_query(tmp_path: Path) -> None:
    assert LATEST_SQL == sqlite_reads._LATEST_SQL
    ticks_file = fill_ticks(tmp_path / "data", ["EURUSD", "GBPUSD"], 101)
    with sqlite3.connect(ticks_file) as conn:
        newest = conn.execute(
            "SELECT * FROM ticks WHERE symbol = 'EURUSD' ORDER BY time_msc DESC LIMIT 1"
        ).fetchone()
    conn.close()

    async def ask(*paths: str) -> list[httpx.Response]:
        transport = httpx.ASGITransport(create_anchor(ticks_file))
        async with httpx.AsyncClient(transport=transport, base_url="http://anchor") as client:
            return [await client.get(path) for path in paths]

    answer, unknown = asyncio.run(ask("/ticks/EURUSD/latest", "/ticks/NOPE/latest"))
    assert answer.status_code == 200
    assert list(answer.json()) == list(TICK_COLUMNS)
    assert tuple(answer.json().values()) == newest
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--rounds", "0"], "--rounds"),
        (["--duration", "-1"], "--duration"),
        (["--duration", "1.5"], "--duration"),
        (["--connections", "x"], "--connections"),
        (["--ingest", "nan"], "--ingest"),
        (["--symbol", "EUR/USD"], "--symbol"),
        (["--threads", "4", "--connections", "2"], "--connections"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(
    argv: list[str], flag: str, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "out"
    assert main(["speed", "api", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert flag in err
    assert not out.exists()


def test_without_wrk_it_says_how_to_install_it_and_exits_2(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "out"
    assert main(["speed", "api", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"splitdb: error: {INSTALL_HINT}"]
    assert "apt-get install wrk" in err
    assert not out.exists()


@pytest.mark.slow
@needs_wrk
def test_a_short_run_measures_both_sides_and_reports_their_ratio(
    tmp_path: Path, capsys: Any
) -> None:
    argv = ["speed", "api", "--rounds", "2", "--duration", "1", "--warmup", "0"]
    assert main([*argv, "--ticks", "2000", "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    report = json.loads((run_dir / REPORT_JSON).read_text())
    rounds = report["rounds"]
    # Alternating, reference first, each round measured for real.
    assert [(r["round"], r["side"]) for r in rounds] == [
        (1, "reference"),
        (1, "anchor"),
        (2, "reference"),
        (2, "anchor"),
    ]
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in rounds)
    rates = {
        side: [r["requests_per_s"] for r in rounds if r["side"] == side]
        for side in ("reference", "anchor")
    }
    for side, values in rates.items():
        assert report["sides"][side]["requests_per_s"] == {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
    ratio = report["ratio"]
    expected = statistics.median(rates["reference"]) / statistics.median(rates["anchor"])
    assert ratio["requests_per_s"] == pytest.approx(expected)
    per_round = [
        ref / anchor for ref, anchor in zip(rates["reference"], rates["anchor"], strict=True)
    ]
    assert ratio["per_round"] == pytest.approx(per_round)
    # The servers' CPU per request, measured from their processes, and its ratio.
    assert all(r["cpu_us_per_request"] > 0 for r in rounds)
    cpu = {
        side: statistics.median(r["cpu_us_per_request"] for r in rounds if r["side"] == side)
        for side in ("reference", "anchor")
    }
    assert ratio["requests_per_cpu_s"] == pytest.approx(cpu["anchor"] / cpu["reference"])
    summary = (run_dir / REPORT_MARKDOWN).read_text()
    assert f"{ratio['requests_per_s']:.2f}" in summary
    assert "| reference |" in summary and "| anchor |" in summary
    captured = capsys.readouterr()
    assert captured.out == summary
    assert "round 2/2 anchor" in captured.err
