"""Anthropic stream events in, OpenAI ``chat.completion.chunk`` dicts out.

:class:`AnthropicStreamTranslator` is a state machine fed one parsed SSE event at a
time. It never reads the network, the clock or the config: the caller parses the
SSE, passes ``(event name, JSON payload)``, and writes the returned chunks as
``data:`` events (then ``data: [DONE]`` unless the last chunk was an error).

The rules that matter to clients (each is a bug other gateways have had):

* OpenAI's tool-call ``index`` counts tool calls only; Anthropic's block ``index``
  counts every block, so a text block before a tool makes the Anthropic index 1.
* The first fragment of a tool call carries ``id``, ``type``, ``function.name`` and
  ``arguments: ""``; a tool that received no argument text gets ``"{}"`` at its
  block stop, so clients can always ``JSON.parse`` the concatenation.
* ``message_delta`` usage is cumulative; counts it omits keep their earlier value.
* A stream that stops without ``message_stop`` ends in an error chunk, not in
  silence that looks like success.
"""

from __future__ import annotations

from typing import Any

from wlm.translate.anthropic_errors import stream_error_to_openai
from wlm.translate.anthropic_response import finish_reason_from, tool_arguments, usage_from

__all__ = ["AnthropicStreamTranslator"]

# Usage keys a message_delta may repeat; a value it omits (or sends as null) keeps the
# one from message_start.
_USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens_details",
    "server_tool_use",
)


class _MalformedEvent(Exception):
    """An event the Anthropic protocol does not allow here."""


class _ToolCall:
    __slots__ = ("fragments", "id", "name", "sent_arguments", "start_input")

    def __init__(self, id: str, name: str, start_input: Any) -> None:
        self.id = id
        self.name = name
        self.start_input = start_input
        self.fragments: list[str] = []
        self.sent_arguments = False

    def as_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": "".join(self.fragments) or "{}"},
        }


class _Block:
    """One Anthropic content block while it streams."""

    __slots__ = ("kind", "signature", "thinking", "tool_index")

    def __init__(self, kind: str, tool_index: int | None = None) -> None:
        self.kind = kind
        self.tool_index = tool_index
        self.thinking: list[str] = []
        self.signature = ""


