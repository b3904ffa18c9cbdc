"""Checks that need the other processes' outputs: API answers vs the databases, and the agent's
analysis vs an independent recomputation from the ticks."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from harness.runs.checks import FIRST, Check
from harness.runs.reads import Reads
from harness.runs.recompute import compare_analysis
from reference.schema import BAR_COLUMNS, TICK_COLUMNS
from reference.topology import Topology

SAMPLE_SYMBOLS = 5
SAMPLE_ROWS = 100


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _dicts(
    conn: Reads, sql: str, params: Sequence[Any], columns: Sequence[str]
) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in conn.execute(sql, params)]


def api_answers(api_url: str, topology: Topology, data_dir: Path, symbols: Sequence[str]) -> Check:
    """For a sample of symbols, the API's latest tick, first ticks and first bars equal the
    database's rows (run it once the writers have stopped, so both sides hold still)."""
    ticks = _ro(topology.file_of("ticks", data_dir))
    analysis = _ro(topology.file_of("analysis", data_dir))
    try:
        return api_answers_on(api_url, ticks, analysis, symbols)
    finally:
        ticks.close()
        analysis.close()


def api_answers_on(api_url: str, ticks: Reads, analysis: Reads, symbols: Sequence[str]) -> Check:
    """`api_answers` on open connections to the ticks and the analysis."""
    cols = ", ".join(TICK_COLUMNS)
    bar_cols = ", ".join(BAR_COLUMNS)
    compared = 0
    differences: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=api_url, timeout=10.0) as client:
            for symbol in list(symbols)[:SAMPLE_SYMBOLS]:
                latest = _dicts(
                    ticks,
                    f"SELECT {cols} FROM ticks WHERE symbol = ? "
                    "ORDER BY time_msc DESC, seq DESC LIMIT 1",
                    (symbol,),
                    TICK_COLUMNS,
                )
                first = _dicts(
                    ticks,
                    f"SELECT {cols} FROM ticks WHERE symbol = ? ORDER BY time_msc, seq LIMIT ?",
                    (symbol, SAMPLE_ROWS),
                    TICK_COLUMNS,
                )
                bars = _dicts(
                    analysis,
                    f"SELECT {bar_cols} FROM bars WHERE symbol = ? AND timeframe = '1m' "
                    "ORDER BY start_msc LIMIT ?",
                    (symbol, SAMPLE_ROWS),
                    BAR_COLUMNS,
                )
                cases: list[tuple[str, Any, Any]] = []
                response = client.get(f"/ticks/{symbol}/latest")
                if latest:
                    cases.append((f"/ticks/{symbol}/latest", response.json(), latest[0]))
                else:
                    cases.append((f"/ticks/{symbol}/latest", response.status_code, 404))
                if first:
                    got = client.get(f"/ticks/{symbol}", params={"limit": SAMPLE_ROWS}).json()
                    cases.append((f"/ticks/{symbol}", got.get("ticks"), first))
                    got = client.get(
                        f"/bars/{symbol}", params={"timeframe": "1m", "limit": SAMPLE_ROWS}
                    ).json()
                    cases.append((f"/bars/{symbol}", got.get("bars"), bars))
                for endpoint, answer, expected in cases:
                    compared += 1
                    if answer != expected:
                        differences.append(
                            {
                                "endpoint": endpoint,
                                "api": _clip(answer),
                                "database": _clip(expected),
                            }
                        )
    except httpx.HTTPError as exc:
        return Check("api_answers", False, f"API unreachable at {api_url}: {exc}", {})
    return Check(
        "api_answers",
        compared > 0 and not differences,
        f"{compared} API answers compared with the databases, {len(differences)} differ",
        {"compared": compared, "first_differences": differences[:FIRST]},
    )


def _clip(value: Any) -> Any:
    if isinstance(value, list) and len(value) > 3:
        return [*value[:3], f"... {len(value) - 3} more"]
    return value


def analysis_matches(topology: Topology, data_dir: Path) -> Check:
    """The agent's bars and indicators equal an independent recomputation from the ticks."""
    ticks = _ro(topology.file_of("ticks", data_dir))
    analysis = _ro(topology.file_of("analysis", data_dir))
    try:
        return analysis_on(ticks, analysis)
    finally:
        ticks.close()
        analysis.close()


def analysis_on(ticks: Reads, analysis: Reads) -> Check:
    """`analysis_matches` on open connections to the ticks and the analysis."""
    result = compare_analysis(ticks, analysis)
    ok = result.ok and result.bars_expected > 0
    summary = result.summary().splitlines()[0]
    if result.bars_expected == 0:
        summary = "the agent produced no bars: nothing to compare"
    return Check("analysis", ok, summary, result.to_dict())
