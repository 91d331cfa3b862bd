"""The Models page's Hugging Face part: search, a repo's quantizations, downloads.

Fragments for htmx, all under ``/models/hub/``: ``search?q=`` (GGUF repos, most
downloaded first), ``files?repo=`` (the repo's models by quantization with sizes and
whether they fit in this machine's memory), ``pull`` (POST repo and quant: starts a
download), ``pulls`` (the downloads with live progress, polled every second while one
runs) and ``cancel`` (POST id). When a download the page was watching finishes, the
``pulls`` answer carries ``HX-Trigger: wlm-models-changed`` and the models table reloads,
so the new model shows with its Load button without a page reload.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from wlm.errors import GatewayError
from wlm.gateway import Gateway
from wlm.hub import RefError, parse_ref
from wlm.hub.pulls import ACTIVE
from wlm.web.access import gateway_of
from wlm.web.render import fragment

__all__ = ["HUB_PAGE_ROUTES", "pulls_view"]

MODELS_CHANGED = "wlm-models-changed"


def pulls_view(gateway: Gateway) -> dict[str, Any]:
    """The downloads as the page shows them (errors redacted, newest first)."""
    pulls = [pull.view(gateway.redactor.text) for pull in gateway.pulls.all()]
    return {"pulls": pulls, "active_ids": [p["id"] for p in pulls if p["state"] in ACTIVE]}


def _pulls_fragment(
    request: Request[Any, Any, Any], error: str | None = None, changed: bool = False
) -> Response[Any]:
    gateway = gateway_of(request)
    response = fragment(request, "_hub_pulls.html", {**pulls_view(gateway), "pull_error": error})
    if changed:
        response.headers["hx-trigger"] = MODELS_CHANGED
    return response


@get(["/models/hub/search", "/models/hub/search.json"])
async def hub_search_fragment(request: Request[Any, Any, Any]) -> Response[Any]:
    """GGUF repos on the Hub whose id contains ``q``."""
    gateway = gateway_of(request)
    query = request.query_params.get("q", "").strip()
    results: list[dict[str, Any]] = []
    error = None
    try:
        results = await gateway.pulls.search(query, 20)
    except GatewayError as exc:
        error = gateway.redactor.text(exc.message)
    context = {"query": query, "results": results, "error": error}
    return fragment(request, "_hub_results.html", context)


@get(["/models/hub/files", "/models/hub/files.json"])
async def hub_files_fragment(request: Request[Any, Any, Any]) -> Response[Any]:
    """One repo's models by quantization, sizes and the memory hint."""
    gateway = gateway_of(request)
    repo = request.query_params.get("repo", "").strip()
    listing: dict[str, Any] | None = None
    error = None
    try:
        listing = await gateway.pulls.files(repo)
    except GatewayError as exc:
        error = gateway.redactor.text(exc.message)
    return fragment(request, "_hub_files.html", {"repo": repo, "listing": listing, "error": error})


@post("/models/hub/pull", status_code=200)
async def hub_pull(request: Request[Any, Any, Any]) -> Response[Any]:
    """Start a download (form fields ``repo`` and ``quant``); answers with the downloads."""
    gateway = gateway_of(request)
    form = await request.form()
    repo, quant = str(form.get("repo") or ""), str(form.get("quant") or "")
    try:
        await gateway.pulls.start(parse_ref(f"{repo}:{quant}" if quant else repo))
    except RefError as exc:
        return _pulls_fragment(request, str(exc))
    except GatewayError as exc:
        return _pulls_fragment(request, gateway.redactor.text(exc.message))
    return _pulls_fragment(request)


@get(["/models/hub/pulls", "/models/hub/pulls.json"])
async def hub_pulls(request: Request[Any, Any, Any]) -> Response[Any]:
    """The downloads; ``?active=<ids>``: the ones the page saw running (any now done
    makes the answer trigger a reload of the models table)."""
    watched = {i for i in request.query_params.get("active", "").split(",") if i}
    pulls = gateway_of(request).pulls
    changed = any((pull := pulls.get(i)) is not None and pull.state == "done" for i in watched)
    return _pulls_fragment(request, changed=changed)


@post("/models/hub/cancel", status_code=200)
async def hub_cancel(request: Request[Any, Any, Any]) -> Response[Any]:
    """Cancel a download (form field ``id``); its partial files are deleted."""
    form = await request.form()
    await gateway_of(request).pulls.cancel(str(form.get("id") or ""))
    return _pulls_fragment(request)


HUB_PAGE_ROUTES = [hub_search_fragment, hub_files_fragment, hub_pull, hub_pulls, hub_cancel]
