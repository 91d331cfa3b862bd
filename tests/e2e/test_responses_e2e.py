"""POST /v1/responses end to end: the official `openai` SDK (and Codex's recorded requests)
-> `wlm serve` -> a fake OpenAI that speaks Responses natively, a fake Anthropic, a chat-only
OpenAI-compatible server and a fake OpenRouter (those three translated through chat), with
telemetry read back by SQL."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import WlmServer
from tests.e2e.e2e_helpers import new_marker, upstream_call
from tests.e2e.telemetry_helpers import sql_api
from tests.fakes import WIRE_DIR, FakeUpstream, serve_fake

pytestmark = pytest.mark.e2e

CLIENT_KEY = "sk-client-responses-e2e"
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
CODEX_TOOL_USE = WIRE_DIR / "responses_codex_tool_use.jsonl"


class Backend:
    """One upstream as a test sees it: the model names that reach it and what it answers."""

    def __init__(self, name: str, model: str, prefix: str, path: str, answer: str) -> None:
        self.name = name  # the fixture key and wlm's provider name
        self.model = model  # an ordinary answer
        self.prefix = prefix  # "<provider>/" + a fake scenario name reaches the fake as-is
        self.path = path  # where the fake receives what wlm sends
        self.answer = answer

    def scenario(self, name: str) -> str:
        return self.prefix + name

    @property
    def native(self) -> bool:
        return self.path.endswith("/responses")

    def __repr__(self) -> str:
        return self.name


OPENAI = Backend("openai", "gpt-4o-mini", "openai/", "/v1/responses", "Hello from fake-openai")
ANTHROPIC = Backend(
    "anthropic", "claude-sonnet-4-5", "anthropic/", "/v1/messages", "Hello from fake-anthropic"
)
COMPAT = Backend(
    "compat", "compat/gpt-4o-mini", "compat/", "/v1/chat/completions", "Hello from fake-openai"
)
OPENROUTER = Backend(
    "openrouter",
    "openrouter/openai/gpt-4o-mini",
    "openrouter/",
    "/api/v1/chat/completions",
    "Hello from fake-openrouter",
)
BACKENDS = [OPENAI, ANTHROPIC, COMPAT, OPENROUTER]
TRANSLATED = [ANTHROPIC, COMPAT, OPENROUTER]


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    flavors = {"openai": "openai", "anthropic": "anthropic", "compat": "openai"}
    flavors["openrouter"] = "openrouter"
    generators = {name: serve_fake(flavor) for name, flavor in flavors.items()}
    started = {name: next(generator) for name, generator in generators.items()}
    # An OpenAI-compatible server that speaks only chat: /v1/responses is a 404 there.
    started["compat"].serves_responses = False
    yield started
    for generator in generators.values():
        generator.close()


@pytest.fixture(scope="module")
def wlm(
    fakes: dict[str, FakeUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WlmServer]:
    workdir = tmp_path_factory.mktemp("wlm-responses")
    (workdir / "models").mkdir()
    env = {
        "OPENAI_API_KEY": fakes["openai"].api_key,
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "ANTHROPIC_API_KEY": fakes["anthropic"].api_key,
        "ANTHROPIC_BASE_URL": fakes["anthropic"].base_url,
        "OPENROUTER_API_KEY": fakes["openrouter"].api_key,
        "OPENROUTER_BASE_URL": fakes["openrouter"].base_url,
        "WLM_PROVIDERS": "compat",
        "COMPAT_API_KEY": fakes["compat"].api_key,
        "COMPAT_BASE_URL": fakes["compat"].base_url,
        "WLM_ROUTES": "claude-*=anthropic,gpt-*=openai",
        "WLM_ALIASES": "house-model=openai/gpt-4o-mini",
        "WLM_API_KEYS": f"e2e:{CLIENT_KEY}",
    }
    server = WlmServer(env, workdir).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(wlm: WlmServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=wlm.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30
    ) as sdk:
        yield sdk


def ask(marker: str) -> str:
    return f"Say hello ({marker})"


def sent_to(fakes: dict[str, FakeUpstream], backend: Backend, marker: str) -> dict[str, Any]:
    """The body wlm sent to the backend for the request carrying `marker`."""
    _, request = upstream_call(fakes[backend.name], marker, path=backend.path)
    assert request.headers["authorization" if backend.name != "anthropic" else "x-api-key"]
    assert CLIENT_KEY.encode() not in request.body
    return request.json  # type: ignore[no-any-return]


def upstream_texts(body: dict[str, Any]) -> str:
    """Every string in an upstream request body, for asserting what history it carried."""
    return json.dumps(body)


# ---- create, stream, retrieve ----------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS, ids=repr)
def test_create_and_stream_reach_every_backend(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream], backend: Backend
) -> None:
    marker = new_marker()
    response = client.responses.create(model=backend.model, input=ask(marker))
    assert response.output_text == backend.answer
    assert response.status == "completed"
    assert response.model == backend.model
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.id.startswith("resp_")
    sent_to(fakes, backend, marker)

    marker = new_marker()
    with client.responses.stream(model=backend.model, input=ask(marker)) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == backend.answer
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert final.output_text == backend.answer
    assert final.model == backend.model
    assert final.usage is not None and final.usage.output_tokens > 0
    sent_to(fakes, backend, marker)


def test_native_openai_gets_the_clients_fields_intact(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream]
) -> None:
    marker = new_marker()
    with client.responses.stream(
        model="gpt-4o-mini",
        input=ask(marker),
        instructions="Be brief.",
        include=["reasoning.encrypted_content"],
        prompt_cache_key="cache-" + marker,
        reasoning={"effort": "low", "summary": "auto"},
        metadata={"ticket": "42"},
        store=False,
        text={"verbosity": "low"},
    ) as stream:
        final = stream.get_final_response()
    assert final.output_text == OPENAI.answer
    assert final.prompt_cache_key == "cache-" + marker  # OpenAI's echo, passed through
    _, request = upstream_call(fakes["openai"], marker, path="/v1/responses")
    assert request.headers["authorization"] == f"Bearer {fakes['openai'].api_key}"
    sent = request.json
    assert sent["include"] == ["reasoning.encrypted_content"]
    assert sent["prompt_cache_key"] == "cache-" + marker
    assert sent["reasoning"] == {"effort": "low", "summary": "auto"}
    assert (sent["instructions"], sent["metadata"], sent["store"]) == (
        "Be brief.",
        {"ticket": "42"},
        False,
    )
    assert sent["text"] == {"verbosity": "low"}
    assert sent["stream"] is True and "stream_options" not in sent
    assert sent["input"] == ask(marker)


def test_native_answers_carry_the_clients_model_name(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream]
) -> None:
    marker = new_marker()
    whole = client.responses.create(model="house-model", input=ask(marker))
    assert whole.model == "house-model"
    assert sent_to(fakes, OPENAI, marker)["model"] == "gpt-4o-mini"
    with client.responses.stream(model="house-model", input=ask(new_marker())) as stream:
        lifecycle = [e.response.model for e in stream if hasattr(e, "response")]
        final = stream.get_final_response()
    assert lifecycle == ["house-model"] * 3  # created, in_progress, completed
    assert (final.model, final.output_text) == ("house-model", OPENAI.answer)


def test_previous_response_id_native_is_forwarded(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream]
) -> None:
    first = client.responses.create(model="gpt-4o-mini", input=ask(new_marker()))
    marker = new_marker()
    second = client.responses.create(
        model="gpt-4o-mini", input=ask(marker), previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    assert second.output_text == OPENAI.answer
    sent = sent_to(fakes, OPENAI, marker)
    assert sent["previous_response_id"] == first.id
    assert sent["input"] == ask(marker)  # OpenAI keeps the history itself
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model="gpt-4o-mini", input="x", previous_response_id="resp_nope")
    assert unknown.value.body["code"] == "previous_response_not_found"  # type: ignore[index]


@pytest.mark.parametrize("backend", TRANSLATED, ids=repr)
def test_previous_response_id_translated_resends_the_conversation(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream], backend: Backend
) -> None:
    first_marker = new_marker()
    first = client.responses.create(model=backend.model, input=ask(first_marker))
    marker = new_marker()
    with client.responses.stream(
        model=backend.model, input=f"And again ({marker})", previous_response_id=first.id
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == backend.answer
    assert second.previous_response_id == first.id
    history = upstream_texts(sent_to(fakes, backend, marker))
    assert first_marker in history and backend.answer in history
    assert history.index(first_marker) < history.index(backend.answer) < history.index(marker)


@pytest.mark.parametrize("backend", TRANSLATED, ids=repr)
def test_retrieve_a_translated_response(client: openai.OpenAI, backend: Backend) -> None:
    created = client.responses.create(model=backend.model, input=ask(new_marker()))
    again = client.responses.retrieve(created.id)
    assert again.id == created.id
    assert again.output_text == backend.answer
    unkept = client.responses.create(model=backend.model, input=ask(new_marker()), store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unkept.id)


def test_retrieve_a_native_response(client: openai.OpenAI, fakes: dict[str, FakeUpstream]) -> None:
    created = client.responses.create(model="gpt-4o-mini", input=ask(new_marker()))
    assert created.id in fakes["openai"].stored_responses  # OpenAI kept it (store defaults on)
    again = client.responses.retrieve(created.id)
    assert again.output_text == OPENAI.answer


@pytest.mark.parametrize("backend", TRANSLATED, ids=repr)
def test_a_streamed_response_can_be_continued_and_retrieved_at_once(
    client: openai.OpenAI, backend: Backend
) -> None:
    """Right after response.completed arrives, the response is usable: the SDK user's
    next call (retrieve, or previous_response_id) does not race wlm's bookkeeping."""
    for _ in range(5):
        with client.responses.stream(model=backend.model, input=ask(new_marker())) as stream:
            first = stream.get_final_response()
        assert client.responses.retrieve(first.id).output_text == backend.answer
        with client.responses.stream(model=backend.model, input=ask(new_marker())) as stream:
            second = stream.get_final_response()
        third = client.responses.create(
            model=backend.model, input="again", previous_response_id=second.id
        )
        assert third.previous_response_id == second.id


