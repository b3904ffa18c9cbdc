"""How figures read: a number rounded for people, with its unit."""

from __future__ import annotations

import math


def number(value: float) -> str:
    """Three significant figures below 1000, thousands separators above, integers as integers."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    # Judged after rounding: 999.96 is written '1,000', like every value from 1000 up.
    if abs(value) >= 1000 or abs(float(f"{value:.1f}")) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        text = f"{value:.1f}"
        return text.removesuffix(".0")
    return f"{value:.3g}"


def quantity(value: float | None, unit: str, *, scale_by: float | None = None) -> str:
    """`value` with its unit; seconds below one read as ms or us, so small timings stay legible.

    `scale_by` picks that scale from another value instead (the larger of the two), so figures
    side by side share one unit.
    """
    if value is None:
        return "-"
    size = max(abs(value), abs(scale_by or 0.0))
    if unit == "s" and size != 0 and size < 1:
        if size < 1e-3:
            return f"{number(value * 1e6)} us"
        return f"{number(value * 1e3)} ms"
    if unit in ("count", ""):
        return number(value)
    return f"{number(value)} {unit}"


def percent(value: float | None, *, signed: bool = True) -> str:
    """A percentage such as '+4.2%'; infinite changes (from zero) read as 'from 0'."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "from 0"
    text = f"{value:+.1f}%" if signed else f"{value:.1f}%"
    return "+0.0%" if text in ("-0.0%", "+0.0%") and signed else text


def mebibytes(value: float) -> str:
    """Bytes as MiB with one decimal."""
    return f"{value / 1048576:.1f} MiB"


def quantities(values: list[float], unit: str) -> str:
    """Several values of one unit on one scale, the unit written once: '5,027 · 4,993 ticks/s'."""
    if not values:
        return "-"
    top = max(values, key=abs)
    texts = [quantity(v, unit, scale_by=top) for v in values]
    suffixes = {t.rpartition(" ")[2] for t in texts if " " in t}
    if len(suffixes) == 1 and all(" " in t for t in texts):
        (suffix,) = suffixes
        return " · ".join(t.rpartition(" ")[0] for t in texts) + f" {suffix}"
    return " · ".join(texts)
