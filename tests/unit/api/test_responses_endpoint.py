"""POST /v1/responses in-process: native to OpenAI, translated to chat backends, with
previous_response_id rebuilt from the responses wlm kept."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from wlm.api.proxy import Message
from wlm.transport import MockResponse, UpstreamRequest

from .pipeline import body, chunk, completion, drive, make_gateway, sse

CHAT_ONLY = {"WLM_OPENAI_DIALECTS": "chat"}  # OpenAI as if it spoke only chat: translated


def events_of(raw: bytes) -> list[dict[str, Any]]:
    return [
        msgspec.json.decode(line[len("data: ") :])
        for line in raw.decode().splitlines()
        if line.startswith("data: ")
    ]


def native_stream(model: str) -> list[bytes]:
    response = {"id": "resp_up", "object": "response", "model": model, "status": "in_progress"}
    done = {
        **response,
        "status": "completed",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi!", "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
    }
    events = [
        {"type": "response.created", "sequence_number": 0, "response": response},
        {
            "type": "response.output_text.delta",
            "sequence_number": 1,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "Hi!",
        },
        {"type": "response.completed", "sequence_number": 2, "response": done},
    ]
    return [
        f"event: {e['type']}\ndata: ".encode() + msgspec.json.encode(e) + b"\n\n" for e in events
    ]


async def test_native_openai_responses_pass_through_with_the_clients_model_name() -> None:
    gateway, transport, sink = make_gateway(
        lambda request: MockResponse.sse(native_stream("gpt-4o-2024-08-06"))
    )
    reply = await drive(
        gateway,
        body(model="gpt-4o", input="hi", stream=True, store=False, include=["x"]),
        endpoint="responses",
    )
    assert reply.status == 200
    (sent,) = transport.requests
    assert sent.url == "https://api.openai.com/v1/responses"
    upstream = msgspec.json.decode(sent.body or b"")
    assert upstream["include"] == ["x"] and "stream_options" not in upstream
    events = events_of(reply.body)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_text.delta",
        "response.completed",
    ]
    assert {e["response"]["model"] for e in events if "response" in e} == {"gpt-4o"}
    record = sink.only
    assert (record.endpoint, record.upstream_endpoint) == ("responses", "responses")
    assert (record.prompt_tokens, record.completion_tokens, record.finish_reason) == (5, 2, "stop")


async def test_responses_to_a_chat_backend_stream_the_responses_grammar() -> None:
    stream = sse(
        chunk("Hel"),
        chunk("lo"),
        chunk(None, "stop"),
        {
            "id": "c",
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2},
        },
    )
    gateway, transport, sink = make_gateway(lambda request: MockResponse.sse(stream), CHAT_ONLY)
    reply = await drive(
        gateway,
        body(
            model="gpt-4o",
            stream=True,
            input=[
                {"type": "message", "role": "developer", "content": "Be brief."},
                {"type": "message", "role": "user", "content": "hi"},
            ],
            tools=[{"type": "web_search"}],  # no chat twin: dropped, never a 400
        ),
        endpoint="responses",
    )
    assert reply.status == 200
    assert transport.requests[0].url == "https://api.openai.com/v1/chat/completions"
    sent = msgspec.json.decode(transport.requests[0].body or b"")
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert "tools" not in sent
    events = events_of(reply.body)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Hello"
    completed = events[-1]["response"]
    assert completed["usage"]["input_tokens"] == 4
    record = sink.only
    assert (record.endpoint, record.upstream_endpoint) == ("responses", "chat/completions")
    assert record.status == "ok"


async def test_previous_response_id_rebuilds_the_conversation_for_a_chat_backend() -> None:
    answers = iter([completion("I am wlm."), completion("You asked who I am.")])
    gateway, transport, _ = make_gateway(lambda request: next(answers), CHAT_ONLY)
    first = await drive(gateway, body(model="gpt-4o", input="who are you?"), endpoint="responses")
    assert first.status == 200
    first_id = first.json()["id"]
    assert first_id.startswith("resp_")
    second = await drive(
        gateway,
        body(model="gpt-4o", input="what did I ask?", previous_response_id=first_id),
        endpoint="responses",
    )
    assert second.status == 200
    sent = msgspec.json.decode(transport.requests[1].body or b"")
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("user", "who are you?"),
        ("assistant", "I am wlm."),
        ("user", "what did I ask?"),
    ]


async def test_unknown_previous_response_and_store_false_are_clear_400s() -> None:
    gateway, transport, _ = make_gateway(lambda request: completion("x"), CHAT_ONLY)
    kept_out = await drive(
        gateway, body(model="gpt-4o", input="hi", store=False), endpoint="responses"
    )
    unknown = await drive(
        gateway,
        body(model="gpt-4o", input="again", previous_response_id=kept_out.json()["id"]),
        endpoint="responses",
    )
    assert unknown.status == 400
    assert unknown.error["code"] == "previous_response_not_found"
    assert unknown.error["param"] == "previous_response_id"
    missing = await drive(gateway, body(model="gpt-4o"), endpoint="responses")
    assert (missing.status, missing.error["param"]) == (400, "input")
    assert len(transport.requests) == 1


async def test_previous_response_id_needs_content_logging() -> None:
    gateway, _, _ = make_gateway(
        lambda request: completion("x"), {**CHAT_ONLY, "WLM_LOG_CONTENT": "false"}
    )
    reply = await drive(
        gateway,
        body(model="gpt-4o", input="hi", previous_response_id="resp_1"),
        endpoint="responses",
    )
    assert reply.status == 400
    assert "WLM_LOG_CONTENT" in reply.error["message"]


async def test_a_client_that_hangs_up_right_after_completed_is_not_a_cancel() -> None:
    gateway, _, sink = make_gateway(lambda request: MockResponse.sse(native_stream("gpt-4o")))
    completed_seen = False
    gone = False

    async def receive() -> Message:
        nonlocal gone
        if not gone:
            gone = True
            return {
                "type": "http.request",
                "body": body(model="gpt-4o", input="hi", stream=True),
                "more_body": False,
            }
        # Codex: the disconnect arrives once response.completed is out.
        while not completed_seen:
            await waiter.wait()
        return {"type": "http.disconnect"}

    waiter = asyncio.Event()

    def watch(part: bytes) -> None:
        nonlocal completed_seen
        if b"response.completed" in part:
            completed_seen = True
            waiter.set()

    reply = await drive(gateway, b"", endpoint="responses", receive=receive, on_part=watch)
    assert reply.status == 200
    assert (sink.only.status, sink.only.http_status) == ("ok", 200)


async def test_upstream_error_on_responses_is_an_openai_error_body() -> None:
    def handler(request: UpstreamRequest) -> MockResponse:
        return MockResponse.json(
            {"error": {"message": "bad", "type": "invalid_request_error"}}, 400
        )

    gateway, _, _ = make_gateway(handler)
    reply = await drive(gateway, body(model="gpt-4o", input="hi"), endpoint="responses")
    assert reply.status == 400
    assert reply.error["message"] == "bad"
