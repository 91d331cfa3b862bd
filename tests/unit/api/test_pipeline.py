"""The proxy's decisions, in-process on a MockTransport: routing, errors, retries, telemetry."""

from __future__ import annotations

import asyncio
import hashlib

import msgspec
import pytest

from wlm.api.proxy import Message
from wlm.errors import UpstreamBroken, UpstreamTimeout, UpstreamUnreachable
from wlm.providers.local import LocalAdapter, local_provider_config
from wlm.transport import MockResponse, UpstreamRequest

from .pipeline import FakeLocal, body, chunk, completion, drive, make_gateway, sse

HELLO = [{"role": "user", "content": "hello"}]
SECRETS = ("sk-openai-secret-1234", "sk-ant-secret-5678")


def no_secret(*texts: object) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text)


async def test_routes_by_model_and_injects_the_key_server_side() -> None:
    gateway, transport, sink = make_gateway(lambda request: completion("hey"))
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 200
    assert reply.json()["model"] == "gpt-4o"  # the name the client asked for, not upstream's
    (sent,) = transport.requests
    assert sent.url == "https://api.openai.com/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-openai-secret-1234"
    record = sink.only
    assert (record.provider, record.status, record.http_status) == ("openai", "ok", 200)
    assert (record.prompt_tokens, record.completion_tokens) == (3, 1)
    assert record.request_id == reply.headers["x-request-id"]


async def test_anthropic_route_translates_the_request() -> None:
    def handler(request: UpstreamRequest) -> MockResponse:
        sent = msgspec.json.decode(request.body or b"")
        assert sent["model"] == "claude-x" and sent["max_tokens"] > 0
        return MockResponse.json(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [{"type": "text", "text": "bonjour"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 5, "output_tokens": 2},
            }
        )

    gateway, transport, sink = make_gateway(handler)
    reply = await drive(gateway, body(model="claude-x", messages=HELLO))
    assert reply.status == 200, reply.body
    assert reply.json()["choices"][0]["message"]["content"] == "bonjour"
    assert transport.requests[0].url == "https://api.anthropic.com/v1/messages"
    assert transport.requests[0].headers["x-api-key"] == "sk-ant-secret-5678"
    assert sink.only.provider == "anthropic"


async def test_unknown_model_is_a_404_without_any_upstream_call() -> None:
    gateway, transport, sink = make_gateway(lambda request: completion())
    reply = await drive(gateway, body(model="nobody-has-this", messages=HELLO))
    assert reply.status == 404
    assert reply.error["code"] == "model_not_found"
    assert transport.requests == []
    assert (sink.only.status, sink.only.http_status, sink.only.provider) == ("error", 404, None)


@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        (UpstreamUnreachable("Provider 'openai' is unreachable."), 502, "upstream_unreachable"),
        (UpstreamTimeout("Provider 'openai' did not answer in time."), 504, "upstream_timeout"),
        (UpstreamBroken("Provider 'openai' closed the connection."), 502, "upstream_broken"),
    ],
)
async def test_transport_failures_map_to_gateway_statuses(
    raised: Exception, status: int, code: str
) -> None:
    def handler(request: UpstreamRequest) -> MockResponse:
        raise raised

    gateway, _, sink = make_gateway(handler)
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert (reply.status, reply.error["code"]) == (status, code)
    assert (sink.only.status, sink.only.http_status, sink.only.error_code) == (
        "error",
        status,
        code,
    )


async def test_upstream_error_status_and_retry_after_pass_through_redacted() -> None:
    upstream_error = {
        "error": {
            "message": "Rate limit for key sk-openai-secret-1234 reached",
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
        }
    }
    gateway, _, sink = make_gateway(
        lambda request: MockResponse.json(upstream_error, 429, {"retry-after": "7"})
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 429
    assert reply.headers["retry-after"] == "7"
    assert reply.error["type"] == "rate_limit_error"
    assert "[redacted]" in reply.error["message"]
    no_secret(reply.body, sink.rows)


async def test_stream_passes_through_and_a_mid_stream_failure_ends_it_with_an_error_event() -> None:
    events = sse(chunk("a"), chunk("b"), done=False)
    gateway, transport, sink = make_gateway(
        lambda request: MockResponse.sse(events, UpstreamBroken("Provider 'openai' closed."))
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, stream=True))
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    text = reply.body.decode()
    assert text.count("data: {") == 3 and '"upstream_broken"' in text.splitlines()[-2]
    record = sink.only
    assert (record.status, record.http_status, record.error_code) == (
        "error",
        200,
        "upstream_broken",
    )
    assert transport.responses[0].closed  # the broken connection is dropped, not pooled


