"""Peers: other wlm servers (``WLM_PEERS``) whose local models this one lists and serves.

A peer is a wlm, so it speaks every dialect wlm serves: a request goes to the same
path on the peer as it came (``/v1/chat/completions``, ``/v1/messages``,
``/v1/responses``, ``/v1/completions``, ``/v1/embeddings``), with only ``model``
rewritten for a ``box2/<id>`` name, and its stream is relayed event by event as it
arrives. :class:`PeerAdapter` is one peer's adapter (provider ``peer:<name>``).

:class:`PeerDirectory` owns the peers: it reads each peer's ``GET /v1/models`` in
the background every ``WLM_PEER_POLL_S`` (its local models and their states), with a
short timeout, so no request ever waits on a peer's listing; it counts the requests
in flight to each box, and ranks the boxes that have a model for the router
(:mod:`wlm.routing.peers` decides). A peer that does not answer is marked down (and
its tries count towards its cooldown); the first poll it answers again brings it
back, its cooldowns cleared.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import attrs

from wlm.config import LOCAL, PeerConfig, ProviderConfig
from wlm.errors import GatewayError, UpstreamTimeout, UpstreamUnreachable
from wlm.providers.accounting import ResponseAccount
from wlm.providers.anthropic import MessagesPassthroughRelay
from wlm.providers.base import Call, ModelEntry, Progress, StreamRelay, answer_object
from wlm.providers.openai_compat import OpenAICompatAdapter, openai_error, rewrite_model
from wlm.redaction import Redactor
from wlm.resilience.cooldowns import Cooldowns
from wlm.routing.peers import Candidate, rank
from wlm.translate import anthropic_error_to_openai, from_anthropic_response
from wlm.transport import (
    HeldResponse,
    Transport,
    TransportFactory,
    UpstreamRequest,
    UpstreamResponse,
    read_json,
)

__all__ = ["UNREACHABLE", "PeerAdapter", "PeerDirectory", "PeerModel", "peer_provider_config"]

log = logging.getLogger("wlm.peers")

# The state listed for the models of a peer whose last poll failed.
UNREACHABLE = "unreachable"
# A peer's listing is small and on the LAN: a box that does not answer in this long is down.
LIST_TIMEOUT_S = 3.0
CONNECT_TIMEOUT_S = 3.0
_MESSAGES = ("messages", "messages/count_tokens")


def peer_provider_config(peer: PeerConfig, read_timeout_s: float = 600.0) -> ProviderConfig:
    """The provider a peer is: every dialect native, its key sent as a client key."""
    return ProviderConfig(
        name=peer.provider,
        kind="peer",
        base_url=f"{peer.base_url}/v1",
        api_key=peer.key,
        keyless=True,
        connect_timeout_s=CONNECT_TIMEOUT_S,
        read_timeout_s=read_timeout_s,
        dialects=("chat", "messages", "responses"),
        keeps_responses=True,  # the peer keeps the responses it answered
    )


@attrs.frozen
class PeerModel:
    """One local model of one peer, as last polled."""

    peer: str
    provider: str  # peer:<name>
    id: str
    state: str  # the peer's own state for it, or "unreachable"


@attrs.define
class _Peer:
    config: PeerConfig
    adapter: PeerAdapter
    models: dict[str, str] = attrs.Factory(dict)  # id -> state on that box
    up: bool | None = None  # None: not polled yet
    error: str | None = None
    polled_at: float | None = None
    in_flight: int = 0

    def done(self) -> None:
        """A request to this peer is over (its response closed or released)."""
        self.in_flight -= 1


class PeerAdapter:
    """One peer: the client's request, sent natively to the same path on that wlm."""

    def __init__(self, config: ProviderConfig, transport: Transport) -> None:
        self._config = config
        self._openai = OpenAICompatAdapter(config, transport)
        self.transport = transport
        self._list_headers = {"accept-encoding": "gzip, deflate"}
        if config.api_key:
            self._list_headers["authorization"] = f"Bearer {config.api_key}"
        self._peer: _Peer | None = None  # set by the directory

    @property
    def config(self) -> ProviderConfig:
        return self._config

    async def open(self, call: Call, progress: Progress) -> UpstreamResponse:
        request = self._openai.prepare(call, self._config.base_url)
        peer = self._peer
        if peer is None:
            return await self.transport.send(request)
        peer.in_flight += 1
        try:
            response = await self.transport.send(request)
        except BaseException as error:
            peer.in_flight -= 1
            if isinstance(error, UpstreamUnreachable | UpstreamTimeout):
                peer.up = False  # ranked last until a poll reaches it again
                peer.error = str(error)
            raise
        return HeldResponse(response, peer.done)

    def relay(self, call: Call, account: ResponseAccount) -> StreamRelay:
        if call.endpoint == "messages":
            return MessagesPassthroughRelay(call, account)
        return self._openai.relay(call, account)

    def finish_response(self, call: Call, body: bytes, account: ResponseAccount) -> bytes:
        if call.endpoint not in _MESSAGES:
            return self._openai.finish_response(call, body, account)
        parsed = answer_object(body, f"Peer '{self._config.name}'")
        if call.endpoint == "messages/count_tokens":
            return body
        account.add_response(
            from_anthropic_response(parsed, model=call.model, created=int(time.time()))
        )
        model = parsed.get("model")
        account.upstream_model = model if isinstance(model, str) else None
        if model not in (call.model, None):
            return rewrite_model(body, call.model)
        return body

    def upstream_error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        # A peer answers a Messages request's error in Anthropic's shape.
        if body.lstrip().startswith(b'{"type":"error"') or b'"type": "error"' in body[:40]:
            return anthropic_error_to_openai(status, body, retry_after)
        return openai_error(self._config.name, status, body, retry_after)

    async def list_models(self) -> list[ModelEntry]:
        """The peer's own local models (never what it lists of its providers or peers,
        so two boxes that peer each other do not list each other's models back)."""
        request = UpstreamRequest(
            "GET",
            f"{self._config.base_url}/models",
            self._list_headers,
            timeout_s=LIST_TIMEOUT_S,
        )
        page = await read_json(self.transport, request)
        data: Any = (page.get("data") if isinstance(page, dict) else None) or []
        entries = []
        for item in data:
            if (
                isinstance(item, dict)
                and isinstance(item.get("id"), str)
                and item.get("provider") == LOCAL
            ):
                state = item.get("state")
                extra = {"state": state if isinstance(state, str) else "stopped"}
                entries.append(ModelEntry(item["id"], 0, extra))
        return entries

    async def count_tokens(self, call: Call, progress: Progress) -> int | None:
        return None  # messages/count_tokens goes to the peer as it came

    async def stored_response(self, response_id: str) -> bytes | None:
        return await self._openai.stored_response(response_id)

    async def close(self) -> None:
        await self.transport.close()


