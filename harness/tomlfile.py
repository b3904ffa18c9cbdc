"""Reading a TOML input file (a scenario, a script): one clear error for a missing or bad file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from reference.errors import InvalidInput


def read_toml(path: Path, error: type[InvalidInput], *, missing_hint: str) -> tuple[str, Any]:
    """The file's text and parsed document; raises `error` naming the file and the fix."""
    if not path.is_file():
        raise error(str(path), [f"file not found; {missing_hint}"])
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(str(path), [f"<root>: not valid TOML: {exc}; fix the syntax"]) from None
