"""The adapter seam: what every provider implements, and the values passed across it.

An adapter turns a client's OpenAI-shaped call into an upstream request, opens it
through its transport, relays the upstream's stream (or body) back in OpenAI shape,
and maps upstream errors. A local llama.cpp engine is one more adapter
(:mod:`wlm.providers.local`). Adding another OpenAI-compatible provider is
configuration, not a new adapter.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
from attrs import frozen

from wlm.config import ProviderConfig
from wlm.errors import Failure, GatewayError, UpstreamBroken, render_error_event
from wlm.local.protocol import QueuePlace
from wlm.providers.accounting import ResponseAccount
from wlm.sse import SSEEvent, SSEParser, plain_data
from wlm.transport import UpstreamResponse

__all__ = [
    "FORWARDED_HEADERS",
    "Adapter",
    "Call",
    "ModelEntry",
    "PassthroughRelay",
    "Progress",
    "StreamRelay",
    "answer_object",
    "broken_stream",
    "decode_event_json",
    "malformed_event",
    "malformed_failure",
]

# Client headers worth passing on (ASGI lowercases names); everything else (credentials, hop-by-hop, cookies) stays.
# The W3C trace context goes on too, rewritten when wlm exports a span (wlm/tracecontext.py).
FORWARDED_HEADERS = frozenset(
    (
        b"anthropic-beta",
        b"openai-organization",
        b"openai-project",
        b"x-request-id",
        b"traceparent",
        b"tracestate",
    )
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
    request_id: str = ""
    # A local engine's longest wait (loading, or every slot busy) before the call gives
    # up with ModelUnavailable: the request has a fallback (WLM_LOCAL_MAX_WAIT_S).
    max_wait_s: float | None = None
    # Who waits in the queue in front of a local engine (None: not a local call).
    place: QueuePlace | None = None


@frozen
class ModelEntry:
    """A model as a provider lists it; ``id`` is the provider's own id."""

    id: str
    created: int = 0
    extra: dict[str, Any] | None = None


class Progress(Protocol):
    """What an adapter reports while it opens a call (before any byte reached the client)."""

    async def loading(self, model_id: str) -> None:
        """Called every few seconds while a local engine loads."""

    async def queued(self, position: int, total: int) -> None:
        """Called when a local request's place in the engines' queue changes while it
        waits, and every few seconds while it stays."""

    def retrying(self, error: GatewayError) -> None:
        """The adapter tries again on its own after ``error`` (a local engine that died
        before answering is restarted): one try ended, the next begins."""


class StreamRelay(Protocol):
    """The upstream's SSE bytes in (as read, any split), bytes for the client out."""

    @property
    def account(self) -> ResponseAccount: ...

    @property
    def done(self) -> bool:
        """A terminal event was seen; later bytes are ignored."""
        ...

    @property
    def token_seen(self) -> bool:
        """A chunk with generated tokens went out."""
        ...

    def feed(self, chunk: bytes) -> list[bytes]: ...

    def end(self) -> list[bytes]:
        """Upstream closed: what the client still needs (an error event if it broke off)."""
        ...

    def fail(self, failure: Failure) -> list[bytes]:
        """The stream broke off (the upstream connection failed): the error as this
        relay's output dialect ends a stream."""
        ...


class Adapter(Protocol):
    """One upstream protocol for one provider, with its own transport."""

    @property
    def config(self) -> ProviderConfig: ...

    async def open(self, call: Call, progress: Progress) -> UpstreamResponse:
        """Send the call upstream; returns once the upstream's status line arrived."""
        ...

    def relay(self, call: Call, account: ResponseAccount) -> StreamRelay:
        """The relay of one streamed answer (its output is redacted by the caller)."""
        ...

    def finish_response(self, call: Call, body: bytes, account: ResponseAccount) -> bytes:
        """The client's body for a whole upstream response (status 2xx)."""
        ...

    def upstream_error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError: ...

    async def list_models(self) -> list[ModelEntry]: ...

    async def count_tokens(self, call: Call, progress: Progress) -> int | None:
        """The exact input tokens of a chat call, when the upstream can count them
        without generating (a local engine); None otherwise."""
        ...

    async def stored_response(self, response_id: str) -> bytes | None:
        """A Responses object the upstream keeps (``GET /responses/{id}``), when it serves
        Responses natively and has that one; None otherwise."""
        ...

    async def close(self) -> None: ...


def decode_event_json(data: str | bytes) -> dict[str, Any] | None:
    """An event's JSON object, or None when it is not one (a malformed upstream event)."""
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def answer_object(body: bytes, sender: str) -> dict[str, Any]:
    """A whole (non-stream) answer's JSON object; an UpstreamBroken naming ``sender``
    (e.g. "Provider 'openai'") when the body is not one."""
    parsed = decode_event_json(body)
    if parsed is None:
        raise UpstreamBroken(f"{sender} sent an answer that is not a JSON object.")
    return parsed


_MALFORMED = Failure(
    "The upstream sent a malformed stream event.", "upstream_error", "upstream_broken", status=502
)
_BROKEN = Failure(
    "The upstream closed the stream before it finished.",
    "upstream_error",
    "upstream_broken",
    status=502,
)


class PassthroughRelay:
    """The frame of a relay that passes a native stream through event by event while
    reading it for telemetry. A dialect's relay reads one event (:meth:`_read`) and says
    how its dialect ends a stream that broke (:meth:`fail`)."""

    __slots__ = ("_parser", "account", "done", "token_seen")

    def __init__(self, account: ResponseAccount) -> None:
        self._parser = SSEParser()
        self.account = account
        self.done = False
        self.token_seen = False

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        for block in self._parser.blocks(chunk):
            sent = self._event(block)
            if sent:  # a mended stream may drop an event
                out.append(sent)
            if self.done:
                break
        return out

    def _event(self, block: bytes) -> bytes:
        data = plain_data(block)
        if data is None:
            data = SSEEvent(block).data_bytes()
            if data is None:
                return block  # comments (keep-alives): as they came
        sent = self._read(block, data)
        if sent is None:  # a broken event must not reach the client as if whole
            self.done = True
            return self.fail(malformed_failure(self.account))[0]
        return sent

    def _read(self, block: bytes, data: bytes) -> bytes | None:
        """What the client gets for this event (``block``, or it rewritten); None when
        ``data`` is not a readable event."""
        raise NotImplementedError

    def fail(self, failure: Failure) -> list[bytes]:
        raise NotImplementedError

    def end(self) -> list[bytes]:
        out = [self._event(block) for block in self._parser.finish_blocks()]
        if self.done:
            return out
        self.done = True
        broken_stream(self.account)
        return [*out, *self.fail(_BROKEN)]


def malformed_failure(account: ResponseAccount) -> Failure:
    """Record a malformed upstream event; the failure to tell the client."""
    account.error = _MALFORMED
    return _MALFORMED


def malformed_event(account: ResponseAccount) -> list[bytes]:
    """Record a malformed upstream event and tell the client the stream broke."""
    account.error = _MALFORMED
    return [render_error_event(_MALFORMED)]


def broken_stream(account: ResponseAccount) -> list[bytes]:
    """Record a stream that ended without its terminal event and tell the client."""
    account.error = _BROKEN
    return [render_error_event(_BROKEN)]
