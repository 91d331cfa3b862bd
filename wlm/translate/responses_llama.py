"""llama.cpp's own ``/v1/responses`` made whole for OpenAI's clients (pure, no I/O).

What the embedded engine leaves out (recorded in
``tests/fixtures/wire/llama_cpp_responses_*``, and read in its ``server-task.cpp``):

* stream events carry no ``sequence_number``, ``output_index`` or ``content_index``,
  which the openai SDK needs to assemble a stream; text events carry no ``logprobs``;
* ``response.created`` and ``response.in_progress`` hold only ``id``, ``object`` and
  ``status`` (no ``output``, ``model``, ``created_at``), and no response object echoes
  the request (tools, instructions, ``store``...);
* ``function_call`` items have no ``id`` (their argument deltas give the ``call_id`` as
  ``item_id``), and no ``function_call_arguments.done`` comes; nor does
  ``reasoning_text.done`` for a reasoning item;
* an answer cut off at ``max_output_tokens`` still says ``completed``;
* usage has no ``output_tokens_details``; ``model`` is the engine's alias.

And on the way in, the engine ignores ``text.format`` (structured output), and refuses
``previous_response_id`` (it keeps nothing; wlm resends the history instead).

:func:`for_llama_cpp` fits a request, :func:`mend_response` a whole answer and
:class:`MendResponsesStream` a stream, event by event. Ids and timestamps are
arguments; events and items that are already whole pass with their values kept.
"""

from __future__ import annotations

from typing import Any

from wlm.translate.json_values import is_int
from wlm.translate.responses_request import chat_response_format
from wlm.translate.responses_response import (
    chat_usage_to_response,
    response_object,
    response_usage_to_chat,
)
from wlm.translate.responses_stream import stream_error

__all__ = [
    "LLAMA_CPP_TYPES",
    "MendResponsesStream",
    "for_llama_cpp",
    "mend_response",
    "unsupported_type",
]

# The tool and input item types the engine's /v1/responses reads; it skips other tools
# (custom, namespace, web_search...) and refuses other items (custom_tool_call...).
LLAMA_CPP_TYPES = ("function", "message", "function_call", "function_call_output", "reasoning")

_STARTS = frozenset({"response.created", "response.queued", "response.in_progress"})
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_TEXT_EVENTS = frozenset({"response.output_text.delta", "response.output_text.done"})


def for_llama_cpp(body: dict[str, Any], upstream_model: str) -> dict[str, Any] | None:
    """``body`` as the engine should get it; None when it can go as it came.

    ``model`` becomes ``upstream_model``; ``previous_response_id`` goes (the caller
    has put the history into ``input``); ``text.format`` becomes the chat
    ``response_format`` the engine reads.

    >>> for_llama_cpp({"model": "m", "input": "hi", "text": {"format": {"type": "json_object"}}},
    ...               "m")["response_format"]
    {'type': 'json_object'}
    >>> for_llama_cpp({"model": "m", "input": "hi"}, "m") is None
    True
    """
    changes: dict[str, Any] = {}
    if body.get("model") != upstream_model:
        changes["model"] = upstream_model
    response_format = chat_response_format(body.get("text"))
    if response_format is not None and "response_format" not in body:
        changes["response_format"] = response_format
    if not changes and "previous_response_id" not in body:
        return None
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    out.update(changes)
    return out


def unsupported_type(
    body: dict[str, Any], types: tuple[str, ...], history: list[dict[str, Any]] | None = None
) -> str | None:
    """The first tool or input item type of a request (``history`` included) that is
    not among ``types``, which the engine would skip or refuse; None when all are.

    >>> unsupported_type({"input": "hi", "tools": [{"type": "custom"}]}, ("function",))
    'custom'
    """
    for tool in body.get("tools") or ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in types:
            return str(kind)
    items = body.get("input")
    for item in [*(history or ()), *(items if isinstance(items, list) else ())]:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message" if "role" in item else None)
        if kind not in types:
            return str(kind)
    return None


