"""An Anthropic Messages response as an OpenAI ``chat.completion``.

Also home of the two mappings the stream translator shares: ``stop_reason`` ->
``finish_reason`` and Anthropic usage -> OpenAI usage.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "FINISH_REASONS",
    "finish_reason_from",
    "from_anthropic_response",
    "tool_arguments",
    "usage_from",
]

# Anthropic stop_reason -> OpenAI finish_reason. Anything unknown (a stop reason added
# after this table was written) maps to "stop", as a turn that ended normally.
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # A server-tool turn was paused; OpenAI has no "resume" notion, the turn ended.
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}


def finish_reason_from(stop_reason: str | None) -> str:
    """The OpenAI ``finish_reason`` for an Anthropic ``stop_reason``."""
    if stop_reason is None:
        return "stop"
    return FINISH_REASONS.get(stop_reason, "stop")


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI ``usage`` from an Anthropic ``usage`` object.

    Anthropic counts cached input apart from ``input_tokens``; OpenAI's
    ``prompt_tokens`` includes it, so ``prompt_tokens = input + cache_creation +
    cache_read``. ``cached_tokens`` is the cache read; ``cache_write_tokens`` (an
    OpenRouter-style extension) the cache creation. ``reasoning_tokens`` appears only
    when Anthropic reports ``output_tokens_details.thinking_tokens``.
    """
    cache_write = _count(usage, "cache_creation_input_tokens")
    cache_read = _count(usage, "cache_read_input_tokens")
    prompt = _count(usage, "input_tokens") + cache_write + cache_read
    completion = _count(usage, "output_tokens")
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
    }
    details = usage.get("output_tokens_details")
    if isinstance(details, dict):
        thinking = details.get("thinking_tokens")
        if isinstance(thinking, int) and not isinstance(thinking, bool):
            result["completion_tokens_details"] = {"reasoning_tokens": thinking}
    return result


def tool_arguments(tool_input: Any) -> str:
    """A ``tool_use`` input as OpenAI's compact JSON ``arguments`` string."""
    return json.dumps(tool_input, separators=(",", ":"), ensure_ascii=False)


def from_anthropic_response(body: dict[str, Any], *, model: str, created: int) -> dict[str, Any]:
    """Turn an Anthropic ``message`` into an OpenAI ``chat.completion`` dict.

    ``model`` is the name the client asked for; ``created`` the gateway's clock (Anthropic
    sends no timestamp). Text blocks are concatenated into ``content`` (``None`` when
    there are none), ``tool_use`` blocks become ``tool_calls`` with their ids kept,
    thinking text goes to ``reasoning_content``, and thinking blocks with their
    signatures are kept in ``thinking_blocks`` so a client can send them back (see
    ``docs/providers/anthropic.md``). Other block types (server tools) are skipped.
    """
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    thinking_blocks: list[dict[str, Any]] = []
    for block in body.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": tool_arguments(block.get("input") or {}),
                    },
                }
            )
        elif kind == "thinking":
            if isinstance(block.get("thinking"), str):
                reasoning.append(block["thinking"])
            thinking_blocks.append(
                {
                    "type": "thinking",
                    "thinking": block.get("thinking", ""),
                    "signature": block.get("signature", ""),
                }
            )
        elif kind == "redacted_thinking":
            thinking_blocks.append({"type": "redacted_thinking", "data": block.get("data", "")})

    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    usage = body.get("usage")
    return {
        "id": f"chatcmpl-{body.get('id', '')}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason_from(body.get("stop_reason")),
            }
        ],
        "usage": usage_from(usage if isinstance(usage, dict) else {}),
    }