async def test_stream_asks_for_usage_and_hides_the_usage_chunk_it_added() -> None:
    usage = {
        "id": "c1",
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2},
    }
    gateway, transport, sink = make_gateway(
        lambda request: MockResponse.sse(sse(chunk("a", "stop"), usage))
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, stream=True))
    sent = msgspec.json.decode(transport.requests[0].body or b"")
    assert sent["stream_options"] == {"include_usage": True}
    assert b'"usage"' not in reply.body
    assert reply.body.endswith(b"data: [DONE]\n\n")
    assert (sink.only.prompt_tokens, sink.only.completion_tokens) == (4, 2)


async def test_client_leaving_mid_stream_closes_upstream_and_is_recorded_as_499() -> None:
    gateway, transport, sink = make_gateway(
        lambda request: MockResponse.sse(sse(chunk("a"), done=False), stall_after=True)
    )
    reply = await drive(
        gateway, body(model="gpt-4o", messages=HELLO, stream=True), leave_after_parts=1
    )
    assert reply.status == 200
    assert transport.responses[0].closed
    assert (sink.only.status, sink.only.http_status) == ("cancelled", 499)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (b"", None),
        (b"{nope", None),
        (b"[1]", None),
        (body(messages=HELLO), "model"),
        (body(model="gpt-4o"), "messages"),
        (body(model="gpt-4o", messages=HELLO, stream="yes"), "stream"),
        (b'{"model":"gpt-4o","messages":' + b"[" * 5000 + b"]" * 5000 + b"}", None),
    ],
)
async def test_bad_bodies_are_400s_in_openai_shape(payload: bytes, param: str | None) -> None:
    gateway, transport, sink = make_gateway(lambda request: completion())
    reply = await drive(gateway, payload)
    assert reply.status == 400
    assert reply.error["type"] == "invalid_request_error"
    assert reply.error["param"] == param
    assert transport.requests == []
    assert sink.only.http_status == 400


async def test_stream_null_means_not_streaming() -> None:
    gateway, _, _ = make_gateway(lambda request: completion())
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, stream=None))
    assert reply.status == 200
    assert reply.json()["object"] == "chat.completion"


async def test_declared_body_over_the_limit_is_refused_before_reading() -> None:
    gateway, transport, _ = make_gateway(lambda request: completion(), max_body_bytes=1000)
    read = 0

    async def receive() -> Message:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"{}", "more_body": True}

    reply = await drive(
        gateway,
        b"",
        headers=[(b"content-length", b"999999999")],
        receive=receive,
    )
    assert reply.status == 413
    assert reply.error["code"] == "request_too_large"
    assert read == 0
    assert transport.requests == []


async def test_a_body_that_stops_arriving_gets_a_408() -> None:
    gateway, transport, sink = make_gateway(lambda request: completion(), body_timeout_s=0.05)
    parts = [{"type": "http.request", "body": b'{"mo', "more_body": True}]
    never = asyncio.Event()

    async def receive() -> Message:
        if parts:
            return parts.pop()
        await never.wait()
        return {"type": "http.disconnect"}

    reply = await drive(gateway, b"", receive=receive)
    assert reply.status == 408
    assert reply.error["code"] == "request_timeout"
    assert transport.requests == []
    assert sink.only.http_status == 408


async def test_a_slow_body_that_keeps_coming_is_read_whole() -> None:
    # Each part comes within the timeout, the whole body takes four times as long.
    gateway, transport, _ = make_gateway(lambda request: completion(), body_timeout_s=0.05)
    payload = body(model="gpt-4o", messages=HELLO)
    parts = [payload[i : i + 8] for i in range(0, len(payload), 8)]
    pace = 0.2 / len(parts)

    async def receive() -> Message:
        await asyncio.sleep(pace)  # a slow client, not a synchronisation
        part = parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    reply = await drive(gateway, b"", receive=receive)
    assert reply.status == 200
    assert msgspec.json.decode(transport.requests[0].body)["messages"] == HELLO


async def test_wrong_client_key_is_a_401_that_leaks_nothing() -> None:
    gateway, transport, sink = make_gateway(
        lambda request: completion(), {"WLM_API_KEYS": "alice:sk-client-alice-0001"}
    )
    reply = await drive(
        gateway,
        body(model="gpt-4o", messages=HELLO),
        headers=[(b"authorization", b"Bearer sk-wrong")],
    )
    assert reply.status == 401
    assert reply.error["type"] == "authentication_error"
    assert transport.requests == []
    ok = await drive(
        gateway,
        body(model="gpt-4o", messages=HELLO),
        headers=[(b"authorization", b"Bearer sk-client-alice-0001")],
    )
    assert ok.status == 200
    assert [r.client for r, _ in sink.rows] == [None, "alice"]


