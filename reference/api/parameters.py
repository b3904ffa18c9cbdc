"""The API's parameters: what each accepts (in words, for 422 bodies and the OpenAPI
descriptions), their FastAPI definitions, and the check refusing unknown or repeated ones
(`CheckedQueryRoute`, the route class of the API's router)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from reference import analysis

__all__ = [
    "ALLOWED",
    "DEFAULT_LIMIT",
    "INDICATOR_NAMES",
    "MAX_LIMIT",
    "MAX_MSC",
    "SYMBOL_MAX_LENGTH",
    "SYMBOL_PATTERN",
    "TIMEFRAMES",
    "CheckedQueryRoute",
    "End",
    "IndicatorName",
    "Limit",
    "NameQuery",
    "Range",
    "Start",
    "Symbol",
    "TimeRange",
    "Timeframe",
    "TimeframeQuery",
    "reject_unknown_and_repeated",
    "time_range",
]

SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._#+-]{0,31}$"
SYMBOL_MAX_LENGTH = 32
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
# SQLite integers are signed 64-bit: a larger bound would overflow the parameter binding.
MAX_MSC = 2**63 - 1
# What the analysis agent writes. The Literals spell the values out for the type checker and
# the OpenAPI enums; tests/test_api.py checks they equal reference.analysis's.
TIMEFRAMES: tuple[str, ...] = tuple(analysis.TIMEFRAMES)
INDICATOR_NAMES: tuple[str, ...] = tuple(sorted(analysis.INDICATORS))
Timeframe = Literal["1m", "5m"]
IndicatorName = Literal["ema14", "rsi14", "rsi14_avg_gain", "rsi14_avg_loss", "sma14"]

# What each parameter accepts, in words, for 422 bodies and the OpenAPI descriptions.
ALLOWED: dict[str, str] = {
    "symbol": (
        f"1 to {SYMBOL_MAX_LENGTH} characters: a letter or digit, then letters, digits or "
        f". _ # + - (pattern {SYMBOL_PATTERN})"
    ),
    "start": f"integer epoch milliseconds 0..{MAX_MSC}, inclusive (default 0)",
    "end": (
        f"integer epoch milliseconds 0..{MAX_MSC}, inclusive (default: no upper bound); "
        "an end before start matches nothing"
    ),
    "limit": f"integer 1..{MAX_LIMIT} (default {DEFAULT_LIMIT})",
    "timeframe": f"one of {', '.join(TIMEFRAMES)} (default 1m)",
    "name": f"one of {', '.join(INDICATOR_NAMES)} (default: all of them)",
}

Symbol = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=SYMBOL_MAX_LENGTH,
        pattern=SYMBOL_PATTERN,
        description=ALLOWED["symbol"],
        examples=["EURUSD"],
    ),
]
Start = Annotated[int, Query(ge=0, le=MAX_MSC, description=ALLOWED["start"])]
End = Annotated[int | None, Query(ge=0, le=MAX_MSC, description=ALLOWED["end"])]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=ALLOWED["limit"])]
TimeframeQuery = Annotated[Timeframe, Query(description=ALLOWED["timeframe"])]
NameQuery = Annotated[IndicatorName | None, Query(description=ALLOWED["name"])]


@dataclass(frozen=True)
class TimeRange:
    """An inclusive [start, end] range of epoch milliseconds; empty if end < start."""

    start: int
    end: int | None  # None: no upper bound

    @property
    def last(self) -> int:
        """The inclusive upper bound for SQL: `end`, or the largest SQLite integer."""
        return MAX_MSC if self.end is None else self.end


def _problem(parameter: str, problem: str, given: object, *, allowed: str) -> dict[str, Any]:
    return {
        "type": "value_error",
        "loc": ("query", parameter),
        "msg": problem,
        "input": given,
        "ctx": {"allowed": allowed},
    }


async def time_range(start: Start = 0, end: End = None) -> TimeRange:
    """The start/end query parameters.

    An end before start is not refused: the OpenAPI schema cannot state a rule between two
    parameters, so such a request is valid by the schema, and it matches nothing.
    """
    return TimeRange(start, end)


Range = Annotated[TimeRange, Depends(time_range)]


def _query_parameters(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_parameters(sub)
    return names


def reject_unknown_and_repeated(request: Request, known: Iterable[str]) -> None:
    """Refuse a query parameter not in `known` (the route's), or one given twice.

    A typo (`limt=5`) would otherwise be ignored silently and the answer look right.
    """
    known = sorted(known)
    seen: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        seen.setdefault(key, []).append(value)
    takes = f"this endpoint's parameters: {', '.join(known)}" if known else "none"
    problems = [
        _problem(key, "unknown parameter", values[-1], allowed=takes)
        for key, values in seen.items()
        if key not in known
    ]
    problems += [
        _problem(
            key,
            f"given {len(values)} times; give it once",
            ", ".join(values),
            allowed=ALLOWED.get(key, "see /docs"),
        )
        for key, values in seen.items()
        if len(values) > 1 and key in known
    ]
    if problems:
        raise RequestValidationError(problems)


class CheckedQueryRoute(APIRoute):
    """An APIRoute that refuses unknown and repeated query parameters before anything else.

    Checked before the route's own parameters are, so such problems are reported alone. The
    route's parameter names are read once, when the route is made; a request without a query
    string has nothing to check. (A FastAPI dependency did this before: solving it for every
    request cost more than the check, docs/perf/README.md.)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        known = frozenset(_query_parameters(self.dependant))

        async def checked(request: Request) -> Response:
            if request.scope.get("query_string"):
                reject_unknown_and_repeated(request, known)
            return await handler(request)

        return checked
