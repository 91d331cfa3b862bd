"""Messages and Responses to a local engine in-process: served by the engine's own
/v1/messages and /v1/responses (its recorded answers, tests/fixtures/wire/llama_cpp/),
mended on the way, with loading comments, the crash retry, wlm's error shapes, the
responses wlm keeps, and WLM_LOCAL_DIALECTS to go back to translation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from wlm.errors import UpstreamUnreachable
from wlm.gateway import Gateway
from wlm.providers.local import LocalAdapter, local_provider_config
from wlm.transport import MockResponse, MockTransport, UpstreamRequest

from .pipeline import FakeLocal, ListSink, body, chunk, completion, drive, make_gateway, sse

LLAMA = Path(__file__).resolve().parents[2] / "fixtures" / "wire" / "llama_cpp"
ENGINE = "http://127.0.0.1:9/v1"
HELLO = [{"role": "user", "content": "say hi"}]


def recorded(name: str) -> MockResponse:
    """The engine's recorded answer, as it came (a stream in reads of one event)."""
    path = next(LLAMA.glob(f"{name}.response.*"))
    raw = path.read_bytes()
    if path.suffix == ".sse":
        return MockResponse.sse([event + b"\n\n" for event in raw.split(b"\n\n") if event])
    return MockResponse(200, {"content-type": "application/json"}, [raw])


def engine_error(name: str, status: int = 400) -> MockResponse:
    return MockResponse(
        status,
        {"content-type": "application/json"},
        [(LLAMA / f"{name}.response.json").read_bytes()],
    )


def local_gateway(
    handler: Any, local: FakeLocal | None = None, **env: str
) -> tuple[Gateway, MockTransport, ListSink, FakeLocal]:
    local = local or FakeLocal()
    gateway, transport, sink = make_gateway(handler, env, local=local)
    # The gateway's own local adapter, with loading reported at once.
    gateway.adapters["local"] = LocalAdapter(
        local_provider_config(60.0, gateway.settings.local_dialects),
        transport,
        local,
        loading_every_s=0.01,
    )
    return gateway, transport, sink, local


def events_of(raw: bytes) -> list[dict[str, Any]]:
    return [
        msgspec.json.decode(line[len("data: ") :])
        for line in raw.decode().splitlines()
        if line.startswith("data: ")
    ]


def sent(transport: MockTransport, n: int = 0) -> dict[str, Any]:
    value: dict[str, Any] = msgspec.json.decode(transport.requests[n].body or b"")
    return value


# -- Messages ---------------------------------------------------------------------------


async def test_a_messages_stream_is_the_engines_own() -> None:
    gateway, transport, sink, local = local_gateway(
        lambda request: recorded("messages_stream_stop")
    )
    reply = await drive(
        gateway,
        body(model="tiny", max_tokens=64, messages=HELLO, stream=True),
        endpoint="messages",
    )

    assert reply.status == 200
    assert [r.url for r in transport.requests] == [f"{ENGINE}/messages"]
    events = events_of(reply.body)
    assert events[0]["message"]["model"] == "tiny"
    assert events[-1] == {"type": "message_stop"}
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    record = sink.only
    assert (record.endpoint, record.upstream_endpoint, record.provider) == (
        "messages",
        "messages",
        "local",
    )
    # The engine's usage: input_tokens leaves the prompt cache out; telemetry counts both.
    start = events[0]["message"]["usage"]
    assert record.prompt_tokens == start["input_tokens"] + start["cache_read_input_tokens"]
    assert (record.completion_tokens, record.finish_reason) == (9, "stop")
    assert sink.rows[0][1] is not None and sink.rows[0][1].response_text == text
    assert local.leased == 0


async def test_a_whole_message_and_count_tokens_are_the_engines() -> None:
    answers = {
        f"{ENGINE}/messages": recorded("messages_cut_off"),
        f"{ENGINE}/messages/count_tokens": MockResponse.json({"input_tokens": 22}),
    }
    gateway, _, sink, _ = local_gateway(lambda request: answers[request.url])

    reply = await drive(
        gateway,
        body(model="tiny", max_tokens=4, messages=HELLO),
        endpoint="messages",
    )
    counted = await drive(
        gateway, body(model="tiny", messages=HELLO), endpoint="messages/count_tokens"
    )

    message = reply.json()
    assert (message["stop_reason"], message["model"]) == ("max_tokens", "tiny")
    assert counted.json() == {"input_tokens": 22}
    assert "x-wlm-estimate" not in counted.headers
    whole, count = (row[0] for row in sink.rows)
    assert (whole.upstream_endpoint, whole.finish_reason, whole.completion_tokens) == (
        "messages",
        "length",
        4,
    )
    assert count.upstream_endpoint == "messages/count_tokens"


