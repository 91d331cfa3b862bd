"""Every route handler of the app, gathered in one list."""

from __future__ import annotations

from typing import Any

from wlm.api.hub_routes import HUB_ROUTES
from wlm.api.management import MANAGEMENT_ROUTES
from wlm.api.observability import OBSERVABILITY_ROUTES
from wlm.api.openai_routes import ROUTES as OPENAI_ROUTES
from wlm.api.stats import STATS_ROUTES

__all__ = ["all_routes"]


def all_routes() -> list[Any]:
    return [*OPENAI_ROUTES, *MANAGEMENT_ROUTES, *HUB_ROUTES, *STATS_ROUTES, *OBSERVABILITY_ROUTES]
