"""The two-sample test for measurements: Mann-Whitney U on raw samples, and medians.

`splitdb compare` calls a metric changed only when this test says the two sides differ more
than their noise explains. It uses ranks only: per-repeat latency percentiles are skewed and one
slow repeat (or benchmark round) is common, and ranks are not moved by either. A pytest-benchmark
file saved without its rounds has nothing to rank; `splitdb compare` judges it by its stored
median against the run-to-run floor alone (a t-test on the stored mean would let one slow round
decide).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The significance level a change must reach (p <= alpha) unless told otherwise.
DEFAULT_ALPHA = 0.01

# Exact rank-sum distributions are computed by dynamic programming up to this many pooled
# samples (the counts still fit a float64 exactly enough); above it the normal approximation
# with tie correction is already accurate to well under 1% of the p-value.
EXACT_MAX_SAMPLES = 60


@dataclass(frozen=True)
class TestResult:
    """A two-sided test: its statistic, p-value and how it was computed."""

    statistic: float
    p_value: float
    method: str


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count); values must not be empty."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2


def mad(values: Sequence[float]) -> float:
    """Median absolute deviation from the median (0 for a single value)."""
    centre = median(values)
    return median([abs(v - centre) for v in values])


def smallest_p_value(n1: int, n2: int) -> float:
    """The smallest two-sided p-value Mann-Whitney U can give for these sample sizes.

    Reached when the two samples do not overlap at all; ties only make it larger. When it is
    above the significance level, no difference can be detected, however large.
    """
    if n1 < 1 or n2 < 1:
        return 1.0
    return min(1.0, 2 / math.comb(n1 + n2, n1))


def _doubled_midranks(pooled: Sequence[float]) -> list[int]:
    """Twice the mid-rank of each value (ranks from 1), so tied values share an integer rank."""
    order = sorted(range(len(pooled)), key=lambda i: pooled[i])
    ranks = [0] * len(pooled)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and pooled[order[end + 1]] == pooled[order[start]]:
            end += 1
        for k in range(start, end + 1):
            # mid-rank of positions start..end (0-based) is (start + end) / 2 + 1
            ranks[order[k]] = start + end + 2
        start = end + 1
    return ranks


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Mann-Whitney U test of `a` against `b`; each needs at least one value.

    Exact (the permutation distribution of the rank sum, ties given mid-ranks) up to
    EXACT_MAX_SAMPLES pooled values, else the normal approximation with tie and continuity
    corrections. The statistic is U of `a`: 0 when every value of `a` is below every value of `b`.
    """
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U needs at least one value on each side")
    ranks = _doubled_midranks([*a, *b])
    total = n1 + n2
    w2 = sum(ranks[:n1])  # doubled rank sum of `a`
    u = w2 / 2 - n1 * (n1 + 1) / 2
    if len(set(ranks)) == 1:
        return TestResult(u, 1.0, "Mann-Whitney U (all values equal)")
    if total <= EXACT_MAX_SAMPLES:
        return TestResult(u, _exact_rank_sum_p(ranks, n1, w2), "Mann-Whitney U, exact")
    return TestResult(u, _normal_rank_sum_p(ranks, n1, n2, u), "Mann-Whitney U, normal approx.")


def _exact_rank_sum_p(ranks: Sequence[int], n1: int, w2: int) -> float:
    """P(|W - E W| >= |w - E W|) over every way of choosing n1 of the pooled values."""
    import numpy as np  # only here: the CLI imports this module for every command

    top = sum(sorted(ranks)[-n1:])
    # ways[k, s]: number of k-subsets of the ranks seen so far whose doubled sum is s
    ways = np.zeros((n1 + 1, top + 1), dtype=np.float64)
    ways[0, 0] = 1.0
    for seen, r in enumerate(ranks, start=1):
        # descending k so each rank is used at most once per subset
        for k in range(min(seen, n1), 0, -1):
            ways[k, r:] += ways[k - 1, : top + 1 - r]
    counts = ways[n1]
    expected = n1 * (len(ranks) + 1)  # doubled mean rank sum
    observed = abs(w2 - expected)
    sums = np.arange(top + 1)
    extreme = float(counts[np.abs(sums - expected) >= observed].sum())
    return min(1.0, extreme / float(counts.sum()))


def _normal_rank_sum_p(ranks: Sequence[int], n1: int, n2: int, u: float) -> float:
    total = n1 + n2
    ties: dict[int, int] = {}
    for r in ranks:
        ties[r] = ties.get(r, 0) + 1
    tie_term = sum(t**3 - t for t in ties.values()) / (total * (total - 1))
    variance = n1 * n2 / 12 * ((total + 1) - tie_term)
    if variance <= 0:
        return 1.0
    z = max(0.0, abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return min(1.0, math.erfc(z / math.sqrt(2)))
