"""Writing a file so that a reader sees the old one or the whole new one, never half of it.

Reports, HTML pages and traces are written next to their target under a temporary name, then
renamed over it (`os.replace` is atomic on one filesystem). A write that fails (a full disk, a
text that cannot be encoded) removes its temporary file: nothing half-written is left behind.
A process killed mid-write cannot; `remove_stale_temporaries` removes what such writes left.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path


def _temporary(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.{pid}.tmp")


def write_atomically(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    path = Path(path)
    tmp = _temporary(path, os.getpid())
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files that writes of `path` by killed processes left; returns them.

    A file whose process still runs is kept: it may be writing it now.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if not pid.isdigit() or tmp != _temporary(path, int(pid)) or _running(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
