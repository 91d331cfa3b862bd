"""OpenAI ``chat.completion.chunk`` dicts in, Anthropic Messages stream events out.

:class:`ChatToMessagesStream` is a state machine fed one parsed chunk at a time (the
caller parses the SSE and does not feed ``[DONE]``); it returns ``(event name,
data)`` pairs, which :func:`encode_sse` writes as ``event:``/``data:`` SSE events.

The grammar it keeps (each rule a bug other gateways have had):

* ``message_start`` once, then one ``ping``, then content blocks, each with a new
  index (0, 1, 2...), exactly one open at a time: ``content_block_start``, deltas,
  ``content_block_stop``. A block is closed when the kind of content changes, and
  the chunk that changes it is never dropped.
* Thinking (``reasoning_content``, or OpenRouter's ``reasoning``) goes to
  ``thinking`` blocks, whose start carries ``signature: ""``. No ``signature_delta``
  is sent: a chat backend signs nothing, the empty signature is already in the
  block, and a made-up one would be rejected if the client sent it to Anthropic.
* Each tool call is its own ``tool_use`` block, with the id the backend gave it.
  Chat streams give the id and name only on a call's first delta and key later
  fragments by ``tool_calls[].index``; several calls may share one chunk; backends
  send arguments piece by piece, all at once, or only after every call's header.
  A call's block opens when the call first appears if no other tool block is
  open, else when its first argument text arrives; opening it closes the open
  block. A backend that reuses ``index`` for a new call is recognised by the new
  ``id``. Argument text for a call whose block was already closed (fragments of
  parallel calls interleaved) cannot be placed in an Anthropic stream; the stream
  then ends with an ``error`` event rather than with wrong arguments.
* ``message_delta`` (stop reason, usage) is held after ``finish_reason`` until the
  usage chunk arrives (chat streams send it later, in a chunk with ``choices: []``)
  or :meth:`~ChatToMessagesStream.finish` is called; ``message_stop`` follows it.
* A stream that ends without a ``finish_reason`` ends with an ``error`` event, not
  in silence that looks like success; so does an upstream ``{"error": ...}`` chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from wlm.translate.chat_chunks import plain_text_delta
from wlm.translate.messages_errors import messages_error_of_chat
from wlm.translate.messages_response import messages_usage_of_chat, stop_reason_from

__all__ = ["ChatToMessagesStream", "encode_sse"]

Event = tuple[str, dict[str, Any]]


def encode_sse(events: Sequence[tuple[str, dict[str, Any]]]) -> bytes:
    """``event: NAME`` / ``data: JSON`` SSE text for the events, compact JSON."""
    encode = msgspec.json.encode
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + encode(data) + b"\n\n" for name, data in events
    )


class _Call:
    """One tool call of the chat stream."""

    __slots__ = ("block", "closed", "id", "name")

    def __init__(self, id: str, name: str) -> None:
        self.id = id
        self.name = name
        self.block: int | None = None  # its Anthropic block index once started
        self.closed = False


class ChatToMessagesStream:
    """Translate one chat completion stream into Anthropic Messages events.

    >>> s = ChatToMessagesStream(model="m", message_id="msg_1")
    >>> [name for name, _ in s.feed({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})]
    ['message_start', 'ping', 'content_block_start', 'content_block_delta']
    >>> [name for name, _ in s.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})]
    ['content_block_stop']
    >>> [name for name, _ in s.finish()]
    ['message_delta', 'message_stop']

    ``done`` turns True after ``message_stop`` or an ``error`` event; later input is
    ignored. ``error`` holds the ``error`` event's data, ``usage`` the last
    OpenAI-shaped usage object received (for telemetry), ``stop_reason`` the mapped
    stop reason once known.
    """

    def __init__(self, *, model: str, message_id: str) -> None:
        self.model = model
        self.message_id = message_id
        self.done = False
        self.error: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self.stop_reason: str | None = None
        self._started = False
        self._next_index = 0
        self._open_kind: str | None = None  # "thinking", "text" or "tool"
        self._open_call: _Call | None = None
        self._calls: dict[int, _Call] = {}  # chat tool index -> its latest call
        self._all_calls: list[_Call] = []
        self._last_call_index: int | None = None
        self._finish_reason: str | None = None
        self._usage_after_finish = False
        self._refused = False

    # -- input ----------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """Events to send for one chat chunk (the parsed JSON of one ``data:`` event)."""
        if self.done:
            return []
        if self._open_kind == "text" and self._finish_reason is None:
            text = plain_text_delta(chunk)
            if text is not None:  # the common chunk: more text for the open text block
                return [self._block_delta({"type": "text_delta", "text": text})]
        if not isinstance(chunk, dict):
            return self._fail("The upstream stream was malformed: a chunk is not an object.")
        events: list[Event] = []
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        if chunk.get("error"):
            return self._upstream_error(chunk["error"])
        if not self._started:
            events.extend(self._start())
        choice = self._first_choice(chunk.get("choices"))
        if choice is not None and self._finish_reason is None:
            delta = choice.get("delta")
            if isinstance(delta, dict):
                try:
                    events.extend(self._delta(delta))
                except _Interleaved as exc:
                    return events + self._fail(str(exc))
            finish = choice.get("finish_reason")
            if finish == "error":  # OpenRouter's mark of a failed generation
                return events + self._upstream_error(None)
            if isinstance(finish, str) and finish:
                self._finish_reason = finish
                events.extend(self._flush_calls())
                events.extend(self._close())
                self.stop_reason = stop_reason_from(finish, has_tool_calls=bool(self._all_calls))
                if self._refused and self.stop_reason == "end_turn":
                    self.stop_reason = "refusal"
                if isinstance(usage, dict):
                    self._usage_after_finish = True
        elif self._finish_reason is not None and isinstance(usage, dict):
            self._usage_after_finish = True
        if self._finish_reason is not None and self._usage_after_finish:
            events.extend(self._end())
        return events

    def finish(self) -> list[Event]:
        """Events to send when the upstream stream ended (after ``[DONE]`` or not)."""
        if self.done:
            return []
        if self._finish_reason is None:
            return self._fail("The upstream stream ended before the answer was complete.")
        return self._end()

    # -- the grammar ----------------------------------------------------------------

    def _start(self) -> list[Event]:
        self._started = True
        usage: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0}
        if self.usage is not None:
            known = messages_usage_of_chat(self.usage)
            usage = {**known, "output_tokens": 0}
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [
            ("message_start", {"type": "message_start", "message": message}),
            ("ping", {"type": "ping"}),
        ]

    def _open(self, kind: str, content_block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self._open_kind = kind
        index = self._next_index
        self._next_index += 1
        event = {"type": "content_block_start", "index": index, "content_block": content_block}
        return [*events, ("content_block_start", event)]

    def _close(self) -> list[Event]:
        if self._open_kind is None:
            return []
        if self._open_call is not None:
            self._open_call.closed = True
            self._open_call = None
        self._open_kind = None
        return [
            ("content_block_stop", {"type": "content_block_stop", "index": self._next_index - 1})
        ]

    def _block_delta(self, delta: dict[str, Any]) -> Event:
        event = {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}
        return ("content_block_delta", event)

    def _end(self) -> list[Event]:
        events = self._close()
        usage = (
            messages_usage_of_chat(self.usage) if self.usage is not None else {"output_tokens": 0}
        )
        # output_tokens first, as Anthropic sends it; input and cache counts when known.
        delta_usage = {"output_tokens": usage["output_tokens"]}
        delta_usage.update({k: v for k, v in usage.items() if k != "output_tokens"})
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": delta_usage,
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        self.done = True
        return events

    # -- one delta ------------------------------------------------------------------

    def _delta(self, delta: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        reasoning = delta.get("reasoning_content")
        if not (isinstance(reasoning, str) and reasoning):
            reasoning = delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            if self._open_kind != "thinking":
                events.extend(
                    self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                )
            events.append(self._block_delta({"type": "thinking_delta", "thinking": reasoning}))
        text = delta.get("content")
        refusal = delta.get("refusal")
        if not (isinstance(text, str) and text) and isinstance(refusal, str) and refusal:
            text = refusal
            self._refused = True
        if isinstance(text, str) and text:
            if self._open_kind != "text":
                events.extend(self._open("text", {"type": "text", "text": ""}))
            events.append(self._block_delta({"type": "text_delta", "text": text}))
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            for tool_call in tool_calls:
                if isinstance(tool_call, dict):
                    events.extend(self._tool_delta(tool_call))
        return events

    def _tool_delta(self, tool_call: dict[str, Any]) -> list[Event]:
        function = tool_call.get("function")
        function = function if isinstance(function, dict) else {}
        call_id = tool_call.get("id") if isinstance(tool_call.get("id"), str) else None
        name = function.get("name") if isinstance(function.get("name"), str) else None
        arguments = function.get("arguments")
        fragment = arguments if isinstance(arguments, str) else ""
        index = tool_call.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            # No index: a new id is a new call, else it continues the latest call.
            latest = (
                self._calls.get(self._last_call_index)
                if self._last_call_index is not None
                else None
            )
            if latest is not None and (call_id is None or call_id == latest.id):
                index = self._last_call_index
            else:
                index = max(self._calls, default=-1) + 1
        assert index is not None
        call = self._calls.get(index)
        events: list[Event] = []
        if call is None or (call_id and call_id != call.id):
            call = _Call(call_id or f"toolu_{self.message_id}_{len(self._all_calls)}", name or "")
            self._calls[index] = call
            self._all_calls.append(call)
        elif name and not call.name and call.block is None:
            call.name = name
        self._last_call_index = index
        # A call opens at once when no tool block is open and its name is known; else
        # it waits for its first argument text (or the end of the turn).
        if call.block is None and (fragment or (self._open_kind != "tool" and call.name)):
            events.extend(self._open_call_block(call))
        if fragment:
            if call is not self._open_call:
                if call.closed:
                    raise _Interleaved(
                        "The upstream interleaved the arguments of parallel tool calls, "
                        "which an Anthropic stream cannot carry."
                    )
                events.extend(self._open_call_block(call))
            events.append(self._block_delta({"type": "input_json_delta", "partial_json": fragment}))
        return events

    def _flush_calls(self) -> list[Event]:
        """Blocks for calls that never received argument text (no arguments)."""
        events: list[Event] = []
        for call in self._all_calls:
            if call.block is None:
                events.extend(self._open_call_block(call))
        return events

    def _open_call_block(self, call: _Call) -> list[Event]:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        events = self._open("tool", block)
        call.block = self._next_index - 1
        self._open_call = call
        return events

    # -- helpers --------------------------------------------------------------------

    @staticmethod
    def _first_choice(choices: Any) -> dict[str, Any] | None:
        """The choice with index 0 (wlm never asks for more than one)."""
        if not isinstance(choices, list):
            return None
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                return choice
        return None

    def _upstream_error(self, error: Any) -> list[Event]:
        data = messages_error_of_chat(error)
        self.error = data
        self.done = True
        return [("error", data)]

    def _fail(self, message: str) -> list[Event]:
        data = {"type": "error", "error": {"type": "api_error", "message": message}}
        self.error = data
        self.done = True
        return [("error", data)]


class _Interleaved(Exception):
    """Argument text arrived for a tool call whose block was already closed."""
