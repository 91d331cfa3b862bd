"""Charts are pure: rows in, SVG out. Empty, one point, many points, hostile names."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from wlm.metrics import Metrics, Pulse
from wlm.web.charts import (
    EMPTY,
    Bin,
    Distribution,
    Point,
    Series,
    histogram_rows,
    scatter,
    time_columns,
    time_lines,
)
from wlm.web.figures import (
    Window,
    distribution_figures,
    outcome_class,
    over_time_figures,
    request_figures,
    speed_cost_figure,
)

NOW = dt.datetime(2026, 12, 5, 14, 5)
HOUR = dt.timedelta(hours=1)
SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    """The chart as XML (it must be well-formed), with the SVG namespace added."""
    return ET.fromstring(str(svg).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))


def numbers_in(svg: str) -> list[float]:
    coordinates = re.findall(r'(?<![\w-])(?:x|y|x1|x2|y1|y2|cx|cy|width|height)="([^"]+)"', svg)
    points = re.findall(r'points="([^"]+)"', svg)
    out = [float(c) for c in coordinates]
    for p in points:
        out += [float(v) for pair in p.split() for v in pair.split(",")]
    return out


def circles(svg: str) -> list[ET.Element]:
    return list(parse(svg).iter(f"{SVG}circle"))


def test_an_empty_chart_says_so_in_a_frame_of_its_size() -> None:
    window = Window.around(NOW - 24 * HOUR, NOW, HOUR)
    for svg in (
        time_lines("latency", [], window.start, window.end, unit="ms"),
        time_columns("requests", [], [("ok", "outcome-ok")], window.start, window.end, HOUR),
        histogram_rows("latency histogram", []),
        scatter("speed against cost", []),
    ):
        root = parse(svg)
        assert "data-empty" in svg and EMPTY in svg
        assert root.get("viewBox", "").split()[2] in {"640", "900"}  # the usual width
        assert "nan" not in svg.lower()


def test_one_point_is_a_visible_mark_inside_the_chart_with_its_value() -> None:
    # A fresh install: one request, in the current hour, 14:05.
    window = Window.around(NOW - 24 * HOUR, NOW, HOUR)
    assert window.end == dt.datetime(2026, 12, 5, 15, 0)  # the current bucket is whole
    bucket = dt.datetime(2026, 12, 5, 14, 0)
    svg = time_lines(
        "latency",
        [Series("openai", "chart-openai", [(bucket + HOUR / 2, 840.0)])],
        window.start,
        window.end,
        unit="ms",
        now=NOW,
    )
    (dot,) = circles(svg)
    x, y = float(dot.get("cx", 0)), float(dot.get("cy", 0))
    assert float(dot.get("r", 0)) >= 4
    assert 72 + 10 < x < 626 - 10  # not on an edge
    assert 12 < y < 194  # not on the top or the bottom either
    assert "840 ms" in svg  # its value is written beside it
    columns = time_columns(
        "requests", [(bucket, {"ok": 1.0})], [("ok", "outcome-ok")], window.start, window.end, HOUR
    )
    (rect,) = parse(columns).iter(f"{SVG}rect")
    assert float(rect.get("width", 0)) > 10 and float(rect.get("height", 0)) > 10
    assert 'class="value"' in columns


def test_lines_break_at_gaps_and_higher_values_are_drawn_higher() -> None:
    start = NOW - 6 * HOUR
    points = [
        (start + HOUR, 100.0),
        (start + 2 * HOUR, None),
        (start + 3 * HOUR, 300.0),
        (start + 4 * HOUR, 200.0),
    ]
    svg = time_lines("latency", [Series("openai", "chart-openai", points)], start, NOW, unit="ms")
    assert svg.count("<polyline") == 1  # the lone point before the gap is a dot
    ys = [float(c.get("cy", 0)) for c in circles(svg)]
    assert ys[1] < ys[2] < ys[0]


def test_names_are_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    svg = time_lines(
        hostile, [Series(hostile, "series-0", [(NOW, 1.0)])], NOW - HOUR, NOW + HOUR
    ) + scatter("s", [Point(hostile, "series-0", 0.0, 10.0)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_columns_stack_in_the_order_given() -> None:
    bucket = NOW - 2 * HOUR
    svg = time_columns(
        "requests",
        [(bucket, {"5xx": 1.0, "ok": 3.0})],
        [("ok", "outcome-ok"), ("5xx", "outcome-5xx")],
        NOW - 6 * HOUR,
        NOW,
        HOUR,
    )
    ok, failed = parse(svg).iter(f"{SVG}rect")
    assert ok.get("class") == "outcome-ok" and failed.get("class") == "outcome-5xx"
    assert float(failed.get("y", 0)) < float(ok.get("y", 0))  # on top
    assert float(ok.get("height", 0)) > 2.5 * float(failed.get("height", 0))


def test_histograms_share_a_log_axis_and_mark_percentiles() -> None:
    rows = [
        Distribution("local", "chart-local", [Bin(100, 134, 5), Bin(134, 180, 10)], [("p95", 170)]),
        Distribution("openai", "chart-openai", [Bin(800, 1070, 3), Bin(5000, 6700, 1)]),
    ]
    svg = histogram_rows("latency histogram", rows, unit="ms")
    root = parse(svg)
    groups = [g for g in root.iter(f"{SVG}g") if g.get("data-series")]
    assert [g.get("data-series") for g in groups] == ["local", "openai"]
    assert 'class="marker"' in svg and ">p95<" in svg
    assert ">1 s<" in svg  # a round tick with its unit
    local_right = max(float(r.get("x", 0)) for r in groups[0].iter(f"{SVG}rect"))
    openai_left = min(float(r.get("x", 0)) for r in groups[1].iter(f"{SVG}rect"))
    assert local_right < openai_left  # slower to the right on the shared axis


def test_scatter_puts_free_local_models_on_the_y_axis() -> None:
    svg = scatter(
        "speed against cost",
        [Point("qwen", "chart-local", 0.0, 60.0), Point("gpt-4o", "chart-openai", 0.004, 90.0)],
        x_unit="$",
        y_unit="tok/s",
    )
    local, cloud = circles(svg)
    assert float(local.get("cx", 0)) == 78.0  # the plot's left edge, just inside
    assert float(cloud.get("cx", 0)) > float(local.get("cx", 0))
    assert float(cloud.get("cy", 0)) < float(local.get("cy", 0))  # faster is higher
    assert ">$0<" in svg and "tok/s" in svg


series_points = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=24 * 60),
        st.one_of(st.none(), st.floats(min_value=0, max_value=1e7, allow_nan=False)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(series_points, series_points)
def test_any_data_gives_well_formed_svg_with_finite_coordinates_inside(
    a: list[tuple[int, float | None]], b: list[tuple[int, float | None]]
) -> None:
    start = NOW - 24 * HOUR
    series = [
        Series(name, f"series-{i}", [(start + dt.timedelta(minutes=m), v) for m, v in points])
        for i, (name, points) in enumerate((("a", a), ("b", b)))
    ]
    svg = time_lines("x", series, start, NOW, unit="ms")
    root = parse(svg)
    width, height = (float(v) for v in root.get("viewBox", "").split()[2:])
    for value in numbers_in(svg):
        assert -30 <= value <= max(width, height) + 30
    columns = [
        (start + dt.timedelta(minutes=m), {"ok": v or 0.0, "5xx": (v or 0.0) / 3}) for m, v in a
    ]
    svg = time_columns("y", columns, [("ok", "c0"), ("5xx", "c1")], start, NOW, HOUR)
    parse(svg)
    assert "nan" not in svg.lower() and "inf" not in svg.lower()


def test_outcomes_are_grouped_for_the_columns() -> None:
    assert [outcome_class(o) for o in ("ok", "429", "499", "502", "error after 200", "error")] == [
        "ok",
        "4xx",
        "499 client left",
        "5xx",
        "failed mid-stream",
        "failed mid-stream",
    ]


def test_figures_from_rows_with_their_numbers() -> None:
    window = Window.around(NOW - 24 * HOUR, NOW, HOUR)
    bucket = dt.datetime(2026, 12, 5, 13, 0)
    outcomes = [
        {"bucket": bucket, "series": "openai", "outcome": "ok", "requests": 4},
        {"bucket": bucket, "series": "openai", "outcome": "429", "requests": 1},
        {"bucket": bucket, "series": "local", "outcome": "ok", "requests": 2},
    ]
    figures = request_figures(outcomes, window)
    assert [f.id for f in figures] == ["requests-openai", "requests-local"]
    assert figures[0].numbers.rows == (
        ("2026-12-05 13:00", "openai", "ok", "4"),
        ("2026-12-05 13:00", "openai", "429", "1"),
    )
    assert [f.id for f in request_figures([], window)] == ["requests"]  # one empty chart

    row = {
        "bucket": bucket,
        "series": "openai",
        "requests": 5,
        "latency_p50_ms": 800.0,
        "latency_p95_ms": 1900.0,
        "ttft_p50_ms": None,
        "ttft_p95_ms": None,
        "gen_tokens_per_s": 55.0,
        "prompt_tokens": 1000,
        "completion_tokens": 300,
        "cost_usd": 0.0123,
    }
    over = {f.id: f for f in over_time_figures([row], window)}
    assert list(over) == ["latency", "ttft", "speed", "tokens", "cost"]
    assert over["latency"].numbers.rows == (("2026-12-05 13:00", "openai", "800 ms", "1.9 s"),)
    assert "data-empty" in over["ttft"].svg and "data-empty" not in over["latency"].svg
    assert over["cost"].numbers.rows == (("2026-12-05 13:00", "openai", "$0.01"),)

    histogram = [
        {
            "series": "openai",
            "metric": "latency_ms",
            "lower_ms": 800,
            "upper_ms": 1070,
            "requests": 4,
        }
    ]
    summary = [{"provider": "openai", "latency_p50_ms": 850.0, "latency_p95_ms": 1000.0}]
    latency, ttft = distribution_figures(histogram, summary, "provider")
    assert ">p50<" in latency.svg and ">p95<" in latency.svg
    assert "data-empty" in ttft.svg

    models = [
        {
            "provider": "local",
            "model": "qwen",
            "tokens_per_s_p50": 40.0,
            "prompt_tokens": 900,
            "completion_tokens": 100,
            "cost_usd": None,
            "requests": 3,
        },
        {
            "provider": "openai",
            "model": "gpt-4o",
            "tokens_per_s_p50": 80.0,
            "prompt_tokens": 1000,
            "completion_tokens": 0,
            "cost_usd": 0.01,
            "requests": 2,
        },
        {
            "provider": "custom",
            "model": "unpriced",
            "tokens_per_s_p50": 10.0,
            "prompt_tokens": 5,
            "completion_tokens": 5,
            "cost_usd": None,
            "requests": 1,
        },
    ]
    speed = speed_cost_figure(models)
    assert speed.svg.count("<circle") == 2
    assert [r[3] for r in speed.numbers.rows] == ["$0", "$0.01", "–"]
    assert speed.numbers.rows[2][5] == "not priced"


def test_the_pulse_keeps_what_changed_each_second() -> None:
    metrics = Metrics()
    pulse = Pulse(metrics, seconds=60)
    pulse.beat(1000.0)
    assert pulse.buckets(1000.5)[0].requests_per_s == {}
    for _ in range(5):
        metrics.observe("openai", "gpt", "ok", 0.1, None, None, None)
    metrics.observe("local", "qwen", "error", 0.1, None, None, None)
    metrics.in_flight = 3
    pulse.beat(1001.0)
    metrics.in_flight = 1
    metrics.observe("openai", "gpt", "ok", 0.1, None, None, None)
    pulse.beat(1002.0)
    (bucket,) = pulse.buckets(1002.5, bucket_s=5)
    assert bucket.at == 1000.0 and bucket.seconds == 5
    assert bucket.requests_per_s == {"local": 0.2, "openai": 1.2}
    assert bucket.errors == {"local": 1}
    assert bucket.in_flight == 3  # the most seen in the bucket
    assert pulse.buckets(1002.5 + 61) == []  # older than the pulse keeps
