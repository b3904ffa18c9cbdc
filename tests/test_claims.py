"""Claim verdicts from paired runs: each verdict follows from the figures, and can go every way."""

from __future__ import annotations

import pytest

from harness.results.report import Claim, Repeat
from harness.runs.claims import CONDITIONAL, FAILS, HOLDS, UNTESTED, judge_claims
from tests.fixtures.reports import make_repeat


def _repeat(
    variant: str,
    *,
    layout: str = "separate",
    journal: str = "wal",
    busy: int = 0,
    ticks_per_s: float = 1000.0,
    commit_p99: float = 5.0,
    groups: dict[str, tuple[int, float, float]] | None = None,
    failed: tuple[str, ...] = (),
    forbidden: int = 0,
    backend: str = "sqlite",
    lock_waits: int = 0,
) -> Repeat:
    """A repeat as `splitdb run` reports it, with what the claims read set from the arguments."""
    names = ("contention", "durability", "analysis", "api_answers", "integrity", "status_board")
    checks = [
        {
            "name": n,
            "ok": n not in failed,
            "summary": "",
            "evidence": (
                {"busy_events": busy, "lock_wait_ms": 1.0}
                | ({"lock_waits": lock_waits} if backend == "postgres" else {})
                if n == "contention"
                else {}
            ),
        }
        for n in names
    ]
    checks.append(
        {
            "name": "permissions",
            "ok": "permissions" not in failed,
            "summary": "",
            "evidence": {"forbidden": forbidden, "denied": forbidden},
        }
    )
    repeat = make_repeat(1, variant)
    repeat["topology"] = {"layout": layout, "databases": {"ticks": {"journal_mode": journal}}}
    if backend != "sqlite":
        repeat["topology"]["backend"] = backend
    repeat["checks"] = checks
    bot = repeat["metrics"]["bot"]
    bot["ticks_per_s"] = ticks_per_s
    bot["commit_latency"]["p99_ms"] = commit_p99
    bot["lock_wait_p99_ms"] = commit_p99 / 10
    group = repeat["metrics"]["groups"]["load-clients"]
    repeat["metrics"]["groups"] = {
        g: {**group, "workers": w, "ok_per_s": rate, "latency": {**group["latency"], "p99_ms": p99}}
        for g, (w, rate, p99) in (groups or {}).items()
    }
    return Repeat.model_validate(repeat)


def _verdicts(*repeats: Repeat) -> dict[str, Claim]:
    return {c.claim: c for c in judge_claims(list(repeats))}


def test_no_locking_holds_when_seed_never_locks_and_legacy_does() -> None:
    claims = _verdicts(_repeat("seed"), _repeat("legacy", layout="shared", busy=40))
    claim = claims["No more database locking"]
    assert claim.verdict == HOLDS
    assert claim.figures["legacy"]["busy_errors"] == 40


def test_no_locking_is_conditional_when_delete_mode_locks() -> None:
    claims = _verdicts(
        _repeat("seed"),
        _repeat("seed-delete", journal="delete", busy=12),
        _repeat("legacy", layout="shared", busy=3),
    )
    claim = claims["No more database locking"]
    assert claim.verdict == CONDITIONAL
    assert any("12 busy" in c for c in claim.conditions)


def test_no_locking_fails_when_the_seed_layout_locks_in_wal() -> None:
    claims = _verdicts(_repeat("seed", busy=1), _repeat("legacy", layout="shared", busy=9))
    assert claims["No more database locking"].verdict == FAILS


def test_no_locking_is_conditional_when_the_baseline_never_locked() -> None:
    claims = _verdicts(_repeat("seed"), _repeat("legacy", layout="shared"))
    assert claims["No more database locking"].verdict == CONDITIONAL


@pytest.mark.parametrize(
    ("legacy_rate", "legacy_p99", "verdict"),
    [(400.0, 12.0, HOLDS), (400.0, 5.0, CONDITIONAL), (990.0, 5.5, FAILS)],
)
def test_much_faster_is_a_ratio_of_the_same_run(
    legacy_rate: float, legacy_p99: float, verdict: str
) -> None:
    claims = _verdicts(
        _repeat("seed", ticks_per_s=1000.0, commit_p99=5.0),
        _repeat("legacy", layout="shared", ticks_per_s=legacy_rate, commit_p99=legacy_p99),
    )
    claim = claims["Much faster performance"]
    assert claim.verdict == verdict
    assert claim.figures["bot ticks/s"]["speedup"] == round(1000.0 / legacy_rate, 2)


