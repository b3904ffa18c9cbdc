"""Charts as inline SVG text: line charts and bar charts with titles, axes, units and legends.

No plotting library and no script: a report must open anywhere, offline, years later. Every
chart carries an SVG <title> and <desc> (read by screen readers, and shown as the visible title),
labelled axes with units, and series told apart by line dash and marker shape as well as by
colour; each point and bar has a tooltip with its value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
DASHES = ("", "7 4", "2 3", "9 3 2 3", "4 2", "1 4", "12 4")
MARKERS = ("circle", "square", "triangle", "diamond", "cross", "down", "plus")
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


@dataclass(frozen=True)
class Series:
    """One line: a label for the legend and (x, y) points in data units."""

    label: str
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class Mark:
    """A vertical line at `x` with a label, such as a fault being applied."""

    x: float
    label: str


@dataclass(frozen=True)
class _Frame:
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    y_max: float
    x_min: float = 0.0
    x_max: float = 1.0
    y_ticks: list[float] = field(default_factory=list)

    def x(self, value: float) -> float:
        span = float(self.x_max - self.x_min) or 1.0
        return float(self.left + (value - self.x_min) / span * (self.right - self.left))

    def y(self, value: float) -> float:
        return float(self.bottom - value / (self.y_max or 1.0) * (self.bottom - self.top))


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `count` intervals over span."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * power:
            return factor * power
    return 10.0 * power


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    step = nice_step(high - low, count)
    first = math.floor(low / step) * step
    out = []
    value = first
    while value <= high + step * 1e-9:
        out.append(round(value, 12))
        value += step
    if out[-1] < high:
        out.append(round(value, 12))
    return out


def tick_label(value: float) -> str:
    """Compact axis numbers: 5,000 / 20k / 1.5M / 0.25."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:g}M"
    if size >= 1e4:
        return f"{value / 1e3:g}k"
    if size >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}"


def _text(x: float, y: float, body: str, **attrs: str | float) -> str:
    # `class_` stands for `class` (a keyword); other underscores are SVG's hyphens.
    extra = "".join(f' {k.rstrip("_").replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(body)}</text>'


def _marker(shape: str, x: float, y: float, colour: str, size: float = 3.2) -> str:
    s = size
    fill = f'fill="{colour}" stroke="{colour}"'
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{s:.1f}" {fill}/>'
    if shape == "square":
        side = 2 * s
        return (
            f'<rect x="{x - s:.1f}" y="{y - s:.1f}" width="{side:.1f}" height="{side:.1f}" {fill}/>'
        )
    if shape in ("triangle", "down"):
        d = -1 if shape == "triangle" else 1
        pts = f"{x:.1f},{y + d * s * 1.2:.1f} {x - s * 1.1:.1f},{y - d * s * 0.8:.1f} "
        pts += f"{x + s * 1.1:.1f},{y - d * s * 0.8:.1f}"
        return f'<polygon points="{pts}" {fill}/>'
    if shape == "diamond":
        pts = f"{x:.1f},{y - s * 1.3:.1f} {x + s:.1f},{y:.1f} "
        pts += f"{x:.1f},{y + s * 1.3:.1f} {x - s:.1f},{y:.1f}"
        return f'<polygon points="{pts}" {fill}/>'
    # cross and plus: stroked, so they read even where lines overlap
    if shape == "cross":
        path = f"M{x - s:.1f},{y - s:.1f}L{x + s:.1f},{y + s:.1f}"
        path += f"M{x - s:.1f},{y + s:.1f}L{x + s:.1f},{y - s:.1f}"
    else:
        path = f"M{x - s:.1f},{y:.1f}L{x + s:.1f},{y:.1f}"
        path += f"M{x:.1f},{y - s:.1f}L{x:.1f},{y + s:.1f}"
    return f'<path d="{path}" stroke="{colour}" stroke-width="1.8" fill="none"/>'


def _open(chart_id: str, title: str, description: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
        f'role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'font-family="{FONT}" font-size="12">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        _text(8, 18, title, font_size=14, font_weight="600", fill="#1a1a1a"),
    ]


def _style(index: int) -> tuple[str, str, str]:
    """Colour, dash pattern and marker of the index-th series: all three differ between series."""
    return (
        COLOURS[index % len(COLOURS)],
        DASHES[index % len(DASHES)],
        MARKERS[index % len(MARKERS)],
    )


def _legend(labels: Sequence[str], width: int, top: float) -> tuple[list[str], float]:
    """Legend items (line sample with dash and marker, then the label), wrapped to the width."""
    out: list[str] = []
    x, y = 8.0, top
    for i, label in enumerate(labels):
        item_width = 34 + 7 * len(label) + 16
        if x + item_width > width and x > 8:
            x, y = 8.0, y + 18
        colour, dash, shape = _style(i)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 26:.1f}" y2="{y - 4:.1f}" '
            f'stroke="{colour}" stroke-width="2"{dash_attr}/>'
        )
        out.append(_marker(shape, x + 13, y - 4, colour))
        out.append(_text(x + 32, y, label, fill="#1a1a1a"))
        x += item_width
    return out, y


