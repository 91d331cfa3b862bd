"""POST /v1/messages in-process: native to Anthropic, translated to chat backends,
with Anthropic-shaped errors and one telemetry row each."""

from __future__ import annotations

from typing import Any

import msgspec

from wlm.errors import UpstreamBroken
from wlm.transport import MockResponse, UpstreamRequest

from .pipeline import body, chunk, completion, drive, make_gateway, sse

HI = [{"role": "user", "content": "hello"}]


def events_of(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((lines["event"], msgspec.json.decode(lines["data"])))
    return out


def anthropic_sse(*events: dict[str, Any]) -> list[bytes]:
    return [
        f"event: {e['type']}\ndata: ".encode() + msgspec.json.encode(e) + b"\n\n" for e in events
    ]


MESSAGE_STREAM = anthropic_sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_up",
            "type": "message",
            "role": "assistant",
            "model": "claude-x-20250101",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 9, "output_tokens": 1, "cache_read_input_tokens": 3},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi!"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 4},
    },
    {"type": "message_stop"},
)


async def test_native_anthropic_stream_passes_through_with_the_clients_model_name() -> None:
    gateway, transport, sink = make_gateway(lambda request: MockResponse.sse(MESSAGE_STREAM))
    reply = await drive(
        gateway,
        body(
            model="claude-x",
            max_tokens=64,
            stream=True,
            context_management={"edits": []},  # unknown to wlm: must reach the upstream
            messages=[{"role": "system", "content": "Be brief."}, *HI],
        ),
        endpoint="messages",
        headers=[(b"anthropic-beta", b"claude-code-20250219,interleaved-thinking-2025-05-14")],
    )
    assert reply.status == 200
    (sent,) = transport.requests
    assert sent.url == "https://api.anthropic.com/v1/messages"
    assert sent.headers["anthropic-beta"] == "claude-code-20250219,interleaved-thinking-2025-05-14"
    upstream = msgspec.json.decode(sent.body or b"")
    # A system message inside messages moves to system, where Anthropic takes it.
    assert upstream["system"] == [{"type": "text", "text": "Be brief."}]
    assert [m["role"] for m in upstream["messages"]] == ["user"]
    assert upstream["context_management"] == {"edits": []}
    events = events_of(reply.body)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"]["model"] == "claude-x"
    record = sink.only
    assert (record.endpoint, record.upstream_endpoint, record.provider) == (
        "messages",
        "messages",
        "anthropic",
    )
    assert (record.completion_tokens, record.cached_tokens) == (4, 3)
    assert record.finish_reason == "stop"


async def test_messages_to_a_chat_backend_are_translated_both_ways() -> None:
    stream = sse(
        chunk("Hel"),
        chunk("lo"),
        chunk(None, "stop"),
        {
            "id": "c1",
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2},
        },
    )
    gateway, transport, sink = make_gateway(lambda request: MockResponse.sse(stream))
    reply = await drive(
        gateway,
        body(model="gpt-4o", max_tokens=50, stream=True, system="Be brief.", messages=HI),
        endpoint="messages",
    )
    assert reply.status == 200
    sent = msgspec.json.decode(transport.requests[0].body or b"")
    assert transport.requests[0].url == "https://api.openai.com/v1/chat/completions"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stream_options"] == {"include_usage": True}
    events = events_of(reply.body)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    text = "".join(
        e["delta"]["text"] for n, e in events if n == "content_block_delta" and "text" in e["delta"]
    )
    assert text == "Hello"
    delta = next(e for n, e in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 2
    record = sink.only
    assert (record.endpoint, record.upstream_endpoint) == ("messages", "chat/completions")
    assert (record.prompt_tokens, record.completion_tokens) == (7, 2)


async def test_a_whole_messages_answer_from_a_chat_backend() -> None:
    gateway, _, sink = make_gateway(lambda request: completion("bonjour"))
    reply = await drive(
        gateway, body(model="gpt-4o", max_tokens=50, messages=HI), endpoint="messages"
    )
    assert reply.status == 200
    message = reply.json()
    assert message["type"] == "message" and message["model"] == "gpt-4o"
    assert message["content"] == [{"type": "text", "text": "bonjour"}]
    assert message["stop_reason"] == "end_turn"
    assert message["id"].startswith("msg_")
    assert sink.only.status == "ok"
    # Anthropic's clients (Claude Code) read request-id; wlm's own id is there too.
    assert reply.headers["request-id"] == reply.headers["x-request-id"]


async def test_messages_errors_are_anthropic_shaped() -> None:
    rate_limited = {"error": {"message": "slow down", "type": "rate_limit_error"}}
    gateway, _, sink = make_gateway(
        lambda request: MockResponse.json(rate_limited, 429, {"retry-after": "3"})
    )
    missing = await drive(gateway, body(model="gpt-4o", max_tokens=5), endpoint="messages")
    assert missing.status == 400
    assert missing.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "'messages' must be an array."},
    }
    unknown = await drive(
        gateway, body(model="nobody-has-it", max_tokens=5, messages=HI), endpoint="messages"
    )
    assert unknown.status == 404
    assert unknown.json()["error"]["type"] == "not_found_error"
    limited = await drive(
        gateway, body(model="gpt-4o", max_tokens=5, messages=HI), endpoint="messages"
    )
    assert limited.status == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.json()["type"] == "error"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert [r.http_status for r, _ in sink.rows] == [400, 404, 429]