def _cut_off(request: dict[str, Any], usage: Any) -> bool:
    """The answer ran into the request's ``max_output_tokens`` (the engine says
    ``completed`` all the same)."""
    limit = request.get("max_output_tokens")
    if not is_int(limit) or not isinstance(usage, dict):
        return False
    produced = usage.get("output_tokens")
    return is_int(produced) and produced >= limit


def _usage(usage: Any) -> dict[str, Any] | None:
    """Usage with every count the Responses schema requires."""
    if not isinstance(usage, dict):
        return None
    return chat_usage_to_response(response_usage_to_chat(usage))


def _item(item: Any) -> Any:
    """An output item with an ``id``: a function call gets its ``call_id``, which is
    what the engine's argument deltas name as their ``item_id``."""
    if (
        isinstance(item, dict)
        and item.get("type") == "function_call"
        and not isinstance(item.get("id"), str)
        and isinstance(item.get("call_id"), str)
    ):
        return {"id": item["call_id"], **item}
    return item


def _whole(
    response: dict[str, Any],
    *,
    model: str,
    request: dict[str, Any],
    created_at: int,
    status: str | None = None,
) -> dict[str, Any]:
    """The engine's response object with every field OpenAI's has."""
    output = [_item(item) for item in response.get("output") or () if isinstance(item, dict)]
    usage = _usage(response.get("usage"))
    state = status or response.get("status")
    reason = None
    if state == "completed" and _cut_off(request, usage):
        state, reason = "incomplete", "max_output_tokens"
        output = [
            {**item, "status": "incomplete"} if item.get("type") == "message" else item
            for item in output
        ]
    error = response.get("error")
    whole = response_object(
        response_id=str(response.get("id") or ""),
        created_at=created_at,
        model=model,
        status=state if isinstance(state, str) else "completed",
        output=output,
        usage=usage,
        request=request,
        incomplete_reason=reason,
        error=error if isinstance(error, dict) else None,
    )
    if is_int(response.get("completed_at")):
        whole["completed_at"] = response["completed_at"]
    return whole


def mend_response(
    body: dict[str, Any], *, model: str, request: dict[str, Any], created_at: int
) -> dict[str, Any]:
    """A whole (non-stream) engine answer as OpenAI's response object.

    ``request`` is the client's request (echoed as OpenAI does); ``created_at`` is
    used when the engine gave none.
    """
    created = body.get("created_at")
    return _whole(
        body, model=model, request=request, created_at=created if is_int(created) else created_at
    )


class _Item:
    """An output item the engine opened."""

    __slots__ = ("args_done", "arguments", "index", "kind", "parts", "reasoning", "reasoning_done")

    def __init__(self, index: int, kind: str) -> None:
        self.index = index
        self.kind = kind
        self.parts = 0  # content parts added so far
        self.reasoning: list[str] = []
        self.reasoning_done = False
        self.arguments: list[str] = []
        self.args_done = False