async def test_a_messages_client_gets_the_engines_errors_as_anthropic_errors() -> None:
    gateway, _, sink, _ = local_gateway(lambda request: engine_error("error_context_exceeded"))
    reply = await drive(
        gateway, body(model="tiny", max_tokens=4, messages=HELLO, stream=True), endpoint="messages"
    )

    assert reply.status == 400
    error = reply.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    # wlm's words, with the engine's numbers, not llama.cpp's "try increasing it".
    assert "3024 tokens" in error["error"]["message"]
    assert "WLM_LOCAL_CTX_SIZE" in error["error"]["message"]
    assert sink.only.error_code == "context_length_exceeded"


async def test_an_image_the_model_cannot_read_is_a_400_not_the_engines_500() -> None:
    error = {
        "error": {
            "code": 500,
            "message": "image input is not supported - hint: if this is unexpected, you may "
            "need to provide the mmproj",
            "type": "server_error",
        }
    }
    gateway, _, _, _ = local_gateway(lambda request: MockResponse.json(error, 500))
    reply = await drive(
        gateway, body(model="tiny", max_tokens=4, messages=HELLO), endpoint="messages"
    )
    assert reply.status == 400
    assert "mmproj" in reply.json()["error"]["message"]


async def test_an_engine_that_crashed_is_restarted_for_a_messages_call() -> None:
    answers: list[Any] = [UpstreamUnreachable("engine gone"), recorded("messages_stream_stop")]

    def handler(request: UpstreamRequest) -> MockResponse:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    gateway, transport, sink, local = local_gateway(handler)
    reply = await drive(
        gateway, body(model="tiny", max_tokens=8, messages=HELLO, stream=True), endpoint="messages"
    )
    assert events_of(reply.body)[-1] == {"type": "message_stop"}
    assert len(transport.requests) == 2
    assert (sink.only.attempts, local.acquired, local.leased) == (2, 2, 0)


async def test_a_loading_engine_sends_comments_before_the_messages_stream() -> None:
    local = FakeLocal()
    local.ready.clear()
    gateway, _, _, local = local_gateway(lambda request: recorded("messages_stream_stop"), local)

    def engine_ready_once_a_comment_went_out(part: bytes) -> None:
        if part.startswith(b": loading tiny"):
            local.ready.set()

    reply = await drive(
        gateway,
        body(model="tiny", max_tokens=8, messages=HELLO, stream=True),
        endpoint="messages",
        on_part=engine_ready_once_a_comment_went_out,
    )
    assert reply.parts[0].startswith(b": loading tiny")
    assert events_of(reply.body)[-1] == {"type": "message_stop"}


# -- Responses --------------------------------------------------------------------------


async def test_a_responses_stream_is_the_engines_own_mended() -> None:
    gateway, transport, sink, _ = local_gateway(lambda request: recorded("responses_stream_stop"))
    reply = await drive(
        gateway,
        body(model="tiny", input="say hi", stream=True, tools=[{"type": "function", "name": "f"}]),
        endpoint="responses",
    )

    assert reply.status == 200
    assert [r.url for r in transport.requests] == [f"{ENGINE}/responses"]
    assert sent(transport)["tools"] == [{"type": "function", "name": "f"}]
    events = events_of(reply.body)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["output"] == []
    assert events[-1]["type"] == "response.completed"
    final = events[-1]["response"]
    assert final["tools"] == [{"type": "function", "name": "f"}]
    record = sink.only
    assert (record.endpoint, record.upstream_endpoint) == ("responses", "responses")
    # Telemetry names the engine's model; the client sees its own name.
    assert (record.upstream_model, final["model"]) == ("tinystop", "tiny")
    assert (record.prompt_tokens, record.completion_tokens) == (
        final["usage"]["input_tokens"],
        final["usage"]["output_tokens"],
    )
    assert record.local_predicted_n == 9  # the engine's timings
    # wlm keeps what the engine does not: the answer is there for GET and follow-ups.
    stored = gateway.responses.get(final["id"])
    assert stored is not None and stored.response == final


async def test_previous_response_id_sends_the_engine_the_whole_conversation() -> None:
    answers = [recorded("responses_stop"), recorded("responses_stream_stop")]
    gateway, transport, _, _ = local_gateway(lambda request: answers.pop(0))
    first = await drive(gateway, body(model="tiny", input="say hi"), endpoint="responses")
    first_id = first.json()["id"]

    second = await drive(
        gateway,
        body(model="tiny", input="and again", previous_response_id=first_id, stream=True),
        endpoint="responses",
    )

    upstream = sent(transport, 1)
    assert "previous_response_id" not in upstream  # the engine refuses it
    assert [i.get("role") for i in upstream["input"]] == ["user", "assistant", "user"]
    assert upstream["input"][1] == first.json()["output"][0]
    final = events_of(second.body)[-1]["response"]
    assert final["previous_response_id"] == first_id
    stored = gateway.responses.get(final["id"])
    assert stored is not None
    assert [i.get("role") for i in stored.history()] == ["user", "assistant", "user", "assistant"]


