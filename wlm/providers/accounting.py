"""What a response said, learned from OpenAI-shaped chunks or bodies as they pass.

One :class:`ResponseAccount` per request collects usage, finish reason, llama.cpp
timings, a mid-stream error and (when content logging is on) the assembled text
and tool calls. It never changes what is sent to the client.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wlm.errors import Failure
from wlm.providers.chunks import Chunk

__all__ = ["ResponseAccount"]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ResponseAccount:
    """Accumulates the facts telemetry needs from one response."""

    __slots__ = (
        "_pieces",
        "_reasoning",
        "_text",
        "_tool_calls",
        "error",
        "finish_reason",
        "keep_content",
        "timings",
        "upstream_model",
        "usage",
    )

    def __init__(self, keep_content: bool = True) -> None:
        self.keep_content = keep_content
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.timings: dict[str, Any] | None = None
        self.error: Failure | None = None  # a failure inside a stream begun with 200
        self.upstream_model: str | None = None
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._pieces = 0  # text and reasoning pieces relayed, content kept or not
        self._tool_calls: dict[int, dict[str, Any]] = {}

    def add_chunk(self, chunk: Chunk) -> bool:
        """Learn from one stream chunk; True when it carried generated tokens."""
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.timings is not None:
            self.timings = chunk.timings
        if chunk.error:
            self.error = Failure.from_event(chunk.error, str)
        if self.upstream_model is None and chunk.model is not None:
            self.upstream_model = chunk.model
        if not chunk.choices:
            return False
        bears_tokens = False
        keep = self.keep_content
        for choice in chunk.choices:
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            delta = choice.delta
            if delta is None:
                if choice.text:  # legacy completions stream
                    bears_tokens = True
                    self._pieces += 1
                    if keep:
                        self._text.append(choice.text)
                continue
            if delta.content:
                bears_tokens = True
                self._pieces += 1
                if keep:
                    self._text.append(delta.content)
            reasoning = delta.reasoning_content or delta.reasoning
            if reasoning:
                bears_tokens = True
                self._pieces += 1
                if keep:
                    self._reasoning.append(reasoning)
            if delta.tool_calls:
                bears_tokens = True
                if keep:
                    self._add_tool_fragments(delta.tool_calls)
        return bears_tokens

    def pieces(self) -> int | None:
        """Text and reasoning pieces relayed so far (about a token each from a llama.cpp
        stream), whether or not the content is kept."""
        return self._pieces

    def add_text(self, text: str) -> None:
        """Generated text read from another dialect's events (kept when logging content)."""
        self._pieces += 1
        if self.keep_content:
            self._text.append(text)

    def add_reasoning(self, text: str) -> None:
        """Reasoning read from another dialect's events (kept when logging content)."""
        self._pieces += 1
        if self.keep_content:
            self._reasoning.append(text)

    def add_tool_calls(self, calls: Iterable[dict[str, Any]]) -> None:
        """Whole tool calls (OpenAI shape) read from another dialect's events."""
        if self.keep_content:
            for call in calls:
                self._tool_calls[len(self._tool_calls)] = call

    def _add_tool_fragments(self, fragments: list[Any]) -> None:
        for fragment in fragments:
            if not isinstance(fragment, dict):
                continue
            index = fragment.get("index", 0)
            call = self._tool_calls.setdefault(
                index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if fragment.get("id"):
                call["id"] = fragment["id"]
            function = fragment.get("function") or {}
            if function.get("name"):
                call["function"]["name"] += function["name"]
            if function.get("arguments"):
                call["function"]["arguments"] += function["arguments"]

    def add_response(self, body: dict[str, Any]) -> None:
        """Learn from a whole (non-stream) response body."""
        usage = body.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        timings = body.get("timings")
        if isinstance(timings, dict):
            self.timings = timings
        if isinstance(body.get("model"), str):
            self.upstream_model = body["model"]
        for choice in body.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            if not self.keep_content:
                continue
            message = choice.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("content"), str):
                    self._text.append(message["content"])
                reasoning = message.get("reasoning_content") or message.get("reasoning")
                if isinstance(reasoning, str):
                    self._reasoning.append(reasoning)
                for index, call in enumerate(message.get("tool_calls") or ()):
                    self._tool_calls[index] = call
            elif isinstance(choice.get("text"), str):
                self._text.append(choice["text"])

    # -- what telemetry reads ------------------------------------------------------

    @property
    def text(self) -> str | None:
        return "".join(self._text) if self._text else None

    @property
    def reasoning(self) -> str | None:
        return "".join(self._reasoning) if self._reasoning else None

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [self._tool_calls[i] for i in sorted(self._tool_calls)]

    def token_counts(self) -> dict[str, Any]:
        """prompt/completion/total/cached/reasoning tokens and cost; None when unknown."""
        usage = self.usage or {}
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        total = _int(usage.get("total_tokens"))
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        cost = usage.get("cost")
        cache_write = usage.get("cache_creation_input_tokens")  # Anthropic's, kept by wlm
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": total,
            "cached_tokens": _int(prompt_details.get("cached_tokens"))
            if isinstance(prompt_details, dict)
            else None,
            "reasoning_tokens": _int(completion_details.get("reasoning_tokens"))
            if isinstance(completion_details, dict)
            else None,
            "cost_usd": float(cost) if isinstance(cost, int | float) else None,
            "cache_write_tokens": _int(cache_write)
            if cache_write is not None
            else _int(prompt_details.get("cache_write_tokens"))
            if isinstance(prompt_details, dict)
            else None,
        }
