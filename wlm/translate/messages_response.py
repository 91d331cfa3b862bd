"""An OpenAI ``chat.completion`` as an Anthropic Messages ``message``.

Also home of what the stream translator shares: ``finish_reason`` -> ``stop_reason``
and the two usage conversions (chat -> Anthropic, Anthropic -> chat for telemetry).

Usage: Anthropic's ``input_tokens`` excludes cache reads and writes, OpenAI's
``prompt_tokens`` includes them. A count the upstream did not report stays absent;
only ``input_tokens`` and ``output_tokens``, which Anthropic's schema requires, are
0 when unknown.
"""

from __future__ import annotations

import json
from typing import Any

from wlm.errors import UpstreamBroken
from wlm.translate.anthropic_response import tool_arguments

__all__ = [
    "STOP_REASONS",
    "chat_to_messages_response",
    "chat_usage_of_messages",
    "messages_usage_of_chat",
    "stop_reason_from",
    "tool_input_of",
]

# OpenAI finish_reason -> Anthropic stop_reason. OpenAI does not say whether a stop
# sequence ended the turn (nor which), so "stop" is always end_turn.
STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason_from(finish_reason: Any, *, has_tool_calls: bool = False) -> str:
    """The Anthropic ``stop_reason`` for a chat ``finish_reason``.

    Some backends end a turn that made tool calls with ``stop``; a client that sees
    ``end_turn`` would not run the tools, so a turn with tool calls that did not run
    out of tokens is ``tool_use``. Unknown reasons are ``end_turn``.
    """
    reason = (
        STOP_REASONS.get(finish_reason, "end_turn")
        if isinstance(finish_reason, str)
        else "end_turn"
    )
    if has_tool_calls and reason == "end_turn":
        return "tool_use"
    return reason


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def messages_usage_of_chat(usage: Any) -> dict[str, Any]:
    """Anthropic ``usage`` from an OpenAI ``usage`` object (None: nothing known).

    ``input_tokens = prompt_tokens - cached_tokens - cache_write_tokens`` (the latter
    an OpenRouter extension); ``cache_read_input_tokens`` and
    ``cache_creation_input_tokens`` appear only when the upstream reported them.

    >>> messages_usage_of_chat({"prompt_tokens": 10, "completion_tokens": 2,
    ...                         "prompt_tokens_details": {"cached_tokens": 8}})
    {'input_tokens': 2, 'output_tokens': 2, 'cache_read_input_tokens': 8}
    """
    if not isinstance(usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cache_read = _count(details.get("cached_tokens"))
    cache_write = _count(details.get("cache_write_tokens"))
    prompt = _count(usage.get("prompt_tokens")) or 0
    out: dict[str, Any] = {
        "input_tokens": max(0, prompt - (cache_read or 0) - (cache_write or 0)),
        "output_tokens": _count(usage.get("completion_tokens")) or 0,
    }
    if cache_read is not None:
        out["cache_read_input_tokens"] = cache_read
    if cache_write is not None:
        out["cache_creation_input_tokens"] = cache_write
    return out


def chat_usage_of_messages(usage: Any) -> dict[str, Any]:
    """OpenAI-shaped ``usage`` (as wlm's telemetry reads it) from an Anthropic one.

    ``prompt_tokens = input + cache_read + cache_creation``; ``cached_tokens`` is the
    cache read, ``cache_write_tokens`` the cache creation, ``reasoning_tokens`` comes
    from ``output_tokens_details.thinking_tokens``. Details Anthropic did not report
    are left out rather than set to 0.

    >>> chat_usage_of_messages({"input_tokens": 2, "output_tokens": 5,
    ...                         "cache_read_input_tokens": 8})
    {'prompt_tokens': 10, 'completion_tokens': 5, 'total_tokens': 15, 'prompt_tokens_details': {'cached_tokens': 8}}
    """
    if not isinstance(usage, dict):
        usage = {}
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    prompt = (_count(usage.get("input_tokens")) or 0) + (cache_read or 0) + (cache_write or 0)
    completion = _count(usage.get("output_tokens")) or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    prompt_details: dict[str, int] = {}
    if cache_read is not None:
        prompt_details["cached_tokens"] = cache_read
    if cache_write is not None:
        prompt_details["cache_write_tokens"] = cache_write
    if prompt_details:
        out["prompt_tokens_details"] = prompt_details
    output_details = usage.get("output_tokens_details")
    if isinstance(output_details, dict):
        thinking = _count(output_details.get("thinking_tokens"))
        if thinking is not None:
            out["completion_tokens_details"] = {"reasoning_tokens": thinking}
    return out


def tool_input_of(arguments: Any) -> dict[str, Any] | None:
    """A tool call's ``arguments`` text as a ``tool_use`` input; None if not an object.

    A JSON object encoded twice (a JSON string holding it, which some models emit) is
    unwrapped. Empty or missing arguments are ``{}``.
    """
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        return None
    try:
        value = json.loads(arguments)
        if isinstance(value, str):
            value = json.loads(value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text_of(content: Any) -> str:
    """Message content (a string or text parts) as one string."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def chat_to_messages_response(
    body: dict[str, Any], *, model: str, message_id: str
) -> dict[str, Any]:
    """Turn an OpenAI ``chat.completion`` into an Anthropic ``message`` dict.

    ``model`` is the name the client asked for, ``message_id`` the id to give the
    message (``msg_...``, minted by the caller). Blocks, in order: one ``thinking``
    block from ``reasoning_content`` (or OpenRouter's ``reasoning``) with an empty
    ``signature`` (a chat backend signs nothing), one ``text`` block from ``content``
    (or ``refusal``), then one ``tool_use`` block per tool call with its id kept.
    Tool arguments that are not a JSON object become ``input: {}``, and the text they
    held is kept in a ``text`` block just before that ``tool_use`` block, so neither
    the user nor the model loses it. Only the first choice is read. Raises
    :class:`~wlm.errors.UpstreamBroken` when the body has no choice to read.
    """
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamBroken("The upstream answer had no choices.")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise UpstreamBroken("The upstream answer had no message.")
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _text_of(message.get("content"))
    refusal = message.get("refusal")
    if not text and isinstance(refusal, str):
        text = refusal
    if text:
        content.append({"type": "text", "text": text})
    tool_calls = message.get("tool_calls")
    calls = (
        [call for call in tool_calls if isinstance(call, dict)]
        if isinstance(tool_calls, list)
        else []
    )
    for n, call in enumerate(calls):
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name") if isinstance(function.get("name"), str) else ""
        call_id = (
            call.get("id")
            if isinstance(call.get("id"), str) and call["id"]
            else f"toolu_{message_id}_{n}"
        )
        arguments = function.get("arguments")
        tool_input = tool_input_of(arguments)
        if tool_input is None:
            raw = arguments if isinstance(arguments, str) else tool_arguments(arguments)
            content.append(
                {
                    "type": "text",
                    "text": f"[The arguments of tool call {call_id} ({name}) were not a JSON "
                    f"object and were replaced by {{}}: {raw}]",
                }
            )
            tool_input = {}
        content.append({"type": "tool_use", "id": call_id, "name": name, "input": tool_input})
    stop_reason = stop_reason_from(choice.get("finish_reason"), has_tool_calls=bool(calls))
    if stop_reason == "end_turn" and isinstance(refusal, str) and refusal:
        stop_reason = "refusal"
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": messages_usage_of_chat(body.get("usage")),
    }
