"""Facts about a parsed Chat Completions stream chunk that every translation asks.

Most chunks of a stream carry a bit of answer text and nothing else; the stream
translators answer those on a short path (:func:`plain_text_delta`) and give every
other chunk their full reading.
"""

from __future__ import annotations

from typing import Any

__all__ = ["plain_text_delta"]

# Delta fields that may come along with text without meaning anything (null or empty).
_QUIET = frozenset({"role", "content"})


def plain_text_delta(chunk: dict[str, Any]) -> str | None:
    """The text of a chunk whose only news is answer text of choice 0; None for any
    other chunk (usage, an error, a finish reason, tool calls, reasoning, refusal,
    several choices, odd types)."""
    if type(chunk) is not dict:
        return None
    choices = chunk.get("choices")
    if (
        type(choices) is not list
        or len(choices) != 1
        or chunk.get("usage") is not None
        or chunk.get("error")
    ):
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason") or choice.get("index", 0) != 0:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict:
        return None
    text = delta.get("content")
    if type(text) is not str or not text:
        return None
    if len(delta) > 1:
        for key, value in delta.items():
            if value and key not in _QUIET:
                return None
    return text
