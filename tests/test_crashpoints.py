"""Crash points: SPLITDB_CRASH_AT names one point of a write path; a process dies there only."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference import crashpoints
from reference.access import AccessManager, transaction
from reference.crashpoints import ENV, POINTS, CrashPlan, parse
from reference.errors import CrashPointError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _disarmed() -> Iterator[None]:
    yield
    crashpoints.disarm()


@pytest.mark.parametrize(
    ("value", "plan"),
    [
        ("txn.before_commit", CrashPlan("txn.before_commit", 1, None)),
        ("txn.before_commit:3", CrashPlan("txn.before_commit", 3, None)),
        ("bot/txn.begin:2", CrashPlan("txn.begin", 2, "bot")),
        (" agent/agent.after_commit ", CrashPlan("agent.after_commit", 1, "agent")),
    ],
)
def test_a_value_names_a_point_an_optional_role_and_which_hit(value: str, plan: CrashPlan) -> None:
    assert parse(value) == plan


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("commit:3", "unknown point 'commit'"),
        ("", "empty"),
        ("txn.begin:0", "must be an integer >= 1"),
        ("txn.begin:x", "must be an integer >= 1"),
        ("bott/txn.begin", "unknown role 'bott'"),
        ("agent/bot.after_ack", "agent never reaches bot.after_ack"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_the_points(
    value: str, problem: str
) -> None:
    with pytest.raises(CrashPointError) as info:
        parse(value)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{ENV}={value!r}: ")
    assert problem in message
    assert ", ".join(POINTS) in message


def _reached_in_source() -> set[str]:
    """Every point name passed to `crashpoints.reach(...)` in the reference package."""
    names: set[str] = set()
    for path in (ROOT / "reference").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "reach"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "crashpoints"
            ):
                argument = node.args[0]
                assert isinstance(argument, ast.Constant) and isinstance(argument.value, str), (
                    f"{path}: reach() needs a literal name"
                )
                names.add(argument.value)
    return names


def test_the_registry_lists_exactly_the_points_the_code_reaches() -> None:
    assert _reached_in_source() == set(POINTS)


def test_an_unarmed_process_passes_every_point() -> None:
    crashpoints.disarm()
    for name in POINTS:
        crashpoints.reach(name)


def test_only_the_nth_hit_of_the_named_point_fires_and_only_for_its_role() -> None:
    fired: list[CrashPlan] = []
    crashpoints.arm("agent", "bot/txn.begin:1", action=fired.append)
    crashpoints.reach("txn.begin")
    assert fired == []
    crashpoints.arm("bot", "bot/txn.begin:3", action=fired.append)
    for _ in range(5):
        crashpoints.reach("txn.after_commit")
        crashpoints.reach("txn.begin")
    assert fired == [CrashPlan("txn.begin", 3, "bot")]


@pytest.mark.parametrize(
    ("point", "in_transaction", "visible_to_others"),
    [
        ("txn.begin", True, False),
        ("txn.before_commit", True, False),
        ("txn.after_commit", False, True),
    ],
)
def test_transaction_points_sit_between_begin_the_writes_and_commit(
    seed_access: AccessManager, point: str, in_transaction: bool, visible_to_others: bool
) -> None:
    writer = seed_access.connect("bot", "ticks")
    reader = seed_access.connect("api", "ticks")
    seen: list[tuple[bool, bool]] = []

    def look(plan: CrashPlan) -> None:
        count = reader.execute("SELECT count(*) FROM ticks").fetchone()[0]
        seen.append((writer.in_transaction, count > 0))

    crashpoints.arm("bot", point, action=look)
    with transaction(writer):
        writer.execute("INSERT INTO ticks VALUES ('EURUSD', 1, 0, 0, 1.1, 1.2, 0.0, 1, 6, NULL)")
    assert seen == [(in_transaction, visible_to_others)]


def test_a_read_transaction_has_no_crash_points(seed_access: AccessManager) -> None:
    fired: list[CrashPlan] = []
    crashpoints.arm("api", "txn.begin", action=fired.append)
    reader = seed_access.connect("api", "ticks")
    with transaction(reader, immediate=False):
        reader.execute("SELECT count(*) FROM ticks").fetchone()
    assert fired == []


def _python(code: str, value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, ENV: value}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_an_armed_process_kills_itself_with_sigkill_at_the_nth_hit() -> None:
    code = (
        "from reference import crashpoints\n"
        "crashpoints.arm('bot')\n"
        "for i in range(1, 6):\n"
        "    crashpoints.reach('bot.after_ack')\n"
        "    print(i, flush=True)\n"
    )
    done = _python(code, "bot.after_ack:3")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1", "2"]
    assert "crash point bot.after_ack reached for the 3rd time" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("module", ["reference.bot", "reference.agent", "reference.api"])
def test_a_bad_value_stops_each_process_at_start_with_exit_2(tmp_path: Path, module: str) -> None:
    env = {**os.environ, ENV: "commit:3"}
    done = subprocess.run(
        [sys.executable, "-m", module, "--data-dir", str(tmp_path / "data")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert ENV in lines[0] and "unknown point 'commit'" in lines[0]
    assert "txn.before_commit" in lines[0]
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
