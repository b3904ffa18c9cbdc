"""The data endpoints' JSON answers, rendered by pydantic-core instead of the `json` module.

Starlette's `JSONResponse` calls `json.dumps` with non-default options, which builds a new
encoder for every answer: 2.2 us of a one-row answer's 2.7 us to render, where
`pydantic_core.to_json` takes 0.5 us (docs/perf/README.md, round 2). The values are the same;
only the spelling of some floats differs (`1e-5` for `1e-05`), as JSON allows.

JSON has no infinity or NaN, and `JSONResponse` refuses them (ValueError, so a 500).
pydantic-core writes them as the bare words `Infinity`, `-Infinity` and `NaN`, which in its
output can only stand for a number when the body holds those letters at all: such a body (rare:
a symbol spelling one of them) is rendered again by the `json` module, which refuses a real one
as before.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
from starlette.responses import JSONResponse

__all__ = ["JSONAnswer"]


class JSONAnswer(JSONResponse):
    """A `JSONResponse` of the same values, rendered faster; ValueError for infinity or NaN."""

    def render(self, content: Any) -> bytes:
        body = pydantic_core.to_json(content, inf_nan_mode="constants")
        if b"NaN" in body or b"Infinity" in body:
            return json.dumps(
                content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
            ).encode("utf-8")
        return body
