"""`splitdb speed bot`: the tick bot at its ceiling against a raw `executemany` loop, in turns.

A round runs both sides once, the bot first (ABAB...):

- **bot**: a real `splitdb run` of the bot alone with far more ticks offered than it can take
  (as `scenarios/bench.toml`: 50 symbols, 1,000,000 ticks/s, batches of 1,000), every check
  of a run included; its figure is the report's `metrics.bot.ticks_per_s` (ticks committed over
  the load's seconds) and its memory `processes.bot.peak_rss_mb`. A run whose checks fail gives
  no figure worth comparing: the command then exits 1.
- **raw**: the same rows through plain `sqlite3`, in this process: a fresh file with the ticks
  schema (`reference.schema`) and the topology's `journal_mode` and `synchronous`, then
  `BEGIN IMMEDIATE; executemany(INSERT_TICKS, 1,000 rows); COMMIT` in a loop. Its rows come
  from the same simulator (same seed, symbols and rate, one symbol-second at a time, so each
  batch appends to one symbol's range of the key as the bot's do), built ahead of the clock in
  slices of `SLICE_ROWS`: only the inserting is timed. The anchor is SQLite's ceiling for this
  work from Python, as strict a reference as we can make it.

The ratio is the median of the bot's rounds over the median of the raw ones. Databases are
deleted after each round (hundreds of MB a round); every run's report, events and logs stay.

Output format (`bot.json`, version 1): `plan` (the settings), `environment` (Python, SQLite,
cores, load average at start and end), `rounds` (per round: `bot` {ticks_per_s, ticks, seconds,
peak_rss_mb, ok, report, cpu_us_per_tick}, `raw` {rows_per_s, rows, seconds, cpu_s,
cpu_us_per_row}, `ratio`, `cpu_ratio`), `summary` (`bot` and
`raw` as {median, min, max}, `ratio`, `round_ratios` {median, min, max}, `cpu` (the bot's CPU
us per tick and the raw side's per row as {median, min, max}, and `ratio`, raw over bot: the
same comparison in CPU time, which a busy machine moves far less), `bot_peak_rss_mb`: the
largest of the rounds, `ok`).
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.atomic import write_atomically
from harness.errors import SpeedError
from reference import mt5sim
from reference.bot import default_symbols
from reference.feeds import sequence_numbers
from reference.schema import ensure_schema
from reference.tickcheck import check_ticks
from reference.tickstore import INSERT_TICKS
from reference.topology import load_topology

FORMAT = "splitdb-speed-bot"
FORMAT_VERSION = 1
# Rows built ahead of each timed stretch of the raw side: 20 batches, a few MB of tuples.
SLICE_ROWS = 20_000
# The raw side's market: a fixed past, so every second it reads already exists.
_RAW_START_S = 1_700_000_000
_BOT_RUN_TIMEOUT_S = 600.0
# What a scenario file accepts for the bot (harness.runs.scenario.BotSettings).
MAX_SCENARIO_SYMBOLS = 1000
MAX_SCENARIO_RATE = 1_000_000.0


@dataclass(frozen=True)
class Plan:
    """What `splitdb speed bot` measures; `check()` names a bad value and the fix."""

    rounds: int = 5
    duration_s: float = 3.0
    symbols: int = 50
    rate: float = 1_000_000.0
    batch_size: int = 1000
    seed: int = 1

    def check(self) -> Plan:
        """This plan, or SpeedError naming the flag, the value and what to give instead."""
        if not 1 <= self.rounds <= 100:
            raise SpeedError(f"--rounds {self.rounds}: give 1 to 100 rounds (5 is the default)")
        if not 0 < self.duration_s <= 3600:
            raise SpeedError(
                f"--duration {self.duration_s:g}: give seconds per side, more than 0 and at most "
                "3600 (3 is the default)"
            )
        if not 1 <= self.symbols <= MAX_SCENARIO_SYMBOLS:
            raise SpeedError(
                f"--symbols {self.symbols}: give 1 to {MAX_SCENARIO_SYMBOLS} symbols (a scenario's "
                "limit)"
            )
        if not 0 < self.rate <= MAX_SCENARIO_RATE:
            raise SpeedError(
                f"--rate {self.rate:g}: give more than 0 and at most {MAX_SCENARIO_RATE:,.0f} "
                "ticks/s (a scenario's limit)"
            )
        per_symbol = self.rate / self.symbols
        if not mt5sim.MIN_TICKS_PER_SECOND <= per_symbol <= mt5sim.MAX_TICKS_PER_SECOND:
            raise SpeedError(
                f"--rate {self.rate:g}: {per_symbol:g} ticks/s per symbol; the simulator makes "
                f"{mt5sim.MIN_TICKS_PER_SECOND:g} to {mt5sim.MAX_TICKS_PER_SECOND:g} per symbol"
            )
        if not 1 <= self.batch_size <= 100_000:
            raise SpeedError(f"--batch-size {self.batch_size}: give 1 to 100000 rows per batch")
        return self


@dataclass(frozen=True)
class BotSide:
    """One run of the bot at its ceiling, as its report tells it."""

    ticks_per_s: float
    ticks: int
    seconds: float
    peak_rss_mb: float | None
    ok: bool
    report: str
    # CPU of the bot's whole life (start-up included) per tick committed, from the report.
    cpu_us_per_tick: float | None = None


@dataclass(frozen=True)
class RawSide:
    """One raw `executemany` loop: rows committed over the seconds spent inserting them."""

    rows_per_s: float
    rows: int
    seconds: float
    cpu_s: float = 0.0  # this process's CPU time while inserting

    @property
    def cpu_us_per_row(self) -> float | None:
        """CPU microseconds per row inserted."""
        return self.cpu_s * 1e6 / self.rows if self.rows and self.cpu_s else None


@dataclass(frozen=True)
class Round:
    """Both sides of one round and their ratio."""

    round: int
    bot: BotSide
    raw: RawSide

    @property
    def ratio(self) -> float:
        """The bot's ticks/s over the raw rows/s of the same round."""
        return self.bot.ticks_per_s / self.raw.rows_per_s if self.raw.rows_per_s else 0.0

    @property
    def cpu_ratio(self) -> float | None:
        """Raw CPU per row over the bot's CPU per tick: the ratio with the machine's other
        load taken out (CPU time moves far less than wall time on a shared machine)."""
        raw, bot = self.raw.cpu_us_per_row, self.bot.cpu_us_per_tick
        return raw / bot if raw and bot else None


