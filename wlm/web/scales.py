"""Scales and axis ticks for the server-drawn charts: numbers in, positions and labels out.

Pure arithmetic, no I/O: :mod:`wlm.web.charts` draws with these, and the property
tests in ``tests/unit/web/test_scales.py`` hold them to their promises (finite
positions, ticks inside the range and in order, one point and no point handled).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

from attrs import frozen

__all__ = [
    "Linear",
    "Log",
    "Time",
    "format_value",
    "log_ticks",
    "nice_step",
    "nice_ticks",
    "time_label",
    "time_ticks",
]

# Below this a value is treated as zero (costs are fractions of a cent, never 1e-12 USD).
_TINY = 1e-12


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least ``raw`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))


def nice_ticks(top: float, count: int = 4, *, whole: bool = False) -> list[float]:
    """Round tick values from 0 up to at least ``top``: 0, s, 2s ... with s a nice step.

    ``top`` at or below zero (or not finite) gives ``[0, 1]``, so an axis always has a
    span. About ``count`` steps, never more than ``2 * count + 1``. ``whole`` keeps
    the steps whole numbers (for counts: 0, 1, 2, not 0, 0.5, 1).
    """
    if not math.isfinite(top) or top <= _TINY:
        return [0.0, 1.0]
    step = nice_step(top / count)
    if whole and step < 1:
        step = 1.0
    elif whole and step == 2.5:
        step = 2.0
    steps = max(1, math.ceil(top / step - 1e-9))
    return [float(f"{i * step:.12g}") for i in range(steps + 1)]


def log_ticks(low: float, high: float) -> list[float]:
    """Round values (1, 2, 5 times powers of ten, or powers alone over wide spans) in
    ``[low, high]``, for a log axis; both bounds must be positive."""
    if not (low > 0 and high >= low and math.isfinite(high)):
        return []
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    multiples = (1, 2, 5) if last - first <= 3 else (1,)
    ticks = []
    for power in range(first, last + 1):
        for m in multiples:
            value = float(f"{m * 10.0**power:.12g}")
            if low * (1 - 1e-9) <= value <= high * (1 + 1e-9):
                ticks.append(value)
    return ticks


def _place(start: float, end: float, offset: float, span: float) -> float:
    """``start + (end - start) * offset / span``, rounded to 0.1 px; the middle when the
    span is none (one value) or too small to divide by."""
    share = offset / span if span > 0 else math.nan
    at = start + (end - start) * share
    if not math.isfinite(at):
        return round((start + end) / 2, 1)
    return round(at, 1)


@frozen
class Linear:
    """Maps ``lo..hi`` onto pixels ``start..end`` (``end`` < ``start`` for a y axis)."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        return _place(self.start, self.end, value - self.lo, self.hi - self.lo)


@frozen
class Log:
    """Maps ``lo..hi`` (both > 0) onto pixels ``start..end`` on a log scale."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        low, high = math.log10(self.lo), math.log10(self.hi)
        return _place(self.start, self.end, math.log10(max(value, self.lo)) - low, high - low)


@frozen
class Time:
    """Maps moments in ``lo..hi`` onto pixels ``start..end``."""

    lo: dt.datetime
    hi: dt.datetime
    start: float
    end: float

    def __call__(self, moment: dt.datetime) -> float:
        span = (self.hi - self.lo).total_seconds()
        return _place(self.start, self.end, (moment - self.lo).total_seconds(), span)


_TIME_STEPS = tuple(
    dt.timedelta(seconds=s)
    for s in (
        *(10, 15, 30),
        *(60 * m for m in (1, 2, 5, 10, 15, 30)),
        *(3600 * h for h in (1, 2, 3, 6, 12)),
        *(86400 * d for d in (1, 2, 7)),
    )
)
_EPOCH = dt.datetime(1970, 1, 5)  # a Monday, so week steps fall on Mondays


def time_ticks(start: dt.datetime, end: dt.datetime, most: int = 6) -> list[dt.datetime]:
    """Round moments (whole seconds, minutes, hours or days, UTC) in ``start..end``,
    at most ``most`` of them (a span longer than ``most`` weeks: one a week)."""
    span = end - start
    if span <= dt.timedelta(0):
        return [start]
    step = next((s for s in _TIME_STEPS if span / s <= most), None)
    if step is None:
        step = dt.timedelta(weeks=math.ceil(span / dt.timedelta(weeks=1) / most))
    moment = _EPOCH + step * -((start - _EPOCH) // -step)  # ceil to a multiple of step
    ticks = []
    while moment <= end:
        ticks.append(moment)
        moment += step
    return ticks


def time_label(moment: dt.datetime, span: dt.timedelta) -> str:
    """A tick's label, as precise as the span needs (UTC)."""
    if span <= dt.timedelta(minutes=10):
        return moment.strftime("%H:%M:%S")
    if span <= dt.timedelta(hours=36):
        return moment.strftime("%H:%M")
    if span <= dt.timedelta(days=4):
        return moment.strftime("%d %b %H:%M")
    return moment.strftime("%d %b")


def _compact(value: float) -> str:
    size = abs(value)
    if size >= 1e9:
        return f"{value / 1e9:.3g}G"
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.4g}"


def _usd(value: float) -> str:
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 0.01:
        return f"${value:.2f}".rstrip("0").rstrip(".")
    # Fractions of a cent in decimals (two significant digits), never 5e-05.
    digits = min(-math.floor(math.log10(abs(value))) + 1, 12)
    return f"${value:.{digits}f}".rstrip("0").rstrip(".")


_FORMATS: dict[str, Callable[[float], str]] = {
    "ms": lambda v: f"{v / 1000:.3g} s" if abs(v) >= 1000 else f"{v:.3g} ms",
    "$": _usd,
    "tok/s": lambda v: f"{_compact(v)} tok/s",
    "req/s": lambda v: f"{v:.3g}/s",
    "%": lambda v: f"{v:.3g}%",
}


def format_value(value: float, unit: str = "") -> str:
    """``value`` for a label or a tooltip: ``250 ms``, ``1.5 s``, ``$0.012``, ``12k``."""
    if not math.isfinite(value):
        return "–"
    if unit in _FORMATS:
        return _FORMATS[unit](value)
    return _compact(value) + (f" {unit}" if unit else "")
