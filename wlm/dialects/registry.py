"""Which dialect each proxied endpoint speaks."""

from __future__ import annotations

from collections.abc import Mapping

from wlm.dialects.base import Dialect
from wlm.dialects.chat import ChatDialect

__all__ = ["DIALECTS", "ENDPOINT_DIALECTS", "dialect_for"]

_CHAT = ChatDialect()

DIALECTS: Mapping[str, Dialect] = {"chat": _CHAT}

# Proxied endpoint (the path after /v1/) -> the dialect of its requests and answers.
ENDPOINT_DIALECTS: Mapping[str, Dialect] = {
    "chat/completions": _CHAT,
    "completions": _CHAT,
    "embeddings": _CHAT,
}


def dialect_for(endpoint: str) -> Dialect:
    return ENDPOINT_DIALECTS[endpoint]
