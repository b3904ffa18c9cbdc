# -*- coding: utf-8 -*-
"""splitdb probe, start-up: every Python started with this directory first on PYTHONPATH runs
this file (site.py imports `sitecustomize` once it has set up sys.path).

1. If SPLITDB_PROBE_EVENTS is set and this is Python 3.10 or newer, import `splitdb_probe`
   (beside this file) and install it: the process's own sqlite3 reports to that file.
   Older Pythons are left alone (not observed).
2. In every case, run the `sitecustomize` this file shadows: the next one on sys.path after
   this directory (Debian's python has one in /usr/lib/python3.X; a user may have their own).
   It becomes `sys.modules["sitecustomize"]`, as if it had been imported directly.

An error in either step never stops the program: one line on stderr, prefixed
`splitdb probe:`, and start-up goes on. Any Python may read this file, so it is written to
parse on every version (no f-strings, type comments instead of annotations).
"""

import os
import sys

MYPY = False  # true for type checkers only: Python 2 has no typing module
if MYPY:
    from typing import Any  # noqa: F401 (used in type comments)

PREFIX = "splitdb probe: "


def _say(message):
    # type: (str) -> None
    try:
        sys.stderr.write(PREFIX + message + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def _install_probe():
    # type: () -> None
    events = os.environ.get("SPLITDB_PROBE_EVENTS")
    if not events or sys.version_info < (3, 10):
        return
    try:
        import importlib

        importlib.import_module("splitdb_probe").install(events)
    except Exception as exc:
        _say("not installed, this process is not observed (%s: %s)" % (type(exc).__name__, exc))


def _real(entry):
    # type: (str) -> str
    return os.path.realpath(entry or os.curdir)


def _find(entry):
    # type: (str) -> object
    """The sitecustomize module found in one sys.path entry, or None."""
    if sys.version_info[0] < 3:
        import imp

        try:
            return imp.find_module("sitecustomize", [entry])
        except ImportError:
            return None
    from importlib.machinery import PathFinder

    return PathFinder.find_spec("sitecustomize", [entry])


def _run(found):
    # type: (object) -> None
    if sys.version_info[0] < 3:
        import imp

        handle, pathname, description = found  # type: ignore[misc]
        try:
            imp.load_module("sitecustomize", handle, pathname, description)
        finally:
            if handle:
                handle.close()
        return
    import importlib.util

    spec = found  # type: Any
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _chain():
    # type: () -> None
    here = _real(os.path.dirname(os.path.abspath(__file__)))
    ours = sys.modules.get("sitecustomize")
    entries = list(sys.path)
    start = 0
    for index, entry in enumerate(entries):
        if _real(entry) == here:
            start = index + 1
            break
    for entry in entries[start:]:
        if _real(entry) == here:
            continue  # this directory twice on the path (a probed process started another)
        try:
            found = _find(entry)
        except Exception:
            continue
        if not found:
            continue
        try:
            _run(found)
        except Exception as exc:
            if ours is not None:
                sys.modules["sitecustomize"] = ours
            _say(
                "the sitecustomize in %s failed (%s: %s); going on without it"
                % (entry, type(exc).__name__, exc)
            )
        return


_install_probe()
try:
    _chain()
except Exception as _exc:
    _say("could not run the shadowed sitecustomize (%s: %s)" % (type(_exc).__name__, _exc))
