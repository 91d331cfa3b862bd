"""Every response carries ``x-request-id`` (the client's, or a new one).

The proxied endpoints set it themselves on the hot path (raw ASGI) and are
excluded here, so their streams are not wrapped; every other route gets it from
this middleware, and responses for unknown paths from the exception handlers.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.middleware import AbstractMiddleware
from litestar.types import Message, Receive, Scope, Send

__all__ = ["HEADER", "RequestIdMiddleware", "request_id_for"]

HEADER = "x-request-id"
_HEADER_BYTES = HEADER.encode()


def request_id_for(request: Request[Any, Any, Any]) -> str:
    """The client's x-request-id, or a new one from the gateway."""
    return request.headers.get(HEADER) or request.app.state.gateway.new_request_id()


class RequestIdMiddleware(AbstractMiddleware):
    exclude = (
        r"^(/api)?/v1/(chat/completions|completions|embeddings|messages|messages/count_tokens"
        r"|responses|rerank|reranking)$|^/rerank(ing)?$"
    )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = next((v for k, v in scope["headers"] if k == _HEADER_BYTES), None)
        if not request_id:
            request_id = scope["litestar_app"].state.gateway.new_request_id().encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if not any(k.lower() == _HEADER_BYTES for k, _ in headers):
                    headers.append((_HEADER_BYTES, request_id))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