async def test_per_client_concurrency_limit_is_a_429_and_frees_the_slot_after() -> None:
    release = asyncio.Event()
    upstream_reached = asyncio.Event()

    async def slow(request: UpstreamRequest) -> MockResponse:
        upstream_reached.set()
        await release.wait()
        return completion()

    gateway, _, _ = make_gateway(slow, max_concurrency_per_client=1)
    first = asyncio.ensure_future(drive(gateway, body(model="gpt-4o", messages=HELLO)))
    await upstream_reached.wait()  # the first request holds its slot
    second = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert second.status == 429
    assert second.headers["retry-after"] == "1"
    release.set()
    assert (await first).status == 200
    assert gateway.client_slots.in_flight("127.0.0.1") == 0
    assert gateway.metrics.rejected["concurrency"] == 1


async def test_a_concurrency_slot_is_given_back_whatever_the_request_ends_with() -> None:
    error = {"error": {"message": "bad", "type": "invalid_request_error"}}
    gateway, _, _ = make_gateway(
        lambda request: MockResponse.json(error, 400), max_concurrency_per_client=1
    )
    for payload in (
        body(model="gpt-4o", messages=HELLO),  # the upstream refuses it
        b"{not json",  # wlm refuses it
        body(model="no-such-model", messages=HELLO),  # it routes nowhere
    ):
        reply = await drive(gateway, payload)
        assert reply.status in (400, 404)
        assert gateway.client_slots.in_flight("127.0.0.1") == 0
    # Left mid-stream: the slot is free as soon as the request is cancelled.
    streaming, _, _ = make_gateway(
        # One event, then nothing: only the client's leaving ends it.
        lambda request: MockResponse.sse(sse(chunk("a"), done=False), stall_after=True),
        max_concurrency_per_client=1,
    )
    left = await drive(
        streaming,
        body(model="gpt-4o", messages=HELLO, stream=True),
        leave_after_parts=1,
    )
    assert left.status == 200
    assert streaming.client_slots.in_flight("127.0.0.1") == 0
    assert streaming.metrics.rejected["concurrency"] == 0


async def test_odd_request_headers_get_the_answer_a_client_expects() -> None:
    gateway, _, sink = make_gateway(lambda request: completion())
    payload = body(model="gpt-4o", messages=HELLO)
    # An empty x-request-id says nothing: the next one names the request.
    reply = await drive(
        gateway, payload, headers=[(b"x-request-id", b""), (b"x-request-id", b"mine-1")]
    )
    assert reply.headers["x-request-id"] == "mine-1"
    assert sink.rows[-1][0].request_id == "mine-1"
    # A length that is no number to int() (latin-1 "²") is not a declared size: served.
    reply = await drive(gateway, payload, headers=[(b"content-length", "\u00b2".encode("latin-1"))])
    assert reply.status == 200
    # The first of two lengths counts, as Granian would read it.
    reply = await drive(
        gateway,
        payload,
        headers=[(b"content-length", b"%d" % len(payload)), (b"content-length", b"9" * 12)],
    )
    assert reply.status == 200


# -- local engines: one more adapter ------------------------------------------------------


def local_gateway(handler, local: FakeLocal | None = None, **env: str):  # type: ignore[no-untyped-def]
    local = local or FakeLocal()
    gateway, transport, sink = make_gateway(handler, env, local=local)
    gateway.adapters["local"] = LocalAdapter(
        local_provider_config(60.0), transport, local, loading_every_s=0.01
    )
    return gateway, transport, sink, local


async def test_local_engine_crash_before_first_byte_is_retried_once() -> None:
    answers: list[object] = [UpstreamUnreachable("engine gone"), completion("recovered")]

    def handler(request: UpstreamRequest) -> MockResponse:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, MockResponse)
        return answer

    gateway, transport, sink, local = local_gateway(handler)
    reply = await drive(gateway, body(model="tiny", messages=HELLO))
    assert reply.status == 200
    assert [r.url for r in transport.requests] == ["http://127.0.0.1:9/v1/chat/completions"] * 2
    assert (sink.only.provider, sink.only.attempts) == ("local", 2)
    assert local.acquired == 2 and local.leased == 0


async def test_local_engine_that_stays_down_fails_after_two_attempts() -> None:
    def handler(request: UpstreamRequest) -> MockResponse:
        raise UpstreamUnreachable("Provider 'local' is unreachable: Connection refused.")

    gateway, transport, sink, local = local_gateway(handler)
    reply = await drive(gateway, body(model="tiny", messages=HELLO))
    assert (reply.status, reply.error["code"]) == (502, "upstream_unreachable")
    assert len(transport.requests) == 2
    assert sink.only.attempts == 2 and local.leased == 0


