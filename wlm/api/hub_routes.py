"""The Hub under /api (admin-guarded): search, a repo's quantizations, and pulls.

GET    /api/hub/search?q=&limit=        GGUF repos, most downloaded first
GET    /api/hub/repos/{owner}/{repo}/files
                                        the repo's models by quantization, sizes, memory hint
POST   /api/models/pull                 {"model": "owner/repo:Q4_K_M"} (or repo, quant, file)
GET    /api/models/pulls                every pull kept, newest first, with progress
GET    /api/models/pulls/{id}           one pull
DELETE /api/models/pulls/{id}           cancel it (its partial files are deleted)
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.exceptions import HTTPException

from wlm.api.guards import admin_guard
from wlm.api.openai_routes import json_response
from wlm.errors import BadRequest, GatewayError
from wlm.gateway import Gateway
from wlm.hub import Pull, PullRef, RefError, parse_ref

__all__ = ["HUB_ROUTES"]

_MAX_LIMIT = 100


def _gateway(request: Request[Any, Any, Any]) -> Gateway:
    gateway: Gateway = request.app.state.gateway  # set once by create_app
    return gateway


def _view(gateway: Gateway, pull: Pull) -> dict[str, Any]:
    return pull.view(gateway.redactor.text)


def _ref(payload: Any) -> PullRef:
    """``{"model": "owner/repo:Q4_K_M"}``, or ``{"repo": ..., "quant": ...}`` / ``"file"``."""
    if not isinstance(payload, dict):
        raise BadRequest('Send a JSON object such as {"model": "owner/repo:Q4_K_M"}.')
    try:
        if isinstance(payload.get("model"), str):
            return parse_ref(payload["model"])
        repo = payload.get("repo")
        if not isinstance(repo, str):
            raise BadRequest(
                'Send {"model": "owner/repo:QUANT"} or {"repo": "owner/repo", "quant": "Q4_K_M"}.',
                param="model",
            )
        quant, file = payload.get("quant"), payload.get("file")
        if file:
            return parse_ref(f"{repo.strip('/')}/{str(file).lstrip('/')}")
        return parse_ref(f"{repo}:{quant}" if quant else repo)
    except RefError as exc:
        raise BadRequest(str(exc), param="model") from None


@get("/api/hub/search", guards=[admin_guard])
async def hub_search(request: Request[Any, Any, Any]) -> Response[Any]:
    """GGUF repos whose name contains ``q``, most downloaded first."""
    query = request.query_params.get("q", "")
    try:
        limit = int(request.query_params.get("limit", "20"))
    except ValueError:
        raise BadRequest("'limit' must be a whole number.", param="limit") from None
    if not 1 <= limit <= _MAX_LIMIT:
        raise BadRequest(f"'limit' must be between 1 and {_MAX_LIMIT}.", param="limit")
    hits = await _gateway(request).pulls.search(query, limit)
    return json_response({"query": query, "data": hits})


@get("/api/hub/repos/{path:path}", guards=[admin_guard])
async def hub_repo_files(request: Request[Any, Any, Any], path: str) -> Response[Any]:
    """``/api/hub/repos/{owner}/{repo}/files``: the repo's GGUF models by quantization."""
    repo = path.strip("/").removesuffix("/files")
    if not path.strip("/").endswith("/files") or repo.count("/") != 1:
        raise GatewayError(
            "No such endpoint: use /api/hub/repos/{owner}/{repo}/files.",
            status=404,
            type="invalid_request_error",
        )
    return json_response(await _gateway(request).pulls.files(repo))


@post("/api/models/pull", guards=[admin_guard], status_code=202)
async def models_pull(request: Request[Any, Any, Any]) -> Response[Any]:
    """Start pulling a model from the Hub; 202 with the pull (200: it was already running)."""
    try:
        payload = await request.json()
    except HTTPException:
        raise
    except Exception:
        raise BadRequest('Send a JSON object such as {"model": "owner/repo:Q4_K_M"}.') from None
    gateway = _gateway(request)
    pull, new = await gateway.pulls.start(_ref(payload))
    return json_response(_view(gateway, pull), status=202 if new else 200)


@get("/api/models/pulls", guards=[admin_guard])
async def models_pulls(request: Request[Any, Any, Any]) -> Response[Any]:
    gateway = _gateway(request)
    return json_response({"data": [_view(gateway, p) for p in gateway.pulls.all()]})


def _no_pull(pull_id: str) -> GatewayError:
    return GatewayError(
        f"No such pull: {pull_id} (GET /api/models/pulls lists them).",
        status=404,
        type="not_found_error",
    )


@get("/api/models/pulls/{pull_id:str}", guards=[admin_guard])
async def models_pull_one(request: Request[Any, Any, Any], pull_id: str) -> Response[Any]:
    gateway = _gateway(request)
    pull = gateway.pulls.get(pull_id)
    if pull is None:
        raise _no_pull(pull_id)
    return json_response(_view(gateway, pull))


@delete("/api/models/pulls/{pull_id:str}", guards=[admin_guard], status_code=200)
async def models_pull_cancel(request: Request[Any, Any, Any], pull_id: str) -> Response[Any]:
    """Cancel a pull: it stops, and its partial files are deleted."""
    gateway = _gateway(request)
    pull = await gateway.pulls.cancel(pull_id)
    if pull is None:
        raise _no_pull(pull_id)
    return json_response(_view(gateway, pull))


HUB_ROUTES = [
    hub_search,
    hub_repo_files,
    models_pull,
    models_pulls,
    models_pull_one,
    models_pull_cancel,
]
