"""Faults on the Anthropic Messages and OpenAI Responses endpoints, native and translated.

Each way a request can take (the client's endpoint, the provider its model names, the
fake that answers) meets the faults of test_upstream_faults.py and
test_client_disconnects.py, and fuzzed bodies like test_fuzz.py's:

    /v1/messages  native            anthropic/...  the Anthropic fake's /v1/messages
    /v1/messages  through chat      openai/...     the OpenAI fake's /v1/chat/completions
    /v1/responses native            openai/...     the OpenAI fake's /v1/responses
    /v1/responses through chat      anthropic/...  chat, then the Anthropic fake's messages
    /v1/responses through chat      slow/...       the OpenAI fake's /v1/chat/completions
                                                   (``slow`` is an OpenAI-compatible
                                                   provider: it speaks chat only)

For every case:
- the client sees its dialect's error: before the first byte, the error body with the
  right status (Messages: ``{"type": "error", "error": {"type", "message"}}``;
  Responses: OpenAI's ``{"error": {"message", "type", "param", "code"}}``) and
  Retry-After where the upstream sent one; after it, the stream ends with the dialect's
  error event (Messages: ``event: error``; a translated Responses stream:
  ``response.failed``; a native one the upstream's ``response.failed`` or wlm's
  ``error`` event) and nothing that looks like success;
- telemetry has one row: status ``error`` (or ``cancelled``), the client's HTTP status,
  the endpoint and the upstream endpoint (collected per case, checked together by the
  module's last test);
- nothing is left running: a client that leaves and an upstream that never answers both
  see wlm hang up, and a failed call leaves no extra connection behind.
Malformed and fuzzed bodies (and response ids for ``GET /v1/responses/{id}``) never get
a 5xx; every answer but a 200 is in the dialect's exact error shape, with x-request-id.
The end-of-suite checks count one row per POST to these endpoints and scan every byte
the clients read for keys (``error:401-echo`` below makes the upstreams echo theirs).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from typing import Any

import httpx
import pytest
from attrs import frozen
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.faults.conftest import SLOW_TIMEOUT_S, World
from tests.faults.helpers import (
    KEYS,
    RowChecks,
    anthropic_error,
    anthropic_error_of,
    error_of,
    index_of,
    new_request_id,
    sse_events,
    upstream_sockets,
)
from tests.faults.test_fuzz import FUZZ, json_values, ordinary

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def rows() -> RowChecks:
    return RowChecks()


def is_set(value: object) -> bool:
    return bool(value)


@frozen
class Way:
    """One way through wlm: the client's endpoint, the provider, the fake that answers."""

    name: str
    path: str  # "/v1/messages" or "/v1/responses"
    prefix: str  # the provider, as the model's prefix
    fake: str  # the fake at the other end
    upstream_endpoint: str  # what telemetry records as called upstream
    ordinary_model: str  # a model the fake answers normally

    @property
    def dialect(self) -> str:
        return "messages" if self.path.endswith("/messages") else "responses"

    def model(self, scenario: str) -> str:
        return f"{self.prefix}/{scenario}"


MESSAGES_NATIVE = Way(
    "messages-native", "/v1/messages", "anthropic", "anthropic", "messages", "claude-x"
)
MESSAGES_VIA_CHAT = Way(
    "messages-via-openai-chat", "/v1/messages", "openai", "openai", "chat/completions", "gpt-4o"
)
RESPONSES_VIA_ANTHROPIC = Way(
    "responses-via-anthropic",
    "/v1/responses",
    "anthropic",
    "anthropic",
    "chat/completions",
    "claude-x",
)
RESPONSES_VIA_CHAT = Way(
    "responses-via-openai-chat", "/v1/responses", "slow", "openai", "chat/completions", "gpt-4o"
)
# The slow provider (1 s read timeout) behind the Messages endpoint, for the timeouts.
MESSAGES_VIA_SLOW = Way(
    "messages-via-slow", "/v1/messages", "slow", "openai", "chat/completions", "gpt-4o"
)
RESPONSES_NATIVE = Way(
    "responses-native", "/v1/responses", "openai", "openai", "responses", "gpt-4o"
)
WAYS = [
    MESSAGES_NATIVE,
    MESSAGES_VIA_CHAT,
    RESPONSES_NATIVE,
    RESPONSES_VIA_ANTHROPIC,
    RESPONSES_VIA_CHAT,
]


