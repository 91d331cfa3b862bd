"""Pieces several pages share: providers at a glance, local instances, the request feed."""

from __future__ import annotations

import math
from typing import Any

from litestar import Request

from wlm.gateway import Gateway
from wlm.web.access import gateway_of, web_of
from wlm.web.data import NoTelemetry, RequestFilter, TelemetryReader
from wlm.web.render import plain

__all__ = ["cooldowns", "instances", "live_figures", "providers", "reader"]


def reader(request: Request[Any, Any, Any]) -> TelemetryReader:
    """The telemetry queries for this request's app."""
    return TelemetryReader(gateway_of(request).telemetry, web_of(request).queries)


def providers(gateway: Gateway) -> list[dict[str, Any]]:
    """Every provider wlm knows, whether its key is present (never the key itself)."""
    listings = {listing.provider: listing for listing in gateway.catalog.listings()}
    rows = []
    for provider in gateway.settings.providers:
        listing = listings.get(provider.name)
        key = "not needed" if provider.keyless else "no"
        if provider.api_key is not None:
            key = "yes"
        rows.append(
            {
                "name": provider.name,
                "kind": provider.kind,
                "base_url": gateway.redactor.text(provider.base_url),
                "key": key,
                "configured": provider.configured,
                "models": len(listing.models) if listing is not None else None,
                "listing_error": listing.error if listing is not None else None,
            }
        )
    return rows


def instances(gateway: Gateway) -> list[dict[str, Any]]:
    """The local engines (an empty list when local models are off)."""
    if gateway.local is None:
        return []
    return [plain(info) for info in gateway.local.instances()]


def cooldowns(gateway: Gateway) -> list[dict[str, Any]]:
    """Provider and model pairs failing in a row, cooling down first (wlm/resilience)."""
    text = gateway.redactor.text
    return [
        {
            "provider": state.provider,
            "model": text(state.model),
            "state": state.state,
            "failures": state.failures,
            "remaining_s": math.ceil(state.remaining_s),
        }
        for state in gateway.cooldowns.snapshot()
    ]


async def live_figures(request: Request[Any, Any, Any], *, feed_size: int = 15) -> dict[str, Any]:
    """Requests and errors in the last hour, the latest requests (or why not), and the
    pairs cooling down."""
    gateway = gateway_of(request)
    writer = gateway.telemetry
    stats = writer.stats() if writer is not None else None
    telemetry = reader(request)
    try:
        last_hour = await telemetry.last_hour()
        feed = await telemetry.recent(RequestFilter(), limit=feed_size)
    except NoTelemetry as exc:
        return {
            "last_hour": None,
            "feed": [],
            "telemetry_error": str(exc),
            "writer": stats,
            "cooldowns": cooldowns(gateway),
        }
    return {
        "last_hour": last_hour,
        "feed": feed,
        "telemetry_error": None,
        "writer": stats,
        "cooldowns": cooldowns(gateway),
    }
