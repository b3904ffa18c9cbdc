"""The API's errors as JSON: the exception handlers writing the bodies reference.api.models
describes (422 invalid request, 404 unknown symbol or path, 405, 503, 500)."""

from __future__ import annotations

import http
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

from reference.api.parameters import ALLOWED
from reference.api.state import state_of
from reference.errors import DatabaseUnavailable, UnknownSymbol

__all__ = ["http_error", "internal_error", "invalid_request", "unavailable", "unknown_symbol"]


def _given(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    # Echo enough to recognise the input, not a client's megabyte.
    return text if len(text) <= 100 else text[:97] + "..."


def invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems: list[dict[str, Any]] = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        where = str(loc[0]) if loc else "request"
        parameter = str(loc[1]) if len(loc) > 1 else where
        ctx = error.get("ctx") or {}
        allowed = ctx.get("allowed") if isinstance(ctx.get("allowed"), str) else None
        problems.append(
            {
                "parameter": parameter,
                "in": where,
                "problem": str(error.get("msg", "invalid")),
                "allowed": allowed or ALLOWED.get(parameter, "see /docs"),
                "given": _given(error.get("input")),
            }
        )
    return JSONResponse({"error": "invalid request", "problems": problems}, status_code=422)


def unknown_symbol(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UnknownSymbol)
    return JSONResponse(
        {
            "error": "unknown symbol",
            "symbol": exc.symbol,
            "detail": f"no ticks for symbol {exc.symbol!r}; GET /symbols lists the known ones",
        },
        status_code=404,
    )


# Any method taking GET takes HEAD too (HeadAsGet); listed in this order, then the others.
_METHOD_ORDER = ("GET", "HEAD")


def _allowed_methods(allow: str) -> list[str]:
    methods = {method.strip().upper() for method in allow.split(",") if method.strip()}
    if "GET" in methods:
        methods.add("HEAD")
    first = [method for method in _METHOD_ORDER if method in methods]
    return first + sorted(methods - set(first))


def http_error(request: Request, exc: Exception) -> Response:
    """The errors the routing raises itself (no such path, method not allowed), as JSON."""
    assert isinstance(exc, HTTPException)
    path = _given(request.url.path)
    headers = dict(exc.headers or {})
    body: dict[str, Any]
    if exc.status_code == 404:
        body = {
            "error": "not found",
            "path": path,
            "detail": "no endpoint at this path; /docs lists them",
        }
    elif exc.status_code == 405:
        allowed = _allowed_methods(headers.pop("Allow", headers.pop("allow", "")))
        headers["Allow"] = ", ".join(allowed)
        body = {
            "error": "method not allowed",
            "method": _given(request.method),
            "path": path,
            "allowed": allowed,
            "detail": f"this endpoint answers {' and '.join(allowed) or 'nothing'} only",
        }
    else:
        try:
            phrase = http.HTTPStatus(exc.status_code).phrase.lower()
        except ValueError:
            phrase = "error"
        body = {"error": phrase, "path": path, "detail": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DatabaseUnavailable)
    return JSONResponse(
        {"error": "database unavailable", "database": exc.database, "detail": exc.detail},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def internal_error(request: Request, exc: Exception) -> Response:
    """Any other exception: a 500 naming its type, and an `internal_error` event."""
    events = state_of(request.app).runtime.events
    events.emit("internal_error", path=request.url.path, outcome="error", error=repr(exc))
    return JSONResponse(
        {"error": "internal error", "detail": f"{type(exc).__name__}; see the server log"},
        status_code=500,
    )
