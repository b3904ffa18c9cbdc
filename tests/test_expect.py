"""Whether a step's result is what its script expected (harness.interleavings.expect), for every
kind of step.

Results come from the code the actor processes run (harness.interleavings.actor.Actor), here in this
process on a fresh data directory, and are shaped and judged the way the coordinator
(harness.interleavings.interleave) does: a script's steps in order, each judged with the values of
the named steps before it. The steps only the coordinator performs (join, exit, a sleep of no
process) and durations, which are measured, get results built as the coordinator builds them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from harness.interleavings.actor import Actor
from harness.interleavings.expect import checkpoint_state, mismatches
from harness.interleavings.script import STEP, ScriptFile, Step, load_script, parse_script
from harness.interleavings.trace import StepResult
from reference.topology import Topology

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "scenarios" / "interleavings"
# Steps the coordinator performs itself: no actor runs them.
COORDINATOR_ONLY = ("join", "exit")


Play = Callable[[ScriptFile], list[StepResult]]


class Player:
    """A script's steps, one at a time, on one `Actor` per named process, judged in order."""

    def __init__(self, loaded: ScriptFile, data_dir: Path, template: Path) -> None:
        self.loaded = loaded
        # As the coordinator's `AccessManager(topology, data_dir).initialize()` leaves it.
        shutil.copytree(template, data_dir)
        script = loaded.script
        self.actors = {
            name: Actor(loaded.topology, data_dir, spec.role, script.databases_of(name))
            for name, spec in script.processes.items()
        }
        self.values: dict[str, Any] = {}
        self.results: list[StepResult] = []

    def step(self) -> StepResult:
        """Run the next step and judge it; its result, mismatches included."""
        index = len(self.results)
        step = self.loaded.script.step[index]
        if step.do in COORDINATOR_ONLY or step.background or step.process is None:
            raise ValueError(f"step[{index}] ({step.do}) is the coordinator's, not an actor's")
        actor = self.actors[step.process]
        db = self.loaded.script.database_of(step)
        done = actor.run(step, index, db)
        # The reply crosses a pipe as JSON: judge what arrives, not what was sent.
        reply = json.loads(json.dumps({"done": index, **asdict(done)}))
        result = StepResult(
            index,
            step.do,
            str(reply["outcome"]),
            process=step.process,
            role=actor.role,
            db=db,
            code=reply.get("code"),
            error=reply.get("error"),
            duration_ms=float(reply.get("duration_ms", 0.0)),
            row_count=reply.get("row_count"),
            rows=reply.get("rows"),
            value=reply.get("value"),
        )
        judged = replace(result, mismatches=tuple(mismatches(step, result, self.values)))
        if step.name is not None:
            self.values[step.name] = judged.value
        self.results.append(judged)
        return judged

    def play(self) -> list[StepResult]:
        while len(self.results) < len(self.loaded.script.step):
            self.step()
        return self.results

    def close(self) -> None:
        for actor in self.actors.values():
            actor.close()


@pytest.fixture
def players() -> Iterator[list[Player]]:
    made: list[Player] = []
    yield made
    for player in made:
        player.close()


def script(
    *steps: Mapping[str, Any],
    topology: str = "seed",
    processes: Mapping[str, Mapping[str, str]] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> ScriptFile:
    raw: dict[str, Any] = {
        "name": "unit",
        "topology": topology,
        "processes": processes or {"bot": {"role": "bot"}, "api": {"role": "api"}},
        "step": list(steps),
    }
    if settings:
        raw["settings"] = dict(settings)
    return parse_script(raw, source="unit")


@pytest.fixture
def play(tmp_path: Path, players: list[Player], initialized: Callable[[Topology], Path]) -> Play:
    """`play(script)`: every step's judged result."""

    def run(loaded: ScriptFile) -> list[StepResult]:
        data_dir = tmp_path / f"data{len(players)}"
        player = Player(loaded, data_dir, initialized(loaded.topology))
        players.append(player)
        return player.play()

    return run


def step_of(**fields: Any) -> Step:
    return STEP.validate_python(fields)


# --- library scripts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "seed-read-then-write.toml",
        "legacy-busy-snapshot.toml",
        "wal-long-reader-stops-checkpoint.toml",
        "wal-reader-keeps-snapshot.toml",
    ],
)
def test_every_expectation_of_a_library_script_holds_when_played_in_this_process(
    name: str, play: Play
) -> None:
    results = play(load_script(LIBRARY / name))
    assert [(r.index, r.mismatches) for r in results if r.mismatches] == []


