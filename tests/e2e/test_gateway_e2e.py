"""The gateway core through a real `wlm serve`, real fake providers and the official SDK."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import WlmServer
from tests.e2e.e2e_helpers import error_of
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.e2e

CLIENT_SECRET = "client-side-token-that-must-not-travel"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class World:
    def __init__(self, server: WlmServer, fakes: dict[str, FakeUpstream]) -> None:
        self.server = server
        self.fakes = fakes
        self.client = openai.OpenAI(
            base_url=f"{server.base_url}/v1", api_key=CLIENT_SECRET, max_retries=0, timeout=20
        )
        self.http = httpx.Client(base_url=server.base_url, timeout=20)
        self.responses: list[str] = []  # everything a client saw, for the leak scan

    def provider_keys(self) -> list[str]:
        return [fake.api_key for fake in self.fakes.values() if fake.api_key]

    def post(self, body: dict, **kwargs: object) -> httpx.Response:
        response = self.http.post("/v1/chat/completions", json=body, **kwargs)  # type: ignore[arg-type]
        self.responses.append(str(response.headers) + response.text)
        return response


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fakes = {
        "openai": FakeUpstream("openai").start(),
        "openrouter": FakeUpstream("openrouter").start(),
        "lab": FakeUpstream("openai").start(),
        "slow": FakeUpstream("openai").start(),
    }
    fakes["openrouter"].models = ["openai/gpt-4o-mini", "meta-llama/llama-3.1-8b-instruct"]
    fakes["lab"].models = ["qwen-lab"]
    fakes["lab"].api_key = None  # a keyless LAN server
    workdir = tmp_path_factory.mktemp("wlm")
    env = {
        "OPENAI_API_KEY": fakes["openai"].api_key,
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "OPENROUTER_API_KEY": fakes["openrouter"].api_key,
        "OPENROUTER_BASE_URL": fakes["openrouter"].base_url,
        "OPENROUTER_REFERER": "https://example.test/app",
        "OPENROUTER_TITLE": "wlm tests",
        "WLM_PROVIDERS": "lab,slow,dead",
        "LAB_BASE_URL": fakes["lab"].base_url,
        "SLOW_BASE_URL": fakes["slow"].base_url,
        "SLOW_API_KEY": fakes["slow"].api_key,
        "SLOW_TIMEOUT_S": "1",
        "DEAD_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
        "DEAD_NO_KEY": "true",
        "WLM_ROUTES": "gpt-*=openai,qwen-*=lab",
        "WLM_ALIASES": "fast=gpt-4o-mini",
        "WLM_OPENAI_MODELS": "gpt-4o-mini,gpt-4o",
        "WLM_SLOW_MODELS": "",
    }
    server = WlmServer(env, workdir).start()
    yield World(server, fakes)
    server.stop()
    for fake in fakes.values():
        fake.stop()


def fresh(world: World, name: str) -> FakeUpstream:
    fake = world.fakes[name]
    fake.clear()
    return fake


# -- pass-through ------------------------------------------------------------------------


def test_non_stream_chat_reaches_openai_with_the_server_key(world: World) -> None:
    fake = fresh(world, "openai")
    reply = world.client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"x_custom": 7},
    )
    assert reply.choices[0].message.content == "Hello from fake-openai"
    assert reply.model == "gpt-4o-mini"
    assert reply.usage is not None and reply.usage.total_tokens == 18
    seen = fake.last_request
    assert seen.headers["authorization"] == f"Bearer {fake.api_key}"
    assert CLIENT_SECRET not in json.dumps(seen.headers)
    assert seen.json["model"] == "gpt-4o-mini"
    assert seen.json["x_custom"] == 7  # unknown fields are forwarded


def test_the_model_in_responses_and_chunks_is_the_one_asked_for(world: World) -> None:
    reply = world.client.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.model == "openai/gpt-4o"
    assert world.fakes["openai"].last_request.json["model"] == "gpt-4o"
    chunks = list(
        world.client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert {c.model for c in chunks} == {"fast"}


def test_stream_text_and_usage_only_when_asked(world: World) -> None:
    fake = fresh(world, "openai")
    chunks = list(
        world.client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake-openai"
    assert all(c.choices for c in chunks), "the usage chunk we added must not reach the client"
    assert fake.last_request.json["stream_options"] == {"include_usage": True}

    chunks = list(
        world.client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


def test_streamed_tool_calls_survive(world: World) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    with world.client.chat.completions.stream(
        model="openai/tools", messages=[{"role": "user", "content": "weather?"}], tools=tools
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris"},
        {"city": "London"},
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_recorded_openai_tool_stream_replays_through_wlm(world: World) -> None:
    chunks = list(
        world.client.chat.completions.create(
            model="openai/replay:openai_stream_tool_call_include_usage.0",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
        )
    )
    arguments = "".join(
        tc.function.arguments or ""
        for c in chunks
        for tc in (c.choices[0].delta.tool_calls or [] if c.choices else [])
    )
    assert json.loads(arguments) == {"a": 1231, "b": 2331}


def test_openrouter_gets_attribution_headers_and_its_key(world: World) -> None:
    fake = fresh(world, "openrouter")
    chunks = list(
        world.client.chat.completions.create(
            model="openrouter/meta-llama/llama-3.1-8b-instruct",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Hello from fake-openrouter"
    )
    seen = fake.last_request
    assert seen.json["model"] == "meta-llama/llama-3.1-8b-instruct"
    assert seen.headers["authorization"] == f"Bearer {fake.api_key}"
    assert seen.headers["http-referer"] == "https://example.test/app"
    assert seen.headers["x-title"] == "wlm tests"


def test_openrouter_midstream_error_reaches_the_sdk_as_an_error(world: World) -> None:
    stream = world.client.chat.completions.create(
        model="openrouter/midstream-error",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    assert received, "the chunks before the error still arrive"


def test_keyless_lan_provider_gets_no_authorization(world: World) -> None:
    fake = fresh(world, "lab")
    reply = world.client.chat.completions.create(
        model="qwen-lab", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "Hello from fake-openai"
    assert "authorization" not in fake.last_request.headers


def test_completions_and_embeddings_pass_through(world: World) -> None:
    completion = world.client.completions.create(model="gpt-4o-mini", prompt="Say")
    assert completion.model == "gpt-4o-mini" and completion.choices[0].text
    streamed = list(world.client.completions.create(model="gpt-4o-mini", prompt="Say", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices)
    embedding = world.client.embeddings.create(
        model="openai/text-embedding-3-small", input=["a", "b"]
    )
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8
    assert world.fakes["openai"].last_request.json["model"] == "text-embedding-3-small"


def test_api_v1_prefix_serves_the_same_endpoints(world: World) -> None:
    response = world.http.post(
        "/api/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200 and response.json()["model"] == "gpt-4o-mini"
    assert world.http.get("/api/v1/models").status_code == 200


# -- streaming behaviour ---------------------------------------------------------------


def test_no_buffering_each_chunk_arrives_before_the_next_is_sent(world: World) -> None:
    fake = fresh(world, "openai")
    arrivals: list[float] = []
    body = {
        "model": "openai/paced:200:5",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    with world.http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic())
    sent = fake.sent_at[0]
    # role chunk + 5 paced content chunks + finish chunk (the usage chunk wlm asked for is dropped)
    assert len(arrivals) == 7
    paced = [i for i in range(len(sent) - 1) if sent[i + 1] - sent[i] > 0.1]
    assert len(paced) >= 4
    # Every paced event reached the client before the fake sent the next one (200 ms later).
    for index in paced:
        assert arrivals[index] < sent[index + 1], f"event {index} was held back"


def test_client_disconnect_mid_stream_closes_the_upstream_at_once(world: World) -> None:
    fake = fresh(world, "openai")
    body = {
        "model": "openai/paced:300:20",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    with world.http.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break  # drop after the first chunk
    closed_after = fake.wait_closed(0, timeout=5)
    assert closed_after is not None and closed_after < 2.0


def test_client_disconnect_during_a_non_stream_request_cancels_upstream(world: World) -> None:
    fake = fresh(world, "openai")
    body = {"model": "openai/hang", "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{world.server.base_url}/v1/chat/completions", json=body, timeout=0.5)
    fake.wait_for_requests(1)
    closed_after = fake.wait_closed(0, timeout=3)
    assert closed_after is not None and closed_after < 2.0


@pytest.mark.parametrize("scenario", ["reset:3", "malformed", "midstream-error"])
def test_upstream_failure_after_the_first_byte_ends_with_an_error_event(
    world: World, scenario: str
) -> None:
    stream = world.client.chat.completions.create(
        model=f"openai/{scenario}",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"", 400, "empty"),
        (b'{"messages": []}', 400, "'model'"),
        (b'{"model": "gpt-4o-mini"}', 400, "'messages'"),
        (b'{"model": 5, "messages": []}', 400, "'model'"),
        (b'{"model": "gpt-4o-mini", "messages": [], "stream": "yes"}', 400, "'stream'"),
    ],
)
def test_bad_input_gets_a_clear_400(world: World, raw: bytes, status: int, fragment: str) -> None:
    response = world.http.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert fragment in error_of(response)["message"]


def test_unknown_model_is_404_naming_it(world: World) -> None:
    response = world.post({"model": "no-such-model", "messages": []})
    assert response.status_code == 404
    error = error_of(response)
    assert "no-such-model" in error["message"] and error["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        world.client.chat.completions.create(model="no-such-model", messages=[])


def test_unconfigured_provider_says_which_variable_to_set(world: World) -> None:
    response = world.post({"model": "anthropic/claude-x", "messages": []})
    assert response.status_code == 404
    assert "ANTHROPIC_API_KEY" in error_of(response)["message"]


def test_unreachable_upstream_is_502(world: World) -> None:
    response = world.post({"model": "dead/anything", "messages": []})
    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_unreachable"


def test_upstream_timeout_is_504(world: World) -> None:
    started = time.monotonic()
    response = world.post({"model": "slow/hang", "messages": []})
    assert response.status_code == 504
    assert error_of(response)["type"] == "timeout"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
def test_upstream_errors_pass_on_with_their_status(world: World, status: int) -> None:
    response = world.post(
        {"model": f"openai/error:{status}", "messages": []}, headers={"x-request-id": "r-1"}
    )
    assert response.status_code == status
    error_of(response)
    assert response.headers["x-request-id"] == "r-1"
    if status == 429:
        assert response.headers["retry-after"] == "1"


def test_rate_limit_reaches_the_sdk_as_rate_limit_error(world: World) -> None:
    with pytest.raises(openai.RateLimitError):
        world.client.chat.completions.create(model="openai/error:429", messages=[])


def test_an_upstream_echoing_the_key_is_redacted(world: World) -> None:
    response = world.post({"model": "openai/error:401-echo", "messages": []})
    assert response.status_code == 401
    message = error_of(response)["message"]
    assert world.fakes["openai"].api_key not in message
    assert "[redacted]" in message


def test_unknown_paths_and_wrong_methods_are_openai_errors(world: World) -> None:
    response = world.http.get("/v1/nope")
    assert response.status_code == 404
    error_of(response)
    response = world.http.get("/v1/chat/completions")
    assert response.status_code == 405
    error_of(response)
    response = world.http.delete("/v1/models")
    assert response.status_code == 405
    error_of(response)


# -- models ----------------------------------------------------------------------------


def test_models_are_merged_and_route_back(world: World) -> None:
    listed = {m.id: m for m in world.client.models.list()}
    # openai: configured list, bare ids route there through WLM_ROUTES (gpt-*).
    assert listed["gpt-4o-mini"].owned_by == "openai"
    # openrouter: fetched; vendor/model ids do not route bare, so they are prefixed.
    assert listed["openrouter/meta-llama/llama-3.1-8b-instruct"].owned_by == "openrouter"
    assert listed["openrouter/openai/gpt-4o-mini"].owned_by == "openrouter"
    # the keyless LAN provider; a dead provider does not break the list.
    assert listed["qwen-lab"].owned_by == "lab"
    for model_id, entry in listed.items():
        assert entry.model_extra and entry.model_extra["provider"] == entry.owned_by
        if entry.owned_by in ("openai", "openrouter", "lab"):
            reply = world.client.chat.completions.create(
                model=model_id, messages=[{"role": "user", "content": "x"}]
            )
            assert (
                reply.choices[0].message.content
                == f"Hello from fake-{'openai' if entry.owned_by != 'openrouter' else 'openrouter'}"
            )
    one = world.http.get("/v1/models/openrouter/meta-llama/llama-3.1-8b-instruct")
    assert one.status_code == 200 and one.json()["provider"] == "openrouter"
    assert world.http.get("/v1/models/not-listed").status_code == 404


# -- last: nothing leaked ----------------------------------------------------------------


def test_zz_no_key_leaked_in_responses_or_logs(world: World) -> None:
    log = world.server.log()
    for key in world.provider_keys():
        assert key not in log
        for seen in world.responses:
            assert key not in seen
    data_dir = Path(world.server.env["WLM_DATA_DIR"])
    for path in data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for key in world.provider_keys():
                assert key.encode() not in content, f"{key} in {path}"
