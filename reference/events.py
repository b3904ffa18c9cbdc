"""Per-process event logs: JSON lines, one file per process, no lock on the measuring path.

Each line is one event: `t` (monotonic ns, comparable across processes on one machine), `wall`
(epoch seconds), `role`, `pid`, `op`, and optional `db`, `dur_us`, `outcome` ('ok', 'busy',
'locked', 'denied', 'error'), `code` (SQLite extended error code) and op-specific fields.
Readers must tolerate a torn last line: a process killed mid-write leaves one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

Event = dict[str, Any]

# SQLite primary result codes that mean "someone else holds the lock".
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_FULL = 13


def outcome_of(exc: BaseException | None) -> tuple[str, int | None]:
    """Classify an exception as an event outcome and its SQLite error code."""
    if exc is None:
        return "ok", None
    from reference.errors import PermissionViolation

    if isinstance(exc, PermissionViolation):
        return "denied", None
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary == SQLITE_BUSY:
            return "busy", code
        if primary == SQLITE_LOCKED:
            return "locked", code
        if primary == SQLITE_FULL:
            return "full", code
        return "error", code
    return "error", None


class EventLog:
    """Appends events of one process to its own file; `None` path makes it a no-op sink.

    Buffered; `flush()` pushes to the OS (not to disk: a killed process keeps what it flushed,
    a crashed machine may not). Call `flush()` after events others rely on, such as acks.
    """

    def __init__(self, path: Path | None, *, role: str) -> None:
        self.path = path
        self.role = role
        self.pid = os.getpid()
        self._file: IO[str] | None = None
        # The API writes events from several threads; one line must stay one line.
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def emit(self, op: str, **fields: Any) -> None:
        """Record one event now."""
        if self._file is None:
            return
        event = {
            "t": time.monotonic_ns(),
            "wall": time.time(),
            "role": self.role,
            "pid": self.pid,
            "op": op,
            **fields,
        }
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is not None:
                self._file.write(line)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()
                self._file.close()
                self._file = None


def read_events(path: Path) -> Iterator[Event]:
    """Events of one file in order; skips a torn final line (the writer was killed mid-line)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            yield json.loads(line)
