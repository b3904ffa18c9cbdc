"""Output paths a user gives on the command line, checked before any work is done.

A run that works for minutes and then cannot write its report has wasted the minutes, and a
traceback about `NotADirectoryError` names neither the flag nor the fix. These checks run first
and raise `OutputPathError`: one line with the flag, the path and what to pass instead.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.errors import OutputPathError


def path_arg(text: str) -> Path:
    """argparse type of every path flag: an empty string is a mistake, not the current directory."""
    if not text:
        raise argparse.ArgumentTypeError("empty path; give a file or directory name")
    return Path(text)


def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def output_dir(path: Path, flag: str) -> Path:
    """Make `path` a writable directory (parents too) or raise naming `flag` and the fix."""
    fix = "pass a directory you can write to"
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file, not a directory; {fix}")
    existing = _first_existing(path.absolute())
    if not existing.is_dir():
        raise OutputPathError(f"{flag} {path}: {existing} is a file, not a directory; {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"{flag} {path}: cannot create it ({exc.strerror}); {fix}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {path}: not writable; {fix}")
    return path


def output_file(path: Path, flag: str) -> Path:
    """Check `path` can be written as a file, creating its directory; raise naming `flag`."""
    if path.is_dir():
        raise OutputPathError(
            f"{flag} {path}: is a directory; pass a file name, such as {path / 'report.html'}"
        )
    if path.exists() and not path.is_file():
        # The file is written beside and renamed over its target, which would replace a device
        # or a pipe (as root, /dev/full included) with a regular file.
        raise OutputPathError(
            f"{flag} {path}: not a regular file (a device or a pipe); pass a file name"
        )
    existing = _first_existing(path.absolute().parent)
    fix = "pass a file in a directory you can write to"
    if not existing.is_dir():
        raise OutputPathError(f"{flag} {path}: {existing} is a file, not a directory; {fix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(
            f"{flag} {path}: cannot create {path.parent} ({exc.strerror}); {fix}"
        ) from None
    if not os.access(path.parent, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise OutputPathError(f"{flag} {path}: not writable; {fix}")
    return path
