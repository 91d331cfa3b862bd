"""Anthropic behind wlm, end to end: the official OpenAI SDK -> `wlm serve` -> fake Anthropic.

One wlm server (a real Granian subprocess) and one `FakeUpstream("anthropic")` serve the
whole module. Every test puts a fresh marker in its prompt and finds its own upstream
request by that marker, so the tests do not depend on each other's traffic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import WlmServer
from tests.e2e.e2e_helpers import ask, calls_with, new_marker, upstream_call
from tests.fakes import DEFAULT_MODELS, WIRE_DIR, FakeUpstream, RecordedRequest, serve_fake

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-5-20250929"  # routed by WLM_ROUTES claude-*=anthropic
CLIENT_KEY = "sk-client-e2e-not-a-provider-key"
HELLO = "Hello from fake-anthropic"
TOOL_PREAMBLE = "I'll check both cities."
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class GetWeather(BaseModel):
    """Arguments of the weather tool, for the SDK's parsing helpers."""

    city: str


# ---- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    yield from serve_fake("anthropic")


@pytest.fixture(scope="module")
def wlm(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WlmServer]:
    workdir = tmp_path_factory.mktemp("wlm-anthropic")
    (workdir / "models").mkdir()  # empty: no local engine starts
    env = {
        "ANTHROPIC_API_KEY": fake.api_key,
        "ANTHROPIC_BASE_URL": fake.base_url,
        "WLM_ROUTES": "claude-*=anthropic",
    }
    server = WlmServer(env, workdir).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(wlm: WlmServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{wlm.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30
    ) as sdk:
        yield sdk


# ---- helpers -----------------------------------------------------------------------------
def assert_provider_credentials(request: RecordedRequest, fake: FakeUpstream) -> None:
    """wlm's key and version went upstream; nothing the client presented did."""
    assert request.headers["x-api-key"] == fake.api_key
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert all(CLIENT_KEY not in value for value in request.headers.values())
    assert CLIENT_KEY.encode() not in request.body
    assert not [name for name in request.headers if name.startswith("x-stainless")]


def recorded_events(stem: str) -> list[dict[str, Any]]:
    """The JSON payloads of a recorded Anthropic stream, in order."""
    text = (WIRE_DIR / "extracted" / f"{stem}.response.sse").read_text()
    return [
        json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")
    ]


def finish_reasons(chunks: list[Any]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def stream_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# ---- text --------------------------------------------------------------------------------
def test_text_answer(client: openai.OpenAI, fake: FakeUpstream) -> None:
    marker = new_marker()
    reply = client.chat.completions.create(model=MODEL, messages=ask(marker))
    choice = reply.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", HELLO)
    assert choice.finish_reason == "stop"
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert reply.id.startswith("chatcmpl-msg_01")
    usage = reply.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 7, 18)

    _, request = upstream_call(fake, marker)
    assert_provider_credentials(request, fake)
    assert "anthropic-beta" not in request.headers
    assert request.json["model"] == MODEL
    assert request.json["max_tokens"] == 4096  # Anthropic requires it; wlm's default
    assert request.json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": f"Say hello ({marker})"}]}
    ]
    assert request.json.get("stream") in (None, False)


