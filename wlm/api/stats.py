"""``GET /api/stats``: the box's latest sample (CPU, memory, local engines, GPUs).

The sample is taken in the background (:meth:`wlm.gateway.Gateway.start`, every
``WLM_STATS_EVERY_S`` seconds); this route only reads it, so it costs nothing.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, get

from wlm.api.guards import admin_guard
from wlm.api.openai_routes import json_response
from wlm.errors import GatewayError
from wlm.gateway import Gateway
from wlm.local.box_stats import sample_json

__all__ = ["STATS_ROUTES"]


@get("/api/stats", guards=[admin_guard])
async def api_stats(request: Request[Any, Any, Any]) -> Response[Any]:
    """The latest sample, with its age; no ``gpus`` without a GPU tool that answered."""
    gateway: Gateway = request.app.state.gateway
    every_s = gateway.settings.stats_every_s
    if every_s <= 0:
        raise GatewayError(
            "Box stats are off (WLM_STATS_EVERY_S=0); set it to a number of seconds.",
            status=404,
            type="not_found_error",
            code="stats_off",
        )
    sample = gateway.box
    if sample is None:
        raise GatewayError(
            "The first sample of the box is not taken yet; try again in a few seconds.",
            status=503,
            type="service_unavailable",
            code="stats_not_ready",
        )
    body = sample_json(sample)
    body["age_s"] = round(max(0.0, time.time() - sample.at), 1)
    body["every_s"] = every_s
    return json_response(body)


STATS_ROUTES = [api_stats]
