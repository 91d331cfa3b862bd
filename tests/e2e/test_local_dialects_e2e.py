"""The official `anthropic` and `openai` SDKs -> `wlm serve` -> the embedded llama.cpp
engine's own /v1/messages and /v1/responses (issue 11), with the tiny test models:
`tiny-stop` ends its replies by itself after 8 tokens, `tiny` runs to the limit.

The template of the test models names the request's tools in the prompt, so a request
with tools has more input tokens than the same one without: that is how these tests
see tool definitions reach the engine (the tiny models make no tool calls).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import WlmServer
from tests.e2e.telemetry_helpers import sql_api

pytestmark = [pytest.mark.e2e, pytest.mark.local]

KEY = "sk-client-local-dialects-e2e"
STOP_AFTER = 8
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
WEATHER_FUNCTION: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def make_model(path: str, *extra: str) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "wlm.cli", "make-test-model", path, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr


@pytest.fixture(scope="module")
def wlm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WlmServer]:
    workdir = tmp_path_factory.mktemp("wlm-local-dialects")
    make_model(str(workdir / "models" / "tiny.gguf"))
    make_model(str(workdir / "models" / "tiny-stop.gguf"), "--stop-after", str(STOP_AFTER))
    env = {
        # Client model names that are not the engine's: answers must carry the client's.
        "WLM_ALIASES": "claude-local=local/tiny-stop,gpt-local=local/tiny-stop",
        "WLM_API_KEYS": f"sdk:{KEY}",
        "WLM_LOCAL_THREADS": "1",
        "WLM_LOCAL_PARALLEL": "1",
        "WLM_LOCAL_CTX_SIZE": "2048",
        "WLM_MAX_LOADED_MODELS": "2",
    }
    server = WlmServer(env, workdir).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def claude(wlm: WlmServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=wlm.base_url, api_key=KEY, max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def gpt(wlm: WlmServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{wlm.base_url}/v1", api_key=KEY, max_retries=0, timeout=60) as c:
        yield c


def row(wlm: WlmServer, request_id: str) -> dict[str, Any]:
    """The telemetry row of one request, once the writer has it."""
    sql = (
        "SELECT endpoint, upstream_endpoint, provider, upstream_model, status, finish_reason, "
        "prompt_tokens, completion_tokens "
        f"FROM requests WHERE request_id = '{request_id}'"
    )
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=wlm.base_url, timeout=10) as http:
        while True:
            rows = sql_api(http, sql)
            if rows or time.monotonic() > deadline:
                assert len(rows) == 1, rows
                return rows[0]
            time.sleep(0.05)  # polling the server's state, not synchronising the test


HI = [{"role": "user", "content": "say hi"}]


# -- Messages ---------------------------------------------------------------------------


def test_messages_whole_and_streamed_come_from_the_engine(
    claude: anthropic.Anthropic, wlm: WlmServer
) -> None:
    raw = claude.messages.with_raw_response.create(model="claude-local", max_tokens=64, messages=HI)
    message = raw.parse()
    with claude.messages.stream(model="claude-local", max_tokens=64, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert message.model == final.model == "claude-local"
    assert message.stop_reason == final.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert final.content[0].type == "text" and final.content[0].text == text
    assert message.usage.output_tokens == final.usage.output_tokens == STOP_AFTER + 1
    record = row(wlm, raw.headers["request-id"])
    assert (record["endpoint"], record["upstream_endpoint"], record["provider"]) == (
        "messages",
        "messages",
        "local",
    )
    assert (record["upstream_model"], record["status"], record["finish_reason"]) == (
        "tiny-stop",
        "ok",
        "stop",
    )
    usage = message.usage
    assert record["prompt_tokens"] == usage.input_tokens + (usage.cache_read_input_tokens or 0)
    assert record["completion_tokens"] == STOP_AFTER + 1


def test_a_message_cut_off_at_max_tokens(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="local/tiny", max_tokens=5, messages=HI)
    with claude.messages.stream(model="local/tiny", max_tokens=5, messages=HI) as stream:
        final = stream.get_final_message()
    assert message.stop_reason == final.stop_reason == "max_tokens"
    assert message.usage.output_tokens == final.usage.output_tokens == 5


def test_messages_tools_reach_the_engine_and_count_tokens_is_exact(
    claude: anthropic.Anthropic,
) -> None:
    plain = claude.messages.count_tokens(model="claude-local", messages=HI)
    counted = claude.messages.with_raw_response.count_tokens(
        model="claude-local", messages=HI, tools=[WEATHER_TOOL]
    )
    assert "x-wlm-estimate" not in counted.headers
    with_tools = counted.parse().input_tokens
    assert with_tools > plain.input_tokens  # the tool is in the prompt

    with claude.messages.stream(
        model="claude-local", max_tokens=64, messages=HI, tools=[WEATHER_TOOL]
    ) as stream:
        usage = stream.get_final_message().usage
    assert usage.input_tokens + (usage.cache_read_input_tokens or 0) == with_tools


def test_a_text_document_reaches_the_engine(claude: anthropic.Anthropic) -> None:
    """The engine drops document blocks; wlm sends a plain-text one as text."""
    notes = "the meeting moved to thursday at noon"
    document: Any = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": notes},
    }
    as_document = claude.messages.count_tokens(
        model="claude-local", messages=[{"role": "user", "content": [document]}]
    )
    as_text = claude.messages.count_tokens(
        model="claude-local",
        messages=[{"role": "user", "content": [{"type": "text", "text": notes}]}],
    )
    assert as_document.input_tokens == as_text.input_tokens


def test_messages_errors_are_anthropic_errors(claude: anthropic.Anthropic) -> None:
    long = [{"role": "user", "content": "hello " * 3000}]
    for stream in (False, True):
        with pytest.raises(anthropic.BadRequestError) as caught:
            claude.messages.create(model="local/tiny", max_tokens=4, messages=long, stream=stream)
        body: Any = caught.value.body
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert "WLM_LOCAL_CTX_SIZE" in body["error"]["message"]
    image: Any = [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                }
            ],
        }
    ]
    with pytest.raises(anthropic.BadRequestError, match="mmproj"):
        claude.messages.create(model="local/tiny", max_tokens=4, messages=image)
    with pytest.raises(anthropic.BadRequestError) as wrong:
        claude.messages.create(model="local/tiny", max_tokens="four", messages=HI)  # type: ignore[arg-type]
    assert "max_tokens" in str(wrong.value)


# -- Responses --------------------------------------------------------------------------


def test_responses_whole_and_streamed_come_from_the_engine(
    gpt: openai.OpenAI, wlm: WlmServer
) -> None:
    raw = gpt.responses.with_raw_response.create(model="gpt-local", input="say hi")
    whole = raw.parse()
    with gpt.responses.stream(model="gpt-local", input="say hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert whole.status == final.status == "completed"
    assert whole.model == final.model == "gpt-local"
    assert whole.output_text.strip() and final.output_text == "".join(deltas)
    assert whole.usage is not None and whole.usage.output_tokens == STOP_AFTER + 1
    record = row(wlm, raw.headers["x-request-id"])
    assert (record["endpoint"], record["upstream_endpoint"], record["provider"]) == (
        "responses",
        "responses",
        "local",
    )
    assert (record["upstream_model"], record["status"], record["finish_reason"]) == (
        "tiny-stop",
        "ok",
        "stop",
    )
    assert record["prompt_tokens"] == whole.usage.input_tokens
    assert record["completion_tokens"] == STOP_AFTER + 1


def test_a_raw_responses_stream_assembles_into_the_final_response(gpt: openai.OpenAI) -> None:
    events = list(gpt.responses.create(model="gpt-local", input="say hi", stream=True))

    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert final.output_text == text
    assert {e.output_index for e in events if hasattr(e, "output_index")} == {0}
    assert final.id == events[0].response.id


def test_a_response_cut_off_at_max_output_tokens_is_incomplete(gpt: openai.OpenAI) -> None:
    whole = gpt.responses.create(model="local/tiny", input="say hi", max_output_tokens=16)
    events = list(
        gpt.responses.create(model="local/tiny", input="say hi", max_output_tokens=16, stream=True)
    )
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert events[-1].type == "response.incomplete"


def test_responses_tools_reach_the_engine(gpt: openai.OpenAI, wlm: WlmServer) -> None:
    plain = gpt.responses.create(model="gpt-local", input="say hi")
    raw = gpt.responses.with_raw_response.create(
        model="gpt-local", input="say hi", tools=[WEATHER_FUNCTION]
    )
    tooled = raw.parse()
    assert plain.usage is not None and tooled.usage is not None
    assert tooled.usage.input_tokens > plain.usage.input_tokens
    assert [tool.name for tool in tooled.tools] == ["get_weather"]  # type: ignore[union-attr]
    assert row(wlm, raw.headers["x-request-id"])["upstream_endpoint"] == "responses"


def test_codex_tools_the_engine_would_skip_go_translated(
    gpt: openai.OpenAI, wlm: WlmServer
) -> None:
    namespace: Any = {
        "type": "namespace",
        "name": "agents",
        "description": "Sub-agents.",
        "tools": [{**WEATHER_FUNCTION, "name": "spawn"}],
    }
    raw = gpt.responses.with_raw_response.create(
        model="gpt-local", input="say hi", tools=[WEATHER_FUNCTION, namespace]
    )
    assert raw.parse().status == "completed"
    assert row(wlm, raw.headers["x-request-id"])["upstream_endpoint"] == "chat/completions"


def test_previous_response_id_and_retrieve_for_a_local_answer(gpt: openai.OpenAI) -> None:
    first = gpt.responses.create(model="gpt-local", input="say hi")
    fresh = gpt.responses.create(model="gpt-local", input="and again")
    with gpt.responses.stream(
        model="gpt-local", input="and again", previous_response_id=first.id
    ) as stream:
        second = stream.get_final_response()

    assert second.previous_response_id == first.id
    assert second.usage is not None and fresh.usage is not None
    # The engine keeps nothing: wlm sent it the first turn and its answer again.
    assert second.usage.input_tokens > fresh.usage.input_tokens
    kept = gpt.responses.retrieve(second.id)
    assert (kept.id, kept.output_text) == (second.id, second.output_text)
    assert gpt.responses.retrieve(first.id).output_text == first.output_text


def test_a_response_with_store_false_is_not_kept(gpt: openai.OpenAI) -> None:
    answer = gpt.responses.create(model="gpt-local", input="say hi", store=False)
    with pytest.raises(openai.NotFoundError):
        gpt.responses.retrieve(answer.id)
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(model="gpt-local", input="more", previous_response_id=answer.id)
    assert caught.value.code == "previous_response_not_found"


def test_responses_errors_are_openai_errors(gpt: openai.OpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            gpt.responses.create(model="local/tiny", input="hello " * 3000, stream=stream)
        assert caught.value.code == "context_length_exceeded"
        assert "WLM_LOCAL_CTX_SIZE" in caught.value.message
    with pytest.raises(openai.BadRequestError) as wrong:
        gpt.responses.create(model="local/tiny", input="hi", max_output_tokens="x")  # type: ignore[arg-type]
    assert wrong.value.param == "max_output_tokens"
