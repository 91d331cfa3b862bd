"""Anthropic error bodies and stream ``error`` events, in OpenAI terms.

Anthropic answers errors with ``{"type": "error", "error": {"type", "message"},
"request_id"}``; mid-stream it sends the same ``error`` object in an ``error`` event
after HTTP 200. Both become OpenAI-shaped errors here: an
:class:`~wlm.errors.UpstreamError` for an HTTP error, an ``{"message", "type",
"param", "code"}`` dict for a stream. Messages are passed through unchanged;
redacting secrets from them is the caller's job.

Status choices (see ``docs/providers/anthropic.md``): 4xx statuses are kept, 500 and
other unexpected 5xx become 502 (the upstream failed, not the gateway), 503 stays, 504
stays, and 529 "overloaded" becomes 503 because OpenAI clients know 503 and not 529.
"""

from __future__ import annotations

import json
from typing import Any

from wlm.errors import UpstreamError

__all__ = ["anthropic_error_to_openai", "stream_error_to_openai"]

# Anthropic error type -> (status shown to the client, OpenAI error type).
_BY_TYPE: dict[str, tuple[int, str]] = {
    "invalid_request_error": (400, "invalid_request_error"),
    "authentication_error": (401, "authentication_error"),
    "billing_error": (402, "insufficient_quota"),
    "permission_error": (403, "permission_error"),
    "not_found_error": (404, "not_found_error"),
    "conflict_error": (409, "invalid_request_error"),
    "request_too_large": (413, "invalid_request_error"),
    "rate_limit_error": (429, "rate_limit_error"),
    "api_error": (502, "server_error"),
    "overloaded_error": (503, "service_unavailable"),
    "timeout_error": (504, "timeout"),
}

# HTTP status -> OpenAI error type, used when the body names no known type.
_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout",
}


def _client_status(status: int) -> int:
    """The status a client sees for an upstream status."""
    if 400 <= status < 500:
        return status
    if status in (503, 529):
        return 503
    if status == 504:
        return 504
    # 500, 501, 502, other 5xx, and anything that is not an error status at all.
    return 502


def _parse_error(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(error type, message, details.error_code) from an Anthropic error body."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None, None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), dict):
        return None, None, None
    error = parsed["error"]
    type_ = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    details = error.get("details")
    detail_code = None
    if isinstance(details, dict) and isinstance(details.get("error_code"), str):
        detail_code = details["error_code"]
    return type_, message, detail_code


def anthropic_error_to_openai(
    status: int, body: bytes, retry_after: str | None = None
) -> UpstreamError:
    """Map an Anthropic HTTP error response to the :class:`UpstreamError` a client sees.

    ``status`` is the upstream HTTP status, ``body`` the raw response body (JSON or
    not: a proxy in front of the API may answer 413 with HTML), ``retry_after`` the
    upstream ``retry-after`` header, which is kept in ``headers``. The error's
    ``code`` is Anthropic's ``error.details.error_code`` when present (e.g. a spend
    limit), else ``rate_limit_exceeded`` for a 429, else Anthropic's error type.

    >>> err = anthropic_error_to_openai(529, b'{"type":"error","error":'
    ...     b'{"type":"overloaded_error","message":"Overloaded"}}', "10")
    >>> err.status, err.type, err.code, err.headers
    (503, 'service_unavailable', 'overloaded_error', {'retry-after': '10'})
    """
    an_type, message, detail_code = _parse_error(body)
    client_status = _client_status(status)
    # Anthropic itself uses invalid_request_error for 4xx statuses it has no type for.
    default_type = "server_error" if client_status >= 500 else "invalid_request_error"
    oa_type = _TYPE_BY_STATUS.get(client_status, default_type)
    if an_type in _BY_TYPE:
        mapped_status, mapped_type = _BY_TYPE[an_type]
        # Keep the HTTP status when it is itself an error status the client understands;
        # the body's type only refines the OpenAI type. A 5xx with a 4xx-looking type,
        # or the reverse, keeps the status it came with.
        if (mapped_status >= 500) == (client_status >= 500):
            oa_type = mapped_type
    code = detail_code or ("rate_limit_exceeded" if status == 429 else an_type)
    if not message:
        snippet = body[:500].decode("utf-8", "replace").strip()
        message = f"Anthropic returned HTTP {status}" + (f": {snippet}" if snippet else ".")
    headers = {"retry-after": retry_after} if retry_after else {}
    return UpstreamError(
        message,
        status=client_status,
        type=oa_type,
        code=code,
        headers=headers,
        upstream_status=status if 400 <= status <= 599 else None,
    )


def stream_error_to_openai(data: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI error object for the payload of an Anthropic stream ``error`` event.

    ``data`` is the event's JSON (``{"type": "error", "error": {"type", "message"}}``).
    The result has the four OpenAI keys; ``code`` keeps Anthropic's error type.
    """
    error = data.get("error")
    if not isinstance(error, dict):
        error = {}
    an_type = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    oa_type = _BY_TYPE[an_type][1] if an_type in _BY_TYPE else "upstream_error"
    return {
        "message": message or "Anthropic reported an error in the stream.",
        "type": oa_type,
        "param": None,
        "code": an_type,
    }
