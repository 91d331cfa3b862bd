"""``GET /metrics``: Prometheus text, guarded like /api."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from wlm.api.guards import admin_guard
from wlm.gateway import Gateway
from wlm.metrics import LabelledCounter
from wlm.telemetry.otlp import OtlpSink

__all__ = ["OBSERVABILITY_ROUTES", "metrics_text"]


@get("/metrics", guards=[admin_guard])
async def metrics(request: Request[Any, Any, Any]) -> Response[str]:
    return Response(
        metrics_text(request.app.state.gateway),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )


def metrics_text(gateway: Gateway) -> str:
    """The gateway's counters and gauges as Prometheus text."""
    gauges: list[tuple[str, str, float]] = []
    if gateway.telemetry is not None:
        stats = gateway.telemetry.stats()
        gauges += [
            ("wlm_telemetry_queue_depth", "Records waiting for the DuckDB writer.", stats.queued),
            ("wlm_telemetry_written_total", "Records written to DuckDB.", stats.written),
            (
                "wlm_telemetry_dropped_total",
                "Records dropped because the queue was full.",
                stats.dropped,
            ),
            (
                "wlm_telemetry_healthy",
                "1 when the last DuckDB write succeeded.",
                int(stats.healthy),
            ),
        ]
    if isinstance(gateway.telemetry, OtlpSink):  # spans out (docs/opentelemetry.md)
        otlp = gateway.telemetry.spans.stats
        gauges += [
            ("wlm_otlp_spans_exported_total", "Spans the OTLP receiver took.", otlp.exported),
            (
                "wlm_otlp_spans_dropped_total",
                "Spans dropped: a full queue, or a receiver down, slow or refusing.",
                otlp.dropped,
            ),
        ]
    if gateway.local is not None:
        instances = gateway.local.instances()
        gauges += [
            (
                "wlm_local_models",
                "Usable local GGUF models discovered.",
                len(gateway.local.model_ids()),
            ),
            (
                "wlm_local_instances",
                "Local engines running (ready).",
                sum(i.state == "ready" for i in instances),
            ),
            (
                "wlm_local_in_flight",
                "Requests in flight on local engines.",
                sum(i.in_flight for i in instances),
            ),
        ]
    cooldowns = gateway.cooldowns
    gauges.append(
        (
            "wlm_cooldowns_active",
            "Provider and model pairs skipped now: they failed WLM_COOLDOWN_FAILURES times "
            "in a row and cool down for WLM_COOLDOWN_S.",
            cooldowns.cooling(),
        )
    )
    counters = [
        LabelledCounter(
            "wlm_key_limit_refusals_total",
            "Requests refused by WLM_KEY_LIMITS, by client key name and limit "
            "(rpm, tpm, usd_per_day, usd_per_month).",
            ("key", "reason"),
            dict(gateway.key_limits.refusals),
        ),
        LabelledCounter(
            "wlm_cooldowns_started_total",
            "Cooldowns started (or started again by a failed probe), by provider.",
            ("provider",),
            {(provider,): n for provider, n in cooldowns.started.items()},
        ),
        LabelledCounter(
            "wlm_cooldown_skips_total",
            "Tries skipped because their provider and model were cooling down, by provider.",
            ("provider",),
            {(provider,): n for provider, n in cooldowns.skipped.items()},
        ),
    ]
    return gateway.metrics.render(gauges, counters)


OBSERVABILITY_ROUTES = [metrics]