def _axes(
    frame: _Frame,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]],
) -> list[str]:
    out = []
    for value in frame.y_ticks:
        y = frame.y(value)
        out.append(
            f'<line x1="{frame.left:.1f}" y1="{y:.1f}" x2="{frame.right:.1f}" y2="{y:.1f}" '
            'stroke="#e3e3e3"/>'
        )
        out.append(_text(frame.left - 6, y + 4, tick_label(value), text_anchor="end", fill="#444"))
    out.append(
        f'<line x1="{frame.left:.1f}" y1="{frame.bottom:.1f}" x2="{frame.right:.1f}" '
        f'y2="{frame.bottom:.1f}" stroke="#555"/>'
    )
    out.append(
        f'<line x1="{frame.left:.1f}" y1="{frame.top:.1f}" x2="{frame.left:.1f}" '
        f'y2="{frame.bottom:.1f}" stroke="#555"/>'
    )
    for x, label in x_ticks:
        out.append(
            f'<line x1="{x:.1f}" y1="{frame.bottom:.1f}" x2="{x:.1f}" y2="{frame.bottom + 4:.1f}" '
            'stroke="#555"/>'
        )
        out.append(_text(x, frame.bottom + 17, label, text_anchor="middle", fill="#444"))
    middle_y = (frame.top + frame.bottom) / 2
    out.append(
        f'<text x="14" y="{middle_y:.1f}" transform="rotate(-90 14 {middle_y:.1f})" '
        f'text-anchor="middle" fill="#1a1a1a" class="axis-label">{escape(y_label)}</text>'
    )
    out.append(
        _text(
            (frame.left + frame.right) / 2,
            frame.height - 6,
            x_label,
            text_anchor="middle",
            fill="#1a1a1a",
            class_="axis-label",
        )
    )
    return out


def _empty(parts: list[str], width: int, height: int, note: str) -> str:
    parts.append(_text(width / 2, height / 2, note, text_anchor="middle", fill="#555"))
    parts.append("</svg>")
    return "\n".join(parts)


def line_chart(
    *,
    chart_id: str,
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[Series],
    description: str,
    marks: Sequence[Mark] = (),
    y_format: Callable[[float], str] = tick_label,
    width: int = 560,
    height: int = 300,
) -> str:
    """A line chart of one or more series sharing axes; the y axis starts at zero."""
    parts = _open(chart_id, title, description, width, height)
    drawn = [s for s in series if s.points]
    if not drawn:
        return _empty(parts, width, height, "no data in this report")
    legend, legend_bottom = _legend([s.label for s in drawn], width, 38)
    parts += legend
    xs = [x for s in drawn for x, _ in s.points] + [m.x for m in marks]
    ys = [y for s in drawn for _, y in s.points]
    y_ticks = ticks(0, max(max(ys), 0) or 1.0, 4)
    x_tick_values = ticks(min(xs), max(xs), 6)
    frame = _Frame(
        width=width,
        height=height,
        left=62,
        top=legend_bottom + 16,
        right=width - 18,
        bottom=height - 40,
        y_max=y_ticks[-1],
        x_min=x_tick_values[0],
        x_max=x_tick_values[-1],
        y_ticks=y_ticks,
    )
    parts += _axes(frame, x_label, y_label, [(frame.x(v), tick_label(v)) for v in x_tick_values])
    for mark in marks:
        x = frame.x(mark.x)
        parts.append(
            f'<line x1="{x:.1f}" y1="{frame.top:.1f}" x2="{x:.1f}" y2="{frame.bottom:.1f}" '
            'stroke="#7a7a7a" stroke-dasharray="3 3"/>'
        )
        parts.append(_text(x + 3, frame.top + 10, mark.label, fill="#444", font_size=11))
    for i, s in enumerate(drawn):
        colour, dash, shape = _style(i)
        points = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in s.points)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<g class="series" data-label="{escape(s.label)}">')
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"'
            f'{dash_attr} stroke-linejoin="round"/>'
        )
        for x, y in s.points:
            tip = f"{s.label}: {y_format(y)} at {tick_label(x)} ({x_label})"
            parts.append(
                f"<g><title>{escape(tip)}</title>"
                f"{_marker(shape, frame.x(x), frame.y(y), colour, 2.6)}</g>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(
    *,
    chart_id: str,
    title: str,
    x_label: str,
    y_label: str,
    bars: Sequence[tuple[str, float]],
    description: str,
    value_format: Callable[[float], str] = tick_label,
    colour: str = COLOURS[0],
    width: int = 560,
    height: int = 300,
) -> str:
    """Vertical bars, one per category, each labelled with its value above it."""
    parts = _open(chart_id, title, description, width, height)
    if not bars:
        return _empty(parts, width, height, "no data in this report")
    y_ticks = ticks(0, max(max(v for _, v in bars), 0) or 1.0, 4)
    frame = _Frame(
        width=width,
        height=height,
        left=62,
        top=46,
        right=width - 18,
        bottom=height - 40,
        y_max=y_ticks[-1],
        y_ticks=y_ticks,
    )
    slot = (frame.right - frame.left) / len(bars)
    # Label every k-th category so labels never overlap (about 7 px per character).
    longest = max(len(label) for label, _ in bars)
    every = max(1, math.ceil((longest * 7 + 8) / slot))
    x_ticks = [
        (frame.left + slot * (i + 0.5), label)
        for i, (label, _) in enumerate(bars)
        if i % every == 0
    ]
    parts += _axes(frame, x_label, y_label, x_ticks)
    show_values = slot >= 22
    for i, (label, value) in enumerate(bars):
        x = frame.left + slot * i + slot * 0.15
        y = frame.y(value)
        tip = f"{label}: {value_format(value)}"
        parts.append(
            f'<g class="bar"><title>{escape(tip)}</title><rect x="{x:.1f}" y="{y:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{max(frame.bottom - y, 0):.1f}" fill="{colour}"/>'
            "</g>"
        )
        if show_values:
            parts.append(
                _text(
                    x + slot * 0.35,
                    y - 4,
                    value_format(value),
                    text_anchor="middle",
                    fill="#1a1a1a",
                    font_size=11,
                )
            )
    parts.append("</svg>")
    return "\n".join(parts)
