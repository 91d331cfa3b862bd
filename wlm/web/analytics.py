"""``/analytics``: per provider and per model over 1h, 24h, 7d or 30d, in charts and tables.

The tables come from the rollup queries (``summary_by_provider``,
``summary_by_model``, ``outcomes_by_status``), which count whole clock hours: a range
reads one hour more than its name, so "24h" always covers at least the last 24
hours, and the page states the exact start. The charts over time of the 1h range read
raw rows per two minutes (``timeseries_minutely``, ``outcomes_timeseries_minutely``);
longer ranges read the hourly rollups (``timeseries``, ``outcomes_timeseries``), as do
the distributions (``latency_histogram``). Charts are SVG drawn on the server
(:mod:`wlm.web.figures` builds them from the rows, :mod:`wlm.web.charts` draws them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from typing import Any, TypedDict

from attrs import frozen
from litestar import Request, Response, get

from wlm.web.box_figures import box_figures
from wlm.web.common import reader
from wlm.web.data import NoTelemetry, TelemetryReader, utc_now, window_start
from wlm.web.figures import (
    OUTCOME_CLASSES,
    UNROUTED,
    Window,
    distribution_figures,
    over_time_figures,
    request_figures,
    speed_cost_figure,
)
from wlm.web.render import fragment, page, wants_json

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


def _latency_p50(
    rows: list[dict[str, Any]], bucket: dt.timedelta
) -> dict[str, list[dict[str, Any]]]:
    """Median latency per series, a point mid-bucket (the JSON twin's ``latency_p50_ms``)."""
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["latency_p50_ms"] is not None:
            series[row["series"] or UNROUTED].append(
                {"at": row["bucket"] + bucket / 2, "value": row["latency_p50_ms"]}
            )
    return dict(sorted(series.items()))


def _over_time(
    telemetry: TelemetryReader, chosen: Range, by: str
) -> tuple[Awaitable[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]:
    """The queries of ``timeseries`` and ``outcomes_timeseries`` (their ``_minutely``
    twins, over raw rows, for the 1h range) in the range's buckets."""
    if chosen.minutely:
        minutes = int(chosen.bucket.total_seconds() // 60)
        shape: dict[str, Any] = {"hours": chosen.hours, "bucket_minutes": minutes}
        suffix = "_minutely"
    else:
        bucket_hours = int(chosen.bucket.total_seconds() // 3600)
        shape = {"hours": chosen.hours + 1, "bucket_hours": bucket_hours}
        suffix = ""
    return (
        telemetry.named(f"timeseries{suffix}", max_rows=5000, group_by=by, **shape),
        telemetry.named(f"outcomes_timeseries{suffix}", max_rows=10000, group_by=by, **shape),
    )


async def _no_rows() -> list[dict[str, Any]]:
    return []


async def _endpoints(
    request: Request[Any, Any, Any], telemetry: TelemetryReader, hours: int
) -> Response[Any]:
    """The per-endpoint table alone: ``by_endpoint`` reads the requests themselves (the
    rollups have no endpoint), a scan that grows with the range, so the page asks for
    it once it is shown rather than waiting for it."""
    try:
        endpoints = await telemetry.named("by_endpoint", hours=hours)
    except NoTelemetry:
        endpoints = []
    return fragment(request, "_endpoints.html", {"endpoints": endpoints})


@get(["/analytics", "/analytics.json"])
async def analytics_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """Figures for ``?range=1h|24h|7d|30d`` (default 24h), the charts' series per
    provider or, with ``?by=model``, per model."""
    name = request.query_params.get("range", DEFAULT_RANGE)
    if name not in RANGES:
        name = DEFAULT_RANGE
    by = "model" if request.query_params.get("by") == "model" else "provider"
    chosen = RANGES[name]
    now = utc_now()
    # One whole clock hour more than the range, so the range is always covered.
    hours = chosen.hours + 1
    since = window_start(hours, now)
    context: dict[str, Any] = {
        "range": name,
        "ranges": list(RANGES),
        "by": by,
        "since": since,
        "until": now,
        "telemetry_error": None,
    }
    telemetry = reader(request)
    as_json = wants_json(request)
    if request.query_params.get("fragment") == "endpoints" and not as_json:
        return await _endpoints(request, telemetry, hours)
    try:
        # The reader pool runs them side by side (two at a time). The per-endpoint table
        # reads raw rows, so the HTML page loads it after itself (?fragment=endpoints).
        (
            by_provider,
            by_model,
            found,
            by_endpoint,
            resilience,
            histogram,
            over_time,
            outcomes_over_time,
            box,
            crashes,
        ) = await asyncio.gather(
            telemetry.named("summary_by_provider", hours=hours),
            telemetry.named("summary_by_model", hours=hours),
            telemetry.named("outcomes_by_status", hours=hours),
            telemetry.named("by_endpoint", hours=hours) if as_json else _no_rows(),
            telemetry.named("resilience_by_provider", hours=hours),
            telemetry.named("latency_histogram", max_rows=5000, hours=hours, group_by=by),
            *_over_time(telemetry, chosen, by),
            # The box's samples over the range, in the charts' buckets (raw rows).
            telemetry.named(
                "box_timeseries",
                max_rows=10000,
                hours=chosen.hours if chosen.minutely else hours,
                bucket_minutes=int(chosen.bucket.total_seconds() // 60),
            ),
            # Local engines that exited by themselves (engine_events).
            telemetry.named("engine_crashes", hours=hours),
        )
    except NoTelemetry as exc:
        context["telemetry_error"] = str(exc)
        by_provider, by_model, found, by_endpoint, resilience, histogram = [], [], [], [], [], []
        over_time, outcomes_over_time, box, crashes = [], [], [], []
    for row in (*by_provider, *by_model):
        row["provider"] = row["provider"] or UNROUTED
    outcomes, model_outcomes = _outcomes(found)
    context.update(
        providers=by_provider,
        models=by_model,
        endpoints=by_endpoint,
        resilience=resilience,
        engine_crashes=crashes,
        outcome_columns=_outcome_columns(outcomes),
        outcomes=outcomes,
        model_outcome_columns=_outcome_columns(model_outcomes),
        model_outcomes=model_outcomes,
    )
    if as_json:
        context.update(
            timeseries=over_time,
            outcomes_timeseries=outcomes_over_time,
            latency_histogram=histogram,
            latency_p50_ms=_latency_p50(over_time, chosen.bucket),
            box_timeseries=box,
        )
    else:
        start = now - dt.timedelta(hours=chosen.hours) if chosen.minutely else since
        window = Window.around(start, now, chosen.bucket)
        summaries = by_model if by == "model" else by_provider
        context.update(
            request_figures=request_figures(outcomes_over_time, window),
            time_figures=over_time_figures(over_time, window),
            distribution_figures=distribution_figures(histogram, summaries, by),
            speed_figure=speed_cost_figure(by_model),
            outcome_classes=OUTCOME_CLASSES,
            box_figures=box_figures(box, window),
        )
    return page(
        request,
        "analytics.html",
        context,
        active="/analytics",
        fragments={"analytics-body": "_analytics_body.html"},
    )


ANALYTICS_ROUTES = [analytics_page]