# ---- function calls ----------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS, ids=repr)
def test_function_call_round_trip(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream], backend: Backend
) -> None:
    marker = new_marker()
    with client.responses.stream(
        model=backend.scenario("tools"), input=f"Weather? ({marker})", tools=[WEATHER]
    ) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_response()
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Paris"}, {"city": "London"}]
    assert kinds.count("response.output_item.done") >= 2 and kinds[-1] == "response.completed"
    sent = sent_to(fakes, backend, marker)
    assert "get_weather" in json.dumps(sent["tools"])
    # The client runs the tools and answers with their outputs, on the stored response.
    marker = new_marker()
    outputs: Any = [
        {"type": "function_call_output", "call_id": c.call_id, "output": f"sunny in {i} {marker}"}
        for i, c in enumerate(calls)
    ]
    second = client.responses.create(
        model=backend.model, input=outputs, tools=[WEATHER], previous_response_id=first.id
    )
    assert second.output_text == backend.answer
    _, request = upstream_call(fakes[backend.name], marker, path=backend.path)
    sent_text = upstream_texts(request.json)
    assert all(c.call_id in sent_text for c in calls)
    assert "sunny in 0" in sent_text and "sunny in 1" in sent_text


@pytest.mark.parametrize("backend", TRANSLATED, ids=repr)
def test_function_call_round_trip_with_the_whole_history(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream], backend: Backend
) -> None:
    """Codex's way: store false, no previous_response_id, the history resent each turn."""
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.responses.create(
        model=backend.scenario("tools"), input=history, tools=[WEATHER], store=False
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 2
    history += [c.model_dump(exclude_none=True) for c in calls]
    history += [
        {"type": "function_call_output", "call_id": c.call_id, "output": "rain"} for c in calls
    ]
    marker = new_marker()
    history.append({"role": "user", "content": f"Thanks ({marker})"})
    second = client.responses.create(
        model=backend.model, input=history, tools=[WEATHER], store=False
    )
    assert second.output_text == backend.answer
    sent = sent_to(fakes, backend, marker)
    text = upstream_texts(sent)
    assert all(c.call_id in text for c in calls) and "rain" in text


# ---- Codex's recorded requests -----------------------------------------------------------
def codex_bodies(path: Path = CODEX_TOOL_USE) -> list[dict[str, Any]]:
    return [json.loads(line)["body_json"] for line in path.read_text().splitlines() if line]


def codex_stream(wlm: WlmServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Send a Codex body as Codex does, read events until response.completed, hang up."""
    headers = {
        "authorization": f"Bearer {CLIENT_KEY}",
        "accept": "text/event-stream",
        "originator": "codex_exec",
        "user-agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64)",
    }
    events: list[dict[str, Any]] = []
    with httpx.stream(
        "POST", wlm.base_url + "/v1/responses", headers=headers, json=body, timeout=30
    ) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in reply.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                event = json.loads(line[len("data: ") :])
                assert event["type"] == name
                events.append(event)
                if name in ("response.completed", "response.failed"):
                    break  # Codex closes right after the last event
    return events


def with_marker(body: dict[str, Any], model: str, marker: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["model"] = model
    user = [i for i in body["input"] if i.get("role") == "user"][-1]
    user["content"][0]["text"] += f" ({marker})"
    return body


@pytest.mark.parametrize("backend", BACKENDS, ids=repr)
def test_codex_tool_use_turns(
    wlm: WlmServer, fakes: dict[str, FakeUpstream], backend: Backend
) -> None:
    first_body, second_body = codex_bodies()
    marker = new_marker()
    events = codex_stream(wlm, with_marker(first_body, backend.scenario("tools"), marker))
    assert events[-1]["type"] == "response.completed"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    calls = [item for item in done if item["type"] == "function_call"]
    assert calls and {c["name"] for c in calls} == {"exec_command"}
    assert events[-1]["response"]["usage"]["output_tokens"] > 0
    sent = sent_to(fakes, backend, marker)
    if backend.native:  # Codex's fields reach OpenAI as Codex sent them
        for field in ("include", "prompt_cache_key", "reasoning", "store", "client_metadata"):
            assert sent[field] == first_body[field]
        assert sent["input"][:3] == first_body["input"][:3]

    marker = new_marker()
    events = codex_stream(wlm, with_marker(second_body, backend.model, marker))
    assert events[-1]["type"] == "response.completed"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    messages = [item for item in done if item["type"] == "message"]
    assert [part["text"] for m in messages for part in m["content"]] == [backend.answer]
    sent_text = upstream_texts(sent_to(fakes, backend, marker))
    output = next(i for i in second_body["input"] if i["type"] == "function_call_output")
    assert output["call_id"] in sent_text  # the tool result went up with its call


# ---- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS, ids=repr)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_upstream_errors_before_the_first_byte(
    client: openai.OpenAI, backend: Backend, stream: bool
) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        client.responses.create(model=backend.scenario("error:429"), input="x", stream=stream)
    assert set(limited.value.body) >= {"message", "type", "code"}  # type: ignore[arg-type]
    assert limited.value.response.headers.get("retry-after") == "1"
    with pytest.raises(openai.InternalServerError) as failed:
        client.responses.create(model=backend.scenario("error:500"), input="x", stream=stream)
    # wlm answers an Anthropic 500 (api_error) as a 502, like on its other endpoints.
    assert failed.value.status_code == (502 if backend is ANTHROPIC else 500)
    assert failed.value.body["type"] == "server_error"  # type: ignore[index]


def test_unknown_model_and_wrong_key(client: openai.OpenAI, wlm: WlmServer) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nobody-has-this", input="x")
    stranger = openai.OpenAI(base_url=wlm.base_url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.responses.create(model="gpt-4o-mini", input="x")


@pytest.mark.parametrize("backend", BACKENDS, ids=repr)
def test_a_midstream_failure_ends_the_stream_in_response_failed(
    client: openai.OpenAI, backend: Backend
) -> None:
    with client.responses.stream(model=backend.scenario("midstream-error"), input="x") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert "response.output_text.delta" in kinds  # the answer had begun
    assert kinds[-1] == "response.failed"
    assert "response.completed" not in kinds
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None and failed.response.error.message
    if backend.native:  # OpenAI's own failure event, passed through
        assert "help.openai.com" in failed.response.error.message


@pytest.mark.parametrize("backend", BACKENDS, ids=repr)
def test_a_connection_cut_midstream_never_looks_like_success(
    client: openai.OpenAI, backend: Backend
) -> None:
    with client.responses.stream(model=backend.scenario("reset:6"), input="x") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] in ("error", "response.failed")
    assert "response.completed" not in kinds


# ---- telemetry ---------------------------------------------------------------------------
def rows_with_markers(
    wlm: WlmServer, columns: str, markers: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Telemetry rows of /v1/responses requests whose logged body carries each marker."""
    query = (
        f"SELECT {columns}, c.request_json FROM requests r "
        "JOIN conversations c ON c.request_id = r.id WHERE r.endpoint = 'responses'"
    )
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=wlm.base_url, timeout=10) as http:
        while True:
            rows = {
                name: row
                for row in sql_api(http, query)
                for name, marker in markers.items()
                if marker in (row["request_json"] or "")
            }
            if len(rows) == len(markers) or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)  # polling the server's state, not synchronising the test


