"""The benchmark gate's floors: how far the pooled medians of base and head drift apart when both
are the same code, measured in turns on one machine.

`harness.results.floors` calibrates floors for separate runs: each run's median against another
run's, taken at different times, so the machine's state between them is in the floor. The gate
(`splitdb bench`) runs base and head interleaved and pools each side's rounds, so the state of the
machine weighs on both sides alike; what is left is the difference between two pooled medians of
unchanged code. `splitdb bench --calibrate GATE...` reads gates run with base == head (`--base
HEAD` on a clean tree) and gives each metric a floor from what they measured.

The rule. Each gate gives, per metric, the ratio of its two pooled medians, largest over smallest
(1 when equal). Across k gates the largest ratio is R; the floor is R ** f - 1, rounded up to a
whole percent. The factor f follows from a model: the log of a gate's ratio is sigma times a
standard normal Z (two pooled medians of one code differ by symmetric noise), so log R is sigma
times M_k, the largest |Z_i| of k, and a later gate of unchanged code crosses the floor when
|Z| > f * M_k, whatever sigma. f is chosen, by numeric integration over the distribution of M_k,
such that this happens with probability FALSE_ALARM (one in a thousand per metric, as for the
benchmark floors): f = 4.38 for 5 gates, 2.56 for 10. Metrics that were zero in some gate get no
floor (they keep the metric's own).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from harness.errors import ComparisonError
from harness.results.compare import compare_paths
from harness.results.comparison import Comparison
from harness.results.floors import FALSE_ALARM
from harness.results.gate import GATE_FILE, SIDES, gate_inputs

MIN_GATES = 3
_STEP = 0.001  # grid step of the numeric integration, in sigmas


@lru_cache(maxsize=64)
def pair_safety_factor(gates: int, false_alarm: float = FALSE_ALARM) -> float:
    """The f with P(|Z| > f * M) = false_alarm, M the largest |Z_i| of `gates` standard normals."""
    import numpy as np  # only here: the command line imports this module for --calibrate alone

    if gates < 1:
        raise ValueError(f"the largest of a sample needs at least 1 gate (got {gates})")
    m = np.arange(0.0, 12.0 + _STEP / 2, _STEP)
    phi = np.exp(-(m**2) / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 + np.concatenate(([0.0], np.cumsum((phi[1:] + phi[:-1]) / 2) * _STEP))
    # density of M: d/dm (2 Phi(m) - 1) ** k = k (2 Phi(m) - 1) ** (k - 1) * 2 phi(m)
    density = gates * (2 * cdf - 1) ** (gates - 1) * 2 * phi
    mass = density * _STEP

    def crossing(f: float) -> float:
        tail = 2 * (1 - np.interp(f * m, m, cdf, right=1.0))  # P(|Z| > f m)
        return float(np.sum(mass * tail))

    low, high = 0.1, 1000.0
    while high / low > 1 + 1e-6:
        mid = math.sqrt(low * high)
        low, high = (mid, high) if crossing(mid) > false_alarm else (low, mid)
    return high


@dataclass(frozen=True)
class PairCalibration:
    """Floors from gates of unchanged code, per metric.

    `ratios` holds each gate's ratio of the two pooled medians (largest over smallest), in gate
    order; `floors` the floor in percent; `skipped` the metrics without a floor (not in every gate,
    or zero in one).
    """

    gates: tuple[str, ...]
    factor: float
    ratios: Mapping[str, tuple[float, ...]]
    floors: Mapping[str, float]
    skipped: tuple[str, ...]

    def largest_change_pct(self, name: str) -> float:
        return 100 * (max(self.ratios[name]) - 1)


def _gate_ratios(gate_dir: Path) -> dict[str, float | None]:
    """Per metric, the ratio of the pooled medians of one gate (None when one is zero)."""
    if not (gate_dir / GATE_FILE).is_file():
        raise ComparisonError(
            f"--calibrate {gate_dir}: not a gate directory (no {GATE_FILE}); pass directories "
            "splitdb bench --base HEAD wrote, one per gate of unchanged code"
        )
    inputs = gate_inputs(gate_dir)
    empty = [side for side in SIDES if not inputs[side]]
    if empty:
        raise ComparisonError(
            f"--calibrate {gate_dir}: no measurements of the {' and '.join(empty)} (an "
            "interrupted or failed gate); pass gates that ran to the end"
        )
    comparison: Comparison = compare_paths(inputs["base"], inputs["head"])
    ratios: dict[str, float | None] = {}
    for group in comparison.groups:
        for r in group.results:
            if r.metric.must_be_zero or r.base_value is None or r.new_value is None:
                continue
            b, n = r.base_value, r.new_value
            ratios[r.name] = max(b / n, n / b) if b > 0 and n > 0 else None
    return ratios


def calibrate_pairs(gate_dirs: Sequence[Path]) -> PairCalibration:
    """Floors from gate directories of unchanged code (see the module doc for the rule).

    Raises ComparisonError for fewer than MIN_GATES gates or a directory that is not a gate.
    """
    if len(gate_dirs) < MIN_GATES:
        raise ComparisonError(
            f"--calibrate needs at least {MIN_GATES} gates of unchanged code (got "
            f"{len(gate_dirs)}); run splitdb bench --base HEAD again and pass every gate "
            "directory (ten give tighter floors)"
        )
    per_gate = [_gate_ratios(Path(d)) for d in gate_dirs]
    names = list(dict.fromkeys(n for g in per_gate for n in g))
    ratios: dict[str, tuple[float, ...]] = {}
    for name in names:
        found = [g.get(name) for g in per_gate]
        if all(r is not None for r in found):
            ratios[name] = tuple(r for r in found if r is not None)
    factor = pair_safety_factor(len(gate_dirs))
    floors = {
        name: float(math.ceil(100 * (max(r) ** factor - 1) - 1e-9)) for name, r in ratios.items()
    }
    return PairCalibration(
        gates=tuple(map(str, gate_dirs)),
        factor=factor,
        ratios=ratios,
        floors=floors,
        skipped=tuple(n for n in names if n not in ratios),
    )


def pair_floors_toml(calibration: PairCalibration, *, command: str, when: datetime) -> str:
    """The gate's floors file, in the format `splitdb compare --floors` reads."""
    k, f = len(calibration.gates), calibration.factor
    lines = [
        "# Floors of the benchmark gate (`splitdb bench`, `tox -e bench`): how far the pooled",
        "# medians of base and head drift apart when both are the same code, run in turns.",
        f"# Written by: {command}",
        f"# On {when:%Y-%m-%d %H:%M %Z} from {k} gates of unchanged code.",
        f"# floor = (largest ratio of the pooled medians) ** {f:.2f} - 1, rounded up to a "
        f"percent; {f:.2f} is",
        f"# the safety factor for {k} gates (harness/results/pair_floors.py). [largest_change] "
        "is the largest ratio - 1.",
        f"runs = {k}",
        f"safety_factor = {f:.3f}",
        "",
        "[largest_change]  # percent, between the two sides' pooled medians",
        *(f"{json.dumps(n)} = {calibration.largest_change_pct(n):.1f}" for n in calibration.ratios),
        "",
        "[floors]  # percent",
        *(f"{json.dumps(n)} = {p:g}" for n, p in calibration.floors.items()),
    ]
    return "\n".join(lines) + "\n"
