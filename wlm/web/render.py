"""One context dict, three renderings: the full page, an htmx fragment, or JSON.

A page handler builds a plain dict of what it shows and calls :func:`page`. The same
dict becomes the HTML page, the ``_fragment.html`` an htmx request swaps in (named by
its target element's id or ``?fragment=<name>``), or, for ``/<page>.json`` and
``?format=json``, the JSON twin (Datasette-style), so what a person sees and what a
script reads never drift apart.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from litestar import Request, Response
from litestar.response import Template

from wlm.web.access import admin_required, csrf_of, gateway_of, session_of

__all__ = ["NAV", "page", "plain", "wants_json"]

# (path, label) of the navigation bar, in order.
NAV: tuple[tuple[str, str], ...] = (
    ("/", "Dashboard"),
    ("/models", "Models"),
    ("/playground", "Playground"),
    ("/analytics", "Analytics"),
    ("/requests", "Requests"),
    ("/instances", "Instances"),
    ("/settings", "Settings"),
)


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: attrs classes, enums, paths and datetimes included."""
    if attrs.has(type(value)):
        return {k: plain(v) for k, v in attrs.asdict(value, recurse=False).items()}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def wants_json(request: Request[Any, Any, Any]) -> bool:
    """True for the JSON twin: ``/page.json`` or ``?format=json``."""
    return request.url.path.endswith(".json") or request.query_params.get("format") == "json"


def _json_url(request: Request[Any, Any, Any]) -> str:
    path = request.url.path
    base = "/index" if path == "/" else path.rstrip("/")
    query = request.url.query
    return f"{base}.json" + (f"?{query}" if query else "")


def _wants_fragment(request: Request[Any, Any, Any]) -> bool:
    # Only htmx swaps fragments in. A reload of a pushed ``?fragment=`` URL, or htmx
    # restoring history after a cache miss, needs the whole page.
    headers = request.headers
    return (
        headers.get("hx-request") == "true" and headers.get("hx-history-restore-request") != "true"
    )


def chrome(request: Request[Any, Any, Any], active: str) -> dict[str, Any]:
    """What the layout needs besides the page's own context (never part of the JSON)."""
    return {
        "nav": NAV,
        "active": active,
        "csrf_token": csrf_of(request),
        "admin_required": admin_required(request),
        "logged_in": session_of(request).admin,
        "json_url": _json_url(request),
        "telemetry_alert": telemetry_alert(request),
    }


def telemetry_alert(request: Request[Any, Any, Any]) -> str | None:
    """A line on every page while the shared telemetry database is away (rows waiting on
    local disk) and, louder, once the spool is full and rows are dropped; else None."""
    gateway = getattr(request.app.state, "gateway", None)
    telemetry = gateway_of(request).telemetry if gateway is not None else None
    if telemetry is None:
        return None
    stats = telemetry.stats()
    if stats.spool_full:
        return (
            "Telemetry: the database is unreachable and the spool is full (WLM_SPOOL_MAX_MB): "
            f"rows are being DROPPED, {stats.dropped} so far."
        )
    if stats.spooled_bytes:
        waiting = max(1, stats.spooled_bytes // 1024)
        return (
            f"Telemetry: the database is unreachable; {waiting} KiB of rows wait on disk "
            "and will be written when it is back."
        )
    return None


def page(
    request: Request[Any, Any, Any],
    template: str,
    context: dict[str, Any],
    *,
    active: str,
    fragments: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response[Any]:
    """Render ``context`` as the page, the requested fragment, or JSON.

    ``fragments`` maps a fragment name (``?fragment=`` or the htmx target's id) to its
    partial template, rendered for htmx requests only; an unknown name, or a plain
    browser request, gets the whole page.
    """
    if wants_json(request):
        return Response(content=plain(context), status_code=status, media_type="application/json")
    full = {**context, **chrome(request, active)}
    # The fragment is named by ``?fragment=`` or, for htmx, by the id of the element
    # being swapped (``HX-Target``), so pushed URLs stay the page's own.
    fragment: str | None = request.query_params.get("fragment") or request.headers.get("hx-target")
    if fragments and fragment is not None and fragment in fragments and _wants_fragment(request):
        return Template(template_name=fragments[fragment], context=full, status_code=status)
    headers = {"link": f'<{full["json_url"]}>; rel="alternate"; type="application/json"'}
    return Template(template_name=template, context=full, status_code=status, headers=headers)


def fragment(
    request: Request[Any, Any, Any], template: str, context: dict[str, Any], *, status: int = 200
) -> Response[Any]:
    """Render only a partial (the answer to an htmx action such as load or unload)."""
    if wants_json(request):
        return Response(content=plain(context), status_code=status, media_type="application/json")
    full = {**context, **chrome(request, "")}
    return Template(template_name=template, context=full, status_code=status)
