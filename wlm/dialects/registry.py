"""The dialects of one gateway, and which dialect each proxied endpoint speaks."""

from __future__ import annotations

from collections.abc import Mapping

from wlm.dialects.base import Dialect
from wlm.dialects.chat import ChatDialect
from wlm.dialects.messages import MessagesDialect
from wlm.dialects.rerank import RerankDialect
from wlm.dialects.response_store import ResponseStore
from wlm.dialects.responses import ResponsesDialect

__all__ = ["PROXIED_ENDPOINTS", "build_dialects"]

# Proxied endpoints (the path after /v1/), each with the name of its dialect.
PROXIED_ENDPOINTS: Mapping[str, str] = {
    "chat/completions": "chat",
    "completions": "chat",
    "embeddings": "chat",
    "messages": "messages",
    "messages/count_tokens": "messages",
    "responses": "responses",
    "rerank": "rerank",
}


def build_dialects(store: ResponseStore) -> dict[str, Dialect]:
    """Endpoint -> dialect, for one gateway (the Responses dialect keeps its responses)."""
    by_name: dict[str, Dialect] = {
        "chat": ChatDialect(),
        "messages": MessagesDialect(),
        "responses": ResponsesDialect(store),
        "rerank": RerankDialect(),
    }
    return {endpoint: by_name[name] for endpoint, name in PROXIED_ENDPOINTS.items()}
