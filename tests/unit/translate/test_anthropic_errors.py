"""anthropic_error_to_openai and stream_error_to_openai."""

from __future__ import annotations

import json

import pytest

from wlm.errors import UpstreamError
from wlm.translate import anthropic_error_to_openai, stream_error_to_openai

from ._helpers import WIRE


def body(error_type: str, message: str = "boom", **extra) -> bytes:
    return json.dumps(
        {
            "type": "error",
            "error": {"type": error_type, "message": message, **extra},
            "request_id": "req_1",
        }
    ).encode()


@pytest.mark.parametrize(
    ("status", "error_type", "client_status", "openai_type", "code"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", 401, "authentication_error", "authentication_error"),
        (402, "billing_error", 402, "insufficient_quota", "billing_error"),
        (403, "permission_error", 403, "permission_error", "permission_error"),
        (404, "not_found_error", 404, "not_found_error", "not_found_error"),
        (413, "request_too_large", 413, "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", 429, "rate_limit_error", "rate_limit_exceeded"),
        (500, "api_error", 502, "server_error", "api_error"),
        (503, "api_error", 503, "server_error", "api_error"),
        (504, "timeout_error", 504, "timeout", "timeout_error"),
        (529, "overloaded_error", 503, "service_unavailable", "overloaded_error"),
        (418, "a_new_error", 418, "invalid_request_error", "a_new_error"),
    ],
)
def test_status_and_type_mapping(status, error_type, client_status, openai_type, code) -> None:
    error = anthropic_error_to_openai(status, body(error_type, "Something failed"))
    assert isinstance(error, UpstreamError)
    assert (error.status, error.type, error.code) == (client_status, openai_type, code)
    assert error.message == "Something failed"
    assert error.param is None
    assert error.headers == {}
    assert json.loads(error.to_body())["error"]["message"] == "Something failed"


def test_unknown_4xx_type_falls_back_by_status() -> None:
    error = anthropic_error_to_openai(409, body("conflict_error"))
    assert (error.status, error.type, error.code) == (
        409,
        "invalid_request_error",
        "conflict_error",
    )


def test_recorded_400_body() -> None:
    raw = (WIRE / "extracted/anthropic_error_400_invalid_request.0.response.json").read_bytes()
    error = anthropic_error_to_openai(400, raw)
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.message.startswith("This model does not support effort level 'xhigh'.")


@pytest.mark.parametrize("status", [429, 529])
def test_retry_after_is_kept(status) -> None:
    error_type = "rate_limit_error" if status == 429 else "overloaded_error"
    error = anthropic_error_to_openai(status, body(error_type), retry_after="17")
    assert error.headers == {"retry-after": "17"}


def test_spend_limit_detail_code_wins() -> None:
    raw = body("rate_limit_error", details={"error_code": "enforced_spend_limit_reached"})
    error = anthropic_error_to_openai(429, raw)
    assert (error.status, error.code) == (429, "enforced_spend_limit_reached")


@pytest.mark.parametrize(
    ("status", "raw", "client_status", "openai_type", "message"),
    [
        (
            413,
            b"<html><body>413 Request Entity Too Large</body></html>",
            413,
            "invalid_request_error",
            "Anthropic returned HTTP 413: <html><body>413 Request Entity Too Large</body></html>",
        ),
        (502, b"", 502, "server_error", "Anthropic returned HTTP 502."),
        (
            500,
            b"\xff\xfe not utf-8",
            502,
            "server_error",
            "Anthropic returned HTTP 500: \ufffd\ufffd not utf-8",
        ),
        (
            401,
            b'{"unexpected": true}',
            401,
            "authentication_error",
            'Anthropic returned HTTP 401: {"unexpected": true}',
        ),
        (529, b"Overloaded", 503, "service_unavailable", "Anthropic returned HTTP 529: Overloaded"),
    ],
)
def test_non_json_bodies(status, raw, client_status, openai_type, message) -> None:
    error = anthropic_error_to_openai(status, raw)
    assert (error.status, error.type, error.code, error.message) == (
        client_status,
        openai_type,
        None,
        message,
    )


def test_long_non_json_bodies_are_cut() -> None:
    error = anthropic_error_to_openai(500, b"x" * 5000)
    assert len(error.message) < 600


@pytest.mark.parametrize(
    ("error_type", "openai_type"),
    [
        ("overloaded_error", "service_unavailable"),
        ("api_error", "server_error"),
        ("rate_limit_error", "rate_limit_error"),
        ("invalid_request_error", "invalid_request_error"),
        ("something_new", "upstream_error"),
    ],
)
def test_stream_error_keeps_anthropic_type_in_code(error_type, openai_type) -> None:
    data = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
    assert stream_error_to_openai(data) == {
        "message": "Overloaded",
        "type": openai_type,
        "param": None,
        "code": error_type,
    }


def test_stream_error_without_details() -> None:
    assert stream_error_to_openai({"type": "error"}) == {
        "message": "Anthropic reported an error in the stream.",
        "type": "upstream_error",
        "param": None,
        "code": None,
    }