def test_text_stream(client: openai.OpenAI, fake: FakeUpstream) -> None:
    marker = new_marker()
    chunks = list(client.chat.completions.create(model=MODEL, messages=ask(marker), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert stream_text(chunks) == HELLO
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-msg_01")
    assert {c.model for c in chunks} == {MODEL}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}

    _, request = upstream_call(fake, marker)
    assert_provider_credentials(request, fake)
    assert request.json["stream"] is True


def test_anthropic_beta_header_is_forwarded_unchanged(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    marker = new_marker()
    beta = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
    client.chat.completions.create(
        model=MODEL, messages=ask(marker), extra_headers={"anthropic-beta": beta}
    )
    _, request = upstream_call(fake, marker)
    assert request.headers["anthropic-beta"] == beta
    assert_provider_credentials(request, fake)


# ---- tools -------------------------------------------------------------------------------
def test_parallel_tool_calls_with_the_sdk_stream_helper(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    marker = new_marker()
    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    with client.chat.completions.stream(
        model="anthropic/tools", messages=ask(marker), tools=[tool]
    ) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()

    assert [(e.index, e.name, e.parsed_arguments) for e in done] == [
        (0, "get_weather", GetWeather(city="Paris")),
        (1, "get_weather", GetWeather(city="London")),
    ]
    message = final.choices[0].message
    assert message.content == TOOL_PREAMBLE
    assert final.choices[0].finish_reason == "tool_calls"
    calls = message.tool_calls or []
    assert [c.function.parsed_arguments for c in calls] == [
        GetWeather(city="Paris"),
        GetWeather(city="London"),
    ]
    assert all(c.id.startswith("toolu_01") for c in calls)
    assert len({c.id for c in calls}) == 2

    _, request = upstream_call(fake, marker)
    [sent_tool] = request.json["tools"]
    assert sent_tool["name"] == "get_weather"
    assert sent_tool["input_schema"] == tool["function"]["parameters"]
    assert "strict" not in sent_tool


def test_recorded_parallel_tool_calls_stream_as_chunks(client: openai.OpenAI) -> None:
    stem = "anthropic_stream_parallel_tool_use_roundtrip.0"
    expected = [
        (e["content_block"]["id"], e["content_block"]["name"])
        for e in recorded_events(stem)
        if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use"
    ]
    assert len(expected) == 2  # the recording is what this test is about
    stream = client.chat.completions.create(
        model=f"anthropic/replay:{stem}", messages=ask(new_marker()), stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += (call.function.name if call.function else None) or ""
            entry["arguments"] += (call.function.arguments if call.function else None) or ""
    assert sorted(calls) == [0, 1]
    assert [(calls[i]["id"], calls[i]["name"]) for i in (0, 1)] == expected
    # The recorded tools take no input: each call's arguments must still parse.
    assert [json.loads(calls[i]["arguments"]) for i in (0, 1)] == [{}, {}]
    assert finish_reasons(chunks) == ["tool_calls"]


def test_parallel_tool_calls_without_stream(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="anthropic/tools", messages=ask(new_marker()), tools=[WEATHER_TOOL]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == TOOL_PREAMBLE
    calls = choice.message.tool_calls or []
    assert [(c.type, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("function", "get_weather", {"city": "Paris"}),
        ("function", "get_weather", {"city": "London"}),
    ]
    assert all(c.id.startswith("toolu_01") for c in calls)

    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    parsed = client.chat.completions.parse(
        model="anthropic/tools", messages=ask(new_marker()), tools=[tool]
    )
    parsed_calls = parsed.choices[0].message.tool_calls or []
    assert [c.function.parsed_arguments for c in parsed_calls] == [
        GetWeather(city="Paris"),
        GetWeather(city="London"),
    ]


def test_tool_round_trip_reaches_anthropic_as_tool_use_and_tool_result(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    marker, result_marker = new_marker(), new_marker()
    question = ask(marker)
    first = client.chat.completions.create(
        model="anthropic/tools", messages=question, tools=[WEATHER_TOOL]
    )
    calls = first.choices[0].message.tool_calls or []
    assert len(calls) == 2
    results = [f"18 C and cloudy ({result_marker})", "12 C and raining"]
    history: list[Any] = [
        *question,
        {
            "role": "assistant",
            "content": first.choices[0].message.content,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in calls
            ],
        },
        *(
            {"role": "tool", "tool_call_id": c.id, "content": result}
            for c, result in zip(calls, results, strict=True)
        ),
    ]
    second = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == HELLO
    assert second.choices[0].finish_reason == "stop"

    _, request = upstream_call(fake, result_marker)
    assert request.json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": f"Say hello ({marker})"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": TOOL_PREAMBLE},
                {
                    "type": "tool_use",
                    "id": calls[0].id,
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": calls[1].id,
                    "name": "get_weather",
                    "input": {"city": "London"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": calls[0].id, "content": results[0]},
                {"type": "tool_result", "tool_use_id": calls[1].id, "content": results[1]},
            ],
        },
    ]


# ---- thinking ----------------------------------------------------------------------------
def test_thinking_streams_as_reasoning_content(client: openai.OpenAI, fake: FakeUpstream) -> None:
    stem = "anthropic_stream_thinking.0"
    events = recorded_events(stem)
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    thinking = "".join(d["thinking"] for d in deltas if d["type"] == "thinking_delta")
    text = "".join(d["text"] for d in deltas if d["type"] == "text_delta")
    signature = next(d["signature"] for d in deltas if d["type"] == "signature_delta")
    assert thinking and text  # the recording holds both

    marker = new_marker()
    chunks = list(
        client.chat.completions.create(
            model=f"anthropic/replay:{stem}",
            messages=ask(marker),
            stream=True,
            reasoning_effort="low",
        )
    )
    reasoning = [
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks if c.choices
    ]
    assert "".join(r for r in reasoning if r) == thinking
    assert stream_text(chunks) == text
    assert finish_reasons(chunks) == ["stop"]
    assert all(signature not in c.model_dump_json() for c in chunks)

    _, request = upstream_call(fake, marker)
    assert request.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert request.json["max_tokens"] > 1024
    assert "reasoning_effort" not in request.json


# ---- stop reasons ------------------------------------------------------------------------
STOP_REASONS = [
    ("end_turn", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("stop_sequence", "stop"),
    ("refusal", "content_filter"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(("stop_reason", "finish_reason"), STOP_REASONS)
def test_stop_reason_becomes_finish_reason(
    client: openai.OpenAI, stop_reason: str, finish_reason: str, stream: bool
) -> None:
    model = f"anthropic/stop:{stop_reason}"
    if stream:
        chunks = list(
            client.chat.completions.create(model=model, messages=ask(new_marker()), stream=True)
        )
        assert finish_reasons(chunks) == [finish_reason]
        assert stream_text(chunks) == HELLO
    else:
        reply = client.chat.completions.create(model=model, messages=ask(new_marker()))
        assert reply.choices[0].finish_reason == finish_reason
        assert reply.choices[0].message.content == HELLO


# ---- errors ------------------------------------------------------------------------------
# upstream status -> (client status, OpenAI error type, code, SDK exception class)
ERRORS = [
    (400, 400, "invalid_request_error", "invalid_request_error", openai.BadRequestError),
    (401, 401, "authentication_error", "authentication_error", openai.AuthenticationError),
    (403, 403, "permission_error", "permission_error", openai.PermissionDeniedError),
    (404, 404, "not_found_error", "not_found_error", openai.NotFoundError),
    (413, 413, "invalid_request_error", "request_too_large", openai.APIStatusError),
    (429, 429, "rate_limit_error", "rate_limit_exceeded", openai.RateLimitError),
    (500, 502, "server_error", "api_error", openai.InternalServerError),
    (503, 503, "server_error", "api_error", openai.InternalServerError),
    (504, 504, "timeout", "timeout_error", openai.InternalServerError),
    (529, 503, "service_unavailable", "overloaded_error", openai.InternalServerError),
]
RETRY_AFTER_STATUSES = {429, 503, 529}  # the ones the fake sends retry-after with


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("upstream", "status", "error_type", "code", "exception"),
    ERRORS,
    ids=[str(e[0]) for e in ERRORS],
)
def test_upstream_error_maps_to_openai_error(
    client: openai.OpenAI,
    fake: FakeUpstream,
    upstream: int,
    status: int,
    error_type: str,
    code: str,
    exception: type[openai.APIStatusError],
    stream: bool,
) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model=f"anthropic/error:{upstream}", messages=ask(new_marker()), stream=stream
        )
    error = info.value
    assert type(error) is exception
    assert error.status_code == status
    assert (error.type, error.code) == (error_type, code)
    assert isinstance(error.body, dict)
    assert error.body["message"]
    assert error.body["param"] is None
    retry_after = error.response.headers.get("retry-after")
    assert retry_after == (fake.retry_after if upstream in RETRY_AFTER_STATUSES else None)


def test_upstream_error_message_never_shows_the_provider_key(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    # The fake's 401 "echo" variant repeats the presented key, as some proxies do.
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="anthropic/error:401-echo", messages=ask(new_marker()))
    message = info.value.body["message"]  # type: ignore[index]
    assert fake.api_key not in message
    assert "[redacted]" in message


def test_midstream_overload_raises_after_the_first_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="anthropic/midstream-error", messages=ask(new_marker()), stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    error = info.value
    assert not isinstance(error, openai.APIStatusError)  # HTTP 200, then an error event
    assert stream_text(received) == "Hello from"  # the fake's two chunks before the error
    assert error.message == "Overloaded"
    assert (error.type, error.code) == ("service_unavailable", "overloaded_error")
    assert finish_reasons(received) == []


@pytest.mark.parametrize("scenario", ["reset:3", "malformed"])
def test_broken_stream_ends_in_an_error_not_in_silence(
    client: openai.OpenAI, scenario: str
) -> None:
    stream = client.chat.completions.create(
        model=f"anthropic/{scenario}", messages=ask(new_marker()), stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    assert not isinstance(info.value, openai.APIStatusError)
    assert info.value.type == "upstream_error"
    assert received  # the role chunk came before the break
    assert finish_reasons(received) == []


# ---- usage -------------------------------------------------------------------------------
def test_stream_usage_comes_last_when_asked(client: openai.OpenAI, fake: FakeUpstream) -> None:
    marker = new_marker()
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=ask(marker),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        11,
        7,
        18,
    )
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 0
    assert all(c.usage is None for c in chunks[:-1])
    assert finish_reasons(chunks) == ["stop"]
    _, request = upstream_call(fake, marker)
    assert "stream_options" not in request.json  # Anthropic would reject it


def test_stream_has_no_usage_chunk_unless_asked(wlm: WlmServer) -> None:
    body = {"model": MODEL, "messages": ask(new_marker()), "stream": True}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    response = httpx.post(
        f"{wlm.base_url}/v1/chat/completions", json=body, headers=headers, timeout=30
    )
    assert response.status_code == 200
    events = [
        line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")
    ]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(chunk["choices"] for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)


# ---- disconnects -------------------------------------------------------------------------
def test_stream_client_disconnect_closes_upstream(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    marker = new_marker()
    stream = client.chat.completions.create(
        model="anthropic/paced:300:20", messages=ask(marker), stream=True
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stream.close()
    index, _ = upstream_call(fake, marker)
    # 20 chunks 300 ms apart take 6 s; only wlm dropping the connection ends it this soon.
    assert fake.wait_closed(index, 1.0) is not None


def test_abandoned_request_closes_upstream(wlm: WlmServer, fake: FakeUpstream) -> None:
    marker = new_marker()
    body = {"model": "anthropic/hang", "messages": ask(marker)}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    with (
        httpx.Client(timeout=httpx.Timeout(10.0, read=0.5)) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.post(f"{wlm.base_url}/v1/chat/completions", json=body, headers=headers)
    index, _ = upstream_call(fake, marker)
    assert fake.wait_closed(index, 1.0) is not None


# ---- refused parameters ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("param", "extra"),
    [("n", {"n": 2}), ("logprobs", {"logprobs": True}), ("top_logprobs", {"top_logprobs": 3})],
)
def test_unsupported_parameter_is_refused_by_name(
    client: openai.OpenAI, fake: FakeUpstream, param: str, extra: dict[str, Any]
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=ask(marker), **extra)
    error = info.value
    assert error.status_code == 400
    assert error.param == param
    assert error.code == "unsupported_parameter"
    assert f"'{param}'" in error.body["message"]  # type: ignore[index]
    assert calls_with(fake, marker) == []  # refused before anything went upstream


# ---- models ------------------------------------------------------------------------------
def test_models_lists_the_anthropic_models(client: openai.OpenAI, fake: FakeUpstream) -> None:
    listed = {m.id: m for m in client.models.list()}
    expected = DEFAULT_MODELS["anthropic"]
    for model_id in expected:
        entry = listed[model_id].model_dump()
        assert entry["provider"] == "anthropic"
        assert entry["owned_by"] == "anthropic"
        assert entry["created"] > 0  # from Anthropic's created_at
    assert {k for k, m in listed.items() if m.model_dump().get("provider") == "anthropic"} == set(
        expected
    )
    fetches = [r for r in list(fake.requests) if r.method == "GET" and r.path == "/v1/models"]
    assert fetches
    assert_provider_credentials(fetches[-1], fake)


# ---- secrets -----------------------------------------------------------------------------
def test_provider_key_never_written_to_disk(wlm: WlmServer, fake: FakeUpstream) -> None:
    """Runs last in the module: by now every scenario above has been logged and recorded."""
    key = fake.api_key.encode()
    written = [p for p in Path(wlm.workdir).rglob("*") if p.is_file()]
    assert any(p == wlm.log_path for p in written)
    leaks = [str(p) for p in written if key in p.read_bytes()]
    assert leaks == []
