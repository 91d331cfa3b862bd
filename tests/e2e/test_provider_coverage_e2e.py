"""Provider paths an audit found untested end to end, through a real `wlm serve`.

The official `openai` SDK talks to wlm; wlm talks to fake Anthropic and OpenRouter servers
(`tests/fakes`). Where a recording or a fake answer can be read without wlm, the official
`anthropic` SDK reads it straight from the same fake and referees what the `openai` SDK
assembled through wlm.

1. every recorded Anthropic stream, replayed through wlm (text, tool calls, thinking,
   finish_reason, usage);
2. OpenRouter tool calls, streamed and whole, with OpenRouter's key and attribution headers;
3. a `WLM_ROUTES` route to a provider without a key: 400 naming ANTHROPIC_API_KEY, over HTTP;
4. thinking without streaming: `reasoning_content` and signed `thinking_blocks`.

Each test puts a fresh marker in its prompt and finds its own upstream request by it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import WlmServer
from tests.e2e.e2e_helpers import ask, calls_with, error_of, new_marker, upstream_call
from tests.fakes import WIRE_DIR, FakeUpstream, RecordedRequest
from tests.unit.translate._helpers import RECORDED_STREAMS, recorded_bytes

pytestmark = pytest.mark.e2e

CLIENT_KEY = "sk-client-coverage-not-a-provider-key"
REFERER = "https://example.test/coverage"
TITLE = "wlm coverage tests"
CLAUDE = "claude-sonnet-4-5-20250929"
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
# What the fake's `tools` scenario answers, as compact JSON argument strings.
TOOL_ARGUMENTS = ['{"city":"Paris"}', '{"city":"London"}']


def stem_of(path: Path) -> str:
    """The `replay:<stem>` name of a recorded stream file."""
    if path.parent.name == "extracted":
        return path.name.removesuffix(".response.sse")
    return path.stem


RECORDED_STEMS = [stem_of(path) for path in RECORDED_STREAMS]
# The recordings whose answer is tool calls (turn 1 of the round trip is the text reply).
TOOL_USE_STEMS = {
    "anthropic_stream_text_then_tool_use",
    "anthropic_stream_parallel_tool_use_roundtrip.0",
}


# ---- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wire_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recordings as the fake replays them, each stream ending in its blank line.

    `anthropic_stream_text_then_tool_use.sse` (an SDK test fixture) lost the newline after
    `message_stop`; per the SSE spec that last event is then never dispatched, and the live
    API always terminates it. `recorded_bytes` restores it, as the translate tests do.
    """
    target = tmp_path_factory.mktemp("wire") / "wire"
    shutil.copytree(WIRE_DIR, target)
    for path in RECORDED_STREAMS:
        (target / path.relative_to(WIRE_DIR)).write_bytes(recorded_bytes(path))
    return target