def spread(values: Sequence[float]) -> dict[str, float]:
    """{median, min, max} of the values (all 0 for none)."""
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0}
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def summarize(rounds: Sequence[Round]) -> dict[str, Any]:
    """Medians with their spread per side, the ratio of the medians, the bot's peak memory."""
    bot = spread([r.bot.ticks_per_s for r in rounds])
    raw = spread([r.raw.rows_per_s for r in rounds])
    rss = [r.bot.peak_rss_mb for r in rounds if r.bot.peak_rss_mb is not None]
    bot_cpu = [r.bot.cpu_us_per_tick for r in rounds if r.bot.cpu_us_per_tick]
    raw_cpu = [r.raw.cpu_us_per_row for r in rounds if r.raw.cpu_us_per_row]
    cpu: dict[str, Any] | None = None
    if bot_cpu and raw_cpu:
        bot_us, raw_us = spread(bot_cpu), spread(raw_cpu)
        cpu = {
            "bot_us_per_tick": bot_us,
            "raw_us_per_row": raw_us,
            "ratio": raw_us["median"] / bot_us["median"],
        }
    return {
        "bot": bot,
        "raw": raw,
        "ratio": bot["median"] / raw["median"] if raw["median"] else 0.0,
        "round_ratios": spread([r.ratio for r in rounds]),
        "cpu": cpu,
        "bot_peak_rss_mb": max(rss) if rss else None,
        # A round whose bot committed nothing in its window (shorter than its first poll and
        # commit on a busy machine) measured no ceiling, even with its checks passed.
        "no_figure": [r.round for r in rounds if r.bot.ticks == 0],
        "ok": all(r.bot.ok and r.bot.ticks > 0 for r in rounds),
    }


def scenario_text(plan: Plan) -> str:
    """The bot side's scenario: the bot alone, as scenarios/bench.toml, with the plan's load."""
    return (
        "# Written by `splitdb speed bot` (harness/speed/bot.py): the bot alone at its ceiling.\n"
        'description = "splitdb speed bot: the bot alone, far more ticks offered than it takes"\n'
        'topology = "seed"\n'
        f"seed = {plan.seed}\n"
        f"duration = {plan.duration_s!r}\n\n"
        "[processes.bot]\n"
        f"symbols = {plan.symbols}\n"
        f"rate = {plan.rate!r}\n"
        f"batch_size = {plan.batch_size}\n"
        "max_delay_ms = 50\n\n"
        "[processes.agent]\nenabled = false\n\n"
        "[processes.api]\nenabled = false\n\n"
        "[expect]\nmax_busy_events = 0\n"
    )


