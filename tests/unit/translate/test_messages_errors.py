"""Anthropic error bodies and error events, as the anthropic SDK reads them."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest

from wlm.translate.messages_errors import (
    messages_error,
    messages_error_event,
    messages_error_of_chat,
)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (408, "invalid_request_error"),
        (409, "invalid_request_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_type_follows_the_status(status: int, error_type: str) -> None:
    assert messages_error(status, "m") == (
        status,
        {"type": "error", "error": {"type": error_type, "message": "m"}},
    )


@pytest.mark.parametrize(
    ("status", "openai_type", "error_type"),
    [
        (404, "invalid_request_error", "not_found_error"),  # wlm's ModelNotFound
        (400, "not_found_error", "not_found_error"),  # a 4xx type refines a 400...
        (400, "server_error", "invalid_request_error"),  # ...a 5xx type does not
        (500, "invalid_request_error", "api_error"),
        (502, "timeout", "timeout_error"),  # wlm's UpstreamTimeout as a 502
        (502, "upstream_error", "api_error"),
        (502, "service_unavailable", "overloaded_error"),
        (429, "insufficient_quota", "rate_limit_error"),
    ],
)
def test_openai_type_refines_only_a_generic_type(
    status: int, openai_type: str, error_type: str
) -> None:
    assert messages_error(status, "m", openai_type)[1]["error"]["type"] == error_type


def test_a_non_error_status_becomes_500() -> None:
    assert messages_error(200, "odd")[0] == 500


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (404, anthropic.NotFoundError),
        (429, anthropic.RateLimitError),
        (529, anthropic.APIStatusError),
    ],
)
def test_the_sdk_raises_the_right_exception_with_our_message(status: int, exception: type) -> None:
    code, body = messages_error(status, "Nope.")

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(code, json=body)

    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://gateway.test",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )
    with pytest.raises(exception) as caught:
        client.messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == status
    assert caught.value.body["error"]["message"] == "Nope."


def test_error_event_bytes() -> None:
    raw = messages_error_event(529, "Overloaded")
    assert raw.startswith(b"event: error\ndata: ")
    assert raw.endswith(b"\n\n")
    assert json.loads(raw.split(b"data: ", 1)[1]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


@pytest.mark.parametrize(
    ("error", "error_type", "message"),
    [
        (
            {"message": "boom", "type": "server_error", "param": None, "code": None},
            "api_error",
            "boom",
        ),
        ({"code": 429, "message": "Rate limited"}, "rate_limit_error", "Rate limited"),
        ({"code": "server_error", "message": "oops"}, "api_error", "oops"),
        (
            {"code": 503, "message": "Loading model", "type": "unavailable_error"},
            "overloaded_error",
            "Loading model",
        ),
        ({"message": "t", "type": "timeout", "code": "upstream_timeout"}, "timeout_error", "t"),
        ("bare string", "api_error", "bare string"),
        (None, "api_error", "The upstream reported an error in the stream."),
    ],
)
def test_chat_stream_errors(error: object, error_type: str, message: str) -> None:
    assert messages_error_of_chat(error) == {
        "type": "error",
        "error": {"type": error_type, "message": message},
    }
