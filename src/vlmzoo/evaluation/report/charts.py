"""Inline SVG charts for the HTML report.

Drawn by hand rather than with a plotting library: the page must work offline and print as
drawn, and these few shapes (bars with error bars, a labelled scatter) need no more than this.
Every piece of text is escaped: model names come from the store, not from us.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

ACCENT = "#3b6ea5"
INK = "#2b2b2b"
MUTED = "#6b6b6b"
GRID = "#e3e3e3"
CHAR_WIDTH = 6.6  # rough width of a 12 px sans-serif character, for placing labels


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    y: float
    low: float | None = None
    high: float | None = None


def fmt_number(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def fmt_count(v: float) -> str:
    """Parameters in the usual shorthand: 250M, 2.2B."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 x 10^k) covering [lo, hi]."""
    if hi - lo <= 1e-6 * max(1.0, abs(lo), abs(hi)):
        # an empty or float-noise range (e.g. a BLEU of 1e-16 everywhere): show a unit-wide axis
        hi = lo + max(abs(lo), 1.0)
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks inside [lo, hi]; decades only when the range spans many of them."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    steps = (1,) if len(decades) > 4 else (1, 2, 5)
    ticks = [m * 10.0**d for d in decades for m in steps if lo <= m * 10.0**d <= hi]
    return ticks or [lo, hi]


def _svg_open(name: str, width: int, height: int, label: str) -> str:
    return (f'<svg class="chart" data-chart="{escape(name)}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>')


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 12, fill: str = INK,
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}"{extra}>'
            f"{escape(text)}</text>")


def _line(x0: float, y0: float, x1: float, y1: float, stroke: str = INK, width: float = 1) -> str:
    return f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{stroke}" stroke-width="{width}"/>'


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_chart(name: str, label: str, bars: list[Bar], *, width: int = 560) -> str:
    """Horizontal bars (one per model) with their intervals as error bars."""
    left, right, top, row = 150, 56, 10, 26
    ends = [v for b in bars for v in (b.value, b.low, b.high) if v is not None]
    ticks = nice_ticks(min(0.0, *ends), max(0.0, *ends))
    lo, hi = ticks[0], ticks[-1]
    height = top + row * len(bars) + 34
    scale = (width - left - right) / (hi - lo)

    def x(v: float) -> float:
        return left + (v - lo) * scale

    parts = [_svg_open(name, width, height, label)]
    axis_y = top + row * len(bars)
    for t in ticks:
        parts.append(_line(x(t), top, x(t), axis_y, GRID))
        parts.append(_text(x(t), axis_y + 16, fmt_number(t), anchor="middle", size=11, fill=MUTED))
    for i, b in enumerate(bars):
        mid = top + row * i + row / 2
        start, end = sorted((x(max(lo, 0.0)), x(b.value)))
        parts.append(f'<rect x="{start:.1f}" y="{mid - 8:.1f}" width="{max(end - start, 0.5):.1f}" height="16" '
                     f'fill="{ACCENT}" fill-opacity="0.8"/>')
        if b.low is not None and b.high is not None:
            parts += [_line(x(b.low), mid, x(b.high), mid, INK, 1.4),
                      _line(x(b.low), mid - 5, x(b.low), mid + 5, INK, 1.4),
                      _line(x(b.high), mid - 5, x(b.high), mid + 5, INK, 1.4)]
        parts.append(_text(left - 8, mid + 4, _shorten(b.label, 21), anchor="end"))
        value_x = x(max(b.value, b.high if b.high is not None else b.value)) + 6
        parts.append(_text(value_x, mid + 4, f"{b.value:.3f}", size=11, fill=MUTED))
    parts.append(_line(left, axis_y, width - right, axis_y, MUTED))
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(name: str, label: str, points: list[Point], *, x_label: str, y_label: str, log_x: bool = False,
                  x_format: Callable[[float], str] = fmt_number, width: int = 560, height: int = 320) -> str:
    """Points with vertical error bars, each labelled with its model name."""
    left, right, top, bottom = 64, 16, 26, 52  # top: room for a label above the highest point
    xs = [p.x for p in points]
    if log_x:
        lo_x, hi_x = min(xs) / 1.6, max(xs) * 1.6
        x_ticks = log_ticks(lo_x, hi_x)
        to_x = math.log10
    else:
        x_ticks = nice_ticks(0.0, max(xs) * 1.08)
        lo_x, hi_x = x_ticks[0], x_ticks[-1]
        to_x = float
    ys = [v for p in points for v in (p.y, p.low, p.high) if v is not None]
    y_ticks = nice_ticks(min(ys), max(ys))
    lo_y, hi_y = y_ticks[0], y_ticks[-1]
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(v: float) -> float:
        return left + (to_x(v) - to_x(lo_x)) / (to_x(hi_x) - to_x(lo_x)) * plot_w

    def py(v: float) -> float:
        return top + (hi_y - v) / (hi_y - lo_y) * plot_h

    parts = [_svg_open(name, width, height, label)]
    for t in y_ticks:
        parts += [_line(left, py(t), width - right, py(t), GRID),
                  _text(left - 6, py(t) + 4, fmt_number(t), anchor="end", size=11, fill=MUTED)]
    for t in x_ticks:
        parts += [_line(px(t), top, px(t), top + plot_h, GRID),
                  _text(px(t), top + plot_h + 16, x_format(t), anchor="middle", size=11, fill=MUTED)]
    parts += [_line(left, top + plot_h, width - right, top + plot_h, MUTED), _line(left, top, left, top + plot_h, MUTED),
              _text(left + plot_w / 2, height - 10, x_label, anchor="middle", fill=MUTED),
              _text(14, top + plot_h / 2, y_label, anchor="middle", fill=MUTED,
                    extra=f' transform="rotate(-90 14 {top + plot_h / 2:.1f})"')]
    placed: list[tuple[float, float, float]] = []
    for p in sorted(points, key=lambda p: -p.y):
        cx, cy = px(p.x), py(p.y)
        if p.low is not None and p.high is not None:
            parts.append(_line(cx, py(p.low), cx, py(p.high), MUTED, 1.2))
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{ACCENT}" stroke="#fff" stroke-width="1"/>')
        parts.append(_point_label(p.label, cx, cy, width - right, placed))
    parts.append("</svg>")
    return "".join(parts)


def _point_label(label: str, cx: float, cy: float, right_edge: float, placed: list) -> str:
    """Right of the point, or left near the right edge; moved down past labels already placed."""
    text = _shorten(label, 30)
    w = len(text) * CHAR_WIDTH
    on_left = cx + 8 + w > right_edge
    x0 = cx - 8 - w if on_left else cx + 8
    y = cy - 6
    while any(abs(y - py) < 13 and x0 < px1 and x0 + w > px0 for px0, px1, py in placed):
        y += 13
    placed.append((x0, x0 + w, y))
    return _text(cx - 8 if on_left else cx + 8, y, text, anchor="end" if on_left else "start")
