"""create_app(settings) -> Litestar: the one factory; the lifespan owns every resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException

from wlm.api.request_id import HEADER, RequestIdMiddleware, request_id_for
from wlm.config import Settings
from wlm.errors import GatewayError
from wlm.gateway import Gateway
from wlm.logs import configure_logging

__all__ = ["create_app", "serve_app"]

log = logging.getLogger("wlm")


def _error(
    request: Request[Any, Any, Any], status: int, message: str, type_: str, code: str | None
) -> Response[bytes]:
    body = GatewayError(message, status=status, type=type_, code=code).to_body()
    return Response(
        content=body,
        status_code=status,
        media_type="application/json",
        headers={HEADER: request_id_for(request)},
    )


def _not_found(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return _error(
        request,
        404,
        f"No such endpoint: {request.method} {request.url.path}.",
        "invalid_request_error",
        "not_found",
    )


def _not_allowed(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return _error(
        request,
        405,
        f"Method {request.method} is not allowed on {request.url.path}.",
        "invalid_request_error",
        "method_not_allowed",
    )


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    type_ = "invalid_request_error" if status < 500 else "server_error"
    return _error(request, status, str(exc.detail), type_, None)


def _gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
    gateway: Gateway = request.app.state.gateway
    message = gateway.redactor.text(exc.message)
    body = GatewayError(
        message, status=exc.status, type=exc.type, param=exc.param, code=exc.code
    ).to_body()
    headers = {HEADER: request_id_for(request), **exc.headers}
    return Response(
        content=body, status_code=exc.status, media_type="application/json", headers=headers
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    gateway: Gateway = request.app.state.gateway
    log.error("unexpected error on %s: %s", request.url.path, gateway.redactor.text(repr(exc)))
    return _error(
        request, 500, "The gateway failed to handle this request.", "server_error", "internal_error"
    )


def create_app(
    settings: Settings,
    *,
    local: Any = "default",
    telemetry: Any = "default",
) -> Litestar:
    """Build the app for ``settings``. ``local``/``telemetry`` may be given (or None) by tests."""
    configure_logging(settings)
    if local == "default":
        from wlm.local.manager import LocalManager

        local = LocalManager(settings)
    if telemetry == "default":
        from wlm.telemetry.writer import TelemetryWriter

        telemetry = TelemetryWriter(
            settings.telemetry_file,
            log_content=settings.log_content,
            retention_days=settings.retention_days,
            memory_limit=settings.telemetry_memory_limit,
        )
    gateway = Gateway(settings, local=local, telemetry=telemetry)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    from wlm.api.routes import all_routes
    from wlm.web import template_config, web_routes

    app = Litestar(
        route_handlers=[*all_routes(), *web_routes()],
        template_config=template_config(),
        lifespan=[lifespan],
        exception_handlers={
            NotFoundException: _not_found,
            MethodNotAllowedException: _not_allowed,
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        middleware=[RequestIdMiddleware],
        openapi_config=None,
        request_max_body_size=settings.max_body_bytes,  # one limit for /api and the pages too
        debug=False,
        logging_config=None,
    )
    app.state.gateway = gateway
    return app


def serve_app(app: Litestar) -> Any:
    """The ASGI callable Granian serves: POSTs to the proxied endpoints go straight to
    the proxy, everything else to ``app``.

    The proxy answers every outcome itself (errors included) and sends one message per
    stream event, so Litestar's router, middleware and per-route ``send`` wrapper would
    only add cost on the hot path (docs/performance.md has the figures). The same
    endpoints stay registered in ``app`` for any other way of serving it (and for paths
    Litestar normalises, such as a trailing slash).
    """
    from wlm.api.openai_routes import PROXIED_PATHS
    from wlm.api.proxy import proxy_endpoint

    gateway: Gateway = app.state.gateway

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = PROXIED_PATHS.get(scope["path"])
            if endpoint is not None:
                await proxy_endpoint(gateway, endpoint, scope, receive, send)
                return
        await app(scope, receive, send)

    asgi.app = app  # type: ignore[attr-defined]
    return asgi
