"""The analytics page's figures: rows of the named queries in, charts and their numbers out.

Each :class:`Figure` is one chart (an SVG from :mod:`wlm.web.charts`), its legend,
the named query it was drawn from, and a :class:`Numbers` table holding exactly
the figures drawn, which the page puts one click away under the chart. Nothing
here reads the telemetry: :mod:`wlm.web.analytics` runs the queries and hands the
rows over, so every figure can be built and tested from plain dicts.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attrs import frozen
from markupsafe import Markup

from wlm.web.charts import (
    Bin,
    Distribution,
    Point,
    Series,
    histogram_rows,
    scatter,
    series_class,
    time_columns,
    time_lines,
)
from wlm.web.scales import format_value

__all__ = [
    "OUTCOME_CLASSES",
    "Figure",
    "Numbers",
    "Window",
    "bucket_line",
    "distribution_figures",
    "outcome_class",
    "over_time_figures",
    "request_figures",
    "series_classes",
    "speed_cost_figure",
]

# Providers with their own colour in wlm.css (.chart-<name>), matching their badges.
PROVIDER_COLOURS = frozenset({"local", "openai", "anthropic", "openrouter"})
UNROUTED = "(unrouted)"
MAX_SERIES = 8  # lines per chart; the tables below the charts list every series
# How a request ended, grouped for the stacked columns (the tables keep the exact status).
OUTCOME_CLASSES: tuple[tuple[str, str], ...] = (
    ("ok", "outcome-ok"),
    ("4xx", "outcome-4xx"),
    ("499 client left", "outcome-499"),
    ("5xx", "outcome-5xx"),
    ("failed mid-stream", "outcome-error"),
)


def outcome_class(outcome: str) -> str:
    """The group of an ``outcome`` (as outcomes_by_status.sql names it) in the charts."""
    if outcome == "ok":
        return "ok"
    if outcome == "499":
        return "499 client left"
    if outcome.isdigit():
        return "5xx" if outcome >= "500" else "4xx"
    return "failed mid-stream"  # 'error after 200', or no status on record


@frozen
class Numbers:
    """A table of the figures a chart draws: column names and rows of display strings."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@frozen
class Figure:
    """One chart of the page, with what a reader needs to trust it."""

    id: str
    title: str
    svg: Markup
    numbers: Numbers
    query: str
    legend: tuple[tuple[str, str], ...] = ()  # (css class, label)
    note: str = ""


@frozen
class Window:
    """The time axis of the over-time charts: ``start..end`` in ``bucket`` steps."""

    start: dt.datetime
    end: dt.datetime
    bucket: dt.timedelta
    now: dt.datetime

    @classmethod
    def around(cls, since: dt.datetime, now: dt.datetime, bucket: dt.timedelta) -> Window:
        """From the bucket holding ``since`` to the end of the bucket holding ``now``, so
        the current bucket has its full width and a lone point sits inside the chart."""
        return cls(_floor(since, bucket), _floor(now, bucket) + bucket, bucket, now)


_ORIGIN = dt.datetime(2000, 1, 3)  # DuckDB's time_bucket origin: buckets line up with its


def _floor(moment: dt.datetime, bucket: dt.timedelta) -> dt.datetime:
    return _ORIGIN + (moment - _ORIGIN) // bucket * bucket


