"""Reading a TOML input file (a scenario, a script): one clear error for a missing or bad file."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from reference.errors import InvalidInput

NESTED_TOO_DEEPLY = "arrays or tables nested too deeply to read; flatten them"


def read_toml(path: Path, error: type[InvalidInput], *, missing_hint: str) -> tuple[str, Any]:
    """The file's text and parsed document; raises `error` naming the file and the fix."""
    if path.is_dir():
        raise error(str(path), [f"a directory, not a file; pass one of its files ({path}/*.toml)"])
    if not path.is_file():
        raise error(str(path), [f"file not found; {missing_hint}"])
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(str(path), [f"<root>: not valid TOML: {exc}; fix the syntax"]) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables by recursion: thousands deep is not a
        # file anyone wrote, and must not end in a traceback.
        raise error(str(path), [f"<root>: not valid TOML: {NESTED_TOO_DEEPLY}"]) from None
    except OSError as exc:
        raise error(str(path), [f"cannot be read ({exc.strerror})"]) from None


_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def key_text(key: object) -> str:
    """A key as TOML writes it: bare when it can be, else quoted, so an error naming it stays
    on one line whatever the key holds (a newline, a dot, a space)."""
    text = str(key)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text)
