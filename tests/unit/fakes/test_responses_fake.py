"""The OpenAI fake speaks OpenAI Responses the way api.openai.com does: the official SDK's
`responses.create/stream/retrieve` read it, and its bytes follow the documented grammar."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeUpstream, serve_fake

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 5,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    yield from serve_fake("openai")


def client_of(fake: FakeUpstream, key: str | None = None, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=fake.base_url, api_key=key or fake.api_key, max_retries=0, **options
    )


def post(fake: FakeUpstream, **body: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {fake.api_key}"}
    return httpx.post(fake.base_url + "/responses", headers=headers, json=body, timeout=5)


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) per SSE event; every event must have exactly those two lines."""
    events = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        events.append((name[len("event: ") :], json.loads(data[len("data: ") :])))
    return events


def test_create_returns_a_response_object_and_keeps_it(fake: FakeUpstream) -> None:
    client = client_of(fake)
    response = client.responses.create(
        model="gpt-4o-mini",
        input="hi",
        instructions="Be brief.",
        prompt_cache_key="cache-1",
        reasoning={"effort": "low"},
        metadata={"k": "v"},
    )
    assert response.output_text == "Hello from fake-openai"
    assert response.status == "completed"
    assert response.id.startswith("resp_") and len(response.id) == len("resp_") + 48
    assert (response.instructions, response.prompt_cache_key) == ("Be brief.", "cache-1")
    assert response.reasoning is not None and response.reasoning.effort == "low"
    assert response.metadata == {"k": "v"}
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (11, 7, 18)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    request = fake.last_request
    assert (request.method, request.path) == ("POST", "/v1/responses")
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    assert request.json["prompt_cache_key"] == "cache-1"
    assert set(fake.stored_responses) == {response.id}
    again = client.responses.retrieve(response.id)
    assert again.output_text == "Hello from fake-openai"
    assert again.model_dump() == response.model_dump()


def test_whole_bodies_are_pretty_printed_with_openai_headers(fake: FakeUpstream) -> None:
    reply = post(fake, model="gpt-4o-mini", input="hi")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-request-id"].startswith("req_")
    assert reply.text.startswith('{\n  "id": "resp_')
    assert reply.json()["object"] == "response"


def test_stream_follows_the_documented_grammar(fake: FakeUpstream) -> None:
    reply = post(fake, model="gpt-4o-mini", input="hi", stream=True)
    assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = sse_events(reply.text)
    assert [name for name, _ in events] == TEXT_EVENTS
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(TEXT_EVENTS)))
    assert "[DONE]" not in reply.text
    created, completed = events[0][1]["response"], events[-1][1]["response"]
    assert created["id"] == completed["id"]
    assert (created["status"], created["usage"], created["output"]) == ("in_progress", None, [])
    assert completed["status"] == "completed"
    assert completed["usage"]["input_tokens_details"] == {
        "cache_write_tokens": 0,
        "cached_tokens": 0,
    }
    deltas = [data for name, data in events if name == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == "Hello from fake-openai"
    item_id = events[2][1]["item"]["id"]
    assert {(d["item_id"], d["output_index"], d["content_index"]) for d in deltas} == {
        (item_id, 0, 0)
    }
    assert all(d["obfuscation"] for d in deltas)  # OpenAI's default padding
    assert events[-2][1]["item"] == completed["output"][0]
    quiet = post(
        fake,
        model="gpt-4o-mini",
        input="hi",
        stream=True,
        stream_options={"include_obfuscation": False},
    )
    assert "obfuscation" not in quiet.text


def test_sdk_stream_accumulates_the_answer(fake: FakeUpstream) -> None:
    client = client_of(fake)
    with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds == TEXT_EVENTS
    assert final.output_text == "Hello from fake-openai"
    assert final.usage is not None and final.usage.total_tokens == 18
    assert client.responses.retrieve(final.id).output_text == "Hello from fake-openai"


def test_tools_are_two_function_calls_for_the_first_function_tool(fake: FakeUpstream) -> None:
    client = client_of(fake)
    tools: Any = [{"type": "web_search"}, WEATHER, {**WEATHER, "name": "other"}]
    response = client.responses.create(model="tools", input="weather?", tools=tools)
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "London"}),
    ]
    assert len({c.call_id for c in calls}) == 2
    assert all(c.call_id.startswith("call_") and c.id and c.id.startswith("fc_") for c in calls)
    with client.responses.stream(model="tools", input="weather?", tools=tools) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert [json.loads(c.arguments) for c in final.output if c.type == "function_call"] == [
        {"city": "Paris"},
        {"city": "London"},
    ]
    call_events = [
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * 5,
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    lifecycle = ["response.created", "response.in_progress"]
    assert kinds == [*lifecycle, *call_events, *call_events, "response.completed"]


def test_function_call_output_round_trip(fake: FakeUpstream) -> None:
    client = client_of(fake)
    first = client.responses.create(model="tools", input="weather?", tools=[WEATHER])
    outputs: Any = [
        {"type": "function_call_output", "call_id": item.call_id, "output": "sunny"}
        for item in first.output
        if item.type == "function_call"
    ]
    second = client.responses.create(
        model="gpt-4o-mini", input=outputs, tools=[WEATHER], previous_response_id=first.id
    )
    assert second.output_text == "Hello from fake-openai"
    assert second.previous_response_id == first.id
    sent = fake.last_request.json
    assert sent["previous_response_id"] == first.id
    assert [i["call_id"] for i in sent["input"]] == [o["call_id"] for o in outputs]


def test_previous_response_id_must_be_one_the_fake_kept(fake: FakeUpstream) -> None:
    client = client_of(fake)
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model="gpt-4o-mini", input="hi", previous_response_id="resp_no")
    assert unknown.value.body == {
        "message": "Previous response with id 'resp_no' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    unkept = client.responses.create(model="gpt-4o-mini", input="hi", store=False)
    assert unkept.store is False
    assert fake.stored_responses == {}
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.retrieve(unkept.id)
    assert missing.value.body["message"] == f"Response with id '{unkept.id}' not found."
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o-mini", input="hi", previous_response_id=unkept.id)


def test_errors_auth_and_rate_limits(fake: FakeUpstream) -> None:
    client = client_of(fake)
    with pytest.raises(openai.RateLimitError) as limited:
        client.responses.create(model="error:429", input="hi")
    assert limited.value.body["code"] == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="error:500", input="hi", stream=True)
    with pytest.raises(openai.AuthenticationError) as denied:
        client_of(fake, "sk-wrong-key-0000").responses.create(model="gpt-4o-mini", input="hi")
    assert denied.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client_of(fake, "sk-wrong-key-0000").responses.retrieve("resp_x")
    assert [r.path for r in fake.requests] == [*["/v1/responses"] * 3, "/v1/responses/resp_x"]


