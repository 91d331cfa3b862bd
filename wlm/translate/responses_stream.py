"""Chat completion chunks in, OpenAI Responses stream events out (and SSE framing).

:class:`ChatToResponsesStream` is a state machine fed one parsed chat chunk at a
time; it never reads the network or the clock (ids and timestamps are arguments).
The events it returns follow the Responses grammar clients such as Codex and the
openai SDK check:

* ``response.created`` and ``response.in_progress`` first; ``response.completed``
  (or ``response.failed``) last and once, carrying the whole ``output`` and usage.
* One output item open at a time: ``output_item.added`` before any of its deltas,
  ``output_item.done`` (which is what Codex reads) after them; ``output_index``
  counts items from 0; one ``sequence_number`` counter for the whole stream.
* Parallel tool calls: the id comes only on a call's first fragment; a fragment
  for another call index (or a new id on a reused index) closes the open item.
  A call that received no argument text gets ``"{}"``. A fragment for a call that
  was already closed cannot be placed and fails the stream, rather than handing a
  client truncated arguments that look complete.
* Chat streams send usage after ``finish_reason``: the items close at the finish,
  ``response.completed`` waits for the usage chunk or :meth:`finish`.
* A stream that ends without ``finish_reason``, or an ``{"error": ...}`` chunk,
  ends in ``response.failed``, never in silence that looks like success.

A native llama.cpp Responses stream is mended instead (:mod:`wlm.translate.responses_llama`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from wlm.translate.chat_chunks import plain_text_delta
from wlm.translate.responses_request import ToolNames
from wlm.translate.responses_response import (
    INCOMPLETE_REASONS,
    call_item,
    chat_usage_to_response,
    output_text,
    reasoning_item,
    response_object,
)

__all__ = [
    "ChatToResponsesStream",
    "encode_sse",
    "error_event",
    "stream_error",
]

_ERROR_CODES = {429: "rate_limit_exceeded"}


class _Malformed(Exception):
    """A chunk the chat protocol does not allow here."""


class _Item:
    """The output item being streamed."""

    __slots__ = ("call_id", "custom", "id", "kind", "name", "output_index", "parts", "texts")

    def __init__(self, kind: str, item_id: str, output_index: int) -> None:
        self.kind = kind  # "reasoning", "message" or "call"
        self.id = item_id
        self.output_index = output_index
        self.texts: list[str] = []  # reasoning text, or call arguments
        self.parts: list[tuple[str, list[str]]] = []  # message parts: (kind, texts)
        self.call_id = ""
        self.name = ""
        self.custom = False


def stream_error(error: Any) -> dict[str, str]:
    """A chat stream's ``error`` value as a Responses error ``{code, message}``.

    >>> stream_error({"code": 429, "message": "slow down"})
    {'code': 'rate_limit_exceeded', 'message': 'slow down'}
    """
    if not isinstance(error, dict):
        return {"code": "server_error", "message": str(error) or "The upstream failed."}
    message = error.get("message")
    code = error.get("code")
    if isinstance(code, str) and code:
        out_code = code
    elif isinstance(code, int):
        out_code = _ERROR_CODES.get(code, "server_error")
    else:
        out_code = "server_error"
    text = message if isinstance(message, str) and message else "The upstream failed."
    return {"code": out_code, "message": text}


class ChatToResponsesStream:
    """Translate one chat completion stream into Responses stream events.

    ``feed`` returns the events for one chunk, ``finish`` those for the end of the
    upstream stream. ``done`` is True once ``response.completed`` or
    ``response.failed`` was returned; later calls return nothing. ``error`` is the
    Responses error of a failed stream, ``usage`` the last chat usage received, and
    ``response`` the final response object (for the gateway to store).
    """

    def __init__(
        self,
        *,
        model: str,
        response_id: str,
        created_at: int,
        tool_names: ToolNames,
        ids: Callable[[str], str],
        request: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.response_id = response_id
        self.created_at = created_at
        self.tool_names = tool_names
        self.ids = ids
        self.request = request
        self.done = False
        self.error: dict[str, str] | None = None
        self.usage: dict[str, Any] | None = None
        self.response: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self._sequence = 0
        self._started = False
        self._open: _Item | None = None
        self._output: list[dict[str, Any]] = []
        self._calls: dict[int, _Item] = {}

    # -- input --------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """Events for one parsed ``chat.completion.chunk`` (or error chunk)."""
        if self.done:
            return []
        if self._started:
            text = plain_text_delta(chunk)
            if text is not None:  # the common chunk: answer text and nothing else
                return self._text("text", text)
        events = self._start()
        try:
            if not isinstance(chunk, dict):
                raise _Malformed("a chunk is not an object")
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                self.usage = usage
            if chunk.get("error"):  # OpenRouter sends usage with it: kept above
                events += self._fail(stream_error(chunk["error"]))
                return events
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) == 0:  # n > 1 cannot be expressed
                    events += self._choice(choice)
            if isinstance(usage, dict) and self.finish_reason is not None:
                events += self._complete()
        except (_Malformed, TypeError, ValueError, KeyError, AttributeError) as exc:
            detail = str(exc) if isinstance(exc, _Malformed) else "a malformed chunk"
            message = f"The upstream stream was malformed: {detail}."
            events += self._fail({"code": "server_error", "message": message})
        return events

    def finish(self) -> list[dict[str, Any]]:
        """Events for the end of the upstream stream: completed, or failed if it broke."""
        if self.done:
            return []
        events = self._start()
        if self.finish_reason is None:
            message = "The upstream stream ended before the answer was finished."
            return events + self._fail({"code": "server_error", "message": message})
        return events + self._complete()

    # -- chunk parts ----------------------------------------------------------------

    def _choice(self, choice: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content")
        if not isinstance(reasoning, str) or not reasoning:
            reasoning = delta.get("reasoning")  # OpenRouter's name
        if isinstance(reasoning, str) and reasoning:
            events += self._reasoning(reasoning)
        for kind in ("content", "refusal"):
            text = delta.get(kind)
            if isinstance(text, str) and text:
                events += self._text("text" if kind == "content" else "refusal", text)
        for call in delta.get("tool_calls") or []:
            events += self._tool_delta(call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish and self.finish_reason is None:
            if finish == "error":
                raise _Malformed("the upstream reported an error without details")
            self.finish_reason = finish
            events += self._close()
        return events

    def _reasoning(self, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        item = self._open
        if item is None or item.kind != "reasoning":
            events += self._close()
            item = self._add("reasoning", "rs", {"type": "reasoning", "summary": []}, events)
            events.append(
                self._item_event(
                    "response.reasoning_summary_part.added",
                    item,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
            )
        item.texts.append(text)
        events.append(
            self._item_event(
                "response.reasoning_summary_text.delta", item, summary_index=0, delta=text
            )
        )
        return events

    def _text(self, kind: str, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        item = self._open
        if item is None or item.kind != "message":
            events += self._close()
            item = self._add(
                "message",
                "msg",
                {"type": "message", "status": "in_progress", "role": "assistant", "content": []},
                events,
            )
        if not item.parts or item.parts[-1][0] != kind:
            if item.parts:
                events += self._close_part(item)
            item.parts.append((kind, []))
            events.append(
                self._item_event(
                    "response.content_part.added",
                    item,
                    content_index=len(item.parts) - 1,
                    part=_part(kind, ""),
                )
            )
        item.parts[-1][1].append(text)
        index = len(item.parts) - 1
        if kind == "text":
            events.append(
                self._item_event(
                    "response.output_text.delta",
                    item,
                    content_index=index,
                    delta=text,
                    logprobs=[],
                )
            )
        else:
            events.append(
                self._item_event("response.refusal.delta", item, content_index=index, delta=text)
            )
        return events

    def _tool_delta(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        index = call.get("index", 0)
        if not isinstance(index, int):
            raise _Malformed("a tool call index is not an integer")
        function = call.get("function") or {}
        call_id = _text_of(call.get("id"))
        name = _text_of(function.get("name"))
        arguments = function.get("arguments")
        if arguments is None:
            arguments = ""
        if not isinstance(arguments, str):
            raise _Malformed("tool call arguments are not a string")
        events: list[dict[str, Any]] = []
        item = self._calls.get(index)
        if item is None or (call_id and call_id != item.call_id):
            events += self._close()
            item = self._open_call(index, call_id, name)
            events.append(self._added_event(item, self._call_shell(item)))
        elif item is not self._open:
            if arguments or (name and name != item.name):
                raise _Malformed(f"arguments for tool call {index} came after it ended")
            return events
        elif name and not item.name:
            item.name = name
        if arguments:
            item.texts.append(arguments)
            if not item.custom:
                events.append(
                    self._item_event(
                        "response.function_call_arguments.delta", item, delta=arguments
                    )
                )
        return events

    # -- items --------------------------------------------------------------------

    def _open_call(self, index: int, call_id: str, name: str) -> _Item:
        _, _, kind = self.tool_names.restore(name)
        custom = kind == "custom"
        item = _Item("call", self.ids("ctc" if custom else "fc"), len(self._output))
        item.call_id = call_id or self.ids("call")
        item.name = name
        item.custom = custom
        self._calls[index] = item
        self._open = item
        return item

    def _call_shell(self, item: _Item) -> dict[str, Any]:
        original, namespace, _ = self.tool_names.restore(item.name)
        shell: dict[str, Any] = {"id": item.id}
        if item.custom:
            shell.update(type="custom_tool_call", call_id=item.call_id, name=original, input="")
        else:
            shell.update(
                type="function_call",
                status="in_progress",
                call_id=item.call_id,
                name=original,
                arguments="",
            )
        if namespace is not None:
            shell["namespace"] = namespace
        return shell

    def _add(
        self, kind: str, prefix: str, shell: dict[str, Any], events: list[dict[str, Any]]
    ) -> _Item:
        """Open a reasoning or message item; appends its ``output_item.added``."""
        item = _Item(kind, self.ids(prefix), len(self._output))
        self._open = item
        events.append(self._added_event(item, {"id": item.id, **shell}))
        return item

    def _close_part(self, item: _Item) -> list[dict[str, Any]]:
        kind, texts = item.parts[-1]
        text = "".join(texts)
        index = len(item.parts) - 1
        if kind == "text":
            done = self._item_event(
                "response.output_text.done", item, content_index=index, text=text, logprobs=[]
            )
        else:
            done = self._item_event(
                "response.refusal.done", item, content_index=index, refusal=text
            )
        return [
            done,
            self._item_event(
                "response.content_part.done", item, content_index=index, part=_part(kind, text)
            ),
        ]

    def _close(self) -> list[dict[str, Any]]:
        """Events that finish the open item, if any."""
        item = self._open
        if item is None:
            return []
        self._open = None
        events: list[dict[str, Any]] = []
        done: dict[str, Any]
        if item.kind == "reasoning":
            text = "".join(item.texts)
            part = {"type": "summary_text", "text": text}
            events.append(
                self._item_event(
                    "response.reasoning_summary_text.done", item, summary_index=0, text=text
                )
            )
            events.append(
                self._item_event(
                    "response.reasoning_summary_part.done", item, summary_index=0, part=part
                )
            )
            done = reasoning_item(item.id, text)
        elif item.kind == "message":
            events += self._close_part(item)
            done = {
                "id": item.id,
                "type": "message",
                "status": "incomplete" if self.finish_reason in INCOMPLETE_REASONS else "completed",
                "role": "assistant",
                "content": [_part(kind, "".join(texts)) for kind, texts in item.parts],
            }
        else:
            arguments = "".join(item.texts)
            done = call_item(
                lambda _prefix: item.id,
                self.tool_names,
                name=item.name,
                call_id=item.call_id,
                arguments=arguments,
            )
            if item.custom:
                text = done["input"]
                if text:
                    events.append(
                        self._item_event("response.custom_tool_call_input.delta", item, delta=text)
                    )
                events.append(
                    self._item_event("response.custom_tool_call_input.done", item, input=text)
                )
            else:
                if not arguments:  # so that clients can always parse the arguments
                    events.append(
                        self._item_event("response.function_call_arguments.delta", item, delta="{}")
                    )
                events.append(
                    self._item_event(
                        "response.function_call_arguments.done",
                        item,
                        arguments=done["arguments"],
                    )
                )
        self._output.append(done)
        events.append(
            self._event("response.output_item.done", output_index=item.output_index, item=done)
        )
        return events

    # -- lifecycle -------------------------------------------------------------------

    def _start(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        response = self._response("in_progress", [])
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def _complete(self) -> list[dict[str, Any]]:
        events = self._close()
        reason = INCOMPLETE_REASONS.get(self.finish_reason or "")
        self.response = self._response(
            "incomplete" if reason else "completed", list(self._output), reason=reason
        )
        self.done = True
        # As OpenAI does: a cut-off answer (max_output_tokens, content filter) ends in
        # response.incomplete, which a client that reads event types must not take for
        # a finished one.
        kind = "response.incomplete" if reason else "response.completed"
        events.append(self._event(kind, response=self.response))
        return events

    def _fail(self, error: dict[str, str]) -> list[dict[str, Any]]:
        self.error = error
        self.done = True
        self._open = None
        self.response = self._response("failed", list(self._output), error=error)
        return [self._event("response.failed", response=self.response)]

    def _response(
        self,
        status: str,
        output: list[dict[str, Any]],
        *,
        reason: str | None = None,
        error: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        usage = chat_usage_to_response(self.usage) if self.usage is not None else None
        return response_object(
            response_id=self.response_id,
            created_at=self.created_at,
            model=self.model,
            status=status,
            output=output,
            usage=usage if status != "in_progress" else None,
            request=self.request,
            incomplete_reason=reason,
            error=dict(error) if error is not None else None,
        )

    # -- event builders ----------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _added_event(self, item: _Item, shell: dict[str, Any]) -> dict[str, Any]:
        return self._event("response.output_item.added", output_index=item.output_index, item=shell)

    def _item_event(self, kind: str, item: _Item, **fields: Any) -> dict[str, Any]:
        return self._event(kind, item_id=item.id, output_index=item.output_index, **fields)


def _part(kind: str, text: str) -> dict[str, Any]:
    return output_text(text) if kind == "text" else {"type": "refusal", "refusal": text}


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else ""


def error_event(code: str, message: str, param: str | None, sequence_number: int) -> bytes:
    """An ``error`` event ending a Responses stream (what OpenAI sends when a stream
    breaks outside a response object)."""
    event = {
        "type": "error",
        "code": code,
        "message": message,
        "param": param,
        "sequence_number": sequence_number,
    }
    return b"event: error\ndata: " + msgspec.json.encode(event) + b"\n\n"


def encode_sse(events: list[dict[str, Any]]) -> bytes:
    """Responses SSE: ``event: TYPE`` and ``data: JSON`` (compact) per event."""
    encode = _encoder.encode
    return b"".join(
        b"event: %s\ndata: %s\n\n" % (str(event["type"]).encode(), encode(event))
        for event in events
    )


_encoder = msgspec.json.Encoder()
