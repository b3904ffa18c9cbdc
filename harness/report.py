"""The run report: one versioned JSON document per run, next to the run's evidence.

Format history (bump REPORT_VERSION on any change a reader must know about; keep loading old ones):
  1 - first version: environment, scenario, repeats[] with metrics, checks, exits; verdict.
See docs/report-format.md for the fields.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from reference.errors import ReportFormatError

REPORT_SCHEMA = "splitdb.report"
REPORT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

_PACKAGES = (
    "splitdb",
    "sqlite-utils",
    "multiprocess",
    "fastapi",
    "uvicorn",
    "httpx",
    "pydantic",
    "numpy",
    "MetaTrader5",
)


def environment() -> dict[str, Any]:
    """What the run ran on: enough to tell whether two reports are comparable."""
    packages: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
        "packages": packages,
        "git_commit": _git_commit(),
        "argv": sys.argv,
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        cwd=Path(__file__).resolve().parent,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write atomically: a reader never sees half a report."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_report(path: Path) -> dict[str, Any]:
    """Read a report (a file, or a run directory holding report.json); checks schema and version."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportFormatError(f"{path}: no such report") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportFormatError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != REPORT_SCHEMA:
        raise ReportFormatError(f"{path}: not a splitdb report (schema is not {REPORT_SCHEMA!r})")
    if data.get("version") not in SUPPORTED_VERSIONS:
        raise ReportFormatError(
            f"{path}: report version {data.get('version')!r} is not supported "
            f"(this splitdb reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade splitdb"
        )
    return data
