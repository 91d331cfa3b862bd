"""Upstream faults: error statuses, refused and silent connections, broken streams.

For every case the test checks three things:
- the client sees the right status and an OpenAI error body (before the first byte)
  or, once a stream has started, an OpenAI error event that ends it;
- telemetry records one row: status ``error``, the HTTP status the client got, and
  an ``error_type`` (collected per case, checked together by the module's last test,
  since the writer flushes every 250 ms);
- nothing is left running: a silent upstream sees wlm hang up, and a failed call does
  not leave a connection behind (the next call to the same upstream reuses or
  replaces it, so wlm's connection count to that upstream does not grow).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fakes import FakeUpstream
from tests.faults.conftest import SLOW_TIMEOUT_S, World
from tests.faults.helpers import (
    KEYS,
    RowChecks,
    chat,
    data_events,
    error_of,
    index_of,
    new_request_id,
    upstream_sockets,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def rows() -> RowChecks:
    return RowChecks()


def is_set(value: object) -> bool:
    return bool(value)


def warm(world: World, fake: FakeUpstream, prefix: str) -> int:
    """One ordinary call to ``fake`` (so a pooled connection exists); wlm's sockets to it."""
    model = f"{prefix}/gpt-4o-mini" if fake.flavor != "anthropic" else f"{prefix}/claude-x"
    assert world.http.post("/v1/chat/completions", json=chat(model)).status_code == 200
    return upstream_sockets(world.server, fake)


def assert_nothing_left(world: World, fake: FakeUpstream, prefix: str, before: int) -> None:
    """After a fault, an ordinary call works and wlm holds no more sockets than before."""
    after = warm(world, fake, prefix)
    assert after <= before, f"wlm holds {after} connections to the upstream, {before} before"
    assert world.http.get("/health").json()["status"] == "ok"


def post(world: World, body: dict, request_id: str) -> httpx.Response:
    return world.http.post("/v1/chat/completions", json=body, headers={"x-request-id": request_id})


# (provider prefix, upstream status, status the client sees)
ERROR_CASES = [
    ("openai", 400, 400),
    ("openai", 401, 401),
    ("openai", 404, 404),
    ("openai", 429, 429),
    ("openai", 500, 500),
    ("openai", 503, 503),
    ("anthropic", 400, 400),
    ("anthropic", 429, 429),
    ("anthropic", 500, 502),  # the upstream failed, not the gateway (docs/providers/anthropic.md)
    ("anthropic", 529, 503),  # "overloaded": OpenAI clients know 503, not 529
]


@pytest.mark.parametrize(("prefix", "upstream", "client"), ERROR_CASES)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_upstream_error_status_reaches_the_client_as_an_openai_error(
    world: World, rows: RowChecks, prefix: str, upstream: int, client: int, stream: bool
) -> None:
    """Client: `client` status, OpenAI error body, retry-after kept on 429/503/529.
    Telemetry: error, http_status = `client`, error_type set. Left: no extra connection."""
    fake = world.fakes[prefix]
    before = warm(world, fake, prefix)
    request_id = new_request_id()

    response = post(world, chat(f"{prefix}/error:{upstream}", stream=stream), request_id)

    assert response.status_code == client
    error = error_of(response)
    assert response.headers["x-request-id"] == request_id
    if upstream in (429, 503, 529):
        assert response.headers["retry-after"] == fake.retry_after
    assert KEYS.openai not in response.text and KEYS.anthropic not in response.text
    rows.expect(
        f"{prefix} {upstream} stream={stream}",
        request_id,
        status="error",
        http_status=client,
        provider=prefix,
        stream=stream,
        error_type=lambda got: got in (error["code"], error["type"]),
    )
    assert_nothing_left(world, fake, prefix, before)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_refused_connection_is_502_unreachable(world: World, rows: RowChecks, stream: bool) -> None:
    """Client: 502 upstream_unreachable at once. Telemetry: error/502. Left: nothing."""
    request_id = new_request_id()
    started = time.monotonic()

    response = post(world, chat("dead/some-model", stream=stream), request_id)

    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_unreachable"
    assert time.monotonic() - started < 2
    rows.expect(
        "refused", request_id, status="error", http_status=502, error_code="upstream_unreachable"
    )
    assert world.http.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_upstream_that_never_answers_times_out_with_504(
    world: World, rows: RowChecks, stream: bool
) -> None:
    """Client: 504 after SLOW_TIMEOUT_S (no byte was sent, so a status is still possible).
    Telemetry: error/504/upstream_timeout. Left: the upstream saw wlm hang up."""
    fake = world.fakes["openai"]
    before = warm(world, fake, "slow")
    request_id = new_request_id()
    body = chat("slow/hang", stream=stream)
    started = time.monotonic()

    response = post(world, body, request_id)

    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert error_of(response)["type"] == "timeout"
    assert SLOW_TIMEOUT_S * 0.9 <= elapsed < SLOW_TIMEOUT_S + 3
    closed = fake.wait_closed(index_of(fake, body["messages"][0]["content"]), timeout=3)
    assert closed is not None, "wlm never closed the silent upstream connection"
    rows.expect(
        "silent upstream",
        request_id,
        status="error",
        http_status=504,
        error_code="upstream_timeout",
    )
    assert_nothing_left(world, fake, "slow", before)


