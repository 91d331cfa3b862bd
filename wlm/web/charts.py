"""Charts drawn on the server: data in, an ``<svg>`` string out.

No JavaScript draws the charts, so a chart is in the page the moment it arrives,
works offline, needs nothing but ``'self'`` in the CSP, and every name in it
(models, providers) is escaped like any other text. Colours come from CSS classes
(``series-0`` ..., ``chart-<provider>``, ``outcome-...``), never inline styles.
Every mark has a ``<title>`` (its numbers on hover); the pages put the same
numbers in a table next to each chart.

Four shapes cover the analytics page and the dashboard:

- :func:`time_lines`: one line per series over time (a gap breaks a line);
- :func:`time_columns`: stacked columns per time bucket;
- :func:`histogram_rows`: a distribution per series on a shared log axis;
- :func:`scatter`: labelled points on two linear axes.

A chart with nothing to draw says so (``EMPTY``) in a frame of its usual size; a
single point is drawn as a visible mark with its value beside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence

from attrs import frozen
from markupsafe import Markup, escape

from wlm.web.scales import (
    Linear,
    Log,
    Time,
    format_value,
    log_ticks,
    nice_ticks,
    time_label,
    time_ticks,
)

__all__ = [
    "EMPTY",
    "Bin",
    "Distribution",
    "Point",
    "Series",
    "histogram_rows",
    "scatter",
    "series_class",
    "time_columns",
    "time_lines",
]

EMPTY = "No requests in this window"
SERIES_CLASSES = 8  # .series-0 .. .series-7 in wlm.css
HEADROOM = 1.08  # the top tick sits a little above the highest value
TimeFormat = Callable[[dt.datetime, dt.timedelta], str]


def series_class(name: str, index: int, known: Collection[str] = ()) -> str:
    """``chart-<name>`` for a name with its own colour (a provider's badge colour),
    else the next of the ``series-<n>`` colours."""
    return f"chart-{name}" if name in known else f"series-{index % SERIES_CLASSES}"


@frozen
class Series:
    """A line: its name, CSS class, points in time (None breaks it), dashed or not."""

    name: str
    css: str
    points: Sequence[tuple[dt.datetime, float | None]]
    dashed: bool = False


@frozen
class Bin:
    """A bar of a histogram: values in ``(lower, upper]`` and how many."""

    lower: float
    upper: float
    n: float


@frozen
class Distribution:
    """A histogram row: its name, CSS class, bins and markers such as ``("p95", 812.0)``."""

    name: str
    css: str
    bins: Sequence[Bin]
    markers: Sequence[tuple[str, float]] = ()


@frozen
class Point:
    """A labelled point of a scatter chart."""

    label: str
    css: str
    x: float
    y: float
    note: str = ""


@frozen
class _Frame:
    """The plot area inside a chart of ``width`` x ``height``."""

    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float


def _f(value: float) -> str:
    return f"{value:g}"


def _open(kind: str, name: str, frame: _Frame, *, empty: bool, marks: int) -> list[str]:
    flag = ' data-empty="true"' if empty else ""
    return [
        f'<svg class="chart {kind}" data-chart="{escape(name)}" data-marks="{marks}"'
        f'{flag} viewBox="0 0 {frame.width} {frame.height}"'
        f' role="img" aria-label="{escape(name)}">'
    ]


def _close(parts: list[str]) -> Markup:
    parts.append("</svg>")
    return Markup("".join(parts))


def _empty_text(frame: _Frame, text: str) -> str:
    x, y = (frame.left + frame.right) / 2, (frame.top + frame.bottom) / 2
    return f'<text class="empty" x="{_f(x)}" y="{_f(y)}" text-anchor="middle">{escape(text)}</text>'


def _y_axis(frame: _Frame, ticks: Sequence[float], y: Linear, unit: str) -> list[str]:
    parts = []
    for value in ticks:
        at = y(value)
        parts.append(
            f'<line class="grid" x1="{_f(frame.left)}" x2="{_f(frame.right)}"'
            f' y1="{_f(at)}" y2="{_f(at)}"/>'
            f'<text class="tick" x="{_f(frame.left - 6)}" y="{_f(at + 4)}"'
            f' text-anchor="end">{escape(format_value(value, unit))}</text>'
        )
    return parts


_CHAR_PX = 6.2  # about how wide a tick label's character is (11px text)


def _x_labels(frame: _Frame, labels: Sequence[tuple[float, str]]) -> list[str]:
    """The x axis with its labelled ticks; a label that would overrun the chart is
    anchored to its tick's side, and one that would overlap the label before it is
    left out (its tick stays)."""
    parts = [
        f'<line class="axis" x1="{_f(frame.left)}" x2="{_f(frame.right)}"'
        f' y1="{_f(frame.bottom)}" y2="{_f(frame.bottom)}"/>'
    ]
    shown_to = float("-inf")
    for x, label in labels:
        half = len(label) * _CHAR_PX / 2
        anchor, left = "middle", x - half
        if x + half > frame.width:
            anchor, left = "end", x - 2 * half
        elif left < 0:
            anchor, left = "start", x
        parts.append(
            f'<line class="axis" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(frame.bottom)}"'
            f' y2="{_f(frame.bottom + 4)}"/>'
        )
        if left < shown_to + 6:
            continue
        shown_to = left + 2 * half
        parts.append(
            f'<text class="tick" x="{_f(x)}" y="{_f(frame.bottom + 17)}"'
            f' text-anchor="{anchor}">{escape(label)}</text>'
        )
    return parts


def _time_axis(
    frame: _Frame, x: Time, now: dt.datetime | None, time_format: TimeFormat
) -> list[str]:
    span = x.hi - x.lo
    labels = [(x(t), time_format(t, span)) for t in time_ticks(x.lo, x.hi)]
    parts = _x_labels(frame, labels)
    if now is not None and x.lo < now < x.hi:
        at = x(now)
        parts.append(
            f'<line class="now" x1="{_f(at)}" x2="{_f(at)}" y1="{_f(frame.top)}"'
            f' y2="{_f(frame.bottom)}"><title>now</title></line>'
        )
    return parts


def _value_scale(frame: _Frame, top: float, whole: bool = False) -> tuple[list[float], Linear]:
    ticks = nice_ticks(top * HEADROOM, whole=whole)
    return ticks, Linear(0.0, ticks[-1], frame.bottom, frame.top)


def _lone_label(x: float, y: float, frame: _Frame, text: str) -> str:
    anchor = "end" if x > (frame.left + frame.right) / 2 else "start"
    dx = -8 if anchor == "end" else 8
    return (
        f'<text class="value" x="{_f(x + dx)}" y="{_f(y - 6)}"'
        f' text-anchor="{anchor}">{escape(text)}</text>'
    )


def time_lines(
    name: str,
    series: Sequence[Series],
    start: dt.datetime,
    end: dt.datetime,
    *,
    unit: str = "",
    now: dt.datetime | None = None,
    width: int = 640,
    height: int = 220,
    empty: str = EMPTY,
    time_format: TimeFormat = time_label,
    whole: bool = False,
) -> Markup:
    """One line per series over ``start..end``; a None value breaks a line.

    Points are drawn as dots with their value and time in a ``<title>``; a lone
    point (nothing on either side) gets a bigger dot, and when no line has more than one
    point, the solid lines' values are written beside them.
    ``now``, when inside the span, is marked with a vertical line.
    """
    frame = _Frame(width, height, 72, 12, width - 14, height - 26)
    values = [v for s in series for _, v in s.points if v is not None]
    ticks, y = _value_scale(frame, max(values, default=0.0), whole=whole)
    x = Time(start, end, frame.left, frame.right)
    parts = _open("line-chart", name, frame, empty=not values, marks=len(values))
    parts += _y_axis(frame, ticks if values else [], y, unit)
    parts += _time_axis(frame, x, now, time_format)
    if not values:
        parts.append(_empty_text(frame, empty))
    # One bucket only (a fresh install): each solid line's value is written beside its dot.
    one_bucket = all(sum(v is not None for _, v in line.points) <= 1 for line in series)
    for line in series:
        dash = " dashed" if line.dashed else ""
        parts.append(f'<g class="series {line.css}{dash}" data-series="{escape(line.name)}">')
        runs: list[list[tuple[float, float, str, str]]] = [[]]
        for moment, value in sorted(line.points, key=lambda p: p[0]):
            if value is None:
                runs.append([])
                continue
            shown = format_value(value, unit)
            title = f"{line.name}: {shown} at {moment:%Y-%m-%d %H:%M} UTC"
            runs[-1].append((x(moment), y(value), title, shown))
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{_f(px)},{_f(py)}" for px, py, _, _ in run)
                parts.append(f'<polyline points="{points}"/>')
            radius = 3 if len(run) > 1 else 4.5
            for px, py, title, shown in run:
                parts.append(
                    f'<circle cx="{_f(px)}" cy="{_f(py)}" r="{radius}">'
                    f"<title>{escape(title)}</title></circle>"
                )
                if one_bucket and not line.dashed:
                    parts.append(_lone_label(px, py, frame, shown))
        parts.append("</g>")
    return _close(parts)


def time_columns(
    name: str,
    columns: Sequence[tuple[dt.datetime, Mapping[str, float]]],
    parts_css: Sequence[tuple[str, str]],
    start: dt.datetime,
    end: dt.datetime,
    bucket: dt.timedelta,
    *,
    unit: str = "",
    now: dt.datetime | None = None,
    width: int = 640,
    height: int = 220,
    empty: str = EMPTY,
    time_format: TimeFormat = time_label,
    whole: bool = False,
) -> Markup:
    """Stacked columns, one per bucket (``bucket`` long from its start), parts stacked
    in the order of ``parts_css`` (``(part, css class)``), bottom up; ``whole`` for
    counts (whole-number ticks)."""
    frame = _Frame(width, height, 72, 12, width - 14, height - 26)
    totals = [sum(v for v in values.values() if v > 0) for _, values in columns]
    ticks, y = _value_scale(frame, max(totals, default=0.0), whole=whole)
    x = Time(start, end, frame.left, frame.right)
    marks = sum(1 for t in totals if t > 0)
    parts = _open("column-chart", name, frame, empty=not marks, marks=marks)
    parts += _y_axis(frame, ticks if marks else [], y, unit)
    if not marks:
        parts.append(_empty_text(frame, empty))
    lone = marks == 1
    for (begin, values), total in zip(columns, totals, strict=True):
        if total <= 0:
            continue
        left, right = x(max(begin, start)), x(min(begin + bucket, end))
        gap = min(1.0, (right - left) / 4)
        bar_w = max(right - left - 2 * gap, 1.0)
        parts.append(f'<g class="column" data-at="{begin:%Y-%m-%dT%H:%M:%S}">')
        base = 0.0
        for part, css in parts_css:
            value = values.get(part, 0.0)
            if value <= 0:
                continue
            top, bottom = y(base + value), y(base)
            title = f"{part}: {format_value(value, unit)}, {begin:%Y-%m-%d %H:%M} UTC"
            parts.append(
                f'<rect class="{css}" x="{_f(left + gap)}" y="{_f(top)}" width="{_f(bar_w)}"'
                f' height="{_f(max(bottom - top, 0.5))}"><title>{escape(title)}</title></rect>'
            )
            base += value
        if lone:
            parts.append(
                _lone_label(left + gap + bar_w / 2, y(total), frame, format_value(total, unit))
            )
        parts.append("</g>")
    parts += _time_axis(frame, x, now, time_format)
    return _close(parts)


def histogram_rows(
    name: str,
    rows: Sequence[Distribution],
    *,
    unit: str = "ms",
    width: int = 640,
    row_height: int = 58,
    empty: str = EMPTY,
) -> Markup:
    """A histogram per row on one shared log axis (``unit`` values), bars scaled to each
    row's tallest bin so every row's shape shows; markers (p50, p95...) as ticks."""
    rows = [r for r in rows if any(b.n > 0 for b in r.bins)]
    height = 12 + max(len(rows), 1) * row_height + 26
    frame = _Frame(width, height, 130, 12, width - 14, height - 26)
    bins = [b for r in rows for b in r.bins if b.n > 0]
    marks = len(bins)
    parts = _open("histogram-chart", name, frame, empty=not marks, marks=marks)
    if not bins:
        parts += _x_labels(frame, [])
        parts.append(_empty_text(frame, empty))
        return _close(parts)
    low = min(b.lower for b in bins)
    high = max(max(b.upper for b in bins), low * 10)
    ticks = log_ticks(low, high)
    x = Log(low, high, frame.left, frame.right)
    for value in ticks:
        parts.append(
            f'<line class="grid" x1="{_f(x(value))}" x2="{_f(x(value))}"'
            f' y1="{_f(frame.top)}" y2="{_f(frame.bottom)}"/>'
        )
    parts += _x_labels(frame, [(x(v), format_value(v, unit)) for v in ticks])
    for index, row in enumerate(rows):
        band_bottom = frame.top + (index + 1) * row_height - 4
        band = row_height - 16
        tallest = max(b.n for b in row.bins)
        count = sum(b.n for b in row.bins)
        parts.append(
            f'<g class="distribution {row.css}" data-series="{escape(row.name)}">'
            f'<text class="label" x="{_f(frame.left - 8)}" y="{_f(band_bottom - band / 2)}"'
            f' text-anchor="end">{escape(row.name)}</text>'
            f'<text class="tick" x="{_f(frame.left - 8)}" y="{_f(band_bottom - band / 2 + 13)}"'
            f' text-anchor="end">{escape(format_value(count))} ok</text>'
        )
        for b in row.bins:
            if b.n <= 0:
                continue
            left, right = x(b.lower), x(b.upper)
            h = max(band * b.n / tallest, 1.0)
            share = 100 * b.n / count
            title = (
                f"{row.name}: {share:.1f}% of requests ({format_value(b.n)}) took "
                f"{format_value(b.lower, unit)} to {format_value(b.upper, unit)}"
            )
            parts.append(
                f'<rect x="{_f(left)}" y="{_f(band_bottom - h)}" width="{_f(max(right - left - 0.5, 1))}"'
                f' height="{_f(h)}"><title>{escape(title)}</title></rect>'
            )
        for step, (label, value) in enumerate(row.markers):
            at = x(min(max(value, low), high))
            parts.append(
                f'<line class="marker" x1="{_f(at)}" x2="{_f(at)}" y1="{_f(band_bottom - band - 2)}"'
                f' y2="{_f(band_bottom)}"><title>{escape(label)}: '
                f"{escape(format_value(value, unit))}</title></line>"
                f'<text class="marker-label" x="{_f(at + 2)}" y="{_f(band_bottom - band + 6 + 9 * step)}">'
                f"{escape(label)}</text>"
            )
        parts.append(
            f'<line class="axis" x1="{_f(frame.left)}" x2="{_f(frame.right)}"'
            f' y1="{_f(band_bottom)}" y2="{_f(band_bottom)}"/></g>'
        )
    return _close(parts)


def scatter(
    name: str,
    points: Sequence[Point],
    *,
    x_unit: str = "",
    y_unit: str = "",
    width: int = 900,
    height: int = 320,
    empty: str = EMPTY,
) -> Markup:
    """Labelled points on linear axes from zero (a point at x = 0 sits on the y axis)."""
    frame = _Frame(width, height, 70, 14, width - 20, height - 28)
    x_ticks = nice_ticks(max((p.x for p in points), default=0.0) * HEADROOM or 0.01)
    y_ticks, y = _value_scale(frame, max((p.y for p in points), default=0.0))
    x = Linear(0.0, x_ticks[-1], frame.left + 8, frame.right)
    parts = _open("scatter-chart", name, frame, empty=not points, marks=len(points))
    if points:  # an empty chart has no scale to show
        parts += _y_axis(frame, y_ticks, y, y_unit)
    parts += _x_labels(frame, [(x(v), format_value(v, x_unit)) for v in x_ticks if points])
    if not points:
        parts.append(_empty_text(frame, empty))
    for point in points:
        px, py = x(point.x), y(point.y)
        title = (
            f"{point.label}: {format_value(point.y, y_unit)}, "
            f"{format_value(point.x, x_unit)}" + (f" ({point.note})" if point.note else "")
        )
        anchor = "end" if px > frame.right - 140 else "start"
        dx = -8 if anchor == "end" else 8
        parts.append(
            f'<g class="point {point.css}" data-label="{escape(point.label)}">'
            f'<circle cx="{_f(px)}" cy="{_f(py)}" r="5.5"><title>{escape(title)}</title></circle>'
            f'<text class="label" x="{_f(px + dx)}" y="{_f(py - 7)}" text-anchor="{anchor}">'
            f"{escape(point.label)}</text></g>"
        )
    return _close(parts)
