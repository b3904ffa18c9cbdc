"""The market clock: faster than the wall when asked, never backwards, continuing after restarts."""

from __future__ import annotations

import pytest

from reference.market_clock import MarketClock


class Wall:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_market_time_runs_speed_times_faster_than_the_wall() -> None:
    wall = Wall()
    clock = MarketClock(speed=60, origin=5_000.0, wall=wall)
    assert clock() == 5_000.0
    wall.now += 2
    assert clock() == 5_120.0
    assert clock.wall_ms(60_000) == 1_000


def test_advance_to_moves_forward_only() -> None:
    wall = Wall()
    clock = MarketClock(speed=10, origin=100.0, wall=wall)
    clock.advance_to(50.0)
    assert clock() == 100.0
    clock.advance_to(400.0)
    assert clock() == 400.0
    wall.now += 1
    assert clock() == 410.0


def test_speed_one_without_origin_is_the_wall_clock() -> None:
    wall = Wall()
    clock = MarketClock(wall=wall)
    wall.now += 3.5
    assert clock() == wall.now


@pytest.mark.parametrize("speed", [0, -1])
def test_bad_speed_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        MarketClock(speed=speed)