def read_stream(world: World, body: dict, request_id: str) -> tuple[httpx.Response, list]:
    with world.http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"x-request-id": request_id}
    ) as response:
        text = "".join(response.iter_text())
    return response, data_events(text)


def assert_ends_with_error_event(events: list, *, content_before: bool) -> dict:
    """The stream's last event carries an error (the SDKs raise on it), nothing follows it.

    wlm's own error events are OpenAI error objects; OpenRouter's mid-stream errors are
    passed on in OpenRouter's shape (a chunk with an ``error`` field and
    ``finish_reason: "error"``), which the OpenAI SDK raises on too.
    """
    assert events, "the stream carried no event at all"
    last = events[-1]
    assert isinstance(last, dict) and isinstance(last.get("error"), dict), f"last: {last!r}"
    assert last["error"].get("message"), last
    if set(last) == {"error"}:
        assert set(last["error"]) == {"message", "type", "param", "code"}
    assert "[DONE]" not in events, "a stream that failed must not end as if it succeeded"
    chunks = [e for e in events[:-1] if isinstance(e, dict) and e.get("choices")]
    if content_before:
        assert chunks, "the chunks sent before the failure should have reached the client"
    return last["error"]


BROKEN_STREAMS = [
    # (model, chunks arrive before the failure)
    ("openai/reset:3", True),
    ("openai/reset:0", False),
    ("openai/malformed", False),
    ("openai/midstream-error", True),
    ("openrouter/midstream-error", True),
    ("anthropic/midstream-error", True),
    ("slow/hang-body", False),
]


@pytest.mark.parametrize(("model", "content_before"), BROKEN_STREAMS)
def test_stream_that_breaks_after_the_first_byte_ends_with_an_error_event(
    world: World, rows: RowChecks, model: str, content_before: bool
) -> None:
    """Client: 200 (already sent), the chunks so far, then one error event and the end.
    Telemetry: error, http_status 200, error_type set. Left: no extra connection."""
    prefix = model.split("/")[0]
    fake = world.fakes["openai" if prefix == "slow" else prefix]
    before = warm(world, fake, prefix)
    request_id = new_request_id()
    body = chat(model, stream=True)
    started = time.monotonic()

    response, events = read_stream(world, body, request_id)

    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    error = assert_ends_with_error_event(events, content_before=content_before)
    assert time.monotonic() - started < SLOW_TIMEOUT_S + 3
    if model == "slow/hang-body":
        assert error["type"] == "timeout"
        closed = fake.wait_closed(index_of(fake, body["messages"][0]["content"]), timeout=3)
        assert closed is not None, "wlm never closed the silent upstream connection"
    rows.expect(model, request_id, status="error", http_status=200, error_type=is_set)
    assert_nothing_left(world, fake, prefix, before)


def test_reset_during_a_whole_response_is_502(world: World, rows: RowChecks) -> None:
    """An upstream that cuts the connection before a non-stream answer is complete:
    Client: 502 upstream_broken. Telemetry: error/502. Left: no extra connection."""
    fake = world.fakes["openai"]
    before = warm(world, fake, "openai")
    request_id = new_request_id()

    response = post(world, chat("openai/reset:2"), request_id)

    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_broken"
    rows.expect(
        "reset, whole", request_id, status="error", http_status=502, error_code="upstream_broken"
    )
    assert_nothing_left(world, fake, "openai", before)


def test_zz_telemetry_recorded_every_case_above(world: World, rows: RowChecks) -> None:
    """One row per case, with status error, the client's status and an error_type."""
    if not rows.expected:
        pytest.skip("no fault case of this module ran")
    assert rows.verify(world.admin) == len(rows.expected)
