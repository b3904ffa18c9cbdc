"""The probe: a Python process's own `sqlite3`, made to report what it does, without any change
to the program. The process side is `site/` (standard library only: the child may run another
interpreter or venv); the route, the events and their cost are described in
`site/splitdb_probe.py`. This package is the harness side: `probe_env` gives a child the
environment that turns the probe on, and `observed.observe` reads what it reported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SITE_DIR: Path = Path(__file__).resolve().parent / "site"


def probe_env(
    events: Path, *, process: str, role: str, base_env: Mapping[str, str]
) -> dict[str, str]:
    """`base_env` with the probe on: SITE_DIR first on PYTHONPATH (the existing PYTHONPATH kept
    after it), events appended to `events`, tagged with `process` and `role`."""
    env = dict(base_env)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join([str(SITE_DIR), existing]) if existing else str(SITE_DIR)
    env["SPLITDB_PROBE_EVENTS"] = str(Path(events).absolute())
    env["SPLITDB_PROCESS"] = process
    env["SPLITDB_ROLE"] = role
    return env
