"""Writing a file so that a reader sees the old one or the whole new one, never half of it.

Reports, HTML pages and traces are written next to their target under a temporary name, then
renamed over it (`os.replace` is atomic on one filesystem). A write that fails (a full disk, a
text that cannot be encoded) removes its temporary file: nothing half-written is left behind.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
