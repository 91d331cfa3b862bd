"""Shared pieces of the fake vendors' wire dialects: stream plans and JSON/SSE encoders.

A dialect (OpenAI, OpenRouter, Anthropic) turns a request body into vendor-shaped bytes.
Streams are returned as a `StreamPlan` rather than written directly, so the server can pace,
cut short or corrupt the same events for the different scenarios.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from attrs import frozen

from tests.fakes.scenarios import Reply

Headers = tuple[tuple[str, str], ...]
DONE = b"data: [DONE]\n\n"
_ALNUM = string.ascii_letters + string.digits

# Every ordinary answer reports the same usage, so tests can assert exact telemetry.
PROMPT_TOKENS = 11
COMPLETION_TOKENS = 7


@frozen
class StreamPlan:
    """The events of one streamed answer, grouped so scenarios can pace, cut or break them.

    `preamble` holds SSE comment lines sent before any event (OpenRouter's processing
    notices); `head` the events before content (role chunk, or message_start...);
    `content` one event per content piece or tool-call fragment; `tail` the closing events
    (finish, usage, `[DONE]`, or message_delta and message_stop); `terminator` what ends a
    stream that is cut short on purpose (`[DONE]`, or message_stop).
    """

    headers: Headers
    preamble: tuple[bytes, ...]
    head: tuple[bytes, ...]
    content: tuple[bytes, ...]
    tail: tuple[bytes, ...]
    terminator: tuple[bytes, ...]
    midstream_error: tuple[bytes, ...]

    @property
    def events(self) -> tuple[bytes, ...]:
        """All events of the complete stream, comments excluded."""
        return self.head + self.content + self.tail


class Dialect(Protocol):
    """What the fake server asks of one vendor's wire format."""

    flavor: str
    prefix: str
    chat_route: str
    other_routes: frozenset[str]
    retry_after: str

    def auth_error(self, headers: Mapping[str, str], api_key: str) -> Reply | None:
        """The vendor's 401 (or 400) reply when the request's credentials are wrong."""
        ...

    def error(
        self, status: int, *, variant: str = "", model: str = "", key: str = "", message: str = ""
    ) -> Reply:
        """The vendor's error reply for `status` (`message` overrides the default text)."""
        ...

    def not_found(self, method: str, path: str) -> Reply:
        """The vendor's reply to an unknown route."""
        ...

    def chat(self, body: Mapping[str, Any], *, tools: bool, stop_reason: str = "") -> Reply:
        """A non-streamed answer: plain text, or two parallel tool calls.

        A non-empty `stop_reason` replaces the vendor's usual stop/finish reason.
        """
        ...

    def chat_stream(
        self, body: Mapping[str, Any], pieces: Sequence[str], *, tools: bool, stop_reason: str = ""
    ) -> StreamPlan:
        """A streamed answer whose text arrives as `pieces` (ignored for tool calls)."""
        ...

    def models(self, models: Sequence[str | Mapping[str, Any]]) -> Reply:
        """The model list; strings are rendered in the vendor's shape, dicts served as-is."""
        ...

    def model(self, model_id: str, models: Sequence[str | Mapping[str, Any]]) -> Reply:
        """One model by id, or the vendor's 404."""
        ...

    def other(self, route: str, body: Mapping[str, Any]) -> Reply | StreamPlan | None:
        """Answer a secondary POST route (completions, embeddings, count_tokens) or None."""
        ...


def compact(obj: Any) -> bytes:
    """JSON without whitespace, as streamed chunks and most vendors' bodies are."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def pretty(obj: Any) -> bytes:
    """JSON indented by two spaces, as OpenAI sends non-streamed bodies (no final newline)."""
    return json.dumps(obj, indent=2, ensure_ascii=False).encode()


def data_event(obj: Any) -> bytes:
    """One data-only SSE event (`data: {json}` and a blank line)."""
    return b"data: " + compact(obj) + b"\n\n"


def random_id(length: int) -> str:
    """Random letters and digits, for response, tool-call and request ids."""
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def truncate_event(event: bytes) -> bytes:
    """The same event with its JSON cut off two thirds of the way: broken on purpose."""
    text = event.rstrip(b"\n")
    return text[: len(text) * 2 // 3] + b"\n\n"


def model_of(body: Mapping[str, Any]) -> str:
    """The request's `model`, or an empty string when it is missing or not a string."""
    model = body.get("model")
    return model if isinstance(model, str) else ""


def tool_name(body: Mapping[str, Any]) -> str:
    """The first tool's name in either dialect's `tools` list, else `get_weather`."""
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        first = tools[0]
        function = first.get("function")
        name = function.get("name") if isinstance(function, dict) else first.get("name")
        if isinstance(name, str) and name:
            return name
    return "get_weather"


# The two calls every `tools` answer makes, with arguments split mid-token like real streams.
TOOL_CALLS: tuple[tuple[dict[str, str], tuple[str, ...]], ...] = (
    ({"city": "Paris"}, ('{"', "city", '":"', "Par", 'is"}')),
    ({"city": "London"}, ('{"', "city", '":"', "Lon", 'don"}')),
)