def body_for(way: Way, model: str, *, stream: bool = False, marker: str | None = None) -> dict:
    """A request in the way's dialect whose text is ``marker`` (to find it at the fake)."""
    text = marker or uuid.uuid4().hex
    if way.dialect == "messages":
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": text}],
        }
    else:
        body = {"model": model, "input": text}
    if stream:
        body["stream"] = True
    return body


def marker_of(body: dict) -> str:
    if "messages" in body:
        return str(body["messages"][0]["content"])
    return str(body["input"])


def send(
    world: World, path: str, body: dict, request_id: str, client: httpx.Client | None = None
) -> httpx.Response:
    """POST ``body``, the whole answer read (a stream too)."""
    with (client or world.http).stream(
        "POST", path, json=body, headers={"x-request-id": request_id}
    ) as response:
        response.read()
    return response


def warm(world: World, way: Way) -> int:
    """One ordinary call along ``way`` (so a pooled connection exists); wlm's sockets."""
    reply = send(world, way.path, body_for(way, way.model(way.ordinary_model)), new_request_id())
    assert reply.status_code == 200, reply.text[:300]
    return upstream_sockets(world.server, world.fakes[way.fake])


def assert_nothing_left(world: World, way: Way, before: int) -> None:
    """After a fault, an ordinary call works and wlm holds no more sockets than before."""
    after = warm(world, way)
    assert after <= before, f"wlm holds {after} connections to the upstream, {before} before"
    assert world.http.get("/health").json()["status"] == "ok"


def dialect_error(way: Way, response: httpx.Response) -> dict[str, Any]:
    """The error of a non-200 answer, in the way's dialect's exact shape."""
    if way.dialect == "messages":
        return anthropic_error_of(response)
    return error_of(response)


