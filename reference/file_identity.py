"""Is a database file still the one a connection has open?

A file replaced under a running process (`mv new.db live.db`, a restore from a backup, a
migration putting files in place) leaves the process's connection on the old file, which no
longer has a name: a writer's commits go where nobody will read them, a reader reads a
snapshot that will never change again. SQLite does not notice. The processes do, by comparing
the path's device and inode with those of the file they opened (a `stat`, about a microsecond):
the bot before it acknowledges a commit, the agent before each cycle, the API before each read.
"""

from __future__ import annotations

import os
from pathlib import Path


def file_id(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`; None when nothing is there."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


class FileWatch:
    """Remembers which file `path` named when a connection opened it."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.opened = file_id(path)

    def replaced(self) -> bool:
        """Whether `path` now names another file (or none)."""
        return file_id(self.path) != self.opened
