"""Benchmark floors: how far each benchmark's median drifts between runs of unchanged code.

`splitdb compare --calibrate RUN1 RUN2 RUN3 ... [--write-floors FILE]` reads pytest-benchmark
JSON files of unchanged code, one per run, and gives each benchmark a floor; `splitdb compare
--floors FILE` then calls a benchmark better or worse only when its median moved past its floor
(and the rank test on its rounds says the move is not within-run noise).

The rule. Per benchmark, each run gives one median (of its stored rounds, else the stored
median); the largest change between two of the runs is largest / smallest - 1. The floor is
(largest / smallest) ** f - 1, rounded up to a whole percent, with a safety factor f > 1 because
a few runs show less spread than the runs to come. How large f must be follows from a model:
whole runs of one machine differ by the machine's state (other processes, caches, clock
frequency), so a run's median is the true value times log-normal noise of one sigma. Then
ln(largest / smallest) over k runs is sigma times the range R_k of k standard normal samples,
and ln(new / base) of a later unchanged pair is sigma times Z1 - Z2. Their quotient does not
depend on sigma, so f is chosen, by numeric integration over the distribution of R_k, such that
P(|Z1 - Z2| > f * R_k) = FALSE_ALARM, one in a thousand per benchmark: about one in seventy
comparisons of 15 unchanged benchmarks has one cross its floor (only a worse one fails). The
factor is large for few runs (8.2 for 4, 5.0 for 5, 2.2 for 10), so calibrate on ten runs or
more; fewer than three are refused. Heavier tails than the log-normal (a neighbour that hogs a
core for a whole run) break the model: the check is to compare held-out runs (README).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.errors import ComparisonError, ThresholdError
from harness.results.samples import benchmark_samples, is_benchmark_file
from harness.tomlfile import read_toml

FALSE_ALARM = 0.001
MIN_RUNS = 3
_STEP = 0.01  # grid step of the numeric integration, in sigmas
_FILE_KEYS = ("runs", "safety_factor", "largest_change", "floors")
_DIRECTORY_DEPTH = 3


@lru_cache(maxsize=64)
def safety_factor(runs: int, false_alarm: float = FALSE_ALARM) -> float:
    """The f with P(|Z1 - Z2| > f * R_runs) = false_alarm for independent standard normals.

    R_runs is the range of `runs` samples (see the module doc for why this is the factor).
    """
    import numpy as np  # only here: the CLI imports this module for every compare

    if runs < 2:
        raise ValueError(f"a range needs at least 2 runs (got {runs})")
    x = np.arange(-8.0, 20.0 + _STEP / 2, _STEP)
    phi = np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
    cdf = np.concatenate(([0.0], np.cumsum((phi[1:] + phi[:-1]) / 2) * _STEP))
    inner = round(16.0 / _STEP) + 1  # x from -8 to 8
    shifts = round(12.0 / _STEP) + 1  # ranges from 0 to 12 sigma
    window = np.lib.stride_tricks.sliding_window_view
    phi_r = window(phi, inner)[:shifts]  # row j: phi(x + r_j)
    cdf_r = window(cdf, inner)[:shifts]
    # density of the range: k (k - 1) * integral phi(x) phi(x + r) (Phi(x + r) - Phi(x))^(k - 2)
    density = (
        runs
        * (runs - 1)
        * np.sum(phi[:inner] * phi_r * (cdf_r - cdf[:inner]) ** (runs - 2), axis=1)
    )
    mass = density * _STEP * _STEP  # dx of the integral, dr of each range bin
    ranges = np.arange(shifts) * _STEP

    def crossing(f: float) -> float:
        # P(|Z1 - Z2| > f r) = 2 (1 - Phi(f r / sqrt 2)); Z1 - Z2 has variance 2
        tail = 2 * (1 - np.interp(f * ranges / math.sqrt(2), x, cdf, right=1.0))
        return float(np.sum(mass * tail))

    low, high = 0.5, 1000.0
    while high / low > 1 + 1e-6:
        mid = math.sqrt(low * high)
        low, high = (mid, high) if crossing(mid) > false_alarm else (low, mid)
    return high


@dataclass(frozen=True)
class Calibration:
    """Floors measured from runs of unchanged code (per benchmark metric, `bench.<name>`).

    `medians` holds each run's median per benchmark, in run order; `largest_change_pct` is
    largest / smallest - 1 in percent; `floors` the floor in percent; `skipped` the benchmarks
    that were not in every run (no floor).
    """

    runs: tuple[str, ...]
    factor: float
    medians: Mapping[str, tuple[float, ...]]
    largest_change_pct: Mapping[str, float]
    floors: Mapping[str, float]
    skipped: tuple[str, ...]
    machines: tuple[str, ...]


def _benchmark_files(path: Path, depth: int = 0) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ComparisonError(f"--calibrate {path}: no such file or directory")
    found: list[Path] = []
    for child in sorted(path.iterdir()):
        if child.is_dir() and depth < _DIRECTORY_DEPTH:
            found += _benchmark_files(child, depth + 1)
        elif child.suffix == ".json":
            found.append(child)
    return found


def _read_run(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        why = "nested too deeply to read" if isinstance(exc, RecursionError) else exc
        raise ComparisonError(f"--calibrate {path}: not a readable JSON file ({why})") from None
    if isinstance(data, dict) and "schema" in data:
        raise ComparisonError(
            f"--calibrate {path} is a splitdb report: calibration reads pytest-benchmark JSON "
            "files, one per run of unchanged code (report metrics have their floors in "
            "harness/results/samples.py)"
        )
    if not is_benchmark_file(data):
        raise ComparisonError(
            f"--calibrate {path}: not a pytest-benchmark JSON (no benchmarks[].stats); pass the "
            "files pytest --benchmark-json wrote, one per run"
        )
    return dict(data)


def _machine(data: Mapping[str, Any]) -> str:
    info = data.get("machine_info") or {}
    cpu = info.get("cpu")
    brand = cpu.get("brand_raw") if isinstance(cpu, Mapping) else None
    return f"{info.get('node')}, {brand or info.get('processor')}"


def calibrate(paths: Sequence[Path]) -> Calibration:
    """Floors from pytest-benchmark files of unchanged code, one file per run (directories: every
    JSON file under them). Raises ComparisonError for fewer than MIN_RUNS runs or a file that is
    not a benchmark file."""
    files = [f for p in paths for f in _benchmark_files(Path(p))]
    if len(files) < MIN_RUNS:
        raise ComparisonError(
            f"--calibrate needs at least {MIN_RUNS} runs of unchanged code (got {len(files)}); "
            "run the benchmarks again and pass every file (ten or more give tighter floors)"
        )
    per_run: list[dict[str, float]] = []
    machines: list[str] = []
    for path in files:
        data = _read_run(path)
        run: dict[str, float] = {}
        for name, samples in benchmark_samples(data, str(path)).items():
            centre = samples.median()
            if centre is not None:
                run[name] = centre
        per_run.append(run)
        if _machine(data) not in machines:
            machines.append(_machine(data))
    factor = safety_factor(len(files))
    names = list(dict.fromkeys(n for r in per_run for n in r))
    measured = [n for n in names if all(n in r and r[n] > 0 for r in per_run)]
    medians = {n: tuple(r[n] for r in per_run) for n in measured}
    largest = {n: max(m) / min(m) for n, m in medians.items()}
    return Calibration(
        runs=tuple(map(str, files)),
        factor=factor,
        medians=medians,
        largest_change_pct={n: 100 * (ratio - 1) for n, ratio in largest.items()},
        floors={
            n: float(math.ceil(100 * (ratio**factor - 1) - 1e-9)) for n, ratio in largest.items()
        },
        skipped=tuple(n for n in names if n not in medians),
        machines=tuple(machines),
    )


def floors_toml(calibration: Calibration, *, command: str, when: datetime) -> str:
    """The floors file: a header saying what produced it, then `[largest_change]` and `[floors]`."""
    k, f = len(calibration.runs), calibration.factor
    lines = [
        "# Run-to-run floors of pytest-benchmark benchmarks, for `splitdb compare --floors FILE`.",
        f"# Written by: {command}",
        f"# On {when:%Y-%m-%d %H:%M %Z} from {k} runs of unchanged code on "
        + " / ".join(calibration.machines)
        + ".",
        f"# floor = (largest / smallest run median) ** {f:.2f} - 1, rounded up to a percent; "
        f"{f:.2f} is the",
        f"# safety factor for {k} runs (harness/results/floors.py). [largest_change] is largest / "
        "smallest - 1.",
        f"runs = {k}",
        f"safety_factor = {f:.3f}",
        "",
        "[largest_change]  # percent, between the runs' medians",
        *(f"{json.dumps(n)} = {p:.1f}" for n, p in calibration.largest_change_pct.items()),
        "",
        "[floors]  # percent",
        *(f"{json.dumps(n)} = {p:g}" for n, p in calibration.floors.items()),
    ]
    return "\n".join(lines) + "\n"


def load_floors(path: Path) -> dict[str, float]:
    """The `[floors]` table of a floors file (metric name or glob = percent)."""
    _, raw = read_toml(
        Path(path),
        ThresholdError,
        missing_hint="write one with splitdb compare --calibrate RUN.json... --write-floors FILE",
    )
    problems = [
        f"{key}: unknown key; use one of {', '.join(_FILE_KEYS)}"
        for key in raw
        if key not in _FILE_KEYS
    ]
    table = raw.get("floors", {})
    floors: dict[str, float] = {}
    if not isinstance(table, dict):
        problems.append('floors: must be a table, such as [floors] "bench.test_x" = 40')
        table = {}
    for name, value in table.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            problems.append(
                f"floors.{name!r}: must be a finite percentage >= 0, such as 10 (got {value!r})"
            )
        else:
            floors[name] = float(value)
    if problems:
        raise ThresholdError(str(path), problems)
    return floors