def _series_names(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Series by their requests, busiest first (so colours follow importance)."""
    totals: dict[str, float] = defaultdict(float)
    for row in rows:
        totals[row["series"] or UNROUTED] += float(row.get("requests") or 0)
    return sorted(totals, key=lambda name: (-totals[name], name))


def series_classes(names: Sequence[str]) -> dict[str, str]:
    """Each series' CSS class: a provider's own colour, else the next ``series-<n>``."""
    return {name: series_class(name, i, PROVIDER_COLOURS) for i, name in enumerate(names)}


def _at(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _cell(value: Any, unit: str = "") -> str:
    return "–" if value is None else format_value(float(value), unit)


def request_figures(rows: Sequence[Mapping[str, Any]], window: Window) -> list[Figure]:
    """Requests per bucket stacked by how they ended: one small chart per series
    (rows of ``outcomes_timeseries``)."""
    names = _series_names(rows)[:MAX_SERIES]
    per: dict[str, dict[dt.datetime, dict[str, float]]] = {n: defaultdict(dict) for n in names}
    table = []
    for row in rows:
        name = row["series"] or UNROUTED
        if name not in per:
            continue
        group = outcome_class(str(row["outcome"]))
        cell = per[name][row["bucket"]]
        cell[group] = cell.get(group, 0) + float(row["requests"])
        table.append((_at(row["bucket"]), name, str(row["outcome"]), str(row["requests"])))
    figures = []
    for name in names or [""]:
        columns = sorted(per.get(name, {}).items())
        svg = time_columns(
            f"requests {name}".strip(),
            columns,
            OUTCOME_CLASSES,
            window.start,
            window.end,
            window.bucket,
            now=window.now,
            width=440,
            height=170,
            whole=True,
        )
        figures.append(
            Figure(
                id=f"requests-{name}" if name else "requests",
                title=f"Requests, {name}" if name else "Requests",
                svg=svg,
                numbers=Numbers(
                    ("bucket (UTC)", "series", "outcome", "requests"),
                    tuple(r for r in table if r[1] == name),
                ),
                query="outcomes_timeseries",
            )
        )
    return figures


@frozen
class _Metric:
    id: str
    title: str
    unit: str
    columns: tuple[tuple[str, str], ...]  # (column of timeseries, label); the 2nd is dashed
    note: str = ""


_METRICS = (
    _Metric(
        "latency",
        "Latency, p50 and p95",
        "ms",
        (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95")),
        "solid p50, dashed p95, successful requests",
    ),
    _Metric(
        "ttft",
        "Time to first token, p50 and p95",
        "ms",
        (("ttft_p50_ms", "p50"), ("ttft_p95_ms", "p95")),
        "solid p50, dashed p95, successful requests",
    ),
    _Metric(
        "speed",
        "Generation speed",
        "tok/s",
        (("gen_tokens_per_s", "tokens/s"),),
        "completion tokens over the time after the first token",
    ),
    _Metric(
        "tokens",
        "Tokens in and out",
        "",
        (("prompt_tokens", "in"), ("completion_tokens", "out")),
        "solid in (prompt), dashed out (completion), per bucket",
    ),
)


def _lines(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str], column: str, bucket: dt.timedelta
) -> dict[str, list[tuple[dt.datetime, float | None]]]:
    """A line per series of ``column``, a point mid-bucket; a bucket without a value
    between two with one breaks the line."""
    found: dict[str, list[tuple[dt.datetime, float]]] = defaultdict(list)
    for row in rows:
        name = row["series"] or UNROUTED
        if name in names and row.get(column) is not None:
            found[name].append((row["bucket"], float(row[column])))
    return {name: bucket_line(found.get(name, []), bucket) for name in names}


def bucket_line(
    points: Iterable[tuple[dt.datetime, float]], bucket: dt.timedelta
) -> list[tuple[dt.datetime, float | None]]:
    """``(bucket start, value)`` points as a line: a point mid-bucket, and a None (a
    break) where buckets are missing between two points."""
    line: list[tuple[dt.datetime, float | None]] = []
    previous: dt.datetime | None = None
    for start, value in sorted(points):
        if previous is not None and start - previous > bucket:
            line.append((previous + bucket, None))
        line.append((start + bucket / 2, value))
        previous = start
    return line


def over_time_figures(rows: Sequence[Mapping[str, Any]], window: Window) -> list[Figure]:
    """Latency, TTFT, speed, tokens and cost per bucket and series (rows of
    ``timeseries`` or ``timeseries_minutely``)."""
    names = _series_names(rows)[:MAX_SERIES]
    classes = series_classes(names)
    legend = tuple((classes[n], n) for n in names)
    figures = []
    ordered = sorted(rows, key=lambda r: (r["bucket"], r["series"] or ""))
    for metric in _METRICS:
        series = []
        for index, (column, _) in enumerate(metric.columns):
            for name, points in _lines(rows, names, column, window.bucket).items():
                series.append(Series(name, classes[name], points, dashed=index > 0))
        svg = time_lines(
            metric.id, series, window.start, window.end, unit=metric.unit, now=window.now
        )
        table = tuple(
            (
                _at(r["bucket"]),
                r["series"] or UNROUTED,
                *(_cell(r[c], metric.unit) for c, _ in metric.columns),
            )
            for r in ordered
        )
        figures.append(
            Figure(
                id=metric.id,
                title=metric.title,
                svg=svg,
                numbers=Numbers(
                    ("bucket (UTC)", "series", *(lbl for _, lbl in metric.columns)), table
                ),
                query="timeseries",
                legend=legend,
                note=metric.note,
            )
        )
    figures.append(_cost_figure(rows, names, classes, window))
    return figures


def _cost_figure(
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    classes: Mapping[str, str],
    window: Window,
) -> Figure:
    per_bucket: dict[dt.datetime, dict[str, float]] = defaultdict(dict)
    table = []
    for row in sorted(rows, key=lambda r: (r["bucket"], r["series"] or "")):
        name = row["series"] or UNROUTED
        cost = row.get("cost_usd")
        if name in classes and cost is not None:
            per_bucket[row["bucket"]][name] = float(cost)
        table.append((_at(row["bucket"]), name, _cell(cost, "$")))
    svg = time_columns(
        "cost",
        sorted(per_bucket.items()),
        [(n, classes[n]) for n in names],
        window.start,
        window.end,
        window.bucket,
        unit="$",
        now=window.now,
        empty="No priced requests in this window",
    )
    return Figure(
        id="cost",
        title="Cost (USD)",
        svg=svg,
        numbers=Numbers(("bucket (UTC)", "series", "cost"), tuple(table)),
        query="timeseries",
        legend=tuple((classes[n], n) for n in names),
        note="stacked per series; local models cost 0 unless priced",
    )


def distribution_figures(
    rows: Sequence[Mapping[str, Any]], summaries: Sequence[Mapping[str, Any]], key: str
) -> list[Figure]:
    """Latency and TTFT histograms per series with p50/p95/p99 marked (rows of
    ``latency_histogram``; markers from the summary rows, keyed by ``key``)."""
    names = _series_names(rows)[:MAX_SERIES]
    classes = series_classes(names)
    marks = {str(s[key] or UNROUTED): s for s in summaries}
    figures = []
    for metric, title in (("latency_ms", "Latency"), ("ttft_ms", "Time to first token")):
        prefix = metric.removesuffix("_ms")
        bins: dict[str, list[Bin]] = defaultdict(list)
        table = []
        for row in rows:
            name = row["series"] or UNROUTED
            if row["metric"] != metric or name not in classes:
                continue
            bins[name].append(
                Bin(float(row["lower_ms"]), float(row["upper_ms"]), float(row["requests"]))
            )
            table.append(
                (
                    name,
                    _cell(row["lower_ms"], "ms"),
                    _cell(row["upper_ms"], "ms"),
                    str(row["requests"]),
                )
            )
        distributions = []
        for name in names:
            summary = marks.get(name, {})
            markers = tuple(
                (p, float(summary[f"{prefix}_{p}_ms"]))
                for p in ("p50", "p95", "p99")
                if summary.get(f"{prefix}_{p}_ms") is not None
            )
            distributions.append(Distribution(name, classes[name], bins.get(name, []), markers))
        figures.append(
            Figure(
                id=f"{prefix}-histogram",
                title=f"{title}: how the requests spread",
                svg=histogram_rows(f"{prefix} histogram", distributions, unit="ms"),
                numbers=Numbers(("series", "from", "to", "requests"), tuple(table)),
                query="latency_histogram",
                note="successful requests per bin of a log scale, each row scaled to its "
                "tallest bin; p50, p95 and p99 marked",
            )
        )
    return figures


def speed_cost_figure(models: Sequence[Mapping[str, Any]]) -> Figure:
    """Per model used in the window: median tokens/s against USD per 1,000 tokens
    (rows of ``summary_by_model``); local models at zero cost unless priced."""
    points = []
    table = []
    providers = sorted({str(m["provider"] or UNROUTED) for m in models})
    classes = series_classes(providers)
    for m in models:
        provider = str(m["provider"] or UNROUTED)
        speed = m.get("tokens_per_s_p50")
        if speed is None:
            speed = m.get("gen_tokens_per_s")
        tokens = int(m.get("prompt_tokens") or 0) + int(m.get("completion_tokens") or 0)
        cost = m.get("cost_usd")
        if cost is None and provider == "local":
            cost = 0.0
        per_1k = None if cost is None or not tokens else float(cost) * 1000 / tokens
        shown = "not priced" if per_1k is None else "no speed" if speed is None else ""
        table.append(
            (
                provider,
                str(m["model"]),
                _cell(speed, "tok/s"),
                _cell(per_1k, "$"),
                str(m["requests"]),
                shown,
            )
        )
        if not shown:
            points.append(
                Point(
                    str(m["model"]), classes[provider], per_1k or 0.0, float(speed or 0.0), provider
                )
            )
    return Figure(
        id="speed-cost",
        title="Speed against cost, per model",
        svg=scatter(
            "speed against cost",
            points,
            x_unit="$",
            y_unit="tok/s",
            empty="No model with a known speed in this window",
        ),
        numbers=Numbers(
            (
                "provider",
                "model",
                "tokens/s (median)",
                "USD per 1k tokens",
                "requests",
                "not drawn",
            ),
            tuple(table),
        ),
        query="summary_by_model",
        legend=tuple((classes[p], p) for p in providers),
        note="x: USD per 1,000 tokens (in + out), y: median generation speed; "
        "up and left is fast and cheap",
    )
