"""Model name -> Route, in the contract's order (first match wins):

1. an alias from ``WLM_ALIASES`` (applied once, then resolution goes on): an exact
   alias first, then aliases whose left side is a shell glob, in the order written;
2. a local model id; then a model id a peer box has (``WLM_PEERS``: the box chosen
   per request by :mod:`wlm.routing.peers`);
3. a ``WLM_ROUTES`` glob;
4. a ``provider/`` prefix naming a configured provider (``local/<id>`` too) or a
   peer (``box2/<id>``);
5. ``WLM_DEFAULT_PROVIDER``;
6. otherwise :class:`~wlm.errors.ModelNotFound`.

A route to a provider without a key raises :class:`~wlm.errors.ProviderNotConfigured`
naming the variable to set, never a call without credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase

from attrs import frozen

from wlm.config import LOCAL, PEER_PREFIX, ProviderConfig, Settings
from wlm.errors import ModelNotFound, ProviderNotConfigured
from wlm.routing.patterns import PatternTable
from wlm.routing.peers import PeerIndex

__all__ = ["LOCAL", "PEER", "Route", "Router"]

_MATCHED_MAX = 4096
# The provider of a bare id that peers have, before the box is chosen (never called).
PEER = "peer"
_NO_IDS: frozenset[str] = frozenset()


def _no_ids() -> frozenset[str]:
    return _NO_IDS


@frozen
class Route:
    """Where a model name leads: the provider, the model name upstream, and which rule matched."""

    provider: str
    upstream_model: str
    rule: str  # "local", "peer", "route", "prefix", "default"
    # A model on several peer boxes: the other boxes' providers, to fail over to in turn.
    also: tuple[str, ...] = ()


class Router:
    """Resolves model names for one Settings; ``local_ids`` is read on every call."""

    def __init__(
        self,
        settings: Settings,
        local_ids: Callable[[], frozenset[str]] = frozenset,
        peers: PeerIndex | None = None,
    ) -> None:
        # Exact aliases win; then aliases with a shell glob on the left, in the order written
        # (so that a client's own model names, e.g. claude-haiku-*, can go anywhere).
        self._aliases = PatternTable(settings.aliases)
        self._routes = settings.routes
        self._default = settings.default_provider
        self._providers: dict[str, ProviderConfig] = {p.name: p for p in settings.providers}
        self._local_ids = local_ids
        self._peers = peers
        self._peer_ids = peers.model_ids if peers is not None else _no_ids
        self._peer_names = peers.names if peers is not None else _NO_IDS
        self._peer_ids_for: frozenset[str] | None = None
        # Names already matched, while the local ids stay the same set (a rescan that
        # finds a change makes a new one): bounded, since clients may send any name.
        self._matched: dict[str, Route | None] = {}
        self._matched_for: frozenset[str] | None = None
        # Providers a route may name but that cannot be called (no key): checked per request.
        self._unconfigured = frozenset(p.name for p in settings.providers if not p.configured)

    def resolve(self, model: str) -> Route:
        """The route for ``model``; raises ModelNotFound or ProviderNotConfigured."""
        name = self.alias(model)
        route = self._match(name)
        if route is None:
            raise ModelNotFound(model, self._hint(name))
        if route.provider == PEER:
            assert self._peers is not None
            boxes = self._peers.order(name)
            if not boxes:  # the last box that had it dropped it since
                raise ModelNotFound(model, self._hint(name))
            return Route(boxes[0], name, "peer", boxes[1:])
        if route.provider in self._unconfigured:
            provider = self._providers[route.provider]
            if not provider.configured:
                raise ProviderNotConfigured(
                    f"Model '{model}' routes to provider '{provider.name}', which has no key: "
                    f"set {provider.key_variable} (or {provider.name.upper()}_NO_KEY=true "
                    "for a loopback/LAN server that needs none).",
                    param="model",
                )
        return route

    def routes_to(self, model: str, provider: str) -> bool:
        """Whether ``model`` as written resolves to ``provider`` (used to list ids)."""
        route = self._match(self.alias(model))
        return route is not None and route.provider == provider

    def alias(self, model: str) -> str:
        """``model`` after ``WLM_ALIASES`` (applied once): exact first, then globs in order."""
        target = self._aliases.get(model)
        return model if target is None else target

    def _match(self, name: str) -> Route | None:
        local_ids = self._local_ids()
        peer_ids = self._peer_ids()
        matched = self._matched
        if (
            local_ids is not self._matched_for and local_ids != self._matched_for
        ) or peer_ids is not self._peer_ids_for:
            matched.clear()
            self._matched_for = local_ids
            self._peer_ids_for = peer_ids
        elif name in matched:
            return matched[name]
        route = self._find(name, local_ids, peer_ids)
        if len(matched) >= _MATCHED_MAX:
            matched.clear()
        matched[name] = route
        return route

    def _find(self, name: str, local_ids: frozenset[str], peer_ids: frozenset[str]) -> Route | None:
        if name in local_ids:
            return Route(LOCAL, name, "local")
        if name in peer_ids:
            return Route(PEER, name, "peer")
        for pattern in self._routes:
            if fnmatchcase(name, pattern.pattern):
                return Route(pattern.provider, name, "route")
        prefix, slash, rest = name.partition("/")
        if slash and rest:
            if prefix == LOCAL and rest in local_ids:
                return Route(LOCAL, rest, "prefix")
            if prefix in self._peer_names:
                return Route(f"{PEER_PREFIX}{prefix}", rest, "prefix")
            provider = self._providers.get(prefix)
            if provider is not None and provider.configured:
                return Route(prefix, rest, "prefix")
        if self._default is not None:
            return Route(self._default, name, "default")
        return None

    def _hint(self, name: str) -> str:
        prefix, slash, _ = name.partition("/")
        provider = self._providers.get(prefix) if slash else None
        if provider is not None and not provider.configured:
            return f"Provider '{prefix}' is not configured: set {provider.key_variable}."
        if prefix == LOCAL and slash:
            return "No such local model (see GET /v1/models)."
        return "Name a configured provider as a prefix (e.g. 'openai/...'), or set WLM_ROUTES or WLM_DEFAULT_PROVIDER."
