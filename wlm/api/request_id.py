"""Every response carries ``x-request-id`` (the client's, or a new one).

The proxied endpoints set it themselves; this ``before_send`` hook covers every
other response, errors for unknown paths included.
"""

from __future__ import annotations

from typing import Any

from litestar.types import Message, Scope

__all__ = ["add_request_id"]

_HEADER = b"x-request-id"


async def add_request_id(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start":
        return
    headers: Any = message.setdefault("headers", [])  # type: ignore[typeddict-item]
    for key, _ in headers:
        if key.lower() == _HEADER:
            return
    request_id = next((v for k, v in scope.get("headers", ()) if k == _HEADER), None)
    if request_id is None:
        request_id = scope["litestar_app"].state.gateway.new_request_id().encode()  # type: ignore[typeddict-item]
    if isinstance(headers, list):
        headers.append((_HEADER, request_id))
    else:  # Litestar may hand over an immutable sequence
        message["headers"] = [*headers, (_HEADER, request_id)]  # type: ignore[typeddict-unknown-key]
