"""A chat completion as an OpenAI Responses ``response`` object, and usage both ways.

Pure: ids come from the ``ids`` callable the gateway passes (``ids("msg")`` ->
``"msg_..."``), timestamps are arguments. Output items, in order: a ``reasoning``
item when the backend sent reasoning text, a ``message`` item for the answer text,
then one ``function_call`` (or ``custom_tool_call``) item per tool call, each keeping
the chat tool call id as its ``call_id`` and getting its Responses name back from
:class:`~wlm.translate.responses_request.ToolNames`.

Usage: ``usage`` is ``null`` when the backend reported none; when it reported some,
every count the Responses schema requires is a number, and a count the backend left
out (cached or reasoning tokens, often) is 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from wlm.errors import UpstreamBroken
from wlm.translate.responses_request import ToolNames

__all__ = [
    "INCOMPLETE_REASONS",
    "call_item",
    "chat_to_response",
    "chat_usage_to_response",
    "custom_input",
    "output_text",
    "reasoning_item",
    "response_object",
    "response_usage_to_chat",
]

# chat finish_reason -> Responses incomplete_details.reason
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def chat_to_response(
    body: dict[str, Any],
    *,
    model: str,
    response_id: str,
    created_at: int,
    tool_names: ToolNames,
    request: dict[str, Any] | None = None,
    ids: Callable[[str], str],
) -> dict[str, Any]:
    """The Responses ``response`` object for a non-stream ``chat.completion``.

    ``request`` is the client's Responses request, whose fields the real API echoes
    (instructions, tools, temperature...). Raises :class:`UpstreamBroken` when the
    body is not a chat completion.
    """
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamBroken("The upstream answer was not a chat completion (no choices).")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise UpstreamBroken("The upstream answer was not a chat completion (no message).")
    finish_reason = choice.get("finish_reason")
    reason = INCOMPLETE_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    status = "incomplete" if reason else "completed"
    output: list[dict[str, Any]] = []
    reasoning = _reasoning_text(message)
    if reasoning:
        output.append(reasoning_item(ids("rs"), reasoning))
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, list):  # some backends answer with text parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if isinstance(text, str) and text:
        content.append(output_text(text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "refusal", "refusal": refusal})
    if content:
        output.append(
            {
                "id": ids("msg"),
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": content,
            }
        )
    for call in message.get("tool_calls") or []:
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise UpstreamBroken("The upstream answer had a malformed tool call.")
        function = call["function"]
        call_id = call.get("id")
        output.append(
            call_item(
                ids,
                tool_names,
                name=function.get("name") or "",
                call_id=call_id if isinstance(call_id, str) and call_id else ids("call"),
                arguments=function.get("arguments") or "",
            )
        )
    usage = body.get("usage")
    return response_object(
        response_id=response_id,
        created_at=created_at,
        model=model,
        status=status,
        output=output,
        usage=chat_usage_to_response(usage) if isinstance(usage, dict) else None,
        request=request,
        incomplete_reason=reason,
    )


def response_object(
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    request: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object, echoing the request fields the real API echoes."""
    request = request or {}
    reasoning = _dict(request.get("reasoning"))
    text = _dict(request.get("text"))
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, **text},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": usage,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def output_text(text: str) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    """A finished ``reasoning`` item whose summary is the backend's reasoning text."""
    return {
        "id": item_id,
        "type": "reasoning",
        "status": "completed",
        "summary": [{"type": "summary_text", "text": text}],
    }


def call_item(
    ids: Callable[[str], str], tool_names: ToolNames, *, name: str, call_id: str, arguments: str
) -> dict[str, Any]:
    """A finished ``function_call`` or ``custom_tool_call`` item for one chat tool call."""
    original, namespace, kind = tool_names.restore(name)
    item: dict[str, Any]
    if kind == "custom":
        item = {
            "id": ids("ctc"),
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": call_id,
            "name": original,
            "input": custom_input(arguments),
        }
    else:
        item = {
            "id": ids("fc"),
            "type": "function_call",
            "status": "completed",
            "call_id": call_id,
            "name": original,
            "arguments": arguments or "{}",
        }
    if namespace is not None:
        item["namespace"] = namespace
    return item


def custom_input(arguments: str) -> str:
    """A custom tool's raw input from the chat arguments ``{"input": "..."}``.

    A model that ignored the wrapper and wrote the input itself gets it back as is.
    """
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, dict) and isinstance(parsed.get("input"), str):
        value: str = parsed["input"]
        return value
    return arguments


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _reasoning_text(message: dict[str, Any]) -> str:
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def chat_usage_to_response(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI chat usage as Responses usage (counts the backend left out are 0)."""
    prompt = _dict(usage.get("prompt_tokens_details"))
    completion = _dict(usage.get("completion_tokens_details"))
    input_tokens = _count(usage.get("prompt_tokens"))
    output_tokens = _count(usage.get("completion_tokens"))
    total = usage.get("total_tokens")
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": _count(prompt.get("cached_tokens")),
            # OpenRouter's (and wlm's Anthropic adapter's) extension to chat usage
            "cache_write_tokens": _count(prompt.get("cache_write_tokens")),
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": _count(completion.get("reasoning_tokens"))},
        "total_tokens": _count(total) if total is not None else input_tokens + output_tokens,
    }


def response_usage_to_chat(usage: dict[str, Any]) -> dict[str, Any]:
    """A Responses usage object as OpenAI chat usage, for telemetry on pass-through.

    Details appear only when the Responses usage had them.

    >>> response_usage_to_chat({"input_tokens": 5, "output_tokens": 2, "total_tokens": 7,
    ...     "input_tokens_details": {"cached_tokens": 1}})
    {'prompt_tokens': 5, 'completion_tokens': 2, 'total_tokens': 7, 'prompt_tokens_details': {'cached_tokens': 1}}
    """
    input_tokens = _count(usage.get("input_tokens"))
    output_tokens = _count(usage.get("output_tokens"))
    total = usage.get("total_tokens")
    chat: dict[str, Any] = {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": _count(total) if total is not None else input_tokens + output_tokens,
    }
    details = _dict(usage.get("input_tokens_details"))
    prompt = {
        key: _count(details[key])
        for key in ("cached_tokens", "cache_write_tokens")
        if details.get(key) is not None
    }
    if prompt:
        chat["prompt_tokens_details"] = prompt
    reasoning = _dict(usage.get("output_tokens_details")).get("reasoning_tokens")
    if reasoning is not None:
        chat["completion_tokens_details"] = {"reasoning_tokens": _count(reasoning)}
    return chat