def test_a_library_step_expecting_another_code_is_the_only_mismatch(play: Play) -> None:
    loaded = load_script(LIBRARY / "legacy-busy-snapshot.toml")
    steps = list(loaded.script.step)
    index = next(i for i, s in enumerate(steps) if s.expect == "busy_snapshot")
    steps[index] = steps[index].model_copy(update={"expect_code": 5})
    changed = replace(loaded, script=loaded.script.model_copy(update={"step": tuple(steps)}))
    results = play(changed)
    assert [(r.index, r.mismatches) for r in results if r.mismatches] == [
        (index, ("code 517, expected 5",))
    ]


# --- outcome and code (every kind) ---------------------------------------------------------------


def test_a_statement_that_did_what_was_expected_has_no_mismatch(play: Play) -> None:
    (result,) = play(script({"process": "bot", "do": "sql", "sql": "SELECT 1", "expect_value": 1}))
    assert result.outcome == "ok" and result.mismatches == ()


def test_an_unexpected_denial_names_the_outcome_and_the_error(play: Play) -> None:
    (result,) = play(
        script({"process": "api", "do": "sql", "db": "ticks", "sql": "DELETE FROM ticks"})
    )
    (found,) = result.mismatches
    assert found.startswith("outcome denied: PermissionViolation: ")
    assert "DELETE" in found and found.endswith(", expected ok")


def test_an_unexpected_busy_names_the_outcome_its_code_and_the_error(play: Play) -> None:
    results = play(
        script(
            {"process": "bot", "do": "begin_immediate"},
            {"process": "other", "do": "insert_ticks", "count": 3},
            {"process": "bot", "do": "rollback"},
            processes={"bot": {"role": "bot"}, "other": {"role": "bot"}},
            settings={"busy_timeout_ms": 0},
        )
    )
    assert [r.mismatches for r in results][::2] == [(), ()]
    (found,) = results[1].mismatches
    assert found == "outcome busy (code 5): SQLITE_BUSY: database is locked, expected ok"


def test_the_expected_failure_matches_and_success_instead_is_named(play: Play) -> None:
    results = play(
        script(
            {
                "process": "api",
                "do": "sql",
                "db": "ticks",
                "sql": "DELETE FROM ticks",
                "expect": "denied",
            },
            {"process": "bot", "do": "sql", "sql": "DELETE FROM ticks", "expect": "denied"},
        )
    )
    assert results[0].mismatches == ()
    assert results[1].mismatches == ("outcome ok, expected denied",)


@pytest.mark.parametrize("outcome", ["ok", "busy", "denied", "error", "exited", "timeout"])
def test_expect_any_accepts_every_outcome(outcome: str) -> None:
    step = step_of(process="bot", do="sql", sql="SELECT 1", expect="any")
    result = StepResult(0, "sql", outcome, code=5 if outcome == "busy" else None)
    assert mismatches(step, result, {}) == []


def test_expect_code_is_judged_even_when_any_outcome_is_expected() -> None:
    step = step_of(process="bot", do="begin_immediate", expect="any", expect_code=5)
    result = StepResult(0, "begin_immediate", "busy", code=517)
    assert mismatches(step, result, {}) == ["code 517, expected 5"]
    ok = StepResult(0, "begin_immediate", "ok")
    assert mismatches(step, ok, {}) == ["code None, expected 5"]


# --- durations (as measured inside the process) --------------------------------------------------


@pytest.mark.parametrize(
    ("duration_ms", "found"),
    [
        (0.5, ["took 0.5 ms, expected at least 1"]),
        (1.0, []),
        (250.0, []),
        (250.04, ["took 250.0 ms, expected at most 250"]),
        (1234.56, ["took 1234.6 ms, expected at most 250"]),
    ],
)
def test_durations_are_judged_inclusively_against_min_and_max(
    duration_ms: float, found: list[str]
) -> None:
    step = step_of(process="bot", do="commit", expect_min_ms=1, expect_max_ms=250)
    result = StepResult(3, "commit", "ok", duration_ms=duration_ms)
    assert mismatches(step, result, {}) == found


def test_a_coordinator_sleep_is_judged_by_its_measured_duration() -> None:
    step = step_of(do="sleep", seconds=0.05, expect_min_ms=50)
    assert mismatches(step, StepResult(0, "sleep", "ok", duration_ms=50.2), {}) == []
    assert mismatches(step, StepResult(0, "sleep", "ok", duration_ms=49.0), {}) == [
        "took 49.0 ms, expected at least 50"
    ]


def test_a_sleep_in_a_process_reports_ok(play: Play) -> None:
    (result,) = play(script({"process": "bot", "do": "sleep", "seconds": 0}))
    assert result.outcome == "ok" and result.mismatches == ()


