"""A market clock that can run faster than the wall clock, for the synthetic feed.

At `speed` 60 one wall-clock second is one market minute, so a 15 s scenario sees fifteen 1m bars
and the indicators over them. Market time starts at `origin` and never runs backwards; after a
restart the bot moves the origin to the newest tick it stored, so the market continues there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

# The fastest market the bot accepts (`--speed`): an hour of market time per wall-clock second.
MAX_SPEED = 3600.0


class MarketClock:
    """Market time in epoch seconds: origin + (wall now - wall at origin) x speed."""

    def __init__(
        self,
        *,
        speed: float = 1.0,
        origin: float | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed={speed!r} must be > 0")
        self.speed = speed
        self._wall = wall
        self._wall_origin = wall()
        self._origin = self._wall_origin if origin is None else origin

    def __call__(self) -> float:
        return self._origin + (self._wall() - self._wall_origin) * self.speed

    def advance_to(self, market_s: float) -> None:
        """Continue from `market_s` if that is later than now (a restart after faster time)."""
        if market_s > self():
            self._origin = market_s
            self._wall_origin = self._wall()

    def wall_ms(self, market_ms: float) -> float:
        """A span of market milliseconds in wall-clock milliseconds."""
        return market_ms / self.speed


class SkewedWall:
    """`time.time()` plus a skew read from a file: the system clock stepped (as NTP or an
    operator does), seen by the market clock alone. The harness's `clock_jump` fault writes the
    file (`SPLITDB_CLOCK_SKEW_FILE`); it is read at most every 50 ms."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.skew = 0.0
        self._next_read = 0.0

    def __call__(self) -> float:
        now = time.monotonic()
        if now >= self._next_read:
            self._next_read = now + 0.05
            try:
                with open(self.path, encoding="utf-8") as handle:
                    self.skew = float(handle.read().strip() or 0.0)
            except (OSError, ValueError):
                pass  # no file (yet), or one being written: the last skew stands
        return time.time() + self.skew
