"""Management API under /api: local models and instances, logs, SQL over telemetry."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
from litestar import Request, Response, delete, get, post
from litestar.exceptions import HTTPException
from litestar.response import Stream

from wlm.api.guards import admin_guard
from wlm.api.openai_routes import json_response
from wlm.errors import BadRequest, GatewayError, ModelNotFound
from wlm.gateway import Gateway
from wlm.local.protocol import LocalModels
from wlm.sse import encode_event

__all__ = ["MANAGEMENT_ROUTES"]


def _gateway(request: Request[Any, Any, Any]) -> Gateway:
    gateway: Gateway = request.app.state.gateway  # set once by create_app
    return gateway


def _local(request: Request[Any, Any, Any]) -> LocalModels:
    local = _gateway(request).local
    if local is None:
        raise GatewayError("Local models are disabled.", status=404, type="not_found_error")
    return local


def _plain(value: Any) -> Any:
    """attrs values (with enums and datetimes) as JSON-ready data."""
    if attrs.has(type(value)):
        return {k: _plain(v) for k, v in attrs.asdict(value, recurse=False).items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value") and not isinstance(value, int | float | str | bool):
        return value.value
    if hasattr(value, "__fspath__"):
        return str(value)
    if isinstance(value, set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, _JSON_READY):
        return value
    return str(value)  # what JSON has no shape for (a PostgreSQL range): its text


# Values the JSON encoder writes as they are.
_JSON_READY = (bool, int, float, str, bytes, decimal.Decimal, uuid.UUID, dt.timedelta)


def _known(local: LocalModels, model_id: str) -> str:
    """A usable model's id, or the id of an engine instance (one whose file was removed
    keeps its logs and can still be unloaded)."""
    model_id = model_id.lstrip("/")
    engines = {info.model_id for info in local.instances()}

    def known(candidate: str) -> bool:
        return local.has_model(candidate) or candidate in engines

    if model_id.startswith("local/") and not known(model_id):
        model_id = model_id[len("local/") :]
    if not known(model_id):
        raise ModelNotFound(model_id, "No such local model (GET /api/models lists them).")
    return model_id


def _discovered(local: LocalModels, model_id: str) -> str | None:
    """``model_id`` (or it without ``local/``) when it is a discovered model, broken or not."""
    found = local.routable_ids()
    if model_id not in found and model_id.startswith("local/"):
        model_id = model_id[len("local/") :]
    return model_id if model_id in found else None


async def _loadable(local: LocalModels, model_id: str) -> str:
    """The id to load; an id not yet known gets one rescan (maybe it was just copied in).

    A broken model is returned too, so that loading it answers 503 with the reason.
    """
    model_id = model_id.lstrip("/")
    found = _discovered(local, model_id)
    if found is None:
        await local.rescan()
        found = _discovered(local, model_id)
    if found is None:
        raise ModelNotFound(model_id, "No such local model (GET /api/models lists them).")
    return found


@get("/api/models", guards=[admin_guard])
async def api_models(request: Request[Any, Any, Any]) -> Response[Any]:
    """Local models with state and metadata, plus every provider's models."""
    gateway = _gateway(request)
    local = [_plain(m) for m in gateway.local.list_models()] if gateway.local else []
    providers = [e for e in await gateway.catalog.entries() if e["provider"] != "local"]
    listings = {
        listing.provider: {"error": listing.error, "count": len(listing.models)}
        for listing in gateway.catalog.listings()
    }
    return json_response({"local": local, "providers": providers, "provider_status": listings})


@post("/api/models/{path:path}", guards=[admin_guard], status_code=200)
async def api_model_action(request: Request[Any, Any, Any], path: str) -> Response[Any]:
    """``POST /api/models/rescan``, ``POST /api/models/{id}/load`` and
    ``POST /api/models/{id}/unload`` (ids may hold '/')."""
    local = _local(request)
    if path.strip("/") == "rescan":
        changes = await local.rescan()
        return json_response(
            {
                "added": list(changes.added),
                "removed": list(changes.removed),
                "local": [_plain(m) for m in local.list_models()],
            }
        )
    model_id, _, action = path.strip("/").rpartition("/")
    if action not in ("load", "unload"):
        raise GatewayError(
            f"No such action: {action!r}; use rescan, {{id}}/load or {{id}}/unload.",
            status=404,
            type="invalid_request_error",
        )
    if action == "load":
        model_id = await _loadable(local, model_id)
        await local.load(model_id)
        return json_response({"id": model_id, "state": "ready"})
    model_id = _known(local, model_id)
    await local.unload(model_id)
    return json_response({"id": model_id, "state": "stopped"})