# --- join and exit (the coordinator's steps) -----------------------------------------------------


def test_a_join_that_timed_out_names_the_process_that_gave_no_reply() -> None:
    step = step_of(process="bot", do="join")
    error = "process 'bot' gave no reply to step[2] within 5 s; it was killed"
    result = StepResult(3, "join", "timeout", process="bot", error=error, duration_ms=5000.0)
    assert mismatches(step, result, {}) == [f"outcome timeout: {error}, expected ok"]
    assert mismatches(step, replace(result, outcome="ok", error=None), {}) == []


def test_an_exit_step_expects_the_process_to_have_exited_by_default() -> None:
    step = step_of(process="bot", do="exit", code=3)
    exited = StepResult(1, "exit", "exited", process="bot", code=3, error="exited with code 3")
    assert mismatches(step, exited, {}) == []
    ran_on = StepResult(1, "exit", "ok", process="bot")
    assert mismatches(step, ran_on, {}) == ["outcome ok, expected exited"]


def test_an_exit_step_with_an_expected_code_names_the_code_it_exited_with() -> None:
    step = step_of(process="bot", do="exit", code=3, expect_code=3)
    result = StepResult(1, "exit", "exited", process="bot", code=1)
    assert mismatches(step, result, {}) == ["code 1, expected 3"]


# --- sql: rows, value, first row, range ----------------------------------------------------------


def test_expect_rows_counts_rows_read_or_changed(play: Play) -> None:
    results = play(
        script(
            {"process": "bot", "do": "insert_ticks", "count": 3},
            {"process": "bot", "do": "sql", "sql": "SELECT * FROM ticks", "expect_rows": 3},
            {"process": "bot", "do": "sql", "sql": "DELETE FROM ticks", "expect_rows": 2},
            {"process": "bot", "do": "sql", "sql": "SELECT * FROM ticks", "expect_rows": 1},
        )
    )
    assert [r.mismatches for r in results] == [
        (),
        (),
        ("3 rows, expected 2",),
        ("0 rows, expected 1",),
    ]


def test_expect_value_matches_an_integer_real_and_text_by_value(play: Play) -> None:
    results = play(
        script(
            {"process": "bot", "do": "sql", "sql": "SELECT 2.0", "expect_value": 2},
            {"process": "bot", "do": "sql", "sql": "SELECT 2", "expect_value": 2.0},
            {"process": "bot", "do": "sql", "sql": "SELECT 'wal'", "expect_value": "wal"},
            {"process": "bot", "do": "sql", "sql": "SELECT 'WAL'", "expect_value": "wal"},
            {"process": "bot", "do": "sql", "sql": "SELECT '2'", "expect_value": 2},
        )
    )
    assert [r.mismatches for r in results] == [
        (),
        (),
        (),
        ("value 'WAL', expected 'wal'",),
        ("value '2', expected 2",),
    ]


def test_expect_value_does_not_take_a_flag_for_a_number(play: Play) -> None:
    results = play(
        script(
            {
                "process": "api",
                "do": "sql",
                "db": "ticks",
                "sql": "PRAGMA query_only",
                "expect_value": True,
            },
            {
                "process": "api",
                "do": "sql",
                "db": "ticks",
                "sql": "PRAGMA query_only",
                "expect_value": 1,
            },
        )
    )
    assert results[0].mismatches == ("value 1, expected True",)
    assert results[1].mismatches == ()


def test_expect_value_of_a_query_with_no_rows_names_none(play: Play) -> None:
    (result,) = play(
        script({"process": "bot", "do": "sql", "sql": "SELECT 1 WHERE 0", "expect_value": 0})
    )
    assert result.mismatches == ("value None, expected 0",)