async def test_anthropic_overloaded_reaches_a_messages_client_as_529() -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    gateway, _, _ = make_gateway(lambda request: MockResponse.json(overloaded, 529))
    reply = await drive(
        gateway, body(model="claude-x", max_tokens=5, messages=HI), endpoint="messages"
    )
    assert reply.status == 529
    assert reply.json()["error"]["type"] == "overloaded_error"


async def test_a_stream_that_breaks_off_ends_with_an_anthropic_error_event() -> None:
    def handler(request: UpstreamRequest) -> MockResponse:
        if "anthropic" in request.url:
            return MockResponse.sse(MESSAGE_STREAM[:3], UpstreamBroken("closed"))
        return MockResponse.sse(sse(chunk("Hel"), done=False), UpstreamBroken("closed"))

    gateway, _, sink = make_gateway(handler)
    for model in ("claude-x", "gpt-4o"):
        reply = await drive(
            gateway,
            body(model=model, max_tokens=5, stream=True, messages=HI),
            endpoint="messages",
        )
        events = events_of(reply.body)
        assert events[0][0] == "message_start"
        assert events[-1][0] == "error", model
        assert events[-1][1]["type"] == "error"
    assert [r.status for r, _ in sink.rows] == ["error", "error"]


async def test_count_tokens_native_for_anthropic_and_an_estimate_elsewhere() -> None:
    gateway, transport, _ = make_gateway(lambda request: MockResponse.json({"input_tokens": 12}))
    native = await drive(
        gateway, body(model="claude-x", messages=HI), endpoint="messages/count_tokens"
    )
    assert native.json() == {"input_tokens": 12}
    assert transport.requests[0].url == "https://api.anthropic.com/v1/messages/count_tokens"
    estimate = await drive(
        gateway, body(model="gpt-4o", messages=HI), endpoint="messages/count_tokens"
    )
    assert estimate.status == 200
    assert estimate.headers["x-wlm-estimate"] == "true"
    assert estimate.json()["input_tokens"] > 0
    assert len(transport.requests) == 1  # the estimate called no upstream


async def test_a_model_that_refuses_reasoning_effort_is_asked_again_without_it() -> None:
    refusal = {
        "error": {
            "message": "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
            "type": "invalid_request_error",
            "param": "reasoning_effort",
            "code": "unsupported_parameter",
        }
    }
    answers = iter([MockResponse.json(refusal, 400), completion("fine")])
    gateway, transport, sink = make_gateway(lambda request: next(answers))
    thinking = {"type": "enabled", "budget_tokens": 2048}  # Claude Code always sends it
    reply = await drive(
        gateway,
        body(model="gpt-4o", max_tokens=64, thinking=thinking, messages=HI),
        endpoint="messages",
    )
    assert reply.status == 200
    first, second = (msgspec.json.decode(r.body or b"") for r in transport.requests)
    assert "reasoning_effort" in first and "reasoning_effort" not in second
    assert sink.only.attempts == 2


async def test_any_other_400_from_a_chat_backend_stands() -> None:
    refusal = {"error": {"message": "messages too long", "type": "invalid_request_error"}}
    gateway, transport, _ = make_gateway(lambda request: MockResponse.json(refusal, 400))
    thinking = {"type": "enabled", "budget_tokens": 2048}
    reply = await drive(
        gateway,
        body(model="gpt-4o", max_tokens=64, thinking=thinking, messages=HI),
        endpoint="messages",
    )
    assert reply.status == 400
    assert reply.json()["error"] == {
        "type": "invalid_request_error",
        "message": "messages too long",
    }
    assert len(transport.requests) == 1


async def test_a_translated_call_sends_the_routed_model_name_upstream() -> None:
    gateway, transport, _ = make_gateway(
        lambda request: completion("x"), {"WLM_ALIASES": "claude-*=openai/gpt-4o-mini"}
    )
    reply = await drive(
        gateway, body(model="claude-haiku-4-5", max_tokens=8, messages=HI), endpoint="messages"
    )
    assert reply.status == 200
    assert msgspec.json.decode(transport.requests[0].body or b"")["model"] == "gpt-4o-mini"
    assert reply.json()["model"] == "claude-haiku-4-5"