@pytest.fixture(scope="module")
def anthropic_fake(wire_dir: Path) -> Iterator[FakeUpstream]:
    fake = FakeUpstream("anthropic", wire_dir=wire_dir).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def openrouter_fake() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("openrouter").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def wlm(
    anthropic_fake: FakeUpstream,
    openrouter_fake: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WlmServer]:
    workdir = tmp_path_factory.mktemp("wlm-coverage")
    (workdir / "models").mkdir()  # empty: no local engine starts
    env = {
        "ANTHROPIC_API_KEY": anthropic_fake.api_key or "",
        "ANTHROPIC_BASE_URL": anthropic_fake.base_url,
        "OPENROUTER_API_KEY": openrouter_fake.api_key or "",
        "OPENROUTER_BASE_URL": openrouter_fake.base_url,
        "OPENROUTER_REFERER": REFERER,
        "OPENROUTER_TITLE": TITLE,
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


@pytest.fixture(scope="module")
def referee(anthropic_fake: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    """The official anthropic SDK, straight to the fake (no wlm in between)."""
    with anthropic.Anthropic(
        api_key=anthropic_fake.api_key, base_url=anthropic_fake.base_url, max_retries=0
    ) as sdk:
        yield sdk


# ---- helpers -----------------------------------------------------------------------------
def openai_usage(usage: anthropic.types.Usage) -> tuple[int, int, int, int]:
    """(prompt, completion, total, cached) as an OpenAI client should read Anthropic usage:
    prompt tokens include the cache writes and reads that Anthropic counts apart."""
    cache_read = usage.cache_read_input_tokens or 0
    prompt = usage.input_tokens + (usage.cache_creation_input_tokens or 0) + cache_read
    return prompt, usage.output_tokens, prompt + usage.output_tokens, cache_read


# ---- 1. recorded Anthropic streams through wlm -------------------------------------------
def test_the_replays_include_the_tool_use_recordings() -> None:
    assert {
        *TOOL_USE_STEMS,
        "anthropic_stream_parallel_tool_use_roundtrip.1",
        "anthropic_stream_thinking.0",
    } <= set(RECORDED_STEMS)


@pytest.mark.parametrize("stem", RECORDED_STEMS)
def test_recorded_stream_reads_the_same_through_wlm(
    client: openai.OpenAI, referee: anthropic.Anthropic, stem: str
) -> None:
    model = f"anthropic/replay:{stem}"
    with referee.messages.stream(
        model=f"replay:{stem}", max_tokens=1024, messages=ask(new_marker())
    ) as direct:
        expected = direct.get_final_message()
    assert expected.content  # the referee read the recording, not an empty answer

    with client.chat.completions.stream(
        model=model,
        messages=ask(new_marker()),
        stream_options={"include_usage": True},
    ) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        completion = stream.get_final_completion()

    choice = completion.choices[0]
    message = choice.message
    texts = "".join(block.text for block in expected.content if block.type == "text")
    assert (message.content or "") == texts
    tools = [block for block in expected.content if block.type == "tool_use"]
    assert bool(tools) == (stem in TOOL_USE_STEMS)
    calls = message.tool_calls or []
    assert [(c.type, c.id, c.function.name) for c in calls] == [
        ("function", t.id, t.name) for t in tools
    ]
    assert [json.loads(c.function.arguments) for c in calls] == [t.input for t in tools]
    thinking = [block for block in expected.content if block.type == "thinking"]
    reasoning = (message.model_extra or {}).get("reasoning_content")
    assert (reasoning or "") == "".join(block.thinking for block in thinking)
    for block in thinking:  # signatures stay out of a stream (no field carries them)
        assert all(block.signature not in chunk.model_dump_json() for chunk in chunks)
    finish = {"end_turn": "stop", "tool_use": "tool_calls"}[str(expected.stop_reason)]
    assert choice.finish_reason == finish
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == [finish]

    usage = completion.usage
    assert usage is not None
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else None
    assert (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
        cached,
    ) == openai_usage(expected.usage)
    assert chunks[-1].choices == [] and chunks[-1].usage == usage
    assert all(chunk.usage is None for chunk in chunks[:-1])

    assert {chunk.id for chunk in chunks} == {f"chatcmpl-{expected.id}"}
    assert {chunk.model for chunk in chunks} == {model}


# ---- 2. OpenRouter tool calls ------------------------------------------------------------
def assert_openrouter_credentials(request: RecordedRequest, fake: FakeUpstream) -> None:
    """wlm's OpenRouter key and attribution went upstream; the client's key did not."""
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    assert request.headers["http-referer"] == REFERER
    assert request.headers["x-title"] == TITLE
    assert all(CLIENT_KEY not in value for value in request.headers.values())
    assert CLIENT_KEY.encode() not in request.body


def test_openrouter_tool_calls_without_stream(
    client: openai.OpenAI, openrouter_fake: FakeUpstream
) -> None:
    marker = new_marker()
    reply = client.chat.completions.create(
        model="openrouter/tools", messages=ask(marker), tools=[WEATHER_TOOL]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.type, c.function.name, c.function.arguments) for c in calls] == [
        ("function", "get_weather", arguments) for arguments in TOOL_ARGUMENTS
    ]
    assert all(c.id.startswith("call_") for c in calls)
    assert len({c.id for c in calls}) == 2
    assert reply.model == "openrouter/tools"
    assert reply.usage is not None and reply.usage.total_tokens == 18

    _, request = upstream_call(openrouter_fake, marker, path="/api/v1/chat/completions")
    assert_openrouter_credentials(request, openrouter_fake)
    assert request.json["model"] == "tools"
    assert request.json["tools"] == [WEATHER_TOOL]
    assert request.json.get("stream") in (None, False)


def test_openrouter_tool_calls_stream(client: openai.OpenAI, openrouter_fake: FakeUpstream) -> None:
    marker = new_marker()
    with client.chat.completions.stream(
        model="openrouter/tools", messages=ask(marker), tools=[WEATHER_TOOL]
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()

    chunks = [event.chunk for event in events if event.type == "chunk"]
    done = [
        (event.index, event.name, event.arguments)
        for event in events
        if event.type == "tool_calls.function.arguments.done"
    ]
    assert done == [(i, "get_weather", arguments) for i, arguments in enumerate(TOOL_ARGUMENTS)]
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    calls = choice.message.tool_calls or []
    assert [(c.type, c.function.name, c.function.arguments) for c in calls] == [
        ("function", "get_weather", arguments) for arguments in TOOL_ARGUMENTS
    ]
    assert all(c.id.startswith("call_") for c in calls)
    assert len({c.id for c in calls}) == 2
    # Each call's id and name arrive once, in the fragment that opens it.
    headers = [
        (call.index, call.id, call.function.name if call.function else None)
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
        if call.id
    ]
    assert headers == [(0, calls[0].id, "get_weather"), (1, calls[1].id, "get_weather")]
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]
    assert all(c.choices for c in chunks), "OpenRouter's usage chunk was not asked for"
    assert {c.model for c in chunks} == {"openrouter/tools"}

    _, request = upstream_call(openrouter_fake, marker, path="/api/v1/chat/completions")
    assert_openrouter_credentials(request, openrouter_fake)
    assert request.json["model"] == "tools"
    assert request.json["stream"] is True
    assert request.json["tools"] == [WEATHER_TOOL]


# ---- 3. a route to a provider without a key ----------------------------------------------
def test_route_to_a_provider_without_key_is_400_naming_the_variable(
    wlm_factory: Any, openrouter_fake: FakeUpstream, tmp_path: Path
) -> None:
    keyless_anthropic = FakeUpstream("anthropic").start()
    try:
        (tmp_path / "models").mkdir()
        server = wlm_factory(
            {
                # Anthropic has a URL but no key; OpenRouter would take anything unrouted.
                "ANTHROPIC_BASE_URL": keyless_anthropic.base_url,
                "OPENROUTER_API_KEY": openrouter_fake.api_key or "",
                "OPENROUTER_BASE_URL": openrouter_fake.base_url,
                "WLM_DEFAULT_PROVIDER": "openrouter",
                "WLM_ROUTES": "claude-*=anthropic",
            },
            tmp_path,
        )
        markers = []
        for stream in (False, True):
            marker = new_marker()
            markers.append(marker)
            response = httpx.post(
                f"{server.base_url}/v1/chat/completions",
                json={"model": CLAUDE, "messages": ask(marker), "stream": stream},
                headers={"authorization": f"Bearer {CLIENT_KEY}"},
                timeout=30,
            )
            assert response.status_code == 400
            assert response.headers["content-type"].startswith("application/json")
            error = error_of(response)
            assert "ANTHROPIC_API_KEY" in error["message"]
            assert CLAUDE in error["message"]
            assert (error["type"], error["param"], error["code"]) == (
                "invalid_request_error",
                "model",
                "provider_not_configured",
            )

        marker = new_marker()
        markers.append(marker)
        with (
            openai.OpenAI(
                base_url=f"{server.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30
            ) as sdk,
            pytest.raises(openai.BadRequestError) as info,
        ):
            sdk.chat.completions.create(model=CLAUDE, messages=ask(marker))
        assert info.value.code == "provider_not_configured"
        assert "ANTHROPIC_API_KEY" in info.value.message

        # Refused before any call: not to Anthropic without a key, not to the default.
        assert keyless_anthropic.requests == []
        assert [r for m in markers for r in calls_with(openrouter_fake, m)] == []
    finally:
        keyless_anthropic.stop()


# ---- 4. thinking without streaming -------------------------------------------------------
def test_thinking_without_stream_returns_reasoning_content(
    client: openai.OpenAI, referee: anthropic.Anthropic, anthropic_fake: FakeUpstream
) -> None:
    direct = referee.messages.create(
        model="thinking",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=ask(new_marker()),
    )
    [thought] = [block for block in direct.content if block.type == "thinking"]
    text = "".join(block.text for block in direct.content if block.type == "text")
    assert thought.thinking and thought.signature and text  # what this test is about

    marker = new_marker()
    reply = client.chat.completions.create(
        model="anthropic/thinking", messages=ask(marker), reasoning_effort="low"
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == text
    extra = choice.message.model_extra or {}
    assert extra["reasoning_content"] == thought.thinking
    assert extra["thinking_blocks"] == [
        {"type": "thinking", "thinking": thought.thinking, "signature": thought.signature}
    ]
    assert text not in extra["reasoning_content"]
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (11, 7)

    _, request = upstream_call(anthropic_fake, marker, path="/v1/messages")
    assert request.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert request.json.get("stream") in (None, False)


def test_thinking_reads_the_same_whole_and_streamed(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model="anthropic/thinking", messages=ask(new_marker()), reasoning_effort="low"
    )
    chunks = list(
        client.chat.completions.create(
            model="anthropic/thinking",
            messages=ask(new_marker()),
            reasoning_effort="low",
            stream=True,
        )
    )
    streamed = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for c in chunks
        if c.choices
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    message = whole.choices[0].message
    assert streamed == (message.model_extra or {})["reasoning_content"]
    assert text == message.content


def test_thinking_blocks_from_a_whole_answer_go_back_signed(
    client: openai.OpenAI, anthropic_fake: FakeUpstream
) -> None:
    first = client.chat.completions.create(
        model="anthropic/thinking", messages=ask(new_marker()), reasoning_effort="low"
    )
    message = first.choices[0].message
    blocks = (message.model_extra or {})["thinking_blocks"]
    marker = new_marker()
    history: list[Any] = [
        *ask(new_marker()),
        {"role": "assistant", "content": message.content, "thinking_blocks": blocks},
        {"role": "user", "content": f"And again ({marker})"},
    ]
    second = client.chat.completions.create(model=CLAUDE, messages=history, reasoning_effort="low")
    assert second.choices[0].message.content == "Hello from fake-anthropic"

    _, request = upstream_call(anthropic_fake, marker, path="/v1/messages")
    assistant = request.json["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": [*blocks, {"type": "text", "text": message.content}],
    }
