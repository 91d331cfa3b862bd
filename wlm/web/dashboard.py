"""``/``: providers, local engines, the last hour in two numbers, and a live request feed."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from wlm.web.access import gateway_of
from wlm.web.common import instances, live_figures, providers
from wlm.web.render import page

__all__ = ["DASHBOARD_ROUTES"]


@get(["/", "/index.json"])
async def dashboard(request: Request[Any, Any, Any]) -> Response[Any]:
    """The dashboard; ``?fragment=live`` is the part htmx refreshes every two seconds."""
    gateway = gateway_of(request)
    local = gateway.local
    context: dict[str, Any] = {
        "providers": providers(gateway),
        "local_enabled": local is not None,
        "local_models": len(local.model_ids()) if local is not None else 0,
        "instances": instances(gateway),
        **await live_figures(request),
    }
    return page(request, "dashboard.html", context, active="/", fragments={"live": "_live.html"})


DASHBOARD_ROUTES = [dashboard]