async def test_store_false_keeps_nothing() -> None:
    gateway, _, _, _ = local_gateway(lambda request: recorded("responses_stop"))
    reply = await drive(gateway, body(model="tiny", input="hi", store=False), endpoint="responses")
    assert reply.json()["store"] is False
    assert gateway.responses.get(reply.json()["id"]) is None


async def test_an_unknown_previous_response_is_the_clients_400_before_the_engine() -> None:
    gateway, transport, _, local = local_gateway(lambda request: recorded("responses_stop"))
    reply = await drive(
        gateway,
        body(model="tiny", input="hi", previous_response_id="resp_nope"),
        endpoint="responses",
    )
    assert (reply.status, reply.error["code"]) == (400, "previous_response_not_found")
    assert transport.requests == [] and local.acquired == 0


async def test_a_responses_client_gets_the_engines_errors_as_openai_errors() -> None:
    gateway, _, _, _ = local_gateway(lambda request: engine_error("error_context_exceeded"))
    reply = await drive(gateway, body(model="tiny", input="hi", stream=True), endpoint="responses")
    assert reply.status == 400
    assert reply.error["code"] == "context_length_exceeded"
    assert reply.error["type"] == "invalid_request_error"


async def test_a_responses_stream_cut_off_midway_ends_in_an_error_event() -> None:
    raw = (LLAMA / "responses_stream_stop.response.sse").read_bytes()
    events = [event + b"\n\n" for event in raw.split(b"\n\n") if event]
    gateway, _, sink, _ = local_gateway(
        lambda request: MockResponse.sse(events[:5], UpstreamUnreachable("engine died"))
    )
    reply = await drive(gateway, body(model="tiny", input="hi", stream=True), endpoint="responses")
    out = events_of(reply.body)
    assert out[-1]["type"] == "error"
    assert out[-1]["sequence_number"] == out[-2]["sequence_number"] + 1
    assert "response.completed" not in [e["type"] for e in out]
    assert sink.only.status != "ok"


async def test_tools_the_engine_would_skip_go_translated_through_chat() -> None:
    """Codex's namespace and custom tools: llama.cpp's /v1/responses skips them."""
    gateway, transport, sink, _ = local_gateway(
        lambda request: MockResponse.sse(sse(chunk("ok", "stop", usage=None)))
    )
    tools = [
        {"type": "function", "name": "shell", "parameters": {"type": "object"}},
        {"type": "custom", "name": "apply_patch", "description": "Patch files."},
    ]
    reply = await drive(
        gateway, body(model="tiny", input="hi", tools=tools, stream=True), endpoint="responses"
    )
    assert reply.status == 200
    assert [r.url for r in transport.requests] == [f"{ENGINE}/chat/completions"]
    names = [t["function"]["name"] for t in sent(transport)["tools"]]
    assert names == ["shell", "apply_patch"]
    assert sink.only.upstream_endpoint == "chat/completions"


@pytest.mark.parametrize("endpoint", ["messages", "responses"])
async def test_local_dialects_chat_goes_back_to_translation(endpoint: str) -> None:
    gateway, transport, sink, _ = local_gateway(
        lambda request: completion("hi"), WLM_LOCAL_DIALECTS="chat"
    )
    payload = (
        body(model="tiny", max_tokens=8, messages=HELLO)
        if endpoint == "messages"
        else body(model="tiny", input="hi")
    )
    reply = await drive(gateway, payload, endpoint=endpoint)
    assert reply.status == 200
    assert [r.url for r in transport.requests] == [f"{ENGINE}/chat/completions"]
    assert sink.only.upstream_endpoint == "chat/completions"


async def test_local_dialects_chat_counts_tokens_through_the_chat_template() -> None:
    answers = {
        "http://127.0.0.1:9/apply-template": MockResponse.json({"prompt": "<p>"}),
        "http://127.0.0.1:9/tokenize": MockResponse.json({"tokens": [1, 2, 3]}),
    }
    gateway, _, sink, _ = local_gateway(
        lambda request: answers[request.url], WLM_LOCAL_DIALECTS="chat"
    )
    reply = await drive(
        gateway, body(model="tiny", messages=HELLO), endpoint="messages/count_tokens"
    )
    assert reply.json() == {"input_tokens": 3}
    assert sink.only.upstream_endpoint == "tokenize"


async def test_without_content_logging_nothing_is_kept_and_follow_ups_say_why() -> None:
    gateway, transport, _, _ = local_gateway(
        lambda request: recorded("responses_stop"), WLM_LOG_CONTENT="false"
    )
    reply = await drive(gateway, body(model="tiny", input="hi"), endpoint="responses")
    assert reply.status == 200
    assert gateway.responses.get(reply.json()["id"]) is None
    follow_up = await drive(
        gateway,
        body(model="tiny", input="more", previous_response_id=reply.json()["id"]),
        endpoint="responses",
    )
    assert follow_up.status == 400
    assert "WLM_LOG_CONTENT" in follow_up.error["message"]
    assert len(transport.requests) == 1