def test_expect_row_compares_the_whole_first_row(play: Play) -> None:
    sql = "SELECT 'EURUSD', 2, 1.5"
    results = play(
        script(
            {"process": "bot", "do": "sql", "sql": sql, "expect_row": ["EURUSD", 2.0, 1.5]},
            {"process": "bot", "do": "sql", "sql": sql, "expect_row": ["EURUSD", 2]},
            {"process": "bot", "do": "sql", "sql": sql, "expect_row": ["EURUSD", 3, 1.5]},
            {"process": "bot", "do": "sql", "sql": "SELECT 1 WHERE 0", "expect_row": [1]},
        )
    )
    assert [r.mismatches for r in results] == [
        (),
        ("first row ['EURUSD', 2, 1.5], expected ['EURUSD', 2]",),
        ("first row ['EURUSD', 2, 1.5], expected ['EURUSD', 3, 1.5]",),
        ("first row None, expected [1]",),
    ]


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        ("SELECT 10", ()),
        ("SELECT 20", ()),
        ("SELECT 15.5", ()),
        ("SELECT 9.99", ("value 9.99, expected at least 10",)),
        ("SELECT 21", ("value 21, expected at most 20",)),
        ("SELECT 'x'", ("value 'x', expected at least 10", "value 'x', expected at most 20")),
        ("SELECT NULL", ("value None, expected at least 10", "value None, expected at most 20")),
    ],
)
def test_expect_min_and_max_are_inclusive_and_need_a_number(
    sql: str, found: tuple[str, ...], play: Play
) -> None:
    (result,) = play(
        script({"process": "bot", "do": "sql", "sql": sql, "expect_min": 10, "expect_max": 20})
    )
    assert result.mismatches == found


# --- comparisons with earlier steps --------------------------------------------------------------


def test_expect_greater_and_less_than_compare_with_the_named_earlier_step(play: Play) -> None:
    count = "SELECT count(*) FROM ticks"
    results = play(
        script(
            {"process": "bot", "do": "sql", "sql": count, "name": "before"},
            {"process": "bot", "do": "insert_ticks", "count": 5},
            {"process": "bot", "do": "sql", "sql": count, "expect_greater_than": "before"},
            {"process": "bot", "do": "sql", "sql": count, "expect_less_than": "before"},
            {"process": "bot", "do": "sql", "sql": "SELECT 0", "expect_greater_than": "before"},
        )
    )
    assert [r.mismatches for r in results] == [
        (),
        (),
        (),
        ("value 5, expected less than step 'before' (0)",),
        ("value 0, expected greater than step 'before' (0)",),
    ]


def test_expect_greater_than_a_step_that_had_no_value_fails(play: Play) -> None:
    results = play(
        script(
            {"process": "bot", "do": "sql", "sql": "SELECT 1 WHERE 0", "name": "nothing"},
            {"process": "bot", "do": "sql", "sql": "SELECT 1", "expect_greater_than": "nothing"},
        )
    )
    assert results[1].mismatches == ("value 1, expected greater than step 'nothing' (None)",)


def test_a_comparison_with_a_name_not_yet_valued_fails_rather_than_passes() -> None:
    step = step_of(process="bot", do="sql", sql="SELECT 1", expect_less_than="later")
    result = StepResult(0, "sql", "ok", value=1)
    assert mismatches(step, result, {}) == ["value 1, expected less than step 'later' (None)"]


def test_a_flag_is_not_a_number_to_compare() -> None:
    step = step_of(process="bot", do="sql", sql="SELECT 1", expect_greater_than="first")
    result = StepResult(1, "sql", "ok", value=True)
    assert mismatches(step, result, {"first": 0}) == [
        "value True, expected greater than step 'first' (0)"
    ]


# --- checkpoint ----------------------------------------------------------------------------------


def test_checkpoint_states_come_from_the_pragmas_row() -> None:
    def state(rows: Any) -> str | None:
        return checkpoint_state(StepResult(0, "checkpoint", "ok", rows=rows))

    assert state([[0, 10, 10]]) == "complete"
    assert state([[0, -1, -1]]) == "complete"  # not in WAL mode: nothing to copy
    assert state([[0, 10, 4]]) == "partial"
    assert state([[1, 10, 4]]) == "busy"
    assert state([[1, 10, 10]]) == "busy"
    assert state(None) is None
    assert state([]) is None
    assert state([[0, 10]]) is None


def test_a_checkpoint_with_nothing_in_the_way_is_complete(play: Play) -> None:
    results = play(
        script(
            {"process": "bot", "do": "insert_ticks", "count": 50},
            {"process": "bot", "do": "checkpoint", "expect_checkpoint": "complete"},
            {
                "process": "bot",
                "do": "checkpoint",
                "mode": "truncate",
                "expect_checkpoint": "partial",
            },
        )
    )
    assert results[1].mismatches == ()
    (found,) = results[2].mismatches
    assert found.startswith("checkpoint complete [[0, ") and found.endswith(", expected partial")


