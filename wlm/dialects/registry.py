"""Which dialect each proxied endpoint speaks."""

from __future__ import annotations

from collections.abc import Mapping

from wlm.dialects.base import Dialect
from wlm.dialects.chat import ChatDialect
from wlm.dialects.messages import MessagesDialect

__all__ = ["DIALECTS", "ENDPOINT_DIALECTS", "dialect_for"]

_CHAT = ChatDialect()
_MESSAGES = MessagesDialect()

DIALECTS: Mapping[str, Dialect] = {"chat": _CHAT, "messages": _MESSAGES}

# Proxied endpoint (the path after /v1/) -> the dialect of its requests and answers.
ENDPOINT_DIALECTS: Mapping[str, Dialect] = {
    "chat/completions": _CHAT,
    "completions": _CHAT,
    "embeddings": _CHAT,
    "messages": _MESSAGES,
    "messages/count_tokens": _MESSAGES,
}


def dialect_for(endpoint: str) -> Dialect:
    return ENDPOINT_DIALECTS[endpoint]
