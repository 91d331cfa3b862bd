"""The OpenAI-compatible HTTP surface: proxied POSTs, model listing, health."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.handlers import asgi
from litestar.handlers.asgi_handlers import ASGIRouteHandler

from wlm.api.guards import client_guard
from wlm.api.proxy import Receive, Scope, Send, proxy_endpoint
from wlm.auth import presented_key
from wlm.dialects import PROXIED_ENDPOINTS
from wlm.errors import Failure, GatewayError, ModelNotFound, render_error
from wlm.gateway import Gateway

__all__ = ["PROXIED_PATHS", "ROUTES", "json_response"]

_PREFIXES = ("/v1", "/api/v1")
_ENDPOINTS = tuple(PROXIED_ENDPOINTS)
# The other paths llama-server answers rerank on, so a client pointed at one works here.
_ALIASES = {"rerank": ("/rerank", "/reranking", "/v1/reranking", "/api/v1/reranking")}


def _paths(endpoint: str) -> list[str]:
    return [f"{p}/{endpoint}" for p in _PREFIXES] + list(_ALIASES.get(endpoint, ()))


# Path -> proxied endpoint, for the server-level dispatch in wlm.app.serve_app.
PROXIED_PATHS = {path: endpoint for endpoint in _ENDPOINTS for path in _paths(endpoint)}


def json_response(content: Any, status: int = 200) -> Response[Any]:
    return Response(content=content, status_code=status, media_type="application/json")


def _echo(request: Request[Any, Any, Any], text: str) -> str:
    """``text`` fit to quote back: no configured secret, nor the key this client
    presented (it may be configured only as a sha256 hash, unknown to the redactor)."""
    gateway: Gateway = request.app.state.gateway
    return gateway.redactor.with_secret(presented_key(request.scope["headers"])).text(text)


def _client_request_id(scope: Scope) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == b"x-request-id" and v), None)


def _proxied(endpoint: str) -> ASGIRouteHandler:
    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        gateway: Gateway = scope["litestar_app"].state.gateway
        if scope["method"] != "POST":
            error = GatewayError(
                f"Method {scope['method']} is not allowed on /v1/{endpoint}; use POST.",
                status=405,
                type="invalid_request_error",
                code="method_not_allowed",
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 405,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"allow", b"POST"),
                        (
                            b"x-request-id",
                            _client_request_id(scope) or gateway.new_request_id().encode(),
                        ),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": render_error(Failure.of(error, str))})
            return
        await proxy_endpoint(gateway, endpoint, scope, receive, send)

    handler.__name__ = f"proxy_{endpoint.replace('/', '_')}"
    return asgi(path=_paths(endpoint), copy_scope=False)(handler)


@get([f"{p}/models" for p in _PREFIXES], guards=[client_guard])
async def list_models(request: Request[Any, Any, Any]) -> Response[Any]:
    gateway: Gateway = request.app.state.gateway
    return json_response({"object": "list", "data": await gateway.catalog.entries()})


@get([f"{p}/models/{{model_id:path}}" for p in _PREFIXES], guards=[client_guard])
async def get_model(request: Request[Any, Any, Any], model_id: str) -> Response[Any]:
    gateway: Gateway = request.app.state.gateway
    wanted = model_id.lstrip("/")
    for entry in await gateway.catalog.entries():
        if entry["id"] == wanted:
            return json_response(entry)
    raise ModelNotFound(_echo(request, wanted))


@get([f"{p}/responses/{{response_id:str}}" for p in _PREFIXES], guards=[client_guard])
async def get_response(request: Request[Any, Any, Any], response_id: str) -> Response[Any]:
    """A response wlm answered by translation (not sent with ``store: false``), else one a
    provider that serves Responses natively keeps (OpenAI)."""
    gateway: Gateway = request.app.state.gateway
    stored = gateway.responses.get(response_id)
    if stored is not None:
        return json_response(stored.response)
    for adapter in gateway.adapters.values():
        try:
            kept = await adapter.stored_response(response_id)
        except GatewayError:
            continue  # that provider is down: another may have it
        if kept is not None:
            return Response(content=kept, media_type="application/json")
    raise GatewayError(
        f"No response '{_echo(request, response_id)}' is known to wlm.",
        status=404,
        type="invalid_request_error",
        param="response_id",
        code="not_found",
    )


@get("/health")
async def health(request: Request[Any, Any, Any]) -> Response[Any]:
    gateway: Gateway = request.app.state.gateway
    body: dict[str, Any] = {"status": "ok"}
    telemetry = gateway.telemetry
    if telemetry is not None:
        stats = telemetry.stats()
        body["telemetry"] = {
            "healthy": stats.healthy,
            "queued": stats.queued,
            "written": stats.written,
            "dropped": stats.dropped,
            "last_error": None if stats.healthy else stats.last_error,
            "spooled_bytes": stats.spooled_bytes,  # waiting on disk for PostgreSQL
            "spool_full": stats.spool_full,  # and rows dropped because it filled up
        }
        if not stats.healthy or stats.dropped or stats.spooled_bytes or stats.spool_full:
            body["status"] = "degraded"
            body["degraded"] = ["telemetry"]
    if gateway.local is not None:
        body["local"] = {
            "models": len(gateway.local.model_ids()),
            "instances": sum(1 for i in gateway.local.instances() if i.state == "ready"),
        }
    return json_response(body)


ROUTES = [
    *(_proxied(endpoint) for endpoint in _ENDPOINTS),
    list_models,
    get_model,
    get_response,
    health,
]
