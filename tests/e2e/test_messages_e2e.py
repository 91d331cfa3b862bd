"""POST /v1/messages end to end: the official `anthropic` SDK -> `wlm serve` -> fake
Anthropic (native) and fake OpenAI (translated), with telemetry read back by SQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import WlmServer
from tests.e2e.e2e_helpers import new_marker, upstream_call
from tests.e2e.telemetry_helpers import sql_api
from tests.fakes import FakeUpstream, serve_fake

pytestmark = pytest.mark.e2e

CLIENT_KEY = "sk-client-messages-e2e"
WEATHER: Any = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    anthropic_fake = serve_fake("anthropic")
    openai_fake = serve_fake("openai")
    yield {"anthropic": next(anthropic_fake), "openai": next(openai_fake)}
    for generator in (anthropic_fake, openai_fake):
        generator.close()


@pytest.fixture(scope="module")
def wlm(
    fakes: dict[str, FakeUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WlmServer]:
    workdir = tmp_path_factory.mktemp("wlm-messages")
    (workdir / "models").mkdir()
    env = {
        "ANTHROPIC_API_KEY": fakes["anthropic"].api_key,
        "ANTHROPIC_BASE_URL": fakes["anthropic"].base_url,
        "OPENAI_API_KEY": fakes["openai"].api_key,
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "WLM_ROUTES": "claude-*=anthropic,gpt-*=openai",
        # A client's own model names sent anywhere (globs), and the fakes' tool scenario.
        "WLM_ALIASES": "claude-via-openai-*=openai/gpt-4o-mini,tools-anthropic=anthropic/tools,"
        "tools-openai=openai/tools,err-429=openai/error:429,err-529=anthropic/error:529,"
        "thinking-anthropic=anthropic/thinking",
        "WLM_API_KEYS": f"e2e:{CLIENT_KEY}",
    }
    server = WlmServer(env, workdir).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(wlm: WlmServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=wlm.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30
    ) as sdk:
        yield sdk


def ask(marker: str) -> list[Any]:
    return [{"role": "user", "content": f"Say hello ({marker})"}]


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


@pytest.mark.parametrize(
    ("model", "provider", "upstream_path", "answer"),
    [
        ("claude-sonnet-4-5", "anthropic", "/v1/messages", "Hello from fake-anthropic"),
        ("claude-via-openai-haiku", "openai", "/v1/chat/completions", "Hello from fake-openai"),
    ],
)
def test_create_and_stream_reach_either_backend(
    client: anthropic.Anthropic,
    fakes: dict[str, FakeUpstream],
    model: str,
    provider: str,
    upstream_path: str,
    answer: str,
) -> None:
    marker = new_marker()
    message = client.messages.create(model=model, max_tokens=64, messages=ask(marker))
    assert text_of(message) == answer
    assert message.model == model
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    _, request = upstream_call(fakes[provider], marker, path=upstream_path)
    assert CLIENT_KEY.encode() not in request.body

    marker = new_marker()
    with client.messages.stream(model=model, max_tokens=64, messages=ask(marker)) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == answer
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["tools-anthropic", "tools-openai"])
def test_tool_use_round_trip(client: anthropic.Anthropic, model: str) -> None:
    marker = new_marker()
    messages: list[Any] = ask(marker)
    first = client.messages.create(model=model, max_tokens=256, tools=[WEATHER], messages=messages)
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert uses and all(u.name == "get_weather" and "city" in u.input for u in uses)
    # The client runs the tools and sends the results back in one user turn.
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": u.id, "content": "sunny"} for u in uses
            ],
        },
    ]
    with client.messages.stream(
        model=model, max_tokens=256, tools=[WEATHER], messages=messages
    ) as stream:
        final = stream.get_final_message()
    assert final.content  # the upstream answered the second turn


def test_errors_are_anthropic_errors_the_sdk_raises(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as not_found:
        client.messages.create(model="nobody-has-this", max_tokens=8, messages=ask("x"))
    assert not_found.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="err-429", max_tokens=8, messages=ask("x"))
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        client.messages.create(model="err-529", max_tokens=8, messages=ask("x"))
    assert overloaded.value.status_code == 529
    bad = anthropic.Anthropic(base_url=client.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=ask("x"))


def test_count_tokens_native_and_estimated(client: anthropic.Anthropic) -> None:
    native = client.messages.count_tokens(model="claude-sonnet-4-5", messages=ask("x"))
    assert native.input_tokens > 0
    estimate = client.messages.count_tokens(model="gpt-4o-mini", messages=ask("x"))
    assert estimate.input_tokens > 0


def test_requests_land_in_telemetry_with_their_endpoints(
    client: anthropic.Anthropic, wlm: WlmServer
) -> None:
    client.messages.create(model="claude-via-openai-z", max_tokens=32, messages=ask("t"))
    client.messages.create(model="claude-sonnet-4-5", max_tokens=32, messages=ask("t"))
    wanted = {
        ("messages", "chat/completions", "openai", "ok"),
        ("messages", "messages", "anthropic", "ok"),
    }
    query = (
        "SELECT endpoint, upstream_endpoint, provider, status, completion_tokens "
        "FROM requests WHERE endpoint LIKE 'messages%'"
    )
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=wlm.base_url, timeout=10) as http:
        while True:
            rows = sql_api(http, query)
            seen = {
                (r["endpoint"], r["upstream_endpoint"], r["provider"], r["status"]) for r in rows
            }
            if wanted <= seen or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # polling the server's state, not synchronising the test
    assert wanted <= seen
    assert all(
        r["completion_tokens"] for r in rows if r["status"] == "ok" and r["endpoint"] == "messages"
    )


def test_claude_codes_warm_up_head_and_query_string(wlm: WlmServer) -> None:
    with httpx.Client(base_url=wlm.base_url, timeout=10) as http:
        assert http.head("/").status_code < 500
        reply = http.post(
            "/v1/messages?beta=true",
            headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
            json={"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": ask("q")},
        )
    assert reply.status_code == 200
    assert reply.json()["type"] == "message"


def test_signed_thinking_passes_through_to_the_anthropic_sdk(client: anthropic.Anthropic) -> None:
    """Native: the thinking block and its signature reach the client as Anthropic sent
    them, whole and streamed (so the client can send them back on its next turn)."""
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    message = client.messages.create(
        model="thinking-anthropic", max_tokens=2048, thinking=thinking, messages=ask("t")
    )
    kinds = [b.type for b in message.content]
    assert kinds == ["thinking", "text"]
    assert message.content[0].signature  # type: ignore[union-attr]
    with client.messages.stream(
        model="thinking-anthropic", max_tokens=2048, thinking=thinking, messages=ask("t")
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature == message.content[0].signature  # type: ignore[union-attr]
