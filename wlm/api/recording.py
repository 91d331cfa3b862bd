"""Counting a finished exchange in the metrics and queueing its telemetry rows.

Runs once per request, after the client has its answer; never awaited, never raises.
"""

from __future__ import annotations

import logging
import time

from wlm.api.exchange import Exchange
from wlm.metrics import Metrics
from wlm.redaction import Redactor
from wlm.telemetry.sink import TelemetrySink

__all__ = ["record_exchange"]

log = logging.getLogger("wlm.telemetry")


def record_exchange(
    exchange: Exchange,
    *,
    metrics: Metrics,
    telemetry: TelemetrySink | None,
    redactor: Redactor,
    log_content: bool,
) -> None:
    """Observe ``exchange`` in ``metrics`` and submit its records to ``telemetry``."""
    try:
        # One reading of the clock and the usage for both metrics and telemetry.
        elapsed = time.perf_counter() - exchange.started
        counts = exchange.token_counts()
        redactor = exchange.redactor(redactor)
        route = exchange.route
        metrics.observe(
            route.provider if route is not None else "none",
            redactor.text(exchange.model) if route is not None else "(unrouted)",
            exchange.status,
            elapsed,
            exchange.ttft,
            counts["prompt_tokens"],
            counts["completion_tokens"],
        )
        if telemetry is not None:
            record, conversation = exchange.records(
                redactor, log_content=log_content, counts=counts, elapsed=elapsed
            )
            telemetry.submit(record, conversation)
    except Exception:
        log.exception("could not record request %s", exchange.request_id)