def run_bot_side(plan: Plan, directory: Path) -> BotSide:
    """Run the bot at its ceiling with `splitdb run` in `directory`; its figures from the report."""
    directory.mkdir(parents=True, exist_ok=True)
    scenario = directory / "bot.toml"
    write_atomically(scenario, scenario_text(plan))
    out = directory / "run"
    command = [sys.executable, "-m", "harness.cli", "run", str(scenario), "--quiet"]
    command += ["--out", str(out)]
    # The run's own step summary would land on a CI job's page beside ours.
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    with (directory / "run.log").open("wb") as log:
        done = subprocess.run(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=_BOT_RUN_TIMEOUT_S + plan.duration_s,
            check=False,
        )
    reports = sorted(out.glob("*/report.json"))
    if not reports:
        raise SpeedError(
            f"the bot's run (exit {done.returncode}) wrote no report; see {directory / 'run.log'}"
        )
    report = json.loads(reports[-1].read_text(encoding="utf-8"))
    _drop_databases(reports[-1].parent)
    metrics = report["repeats"][0]["metrics"]
    bot = metrics.get("bot") or {}
    process = (metrics.get("processes") or {}).get("bot") or {}
    return BotSide(
        ticks_per_s=float(bot.get("ticks_per_s") or 0.0),
        ticks=int(bot.get("ticks_committed") or 0),
        seconds=float(metrics.get("load_s") or 0.0),
        peak_rss_mb=process.get("peak_rss_mb"),
        ok=bool(report["verdict"]["ok"]) and done.returncode == 0,
        report=str(reports[-1]),
        cpu_us_per_tick=bot.get("cpu_us_per_tick"),
    )


def _drop_databases(run_dir: Path) -> None:
    for pattern in ("*.db", "*.db-wal", "*.db-shm"):
        for path in run_dir.glob(f"**/data/{pattern}"):
            path.unlink(missing_ok=True)


def raw_rows(plan: Plan) -> Iterator[list[tuple[Any, ...]]]:
    """Slices of about SLICE_ROWS rows, as the bot would store them: one symbol-second at a time
    from the simulator the bot reads (same seed, symbols and rate), checked as the bot checks."""
    symbols = default_symbols(plan.symbols)
    terminal = mt5sim.Terminal(
        seed=plan.seed,
        symbols=symbols,
        ticks_per_second=plan.rate / plan.symbols,
        start_msc=_RAW_START_S * 1000,
        clock=lambda: float(2**40),
    )
    terminal.initialize()
    second = _RAW_START_S
    slice_: list[tuple[Any, ...]] = []
    while True:
        for symbol in symbols:
            ticks = terminal.copy_ticks_range(symbol, second, second + 1, mt5sim.COPY_TICKS_ALL)
            assert ticks is not None
            checked = check_ticks(symbol, ticks, sequence_numbers(ticks["time_msc"]), None)
            slice_.extend(checked.rows)
            if len(slice_) >= SLICE_ROWS:
                yield slice_
                slice_ = []
        second += 1


