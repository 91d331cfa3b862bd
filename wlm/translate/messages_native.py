"""A Messages request made fit for a native Anthropic upstream (pure, no I/O).

Clients send what Anthropic's API may refuse: Claude Code puts a ``role: "system"``
message inside ``messages`` for a model it does not know. Such messages move to the
top-level ``system`` (after what was there), in order; nothing else changes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["for_anthropic"]


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
