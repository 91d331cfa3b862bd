"""Errors for a client that speaks Anthropic Messages.

An Anthropic error body is ``{"type": "error", "error": {"type", "message"}}``; in a
stream the same object is the data of an ``event: error`` SSE event. The error type
follows the HTTP status (Anthropic's table, ``shared/wire/WIRE.md`` §2.4): 400
``invalid_request_error`` (also any other 4xx without a type of its own, 408 and 409
included), 401 ``authentication_error``, 402 ``billing_error``, 403
``permission_error``, 404 ``not_found_error``, 413 ``request_too_large``, 429
``rate_limit_error``, 500 and other 5xx ``api_error``, 503 and 529
``overloaded_error``, 504 ``timeout_error``. The status itself is kept: Anthropic's
SDKs choose their exception class (and whether to retry) by status, not by type.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["error_type_for", "messages_error", "messages_error_event", "messages_error_of_chat"]

_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# OpenAI (and OpenRouter, llama.cpp) error types -> Anthropic error types. Used only to
# refine a status whose own type is the generic one of its class.
_TYPE_BY_OPENAI_TYPE: dict[str, str] = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "insufficient_quota": "billing_error",
    "exceed_context_size_error": "invalid_request_error",
    "server_error": "api_error",
    "upstream_error": "api_error",
    "api_error": "api_error",
    "service_unavailable": "overloaded_error",
    "unavailable_error": "overloaded_error",
    "overloaded_error": "overloaded_error",
    "timeout": "timeout_error",
    "timeout_error": "timeout_error",
}
_CLIENT_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
    }
)
_GENERIC = frozenset({"invalid_request_error", "api_error"})


def error_type_for(status: int, openai_type: str | None = None) -> str:
    """The Anthropic error type for an HTTP status, refined by an OpenAI error type.

    The status decides; ``openai_type`` only replaces the generic type of the
    status's class (``invalid_request_error`` for 4xx, ``api_error`` for 5xx) with a
    more precise one of the same class.

    >>> error_type_for(404, "invalid_request_error"), error_type_for(500, "timeout")
    ('not_found_error', 'timeout_error')
    """
    if 400 <= status < 500:
        by_status = _TYPE_BY_STATUS.get(status, "invalid_request_error")
    else:
        by_status = _TYPE_BY_STATUS.get(status, "api_error")
    refined = _TYPE_BY_OPENAI_TYPE.get(openai_type or "")
    same_class = refined is not None and (refined in _CLIENT_TYPES) == (by_status in _CLIENT_TYPES)
    if by_status in _GENERIC and refined is not None and same_class:
        return refined
    return by_status


def messages_error(
    status: int, message: str, openai_type: str | None = None
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Anthropic error body) for a failure before a response began.

    A status that is not an error status (below 400 or above 599) becomes 500.

    >>> messages_error(429, "Slow down")
    (429, {'type': 'error', 'error': {'type': 'rate_limit_error', 'message': 'Slow down'}})
    """
    if not 400 <= status <= 599:
        status = 500
    body = {
        "type": "error",
        "error": {"type": error_type_for(status, openai_type), "message": message},
    }
    return status, body


def messages_error_event(status: int, message: str, openai_type: str | None = None) -> bytes:
    """The same error as an ``event: error`` SSE event, for a stream already begun."""
    _, body = messages_error(status, message, openai_type)
    return b"event: error\ndata: " + msgspec.json.encode(body) + b"\n\n"


def messages_error_of_chat(error: Any) -> dict[str, Any]:
    """The Anthropic ``error`` event data for an error a chat stream sent mid-stream.

    ``error`` is the value of the chunk's ``error`` key: OpenAI's ``{"message",
    "type", "code"}``, OpenRouter's ``{"code": <int or str>, "message"}`` or
    llama.cpp's ``{"code": <status>, "message", "type"}``. An integer code is read as
    an HTTP status; without one the error is an ``api_error``.
    """
    message = ""
    if not isinstance(error, dict):
        message = str(error) if error else ""
        error = {}
    elif isinstance(error.get("message"), str):
        message = error["message"]
    code = error.get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) else 500
    openai_type = error.get("type") if isinstance(error.get("type"), str) else None
    if not 400 <= status <= 599:
        status = 500
    return {
        "type": "error",
        "error": {
            "type": error_type_for(status, openai_type),
            "message": message or "The upstream reported an error in the stream.",
        },
    }
