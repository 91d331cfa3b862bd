"""The HTMX pages: dashboard, models, analytics, requests, playground, instances, settings.

Wire them into the app with two calls::

    app = Litestar(
        route_handlers=[*all_routes(), *web_routes(gateway.sessions)],
        template_config=template_config(),
        ...
    )

Templates live in ``web/templates`` (``_name.html`` are the htmx fragments), static
files (vendored htmx and its SSE extension, the CSS) in ``web/static``, served from
``/static``. Each call to :func:`web_routes` makes a fresh :class:`WebState` around the
session signer it is given: the app's gateway's, whose secret the proxy checks the
playground's requests against too, so two apps in one process share nothing.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from wlm.sessions import SessionSigner
from wlm.shipped import shipped_dir
from wlm.telemetry.analytics import load_named_queries
from wlm.web.access import WebState, before_request, page_middleware
from wlm.web.analytics import ANALYTICS_ROUTES
from wlm.web.dashboard import DASHBOARD_ROUTES
from wlm.web.filters import FILTERS
from wlm.web.instances import INSTANCES_ROUTES
from wlm.web.login import LOGIN_ROUTES
from wlm.web.models import MODELS_ROUTES
from wlm.web.playground import PLAYGROUND_ROUTES
from wlm.web.requests import REQUESTS_ROUTES
from wlm.web.settings_page import SETTINGS_ROUTES

__all__ = ["STATIC_DIR", "TEMPLATES_DIR", "WEB_DIR", "template_config", "web_routes"]

WEB_DIR = shipped_dir("web")
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


def web_routes(signer: SessionSigner) -> list[Any]:
    """The pages (behind login when ``WLM_ADMIN_KEY`` is set) and ``/static``.

    ``signer`` signs the session cookies: the gateway's (``gateway.sessions``), so the
    proxy accepts the playground's requests from the same sessions. There is no default:
    a signer of its own would make every playground request a 401.
    """
    state = WebState(load_named_queries(), signer)
    pages = Router(
        path="/",
        route_handlers=[
            *LOGIN_ROUTES,
            *DASHBOARD_ROUTES,
            *MODELS_ROUTES,
            *ANALYTICS_ROUTES,
            *REQUESTS_ROUTES,
            *PLAYGROUND_ROUTES,
            *INSTANCES_ROUTES,
            *SETTINGS_ROUTES,
        ],
        before_request=before_request(state),
        middleware=[page_middleware],
        include_in_schema=False,
    )
    static = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        cache_control=CacheControlHeader(max_age=3600),
        include_in_schema=False,
    )
    return [pages, static]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja over ``web/templates`` with autoescaping on and undefined names an error."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(FILTERS)
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))
