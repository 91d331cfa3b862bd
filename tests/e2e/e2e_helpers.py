"""Small helpers the e2e modules share: request markers, finding the upstream call a
test caused at a fake, and reading an OpenAI error body."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.fakes import FakeUpstream, RecordedRequest


def new_marker() -> str:
    return uuid.uuid4().hex


def ask(marker: str) -> list[Any]:
    return [{"role": "user", "content": f"Say hello ({marker})"}]


def upstream_call(
    fake: FakeUpstream, marker: str, *, path: str = "/v1/messages", timeout: float = 5.0
) -> tuple[int, RecordedRequest]:
    """(index, request) of the `POST <path>` whose body carries `marker`."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        requests = fake.wait_for_requests(seen + 1, remaining)  # TimeoutError when it never came
        for index in range(seen, len(requests)):
            request = requests[index]
            ours = request.method == "POST" and request.path == path
            if ours and marker.encode() in request.body:
                return index, request
        seen = len(requests)


def calls_with(fake: FakeUpstream, marker: str) -> list[RecordedRequest]:
    return [r for r in list(fake.requests) if marker.encode() in r.body]


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The OpenAI error object of an answer; fails unless the shape is exact."""
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]