def assert_stream_failed(way: Way, text: str, *, began: bool = True) -> dict[str, Any]:
    """The stream ended with the dialect's error event and nothing after it, and no event
    marks success; with ``began``, the message had started first. The error's fields.

    A Messages stream that fails before its first upstream event may be the ``error``
    event alone (the anthropic SDK raises on it wherever it comes)."""
    events = sse_events(text)
    names = [name for name, _ in events]
    assert events, "the stream carried no event at all"
    unreadable = [data for _, data in events if not isinstance(data, dict)]
    assert not unreadable, (
        f"events whose data is not a JSON object reached the client: {unreadable}"
    )
    if way.dialect == "messages":
        assert names[0] == "message_start" or (not began and names == ["error"]), names
        assert names[-1] == "error", f"the stream did not end with an error event: {names}"
        assert "message_stop" not in names, names
        return anthropic_error(events[-1][1])
    assert names[0] == "response.created", names
    assert "response.completed" not in names and "response.incomplete" not in names, names
    for name, data in events:
        assert isinstance(data, dict) and data.get("type") == name, (name, data)
    sequence = [data["sequence_number"] for _, data in events]
    assert sequence == list(range(len(events))), sequence
    last = events[-1][1]
    if way.upstream_endpoint == "responses" and names[-1] == "error":
        # Native: a stream wlm saw break ends with OpenAI's stream ``error`` event.
        assert set(last) == {"type", "code", "message", "param", "sequence_number"}, last
        assert last["code"] and last["message"], last
        return last
    assert names[-1] == "response.failed", f"the stream did not end in response.failed: {names}"
    response = last["response"]
    assert response["status"] == "failed", response
    error = response["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, error
    assert error["code"] and error["message"], error
    return error


# -- the upstream answers an error status (before the first byte) ---------------------------

# (way, upstream status, client status, client error type)
ERROR_CASES = [
    # Messages clients get the upstream's status and Anthropic's type for it.
    (MESSAGES_NATIVE, 429, 429, "rate_limit_error"),
    (MESSAGES_NATIVE, 529, 529, "overloaded_error"),
    (MESSAGES_NATIVE, 500, 500, "api_error"),
    (MESSAGES_VIA_CHAT, 429, 429, "rate_limit_error"),
    (MESSAGES_VIA_CHAT, 503, 503, "overloaded_error"),
    (MESSAGES_VIA_CHAT, 500, 500, "api_error"),
    # Responses clients speak OpenAI: Anthropic's 529 is OpenAI's 503, and Anthropic's
    # 500 a 502 (the upstream failed, not the gateway), as on the chat endpoint.
    (RESPONSES_NATIVE, 429, 429, "requests"),  # OpenAI's own type, passed on as it came
    (RESPONSES_NATIVE, 503, 503, "server_error"),
    (RESPONSES_NATIVE, 500, 500, "server_error"),
    (RESPONSES_VIA_ANTHROPIC, 429, 429, "rate_limit_error"),
    (RESPONSES_VIA_ANTHROPIC, 529, 503, "service_unavailable"),
    (RESPONSES_VIA_ANTHROPIC, 500, 502, "server_error"),
    (RESPONSES_VIA_CHAT, 429, 429, "requests"),  # OpenAI's own type, passed on as it came
    (RESPONSES_VIA_CHAT, 503, 503, "server_error"),
    (RESPONSES_VIA_CHAT, 500, 500, "server_error"),
]


@pytest.mark.parametrize(
    ("way", "upstream", "client", "kind"),
    ERROR_CASES,
    ids=[f"{w.name}-{u}" for w, u, _, _ in ERROR_CASES],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_upstream_error_status_reaches_the_client_in_its_dialect(
    world: World,
    rows: RowChecks,
    way: Way,
    upstream: int,
    client: int,
    kind: str,
    stream: bool,
) -> None:
    """Client: `client` status, the dialect's error body of type `kind`, Retry-After kept.
    Telemetry: error, http_status = `client`. Left: no extra connection."""
    fake = world.fakes[way.fake]
    before = warm(world, way)
    request_id = new_request_id()

    response = send(
        world, way.path, body_for(way, way.model(f"error:{upstream}"), stream=stream), request_id
    )

    assert response.status_code == client, response.text[:300]
    error = dialect_error(way, response)
    assert error["type"] == kind, error
    assert response.headers["x-request-id"] == request_id
    if upstream in (429, 503, 529):
        assert response.headers.get("retry-after") == fake.retry_after
    rows.expect(
        f"{way.name} {upstream} stream={stream}",
        request_id,
        status="error",
        http_status=client,
        endpoint=way.dialect,
        upstream_endpoint=way.upstream_endpoint,
        provider=way.prefix,
        stream=stream,
        error_type=is_set,
    )
    assert_nothing_left(world, way, before)


COUNT_TOKENS = "/v1/messages/count_tokens"


@pytest.mark.parametrize(
    ("upstream", "client", "kind"),
    [(429, 429, "rate_limit_error"), (529, 529, "overloaded_error"), (500, 500, "api_error")],
)
def test_count_tokens_error_from_anthropic_is_an_anthropic_error(
    world: World, rows: RowChecks, upstream: int, client: int, kind: str
) -> None:
    """Native count_tokens: the upstream's error in Anthropic's shape, Retry-After kept."""
    request_id = new_request_id()
    body = body_for(MESSAGES_NATIVE, f"anthropic/error:{upstream}")
    del body["max_tokens"]

    response = send(world, COUNT_TOKENS, body, request_id)

    assert response.status_code == client, response.text[:300]
    assert anthropic_error_of(response)["type"] == kind
    assert response.headers["x-request-id"] == request_id
    if upstream in (429, 529):
        assert response.headers.get("retry-after") == world.fakes["anthropic"].retry_after
    rows.expect(
        f"count_tokens {upstream}",
        request_id,
        status="error",
        http_status=client,
        endpoint="messages/count_tokens",
        upstream_endpoint="messages/count_tokens",
        error_type=is_set,
    )


@pytest.mark.parametrize("model", ["openai/error:429", "dead/some-model", "slow/hang"])
def test_count_tokens_elsewhere_is_an_estimate_that_calls_no_upstream(
    world: World, rows: RowChecks, model: str
) -> None:
    """A backend without count_tokens: wlm's estimate at once, whatever the upstream would
    have done (an error, a refused connection, silence)."""
    request_id = new_request_id()
    body = {"model": model, "messages": [{"role": "user", "content": "count me, please"}]}
    started = time.monotonic()

    response = send(world, COUNT_TOKENS, body, request_id)

    assert response.status_code == 200, response.text[:300]
    assert response.headers["x-wlm-estimate"] == "true"
    assert response.json()["input_tokens"] > 0
    assert time.monotonic() - started < 2
    rows.expect(
        f"count_tokens estimate {model}",
        request_id,
        status="ok",
        http_status=200,
        endpoint="messages/count_tokens",
    )


# -- the stream breaks after the first byte ----------------------------------------------------

# (way, scenario): each stream starts, then fails.
BROKEN_STREAMS = [
    (MESSAGES_NATIVE, "midstream-error"),
    (MESSAGES_NATIVE, "reset:5"),  # message_start, block start, ping, two deltas, cut
    (MESSAGES_NATIVE, "malformed"),
    (MESSAGES_VIA_CHAT, "midstream-error"),
    (MESSAGES_VIA_CHAT, "reset:3"),
    (MESSAGES_VIA_CHAT, "malformed"),
    (MESSAGES_VIA_SLOW, "hang-body"),
    (RESPONSES_NATIVE, "midstream-error"),  # the upstream's own response.failed
    (RESPONSES_NATIVE, "reset:6"),  # created, in_progress, item, part, two deltas, cut
    (RESPONSES_NATIVE, "malformed"),
    (RESPONSES_VIA_ANTHROPIC, "midstream-error"),
    (RESPONSES_VIA_ANTHROPIC, "reset:5"),
    (RESPONSES_VIA_ANTHROPIC, "malformed"),
    (RESPONSES_VIA_CHAT, "midstream-error"),
    (RESPONSES_VIA_CHAT, "reset:3"),
    (RESPONSES_VIA_CHAT, "malformed"),
    (RESPONSES_VIA_CHAT, "hang-body"),
]


@pytest.mark.parametrize(
    ("way", "scenario"), BROKEN_STREAMS, ids=[f"{w.name}-{s}" for w, s in BROKEN_STREAMS]
)
def test_stream_that_breaks_after_the_first_byte_ends_with_the_dialects_error_event(
    world: World, rows: RowChecks, way: Way, scenario: str
) -> None:
    """Client: 200 (already sent), the events so far, then the dialect's error event.
    Telemetry: error, http_status 200. Left: no extra connection; a silent upstream
    saw wlm hang up."""
    fake = world.fakes[way.fake]
    before = warm(world, way)
    request_id = new_request_id()
    body = body_for(way, way.model(scenario), stream=True)
    started = time.monotonic()

    response = send(world, way.path, body, request_id)

    # Expected before the client's checks, so a case that fails them is checked too.
    rows.expect(
        f"{way.name} {scenario}",
        request_id,
        status="error",
        http_status=200,
        endpoint=way.dialect,
        upstream_endpoint=way.upstream_endpoint,
        stream=True,
        error_type=is_set,
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    assert response.headers["content-type"].startswith("text/event-stream")
    error = assert_stream_failed(way, response.text, began=scenario != "hang-body")
    assert time.monotonic() - started < SLOW_TIMEOUT_S + 3
    if scenario == "hang-body":
        kind = error["type"] if way.dialect == "messages" else error["code"]
        assert "timeout" in kind, error
        closed = fake.wait_closed(index_of(fake, marker_of(body)), timeout=3)
        assert closed is not None, "wlm never closed the silent upstream connection"
    assert_nothing_left(world, way, before)


# -- the client leaves mid-stream ------------------------------------------------------------


def is_delta(name: str | None) -> bool:
    return name in ("content_block_delta", "response.output_text.delta")


@pytest.mark.parametrize("way", WAYS, ids=[w.name for w in WAYS])
def test_client_leaving_mid_stream_cancels_the_upstream(
    world: World, rows: RowChecks, way: Way
) -> None:
    """paced:300:20: a 6 s stream; the client reads two text deltas and leaves.
    Upstream: closed long before its 6 s. Telemetry: cancelled/499."""
    fake = world.fakes[way.fake]
    before = warm(world, way)
    request_id = new_request_id()
    body = body_for(way, way.model("paced:300:20"), stream=True)
    seen = 0

    with world.http.stream(
        "POST", way.path, json=body, headers={"x-request-id": request_id}
    ) as response:
        assert response.status_code == 200
        name = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:") and is_delta(name):
                seen += 1
                if seen == 2:
                    break

    assert seen == 2
    closed = fake.wait_closed(index_of(fake, marker_of(body)), timeout=5)
    assert closed is not None, "the upstream never saw wlm hang up"
    assert closed < 2.0, f"wlm hung up {closed:.2f} s after the request reached the upstream"
    rows.expect(
        f"{way.name} left mid-stream",
        request_id,
        status="cancelled",
        http_status=499,
        endpoint=way.dialect,
        upstream_endpoint=way.upstream_endpoint,
    )
    assert_nothing_left(world, way, before)


# -- a refused connection, an upstream that never answers --------------------------------------

DIALECT_WAYS = [MESSAGES_VIA_SLOW, RESPONSES_VIA_CHAT]


@pytest.mark.parametrize("way", DIALECT_WAYS, ids=["messages", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_refused_connection_is_a_502_in_the_clients_dialect(
    world: World, rows: RowChecks, way: Way, stream: bool
) -> None:
    """dead: nothing listens. Client: 502 at once (Messages: api_error; Responses:
    upstream_unreachable). Telemetry: error/502/upstream_unreachable."""
    request_id = new_request_id()
    started = time.monotonic()

    response = send(world, way.path, body_for(way, "dead/some-model", stream=stream), request_id)

    assert response.status_code == 502, response.text[:300]
    error = dialect_error(way, response)
    if way.dialect == "messages":
        assert error["type"] == "api_error", error
    else:
        assert error["code"] == "upstream_unreachable", error
    assert response.headers["x-request-id"] == request_id
    assert time.monotonic() - started < 2
    rows.expect(
        f"{way.dialect} refused stream={stream}",
        request_id,
        status="error",
        http_status=502,
        endpoint=way.dialect,
        error_code="upstream_unreachable",
    )
    assert world.http.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("way", DIALECT_WAYS, ids=["messages", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_upstream_that_never_answers_is_a_504_in_the_clients_dialect(
    world: World, rows: RowChecks, way: Way, stream: bool
) -> None:
    """slow/hang: the upstream reads the request and never answers. Client: 504 after
    SLOW_TIMEOUT_S (Messages: timeout_error; Responses: timeout). Telemetry:
    error/504/upstream_timeout. Left: the upstream saw wlm hang up."""
    fake = world.fakes["openai"]
    before = warm(world, way)
    request_id = new_request_id()
    body = body_for(way, "slow/hang", stream=stream)
    started = time.monotonic()

    response = send(world, way.path, body, request_id)

    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text[:300]
    error = dialect_error(way, response)
    assert error["type"] == ("timeout_error" if way.dialect == "messages" else "timeout"), error
    assert SLOW_TIMEOUT_S * 0.9 <= elapsed < SLOW_TIMEOUT_S + 3
    closed = fake.wait_closed(index_of(fake, marker_of(body)), timeout=3)
    assert closed is not None, "wlm never closed the silent upstream connection"
    rows.expect(
        f"{way.dialect} silent upstream stream={stream}",
        request_id,
        status="error",
        http_status=504,
        endpoint=way.dialect,
        error_code="upstream_timeout",
    )
    assert_nothing_left(world, way, before)


# -- /api/v1, keys echoed upstream, refused client keys -------------------------------------

API_V1_CASES = [
    (MESSAGES_NATIVE, "error:429", False),
    (MESSAGES_VIA_CHAT, "midstream-error", True),
    (RESPONSES_NATIVE, "error:503", False),
    (RESPONSES_VIA_ANTHROPIC, "error:529", False),
    (RESPONSES_VIA_CHAT, "midstream-error", True),
]


@pytest.mark.parametrize(
    ("way", "scenario", "stream"),
    API_V1_CASES,
    ids=[f"{w.name}-{s}" for w, s, _ in API_V1_CASES],
)
def test_api_v1_paths_fail_the_same_way(
    world: World, rows: RowChecks, way: Way, scenario: str, stream: bool
) -> None:
    """/api/v1/messages and /api/v1/responses: the same errors, the same rows."""
    request_id = new_request_id()
    body = body_for(way, way.model(scenario), stream=stream)

    response = send(world, "/api" + way.path, body, request_id)

    if stream:
        assert response.status_code == 200
        assert_stream_failed(way, response.text)
    else:
        assert response.status_code in (429, 503), response.text[:300]
        dialect_error(way, response)
        assert response.headers.get("retry-after") == world.fakes[way.fake].retry_after
    assert response.headers["x-request-id"] == request_id
    rows.expect(
        f"/api{way.path} {scenario}",
        request_id,
        status="error",
        http_status=response.status_code,
        endpoint=way.dialect,
    )


@pytest.mark.parametrize("way", WAYS, ids=[w.name for w in WAYS])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_echoing_its_key_leaks_nothing(
    world: World, rows: RowChecks, way: Way, stream: bool
) -> None:
    """error:401-echo: the upstream rejects wlm's key and quotes it in its error. Client:
    an error in its dialect, without the key (the leak scan checks every byte later)."""
    request_id = new_request_id()

    response = send(
        world, way.path, body_for(way, way.model("error:401-echo"), stream=stream), request_id
    )

    assert 400 <= response.status_code < 600, response.text[:300]
    dialect_error(way, response)
    for key in KEYS.all():
        assert key not in response.text, "a key reached the client"
        assert all(key not in value for value in response.headers.values())
    rows.expect(
        f"{way.name} key echo stream={stream}",
        request_id,
        status="error",
        http_status=response.status_code,
        endpoint=way.dialect,
    )


NO_KEY_PATHS = ["/v1/messages", COUNT_TOKENS, "/v1/responses", "/api/v1/messages"]


@pytest.mark.parametrize("path", NO_KEY_PATHS)
def test_a_client_without_a_key_is_refused_in_its_dialect(
    world: World, rows: RowChecks, path: str
) -> None:
    """No key, a wrong key: 401 in the dialect's shape, one row each, no upstream call."""
    way = RESPONSES_VIA_ANTHROPIC if "responses" in path else MESSAGES_NATIVE
    for client in (world.client(None), world.client("wlm-not-a-key-0000")):
        request_id = new_request_id()
        response = send(world, path, body_for(way, "anthropic/claude-x"), request_id, client)

        assert response.status_code == 401, response.text[:300]
        error = dialect_error(way, response)
        if way.dialect == "messages":
            assert error["type"] == "authentication_error", error
        assert response.headers["x-request-id"] == request_id
        rows.expect(f"{path} no key", request_id, status="error", http_status=401)


# -- GET /v1/responses/{id} --------------------------------------------------------------------


def test_a_failed_translated_response_is_not_kept_as_if_it_had_completed(world: World) -> None:
    """A translated response that completed is retrievable; one whose stream failed is
    not (GET answers 404 in OpenAI's shape), so a client never reads it back as whole."""
    way = RESPONSES_VIA_CHAT
    done = send(world, way.path, body_for(way, way.model("gpt-4o")), new_request_id())
    assert done.status_code == 200, done.text[:300]
    kept = world.http.get(f"/v1/responses/{done.json()['id']}")
    assert kept.status_code == 200, kept.text[:300]
    assert kept.json()["status"] == "completed"

    failed = send(
        world, way.path, body_for(way, way.model("midstream-error"), stream=True), new_request_id()
    )
    assert_stream_failed(way, failed.text)
    (created,) = [data for name, data in sse_events(failed.text) if name == "response.created"]
    for prefix in ("/v1", "/api/v1"):
        lost = world.http.get(f"{prefix}/responses/{created['response']['id']}")
        assert lost.status_code == 404, lost.text[:300]
        assert error_of(lost)["code"] == "not_found"
        assert lost.headers.get("x-request-id")


def test_fuzzed_response_ids_never_get_a_5xx(world: World) -> None:
    """GET /v1/responses/{id} with any id (keys included): below 500, OpenAI's error
    shape, x-request-id, and the id never echoed when it is a key."""

    # Every key wlm knows in clear (bob's is configured as a SHA-256: wlm cannot know it
    # when someone else types it; see the next test for bob typing his own).
    known = [key for key in KEYS.all() if key != KEYS.bob]

    @settings(FUZZ, max_examples=100)
    @given(
        response_id=st.text(min_size=1, max_size=80) | st.sampled_from(known),
        prefix=st.sampled_from(["/v1", "/api/v1"]),
    )
    def run(response_id: str, prefix: str) -> None:
        quoted = urllib.parse.quote(response_id, safe="")
        response = world.http.get(f"{prefix}/responses/{quoted}")
        assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
        assert response.headers.get("x-request-id"), "no (or an empty) x-request-id"
        if response.status_code != 200:
            error_of(response)
        if response_id in known:
            assert response_id not in response.text, "a key was echoed"

    run()
    still_healthy(world)


def test_a_hashed_client_key_typed_as_a_response_id_by_its_owner_is_not_echoed(
    world: World,
) -> None:
    """bob (a key configured as a SHA-256) asks for his own key as a response id: the 404
    must not quote it (the proxied endpoints redact the key a client presented)."""
    response = world.client(KEYS.bob).get(f"/v1/responses/{KEYS.bob}")

    assert response.status_code == 404, response.text[:300]
    error_of(response)
    assert KEYS.bob not in response.text, "bob's key was echoed back"


# -- malformed and fuzzed bodies ----------------------------------------------------------------

MESSAGES_PATHS = [
    "/v1/messages",
    "/api/v1/messages",
    COUNT_TOKENS,
    "/api/v1/messages/count_tokens",
]
RESPONSES_PATHS = ["/v1/responses", "/api/v1/responses"]

# (body, status): requests wlm must refuse before any upstream sees them.
MALFORMED = [
    (b"", 400),
    (b"{", 400),
    (b"[1, 2]", 400),
    (b'"model"', 400),
    (b"null", 400),
    (b"\xff\xfe\x00", 400),
    (b"[" * 100_000 + b"]" * 100_000, 400),
    (b'{"messages": [], "input": "hi"}', 400),
    (b'{"model": 7, "messages": [], "input": "hi"}', 400),
    (b'{"model": "  ", "messages": [], "input": "hi"}', 400),
    (b'{"model": "anthropic/claude-x", "messages": [], "input": "x", "stream": "yes"}', 400),
    (b'{"model": "no-such-model", "messages": [], "input": "hi"}', 404),
]


def assert_dialect_answer(path: str, response: httpx.Response) -> None:
    """Below 500, an x-request-id, and anything but a 200 in the dialect's exact shape."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    assert response.headers.get("x-request-id"), "no (or an empty) x-request-id"
    if response.status_code != 200:
        if "/messages" in path:
            anthropic_error_of(response)
        else:
            error_of(response)


def post_raw(world: World, path: str, content: bytes) -> httpx.Response:
    with world.http.stream(
        "POST", path, content=content, headers={"content-type": "application/json"}
    ) as response:
        response.read()
    return response


@pytest.mark.parametrize("path", [*MESSAGES_PATHS, *RESPONSES_PATHS])
def test_malformed_bodies_are_refused_in_the_clients_dialect(world: World, path: str) -> None:
    for content, status in MALFORMED:
        response = post_raw(world, path, content)
        assert_dialect_answer(path, response)
        assert response.status_code == status, (content[:60], response.text[:300])
    missing = b'{"model": "anthropic/claude-x"}'  # no messages / no input
    response = post_raw(world, path, missing)
    assert_dialect_answer(path, response)
    assert response.status_code == 400, response.text[:300]


fuzz_models = (
    st.sampled_from(
        [
            "anthropic/claude-sonnet-4-5-20250929",
            "claude-sonnet-4-5-20250929",
            "openai/gpt-4o-mini",
            "gpt-4o-mini",
            "slow/gpt-4o-mini",
            "openrouter/openai/gpt-4o-mini",
            "no-such-model",
            "local/nothing",
            "",
            " ",
        ]
    )
    | st.text(max_size=30).filter(ordinary)
    | json_values
)
short_text = st.text(max_size=40)
content_blocks = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "text",
                "image",
                "document",
                "tool_use",
                "tool_result",
                "thinking",
                "redacted_thinking",
                "server_tool_use",
                "x",
            ]
        )
        | json_values
    },
    optional={
        "text": short_text | json_values,
        "source": st.fixed_dictionaries(
            {"type": st.sampled_from(["base64", "url", "text", "file"])},
            optional={"media_type": json_values, "data": json_values, "url": json_values},
        )
        | json_values,
        "id": json_values,
        "name": json_values,
        "input": json_values,
        "tool_use_id": json_values,
        "content": short_text | json_values,
        "is_error": json_values,
        "thinking": json_values,
        "signature": json_values,
        "cache_control": json_values,
    },
)
anthropic_messages = (
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system", "tool", "x"])},
            optional={"content": short_text | st.lists(content_blocks, max_size=3) | json_values},
        ),
        max_size=4,
    )
    | json_values
)
anthropic_tools = (
    st.lists(
        st.fixed_dictionaries(
            {"name": short_text | json_values},
            optional={
                "type": st.sampled_from(["custom", "web_search_20250305", "bash_20250124"])
                | json_values,
                "description": json_values,
                "input_schema": json_values,
            },
        ),
        max_size=3,
    )
    | json_values
)
messages_like = st.fixed_dictionaries(
    {"model": fuzz_models},
    optional={
        "messages": anthropic_messages,
        "max_tokens": st.integers(min_value=-5, max_value=10**12) | json_values,
        "system": short_text | st.lists(content_blocks, max_size=2) | json_values,
        "stream": st.booleans() | json_values,
        "tools": anthropic_tools,
        "tool_choice": st.fixed_dictionaries(
            {"type": st.sampled_from(["auto", "any", "tool", "none"])},
            optional={"name": json_values, "disable_parallel_tool_use": json_values},
        )
        | json_values,
        "thinking": st.fixed_dictionaries(
            {"type": st.sampled_from(["enabled", "disabled", "adaptive"])},
            optional={"budget_tokens": json_values},
        )
        | json_values,
        "output_config": json_values,
        "metadata": st.fixed_dictionaries({}, optional={"user_id": json_values}) | json_values,
        "stop_sequences": json_values,
        "temperature": json_values,
        "top_p": json_values,
        "top_k": json_values,
    },
).filter(lambda body: not isinstance(body["model"], str) or ordinary(body["model"]))
input_parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "input_image", "input_file", "x"])},
    optional={
        "text": short_text | json_values,
        "image_url": json_values,
        "file_id": json_values,
        "file_data": json_values,
    },
)
input_items = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "message",
                "function_call",
                "function_call_output",
                "custom_tool_call",
                "custom_tool_call_output",
                "reasoning",
                "item_reference",
                "x",
            ]
        )
        | json_values
    },
    optional={
        "role": st.sampled_from(["user", "assistant", "system", "developer", "x"]) | json_values,
        "content": short_text | st.lists(input_parts, max_size=3) | json_values,
        "call_id": json_values,
        "name": json_values,
        "arguments": json_values,
        "input": json_values,
        "output": json_values,
        "summary": json_values,
        "id": json_values,
    },
)
responses_tools = (
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["function", "custom", "namespace", "web_search", "x"])},
            optional={
                "name": short_text | json_values,
                "description": json_values,
                "parameters": json_values,
                "format": json_values,
                "tools": json_values,
                "strict": json_values,
            },
        ),
        max_size=3,
    )
    | json_values
)
responses_like = st.fixed_dictionaries(
    {"model": fuzz_models},
    optional={
        "input": short_text | st.lists(input_items, max_size=4) | json_values,
        "instructions": json_values,
        "stream": st.booleans() | json_values,
        "tools": responses_tools,
        "tool_choice": json_values,
        "text": st.fixed_dictionaries(
            {}, optional={"format": json_values, "verbosity": json_values}
        )
        | json_values,
        "reasoning": st.fixed_dictionaries(
            {}, optional={"effort": json_values, "summary": json_values}
        )
        | json_values,
        "max_output_tokens": st.integers(min_value=-5, max_value=10**12) | json_values,
        "previous_response_id": st.just("resp_0123456789abcdef") | json_values,
        "store": json_values,
        "include": json_values,
        "parallel_tool_calls": json_values,
        "temperature": json_values,
        "top_p": json_values,
        "metadata": json_values,
    },
).filter(lambda body: not isinstance(body["model"], str) or ordinary(body["model"]))


def raw_bodies(like: st.SearchStrategy[dict]) -> st.SearchStrategy[bytes]:
    return (
        st.binary(max_size=300)
        | json_values.map(lambda v: json.dumps(v).encode())
        | like.map(lambda v: json.dumps(v).encode())
        | like.map(lambda v: json.dumps(v).encode()[: len(json.dumps(v).encode()) // 2])
    )


def still_healthy(world: World) -> None:
    assert world.http.get("/health").json()["status"] in ("ok", "degraded")
    for way in WAYS:
        reply = send(
            world, way.path, body_for(way, way.model(way.ordinary_model)), new_request_id()
        )
        assert reply.status_code == 200, (way.name, reply.text[:300])


def test_fuzzed_messages_bodies_never_get_a_5xx(world: World) -> None:
    examples = []

    @FUZZ
    @given(path=st.sampled_from(MESSAGES_PATHS), body=raw_bodies(messages_like))
    def run(path: str, body: bytes) -> None:
        examples.append(body)
        assert_dialect_answer(path, post_raw(world, path, body))

    run()
    world.ledger.figures["fuzz_messages_examples"] = len(examples)
    still_healthy(world)


def test_fuzzed_responses_bodies_never_get_a_5xx(world: World) -> None:
    examples = []

    @FUZZ
    @given(path=st.sampled_from(RESPONSES_PATHS), body=raw_bodies(responses_like))
    def run(path: str, body: bytes) -> None:
        examples.append(body)
        assert_dialect_answer(path, post_raw(world, path, body))

    run()
    world.ledger.figures["fuzz_responses_examples"] = len(examples)
    still_healthy(world)


def test_zz_telemetry_recorded_every_case_above(world: World, rows: RowChecks) -> None:
    """One row per case, with its status, the client's status and its endpoints."""
    if not rows.expected:
        pytest.skip("no fault case of this module ran")
    assert rows.verify(world.admin) == len(rows.expected)
