"""Counting a finished exchange in the metrics and queueing its telemetry rows.

Runs once per request: just before the answer's last part goes out when telemetry has
a journal (so a kill cannot lose the row of an answer a client has), else once the
request ends (wlm.api.proxy). Never awaited, never raises.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from wlm.api.exchange import Exchange
from wlm.metrics import Metrics
from wlm.redaction import Redactor
from wlm.telemetry.pricing import Prices
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
    prices: Prices | None = None,
) -> dict[str, Any] | None:
    """Observe ``exchange`` in ``metrics`` and submit its records to ``telemetry``.

    With ``prices``, a request whose provider reported no cost is priced from its
    usage. Returns the token counts and ``cost_usd`` recorded (None if recording
    failed), for the per-key limits to count.
    """
    try:
        # One reading of the clock and the usage for both metrics and telemetry.
        elapsed = time.perf_counter() - exchange.started
        counts = exchange.token_counts()
        redactor = exchange.redactor(redactor)
        route = exchange.route
        if prices is not None and route is not None and counts["cost_usd"] is None:
            model = exchange.account.upstream_model or route.upstream_model
            counts["cost_usd"] = prices.cost_of(route.provider, model, counts, exchange.started_at)
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
            telemetry.submit(record, conversation, exchange.attempt_records(redactor))
        return counts
    except Exception:
        log.exception("could not record request %s", exchange.request_id)
        return None
