"""A verdict on each of the seed's claims, from a run whose variants pair the two layouts.

The design note (docs/design.md) claims: no more database locking, much faster performance, better
scalability, access permissions verified, concurrent operations working, production ready. Each
verdict is `holds`, `holds only under stated conditions`, `fails` or `not tested in this run`,
with the figures behind it and the conditions. Every figure is a ratio or a count measured in
this one run, on this machine, so no cross-run timing is involved.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from statistics import median
from typing import Any

from harness.results.report import CheckResult, Claim, ClaimVerdict, Metrics, Repeat

HOLDS = "holds"
CONDITIONAL = "holds only under stated conditions"
FAILS = "fails"
UNTESTED = "not tested in this run"

# "Much" faster: at least this ratio on the headline figure.
MUCH = 2.0
CORRECTNESS_CHECKS = ("durability", "analysis", "api_answers", "integrity", "status_board")
IN_PROCESS_LIMIT = (
    "permissions are enforced inside each process (authorizer, read-only connections); a process "
    "that opens a file itself is not stopped until OS-level enforcement exists"
)

# One figure of a repeat's metrics, None when that repeat did not measure it.
Figure = Callable[[Metrics], float | None]


class _Arm:
    """The repeats of one variant, with what the claims need from them."""

    def __init__(self, name: str, repeats: list[Repeat]) -> None:
        self.name = name
        self.repeats = repeats
        # The topology as a mapping, in the topology format (reference/topology.py).
        topology = repeats[0].topology
        self.layout: str = topology["layout"]
        self.backend: str = topology.get("backend", "sqlite")
        self.journal: str = topology["databases"]["ticks"]["journal_mode"]
        self.checks = [c for r in repeats for c in r.checks]

    @property
    def separate(self) -> bool:
        return self.layout == "separate"

    def check(self, name: str) -> list[CheckResult]:
        return [c for c in self.checks if c.name == name]

    def busy(self) -> int:
        """Busy errors, and on a server the lock waits, deadlocks and serialization failures
        its contention check counts too."""
        return sum(
            c.evidence.get(key, 0)
            for c in self.check("contention")
            for key in ("busy_events", "lock_waits", "deadlocks", "serialization_failures")
        )

    def lock_waits(self) -> int:
        return sum(c.evidence.get("lock_waits", 0) for c in self.check("contention"))

    def lock_wait_ms(self) -> float:
        return float(sum(c.evidence.get("lock_wait_ms", 0.0) for c in self.check("contention")))

    def metric(self, read: Figure) -> float | None:
        """Median over repeats of the figure `read` takes from `metrics`, None when absent."""
        values = [v for v in (read(r.metrics) for r in self.repeats) if v is not None]
        return median(values) if values else None


def judge_claims(repeats: Sequence[Repeat]) -> list[Claim]:
    """Per seed claim: verdict, figures and conditions, from repeats tagged with `variant`."""
    by_variant: dict[str, list[Repeat]] = defaultdict(list)
    for repeat in repeats:
        by_variant[repeat.variant or "default"].append(repeat)
    arms = [_Arm(name, reps) for name, reps in by_variant.items()]
    sqlite = [a for a in arms if a.backend == "sqlite"]
    seed = [a for a in sqlite if a.separate]
    legacy = [a for a in sqlite if not a.separate]
    claims = _judge(seed, legacy)
    server = [a for a in arms if a.backend == "postgres"]
    if not server:
        return claims
    # The same claims with the server's arms in the seed's place (against the same legacy).
    on_server = _judge(server, legacy, on_server=True)
    return [
        claim.model_copy(
            update={
                "postgres": ClaimVerdict(
                    verdict=other.verdict, figures=other.figures, conditions=other.conditions
                )
            }
        )
        for claim, other in zip(claims, on_server, strict=True)
    ]


def _judge(seed: list[_Arm], legacy: list[_Arm], *, on_server: bool = False) -> list[Claim]:
    return [
        _no_locking(seed, legacy, on_server=on_server),
        _much_faster(seed, legacy),
        _scalability(seed, legacy, name="postgres" if on_server else "seed"),
        _permissions(seed, enforced_by_server=on_server),
        _concurrent(seed),
        _production_ready(seed, enforced_by_server=on_server),
    ]


def _claim(
    claim: str, verdict: str, figures: dict[str, Any], conditions: Sequence[str] = ()
) -> Claim:
    return Claim(claim=claim, verdict=verdict, figures=figures, conditions=list(conditions))


def _no_locking(seed: list[_Arm], legacy: list[_Arm], *, on_server: bool = False) -> Claim:
    """On a server's arms (`on_server`) journal modes do not apply: every lock wait, busy
    error, deadlock or serialization failure counts."""
    claim = "No more database locking"
    figures = {
        a.name: (
            {
                "layout": a.layout,
                "journal_mode": a.journal,
                "busy_errors": a.busy(),
                "lock_wait_ms": round(a.lock_wait_ms(), 1),
            }
            if a.backend == "sqlite"
            else {
                "backend": a.backend,
                "busy_errors": a.busy() - a.lock_waits(),
                "lock_waits": a.lock_waits(),
            }
        )
        for a in seed + legacy
    }
    if not seed:
        return _claim(claim, UNTESTED, figures)
    wal = [a for a in seed if a.journal == "wal" or on_server]
    other = [a for a in seed if a not in wal]
    conditions = [
        f"{a.name}: {a.busy()} busy/locked errors in {a.journal} journal mode"
        for a in other
        if a.busy()
    ]
    if any(a.busy() for a in wal):
        return _claim(claim, FAILS, figures, [f"{a.name}: {a.busy()} busy errors" for a in wal])
    if conditions:
        return _claim(claim, CONDITIONAL, figures, ["holds in WAL mode", *conditions])
    if legacy and not any(a.busy() for a in legacy):
        # Nothing locked in the baseline either: the load never tested the claim.
        return _claim(
            claim, CONDITIONAL, figures, ["the legacy layout did not lock at this load either"]
        )
    return _claim(claim, HOLDS, figures, ["holds in WAL mode"] if wal and not on_server else [])


_SPEED_METRICS: tuple[tuple[str, Figure, bool], ...] = (
    ("bot ticks/s", lambda m: m.bot.ticks_per_s, True),
    ("bot commit p99 ms", lambda m: m.bot.commit_latency.p99_ms, False),
    ("bot lock wait p99 ms", lambda m: m.bot.lock_wait_p99_ms, False),
)


def _group_ok_per_s(group: str) -> Figure:
    return lambda m: m.groups[group].ok_per_s if group in m.groups else None


def _group_p99_ms(group: str) -> Figure:
    return lambda m: m.groups[group].latency.p99_ms if group in m.groups else None


def _speed_figures(fast: _Arm, slow: _Arm) -> dict[str, dict[str, Any]]:
    """Per metric: both values and the seed-over-legacy speed-up (>1 means the seed is faster)."""
    metrics = list(_SPEED_METRICS)
    for group in fast.repeats[0].metrics.groups:
        if group in slow.repeats[0].metrics.groups:
            metrics.append((f"{group} ok/s", _group_ok_per_s(group), True))
            metrics.append((f"{group} p99 ms", _group_p99_ms(group), False))
    out: dict[str, dict[str, Any]] = {}
    for label, read, higher_better in metrics:
        a, b = fast.metric(read), slow.metric(read)
        if a is None or b is None or a <= 0 or b <= 0:
            continue
        ratio = a / b if higher_better else b / a
        out[label] = {fast.name: a, slow.name: b, "speedup": round(ratio, 2)}
    return out


def _much_faster(seed: list[_Arm], legacy: list[_Arm]) -> Claim:
    claim = "Much faster performance"
    if not seed or not legacy:
        return _claim(claim, UNTESTED, {}, ["needs a run pairing the seed and legacy layouts"])
    fast = next((a for a in seed if a.journal == "wal"), seed[0])
    slow = legacy[0]
    figures = _speed_figures(fast, slow)
    if not figures:
        return _claim(claim, UNTESTED, figures, ["no metric measured in both variants"])
    much = [k for k, v in figures.items() if v["speedup"] >= MUCH]
    slower = [k for k, v in figures.items() if v["speedup"] < 1 / 1.1]
    conditions = [f"{fast.name} vs {slow.name}, same load, same machine, same run"]
    if much and len(much) == len(figures):
        return _claim(claim, HOLDS, figures, conditions)
    if much:
        conditions.append(f"at least {MUCH:g}x only on: {', '.join(much)}")
        if slower:
            conditions.append(f"slower on: {', '.join(slower)}")
        return _claim(claim, CONDITIONAL, figures, conditions)
    best = max(v["speedup"] for v in figures.values())
    conditions.append(f"best speed-up {best:g}x, below the {MUCH:g}x that 'much' needs")
    return _claim(claim, FAILS, figures, conditions)


def _scalability(seed: list[_Arm], legacy: list[_Arm], *, name: str = "seed") -> Claim:
    claim = "Better scalability"

    def curve(arms: list[_Arm]) -> dict[int, float]:
        points: dict[int, float] = {}
        for arm in arms:
            groups = arm.repeats[0].metrics.groups
            total_workers = sum(g.workers or 0 for g in groups.values())
            rate = sum((arm.metric(_group_ok_per_s(g)) or 0.0) for g in groups)
            if total_workers:
                points[total_workers] = rate
        return dict(sorted(points.items()))

    seed_curve, legacy_curve = curve(seed), curve(legacy)
    figures: dict[str, Any] = {
        f"{name} ok/s by workers": seed_curve,
        "legacy ok/s by workers": legacy_curve,
    }
    if len(seed_curve) < 2 or len(legacy_curve) < 2:
        return _claim(claim, UNTESTED, figures, ["needs a sweep of worker counts on both layouts"])

    def gain(points: dict[int, float]) -> float:
        low, high = points[min(points)], points[max(points)]
        return high / low if low > 0 else 0.0

    seed_gain, legacy_gain = gain(seed_curve), gain(legacy_curve)
    figures["throughput gain, fewest to most workers"] = {
        name: round(seed_gain, 2),
        "legacy": round(legacy_gain, 2),
    }
    if seed_gain >= legacy_gain * 1.2:
        return _claim(claim, HOLDS, figures)
    if seed_gain >= legacy_gain:
        return _claim(claim, CONDITIONAL, figures, ["scales no worse, but not clearly better"])
    return _claim(claim, FAILS, figures)


def _permissions(seed: list[_Arm], *, enforced_by_server: bool = False) -> Claim:
    claim = "Access permissions verified"
    checks = [c for a in seed for c in a.check("permissions")]
    forbidden = sum(c.evidence.get("forbidden", 0) for c in checks)
    denied = sum(c.evidence.get("denied", 0) for c in checks)
    figures = {"forbidden_attempts": forbidden, "denied": denied}
    if forbidden == 0:
        return _claim(claim, UNTESTED, figures, ["no violator load in the seed-layout variants"])
    if not all(c.ok for c in checks):
        return _claim(claim, FAILS, figures)
    if enforced_by_server:
        # The grants are the server's: they hold for any client, not only ours.
        return _claim(claim, HOLDS, figures)
    return _claim(claim, CONDITIONAL, figures, [IN_PROCESS_LIMIT])


def _concurrent(seed: list[_Arm]) -> Claim:
    claim = "Concurrent operations working"
    if not seed:
        return _claim(claim, UNTESTED, {})
    results = {
        f"{a.name}: {name}": all(c.ok for c in a.check(name))
        for a in seed
        for name in CORRECTNESS_CHECKS
        if a.check(name)
    }
    failed = [k for k, ok in results.items() if not ok]
    if failed:
        return _claim(claim, FAILS, results, failed)
    return _claim(claim, HOLDS, results)


def _production_ready(seed: list[_Arm], *, enforced_by_server: bool = False) -> Claim:
    claim = "Production ready"
    if not seed:
        return _claim(claim, UNTESTED, {})
    failed = sorted({f"{a.name}: {c.name}" for a in seed for c in a.checks if not c.ok})
    figures = {"checks": len([c for a in seed for c in a.checks]), "failed": failed}
    if failed:
        return _claim(claim, FAILS, figures, failed)
    conditions = [] if enforced_by_server else [IN_PROCESS_LIMIT]
    conditions += [
        f"{a.name}: busy errors in {a.journal} journal mode; use WAL"
        for a in seed
        if a.journal != "wal" and a.busy()
    ]
    return _claim(claim, CONDITIONAL if conditions else HOLDS, figures, conditions)
