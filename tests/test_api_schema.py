"""The API against its own OpenAPI schema: schemathesis sends what the schema allows and what it
forbids to a real server process on real SQLite files (tests/test_api.py's data), and every check
schemathesis has must hold: no 5xx; every status code, content type, header and body as
documented; every request the schema forbids refused with a 4xx, every one it allows accepted;
other methods answered 405 with `Allow`. The data holds, besides tests/test_api.py's, a symbol
whose rows sit at the limits of each column (EDGE), each of its answers validated too.

Its phases run as `schemathesis run` runs them (examples, coverage, fuzzing, stateful), in
process, bounded and deterministic: a fixed seed and derandomized generation, so CI sends the same
requests on every run. `pytest tests/test_api_schema.py -s` prints the cases per phase.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from reference.access import AccessManager, transaction
from reference.api import MAX_MSC
from reference.tickstore import insert_ticks
from tests.test_api import SEED as SEED_LAYOUT
from tests.test_api import prepare, start_server

# Fuzzing examples per operation and generation mode (positive, negative): 7 operations.
MAX_EXAMPLES = 100
SEED = 20240229


def _config(max_examples: int, seed: int) -> Any:
    import schemathesis

    config = schemathesis.Config.from_dict(
        {
            "seed": seed,
            "workers": 1,
            "generation": {
                "mode": "all",
                "max-examples": max_examples,
                "deterministic": True,
                "database": "none",
            },
        }
    )
    # Every check: the stateful and authorization ones hold vacuously on an API that creates
    # nothing and has no authentication, and stay in so a change that adds either is checked.
    config.projects.override.checks.update(included_check_names=["all"])
    return config


def fuzz(
    url: str, *, max_examples: int = MAX_EXAMPLES, seed: int = SEED
) -> tuple[Counter[str], list[str]]:
    """Run schemathesis against the API at `url`: (cases per phase, one line per failure)."""
    import schemathesis
    from schemathesis.engine import Status, events
    from schemathesis.engine import from_schema as engine_for

    schema = schemathesis.openapi.from_url(
        f"{url}/openapi.json", config=_config(max_examples, seed)
    )
    cases: Counter[str] = Counter()
    failures: list[str] = []
    for event in engine_for(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases[event.phase.value] += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failures.append(
                            f"{event.phase.value} {event.label}: {check.name}: "
                            f"{check.failure_info.failure.title} "
                            f"(reproduce: {check.failure_info.code_sample})"
                        )
        elif isinstance(event, events.NonFatalError):
            failures.append(f"error in {event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            failures.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            if event.stop_reason.value != "completed":
                failures.append(f"stopped early: {event.stop_reason.value}")
            failures += [f"after the run: {failure.title}" for failure in event.failures]
    return cases, failures


# A symbol of extreme values each column can hold: the last millisecond SQLite's integer holds,
# the largest and smallest floats, negative zero, NULLs, every character a symbol may have.
EDGE = "E.d_g#e+1-2"


def add_edge_values(data_dir: Path) -> None:
    """Rows at the limits of what the schema allows, for EDGE, as the bot and the agent write."""
    access = AccessManager(SEED_LAYOUT, data_dir)
    bot = access.connect("bot", "ticks")
    last = MAX_MSC // 1000
    insert_ticks(
        bot,
        [
            (EDGE, 0, 0, 0, 5e-324, 1.7976931348623157e308, None, None, None, None),
            (EDGE, 0, 1, 0, -0.0, 0.0, 0.0, 0, 0, 0.0),
            (EDGE, MAX_MSC, 0, last, 1e300, 1e300, 1e-300, 2**63 - 1, 2**32 - 1, 1e308),
        ],
    )
    bot.close()
    agent = access.connect("agent", "analysis")
    with transaction(agent):
        agent.executemany(
            "INSERT INTO bars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (EDGE, "1m", 0, 5e-324, 1e308, -1e308, -0.0, None, None),
                (EDGE, "5m", MAX_MSC, 1.0, 1.0, 1.0, 1.0, 2**63 - 1, 1e308),
            ],
        )
        agent.executemany(
            "INSERT INTO indicators VALUES (?, ?, ?, ?, ?)",
            [(EDGE, "1m", 0, "sma14", None), (EDGE, "5m", MAX_MSC, "rsi14", 1e308)],
        )
    agent.close()


def edge_failures(url: str) -> list[str]:
    """EDGE's rows through every endpoint, each answer validated against the schema."""
    import httpx
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for path, query in [
            ("/ticks/{symbol}", "limit=10000"),
            ("/ticks/{symbol}", f"start={MAX_MSC}&end={MAX_MSC}"),
            ("/ticks/{symbol}/latest", ""),
            ("/bars/{symbol}", "timeframe=1m"),
            ("/bars/{symbol}", f"timeframe=5m&start={MAX_MSC}"),
            ("/indicators/{symbol}", "timeframe=1m"),
            ("/indicators/{symbol}", "timeframe=5m&name=rsi14"),
        ]:
            response = http.get(path.replace("{symbol}", quote(EDGE, safe="")), params=query)
            try:
                assert response.status_code == 200, response.text
                assert EDGE in response.text
                schema[path]["GET"].validate_response(response)
            except Exception as exc:  # each answer's failure: all of them listed
                failures.append(f"GET {path} {query} for {EDGE}: {exc}")
    return failures


@pytest.mark.slow
def test_the_api_conforms_to_its_openapi_schema_under_every_check(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    prepare(data_dir)
    add_edge_values(data_dir)
    server = start_server(data_dir, "--log-max-delay", "0.02")
    try:
        cases, failures = fuzz(server.url)
        failures += edge_failures(server.url)
    finally:
        code = server.stop()
    print(f"\nschemathesis: {sum(cases.values())} cases ({dict(cases)})")
    assert failures == []
    assert code == 0, server.log()
    # Every phase ran (a config change that skipped one would pass vacuously).
    assert {"examples", "coverage", "fuzzing", "stateful"} <= set(cases), cases