def test_a_checkpoint_behind_a_reader_is_partial_or_busy_as_expected(play: Play) -> None:
    results = play(
        script(
            {"process": "bot", "do": "insert_ticks", "count": 10},
            {"process": "bot", "do": "checkpoint", "mode": "truncate"},
            {"process": "api", "do": "begin", "db": "ticks"},
            {"process": "api", "do": "sql", "db": "ticks", "sql": "SELECT count(*) FROM ticks"},
            {"process": "bot", "do": "insert_ticks", "count": 200},
            {
                "process": "bot",
                "do": "checkpoint",
                "expect_checkpoint": "partial",
                "expect_value": 0,
            },
            {"process": "bot", "do": "checkpoint", "mode": "truncate", "expect_checkpoint": "busy"},
            {"process": "bot", "do": "checkpoint", "expect_checkpoint": "complete"},
            {"process": "api", "do": "commit", "db": "ticks"},
            settings={"busy_timeout_ms": 0},
        )
    )
    assert [r.mismatches for r in results[:7]] == [()] * 7
    (found,) = results[7].mismatches
    assert found.startswith("checkpoint partial [[0, ") and found.endswith("expected complete")


def test_a_checkpoint_that_did_not_run_says_so(play: Play) -> None:
    (result,) = play(
        script(
            {"process": "api", "do": "checkpoint", "db": "ticks", "expect_checkpoint": "complete"}
        )
    )
    assert result.outcome == "denied"
    assert result.mismatches[0].startswith("outcome denied: ")
    assert result.mismatches[1].startswith("checkpoint did not run")
    assert result.mismatches[1].endswith("expected complete")


# --- wal_size, insert_ticks, agent_cycle, transactions -------------------------------------------


def test_wal_size_is_zero_after_truncate_and_grows_with_writes(play: Play) -> None:
    results = play(
        script(
            {"process": "bot", "do": "checkpoint", "mode": "truncate"},
            {"process": "bot", "do": "wal_size", "name": "empty", "expect_value": 0},
            {"process": "bot", "do": "insert_ticks", "count": 100},
            {
                "process": "bot",
                "do": "wal_size",
                "expect_greater_than": "empty",
                "expect_min": 4096,
            },
            {"process": "bot", "do": "wal_size", "expect_value": 0},
        )
    )
    assert [r.mismatches for r in results[:4]] == [()] * 4
    (found,) = results[4].mismatches
    assert found.startswith("value ") and found.endswith(", expected 0")


def test_insert_ticks_is_judged_by_the_rows_it_added(play: Play) -> None:
    results = play(
        script(
            {
                "process": "bot",
                "do": "insert_ticks",
                "count": 10,
                "expect_value": 10,
                "expect_rows": 10,
            },
            {"process": "bot", "do": "insert_ticks", "count": 4, "expect_value": 5},
        )
    )
    assert results[0].mismatches == ()
    assert results[1].mismatches == ("value 4, expected 5",)


def test_agent_cycle_is_judged_by_the_ticks_it_folded(play: Play) -> None:
    results = play(
        script(
            {"process": "bot", "do": "insert_ticks", "count": 30},
            {"process": "agent", "do": "agent_cycle", "name": "first", "expect_value": 30},
            {
                "process": "agent",
                "do": "agent_cycle",
                "expect_less_than": "first",
                "expect_value": 0,
            },
            {"process": "bot", "do": "insert_ticks", "count": 5},
            {"process": "agent", "do": "agent_cycle", "expect_value": 30},
            processes={"bot": {"role": "bot"}, "agent": {"role": "agent"}},
        )
    )
    assert [r.mismatches for r in results[:4]] == [()] * 4
    assert results[4].mismatches == ("value 5, expected 30",)


def test_a_transaction_step_is_judged_by_its_outcome(play: Play) -> None:
    results = play(
        script(
            {"process": "bot", "do": "begin_immediate"},
            {"process": "other", "do": "begin_immediate", "expect": "busy", "expect_code": 5},
            {"process": "other", "do": "commit", "expect": "error"},
            {"process": "bot", "do": "commit"},
            processes={"bot": {"role": "bot"}, "other": {"role": "bot"}},
            settings={"busy_timeout_ms": 0},
        )
    )
    assert [r.mismatches for r in results] == [(), (), (), ()]
    assert results[1].outcome == "busy" and results[2].outcome == "error"


def test_several_missed_expectations_are_each_named_in_order() -> None:
    step = step_of(
        process="bot",
        do="sql",
        sql="SELECT 1",
        expect="ok",
        expect_code=0,
        expect_max_ms=1,
        expect_rows=1,
        expect_value=1,
    )
    result = StepResult(0, "sql", "error", code=1, error="boom", duration_ms=2.0, row_count=None)
    assert mismatches(step, result, {}) == [
        "outcome error (code 1): boom, expected ok",
        "code 1, expected 0",
        "took 2.0 ms, expected at most 1",
        "None rows, expected 1",
        "value None, expected 1",
    ]
