"""llama.cpp's own /v1/responses, mended: the streams and answers recorded from the
embedded engine (tests/fixtures/wire/llama_cpp/), and the shapes its formatter gives
tool calls and reasoning (which the tiny test model cannot produce), read by the
openai SDK's own stream accumulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from wlm.errors import BadRequest
from wlm.sse import SSEParser
from wlm.translate.responses_llama import (
    LLAMA_CPP_TYPES,
    MendResponsesStream,
    for_llama_cpp,
    mend_response,
    unsupported_type,
)
from wlm.translate.responses_stream import encode_sse

LLAMA = Path(__file__).resolve().parents[2] / "fixtures" / "wire" / "llama_cpp"
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
CREATED = 1_700_000_000
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def recorded(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A recorded request and the engine's stream events."""
    request = json.loads((LLAMA / f"{name}.request.json").read_text())
    parser = SSEParser()
    raw = (LLAMA / f"{name}.response.sse").read_bytes()
    events = [json.loads(e.data) for e in [*parser.feed(raw), *parser.finish()] if e.data]
    return request, events


def mend(
    events: list[dict[str, Any]], request: dict[str, Any], model: str = "gpt-client"
) -> tuple[MendResponsesStream, list[dict[str, Any]]]:
    stream = MendResponsesStream(model=model, request=request, created_at=CREATED)
    out: list[dict[str, Any]] = []
    for event in events:
        out += stream.feed(event)
    return stream, out


