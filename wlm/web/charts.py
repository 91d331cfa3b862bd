"""Chart geometry for server-rendered SVG: numbers in, coordinates and labels out.

No JavaScript draws the charts: these functions compute where every line, bar and
tick goes, and a Jinja partial writes the ``<svg>``. So a chart is in the page the
moment it arrives, works offline, needs nothing but ``'self'`` in the CSP, and its
text (model and provider names) is escaped like any other text. Colours come from
CSS classes (``series-0`` ...), not inline styles.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping, Sequence

from attrs import frozen

__all__ = ["BarChart", "LineChart", "line_chart", "nice_ticks", "stacked_bars"]

SERIES_CLASSES = 8  # .series-0 .. .series-7 in wlm.css


@frozen
class Tick:
    """An axis tick: its position along the axis (px), its label and text anchor."""

    at: float
    label: str
    anchor: str = "middle"


@frozen
class Line:
    """One series: its name, CSS class, polyline segments (gaps split them) and points."""

    name: str
    css: str
    segments: tuple[str, ...]  # "x,y x,y ..." for <polyline points=...>
    dots: tuple[tuple[float, float, str], ...]  # x, y, tooltip


@frozen
class LineChart:
    """A time-series chart: plot area, lines, ticks on both axes; ``empty`` when no data."""

    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    lines: tuple[Line, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    unit: str
    empty: bool


@frozen
class Segment:
    """A piece of a stacked bar: where it starts, how wide, its class and tooltip."""

    x: float
    width: float
    css: str
    title: str


@frozen
class Bar:
    """One row of a stacked bar chart."""

    label: str
    y: float
    total: float
    segments: tuple[Segment, ...]


@frozen
class BarChart:
    """Horizontal stacked bars with a legend; ``empty`` when every total is zero."""

    width: int
    height: int
    left: int
    bar_height: int
    bars: tuple[Bar, ...]
    legend: tuple[tuple[str, str], ...]  # (css class, name)
    x_ticks: tuple[Tick, ...]
    empty: bool


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 up to at least ``top`` (1, 2, 2.5 or 5 times a power of 10)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _label(value: float, unit: str) -> str:
    if unit == "ms" and value >= 1000:
        return f"{value / 1000:g} s"
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}" + (f" {unit}" if unit else "")


_TIME_STEPS = tuple(
    dt.timedelta(minutes=m)
    for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
)


def _time_label(moment: dt.datetime, span: dt.timedelta) -> str:
    if span <= dt.timedelta(hours=36):
        return moment.strftime("%H:%M")
    if span <= dt.timedelta(days=4):
        return moment.strftime("%d %b %H:%M")
    return moment.strftime("%d %b")


def time_ticks(start: dt.datetime, end: dt.datetime, most: int = 6) -> list[dt.datetime]:
    """Round moments (whole minutes, hours or days, UTC) between ``start`` and ``end``."""
    span = end - start
    step = next((s for s in _TIME_STEPS if span / s <= most), _TIME_STEPS[-1])
    epoch = dt.datetime(1970, 1, 5)  # a Monday, so week steps fall on Mondays
    first = epoch + step * -((start - epoch) // -step)  # ceil to a multiple of step
    ticks = []
    while first <= end:
        ticks.append(first)
        first += step
    return ticks


def _series_class(name: str, index: int, known: Collection[str]) -> str:
    # Known providers keep their badge colour in charts; anything else takes the next colour.
    return f"chart-{name}" if name in known else f"series-{index % SERIES_CLASSES}"


def line_chart(
    series: Mapping[str, Sequence[tuple[dt.datetime, float | None]]],
    start: dt.datetime,
    end: dt.datetime,
    *,
    unit: str = "",
    width: int = 640,
    height: int = 220,
    named_colours: Collection[str] = (),
) -> LineChart:
    """Lay out one line per series over ``start..end`` (a None value breaks the line).

    A series named in ``named_colours`` gets the CSS class ``chart-<name>`` (the
    provider's own colour), the others ``series-<n>``.
    """
    left, top, right, bottom = 56, 12, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    span = end - start
    seconds = max(span.total_seconds(), 1.0)
    values = [v for points in series.values() for _, v in points if v is not None]
    ticks = nice_ticks(max(values) if values else 0.0)
    y_max = ticks[-1] or 1.0

    def x_of(moment: dt.datetime) -> float:
        return round(left + plot_w * (moment - start).total_seconds() / seconds, 1)

    def y_of(value: float) -> float:
        return round(top + plot_h * (1 - value / y_max), 1)

    lines = []
    for index, (name, points) in enumerate(series.items()):
        segments: list[str] = []
        current: list[str] = []
        dots = []
        for moment, value in sorted(points, key=lambda p: p[0]):
            if value is None:
                if current:
                    segments.append(" ".join(current))
                current = []
                continue
            x, y = x_of(moment), y_of(value)
            current.append(f"{x},{y}")
            dots.append((x, y, f"{name}: {_label(value, unit)} at {moment:%Y-%m-%d %H:%M} UTC"))
        if current:
            segments.append(" ".join(current))
        css = _series_class(name, index, named_colours)
        lines.append(Line(name, css, tuple(segments), tuple(dots)))
    x_ticks = []
    for moment in time_ticks(start, end):
        x = x_of(moment)
        anchor = "start" if x - left < 20 else "end" if left + plot_w - x < 20 else "middle"
        x_ticks.append(Tick(x, _time_label(moment, span), anchor))
    y_ticks = tuple(Tick(y_of(t), _label(t, unit)) for t in ticks)
    return LineChart(
        width=width,
        height=height,
        left=left,
        top=top,
        right=width - right,
        bottom=height - bottom,
        lines=tuple(lines),
        x_ticks=tuple(x_ticks),
        y_ticks=y_ticks,
        unit=unit,
        empty=not values,
    )


def stacked_bars(
    rows: Sequence[tuple[str, Mapping[str, float | None]]],
    parts: Sequence[str],
    *,
    width: int = 640,
    bar_height: int = 22,
    unit: str = "",
) -> BarChart:
    """One horizontal bar per row, split into ``parts`` (in order), on a shared scale."""
    left, right, gap = 150, 16, 10
    plot_w = width - left - right
    totals = [sum(v or 0 for v in values.values()) for _, values in rows]
    ticks = nice_ticks(max(totals, default=0.0))
    scale = plot_w / (ticks[-1] or 1.0)
    classes = {part: f"series-{i % SERIES_CLASSES}" for i, part in enumerate(parts)}
    bars = []
    for index, ((label, values), total) in enumerate(zip(rows, totals, strict=True)):
        x = float(left)
        segments = []
        for part in parts:
            value = values.get(part) or 0
            if value <= 0:
                continue
            w = round(value * scale, 1)
            title = f"{label}: {_label(value, unit)} {part}"
            segments.append(Segment(round(x, 1), w, classes[part], title))
            x += w
        bars.append(Bar(label, float(gap + index * (bar_height + gap)), total, tuple(segments)))
    height = gap + len(rows) * (bar_height + gap) + 24
    x_ticks = tuple(Tick(round(left + t * scale, 1), _label(t, unit)) for t in ticks)
    return BarChart(
        width=width,
        height=height,
        left=left,
        bar_height=bar_height,
        bars=tuple(bars),
        legend=tuple((classes[p], p) for p in parts),
        x_ticks=x_ticks,
        empty=not any(totals),
    )
