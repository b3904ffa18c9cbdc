"""splitdb's pytest plugin: `pytest --splitdb-scenarios PATH` runs scenario files as test items.

Run as a user would: a fresh pytest process in a directory outside this repo's tests, with the
plugin loaded from the installed entry point, under `-n 2`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "shared-file"


def pytest_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_scenarios_are_items_that_fail_with_their_checks_and_report(tmp_path: Path) -> None:
    system = tmp_path / "system"
    shutil.copytree(EXAMPLE, system)
    (system / "broken.toml").write_text("duration = -1\n")
    junit = tmp_path / "junit.xml"
    proc = pytest_run(
        tmp_path,
        "--splitdb-scenarios",
        str(system),
        "--splitdb-out",
        str(tmp_path / "reports"),
        "-n",
        "2",
        f"--junitxml={junit}",
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    # One item per scenario; the topologies beside them are not items.
    assert "1 failed, 1 passed, 1 error" in out
    assert "FAILED system/shared.toml::shared" in out
    assert "[FAIL] repeat 1: contention: " in out
    assert (
        "invalid scenario" in out and "broken.toml: duration: Input should be greater than 0" in out
    )
    reports = {
        case.get("name"): prop.get("value")
        for case in ET.parse(junit).iter("testcase")
        for prop in case.iter("property")
        if prop.get("name") == "splitdb_report"
    }
    assert set(reports) == {"shared", "separate"}
    for path in reports.values():
        assert path is not None and Path(path).is_file()
    assert f"report: {reports['shared']}" in out


def test_a_missing_scenario_path_is_a_usage_error(tmp_path: Path) -> None:
    proc = pytest_run(tmp_path, "--splitdb-scenarios", "nowhere")
    assert proc.returncode == 4  # pytest's usage error
    assert "--splitdb-scenarios nowhere: no such file or directory" in proc.stderr


def test_without_the_option_the_plugin_collects_no_toml(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "system")
    proc = pytest_run(tmp_path, str(tmp_path / "system"))
    assert proc.returncode == 5, proc.stdout  # nothing collected


# The splitdb_stack fixture.

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

NOSY_SYSTEM = {
    "topology.toml": """\
name = "two"
layout = "separate"
status = "status.json"

[databases.a]
path = "a.db"

[databases.b]
path = "b.db"

[roles.keeper]
a = "rw"

[roles.nosy]
a = "ro"
b = "rw"
""",
    "system.toml": """\
topology = "topology.toml"

[processes.keeper]
command = ["{python}", "keeper.py"]
role = "keeper"
ready = { line = "^ready$" }

[processes.nosy]
command = ["{python}", "nosy.py"]
role = "nosy"
ready = { line = "^ready$" }
""",
    "keeper.py": """\
