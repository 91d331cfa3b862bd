"""``/analytics``: per provider and per model over 1h, 24h, 7d or 30d, with two charts.

The tables come from the rollup queries (``summary_by_provider``,
``summary_by_model``, ``outcomes_by_status``), which count whole clock hours: a range
reads one hour more than its name, so "24h" always covers at least the last 24
hours, and the page states the exact start. The latency chart of the 1h range reads
raw rows per two minutes (``timeseries_minutely``); longer ranges read the hourly
rollups (``timeseries``). Charts are SVG drawn on the server (see
:mod:`wlm.web.charts`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TypedDict

from attrs import frozen
from litestar import Request, Response, get

from wlm.web.charts import line_chart, stacked_bars
from wlm.web.common import reader
from wlm.web.data import NoTelemetry, TelemetryReader, utc_now, window_start
from wlm.web.render import page, wants_json

__all__ = ["ANALYTICS_ROUTES", "RANGES"]


@frozen
class Range:
    """A range of the analytics page and how its chart is bucketed."""

    hours: int
    bucket: dt.timedelta

    @property
    def minutely(self) -> bool:
        return self.bucket < dt.timedelta(hours=1)


RANGES: dict[str, Range] = {
    "1h": Range(1, dt.timedelta(minutes=2)),
    "24h": Range(24, dt.timedelta(hours=1)),
    "7d": Range(24 * 7, dt.timedelta(hours=6)),
    "30d": Range(24 * 30, dt.timedelta(days=1)),
}
DEFAULT_RANGE = "24h"
# Providers with their own colour in wlm.css (.chart-<name>), matching their badges.
PROVIDER_COLOURS = frozenset({"local", "openai", "anthropic", "openrouter"})
UNROUTED = "(unrouted)"


class OutcomeRow(TypedDict):
    """A row of an outcomes table: how many requests ended each way."""

    provider: str
    counts: dict[str, int]


class ModelOutcomeRow(OutcomeRow):
    model: str


def _outcome_order(outcome: str) -> tuple[int, str]:
    """ok first, then the HTTP statuses in order, then failures without one of their own."""
    if outcome == "ok":
        return (0, "")
    if outcome.isdigit():
        return (1, outcome.zfill(3))
    return (2, outcome)


def _outcome_columns(rows: Sequence[OutcomeRow]) -> list[str]:
    return sorted({outcome for row in rows for outcome in row["counts"]}, key=_outcome_order)


def _outcomes(
    found: list[dict[str, Any]],
) -> tuple[list[OutcomeRow], list[ModelOutcomeRow]]:
    """The rows of ``outcomes_by_status`` as a table per provider and one per model.

    Outcomes are ``ok``, an HTTP status (``499``: the client left), ``error after
    200`` (a stream that failed once started) or ``error`` (no status on record).
    """
    per_provider: dict[str, dict[str, int]] = defaultdict(dict)
    per_model: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for row in found:
        provider, model = row["provider"] or UNROUTED, row["model"] or "-"
        outcome, n = str(row["outcome"]), int(row["requests"])
        for cell in (per_provider[provider], per_model[provider, model]):
            cell[outcome] = cell.get(outcome, 0) + n
    providers = [OutcomeRow(provider=p, counts=c) for p, c in sorted(per_provider.items())]
    models = [
        ModelOutcomeRow(provider=p, model=m, counts=c) for (p, m), c in sorted(per_model.items())
    ]
    return providers, models


def _series(
    rows: list[dict[str, Any]], bucket: dt.timedelta, now: dt.datetime
) -> dict[str, list[tuple[dt.datetime, float | None]]]:
    """Median latency per provider, a point mid-bucket (or now, for the current bucket);
    a bucket without requests breaks the line."""
    found: dict[str, list[tuple[dt.datetime, float]]] = defaultdict(list)
    for row in rows:
        if row["latency_p50_ms"] is not None:
            found[row["series"] or UNROUTED].append((row["bucket"], float(row["latency_p50_ms"])))
    series: dict[str, list[tuple[dt.datetime, float | None]]] = {}
    for name, points in sorted(found.items()):
        line: list[tuple[dt.datetime, float | None]] = []
        previous = None
        for start, value in sorted(points):
            if previous is not None and start - previous > bucket:
                line.append((previous + bucket, None))
            line.append((min(start + bucket / 2, now), value))
            previous = start
        series[name] = line
    return series


async def _latency(telemetry: TelemetryReader, chosen: Range) -> list[dict[str, Any]]:
    if chosen.minutely:
        minutes = int(chosen.bucket.total_seconds() // 60)
        return await telemetry.named(
            "timeseries_minutely", max_rows=5000, hours=chosen.hours, bucket_minutes=minutes
        )
    bucket_hours = int(chosen.bucket.total_seconds() // 3600)
    return await telemetry.named(
        "timeseries", max_rows=5000, hours=chosen.hours + 1, bucket_hours=bucket_hours
    )


@get(["/analytics", "/analytics.json"])
async def analytics_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """Figures for ``?range=1h|24h|7d|30d`` (default 24h)."""
    name = request.query_params.get("range", DEFAULT_RANGE)
    if name not in RANGES:
        name = DEFAULT_RANGE
    chosen = RANGES[name]
    now = utc_now()
    # One whole clock hour more than the range, so the range is always covered.
    hours = chosen.hours + 1
    since = window_start(hours, now)
    context: dict[str, Any] = {
        "range": name,
        "ranges": list(RANGES),
        "since": since,
        "until": now,
        "telemetry_error": None,
    }
    telemetry = reader(request)
    try:
        by_provider = await telemetry.named("summary_by_provider", hours=hours)
        by_model = await telemetry.named("summary_by_model", hours=hours)
        found = await telemetry.named("outcomes_by_status", hours=hours)
        by_endpoint = await telemetry.named("by_endpoint", hours=hours)
        resilience = await telemetry.named("resilience_by_provider", hours=hours)
        latency = await _latency(telemetry, chosen)
    except NoTelemetry as exc:
        context["telemetry_error"] = str(exc)
        by_provider, by_model, found, by_endpoint, resilience, latency = [], [], [], [], [], []
    for row in (*by_provider, *by_model):
        row["provider"] = row["provider"] or UNROUTED
    outcomes, model_outcomes = _outcomes(found)
    context.update(
        providers=by_provider,
        models=by_model,
        endpoints=by_endpoint,
        resilience=resilience,
        outcome_columns=_outcome_columns(outcomes),
        outcomes=outcomes,
        model_outcome_columns=_outcome_columns(model_outcomes),
        model_outcomes=model_outcomes,
    )
    series = _series(latency, chosen.bucket, now)
    if wants_json(request):
        context["latency_p50_ms"] = {
            provider: [{"at": at, "value": v} for at, v in points if v is not None]
            for provider, points in series.items()
        }
    else:
        chart_start = now - dt.timedelta(hours=chosen.hours) if chosen.minutely else since
        context["latency_chart"] = line_chart(
            series, chart_start, now, unit="ms", named_colours=PROVIDER_COLOURS
        )
        context["token_chart"] = stacked_bars(
            [
                (row["provider"], {"in": row["prompt_tokens"], "out": row["completion_tokens"]})
                for row in by_provider
            ],
            ("in", "out"),
        )
    return page(
        request,
        "analytics.html",
        context,
        active="/analytics",
        fragments={"analytics-body": "_analytics_body.html"},
    )


ANALYTICS_ROUTES = [analytics_page]