def check_stream(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Responses grammar a client relies on, for a stream whose items may overlap
    (the engine closes them all at the end): returns the done items by id."""
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] in TERMINAL for e in events].count(True) == 1
    assert events[-1]["type"] in TERMINAL
    for start in events[:2]:
        assert start["response"]["output"] == []
        assert start["response"]["status"] == "in_progress"
        assert start["response"]["created_at"] == CREATED
    indexes: dict[str, int] = {}
    parts: dict[str, set[int]] = {}
    done: dict[str, dict[str, Any]] = {}
    args_done: set[str] = set()
    for event in events[2:-1]:
        kind = event["type"]
        if kind == "response.output_item.added":
            item_id = event["item"]["id"]
            assert event["output_index"] == len(indexes)
            indexes[item_id] = event["output_index"]
            parts[item_id] = set()
            continue
        if kind == "response.output_item.done":
            item = event["item"]
            assert event["output_index"] == indexes[item["id"]]
            assert not parts[item["id"]], "a part left open"
            if item["type"] == "function_call":
                assert item["id"] in args_done, "function_call_arguments.done before done"
            done[item["id"]] = item
            continue
        item_id = event["item_id"]
        assert item_id not in done, f"{kind} after its item was done"
        assert event["output_index"] == indexes[item_id]
        if kind == "response.content_part.added":
            parts[item_id].add(event["content_index"])
        elif kind == "response.content_part.done":
            parts[item_id].remove(event["content_index"])
        elif kind.startswith("response.output_text."):
            assert event["content_index"] in parts[item_id]
            assert event["logprobs"] == []
        elif kind == "response.function_call_arguments.done":
            args_done.add(item_id)
    assert set(done) == set(indexes), "every item added is done"
    final = events[-1]["response"]
    assert [item["id"] for item in final["output"]] == list(indexes)
    assert events[0]["response"]["id"] == final["id"]
    return done


def sdk_stream(events: list[dict[str, Any]]) -> Any:
    """The response the openai SDK's stream accumulator builds from the mended bytes."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = encode_sse(events)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(
        api_key="test",
        base_url="http://gateway.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )
    with client.responses.stream(model="gpt-client", input="hi") as stream:
        for _ in stream:
            pass
        return stream.get_final_response()


# -- recorded from the embedded engine ------------------------------------------------


def test_a_recorded_stream_is_whole_for_the_openai_sdk() -> None:
    request, events = recorded("responses_stream_stop")
    assert all("sequence_number" not in e and "output_index" not in e for e in events)

    stream, mended = mend(events, request)

    done = check_stream(mended)
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    [message] = done.values()
    assert message["content"][0]["text"] == text
    final = sdk_stream(mended)
    assert final.output_text == text
    assert final.model == "gpt-client"
    assert final.status == "completed"
    # OpenAI's echo of the request, which the engine leaves out.
    assert final.instructions == "Be brief."
    assert [tool.name for tool in final.tools] == ["get_weather"]
    assert (
        final.usage.output_tokens == 9 and final.usage.output_tokens_details.reasoning_tokens == 0
    )
    assert stream.response == mended[-1]["response"]
    assert stream.sequence == len(mended)


def test_a_recorded_answer_cut_off_at_max_output_tokens_is_incomplete() -> None:
    request, events = recorded("responses_stream_cut_off")
    assert events[-1]["type"] == "response.completed"  # what the engine says

    _, mended = mend(events, request)

    check_stream(mended)
    final = mended[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["usage"]["output_tokens"] == request["max_output_tokens"]
    assert final["response"]["output"][0]["status"] == "incomplete"


def test_a_recorded_whole_answer_gets_openais_fields() -> None:
    request = json.loads((LLAMA / "responses_stop.request.json").read_text())
    body = json.loads((LLAMA / "responses_stop.response.json").read_text())

    mended = mend_response(body, model="gpt-client", request=request, created_at=1)

    assert mended["id"] == body["id"] and mended["created_at"] == body["created_at"]
    assert mended["model"] == "gpt-client"
    assert mended["status"] == "completed" and mended["incomplete_details"] is None
    assert mended["output"] == body["output"]
    for field in ("tools", "tool_choice", "parallel_tool_calls", "text", "store", "metadata"):
        assert field in mended, field
    usage = mended["usage"]
    assert usage["input_tokens"] == body["usage"]["input_tokens"]
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    parsed = openai.types.responses.Response.model_validate(mended)
    assert parsed.output_text == body["output"][0]["content"][0]["text"]


def test_a_whole_answer_that_hit_max_output_tokens_is_incomplete() -> None:
    body = json.loads((LLAMA / "responses_stop.response.json").read_text())
    limit = body["usage"]["output_tokens"]

    mended = mend_response(
        body, model="m", request={"input": "hi", "max_output_tokens": limit}, created_at=1
    )

    assert mended["status"] == "incomplete"
    assert mended["incomplete_details"] == {"reason": "max_output_tokens"}
    roomy = mend_response(
        body, model="m", request={"input": "hi", "max_output_tokens": limit + 1}, created_at=1
    )
    assert roomy["status"] == "completed"


# -- shapes from llama.cpp's formatter (server-task.cpp) --------------------------------


def engine_stream(*, reasoning: str = "", text: str = "", calls: int = 0) -> list[dict[str, Any]]:
    """A stream as the engine's to_json_oaicompat_resp[_stream] writes it: items open
    as their first delta comes, and all close at the end."""
    events: list[dict[str, Any]] = [
        {"type": t, "response": {"id": "resp_e", "object": "response", "status": "in_progress"}}
        for t in ("response.created", "response.in_progress")
    ]
    output: list[dict[str, Any]] = []
    if reasoning:
        events.append(
            {
                "type": "response.output_item.added",
                "item": {
                    "id": "rs_e",
                    "summary": [],
                    "type": "reasoning",
                    "content": [],
                    "encrypted_content": "",
                    "status": "in_progress",
                },
            }
        )
        for piece in (reasoning[:3], reasoning[3:]):
            events.append(
                {"type": "response.reasoning_text.delta", "delta": piece, "item_id": "rs_e"}
            )
    if text:
        events.append(
            {
                "type": "response.output_item.added",
                "item": {
                    "content": [],
                    "id": "msg_e",
                    "role": "assistant",
                    "status": "in_progress",
                    "type": "message",
                },
            }
        )
        events.append(
            {
                "type": "response.content_part.added",
                "item_id": "msg_e",
                "part": {"type": "output_text", "text": ""},
            }
        )
        events.append({"type": "response.output_text.delta", "item_id": "msg_e", "delta": text})
    for n in range(calls):
        events.append(
            {
                "type": "response.output_item.added",
                "item": {
                    "arguments": "",
                    "call_id": f"fc_c{n}",
                    "name": "get_weather",
                    "type": "function_call",
                    "status": "in_progress",
                },
            }
        )
        for piece in ('{"city": ', f'"P{n}"}}'):
            events.append(
                {
                    "type": "response.function_call_arguments.delta",
                    "delta": piece,
                    "item_id": f"fc_c{n}",
                }
            )
    if reasoning:
        item = {
            "id": "rs_e",
            "summary": [],
            "type": "reasoning",
            "content": [{"text": reasoning, "type": "reasoning_text"}],
            "encrypted_content": "",
        }
        events.append({"type": "response.output_item.done", "item": item})
        output.append(item)
    if text:
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        events.append({"type": "response.output_text.done", "item_id": "msg_e", "text": text})
        events.append({"type": "response.content_part.done", "item_id": "msg_e", "part": part})
        item = {
            "type": "message",
            "status": "completed",
            "id": "msg_e",
            "content": [part],
            "role": "assistant",
        }
        events.append({"type": "response.output_item.done", "item": item})
        output.append(item)
    for n in range(calls):
        item = {
            "type": "function_call",
            "status": "completed",
            "arguments": f'{{"city": "P{n}"}}',
            "call_id": f"fc_c{n}",
            "name": "get_weather",
        }
        events.append({"type": "response.output_item.done", "item": item})
        output.append(item)
    usage = {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42}
    events.append(
        {
            "type": "response.completed",
            "response": {
                "id": "resp_e",
                "object": "response",
                "created_at": 5,
                "status": "completed",
                "model": "engine-alias",
                "output": output,
                "usage": usage,
            },
            "timings": {"prompt_n": 30, "predicted_n": 12},
        }
    )
    return events


@pytest.mark.parametrize("calls", [1, 2])
def test_tool_calls_get_ids_and_their_arguments_done(calls: int) -> None:
    request = {"model": "gpt-client", "input": "weather?", "tools": [WEATHER]}

    _, mended = mend(engine_stream(text="Let me look.", calls=calls), request)

    done = check_stream(mended)
    final = sdk_stream(mended)
    assert final.output_text == "Let me look."
    got = [(o.type, o.call_id, o.arguments) for o in final.output if o.type == "function_call"]
    assert got == [("function_call", f"fc_c{n}", f'{{"city": "P{n}"}}') for n in range(calls)]
    assert [i["id"] for i in done.values() if i["type"] == "function_call"] == [
        f"fc_c{n}" for n in range(calls)
    ]
    # Each item's events name it by its index in the output.
    for event in mended:
        if event["type"] == "response.function_call_arguments.done":
            assert event["arguments"] == done[event["item_id"]]["arguments"]


def test_reasoning_gets_its_done_event_and_an_index_per_item() -> None:
    _, mended = mend(engine_stream(reasoning="thinking hard", text="Hi."), {"input": "hi"})

    done = check_stream(mended)
    assert [i["type"] for i in done.values()] == ["reasoning", "message"]
    [reasoning_done] = [e for e in mended if e["type"] == "response.reasoning_text.done"]
    assert reasoning_done["text"] == "thinking hard"
    deltas = [e for e in mended if e["type"] == "response.reasoning_text.delta"]
    assert {(e["output_index"], e["content_index"]) for e in deltas} == {(0, 0)}
    assert sdk_stream(mended).output_text == "Hi."


def test_events_already_whole_keep_their_values() -> None:
    """A newer engine that numbers its items: its indexes stand."""
    events = engine_stream(text="Hi.")
    events[2]["output_index"] = 0
    events[4]["content_index"] = 0
    _, mended = mend(events, {"input": "hi"})
    check_stream(mended)


def test_an_engine_error_mid_stream_becomes_an_error_event() -> None:
    stream = MendResponsesStream(model="m", request={}, created_at=CREATED)
    stream.feed(engine_stream(text="Hi.")[0])
    [event] = stream.feed({"error": {"code": 500, "message": "slot failed", "type": "server"}})
    assert event == {
        "type": "error",
        "code": "server_error",
        "message": "slot failed",
        "param": None,
        "sequence_number": 1,
    }


# -- the request ------------------------------------------------------------------------


def test_structured_output_reaches_the_engine_as_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = {
        "model": "gpt-client",
        "input": "hi",
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema}},
    }

    fitted = for_llama_cpp(body, "tiny")

    assert fitted is not None
    assert fitted["model"] == "tiny"
    assert fitted["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema},
    }
    assert fitted["text"] == body["text"]  # echoed back as the client sent it


