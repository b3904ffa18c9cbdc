"""`enforcement = "os"`: each role its own Unix user, each file its writer's (root only)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.runs.live_stack import LiveStack
from harness.runs.os_identity import identities
from harness.runs.run import run_scenario
from harness.runs.scenario import parse_scenario
from reference.topology import load_topology

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "scenarios" / "topologies" / "seed-os.toml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason='enforcement = "os" runs each role as its own Unix user, which needs root '
        "(CI runs as root)",
    ),
]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A run directory the role users can reach (pytest's own are root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="splitdb-os-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_role(role: str, code: str) -> subprocess.CompletedProcess[str]:
    """Python code run as the role's user, with the groups the harness gives it."""
    who = identities(load_topology(TOPOLOGY, roles=None))[role]
    return subprocess.run(
        [sys.executable, "-c", code],
        user=who.uid,
        group=who.gid,
        extra_groups=list(who.groups),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_stack_runs_as_its_users_and_every_check_passes(open_dir: Path) -> None:
    scenario = parse_scenario(
        {
            "name": "os",
            "topology": str(TOPOLOGY),
            "duration": 4,
            "processes": {"bot": {"symbols": 5, "rate": 1000, "speed": 120}},
            "load": [
                {"kind": "api", "rate": 50, "endpoints": ["latest", "ticks", "bars"]},
                {"kind": "violator", "role": "api", "rate": 20},
            ],
            "expect": {"max_busy_events": 0},
        }
    )
    result = run_scenario(scenario, out_dir=open_dir, base_dir=ROOT / "scenarios")
    (repeat,) = result.report.repeats
    failed = {c.name: c.summary for c in repeat.checks if not c.ok}
    assert not failed, failed
    data = Path(repeat.dir) / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o755 and data.stat().st_uid == 0
    for name, owner in (
        ("unified_tick_pipeline.db", "bot"),
        ("analysis_data.db", "agent"),
        ("system_logs.db", "api"),
    ):
        info = (data / name).stat()
        assert pwd.getpwuid(info.st_uid).pw_name == f"splitdb-{owner}"
        assert stat.S_IMODE(info.st_mode) == 0o640
        # Each process ran as its role's user: its status-board copy is that user's file.
        copy = data / "status" / "shared_memory.json.sections" / f"{owner}.json"
        assert pwd.getpwuid(copy.stat().st_uid).pw_name == f"splitdb-{owner}"


def test_a_reader_that_opens_the_file_itself_cannot_write_it_nor_replace_it(
    open_dir: Path,
) -> None:
    scenario = parse_scenario({"name": "bypass", "topology": str(TOPOLOGY)})
    stack = LiveStack.start(scenario, base_dir=ROOT / "scenarios", out_dir=open_dir)
    try:
        ticks = stack.file("ticks")
        stack.wait_for(
            lambda: (
                stack.connect("api", "ticks").execute("SELECT count(*) FROM ticks").fetchone()[0]
            ),
            what="ticks",
        )
        attack = as_role(
            "api",
            "import sqlite3, os\n"
            f"c = sqlite3.connect({str(ticks)!r}, isolation_level=None)\n"
            "print('read', c.execute('SELECT count(*) > 0 FROM ticks').fetchone()[0])\n"
            "for sql in ('DELETE FROM ticks', 'DROP TABLE ticks', 'PRAGMA user_version = 9'):\n"
            "    try:\n"
            "        c.execute(sql)\n"
            "        print('WROTE', sql)\n"
            "    except sqlite3.Error as e:\n"
            "        print('refused', e)\n"
            "for f in (os.unlink, lambda p: os.rename(p, p + '.x')):\n"
            "    try:\n"
            f"        f({str(ticks)!r})\n"
            "        print('REPLACED')\n"
            "    except OSError as e:\n"
            "        print('refused', e.strerror)\n",
        )
        assert attack.returncode == 0, attack.stderr
        lines = attack.stdout.splitlines()
        assert lines[0] == "read 1"
        assert lines[1:4] == ["refused attempt to write a readonly database"] * 3
        assert lines[4:] == ["refused Permission denied"] * 2
        # The writer stops; its readers still read (the WAL keeper holds -wal and -shm).
        stack.stop("bot")
        read = as_role(
            "agent",
            "import sqlite3\n"
            f"c = sqlite3.connect('file:{ticks}?mode=ro', uri=True)\n"
            "print(c.execute('SELECT count(*) > 0 FROM ticks').fetchone()[0])\n",
        )
        assert read.stdout.strip() == "1", read.stderr
        stack.start_process("bot")
    finally:
        result = stack.finish()
    failed = {c.name: c.summary for r in result.report.repeats for c in r.checks if not c.ok}
    assert not failed, failed


def test_the_attack_catalogue_from_processes_that_open_the_files_themselves(
    open_dir: Path,
) -> None:
    """scenarios/bypass.toml: with the access manager alone those writes succeed (a warning
    says so); with enforcement = "os", none does."""
    from harness.runs.scenario import load_scenario

    scenario = load_scenario(ROOT / "scenarios" / "bypass.toml")
    result = run_scenario(
        scenario.model_copy(update={"duration": 3}), out_dir=open_dir, base_dir=ROOT / "scenarios"
    )
    bypass = {
        r.variant: next(c for c in r.checks if c.name == "bypass") for r in result.report.repeats
    }
    assert bypass["process"].ok and bypass["process"].evidence["succeeded"] > 0
    assert bypass["process"].warning is not None
    assert "in-process enforcement cannot stop a process that opens the file itself" in (
        bypass["process"].warning
    )
    assert bypass["os"].ok and bypass["os"].evidence["tried"] > 0
    assert bypass["os"].evidence["succeeded"] == 0
    assert result.report.verdict.ok, result.report.verdict.failed


def test_without_root_a_run_says_os_enforcement_needs_it_and_starts_nothing(
    open_dir: Path,
) -> None:
    open_dir.chmod(0o777)
    scenario = open_dir / "os.toml"
    scenario.write_text(f'topology = "{TOPOLOGY}"\nduration = 1\n')
    scenario.chmod(0o644)
    who = identities(load_topology(TOPOLOGY, roles=None))["api"]
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--out", str(open_dir / "r")],
        user=who.uid,
        group=who.gid,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "splitdb: error: topology 'seed-os': enforcement = \"os\" runs each role as its own "
        'Unix user, which needs root; run as root, or use enforcement = "process"'
    )
    assert "Traceback" not in done.stderr
    assert not list((open_dir / "r").rglob("*.db"))
