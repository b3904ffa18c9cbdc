"""Is a database file still the one a connection has open?

A file replaced under a running process (`mv new.db live.db`, a restore from a backup, a
migration putting files in place) leaves the process's connection on the old file, which no
longer has a name: a writer's commits go where nobody will read them, a reader reads a
snapshot that will never change again. SQLite does not notice. The processes do, by comparing
the path's device and inode with those of the file they opened (a `stat`, about a microsecond):
the bot before it acknowledges a commit, the agent before each cycle, the API's request log
before each batch. The API's readers look at most every few milliseconds
(`FileWatch.replaced_lately`): the `stat` per request was a measurable share of a request's cost
(docs/perf/README.md), and a reader that raced the rename by a few milliseconds answers from the
old file either way.
"""

from __future__ import annotations

import os
import time
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
        self._next_look = 0.0

    def replaced(self) -> bool:
        """Whether `path` now names another file (or none)."""
        return file_id(self.path) != self.opened

    def replaced_lately(self, every_s: float) -> bool:
        """`replaced()`, looked at no more than once per `every_s` seconds (monotonic clock);
        False in between. A replacement is noticed at most `every_s` late, by the first call
        after that."""
        now = time.monotonic()
        if now < self._next_look:
            return False
        self._next_look = now + every_s
        return file_id(self.path) != self.opened
