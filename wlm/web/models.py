"""``/models``: local GGUFs with state and metadata and every provider's models.

Filtering by provider and name swaps only the table (``?fragment=table``). Load and
unload post to ``/models/load`` and ``/models/unload``, which start the change in the
background and answer at once with the model's row in its new state ("starting",
"stopping"); a row in motion polls ``/models/row`` every second until it settles, so
the page shows progress and the outcome without a reload or a request held open for
the whole load. The page also finds and downloads models from the Hugging Face Hub
(:mod:`wlm.web.hub`).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from wlm.routing.resolve import LOCAL
from wlm.web.access import gateway_of, web_of
from wlm.web.hub import HUB_PAGE_ROUTES, pulls_view
from wlm.web.render import fragment, page, plain

__all__ = ["MODELS_ROUTES"]

_MOVING = ("starting", "stopping")
_SETTLE_WAIT_S = 5.0


def _local_rows(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    local = gateway_of(request).local
    if local is None:
        return []
    errors = {info.model_id: info.last_error for info in local.instances()}
    rows = []
    for model in local.list_models():
        row = plain(model)
        row["provider"] = LOCAL
        row["projector"] = model.projector.name if model.projector else None
        row["last_error"] = errors.get(model.id) if str(model.state) == "failed" else None
        rows.append(row)
    return rows


def _local_row(request: Request[Any, Any, Any], model_id: str) -> dict[str, Any] | None:
    return next((r for r in _local_rows(request) if r["id"] == model_id), None)


def _matches(row: dict[str, Any], provider: str, query: str) -> bool:
    return (not provider or row["provider"] == provider) and query in row["id"].lower()


@get(["/models", "/models.json"])
async def models_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """Every model, filterable with ``?provider=`` and ``?q=`` (a part of the name)."""
    gateway = gateway_of(request)
    provider = request.query_params.get("provider", "").strip()
    query = request.query_params.get("q", "").strip()
    rows = _local_rows(request)
    rows += [
        {"provider": e["provider"], "id": e["id"], "state": e.get("state"), "peer": e.get("peer")}
        for e in await gateway.catalog.entries()
        if e["provider"] != LOCAL
    ]
    shown = [row for row in rows if _matches(row, provider, query.lower())]
    choices = ([LOCAL] if gateway.local is not None else []) + [
        name for name in gateway.adapters if name != LOCAL
    ]
    listings = [
        {"provider": listing.provider, "count": len(listing.models), "error": listing.error}
        for listing in sorted(gateway.catalog.listings(), key=lambda listing: listing.provider)
    ]
    context = {
        "filter": {"provider": provider, "q": query},
        "providers": choices,
        "models": shown,
        "total": len(rows),
        "listings": listings,
        # Downloads from the Hugging Face Hub (wlm/web/hub.py serves their fragments).
        **pulls_view(gateway),
        "pull_error": None,
    }
    return page(
        request,
        "models.html",
        context,
        active="/models",
        fragments={"models-table": "_models_table.html"},
    )


def _not_found(request: Request[Any, Any, Any], model_id: str) -> Response[Any]:
    return fragment(
        request,
        "_model_missing.html",
        {"id": model_id, "error": "No such local model."},
        status=404,
    )


@get(["/models/row", "/models/row.json"])
async def model_row(request: Request[Any, Any, Any]) -> Response[Any]:
    """One local model's row (what a row in motion polls)."""
    model_id = request.query_params.get("id", "")
    row = _local_row(request, model_id)
    if row is None:
        return _not_found(request, model_id)
    return fragment(request, "_model_row.html", {"m": row})


async def _change(request: Request[Any, Any, Any], action: str) -> Response[Any]:
    local = gateway_of(request).local
    model_id = str((await request.form()).get("id") or "")
    if local is None or _local_row(request, model_id) is None:
        return _not_found(request, model_id)
    if action == "load":
        work = local.load(model_id)
        # "ready" too: a model already loaded answers at once.
        settled: tuple[str, ...] = ("starting", "ready", "failed")
    else:
        work = local.unload(model_id)
        settled = ("stopping", "stopped", "failed")
    web_of(request).spawn(work, f"{action} {model_id}")
    try:
        # The row shows the state the change reached, not the one before it.
        await local.wait_for_state(model_id, *settled, timeout=_SETTLE_WAIT_S)
    except TimeoutError:
        pass
    return fragment(request, "_model_row.html", {"m": _local_row(request, model_id)})


@post("/models/load", status_code=200)
async def model_load(request: Request[Any, Any, Any]) -> Response[Any]:
    """Start loading a local model (form field ``id``); answers with its row."""
    return await _change(request, "load")


@post("/models/unload", status_code=200)
async def model_unload(request: Request[Any, Any, Any]) -> Response[Any]:
    """Stop a local model's engine (form field ``id``); answers with its row."""
    return await _change(request, "unload")


MODELS_ROUTES = [models_page, model_row, model_load, model_unload, *HUB_PAGE_ROUTES]