def test_previous_response_id_never_reaches_the_engine() -> None:
    history = [{"type": "message", "role": "user", "content": "earlier"}]
    body = {"model": "tiny", "input": [*history], "previous_response_id": "resp_1"}
    assert for_llama_cpp(body, "tiny") == {"model": "tiny", "input": history}
    assert for_llama_cpp({"model": "tiny", "input": "hi"}, "tiny") is None


def test_a_malformed_text_format_is_the_clients_400() -> None:
    with pytest.raises(BadRequest, match=r"text\.format\.type"):
        for_llama_cpp({"model": "m", "input": "hi", "text": {"format": {"type": "xml"}}}, "m")


@pytest.mark.parametrize(
    ("body", "history", "found"),
    [
        ({"input": "hi", "tools": [WEATHER]}, [], None),
        (
            {"input": "hi", "tools": [WEATHER, {"type": "custom", "name": "apply_patch"}]},
            [],
            "custom",
        ),
        (
            {"input": "hi", "tools": [{"type": "namespace", "name": "ns", "tools": []}]},
            [],
            "namespace",
        ),
        ({"input": [{"role": "user", "content": "hi"}]}, [], None),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, [], "item_reference"),
        (
            {"input": "hi"},
            [{"type": "custom_tool_call", "call_id": "c", "input": "x"}],
            "custom_tool_call",
        ),
    ],
)
def test_what_the_engine_would_skip_or_refuse(
    body: dict[str, Any], history: list[dict[str, Any]], found: str | None
) -> None:
    assert unsupported_type(body, LLAMA_CPP_TYPES, history) == found
