"""Errors that reach a client, as values.

Every failure a client can see is a :class:`GatewayError`; the HTTP layer turns it
into an OpenAI-style body ``{"error": {"message", "type", "param", "code"}}``.

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

from typing import Any

import msgspec

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "GatewayError",
    "ModelNotFound",
    "ModelUnavailable",
    "ProviderNotConfigured",
    "UnsupportedParameter",
    "UpstreamBroken",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "error_body",
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
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers: dict[str, str] = headers or {}

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error object (without the outer ``error`` key)."""
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    def to_body(self) -> bytes:
        """The JSON body ``{"error": {...}}``."""
        return msgspec.json.encode({"error": self.to_dict()})


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
    return GatewayError(message, type=type, status=status_code).to_body()
