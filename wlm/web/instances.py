"""``/instances``: the local engines, refreshed every two seconds, and a live log tail.

The tail is Server-Sent Events through htmx's sse extension: each event carries one
log line as an escaped ``<div>``, appended to the log box. It is served here rather
than by ``/api/instances/{id}/logs/stream`` because a browser's EventSource cannot send
the admin key header; the page session covers it instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Stream
from markupsafe import escape

from wlm.gateway import Gateway
from wlm.sse import encode_comment, encode_event
from wlm.web.access import gateway_of
from wlm.web.common import instances
from wlm.web.render import fragment, page

__all__ = ["INSTANCES_ROUTES"]


@get(["/instances", "/instances.json"])
async def instances_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """Every engine with its state, pid, port, uptime, memory and requests in flight."""
    gateway = gateway_of(request)
    rows = instances(gateway)
    ids = [row["model_id"] for row in rows]
    wanted = request.query_params.get("log")
    context = {
        "local_enabled": gateway.local is not None,
        "instances": rows,
        "queue": _queue(gateway),
        "log_model": wanted if wanted in ids else (ids[0] if ids else None),
    }
    return page(
        request,
        "instances.html",
        context,
        active="/instances",
        fragments={"instances-table": "_instances_table.html"},
    )


def _queue(gateway: Gateway) -> list[dict[str, Any]]:
    """Each request running on an engine or waiting for one (running first)."""
    if gateway.local is None:
        return []
    text = gateway.redactor.text
    return [
        {
            "id": entry.id,
            "request_id": text(entry.request_id),
            "model": entry.model,
            "state": entry.state,
            "position": entry.position,
            "priority": entry.priority,
            "client": entry.client,
            "stream": entry.stream,
            "waited_s": entry.waited_s,
            "running_s": entry.running_s,
            "tokens": entry.tokens,
        }
        for entry in gateway.local.queue()
    ]


@post("/instances/cancel", status_code=200)
async def instance_request_cancel(request: Request[Any, Any, Any]) -> Response[Any]:
    """Cancel a running or waiting local request (form field ``id``); answers with the
    refreshed table. Its client gets an error saying an administrator cancelled it."""
    gateway = gateway_of(request)
    request_id = str((await request.form()).get("id") or "")
    cancelled = gateway.local.cancel_queued(request_id) if gateway.local is not None else None
    context = {
        "instances": instances(gateway),
        "queue": _queue(gateway),
        "log_model": request.query_params.get("log"),
        "cancelled": request_id if cancelled is not None else None,
    }
    return fragment(request, "_instances_table.html", context, status=200)


@get("/instances/logs/stream")
async def instance_log_stream(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
    """``?id=<model>``: the engine's buffered log lines, then new ones as they come."""
    local = gateway_of(request).local
    model_id = request.query_params.get("id", "")
    if local is None or model_id not in {info.model_id for info in local.instances()}:
        return Response(content="No such instance.", status_code=404, media_type="text/plain")

    async def events() -> AsyncIterator[bytes]:
        # A comment first, so the browser sees the stream open before any line arrives.
        yield encode_comment("log tail")
        async for line in local.follow_logs(model_id):
            yield encode_event(f'<div class="logline">{escape(line)}</div>', event="log")

    return Stream(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


INSTANCES_ROUTES = [instances_page, instance_request_cancel, instance_log_stream]
