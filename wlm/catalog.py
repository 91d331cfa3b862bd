"""The merged model list behind ``GET /v1/models``.

Each configured provider's models come from ``WLM_<PROVIDER>_MODELS`` or are
fetched from the provider and cached; a provider that fails to answer keeps its
last good list (or none) and never breaks the listing. Every listed id routes
back to the provider that listed it: bare when resolution sends the bare id
there, else ``<provider>/<id>``.

A peer's local models (``WLM_PEERS``) come from the peers' background poll, never
fetched here: each is listed as ``<peer>/<id>`` with its state on that box, and also
bare when no other box, this one included, has that id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import attrs

from wlm.config import LOCAL, PEER_PREFIX
from wlm.local.protocol import LocalModels
from wlm.providers.base import Adapter, ModelEntry
from wlm.providers.peer import PeerDirectory
from wlm.redaction import Redactor
from wlm.routing.resolve import PEER, Router

__all__ = ["ModelCatalog", "ProviderListing", "listed_id"]

log = logging.getLogger("wlm.catalog")


@attrs.frozen
class ProviderListing:
    provider: str
    models: tuple[ModelEntry, ...]
    fetched_at: float
    error: str | None = None


class ModelCatalog:
    """Cached per-provider model lists, merged on demand."""

    def __init__(
        self,
        adapters: Mapping[str, Adapter],
        router: Router,
        local: LocalModels | None,
        *,
        redactor: Redactor,
        cache_s: float,
        peers: PeerDirectory | None = None,
    ) -> None:
        # Local and peer models are listed from live state, never fetched here.
        self._adapters = {
            name: a
            for name, a in adapters.items()
            if name != LOCAL and not name.startswith(PEER_PREFIX)
        }
        self._peers = peers
        self._router = router
        self._local = local
        self._redactor = redactor
        self._cache_s = cache_s
        self._listings: dict[str, ProviderListing] = {}
        self._refreshing: asyncio.Task[None] | None = None

    def _stale(self, name: str) -> bool:
        listing = self._listings.get(name)
        return listing is None or time.monotonic() - listing.fetched_at > self._cache_s

    async def _fetch(self, name: str) -> None:
        adapter = self._adapters[name]
        configured = adapter.config.models
        if configured is not None:
            models = tuple(ModelEntry(model_id) for model_id in configured)
            self._listings[name] = ProviderListing(name, models, time.monotonic())
            return
        try:
            models = tuple(await adapter.list_models())
            self._listings[name] = ProviderListing(name, models, time.monotonic())
        except Exception as exc:
            reason = self._redactor.text(f"{type(exc).__name__}: {exc}")[:300]
            log.warning("could not list models of provider %s: %s", name, reason)
            previous = self._listings.get(name)
            models = previous.models if previous else ()
            self._listings[name] = ProviderListing(name, models, time.monotonic(), reason)

    async def refresh(self, *, only_stale: bool = True) -> None:
        names = [name for name in self._adapters if not only_stale or self._stale(name)]
        if names:
            await asyncio.gather(*(self._fetch(name) for name in names))

    def refresh_in_background(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self.refresh())

    async def close(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
            try:
                await self._refreshing
            except (asyncio.CancelledError, Exception):
                pass

    def listings(self) -> list[ProviderListing]:
        return list(self._listings.values())

    async def entries(self, *, wait: bool = True) -> list[dict[str, Any]]:
        """The merged list in OpenAI's model-object shape, plus ``provider``.

        Stale provider lists are refreshed; ``wait=False`` does not wait for them and
        merges the cached lists as they are (a page that shows the list on the side).
        """
        if any(self._stale(name) for name in self._adapters):
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.create_task(self.refresh())
            # Wait briefly for fresh lists; a slow provider is served from cache next time.
            if wait:
                await asyncio.wait({self._refreshing}, timeout=5.0)
        router = self._router
        out: list[dict[str, Any]] = []
        local = self._local
        if local is not None:
            for model in local.list_models():
                listed = listed_id(router, model.id, LOCAL)
                if model.broken_reason or listed is None:
                    continue
                out.append(
                    {
                        "id": listed,
                        "object": "model",
                        "created": 0,
                        "owned_by": LOCAL,
                        "provider": LOCAL,
                        "state": str(model.state),
                    }
                )
        out += self.peer_entries()
        for name in self._adapters:
            listing = self._listings.get(name)
            if listing is None:
                continue
            for entry in listing.models:
                listed = listed_id(router, entry.id, name)
                if listed is None:
                    continue
                out.append(
                    {
                        "id": listed,
                        "object": "model",
                        "created": entry.created,
                        "owned_by": name,
                        "provider": name,
                    }
                )
        return out

    def peer_entries(self) -> list[dict[str, Any]]:
        """Each peer's local models with their state there: ``<peer>/<id>``, and the bare
        id too when that box is the only one with it (and no route sends it elsewhere)."""
        peers = self._peers
        if not peers:
            return []
        out: list[dict[str, Any]] = []
        router = self._router
        for model in peers.models():
            entry = {
                "object": "model",
                "created": 0,
                "owned_by": model.provider,
                "provider": model.provider,
                "peer": model.peer,
                "state": model.state,
            }
            prefixed = f"{model.peer}/{model.id}"
            if router.routes_to(prefixed, model.provider):
                out.append({"id": prefixed, **entry})
            if peers.holders(model.id) == 1 and router.routes_to(model.id, PEER):
                out.append({"id": model.id, **entry})
        return out


def listed_id(router: Router, model_id: str, provider: str) -> str | None:
    """The id to list for ``provider``'s ``model_id``: as is, else prefixed; None when a
    ``WLM_ROUTES`` glob sends both forms elsewhere (listing it would route it wrongly)."""
    if router.routes_to(model_id, provider):
        return model_id
    prefixed = f"{provider}/{model_id}"
    return prefixed if router.routes_to(prefixed, provider) else None