@get("/api/instances", guards=[admin_guard])
async def api_instances(request: Request[Any, Any, Any]) -> Response[Any]:
    local = _gateway(request).local
    instances = [_plain(i) for i in local.instances()] if local else []
    return json_response({"data": instances})


@get("/api/instances/{path:path}", guards=[admin_guard])
async def api_instance_logs(request: Request[Any, Any, Any], path: str) -> Response[Any] | Stream:
    """``GET /api/instances/{id}/logs`` (the buffered tail) and ``.../logs/stream`` (live SSE)."""
    local = _local(request)
    path = path.strip("/")
    if path.endswith("/logs/stream"):
        model_id = _known(local, path.removesuffix("/logs/stream"))

        async def events() -> AsyncIterator[bytes]:
            async for line in local.follow_logs(model_id):
                yield encode_event(line, event="log")

        return Stream(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    if path.endswith("/logs"):
        model_id = _known(local, path.removesuffix("/logs"))
        return json_response({"id": model_id, "lines": list(local.logs(model_id))})
    raise GatewayError(
        f"No such endpoint: /api/instances/{path}.", status=404, type="invalid_request_error"
    )


@get("/api/queue", guards=[admin_guard])
async def api_queue(request: Request[Any, Any, Any]) -> Response[Any]:
    """The requests running on the local engines and waiting for them (running first,
    then by position)."""
    local = _gateway(request).local
    entries = [_plain(e) for e in local.queue()] if local else []
    return json_response({"data": entries})


@delete("/api/queue/{request_id:str}", guards=[admin_guard], status_code=200)
async def api_queue_cancel(request: Request[Any, Any, Any], request_id: str) -> Response[Any]:
    """Cancel a running or waiting local request: its client gets a clear error."""
    local = _local(request)
    entry = local.cancel_queued(request_id)
    if entry is None:
        raise GatewayError(
            f"No local request {request_id!r} is running or waiting (GET /api/queue lists them).",
            status=404,
            type="not_found_error",
            code="request_not_found",
        )
    return json_response({"cancelled": _plain(entry)})


@post("/api/sql", guards=[admin_guard], status_code=200)
async def api_sql(request: Request[Any, Any, Any]) -> Response[Any]:
    """Read-only SQL over the telemetry (what ``wlm sql`` uses while the server runs)."""
    gateway = _gateway(request)
    if gateway.telemetry is None:
        raise GatewayError("Telemetry is disabled.", status=404, type="not_found_error")
    try:
        payload = await request.json()
    except HTTPException:  # the body limit: Litestar's 413, passed on as such
        raise
    except Exception:
        raise BadRequest('Send a JSON object {"sql": "SELECT ..."}.') from None
    if not isinstance(payload, dict) or not isinstance(payload.get("sql"), str):
        raise BadRequest('Send a JSON object {"sql": "SELECT ..."}.', param="sql")
    import duckdb

    from wlm.telemetry.query import (
        ForbiddenQuery,
        QueryFailed,
        QueryTimeout,
        TelemetryUnavailable,
        run_user_sql,
    )

    max_rows = payload.get("max_rows", 10_000)
    if not isinstance(max_rows, int) or max_rows < 1:
        raise BadRequest("'max_rows' must be a positive integer.", param="max_rows")
    sql = payload["sql"]
    try:
        result = await gateway.telemetry.read(lambda cur: run_user_sql(cur, sql, max_rows=max_rows))
    except ForbiddenQuery as exc:
        raise GatewayError(
            str(exc), status=400, type="invalid_request_error", code="forbidden_query"
        ) from None
    except TelemetryUnavailable as exc:
        raise GatewayError(
            f"The telemetry store is not available: {exc}",
            status=503,
            type="service_unavailable",
            code="telemetry_unavailable",
        ) from None
    except QueryTimeout as exc:
        raise GatewayError(str(exc), status=408, type="timeout", code="query_timeout") from None
    except (duckdb.Error, QueryFailed) as exc:  # QueryFailed: PostgreSQL's refusal
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GatewayError(
            message, status=400, type="invalid_request_error", code="sql_error"
        ) from None
    return json_response(
        {
            "columns": list(result.columns),
            "rows": _plain(list(result.rows)),
            "truncated": result.truncated,
        }
    )


MANAGEMENT_ROUTES = [
    api_models,
    api_model_action,
    api_instances,
    api_instance_logs,
    api_queue,
    api_queue_cancel,
    api_sql,
]
