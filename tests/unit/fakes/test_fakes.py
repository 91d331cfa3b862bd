"""The fake upstreams answer the official SDKs the way the real vendors do."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.fakes import FakeUpstream, Kind, Scenario, ScenarioError, parse_scenario, serve_fake
from tests.fakes.scenarios import WIRE_DIR

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["openai", "openrouter"])
def oa_fake(request: pytest.FixtureRequest) -> Iterator[FakeUpstream]:
    yield from serve_fake(request.param)


@pytest.fixture
def an_fake() -> Iterator[FakeUpstream]:
    yield from serve_fake("anthropic")


def oa_client(fake: FakeUpstream, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=key or fake.api_key, max_retries=0)


def an_client(fake: FakeUpstream, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.base_url, api_key=key or fake.api_key, max_retries=0)


def raw_post(fake: FakeUpstream, model: str, **extra: object) -> httpx.Response:
    """POST a chat request with the right credentials, bypassing any SDK."""
    route = "/v1/messages" if fake.flavor == "anthropic" else "/chat/completions"
    headers = {"authorization": f"Bearer {fake.api_key}", "anthropic-version": "2023-06-01"}
    body = {"model": model, "messages": HI, "max_tokens": 16, **extra}
    return httpx.post(fake.base_url + route, headers=headers, json=body, timeout=5)


def data_events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def test_openai_compatible_answer(oa_fake: FakeUpstream) -> None:
    reply = oa_client(oa_fake).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert reply.choices[0].message.content == f"Hello from fake-{oa_fake.flavor}"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (11, 7)
    request = oa_fake.last_request
    assert request.path.endswith("/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {oa_fake.api_key}"
    assert request.json["model"] == "gpt-4o-mini"
    if oa_fake.flavor == "openrouter":
        assert reply.model_extra["provider"] == "OpenAI"
        assert reply.usage.model_extra["cost"] > 0


def test_openai_compatible_stream_with_usage(oa_fake: FakeUpstream) -> None:
    chunks = list(
        oa_client(oa_fake).chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=HI,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Hello from fake-{oa_fake.flavor}"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == 18


def test_openai_sends_usage_only_when_asked_and_openrouter_always() -> None:
    with FakeUpstream("openai") as oa, FakeUpstream("openrouter") as orr:
        plain = data_events(raw_post(oa, "gpt-4o-mini", stream=True).text)
        assert plain[-1] == "[DONE]"
        assert all("usage" not in json.loads(e) for e in plain[:-1])
        asked = data_events(
            raw_post(oa, "gpt-4o-mini", stream=True, stream_options={"include_usage": True}).text
        )
        assert all(json.loads(e)["usage"] is None for e in asked[:-2])  # null on every chunk
        routed = raw_post(orr, "openai/gpt-4o-mini", stream=True).text
        assert routed.startswith(": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\n")
        assert json.loads(data_events(routed)[-2])["usage"]["cost"] > 0


def test_anthropic_answer_and_stream(an_fake: FakeUpstream) -> None:
    client = an_client(an_fake)
    message = client.messages.create(model="claude-x", max_tokens=16, messages=HI)
    assert message.content[0].text == "Hello from fake-anthropic"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 7
    with client.messages.stream(model="claude-x", max_tokens=16, messages=HI) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Hello from fake-anthropic"
    assert final.usage.output_tokens == 7
    raw = raw_post(an_fake, "claude-x", stream=True).text
    assert '{"type": "ping"}' in raw  # Anthropic's spacing quirks
    assert " }\n" in raw
    assert "[DONE]" not in raw


def test_stop_scenario_sets_the_stop_reason(an_fake: FakeUpstream) -> None:
    client = an_client(an_fake)
    message = client.messages.create(model="stop:stop_sequence", max_tokens=16, messages=HI)
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "###")
    with client.messages.stream(model="stop:refusal", max_tokens=16, messages=HI) as stream:
        assert stream.get_final_message().stop_reason == "refusal"
    with FakeUpstream("openai") as oa:
        reply = oa_client(oa).chat.completions.create(model="stop:length", messages=HI)
        assert reply.choices[0].finish_reason == "length"


def test_tools_streams_two_parallel_calls(oa_fake: FakeUpstream) -> None:
    calls: dict[int, dict[str, str]] = {}
    stream = oa_client(oa_fake).chat.completions.create(model="tools", messages=HI, stream=True)
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
            entry["name"] += call.function.name or ""
            entry["arguments"] += call.function.arguments or ""
    assert [json.loads(c["arguments"]) for c in calls.values()] == [
        {"city": "Paris"},
        {"city": "London"},
    ]
    assert {c["name"] for c in calls.values()} == {"get_weather"}


def test_anthropic_tools_answer(an_fake: FakeUpstream) -> None:
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    message = an_client(an_fake).messages.create(
        model="tools", max_tokens=16, messages=HI, tools=tools
    )
    uses = [block for block in message.content if block.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [
        ("lookup", {"city": "Paris"}),
        ("lookup", {"city": "London"}),
    ]
    assert message.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("flavor", "stem", "path", "status"),
    [
        (
            "openai",
            "openai_stream_tool_call_include_usage.0",
            "extracted/openai_stream_tool_call_include_usage.0.response.sse",
            200,
        ),
        (
            "openrouter",
            "openrouter_error_429_provider.0",
            "extracted/openrouter_error_429_provider.0.response.json",
            429,
        ),
        (
            "anthropic",
            "anthropic_stream_text_then_tool_use",
            "anthropic_stream_text_then_tool_use.sse",
            200,
        ),
    ],
)
def test_replay_is_byte_exact(flavor: str, stem: str, path: str, status: int) -> None:
    with FakeUpstream(flavor) as fake:
        response = raw_post(fake, f"replay:{stem}")
    assert response.status_code == status
    assert response.content == (WIRE_DIR / path).read_bytes()
    if flavor == "openai":  # recorded headers come from the cassette
        assert response.headers["x-request-id"] == "req_c3e995e7a86953713a6dc1b17e399fd5"


def test_wrong_key_gets_the_vendor_401() -> None:
    with FakeUpstream("openai") as oa, FakeUpstream("openrouter") as orr:
        with pytest.raises(openai.AuthenticationError) as oa_error:
            oa_client(oa, "sk-wrong-key-0000").chat.completions.create(model="m", messages=HI)
        assert oa_error.value.body["code"] == "invalid_api_key"
        assert "sk-wrong-key-0000" not in oa_error.value.body["message"]  # masked echo
        with pytest.raises(openai.AuthenticationError) as or_error:
            oa_client(orr, "sk-or-wrong").chat.completions.create(model="m", messages=HI)
        assert or_error.value.body == {"message": "User not found.", "code": 401}
    with FakeUpstream("anthropic") as an, pytest.raises(anthropic.AuthenticationError) as an_error:
        an_client(an, "sk-ant-wrong").messages.create(model="m", max_tokens=1, messages=HI)
    assert an_error.value.body["error"]["type"] == "authentication_error"
    assert an_error.value.body["request_id"].startswith("req_")


@pytest.mark.parametrize("flavor", ["openai", "openrouter", "anthropic"])
def test_error_echo_leaks_the_presented_key(flavor: str) -> None:
    with FakeUpstream(flavor) as fake:
        response = raw_post(fake, "error:401-echo")
    assert response.status_code == 401
    assert fake.api_key in response.text


def test_overload_and_rate_limit_carry_retry_after(an_fake: FakeUpstream) -> None:
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        an_client(an_fake).messages.create(model="error:529", max_tokens=1, messages=HI)
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"
    assert overloaded.value.response.headers["retry-after"] == "1"
    with FakeUpstream("openai") as oa, pytest.raises(openai.RateLimitError) as limited:
        oa_client(oa).chat.completions.create(model="error:429", messages=HI)
    assert limited.value.body["code"] == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after"] == "1"


def test_a_flaky_model_fails_its_first_requests_then_answers(an_fake: FakeUpstream) -> None:
    statuses = [raw_post(an_fake, "flaky:2-529:x").status_code for _ in range(3)]
    assert statuses == [529, 529, 200]
    assert raw_post(an_fake, "flaky:2-529:y").status_code == 529  # another tag counts anew


def test_wait_closed_reports_a_client_disconnect() -> None:
    with FakeUpstream("openai") as fake:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                fake.base_url + "/chat/completions",
                json={"model": "hang"},
                headers={"authorization": f"Bearer {fake.api_key}"},
                timeout=0.3,
            )
        closed_after = fake.wait_closed(0, timeout=2)
        assert closed_after is not None
        assert 0.25 < closed_after < 1.5
        raw_post(fake, "gpt-4o-mini")
        assert fake.wait_closed(1, timeout=2) is None  # completed answers never count


def test_paced_chunks_reach_the_client_before_the_next_is_sent(oa_fake: FakeUpstream) -> None:
    received: list[float] = []
    headers = {"authorization": f"Bearer {oa_fake.api_key}"}
    body = {"model": "paced:80:3", "messages": HI, "stream": True}
    with httpx.stream(
        "POST", oa_fake.base_url + "/chat/completions", headers=headers, json=body, timeout=5
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.append(time.monotonic())
    sent = oa_fake.sent_at[0]
    assert len(sent) == len(received)
    # Events 1..3 are the paced content chunks: each earlier event must have arrived
    # before the fake sent the next one, and the fake must have waited between them.
    assert all(received[i] < sent[i + 1] for i in range(3))
    assert all(later - earlier >= 0.07 for earlier, later in itertools.pairwise(sent[:4]))


def test_reset_breaks_the_stream(oa_fake: FakeUpstream) -> None:
    with pytest.raises(openai.APIConnectionError):
        list(oa_client(oa_fake).chat.completions.create(model="reset:2", messages=HI, stream=True))
    assert len(oa_fake.sent_at[0]) == 2
    assert oa_fake.wait_closed(0, timeout=1) is None  # the fake cut it, not the client


def test_midstream_error_and_malformed_stream_fail_in_the_sdk() -> None:
    with FakeUpstream("openai") as fake:
        client = oa_client(fake)
        with pytest.raises(openai.APIError, match="server had an error"):
            list(client.chat.completions.create(model="midstream-error", messages=HI, stream=True))
        with pytest.raises(json.JSONDecodeError):
            list(client.chat.completions.create(model="malformed", messages=HI, stream=True))


def test_models_and_embeddings(oa_fake: FakeUpstream) -> None:
    oa_fake.models = ["vendor/one", "vendor/two"]
    client = oa_client(oa_fake)
    assert [m.id for m in client.models.list()] == ["vendor/one", "vendor/two"]
    first = client.embeddings.create(model="e", input=["a b", "c"])
    again = client.embeddings.create(model="e", input="a b", encoding_format="float")
    assert first.data[0].embedding == pytest.approx(again.data[0].embedding, abs=1e-6)
    assert first.usage.prompt_tokens == 3


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", Scenario(Kind.ORDINARY)),
        ("minimax/minimax-m2:free", Scenario(Kind.ORDINARY)),
        ("error:401-echo", Scenario(Kind.ERROR, status=401, variant="echo")),
        ("paced:25", Scenario(Kind.PACED, interval_ms=25, chunks=5)),
        ("paced:25:9", Scenario(Kind.PACED, interval_ms=25, chunks=9)),
        ("reset:3", Scenario(Kind.RESET, chunks=3)),
        ("slow-first:200", Scenario(Kind.SLOW_FIRST, delay_ms=200)),
        ("hang-body", Scenario(Kind.HANG_BODY)),
        ("stop:max_tokens", Scenario(Kind.STOP, stop_reason="max_tokens")),
        ("flaky:2-529:t1", Scenario(Kind.FLAKY, status=529, failures=2)),
    ],
)
def test_parse_scenario(model: str, expected: Scenario) -> None:
    assert parse_scenario(model) == expected


@pytest.mark.parametrize(
    "model",
    ["paced:x", "error:99", "error:500-nope", "replay:../x", "stop:Max-Tokens", "flaky:1-600"],
)
def test_bad_scenarios_are_rejected(model: str) -> None:
    with pytest.raises(ScenarioError):
        parse_scenario(model)