class PeerDirectory:
    """Every peer: its adapter, its last listing, and what is in flight to it."""

    def __init__(
        self,
        peers: Iterable[PeerConfig],
        transports: TransportFactory,
        *,
        poll_s: float,
        redactor: Redactor,
    ) -> None:
        self._peers: dict[str, _Peer] = {}
        for peer in peers:
            config = peer_provider_config(peer)
            adapter = PeerAdapter(
                config,
                transports(
                    config.name,
                    connect_timeout_s=config.connect_timeout_s,
                    read_timeout_s=config.read_timeout_s,
                ),
            )
            state = _Peer(peer, adapter)
            adapter._peer = state
            self._peers[peer.provider] = state
        self.names = frozenset(p.config.name for p in self._peers.values())
        self._poll_s = poll_s
        self._redactor = redactor
        self._ids: frozenset[str] = frozenset()
        self._cooldowns: Cooldowns | None = None
        self._task: asyncio.Task[None] | None = None
        self.polled = asyncio.Event() if self._peers else None

    def __bool__(self) -> bool:
        return bool(self._peers)

    @property
    def adapters(self) -> dict[str, PeerAdapter]:
        """Provider name (``peer:<name>``) -> adapter."""
        return {provider: peer.adapter for provider, peer in self._peers.items()}

    def watch(self, cooldowns: Cooldowns) -> None:
        """Rank cooling boxes last, and clear a box's cooldowns when it answers again."""
        self._cooldowns = cooldowns

    # -- the router's view (wlm.routing.peers.PeerIndex) -------------------------------

    def model_ids(self) -> frozenset[str]:
        return self._ids

    def order(self, model_id: str) -> tuple[str, ...]:
        cooldowns = self._cooldowns
        candidates = [
            Candidate(
                peer=provider,
                state=peer.models[model_id],
                up=peer.up is not False,
                cooling=cooldowns is not None
                and not cooldowns.quiet
                and not cooldowns.would_admit((provider, model_id)),
                in_flight=peer.in_flight,
            )
            for provider, peer in self._peers.items()
            if model_id in peer.models
        ]
        return rank(candidates)

    # -- the catalog's and pages' view --------------------------------------------------

    def models(self) -> list[PeerModel]:
        """Every peer's local models, in the order of WLM_PEERS, with their state there."""
        return [
            PeerModel(
                peer.config.name,
                provider,
                model_id,
                state if peer.up is not False else UNREACHABLE,
            )
            for provider, peer in self._peers.items()
            for model_id, state in peer.models.items()
        ]

    def holders(self, model_id: str) -> int:
        """How many peers list ``model_id``."""
        return sum(1 for peer in self._peers.values() if model_id in peer.models)

    def status(self) -> list[dict[str, Any]]:
        """Each peer for pages and the API: where, whether up, its models, in flight."""
        return [
            {
                "name": peer.config.name,
                "provider": provider,
                "url": peer.config.base_url,
                "up": peer.up,
                "error": peer.error,
                "models": len(peer.models),
                "in_flight": peer.in_flight,
            }
            for provider, peer in self._peers.items()
        ]

    # -- polling ------------------------------------------------------------------------

    async def poll(self) -> None:
        """Read every peer's listing once (all at once, each bounded by its timeout)."""
        if self._peers:
            await asyncio.gather(*(self._poll_one(p) for p in self._peers.values()))
            ids = frozenset(m for peer in self._peers.values() for m in peer.models)
            if ids != self._ids:
                self._ids = ids  # a new object: the router drops what it matched
            if self.polled is not None:
                self.polled.set()

    async def _poll_one(self, peer: _Peer) -> None:
        provider = peer.config.provider
        try:
            entries = await peer.adapter.list_models()
        except (TimeoutError, GatewayError, OSError) as exc:
            if peer.up is not False:
                reason = self._redactor.text(f"{type(exc).__name__}: {exc}")[:300]
                log.warning(
                    "peer %s (%s) is down: %s", peer.config.name, peer.config.base_url, reason
                )
            peer.up = False
            peer.error = self._redactor.text(str(exc))[:300]
            peer.polled_at = time.monotonic()
            return  # its last listing stays: the box may come back with the same models
        if peer.up is False:
            log.info("peer %s (%s) answers again", peer.config.name, peer.config.base_url)
            self._clear_cooldowns(provider)
        peer.up = True
        peer.error = None
        peer.polled_at = time.monotonic()
        peer.models = {e.id: str((e.extra or {}).get("state", "stopped")) for e in entries}

    def _clear_cooldowns(self, provider: str) -> None:
        cooldowns = self._cooldowns
        if cooldowns is None or cooldowns.quiet:
            return
        for state in cooldowns.snapshot():
            if state.provider == provider:
                cooldowns.succeeded((provider, state.model))

    async def _follow(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # never let the poller die: the next round tries again
                log.exception("polling peers failed")
            await asyncio.sleep(self._poll_s)

    def start(self) -> None:
        if self._peers and self._task is None:
            self._task = asyncio.create_task(self._follow(), name="wlm-peers")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        # The adapters are the gateway's, which closes them with the others.
