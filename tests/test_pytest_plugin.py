"""splitdb's pytest plugin: `pytest --splitdb-scenarios PATH` runs scenario files as test items.

Run as a user would: a fresh pytest process in a directory outside this repo's tests, with the
plugin loaded from the installed entry point, under `-n 2`.
"""

from __future__ import annotations

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
