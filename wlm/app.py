"""create_app(settings) -> Litestar: the one factory; the lifespan owns every resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException

from wlm.api.openai_routes import PROXIED_PATHS
from wlm.api.proxy import Receive, Scope, Send, proxy_endpoint
from wlm.api.request_id import HEADER, RequestIdMiddleware, request_id_for
from wlm.api.routes import all_routes
from wlm.config import Settings
from wlm.errors import Failure, GatewayError, render_error
from wlm.gateway import Gateway
from wlm.local.manager import LocalManager
from wlm.local.protocol import LocalModels
from wlm.logs import configure_logging
from wlm.redaction import Redactor
from wlm.telemetry.otlp import OtlpSink, OtlpSpans
from wlm.telemetry.sink import TelemetrySink
from wlm.telemetry.writer import TelemetryWriter
from wlm.transport import PooledTransport, TransportFactory
from wlm.web import template_config, web_routes

__all__ = ["create_app", "error_response", "serve_app"]

log = logging.getLogger("wlm")


def error_response(
    request: Request[Any, Any, Any], error: GatewayError, *, redact: bool = True
) -> Response[bytes]:
    """Any error raised outside the proxy, as the client's error body."""
    gateway: Gateway = request.app.state.gateway
    failure = Failure.of(error, gateway.redactor.text if redact else str)
    return Response(
        content=render_error(failure),
        status_code=failure.status,
        media_type="application/json",
        headers={HEADER: request_id_for(request), **dict(failure.headers)},
    )


def _not_found(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return error_response(
        request,
        GatewayError(
            f"No such endpoint: {request.method} {request.url.path}.",
            status=404,
            type="invalid_request_error",
            code="not_found",
        ),
    )


def _not_allowed(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return error_response(
        request,
        GatewayError(
            f"Method {request.method} is not allowed on {request.url.path}.",
            status=405,
            type="invalid_request_error",
            code="method_not_allowed",
        ),
    )


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    type_ = "invalid_request_error" if status < 500 else "server_error"
    return error_response(request, GatewayError(str(exc.detail), status=status, type=type_))


def _gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
    return error_response(request, exc)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    gateway: Gateway = request.app.state.gateway
    log.error("unexpected error on %s: %s", request.url.path, gateway.redactor.text(repr(exc)))
    return error_response(
        request,
        GatewayError(
            "The gateway failed to handle this request.",
            status=500,
            type="server_error",
            code="internal_error",
        ),
    )


def create_app(
    settings: Settings,
    *,
    local: LocalModels | Literal["default"] | None = "default",
    telemetry: TelemetrySink | Literal["default"] | None = "default",
    transports: TransportFactory = PooledTransport,
) -> Litestar:
    """Build the app for ``settings``. Tests may pass ``local``/``telemetry`` (or None)
    and ``transports`` (a MockTransport's factory) instead of the real parts."""
    configure_logging(settings)
    if local == "default":
        local = LocalManager(settings)
    if telemetry == "default":
        telemetry = TelemetryWriter.for_settings(settings)  # DuckDB file or PostgreSQL
    if telemetry is not None and settings.otlp is not None:
        # OpenTelemetry out: each request's records also become a span (docs/opentelemetry.md).
        telemetry = OtlpSink(telemetry, OtlpSpans(settings.otlp, Redactor(settings.secrets())))
    gateway = Gateway(settings, local=local, telemetry=telemetry, transports=transports)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = Litestar(
        route_handlers=[*all_routes(), *web_routes(gateway.sessions)],
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
    gateway: Gateway = app.state.gateway

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = PROXIED_PATHS.get(scope["path"])
            if endpoint is not None:
                await proxy_endpoint(gateway, endpoint, scope, receive, send)
                return
        await app(scope, receive, send)  # type: ignore[arg-type]  # Litestar's TypedDicts

    asgi.app = app  # type: ignore[attr-defined]
    return asgi