class MendResponsesStream:
    """The engine's Responses stream events, mended one at a time.

    ``feed`` returns the events to send for one engine event (usually one, mended;
    a ``function_call_arguments.done`` or ``reasoning_text.done`` the engine left out
    goes before its item's ``output_item.done``). Every event gets the next
    ``sequence_number``; item events the ``output_index`` of their item (by item id)
    and the ``content_index`` of their part; response objects are whole (see
    :func:`mend_response`), with status ``incomplete`` and a ``response.incomplete``
    event for an answer cut off at ``max_output_tokens``. ``response`` is the final
    response object once the stream ended; ``sequence`` the next sequence number.
    """

    def __init__(self, *, model: str, request: dict[str, Any], created_at: int) -> None:
        self.model = model
        self.request = request
        self.created_at = created_at
        self.sequence = 0
        self.response: dict[str, Any] | None = None
        self._items: dict[str, _Item] = {}
        self._next_index = 0

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if not isinstance(kind, str):
            if "error" in event:  # an engine error mid-stream, as its chat streams send it
                return self._out([{"type": "error", **stream_error(event["error"]), "param": None}])
            return self._out([event])
        if kind in _STARTS or kind in _ENDS:
            return self._out([self._lifecycle(kind, event)])
        if kind == "response.output_item.added":
            return self._out([self._added(event)])
        if kind == "response.output_item.done":
            return self._out(self._done(event))
        return self._out([self._item_event(kind, event)])

    # -- events ---------------------------------------------------------------------

    def _lifecycle(self, kind: str, event: dict[str, Any]) -> dict[str, Any]:
        response = event.get("response")
        if not isinstance(response, dict):
            return event
        if kind in _STARTS:
            whole = _whole(
                {**response, "output": [], "usage": None},
                model=self.model,
                request=self.request,
                created_at=self.created_at,
                status="in_progress",
            )
            return {**event, "response": whole}
        whole = _whole(response, model=self.model, request=self.request, created_at=self.created_at)
        if kind == "response.completed" and whole["status"] == "incomplete":
            kind = "response.incomplete"
        self.response = whole
        return {**event, "type": kind, "response": whole}

    def _added(self, event: dict[str, Any]) -> dict[str, Any]:
        item = _item(event.get("item"))
        index = event.get("output_index")
        if not is_int(index):
            index = self._next_index
        self._next_index = max(self._next_index, index + 1)
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            self._items[item["id"]] = _Item(index, str(item.get("type")))
        return {**event, "output_index": index, "item": item}

    def _done(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        item = _item(event.get("item"))
        item_id = item.get("id") if isinstance(item, dict) else None
        state = self._items.get(item_id) if isinstance(item_id, str) else None
        index = event.get("output_index")
        if not is_int(index):
            index = state.index if state is not None else self._next_index
        events: list[dict[str, Any]] = []
        if state is not None and isinstance(item, dict):
            if state.kind == "function_call" and not state.args_done:
                arguments = item.get("arguments")
                if not isinstance(arguments, str):
                    arguments = "".join(state.arguments)
                events.append(
                    {
                        "type": "response.function_call_arguments.done",
                        "item_id": item_id,
                        "output_index": index,
                        "arguments": arguments,
                    }
                )
            elif state.kind == "reasoning" and state.reasoning and not state.reasoning_done:
                events.append(
                    {
                        "type": "response.reasoning_text.done",
                        "item_id": item_id,
                        "output_index": index,
                        "content_index": 0,
                        "text": "".join(state.reasoning),
                    }
                )
        events.append({**event, "output_index": index, "item": item})
        return events

    def _item_event(self, kind: str, event: dict[str, Any]) -> dict[str, Any]:
        item_id = event.get("item_id")
        state = self._items.get(item_id) if isinstance(item_id, str) else None
        if state is None:
            return event
        fixes: dict[str, Any] = {}
        if not is_int(event.get("output_index")):
            fixes["output_index"] = state.index
        if kind == "response.content_part.added":
            state.parts += 1
        if kind.startswith("response.content_part.") or kind in _TEXT_EVENTS:
            if not is_int(event.get("content_index")):
                fixes["content_index"] = max(state.parts - 1, 0)
            if kind in _TEXT_EVENTS and "logprobs" not in event:
                fixes["logprobs"] = []
        elif kind.startswith("response.reasoning_text."):
            if not is_int(event.get("content_index")):
                fixes["content_index"] = 0
            if kind.endswith(".delta") and isinstance(event.get("delta"), str):
                state.reasoning.append(event["delta"])
            elif kind.endswith(".done"):
                state.reasoning_done = True
        elif kind == "response.function_call_arguments.delta":
            if isinstance(event.get("delta"), str):
                state.arguments.append(event["delta"])
        elif kind == "response.function_call_arguments.done":
            state.args_done = True
        return {**event, **fixes} if fixes else event

    def _out(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for event in events:
            event["sequence_number"] = self.sequence
            self.sequence += 1
        return events
