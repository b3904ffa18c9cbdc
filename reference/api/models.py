"""The API's response models: its OpenAPI schema. Rows keep the tables' column names; the error
bodies are the ones reference.api.errors writes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "ERRORS",
    "SYMBOL_ERRORS",
    "BarOut",
    "BarsOut",
    "HealthOut",
    "IndicatorOut",
    "IndicatorsOut",
    "InvalidRequestOut",
    "ProblemOut",
    "RequestLogStatsOut",
    "StatusOut",
    "SymbolsOut",
    "TickOut",
    "TicksOut",
    "UnavailableOut",
    "UnknownSymbolOut",
]


class TickOut(BaseModel):
    symbol: str
    time_msc: int
    seq: int
    time: int
    bid: float
    ask: float
    last: float | None
    volume: int | None
    flags: int | None
    volume_real: float | None


class TicksOut(BaseModel):
    symbol: str
    start: int
    end: int | None = Field(description="null: no upper bound")
    limit: int
    count: int
    truncated: bool = Field(description="more ticks matched than `limit`")
    ticks: list[TickOut]


class BarOut(BaseModel):
    symbol: str
    timeframe: str
    start_msc: int
    open: float
    high: float
    low: float
    close: float
    tick_count: int | None
    volume: float | None


class BarsOut(BaseModel):
    symbol: str
    timeframe: str
    start: int
    end: int | None = Field(description="null: no upper bound")
    limit: int
    count: int
    truncated: bool
    bars: list[BarOut]


class IndicatorOut(BaseModel):
    symbol: str
    timeframe: str
    start_msc: int
    name: str
    value: float | None


class IndicatorsOut(BaseModel):
    symbol: str
    timeframe: str
    name: str | None
    start: int
    end: int | None = Field(description="null: no upper bound")
    limit: int
    count: int
    truncated: bool
    indicators: list[IndicatorOut]


class SymbolsOut(BaseModel):
    symbols: list[str]


class RequestLogStatsOut(BaseModel):
    logged: int = Field(description="rows committed to request_log")
    dropped: int = Field(description="records refused because the queue was full (or stopped)")
    failed: int = Field(description="records given up after database errors")
    queued: int = Field(description="records waiting to be committed")
    batches: int = Field(description="transactions committed")
    errors: int = Field(description="failed commit attempts (each retried or failed)")
    last_error: str | None


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    role: str
    pid: int
    uptime_s: float
    request_log_running: bool


class StatusOut(BaseModel):
    role: str
    pid: int
    uptime_s: float
    request_log: RequestLogStatsOut
    board: dict[str, Any] | None = Field(description="the status board, null if unreadable")
    board_error: str | None


class ProblemOut(BaseModel):
    parameter: str
    in_: str = Field(alias="in")
    problem: str
    allowed: str
    given: str | None = None


class InvalidRequestOut(BaseModel):
    error: Literal["invalid request"]
    problems: list[ProblemOut]


class UnknownSymbolOut(BaseModel):
    error: Literal["unknown symbol"]
    symbol: str
    detail: str


class UnavailableOut(BaseModel):
    error: Literal["database unavailable"]
    database: str
    detail: str


# The answers besides the 200 an endpoint declares (the symbol endpoints add the 404).
ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": InvalidRequestOut, "description": "a parameter is invalid"},
    503: {"model": UnavailableOut, "description": "a database is not readable right now"},
}
SYMBOL_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": UnknownSymbolOut, "description": "no data for this symbol"},
}
