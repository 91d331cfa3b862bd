"""Axis ticks and scales: properties over any input, and the cases people see."""

from __future__ import annotations

import datetime as dt
import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from wlm.web.scales import (
    Linear,
    Log,
    Time,
    format_value,
    log_ticks,
    nice_step,
    nice_ticks,
    time_label,
    time_ticks,
)

values = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
moments = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1))
spans = st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=400))


def test_nice_ticks_for_the_usual_figures() -> None:
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(87) == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert nice_ticks(1) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(0.0031) == [0.0, 0.001, 0.002, 0.003, 0.004]
    assert nice_ticks(float("nan")) == [0.0, 1.0]
    assert nice_ticks(-5) == [0.0, 1.0]
    # counts: whole steps
    assert nice_ticks(1.08, whole=True) == [0.0, 1.0, 2.0]
    assert nice_ticks(9, whole=True) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


@given(values, st.integers(min_value=1, max_value=10))
def test_nice_ticks_start_at_zero_cover_the_top_and_step_evenly(top: float, count: int) -> None:
    ticks = nice_ticks(top, count)
    assert all(math.isfinite(t) for t in ticks)
    assert ticks[0] == 0.0
    assert ticks[-1] >= top * (1 - 1e-9)
    assert len(ticks) <= 2 * count + 2
    steps = [b - a for a, b in itertools.pairwise(ticks)]
    assert all(s > 0 for s in steps)  # strictly increasing
    assert max(steps) - min(steps) <= 1e-9 * max(ticks[-1], 1)
    # one step too many would still cover the top: the axis ends at the first tick at or above it
    assert len(ticks) == 2 or ticks[-2] < top


@given(values)
def test_whole_ticks_are_whole_numbers(top: float) -> None:
    ticks = nice_ticks(top, whole=True)
    assert all(t == int(t) for t in ticks)
    assert ticks[-1] >= top and ticks == sorted(set(ticks))


@given(positive)
def test_nice_steps_are_1_2_25_or_5_times_a_power_of_ten(raw: float) -> None:
    step = nice_step(raw)
    assert step >= raw * (1 - 1e-9)
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-12)
    assert any(math.isclose(mantissa, m, rel_tol=1e-9) for m in (1, 2, 2.5, 5, 10))


@given(positive, positive)
def test_log_ticks_lie_inside_the_range_in_order(a: float, b: float) -> None:
    low, high = min(a, b), max(a, b)
    ticks = log_ticks(low, high)
    assert ticks == sorted(set(ticks))
    assert all(low * (1 - 1e-9) <= t <= high * (1 + 1e-9) for t in ticks)
    if high / low >= 10:
        assert ticks  # at least one power of ten in a tenfold span
    assert log_ticks(0, 10) == [] and log_ticks(5, 1) == []


@given(values, values, st.floats(-500, 500), st.floats(-500, 500), values)
def test_linear_scales_are_finite_and_monotone(
    a: float, b: float, start: float, end: float, v: float
) -> None:
    lo, hi = min(a, b), max(a, b)
    scale = Linear(lo, hi, start, end)
    assert math.isfinite(scale(lo)) and math.isfinite(scale(hi)) and math.isfinite(scale(v))
    if hi > lo:
        assert math.isclose(scale(lo), round(start, 1), abs_tol=0.11)
        assert math.isclose(scale(hi), round(end, 1), abs_tol=0.11)
        w = min(max(v, lo), hi)
        if end >= start:
            assert scale(lo) <= scale(w) + 0.1 <= scale(hi) + 0.2
        else:
            assert scale(lo) + 0.1 >= scale(w) >= scale(hi) - 0.1
    else:  # one value: the middle, not an edge
        assert scale(v) == round((start + end) / 2, 1)


@given(positive, positive, positive)
def test_log_scales_are_finite_and_monotone(a: float, b: float, v: float) -> None:
    lo, hi = min(a, b), max(a, b)
    scale = Log(lo, hi, 100, 600)
    points = [scale(x) for x in sorted((lo, min(max(v, lo), hi), hi))]
    assert all(math.isfinite(p) for p in points)
    assert points == sorted(points)
    assert points[0] >= 100 and points[-1] <= 600


@given(moments, spans, st.integers(min_value=2, max_value=12))
def test_time_ticks_are_round_in_range_in_order_and_few(
    start: dt.datetime, span: dt.timedelta, most: int
) -> None:
    end = start + span
    ticks = time_ticks(start, end, most)
    assert ticks == sorted(set(ticks))
    assert all(start <= t <= end for t in ticks)
    assert len(ticks) <= most + 1
    if span == dt.timedelta(0):
        assert ticks == [start]
    elif span >= dt.timedelta(seconds=10) and len(ticks) > 1:
        assert all(t.microsecond == 0 for t in ticks)
        x = Time(start, end, 0, 600)
        assert [x(t) for t in ticks] == sorted(x(t) for t in ticks)


def test_time_ticks_and_labels_for_each_range() -> None:
    start = dt.datetime(2026, 12, 4, 14, 0)
    day = time_ticks(start, start + dt.timedelta(hours=25))
    assert [t.hour for t in day] == [18, 0, 6, 12]
    assert time_label(day[0], dt.timedelta(hours=25)) == "18:00"
    week = time_ticks(start, start + dt.timedelta(days=7))
    assert all(t.hour == 0 for t in week)  # whole days
    assert time_label(week[0], dt.timedelta(days=7)) == "05 Dec"
    minutes = time_ticks(start, start + dt.timedelta(minutes=5))
    assert time_label(minutes[1], dt.timedelta(minutes=5)) == "14:01:00"
    # one moment: no span, the axis still has a tick (the point sits in the middle)
    assert Time(start, start, 0, 600)(start) == 300.0


def test_values_read_with_their_units() -> None:
    assert format_value(250, "ms") == "250 ms"
    assert format_value(1500, "ms") == "1.5 s"
    assert format_value(0, "$") == "$0"
    assert format_value(0.0125, "$") == "$0.01"
    assert format_value(0.004, "$") == "$0.004"
    assert format_value(0.00005, "$") == "$0.00005"
    assert format_value(0.0000058, "$") == "$0.0000058"
    assert format_value(12_500) == "12.5k"
    assert format_value(2_000_000) == "2M"
    assert format_value(45.25, "tok/s") == "45.25 tok/s"
    assert format_value(float("nan"), "ms") == "–"