def test_midstream_error_ends_in_response_failed(fake: FakeUpstream) -> None:
    events = sse_events(post(fake, model="midstream-error", input="hi", stream=True).text)
    assert [name for name, _ in events] == [*TEXT_EVENTS[:6], "response.failed"]
    assert [data["sequence_number"] for _, data in events] == list(range(7))
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error"
    assert failed["id"] == events[0][1]["response"]["id"]
    with client_of(fake).responses.stream(model="midstream-error", input="hi") as stream:
        kinds = [event.type for event in stream]
        assert kinds[-1] == "response.failed"
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()
    assert fake.stored_responses == {}


def test_stop_length_is_an_incomplete_response(fake: FakeUpstream) -> None:
    client = client_of(fake)
    whole = client.responses.create(model="stop:length", input="hi")
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    events = sse_events(post(fake, model="stop:max_output_tokens", input="hi", stream=True).text)
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["output"][0]["status"] == "incomplete"


def test_broken_streams(fake: FakeUpstream) -> None:
    client = client_of(fake)
    with pytest.raises(openai.APIConnectionError):
        list(client.responses.create(model="reset:3", input="hi", stream=True))
    assert len(fake.sent_at[0]) == 3
    with pytest.raises(json.JSONDecodeError):
        list(client.responses.create(model="malformed", input="hi", stream=True))
    paced = sse_events(post(fake, model="paced:1:3", input="hi", stream=True).text)
    assert [data["delta"] for _, data in paced if "delta" in data] == [
        "chunk0 ",
        "chunk1 ",
        "chunk2 ",
    ]
    assert paced[-1][0] == "response.completed"
    with pytest.raises(openai.APITimeoutError):
        client_of(fake, timeout=0.3).responses.create(model="hang", input="hi")
    assert fake.wait_closed(len(fake.requests) - 1, timeout=2) is not None


def test_responses_are_the_openai_flavor_only() -> None:
    with FakeUpstream("openrouter") as orr, FakeUpstream("anthropic") as an:
        with pytest.raises(openai.NotFoundError):
            client_of(orr).responses.create(model="openai/gpt-4o-mini", input="hi")
        headers = {"x-api-key": an.api_key, "anthropic-version": "2023-06-01"}
        assert httpx.post(an.origin + "/v1/responses", headers=headers, json={}).status_code == 404
    with FakeUpstream("openai") as chat_only:
        chat_only.serves_responses = False
        with pytest.raises(openai.NotFoundError) as absent:
            client_of(chat_only).responses.create(model="gpt-4o-mini", input="hi")
        assert absent.value.body["message"] == "Invalid URL (POST /v1/responses)"
        reply = client_of(chat_only).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "Hello from fake-openai"


async def test_async_sdk_stream(fake: FakeUpstream) -> None:
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
    async with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text == "Hello from fake-openai"
    await client.close()
