"""`splitdb speed bot`: it runs end to end and reports a ratio computed from what it measured;
bad input is one line and exit 2 before anything runs. A benchmark that reports: no speed is
asserted here, only that the figures are the measured ones."""

from __future__ import annotations

import json
import sqlite3
import statistics
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import SpeedError
from harness.speed import bot as speed_bot
from reference.tickstore import INSERT_TICKS


@pytest.mark.slow
def test_speed_bot_runs_both_sides_and_reports_the_measured_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "speed"
    # 5 symbols (the simulator makes at most 100,000 ticks/s a symbol): the bot's first poll
    # (2,000 ticks a symbol) and first commits fit in the window on a busy machine; with 50, a
    # loaded run once committed nothing inside 0.5 s.
    argv = [
        "speed",
        "bot",
        "--rounds",
        "2",
        "--duration",
        "1",
        "--symbols",
        "5",
        "--rate",
        "400000",
    ]
    code = main([*argv, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    [directory] = out.iterdir()
    record = json.loads((directory / "bot.json").read_text())
    assert (directory / "bot.md").read_text() in printed
    assert "round 1/2: bot" in printed and "round 2/2: bot" in printed
    rounds = record["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        bot, raw = r["bot"], r["raw"]
        run_log = Path(bot["report"]).parent.parent.parent / "run.log"
        assert bot["ok"] and bot["ticks"] > 0 and bot["seconds"] > 0, (r, run_log.read_text())
        # The bot's figure is its run's report, as written there.
        report = json.loads(Path(bot["report"]).read_text())
        assert report["repeats"][0]["metrics"]["bot"]["ticks_per_s"] == bot["ticks_per_s"]
        assert (
            report["repeats"][0]["metrics"]["processes"]["bot"]["peak_rss_mb"]
            == (bot["peak_rss_mb"])
        )
        assert raw["rows"] > 0 and raw["rows_per_s"] == pytest.approx(raw["rows"] / raw["seconds"])
        assert r["ratio"] == pytest.approx(bot["ticks_per_s"] / raw["rows_per_s"])
        assert bot["cpu_us_per_tick"] == report["repeats"][0]["metrics"]["bot"]["cpu_us_per_tick"]
        assert raw["cpu_us_per_row"] == pytest.approx(raw["cpu_s"] * 1e6 / raw["rows"])
        assert r["cpu_ratio"] == pytest.approx(raw["cpu_us_per_row"] / bot["cpu_us_per_tick"])
        # The databases go, the run's evidence stays.
        assert not list(Path(bot["report"]).parent.glob("**/*.db"))
    summary = record["summary"]
    bot_median = statistics.median(r["bot"]["ticks_per_s"] for r in rounds)
    raw_median = statistics.median(r["raw"]["rows_per_s"] for r in rounds)
    assert summary["bot"]["median"] == pytest.approx(bot_median)
    assert summary["raw"]["median"] == pytest.approx(raw_median)
    assert summary["ratio"] == pytest.approx(bot_median / raw_median)
    assert summary["bot_peak_rss_mb"] == max(r["bot"]["peak_rss_mb"] for r in rounds)
    bot_cpu = statistics.median(r["bot"]["cpu_us_per_tick"] for r in rounds)
    raw_cpu = statistics.median(r["raw"]["cpu_us_per_row"] for r in rounds)
    assert summary["cpu"]["ratio"] == pytest.approx(raw_cpu / bot_cpu)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--rounds", "0"], "--rounds 0"),
        (["--duration", "-1"], "--duration -1"),
        (["--duration", "nan"], "--duration nan"),
        (["--symbols", "0"], "--symbols 0"),
        (["--rate", "2000000"], "--rate 2e+06"),
        (["--batch-size", "0"], "--batch-size 0"),
        (["--duration", "soon"], "--duration"),
        (["--bogus"], "--bogus"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    out = tmp_path / "speed"
    assert main(["speed", "bot", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and named in err, err
    assert not out.exists()


def test_an_out_path_under_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["speed", "bot", "--out", str(tmp_path / "file" / "speed")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--out" in err


def test_a_measurement_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["speed"]) == 2
    assert "WHAT" in capsys.readouterr().err


def test_the_raw_side_stores_every_row_it_counts(tmp_path: Path) -> None:
    plan = speed_bot.Plan(rounds=1, duration_s=0.05, symbols=3, rate=3000.0)
    rows = next(speed_bot.raw_rows(plan))
    assert len(rows) >= speed_bot.SLICE_ROWS
    assert len({r[:3] for r in rows}) == len(rows)  # distinct keys, as the bot's are
    side = speed_bot.run_raw_side(plan, tmp_path)
    assert side.rows > 0
    assert side.rows_per_s == pytest.approx(side.rows / side.seconds)
    assert not list(tmp_path.glob("raw.db*"))  # measured, counted, then deleted


def test_raw_rows_fit_the_bots_insert_statement(tmp_path: Path) -> None:
    from reference.schema import ensure_schema

    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    ensure_schema(conn, "ticks")
    rows = next(speed_bot.raw_rows(speed_bot.Plan(symbols=2, rate=2000.0)))
    conn.executemany(INSERT_TICKS, rows)
    assert conn.execute("SELECT count(*) FROM ticks").fetchone()[0] == len(rows)


def test_the_summary_is_the_medians_and_their_ratio() -> None:
    def side(bot: float, raw: float, rss: float) -> speed_bot.Round:
        return speed_bot.Round(
            1,
            speed_bot.BotSide(bot, int(bot), 1.0, rss, True, "r"),
            speed_bot.RawSide(raw, int(raw), 1.0),
        )

    summary = speed_bot.summarize([side(100, 400, 50), side(300, 200, 80), side(200, 300, 60)])
    assert summary["bot"] == {"median": 200.0, "min": 100.0, "max": 300.0}
    assert summary["raw"] == {"median": 300.0, "min": 200.0, "max": 400.0}
    assert summary["ratio"] == pytest.approx(200 / 300)
    assert summary["round_ratios"]["min"] == pytest.approx(0.25)
    assert summary["round_ratios"]["max"] == pytest.approx(1.5)
    assert summary["bot_peak_rss_mb"] == 80 and summary["ok"]


def test_a_round_whose_bot_committed_nothing_in_its_window_is_no_figure() -> None:
    # A window shorter than the bot's first poll and commit on a busy machine: its checks pass
    # (every tick it acknowledged is stored) but 0 ticks/s is no ceiling.
    passed = speed_bot.BotSide(0.0, 0, 0.5, 70.0, True, "r")
    summary = speed_bot.summarize([speed_bot.Round(1, passed, speed_bot.RawSide(300, 150, 0.5))])
    assert not summary["ok"] and summary["no_figure"] == [1]


def test_a_plan_outside_the_scenario_limits_names_the_flag() -> None:
    with pytest.raises(SpeedError, match="--symbols 1001"):
        speed_bot.Plan(symbols=1001).check()
    with pytest.raises(SpeedError, match="per symbol"):
        speed_bot.Plan(symbols=1, rate=200_000).check()


def test_the_commands_defaults_are_the_plans() -> None:
    from harness.commands.speed import _BOT_DEFAULTS

    plan = speed_bot.Plan()
    assert vars(_BOT_DEFAULTS) == {k: getattr(plan, k) for k in vars(_BOT_DEFAULTS)}
