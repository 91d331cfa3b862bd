"""Errors that reach a client, as values.

Every failure a client can see is raised as a :class:`GatewayError`. On its way out
it becomes one :class:`Failure` value (redacted once, in :meth:`Failure.of`), which
:func:`render_error` turns into the client's error body and :func:`render_error_event`
into an SSE error event once a stream has begun.

    GatewayError                      any failure shown to a client
    ├── BadRequest (400)              bad JSON, missing or invalid fields
    │   └── UnsupportedParameter      a field the upstream protocol cannot express
    ├── AuthenticationFailed (401)    missing or wrong client key
    ├── ModelNotFound (404)           no route for the requested model
    ├── ProviderNotConfigured (400)   the route names a provider with no key
    ├── ModelUnavailable (503)        a local engine failed to start
    └── UpstreamError                 the upstream answered with an error status
        ├── UpstreamUnreachable (502) connection refused, DNS, reset before a reply
        ├── UpstreamTimeout (504)     no answer in time
        └── UpstreamBroken (502)      the response broke off or was not understood
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from attrs import frozen

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "Failure",
    "GatewayError",
    "ModelNotFound",
    "ModelUnavailable",
    "ProviderNotConfigured",
    "RequestCancelled",
    "UnsupportedParameter",
    "UpstreamBroken",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "error_body",
    "render_error",
    "render_error_event",
]


class GatewayError(Exception):
    """A failure with the status, OpenAI error type and code a client should see."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # The status the upstream itself answered, when a client of its own dialect
        # should see it rather than wlm's mapping (Anthropic's 500 and 529).
        self.upstream_status = upstream_status
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers: dict[str, str] = headers or {}

    def to_body(self) -> bytes:
        """This error's JSON body, unredacted: only for messages wlm wrote itself."""
        return render_error(Failure.of(self, str))


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class UnsupportedParameter(BadRequest):
    code = "unsupported_parameter"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str, hint: str = "") -> None:
        message = f"The model '{model}' does not exist or no route leads to it."
        super().__init__(f"{message} {hint}".strip(), param="model")


class ProviderNotConfigured(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "provider_not_configured"


class ModelUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "model_unavailable"


class RequestCancelled(GatewayError):
    """An administrator cancelled the request (``DELETE /api/queue/{id}``).

    A 503 that clients must not repeat on their own: OpenAI's and Anthropic's SDKs
    honour ``x-should-retry: false``; the message says who stopped it.
    """

    status = 503
    type = "request_cancelled"
    code = "cancelled_by_admin"

    def __init__(self, request_id: str, model: str) -> None:
        super().__init__(
            f"This request ({request_id}) for local model '{model}' was cancelled by an "
            "administrator (DELETE /api/queue/{id}, or Cancel on the /instances page).",
            headers={"x-should-retry": "false"},
        )


class UpstreamError(GatewayError):
    """The upstream answered with an error; status and message are passed on."""

    status = 502
    type = "upstream_error"


class UpstreamUnreachable(UpstreamError):
    status = 502
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout"
    code = "upstream_timeout"


class UpstreamBroken(UpstreamError):
    status = 502
    code = "upstream_broken"


def error_body(message: str, type: str, status_code: int | None = None) -> bytes:
    """A ready-made OpenAI error body for places that have no exception at hand."""
    return render_error(Failure(message, type, status=status_code or 500))


_MAX_MESSAGE = 1000  # stored and shown; an upstream may send a whole HTML page


@frozen
class Failure:
    """How a request failed, as the client sees it and telemetry stores it (redacted)."""

    message: str
    type: str
    code: str | None = None
    param: str | None = None
    status: int = 500
    headers: tuple[tuple[str, str], ...] = ()
    upstream_status: int | None = None  # the upstream's own status, for its own dialect

    @classmethod
    def of(cls, error: GatewayError, redact: Callable[[str], str]) -> Failure:
        """The one place an error's message is redacted on its way out."""
        return cls(
            redact(error.message)[:_MAX_MESSAGE],
            error.type,
            error.code,
            error.param,
            error.status,
            tuple(error.headers.items()),
            error.upstream_status,
        )

    @classmethod
    def from_event(cls, error: Any, redact: Callable[[str], str]) -> Failure:
        """An error object an upstream sent inside a stream (any shape)."""
        if not isinstance(error, dict):
            return cls(redact(str(error))[:_MAX_MESSAGE], "upstream_error", status=502)
        code = error.get("code")
        return cls(
            redact(str(error.get("message") or ""))[:_MAX_MESSAGE],
            str(error.get("type") or "upstream_error"),
            None if code is None else str(code),
            status=502,
        )

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error object (without the outer ``error`` key)."""
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


def render_error(failure: Failure) -> bytes:
    """The JSON error body ``{"error": {...}}`` for a response not yet begun."""
    return msgspec.json.encode({"error": failure.to_dict()})


def render_error_event(failure: Failure) -> bytes:
    """The error as an SSE data event, for a stream already under way (the SDK raises on it)."""
    return b"data: " + render_error(failure) + b"\n\n"
