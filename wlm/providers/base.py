"""The adapter seam: what every provider implements, and the values passed across it.

An adapter turns a client's OpenAI-shaped call into an upstream request, relays
the upstream's stream (or body) back in OpenAI shape, and maps upstream errors.
Adding another OpenAI-compatible provider is configuration, not a new adapter.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx
import msgspec
from attrs import frozen

from wlm.config import ProviderConfig
from wlm.errors import GatewayError
from wlm.providers.accounting import ResponseAccount
from wlm.providers.transport import Transport
from wlm.sse import SSEEvent

__all__ = [
    "Adapter",
    "Call",
    "ModelEntry",
    "Redactor",
    "StreamRelay",
    "UpstreamRequest",
    "decode_event_json",
    "error_event",
    "malformed_event",
]

# Client headers worth passing on (ASGI lowercases names); everything else (credentials, hop-by-hop, cookies) stays.
FORWARDED_HEADERS = frozenset(
    (b"anthropic-beta", b"openai-organization", b"openai-project", b"x-request-id")
)


@frozen
class Call:
    """One client call, after routing."""

    endpoint: str  # "chat/completions", "completions", "embeddings"
    body: dict[str, Any]
    raw: bytes
    model: str  # as the client asked
    upstream_model: str
    stream: bool
    client_wants_usage: bool
    forwarded_headers: tuple[tuple[str, str], ...] = ()
    base_url: str | None = None  # set for local instances
    request_id: str = ""


@frozen
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@frozen
class ModelEntry:
    """A model as a provider lists it; ``id`` is the provider's own id."""

    id: str
    created: int = 0
    extra: dict[str, Any] | None = None


class Redactor:
    """Replaces every configured secret in text or bytes by ``[redacted]``."""

    __slots__ = ("_secret_bytes", "_secrets")

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = tuple(sorted(set(secrets), key=len, reverse=True))
        self._secret_bytes = tuple(s.encode() for s in self._secrets)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, "[redacted]")
        return value

    def bytes(self, value: bytes) -> bytes:
        for secret in self._secret_bytes:
            if secret in value:
                value = value.replace(secret, b"[redacted]")
        return value


class StreamRelay(Protocol):
    """Upstream SSE events in, bytes for the client out."""

    account: ResponseAccount
    done: bool  # a terminal event was seen
    token_seen: bool  # a chunk with generated tokens went out

    def feed(self, event: SSEEvent) -> list[bytes]: ...

    def end(self) -> list[bytes]:
        """Upstream closed: what the client still needs (an error event if it broke off)."""
        ...


class Adapter(Protocol):
    """One upstream protocol. ``config`` and ``transport`` belong to one provider."""

    config: ProviderConfig
    transport: Transport

    def prepare(self, call: Call) -> UpstreamRequest: ...

    def relay(self, call: Call, account: ResponseAccount, redactor: Redactor) -> StreamRelay: ...

    def finish_response(self, call: Call, body: bytes, account: ResponseAccount) -> bytes:
        """The client's body for a whole upstream response (status 2xx)."""
        ...

    def upstream_error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError: ...

    async def list_models(self, http: httpx.AsyncClient) -> list[ModelEntry]: ...


def decode_event_json(data: str | bytes) -> dict[str, Any] | None:
    """An event's JSON object, or None when it is not one (a malformed upstream event)."""
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def malformed_event(account: ResponseAccount) -> list[bytes]:
    """Record a malformed upstream event and tell the client the stream broke."""
    account.error = {
        "message": "malformed event",
        "type": "upstream_error",
        "code": "upstream_broken",
    }
    return [
        error_event(
            "The upstream sent a malformed stream event.", "upstream_error", "upstream_broken"
        )
    ]


def error_event(message: str, type: str, code: str | None = None) -> bytes:
    """An OpenAI-style error as an SSE data event (the SDK raises APIError on it)."""
    payload = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"