def test_requests_land_in_telemetry(client: openai.OpenAI, wlm: WlmServer) -> None:
    markers = {}
    for backend in BACKENDS:
        markers[backend.name] = new_marker()
        with client.responses.stream(model=backend.model, input=ask(markers[backend.name])) as s:
            s.get_final_response()
    wanted = {
        "openai": ("responses", "responses", "openai", "ok"),
        "anthropic": ("responses", "chat/completions", "anthropic", "ok"),
        "compat": ("responses", "chat/completions", "compat", "ok"),
        "openrouter": ("responses", "chat/completions", "openrouter", "ok"),
    }
    columns = (
        "r.endpoint, r.upstream_endpoint, r.provider, r.status, r.stream, "
        "r.prompt_tokens, r.completion_tokens"
    )
    rows = rows_with_markers(wlm, columns, markers)
    seen = {
        name: (r["endpoint"], r["upstream_endpoint"], r["provider"], r["status"])
        for name, r in rows.items()
    }
    assert seen == wanted
    for row in rows.values():
        assert row["stream"] is True
        assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 7)


def test_codex_hanging_up_after_completed_is_a_normal_end(wlm: WlmServer) -> None:
    (body, _) = codex_bodies()
    markers = {backend.name: new_marker() for backend in BACKENDS}
    for backend in BACKENDS:
        events = codex_stream(wlm, with_marker(body, backend.model, markers[backend.name]))
        assert events[-1]["type"] == "response.completed"
    rows = rows_with_markers(wlm, "r.provider, r.status, r.http_status, r.error_type", markers)
    assert {name: (r["provider"], r["status"], r["http_status"]) for name, r in rows.items()} == {
        backend.name: (backend.name, "ok", 200) for backend in BACKENDS
    }


# ---- truncated answers -------------------------------------------------------------------
TRUNCATED = {"openai": "stop:length", "compat": "stop:length", "openrouter": "stop:length"}
TRUNCATED["anthropic"] = "stop:max_tokens"


@pytest.mark.parametrize("backend", BACKENDS, ids=repr)
def test_a_truncated_answer_is_an_incomplete_response(
    client: openai.OpenAI, backend: Backend
) -> None:
    model = backend.scenario(TRUNCATED[backend.name])
    whole = client.responses.create(model=model, input="x")
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    with client.responses.stream(model=model, input="x") as stream:
        last = list(stream)[-1]
    # OpenAI ends such a stream with response.incomplete (passed through as it came);
    # wlm's translation currently ends it with response.completed carrying the same
    # incomplete response, which this test does not pin.
    if backend.native:
        assert last.type == "response.incomplete"
    assert last.response.status == "incomplete"  # type: ignore[union-attr]
    assert last.response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