async def test_loading_engine_sends_sse_comments_to_a_stream_then_the_answer() -> None:
    local = FakeLocal()
    local.ready.clear()
    gateway, _, sink, local = local_gateway(
        lambda request: MockResponse.sse(sse(chunk("x", "stop"))), local
    )

    def engine_ready_once_a_comment_went_out(part: bytes) -> None:
        if part.startswith(b": loading tiny"):
            local.ready.set()

    reply = await drive(
        gateway,
        body(model="tiny", messages=HELLO, stream=True),
        on_part=engine_ready_once_a_comment_went_out,
    )
    assert reply.status == 200
    assert reply.parts[0].startswith(b": loading tiny")
    assert reply.body.endswith(b"data: [DONE]\n\n")
    assert b'"content":"x"' in reply.body
    assert sink.only.status == "ok" and local.leased == 0


async def test_loading_engine_sends_nothing_to_a_whole_response_client() -> None:
    local = FakeLocal()
    local.ready.clear()
    gateway, _, _, local = local_gateway(lambda request: completion("done"), local)
    asyncio.get_running_loop().call_later(0.05, local.ready.set)
    reply = await drive(gateway, body(model="tiny", messages=HELLO))
    assert reply.status == 200
    assert reply.json()["choices"][0]["message"]["content"] == "done"


async def test_local_embeddings_on_a_chat_model_says_which_option_to_set() -> None:
    error = {
        "error": {
            "code": 501,
            "message": "This server does not support embeddings. Start it with `--embeddings`",
            "type": "not_supported_error",
        }
    }
    gateway, _, _, local = local_gateway(lambda request: MockResponse.json(error, 501))
    reply = await drive(gateway, body(model="tiny", input="hi"), endpoint="embeddings")
    assert (reply.status, reply.error["code"]) == (501, "embeddings_disabled")
    assert "embeddings = true" in reply.error["message"]
    assert "WLM_LOCAL_OPTIONS" in reply.error["message"]
    assert local.leased == 0


async def test_local_wrongly_typed_field_gets_wlms_own_400_before_the_engine() -> None:
    gateway, transport, _, local = local_gateway(lambda request: completion())
    reply = await drive(gateway, body(model="tiny", messages=HELLO, max_tokens="many"))
    assert reply.status == 400
    assert reply.error["param"] == "max_tokens"
    assert transport.requests == [] and local.acquired == 0


async def test_local_engine_json_exception_text_becomes_a_400() -> None:
    error = {
        "error": {
            "code": 500,
            "message": "[json.exception.type_error.302] type must be number, but is string",
            "type": "server_error",
        }
    }
    gateway, _, _, _ = local_gateway(lambda request: MockResponse.json(error, 500))
    reply = await drive(gateway, body(model="tiny", messages=HELLO, n_probs="x"))
    assert reply.status == 400
    assert reply.error["type"] == "invalid_request_error"


async def test_events_go_out_as_they_arrive_never_held_for_later_ones() -> None:
    together = b"".join(sse(chunk("a"), chunk("b"), done=False))
    apart = sse(chunk("c", "stop"))  # two reads: the finish chunk, then [DONE]
    gateway, _, _ = make_gateway(lambda request: MockResponse.sse([together, *apart]))
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, stream=True))
    # One send per upstream read: what arrived together leaves together, and nothing
    # that arrived is held back waiting for the next read. The read that completes the
    # answer ([DONE]) is the body's last part, not followed by an empty one.
    assert [part.count(b"data: ") for part in reply.parts] == [2, 1, 1]
    assert reply.parts[-1] == b"data: [DONE]\n\n"


async def test_keys_an_upstream_echoes_into_a_stream_are_redacted_on_the_way_out() -> None:
    client_key = "sk-client-carol-4242"
    digest = hashlib.sha256(client_key.encode()).hexdigest()
    events = sse(
        chunk("your provider key is sk-openai-secret-1234"), chunk(f" and yours {client_key}")
    )
    gateway, _, sink = make_gateway(
        lambda request: MockResponse.sse(events), {"WLM_API_KEYS": f"carol:sha256:{digest}"}
    )
    reply = await drive(
        gateway,
        body(model="gpt-4o", messages=HELLO, stream=True),
        headers=[(b"authorization", f"Bearer {client_key}".encode())],
    )
    assert reply.status == 200
    assert reply.body.count(b"[redacted]") == 2
    no_secret(reply.body, sink.rows)
    assert client_key.encode() not in reply.body
    assert client_key not in str(sink.rows)