def test_much_faster_is_untested_without_both_layouts() -> None:
    assert _verdicts(_repeat("seed"))["Much faster performance"].verdict == UNTESTED


def test_scalability_compares_the_two_curves() -> None:
    seed = [_repeat(f"seed-{n}", groups={"load-r": (n, 100.0 * n, 1.0)}) for n in (1, 4)]
    flat = [
        _repeat(f"legacy-{n}", layout="shared", groups={"load-r": (n, 100.0, 1.0)}) for n in (1, 4)
    ]
    claim = _verdicts(*seed, *flat)["Better scalability"]
    assert claim.verdict == HOLDS
    assert claim.figures["throughput gain, fewest to most workers"] == {
        "seed": 4.0,
        "legacy": 1.0,
    }
    worse = [
        _repeat(f"legacy-{n}", layout="shared", groups={"load-r": (n, 100.0 * n * n, 1.0)})
        for n in (1, 4)
    ]
    assert _verdicts(*seed, *worse)["Better scalability"].verdict == FAILS


def test_permissions_claim_needs_attempts_and_states_the_in_process_limit() -> None:
    assert _verdicts(_repeat("seed"))["Access permissions verified"].verdict == UNTESTED
    claim = _verdicts(_repeat("seed", forbidden=50))["Access permissions verified"]
    assert claim.verdict == CONDITIONAL
    assert "opens a file itself" in claim.conditions[0]
    leaked = _verdicts(_repeat("seed", forbidden=50, failed=("permissions",)))
    assert leaked["Access permissions verified"].verdict == FAILS


def test_a_failed_correctness_check_fails_concurrency_and_production_readiness() -> None:
    claims = _verdicts(_repeat("seed", failed=("durability",)))
    assert claims["Concurrent operations working"].verdict == FAILS
    assert claims["Production ready"].verdict == FAILS
    assert "seed: durability" in claims["Production ready"].conditions
    healthy = _verdicts(_repeat("seed"))
    assert healthy["Concurrent operations working"].verdict == HOLDS
    assert healthy["Production ready"].verdict == CONDITIONAL


# -- the PostgreSQL column --------------------------------------------------------------------


def test_a_postgres_arm_is_judged_in_a_column_of_its_own_not_as_the_seed() -> None:
    claims = _verdicts(
        _repeat("seed", busy=3),
        _repeat("legacy", layout="shared", busy=40, ticks_per_s=1000.0),
        _repeat("postgres", backend="postgres", ticks_per_s=2500.0, commit_p99=2.0, forbidden=9),
    )
    locking = claims["No more database locking"]
    # The seed's 3 busy errors fail it; the server's arm does not rescue the seed's verdict.
    assert locking.verdict == FAILS
    assert locking.postgres is not None
    assert locking.postgres.verdict == HOLDS
    assert "postgres" not in locking.figures
    assert locking.postgres.figures["postgres"] == {
        "backend": "postgres",
        "busy_errors": 0,
        "lock_waits": 0,
    }
    assert locking.postgres.conditions == []  # no journal mode to hold in on a server
    faster = claims["Much faster performance"].postgres
    assert faster is not None and faster.verdict == HOLDS
    assert faster.figures["bot ticks/s"]["speedup"] == 2.5
    permissions = claims["Access permissions verified"].postgres
    assert permissions is not None and permissions.verdict == HOLDS
    assert permissions.conditions == []  # the server enforces the grants for any client


def test_lock_waits_on_the_server_count_against_no_locking() -> None:
    claims = _verdicts(
        _repeat("seed"),
        _repeat("legacy", layout="shared", busy=40),
        _repeat("postgres", backend="postgres", lock_waits=2),
    )
    on_server = claims["No more database locking"].postgres
    assert on_server is not None and on_server.verdict == FAILS
    assert on_server.figures["postgres"]["lock_waits"] == 2


def test_without_a_postgres_arm_there_is_no_column() -> None:
    claims = _verdicts(_repeat("seed"), _repeat("legacy", layout="shared", busy=40))
    assert all(c.postgres is None for c in claims.values())
