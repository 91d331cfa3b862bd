"""The :class:`Dialect` protocol and the :class:`Translation` of one request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from attrs import frozen

from wlm.config import ProviderConfig
from wlm.errors import Failure, UpstreamBroken
from wlm.providers.base import StreamRelay

__all__ = ["AS_SENT", "Dialect", "ParsedRequest", "Passage", "Translation", "chat_answer"]


@frozen
class ParsedRequest:
    """A client's JSON body and what the gateway reads from it, in any dialect."""

    endpoint: str  # "chat/completions", "completions", "embeddings", "messages", ...
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    wants_usage: bool  # chat: the client asked for stream_options.include_usage
    content_key: str  # the body field telemetry stores as the request's content


@frozen
class Translation:
    """A request in another dialect, sent as Chat Completions: the chat body, and how
    the chat answer (a stream, or a whole body) goes back into the client's dialect."""

    chat_body: dict[str, Any]
    relay: Callable[[StreamRelay], StreamRelay]
    response: Callable[[bytes], bytes]
    notes: tuple[str, ...] = ()  # what could not be carried over (logged once)
    # An answer wlm gives itself, calling no upstream (count_tokens where no backend
    # can count): the JSON body.
    local_answer: bytes | None = None
    # count_tokens: ask the backend for an exact count of ``chat_body`` first (a local
    # engine can); ``local_answer`` is the estimate when it cannot.
    counts_tokens: bool = False


@frozen
class Passage:
    """A request sent in its own dialect to a provider that serves it (pass-through):
    as it came, or with a body wlm changed, and what watches the answer on its way."""

    body: dict[str, Any] | None = None  # None: the client's bytes as they came
    relay: Callable[[StreamRelay], StreamRelay] | None = None
    response: Callable[[bytes], bytes] | None = None


AS_SENT = Passage()


def chat_answer(body: bytes) -> dict[str, Any]:
    """A whole chat answer as the translations read it; UpstreamBroken if not an object."""
    try:
        parsed = msgspec.json.decode(body)
    except msgspec.DecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamBroken("The upstream's answer is not a JSON object.")
    return parsed


class Dialect(Protocol):
    """One client dialect."""

    @property
    def name(self) -> str: ...

    def parse(self, raw: bytes, endpoint: str) -> ParsedRequest:
        """Decode and check a request body; raises GatewayError values."""
        ...

    def pass_through(self, request: ParsedRequest, config: ProviderConfig) -> Passage | None:
        """How the request goes to the provider ``config`` in this dialect; None when the
        provider does not serve it so (it is translated through chat)."""
        ...

    def translate(self, request: ParsedRequest) -> Translation:
        """The request as Chat Completions, for a backend that does not speak this dialect."""
        ...

    def error_body(self, failure: Failure) -> tuple[int, bytes]:
        """The status and body of a failure before the first byte."""
        ...

    def error_event(self, failure: Failure) -> bytes:
        """A failure after the first byte, as this dialect's stream event."""
        ...