def run_raw_side(plan: Plan, directory: Path) -> RawSide:
    """Insert the plan's rows with plain executemany for `plan.duration_s` seconds of inserting."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = load_topology("seed").databases["ticks"]
    path = directory / "raw.db"
    for stale in (path, path.with_name("raw.db-wal"), path.with_name("raw.db-shm")):
        stale.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA journal_mode = {spec.journal_mode}")
        conn.execute(f"PRAGMA synchronous = {spec.synchronous}")
        ensure_schema(conn, "ticks")
        rows = 0
        elapsed = cpu = 0.0
        batch = plan.batch_size
        for slice_ in raw_rows(plan):
            started, cpu_started = time.perf_counter(), time.process_time()
            for i in range(0, len(slice_), batch):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(INSERT_TICKS, slice_[i : i + batch])
                conn.execute("COMMIT")
            elapsed += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            rows += len(slice_)
            if elapsed >= plan.duration_s:
                break
        stored = int(conn.execute("SELECT count(*) FROM ticks").fetchone()[0])
    finally:
        conn.close()
    if stored != rows:
        raise SpeedError(f"the raw side inserted {rows} rows but {path} holds {stored}")
    for done in (path, path.with_name("raw.db-wal"), path.with_name("raw.db-shm")):
        done.unlink(missing_ok=True)
    return RawSide(
        rows_per_s=rows / elapsed if elapsed else 0.0, rows=rows, seconds=elapsed, cpu_s=cpu
    )


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def measure(
    plan: Plan, directory: Path, *, progress: Callable[[str], None] = lambda line: None
) -> dict[str, Any]:
    """Run the rounds into `directory`; the record `write_results` writes."""
    plan.check()
    load_before = _load_average()
    started = time.monotonic()
    rounds: list[Round] = []
    for number in range(1, plan.rounds + 1):
        round_dir = directory / f"round-{number}"
        bot = run_bot_side(plan, round_dir / "bot")
        raw = run_raw_side(plan, round_dir / "raw")
        done = Round(number, bot, raw)
        rounds.append(done)
        rss = "?" if bot.peak_rss_mb is None else f"{bot.peak_rss_mb:.0f} MB"
        progress(
            f"round {number}/{plan.rounds}: bot {bot.ticks_per_s:,.0f} ticks/s "
            f"(peak RSS {rss}{'' if bot.ok else ', checks FAILED'}), raw {raw.rows_per_s:,.0f} "
            f"rows/s, ratio {done.ratio:.2f}"
        )
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - started, 1),
        "plan": asdict(plan),
        "environment": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpu_count": os.cpu_count(),
            "load_average_start": load_before,
            "load_average_end": _load_average(),
            "argv": sys.argv,
        },
        "rounds": [
            {
                "round": r.round,
                "bot": asdict(r.bot),
                "raw": {**asdict(r.raw), "cpu_us_per_row": r.raw.cpu_us_per_row},
                "ratio": r.ratio,
                "cpu_ratio": r.cpu_ratio,
            }
            for r in rounds
        ],
        "summary": summarize(rounds),
    }


def markdown(record: Mapping[str, Any]) -> str:
    """The Markdown summary of a record `measure` made."""
    plan, summary = record["plan"], record["summary"]
    env = record["environment"]
    lines = [
        "## splitdb speed bot",
        "",
        f"The bot alone at its ceiling ({plan['symbols']} symbols, {plan['rate']:,.0f} ticks/s "
        f"offered, batches of {plan['batch_size']:,}) against a raw `executemany` loop of "
        f"{plan['batch_size']:,}-row batches into the same schema, {plan['rounds']} rounds of "
        f"{plan['duration_s']:g} s a side, bot first. SQLite {env['sqlite']}, "
        f"{env['cpu_count']} cores, load average {_load(env['load_average_start'])} at the "
        f"start, {_load(env['load_average_end'])} at the end.",
        "",
        "| round | bot ticks/s | raw rows/s | bot/raw | bot peak RSS | bot CPU us/tick "
        "| raw CPU us/row | CPU ratio | bot checks |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in record["rounds"]:
        rss = r["bot"]["peak_rss_mb"]
        lines.append(
            f"| {r['round']} | {r['bot']['ticks_per_s']:,.0f} | {r['raw']['rows_per_s']:,.0f} "
            f"| {r['ratio']:.2f} | {'?' if rss is None else f'{rss:.0f} MB'} "
            f"| {_figure(r['bot']['cpu_us_per_tick'])} | {_figure(r['raw']['cpu_us_per_row'])} "
            f"| {_figure(r['cpu_ratio'])} | {'pass' if r['bot']['ok'] else 'FAIL'} |"
        )
    bot, raw, ratios = summary["bot"], summary["raw"], summary["round_ratios"]
    rss = summary["bot_peak_rss_mb"]
    lines += [
        "",
        f"- bot: median {bot['median']:,.0f} ticks/s (min {bot['min']:,.0f}, max "
        f"{bot['max']:,.0f})",
        f"- raw: median {raw['median']:,.0f} rows/s (min {raw['min']:,.0f}, max {raw['max']:,.0f})",
        f"- ratio bot/raw: **{summary['ratio']:.2f}** (of the medians; per round "
        f"{ratios['min']:.2f} to {ratios['max']:.2f})",
        f"- bot peak RSS: {'not measured' if rss is None else f'{rss:.0f} MB'} (largest round)",
    ]
    cpu = summary.get("cpu")
    if cpu:
        lines.append(
            f"- in CPU time (the machine's other load taken out): bot median "
            f"{cpu['bot_us_per_tick']['median']:.2f} us/tick (its whole life, start-up "
            f"included), raw {cpu['raw_us_per_row']['median']:.2f} us/row: ratio "
            f"{cpu['ratio']:.2f}"
        )
    if summary.get("no_figure"):
        rounds = ", ".join(map(str, summary["no_figure"]))
        lines.append(
            f"- **no figure in round {rounds}**: the bot committed no tick in its window; "
            "lengthen --duration"
        )
    if not summary["ok"] and not summary.get("no_figure"):
        lines.append("- **a bot run failed its checks**: its figures are not a ceiling")
    return "\n".join(lines) + "\n"


def _figure(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _load(values: Sequence[float] | None) -> str:
    return "unknown" if values is None else ", ".join(f"{v:.2f}" for v in values)


def write_results(record: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write `bot.json` and `bot.md` into `directory`; their paths."""
    json_path, md_path = directory / "bot.json", directory / "bot.md"
    write_atomically(json_path, json.dumps(record, indent=2) + "\n")
    write_atomically(md_path, markdown(record))
    return json_path, md_path