class AnthropicStreamTranslator:
    """Translate one Anthropic Messages stream into OpenAI chat completion chunks.

    >>> t = AnthropicStreamTranslator(model="claude", created=0, include_usage=False)
    >>> chunks = t.feed("message_start", {"type": "message_start", "message": {
    ...     "id": "msg_1", "usage": {"input_tokens": 3, "output_tokens": 1}}})
    >>> chunks[0]["choices"][0]["delta"]
    {'role': 'assistant', 'content': ''}

    ``feed`` returns the chunks to send for one event, in order; ``finish`` is called
    at end of input. After an error chunk (``{"error": {...}}``) ``done`` is True and
    further events are ignored. ``usage``, ``finish_reason``, ``error``, ``text``,
    ``reasoning``, ``tool_calls`` and ``thinking_blocks`` (with signatures) can be read
    at any time, for telemetry or to build a non-stream answer.
    """

    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.id: str | None = None
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self.error: dict[str, Any] | None = None
        self.done = False
        self._raw_usage: dict[str, Any] = {}
        self._text: list[str] = []
        self._blocks: dict[int, _Block] = {}
        self._tools: list[_ToolCall] = []
        self._thinking: list[_Block | dict[str, Any]] = []

    # -- what callers read --------------------------------------------------------

    @property
    def text(self) -> str:
        """The assembled answer text so far."""
        return "".join(self._text)

    @property
    def reasoning(self) -> str:
        """The assembled thinking text so far."""
        return "".join(
            "".join(block.thinking) for block in self._thinking if isinstance(block, _Block)
        )

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """OpenAI ``tool_calls`` with the arguments received so far (``"{}"`` if none)."""
        return [tool.as_openai() for tool in self._tools]

    @property
    def thinking_blocks(self) -> list[dict[str, Any]]:
        """Anthropic thinking blocks with their signatures, as a client must echo them."""
        blocks: list[dict[str, Any]] = []
        for block in self._thinking:
            if isinstance(block, _Block):
                blocks.append(
                    {
                        "type": "thinking",
                        "thinking": "".join(block.thinking),
                        "signature": block.signature,
                    }
                )
            else:
                blocks.append(block)
        return blocks

    # -- input --------------------------------------------------------------------

    def feed(self, event_type: str | None, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Chunks to send for one Anthropic event (``event:`` name and parsed ``data:``)."""
        if self.done:
            return []
        if not isinstance(data, dict):
            return self._fail("The Anthropic stream was malformed: an event is not an object.")
        kind = data.get("type") if isinstance(data.get("type"), str) else event_type
        try:
            if kind == "message_start":
                return self._message_start(data)
            if kind == "error":
                self.error = stream_error_to_openai(data)
                self.done = True
                return [{"error": self.error}]
            handler = _HANDLERS.get(kind or "")
            if handler is None:  # ping, and event types added after this was written
                return []
            if self.id is None:
                raise _MalformedEvent(f"'{kind}' arrived before 'message_start'")
            return handler(self, data)
        except (_MalformedEvent, KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = str(exc) if isinstance(exc, _MalformedEvent) else f"bad '{kind}' event"
            return self._fail(f"The Anthropic stream was malformed: {detail}.")

    def finish(self) -> list[dict[str, Any]]:
        """Chunks to send at end of input: an error chunk if no ``message_stop`` came."""
        if self.done:
            return []
        return self._fail("The Anthropic stream ended before 'message_stop'.")

    # -- event handlers -----------------------------------------------------------

    def _message_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        if self.id is not None:
            raise _MalformedEvent("a second 'message_start'")
        message = data["message"]
        self.id = f"chatcmpl-{message['id']}"
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._raw_usage = {k: v for k, v in usage.items() if v is not None}
        self.usage = usage_from(self._raw_usage)
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        index = data["index"]
        if index in self._blocks:
            raise _MalformedEvent(f"block {index} started twice")
        block = data["content_block"]
        kind = block["type"]
        if kind == "tool_use":
            tool = _ToolCall(block["id"], block["name"], block.get("input"))
            self._blocks[index] = _Block(kind, tool_index=len(self._tools))
            self._tools.append(tool)
            header = {
                "index": len(self._tools) - 1,
                "id": tool.id,
                "type": "function",
                "function": {"name": tool.name, "arguments": ""},
            }
            return [self._chunk({"tool_calls": [header]})]
        state = _Block(kind)
        self._blocks[index] = state
        # Blocks normally start empty, but a non-empty start must not be lost.
        if kind == "text":
            return self._text_delta(block.get("text"))
        if kind == "thinking":
            self._thinking.append(state)
            state.signature = block.get("signature") or ""
            return self._thinking_delta(state, block.get("thinking"))
        if kind == "redacted_thinking":
            self._thinking.append({"type": "redacted_thinking", "data": block.get("data", "")})
        return []  # server-tool blocks and unknown kinds have no OpenAI form

    def _block_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        block = self._block(data["index"])
        delta = data["delta"]
        kind = delta["type"]
        if kind == "text_delta" and block.kind == "text":
            return self._text_delta(delta["text"])
        if kind == "input_json_delta" and block.tool_index is not None:
            fragment = delta["partial_json"]
            if not isinstance(fragment, str):
                raise _MalformedEvent("partial_json is not a string")
            if not fragment:  # Anthropic often opens with ""; it carries nothing
                return []
            tool = self._tools[block.tool_index]
            tool.fragments.append(fragment)
            tool.sent_arguments = True
            return [self._arguments_chunk(block.tool_index, fragment)]
        if kind == "thinking_delta" and block.kind == "thinking":
            return self._thinking_delta(block, delta["thinking"])
        if kind == "signature_delta" and block.kind == "thinking":
            block.signature = delta["signature"]
        return []  # citations_delta, server-tool input, unknown delta kinds

    def _block_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        block = self._block(data["index"])
        if block.tool_index is None:
            return []
        tool = self._tools[block.tool_index]
        if tool.sent_arguments:
            return []
        # No argument text arrived: send the start input (normally {}) so the
        # concatenated arguments are valid JSON.
        arguments = tool_arguments(tool.start_input) if tool.start_input else "{}"
        tool.fragments.append(arguments)
        tool.sent_arguments = True
        return [self._arguments_chunk(block.tool_index, arguments)]

    def _message_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") or {}
        usage = data.get("usage")
        if isinstance(usage, dict):
            for key in _USAGE_KEYS:
                if usage.get(key) is not None:
                    self._raw_usage[key] = usage[key]
            self.usage = usage_from(self._raw_usage)
        if self.finish_reason is not None:
            return []  # a repeated message_delta only updates usage
        self.stop_sequence = delta.get("stop_sequence")
        return [self._finish_chunk(delta.get("stop_reason"))]

    def _message_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = [] if self.finish_reason is not None else [self._finish_chunk(None)]
        if self.include_usage and self.usage is not None:
            chunks.append(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": self.usage,
                }
            )
        self.done = True
        return chunks

    # -- helpers ------------------------------------------------------------------

    def _block(self, index: int) -> _Block:
        try:
            return self._blocks[index]
        except KeyError:
            raise _MalformedEvent(f"block {index} was never started") from None

    def _text_delta(self, text: Any) -> list[dict[str, Any]]:
        if text is None or text == "":
            return []
        if not isinstance(text, str):
            raise _MalformedEvent("text is not a string")
        self._text.append(text)
        return [self._chunk({"content": text})]

    def _thinking_delta(self, block: _Block, thinking: Any) -> list[dict[str, Any]]:
        if thinking is None or thinking == "":
            return []
        if not isinstance(thinking, str):
            raise _MalformedEvent("thinking is not a string")
        block.thinking.append(thinking)
        return [self._chunk({"reasoning_content": thinking})]

    def _arguments_chunk(self, tool_index: int, arguments: str) -> dict[str, Any]:
        return self._chunk(
            {"tool_calls": [{"index": tool_index, "function": {"arguments": arguments}}]}
        )

    def _finish_chunk(self, stop_reason: str | None) -> dict[str, Any]:
        self.finish_reason = finish_reason_from(stop_reason)
        return self._chunk({}, self.finish_reason)

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None  # as OpenAI does: only the last chunk carries usage
        return chunk

    def _fail(self, message: str) -> list[dict[str, Any]]:
        self.error = {
            "message": message,
            "type": "upstream_error",
            "param": None,
            "code": "upstream_broken",
        }
        self.done = True
        return [{"error": self.error}]


_HANDLERS = {
    "content_block_start": AnthropicStreamTranslator._block_start,
    "content_block_delta": AnthropicStreamTranslator._block_delta,
    "content_block_stop": AnthropicStreamTranslator._block_stop,
    "message_delta": AnthropicStreamTranslator._message_delta,
    "message_stop": AnthropicStreamTranslator._message_stop,
}
