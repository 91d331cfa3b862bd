"""Native Messages, made fit both ways (pure, no I/O).

On the way to Anthropic: clients send what Anthropic's API may refuse. Claude Code
puts a ``role: "system"`` message inside ``messages`` for a model it does not know.
Such messages move to the top-level ``system`` (after what was there), in order;
nothing else changes (:func:`for_anthropic`).

On the way to a llama.cpp engine: it drops ``document`` blocks, so plain-text ones go
as text, and Claude Code's per-request billing line leaves the system prompt
(:func:`for_llama_cpp`). On the way back: its stream keeps several content
blocks open at once and numbers them in advance (:class:`MendMessagesStream`).
"""

from __future__ import annotations

from typing import Any

from wlm.translate.messages_errors import messages_error_of_chat
from wlm.translate.messages_request import BILLING_HEADER_PREFIX

__all__ = ["MendMessagesStream", "for_anthropic", "for_llama_cpp"]


def _blocks(system: Any) -> list[Any]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"type": "text", "text": system}] if system else []
    return list(system) if isinstance(system, list) else [system]


def for_anthropic(body: dict[str, Any], upstream_model: str) -> dict[str, Any] | None:
    """``body`` with ``model`` set to ``upstream_model`` and any system messages moved to
    ``system``; None when nothing needs to change (the raw bytes can go as they are).

    >>> for_anthropic({"model": "m", "system": "A", "messages": [
    ...     {"role": "system", "content": "B"}, {"role": "user", "content": "hi"}]}, "m")
    {'model': 'm', 'system': [{'type': 'text', 'text': 'A'}, {'type': 'text', 'text': 'B'}], 'messages': [{'role': 'user', 'content': 'hi'}]}
    >>> for_anthropic({"model": "m", "messages": []}, "m") is None
    True
    """
    messages = body.get("messages")
    systems = (
        [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
        if isinstance(messages, list)
        else []
    )
    if not systems and body.get("model") == upstream_model:
        return None
    out = {**body, "model": upstream_model}
    if systems and isinstance(messages, list):
        moved = _blocks(body.get("system"))
        for message in systems:
            moved += _blocks(message.get("content"))
        out["system"] = moved
        out["messages"] = [
            m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")
        ]
    return out


def _text_documents(content: Any) -> list[Any] | None:
    """``content`` with its plain-text ``document`` blocks (tool results' too) as
    ``text`` blocks; None when it has none."""
    if not isinstance(content, list):
        return None
    out: list[Any] | None = None
    for index, block in enumerate(content):
        if not isinstance(block, dict):
            continue
        fixed: Any = None
        if block.get("type") == "document":
            source = block.get("source")
            if isinstance(source, dict) and source.get("type") == "text":
                data = source.get("data")
                if isinstance(data, str):
                    fixed = {"type": "text", "text": data}
        elif block.get("type") == "tool_result":
            inner = _text_documents(block.get("content"))
            if inner is not None:
                fixed = {**block, "content": inner}
        if fixed is not None:
            out = out if out is not None else list(content)
            out[index] = fixed
    return out


def _without_billing_line(system: Any) -> Any:
    """``system`` without Claude Code's billing line; the same object when it has none."""
    if isinstance(system, str):
        if not system.startswith(BILLING_HEADER_PREFIX):
            return system
        return system.partition("\n")[2]
    if not isinstance(system, list) or not system:
        return system
    first = system[0]
    text = first.get("text") if isinstance(first, dict) else None
    if not isinstance(text, str) or not text.startswith(BILLING_HEADER_PREFIX):
        return system
    rest = text.partition("\n")[2]
    return [{**first, "text": rest}, *system[1:]] if rest else system[1:]


def for_llama_cpp(body: dict[str, Any]) -> dict[str, Any] | None:
    """``body`` as the engine should get it; None when it can go as it came.

    Plain-text documents become text blocks, which the engine reads (it drops
    ``document`` blocks). Claude Code's ``x-anthropic-billing-header`` line goes from
    the system prompt: its hash changes per request, which would defeat the engine's
    prompt cache (the translation drops it too).

    >>> for_llama_cpp({"messages": [{"role": "user", "content": [{"type": "document",
    ...     "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}]}]})
    {'messages': [{'role': 'user', 'content': [{'type': 'text', 'text': 'notes'}]}]}
    """
    out: dict[str, Any] | None = None
    system = body.get("system")
    kept = _without_billing_line(system)
    if kept is not system:
        out = {**body, "system": kept}
    messages = body.get("messages")
    if not isinstance(messages, list):
        return out
    fixed: list[Any] | None = None
    for index, message in enumerate(messages):
        content = _text_documents(message.get("content")) if isinstance(message, dict) else None
        if content is not None:
            fixed = fixed if fixed is not None else list(messages)
            fixed[index] = {**message, "content": content}
    if fixed is not None:
        out = {**(out or body), "messages": fixed}
    return out


class MendMessagesStream:
    """llama.cpp's Messages stream with one content block open at a time.

    The engine numbers blocks in advance (thinking 0, text next, tool calls after) and
    stops them all at the end, so a text block stays open while a tool call streams,
    and text after a tool call would reuse an index. Anthropic's clients read a
    block by its index in the message's content. Here each ``content_block_start``
    closes the open block first and gets the next index; the engine's later stop of
    a block closed early is dropped (so is a late ``signature_delta``: a thinking
    block closed early got its empty signature then, as the engine gives one); a
    delta for a block closed early opens a new block of its kind. An engine error in
    chat's shape (``{"error": {...}}``) becomes Anthropic's ``error`` event.

    ``feed`` returns None when the event goes as it came, else the events to send.
    """

    __slots__ = ("_blocks", "_closed", "_kinds", "_next", "_open", "_signed")

    def __init__(self) -> None:
        self._blocks: dict[int, int] = {}  # the engine's index -> the client's index
        self._kinds: dict[int, str] = {}  # the engine's index -> block type
        self._closed: set[int] = set()  # the engine's indexes closed early
        self._signed: set[int] = set()  # thinking blocks whose signature came
        self._open: int | None = None  # the engine's index of the open block
        self._next = 0

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]] | None:
        kind = event.get("type")
        if kind is None and "error" in event:
            # An engine error mid-stream, as its chat streams send it.
            return [*self._close(), messages_error_of_chat(event["error"])]
        index = event.get("index")
        if kind == "content_block_start" and isinstance(index, int):
            block = event.get("content_block")
            out = self._close()
            self._start(index, block.get("type") if isinstance(block, dict) else None)
            if not out and self._blocks[index] == index:
                return None
            return [*out, {**event, "index": self._blocks[index]}]
        if kind == "content_block_delta" and isinstance(index, int):
            return self._delta(event, index)
        if kind == "content_block_stop" and isinstance(index, int):
            if index in self._closed or index not in self._blocks:
                return []
            if index == self._open:
                self._open = None
            self._closed.add(index)
            if self._blocks[index] == index:
                return None
            return [{**event, "index": self._blocks[index]}]
        if kind in ("message_delta", "message_stop"):
            out = self._close()
            return [*out, event] if out else None
        return None

    def _start(self, index: int, kind: Any) -> None:
        self._blocks[index] = self._next
        self._kinds[index] = kind if isinstance(kind, str) else "text"
        self._closed.discard(index)
        self._open = index
        self._next += 1

    def _delta(self, event: dict[str, Any], index: int) -> list[dict[str, Any]] | None:
        delta = event.get("delta")
        delta_type = delta.get("type") if isinstance(delta, dict) else None
        if index in self._closed or index not in self._blocks:
            if delta_type == "signature_delta":
                return []  # given when the block closed early
            # More of a block closed early (or never started): a new block of its kind.
            kind = {"thinking_delta": "thinking", "input_json_delta": "tool_use"}.get(
                str(delta_type), "text"
            )
            if kind == "tool_use":
                return []  # a tool call cannot be reopened without its id and name
            out = self._close()
            self._start(index, kind)
            start = {"type": "content_block_start", "index": self._blocks[index]}
            start["content_block"] = {"type": kind, kind: ""}
            return [*out, start, {**event, "index": self._blocks[index]}]
        if delta_type == "signature_delta":
            self._signed.add(index)
        if self._blocks[index] == index:
            return None
        return [{**event, "index": self._blocks[index]}]

    def _close(self) -> list[dict[str, Any]]:
        """The events that close the open block, if any."""
        index = self._open
        if index is None:
            return []
        self._open = None
        self._closed.add(index)
        ours = self._blocks[index]
        out: list[dict[str, Any]] = []
        if self._kinds.get(index) == "thinking" and index not in self._signed:
            out.append(
                {
                    "type": "content_block_delta",
                    "index": ours,
                    "delta": {"type": "signature_delta", "signature": ""},
                }
            )
        return [*out, {"type": "content_block_stop", "index": ours}]
