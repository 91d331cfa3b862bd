"""``/requests``: recent requests, filterable; ``/requests/{id}``: one record and its conversation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Request, Response, get

from wlm.routing.resolve import LOCAL
from wlm.web.access import gateway_of
from wlm.web.common import reader
from wlm.web.conversation import conversation_view
from wlm.web.data import NoTelemetry, RequestFilter
from wlm.web.playground import model_choices, seed_from
from wlm.web.render import page

__all__ = ["REQUESTS_ROUTES"]

PAGE_SIZE = 50
STATUSES = ("ok", "error", "cancelled")
# How far back the list and its model choices look (the retention may keep less).
_LIST_HOURS = 24 * 365
_CHOICES_HOURS = 24 * 30


def _before(raw: str | None) -> dt.datetime | None:
    if not raw:
        return None
    try:
        return dt.datetime.fromisoformat(raw).replace(tzinfo=None)
    except ValueError:
        return None


@get(["/requests", "/requests.json"])
async def requests_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """Newest first; ``?provider=``, ``?model=``, ``?status=`` narrow it, ``?before=`` pages."""
    params = request.query_params
    flt = RequestFilter(
        provider=params.get("provider", "").strip(),
        model=params.get("model", "").strip(),
        status=params.get("status", "").strip(),
    )
    before = _before(params.get("before"))
    gateway = gateway_of(request)
    configured = ([LOCAL] if gateway.local is not None else []) + [
        p.name for p in gateway.settings.providers if p.configured
    ]
    context: dict[str, Any] = {
        "filter": {"provider": flt.provider, "model": flt.model, "status": flt.status},
        "before": before,
        "statuses": list(STATUSES),
        "providers": configured,
        "models": [],
        "requests": [],
        "older": None,
        "telemetry_error": None,
    }
    telemetry = reader(request)
    try:
        rows = await telemetry.recent(flt, limit=PAGE_SIZE + 1, hours=_LIST_HOURS, before=before)
        used = await telemetry.named("summary_by_model", hours=_CHOICES_HOURS)
    except NoTelemetry as exc:
        rows, used = [], []
        context["telemetry_error"] = str(exc)
    seen = {row["provider"] for row in used if row["provider"]}
    context["providers"] = sorted(set(configured) | seen)
    context["models"] = sorted({row["model"] for row in used if row["model"]})
    context["requests"] = rows[:PAGE_SIZE]
    if len(rows) > PAGE_SIZE:
        context["older"] = rows[PAGE_SIZE - 1]["started_at"]
    return page(
        request,
        "requests.html",
        context,
        active="/requests",
        fragments={"requests-table": "_requests_table.html"},
    )


@get("/requests/{request_id:str}")
async def request_page(request: Request[Any, Any, Any], request_id: str) -> Response[Any]:
    """One request's record and, when content logging was on, its conversation."""
    # The JSON twin is /requests/<id>.json (render.wants_json sees the suffix).
    request_id = request_id.removesuffix(".json")
    context: dict[str, Any] = {
        "id": request_id,
        "record": None,
        "conversation": None,
        "telemetry_error": None,
        "replay": None,
    }
    try:
        row = await reader(request).request(request_id)
    except NoTelemetry as exc:
        context["telemetry_error"] = str(exc)
        return page(request, "request.html", context, active="/requests", status=503)
    if row is None:
        return page(request, "request.html", context, active="/requests", status=404)
    content_keys = ("request_json", "response_text", "reasoning_text", "tool_calls_json")
    context["record"] = {k: v for k, v in row.items() if k not in content_keys}
    context["conversation"] = conversation_view(row)
    # Open it in the playground, or replay it on another model (when its messages were
    # kept). The models as cached: a stale provider's list is not waited for here.
    choices = await model_choices(request, wait=False)
    context["replay"] = {
        "messages": len(seed_from(row)["messages"]),
        "models": [m["id"] for m in choices if m["id"] != row.get("model")],
    }
    return page(request, "request.html", context, active="/requests")


REQUESTS_ROUTES = [requests_page, request_page]
