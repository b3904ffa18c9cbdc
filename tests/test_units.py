"""How figures read (harness.results.units): numbers rounded for people, with their units."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.results.units import mebibytes, number, percent, quantities, quantity

NAN = float("nan")
INF = float("inf")
# Examples are judged by what they return, never by how long they took on a busy machine.
NO_DEADLINE = settings(deadline=None)


def parse(text: str) -> float:
    """The value a reader takes from `number`'s text: separators dropped, the rest as written."""
    return float(text.replace(",", ""))


# --- number ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (NAN, "nan"),
        (INF, "inf"),
        (-INF, "-inf"),
        (0.0, "0"),
        (-0.0, "0"),
        (5.0, "5"),
        (-5.0, "-5"),
        (1234.0, "1,234"),
        (1_000_000.0, "1,000,000"),
    ],
)
def test_number_writes_specials_and_whole_numbers_as_integers(value: float, text: str) -> None:
    assert number(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234.56, "1,235"),
        (-1234.56, "-1,235"),
        (123.45, "123.5"),
        (-123.45, "-123.5"),
        (100.04, "100"),
        (12.345, "12.3"),
        (0.5, "0.5"),
        (0.0001234, "0.000123"),
    ],
)
def test_number_keeps_three_significant_figures_below_1000_and_none_above(
    value: float, text: str
) -> None:
    assert number(value) == text


def test_number_of_an_integer_past_1e15_still_carries_separators() -> None:
    assert number(1e16) == "10,000,000,000,000,000"
    assert number(-(2.0**60)) == "-1,152,921,504,606,846,976"


def test_number_of_a_huge_float_is_written_out_not_in_exponent_form() -> None:
    text = number(1e300)
    assert "e" not in text and text.startswith("1,000,000")
    assert parse(text) == 1e300


def test_number_that_rounds_up_to_1000_reads_with_a_thousands_separator() -> None:
    assert number(999.96) == "1,000"


@NO_DEADLINE
@given(st.floats())
def test_number_never_raises_and_returns_text(value: float) -> None:
    text = number(value)
    assert isinstance(text, str) and text


@NO_DEADLINE
@given(st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False))
def test_number_round_trips_within_half_a_percent_and_keeps_the_order_of_magnitude(
    value: float,
) -> None:
    parsed = parse(number(value))
    assert math.copysign(1, parsed) == math.copysign(1, value) or parsed == 0
    assert abs(parsed - value) <= 0.005 * abs(value)
    if value != 0:
        # Rounding may carry into the next power of ten (9.996 -> 10), never further.
        decade = math.floor(math.log10(abs(parsed))) - math.floor(math.log10(abs(value)))
        assert decade in (0, 1)


@NO_DEADLINE
@given(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1))
def test_number_of_an_integer_is_exact(value: int) -> None:
    assert parse(number(float(value))) == value


# --- quantity ----------------------------------------------------------------------------------


def test_quantity_of_none_is_a_dash() -> None:
    assert quantity(None, "s") == "-"
    assert quantity(None, "ticks/s") == "-"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5, "1.5 s"),
        (1.0, "1 s"),
        (0.5, "500 ms"),
        (0.001, "1 ms"),
        (0.000999, "999 us"),
        (0.0005, "500 us"),
        (0.0, "0 s"),
        (-0.25, "-250 ms"),
        (-2.0, "-2 s"),
    ],
)
def test_quantity_writes_seconds_below_one_as_ms_or_us(value: float, text: str) -> None:
    assert quantity(value, "s") == text


def test_quantity_takes_its_scale_from_the_larger_of_value_and_scale_by() -> None:
    assert quantity(0.5, "s", scale_by=2.0) == "0.5 s"
    assert quantity(0.0005, "s", scale_by=0.5) == "0.5 ms"
    # A smaller scale_by does not shrink the unit of a larger value.
    assert quantity(2.0, "s", scale_by=0.0001) == "2 s"
    assert quantity(0.5, "s", scale_by=-2.0) == "0.5 s"


@pytest.mark.parametrize("unit", ["count", ""])
def test_quantity_of_a_count_is_the_bare_number(unit: str) -> None:
    assert quantity(5027.0, unit) == "5,027"


def test_quantity_of_another_unit_appends_it_unscaled() -> None:
    assert quantity(0.5, "ms") == "0.5 ms"
    assert quantity(5027.0, "ticks/s") == "5,027 ticks/s"


def test_quantity_of_nan_and_inf_keeps_the_unit() -> None:
    assert quantity(NAN, "s") == "nan s"
    assert quantity(INF, "s") == "inf s"
    assert quantity(-INF, "ms") == "-inf ms"


@NO_DEADLINE
@given(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
    st.sampled_from(["s", "ms", "count", "", "ticks/s"]),
)
def test_quantity_never_raises_and_ends_with_a_unit_for_seconds(value: float, unit: str) -> None:
    text = quantity(value, unit)
    if unit == "s":
        assert text.rpartition(" ")[2] in ("s", "ms", "us")


# --- quantities --------------------------------------------------------------------------------


def test_quantities_writes_the_shared_unit_once() -> None:
    assert quantities([5027.0, 4993.0], "ticks/s") == "5,027 · 4,993 ticks/s"


def test_quantities_puts_every_value_on_the_scale_of_the_largest() -> None:
    assert quantities([0.5, 0.0002], "s") == "500 · 0.2 ms"
    assert quantities([2.0, 0.5], "s") == "2 · 0.5 s"
    assert quantities([0.0, 0.0005], "s") == "0 · 500 us"
    assert quantities([-0.5, 0.0002], "s") == "-500 · 0.2 ms"


def test_quantities_of_counts_has_no_unit() -> None:
    assert quantities([1.0, 2.0], "count") == "1 · 2"


def test_quantities_of_nothing_is_a_dash() -> None:
    assert quantities([], "s") == "-"


# --- percent -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (4.2, "+4.2%"),
        (-4.2, "-4.2%"),
        (0.0, "+0.0%"),
        (0.04, "+0.0%"),
        (-0.04, "+0.0%"),
        (0.05001, "+0.1%"),
        (1234.56, "+1234.6%"),
    ],
)
def test_percent_is_signed_with_one_decimal_and_no_negative_zero(value: float, text: str) -> None:
    assert percent(value) == text


def test_percent_unsigned_drops_the_plus() -> None:
    assert percent(4.2, signed=False) == "4.2%"
    assert percent(-4.2, signed=False) == "-4.2%"


@pytest.mark.parametrize("value", [INF, -INF])
def test_percent_of_an_infinite_change_reads_from_zero(value: float) -> None:
    assert percent(value) == "from 0"


def test_percent_of_none_is_a_dash() -> None:
    assert percent(None) == "-"
    assert percent(None, signed=False) == "-"


@NO_DEADLINE
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_percent_of_a_finite_change_round_trips_to_a_tenth(value: float) -> None:
    text = percent(value)
    assert text[0] in "+-" and text.endswith("%")
    assert abs(float(text[:-1]) - value) <= 0.05 + 1e-9 * abs(value)


# --- mebibytes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0.0 MiB"), (1048576, "1.0 MiB"), (1572864, "1.5 MiB"), (104857, "0.1 MiB")],
)
def test_mebibytes_divides_by_2_to_the_20_with_one_decimal(value: float, text: str) -> None:
    assert mebibytes(value) == text