import os, sqlite3, time
db = sqlite3.connect(os.environ["SPLITDB_DB_A"], isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")
db.execute("INSERT INTO items (name) VALUES ('kept')")
print("ready", flush=True)
while True:
    time.sleep(1)
""",
    # Writes into `a`, which its role only reads: the permissions check must name it.
    "nosy.py": """\
import os, sqlite3, time
open(os.path.join(os.environ["SPLITDB_RUN_DIR"], "nosy.pid"), "w").write(str(os.getpid()))
a = sqlite3.connect(os.environ["SPLITDB_DB_A"], timeout=5, isolation_level=None)
while True:
    try:
        a.execute("DELETE FROM items")
        break
    except sqlite3.OperationalError:  # keeper has not made the table yet
        time.sleep(0.05)
print("ready", flush=True)
while True:
    time.sleep(1)
""",
}


def write_system(where: Path, tests: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    for name, text in NOSY_SYSTEM.items():
        (where / name).write_text(text)
    (where / "test_user.py").write_text(tests)


def test_a_stack_whose_checks_fail_fails_the_test_with_evidence_and_report(
    tmp_path: Path,
) -> None:
    write_system(
        tmp_path / "user",
        """\
def test_nosy(splitdb_stack):
    stack = splitdb_stack("system.toml")
    assert stack.connect("keeper", "a").execute("SELECT count(*) FROM items").fetchone()[0] == 0


def test_keeper_alone(splitdb_stack):
    stack = splitdb_stack("system.toml", processes=["keeper"])
    assert stack.port("keeper") > 0
""",
    )
    junit = tmp_path / "junit.xml"
    proc = pytest_run(tmp_path / "user", "-n", "2", f"--junitxml={junit}")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "1 failed, 1 passed" in out
    assert "FAILED test_user.py::test_nosy" in out
    assert "[FAIL] repeat 1: permissions: " in out
    reports = {
        case.get("name"): prop.get("value")
        for case in ET.parse(junit).iter("testcase")
        for prop in case.iter("property")
        if prop.get("name") == "splitdb_report"
    }
    assert set(reports) == {"test_nosy", "test_keeper_alone"}
    assert f"report: {reports['test_nosy']}" in out
    report = json.loads(Path(str(reports["test_nosy"])).read_text())
    permissions = next(c for c in report["repeats"][0]["checks"] if c["name"] == "permissions")
    assert "nosy (role nosy) wrote a (a.db) 1 times: DELETE FROM items" in permissions["summary"]


def test_a_failing_test_body_still_stops_the_processes_and_shows_the_checks(
    tmp_path: Path,
) -> None:
    write_system(
        tmp_path / "user",
        """\
def test_body_fails(splitdb_stack):
    splitdb_stack("system.toml")
    assert 1 == 2, "the test's own failure"
""",
    )
    proc = pytest_run(tmp_path / "user", "-p", "no:randomly", "--basetemp", str(tmp_path / "t"))
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "the test's own failure" in out
    assert "splitdb checks" in out and "[FAIL] repeat 1: permissions: " in out
    pids = list((tmp_path / "t").rglob("nosy.pid"))
    assert len(pids) == 1
    assert not Path(f"/proc/{pids[0].read_text()}").exists(), "nosy outlived its test"


def test_bad_stack_arguments_are_one_line_errors_naming_the_fix(tmp_path: Path) -> None:
    write_system(
        tmp_path / "user",
        """\
def test_unknown_process(splitdb_stack):
    splitdb_stack("system.toml", processes=["keepr"])


def test_missing_scenario(splitdb_stack):
    splitdb_stack("nowhere.toml")
""",
    )
    proc = pytest_run(tmp_path / "user")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert (
        "processes=['keepr']: 'keepr' is not a process of scenario 'system'; its processes: "
        "keeper, nosy" in out
    )
    assert "splitdb_stack: invalid scenario " in out
    assert "nowhere.toml: file not found; list shipped ones with `splitdb scenarios`" in out
    assert "During handling" not in out


def test_a_process_that_never_becomes_ready_fails_the_test_with_its_stderr(
    tmp_path: Path,
) -> None:
    write_system(
        tmp_path / "user",
        """\
def test_never_ready(splitdb_stack):
    splitdb_stack("system.toml")
    raise AssertionError("the body must not run")
""",
    )
    (tmp_path / "user" / "keeper.py").write_text("import sys\nsys.exit('keeper: no config')\n")
    proc = pytest_run(tmp_path / "user")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "the body must not run" not in out
    assert "[FAIL] repeat 1: run: " in out
    assert "keeper: no config" in out


def test_the_user_style_example_passes_under_xdist(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    proc = pytest_run(tmp_path / "examples" / "pytest", "-n", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout


def test_a_scenario_with_variants_is_one_item_per_variant(tmp_path: Path) -> None:
    scenarios = Path(__file__).resolve().parent.parent / "scenarios"
    proc = pytest_run(tmp_path, "--splitdb-scenarios", str(scenarios / "claims.toml"), "--co", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    items = [line.split("::")[-1] for line in proc.stdout.splitlines() if "::" in line]
    assert items == [
        "claims[seed]",
        "claims[legacy]",
        "claims[seed-nowait]",
        "claims[legacy-nowait]",
        "claims[seed-delete]",
        "claims[postgres]",
    ]


def test_each_variant_item_runs_its_own_arm(tmp_path: Path) -> None:
    (tmp_path / "pair.toml").write_text(
        """\
duration = 1

[processes.bot]
rate = 500

[processes.agent]
enabled = false

[processes.api]
enabled = false

[[variant]]
name = "seed"
expect = { max_busy_events = 0 }

[[variant]]
name = "legacy"
topology = "legacy"
# A limit no run can meet: this arm's own expectation must fail its item, and only it.
expect = { min_busy_events = 1000000 }
"""
    )
    proc = pytest_run(
        tmp_path,
        "--splitdb-scenarios",
        str(tmp_path / "pair.toml"),
        "--splitdb-out",
        str(tmp_path / "reports"),
        "-n",
        "2",
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "1 failed, 1 passed" in out
    assert "FAILED pair.toml::pair[legacy]" in out
    assert "scenario pair.legacy: FAIL" in out
    topologies = sorted(
        json.loads(path.read_text())["repeats"][0]["topology"]["layout"]
        for path in (tmp_path / "reports").glob("*/report.json")
    )
    assert topologies == ["separate", "shared"]  # seed, legacy
