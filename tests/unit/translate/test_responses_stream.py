"""ChatToResponsesStream and encode_sse: the Responses stream a
client such as Codex or the openai SDK reads when the backend speaks chat."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wlm.sse import SSEParser
from wlm.translate.responses_request import ToolNames, responses_to_chat_request
from wlm.translate.responses_stream import (
    ChatToResponsesStream,
    encode_sse,
    stream_error,
)

WIRE = Path(__file__).resolve().parents[2] / "fixtures" / "wire"
RECORDED = sorted(
    [
        *(WIRE / "extracted").glob("openai_stream_*.sse"),
        *(WIRE / "extracted").glob("openrouter_stream_*.sse"),
    ]
)
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 7,
    "total_tokens": 18,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 2},
}


# -- helpers ----------------------------------------------------------------------------


def minting() -> Callable[[str], str]:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter)}"


def translator(tool_names: ToolNames | None = None, **kwargs: Any) -> ChatToResponsesStream:
    return ChatToResponsesStream(
        model="gpt-x",
        response_id="resp_1",
        created_at=1_700_000_000,
        tool_names=tool_names or ToolNames(),
        ids=minting(),
        **kwargs,
    )


def run(
    chunks: list[dict[str, Any]], tool_names: ToolNames | None = None, **kwargs: Any
) -> tuple[ChatToResponsesStream, list[dict[str, Any]]]:
    stream = translator(tool_names, **kwargs)
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        events += stream.feed(chunk)
    events += stream.finish()
    return stream, events


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": choices,
        **extra,
    }


def call_delta(
    index: int, arguments: str, call_id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call["id"] = call_id
        call["type"] = "function"
        call["function"]["name"] = name
    return call


def recorded_chunks(path: Path) -> list[dict[str, Any]]:
    parser = SSEParser()
    events = [*parser.feed(path.read_bytes()), *parser.finish()]
    return [json.loads(e.data) for e in events if e.data and e.data != "[DONE]"]


def check_grammar(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assert the Responses stream grammar; return the items in order of their done."""
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] in TERMINAL for e in events].count(True) == 1
    assert events[-1]["type"] in TERMINAL
    for lifecycle in events[:2]:
        assert lifecycle["response"]["status"] == "in_progress"
        assert lifecycle["response"]["output"] == []
    open_item: dict[str, Any] | None = None
    added = 0
    done: list[dict[str, Any]] = []
    parts_open: set[int] = set()
    for event in events[2:-1]:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert open_item is None, "one item open at a time"
            assert event["output_index"] == added
            open_item = event["item"]
            added += 1
            parts_open = set()
            continue
        assert open_item is not None, f"{kind} outside an item"
        if kind == "response.output_item.done":
            assert event["output_index"] == added - 1
            assert event["item"]["id"] == open_item["id"]
            assert event["item"]["type"] == open_item["type"]
            assert not parts_open
            done.append(event["item"])
            open_item = None
            continue
        assert event["item_id"] == open_item["id"]
        assert event["output_index"] == added - 1
        if kind == "response.content_part.added":
            parts_open.add(event["content_index"])
        elif kind == "response.content_part.done":
            parts_open.remove(event["content_index"])
        elif "content_index" in event:
            assert event["content_index"] in parts_open
    final = events[-1]["response"]
    if final["status"] != "failed":
        assert open_item is None
        assert final["output"] == done
    else:
        assert final["output"] == done
        assert set(final["error"]) == {"code", "message"}
    return done


def text_of(events: list[dict[str, Any]], kind: str) -> dict[str, str]:
    """Concatenated deltas of one event type, per item id."""
    out: dict[str, str] = {}
    for event in events:
        if event["type"] == kind:
            out[event["item_id"]] = out.get(event["item_id"], "") + event["delta"]
    return out


def _client_for(raw: bytes) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    return openai.OpenAI(
        api_key="test",
        base_url="http://gateway.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


def sdk_final_response(events: list[dict[str, Any]]) -> Any:
    """The response the openai SDK's own stream accumulator builds from our SSE bytes."""
    client = _client_for(encode_sse(events))
    with client.responses.stream(model="gpt-x", input="hi") as stream:
        for _ in stream:
            pass
        return stream.get_final_response()


# -- recorded chat streams --------------------------------------------------------------


@pytest.mark.parametrize("path", RECORDED, ids=[p.name for p in RECORDED])
def test_recorded_streams_translate_to_a_valid_responses_stream(path: Path) -> None:
    chunks = recorded_chunks(path)
    stream, events = run(chunks)
    done = check_grammar(events)
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    text = "".join(d.get("content") or "" for d in deltas)
    reasoning = "".join(d.get("reasoning") or d.get("reasoning_content") or "" for d in deltas)
    arguments = "".join(
        tc["function"].get("arguments") or "" for d in deltas for tc in d.get("tool_calls") or []
    )
    assert "".join(text_of(events, "response.output_text.delta").values()) == text
    assert "".join(text_of(events, "response.reasoning_summary_text.delta").values()) == reasoning
    assert "".join(text_of(events, "response.function_call_arguments.delta").values()) == arguments
    errors = [c["error"] for c in chunks if c.get("error")]
    if errors:
        assert events[-1]["type"] == "response.failed"
        assert stream.error == stream_error(errors[0])
    else:
        assert events[-1]["type"] == "response.completed"
        usage = next(c["usage"] for c in chunks if c.get("usage"))
        assert stream.usage == usage
        assert events[-1]["response"]["usage"]["input_tokens"] == usage["prompt_tokens"]
        assert events[-1]["response"]["usage"]["output_tokens"] == usage["completion_tokens"]
        final = sdk_final_response(events)
        assert final.output_text == text
        calls = [item for item in final.output if item.type == "function_call"]
        assert [c.call_id for c in calls] == [
            tc["id"] for d in deltas for tc in d.get("tool_calls") or [] if tc.get("id")
        ]
        assert "".join(c.arguments for c in calls) == arguments
    assert stream.done
    assert stream.response == events[-1]["response"]
    assert [item["type"] for item in done] == [item["type"] for item in stream.response["output"]]


def test_openrouter_midstream_error_keeps_its_message_and_usage() -> None:
    stream, events = run(
        recorded_chunks(WIRE / "extracted" / "openrouter_stream_midstream_error.0.response.sse")
    )
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {
        "code": "server_error",
        "message": "Token limit reached",
    }
    assert stream.error == {"code": "server_error", "message": "Token limit reached"}
    assert stream.usage is not None and stream.usage["completion_tokens"] == 10


# -- the openai SDK reads a mixed stream --------------------------------------------------


def test_sdk_reads_reasoning_text_parallel_calls_and_a_custom_tool() -> None:
    _, names, _ = responses_to_chat_request(
        {
            "input": "x",
            "tools": [
                {"type": "function", "name": "exec_command"},
                {
                    "type": "namespace",
                    "name": "agents",
                    "tools": [{"type": "function", "name": "spawn"}],
                },
                {"type": "custom", "name": "apply_patch"},
            ],
        }
    )
    patch_args = json.dumps({"input": "*** Begin Patch\n*** End Patch\n"})
    chunks = [
        chunk({"role": "assistant", "content": None}),
        chunk({"reasoning_content": "Let me "}),
        chunk({"reasoning_content": "look."}),
        chunk({"content": "Running "}),
        chunk({"content": "two things."}),
        chunk({"tool_calls": [call_delta(0, '{"cmd":', "call_a", "exec_command")]}),
        chunk(
            {"tool_calls": [call_delta(0, '"ls"}'), call_delta(1, "", "call_b", "agents__spawn")]}
        ),
        chunk({"tool_calls": [call_delta(1, '{"task":"t"}')]}),
        chunk({"tool_calls": [call_delta(2, patch_args[:10], "call_c", "apply_patch")]}),
        chunk({"tool_calls": [call_delta(2, patch_args[10:])]}),
        chunk({}, finish="tool_calls"),
        chunk(usage=USAGE),
    ]
    stream, events = run(chunks, names)
    done = check_grammar(events)
    assert [item["type"] for item in done] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
        "custom_tool_call",
    ]
    final = sdk_final_response(events)
    assert final.status == "completed"
    assert final.output_text == "Running two things."
    assert final.output[0].summary[0].text == "Let me look."
    calls = [(c.call_id, c.name, c.namespace, c.arguments) for c in final.output[2:4]]
    assert calls == [
        ("call_a", "exec_command", None, '{"cmd":"ls"}'),
        ("call_b", "spawn", "agents", '{"task":"t"}'),
    ]
    custom = final.output[4]
    assert (custom.call_id, custom.name, custom.input) == (
        "call_c",
        "apply_patch",
        "*** Begin Patch\n*** End Patch\n",
    )
    assert final.usage.input_tokens == 11
    assert final.usage.input_tokens_details.cached_tokens == 4
    assert final.usage.output_tokens_details.reasoning_tokens == 2
    # Custom input is sent whole (it is JSON-wrapped on the chat side).
    assert text_of(events, "response.custom_tool_call_input.delta") == {custom.id: custom.input}
    assert stream.response is not None and stream.response["output"] == done


# -- specific behaviours ----------------------------------------------------------------


def test_completed_waits_for_the_usage_chunk_after_the_finish() -> None:
    stream = translator()
    stream.feed(chunk({"role": "assistant", "content": "hi"}))
    at_finish = stream.feed(chunk({}, finish="stop"))
    assert [e["type"] for e in at_finish] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert not stream.done
    at_usage = stream.feed(chunk(usage=USAGE))
    assert [e["type"] for e in at_usage] == ["response.completed"]
    assert at_usage[0]["response"]["usage"]["total_tokens"] == 18
    assert stream.done and stream.usage == USAGE
    assert stream.feed(chunk({"content": "late"})) == [] and stream.finish() == []


def test_usage_in_the_finish_chunk_completes_at_once() -> None:
    stream = translator()
    stream.feed(chunk({"content": "hi"}))
    events = stream.feed(chunk({}, finish="stop", usage=USAGE))
    assert events[-1]["type"] == "response.completed"
    assert stream.done


def test_no_usage_chunk_completes_at_finish_with_null_usage() -> None:
    stream, events = run([chunk({"content": "hi"}), chunk({}, finish="stop")])
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"] is None
    assert stream.error is None


def test_length_ends_as_incomplete() -> None:
    _, events = run([chunk({"content": "cut"}), chunk({}, finish="length"), chunk(usage=USAGE)])
    check_grammar(events)
    response = events[-1]["response"]
    # OpenAI's own event for a cut-off answer: a client reading event types sees it.
    assert events[-1]["type"] == "response.incomplete"
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


def test_a_stream_that_stops_without_finish_reason_fails() -> None:
    stream, events = run([chunk({"content": "half an ans"})])
    check_grammar(events)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert stream.error is not None and stream.error["code"] == "server_error"
    # The SDK sees the failure with its message, and never a final response.
    with _client_for(encode_sse(events)).responses.stream(model="gpt-x", input="hi") as sdk:
        failed = [e for e in sdk if e.type == "response.failed"]
        assert [e.response.error.message for e in failed] == [stream.error["message"]]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            sdk.get_final_response()


def test_an_empty_stream_still_has_created_and_failed() -> None:
    _, events = run([])
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"message": "overloaded", "type": "server_error", "code": None}, "server_error"),
        ({"message": "too long", "code": "context_length_exceeded"}, "context_length_exceeded"),
        ({"message": "slow down", "code": 429}, "rate_limit_exceeded"),
        ("boom", "server_error"),
    ],
)
def test_error_chunk_fails_the_response(error: Any, code: str) -> None:
    stream, events = run([chunk({"content": "hi"}), {"error": error}])
    check_grammar(events)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == code
    assert stream.error is not None and stream.error["code"] == code
    assert stream.done


def test_arguments_that_come_only_at_the_end_and_calls_without_arguments() -> None:
    chunks = [
        chunk({"tool_calls": [call_delta(0, "", "c1", "f")]}),
        chunk({"tool_calls": [call_delta(1, "", "c2", "g")]}),
        chunk({"tool_calls": [call_delta(1, '{"all":"at once"}')]}),
        chunk({}, finish="tool_calls"),
    ]
    _, events = run(chunks)
    done = check_grammar(events)
    assert [(d["call_id"], d["arguments"]) for d in done] == [
        ("c1", "{}"),
        ("c2", '{"all":"at once"}'),
    ]


def test_several_calls_in_one_chunk_and_a_reused_index() -> None:
    chunks = [
        chunk(
            {
                "tool_calls": [
                    call_delta(0, '{"a":1}', "c1", "f"),
                    call_delta(0, '{"b":2}', "c2", "f"),
                ]
            }
        ),
        chunk({"tool_calls": [call_delta(0, "", "c3", "g")]}),
        chunk({"tool_calls": [call_delta(0, '{"c":3}')]}),
        chunk({}, finish="tool_calls"),
    ]
    _, events = run(chunks)
    done = check_grammar(events)
    assert [(d["call_id"], d["name"], d["arguments"]) for d in done] == [
        ("c1", "f", '{"a":1}'),
        ("c2", "f", '{"b":2}'),
        ("c3", "g", '{"c":3}'),
    ]


def test_arguments_for_a_call_already_closed_fail_rather_than_truncate() -> None:
    chunks = [
        chunk({"tool_calls": [call_delta(0, '{"a":', "c1", "f")]}),
        chunk({"tool_calls": [call_delta(1, "{}", "c2", "g")]}),
        chunk({"tool_calls": [call_delta(0, "1}")]}),
        chunk({}, finish="tool_calls"),
    ]
    stream, events = run(chunks)
    check_grammar(events)
    assert events[-1]["type"] == "response.failed"
    assert stream.error is not None and "tool call 0" in stream.error["message"]


def test_a_call_without_an_id_gets_one() -> None:
    chunks = [
        chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}),
        chunk({}, finish="tool_calls"),
    ]
    _, events = run(chunks)
    assert check_grammar(events)[0]["call_id"] == "call_2"


def test_text_after_a_call_is_a_new_message_item() -> None:
    chunks = [
        chunk({"content": "before"}),
        chunk({"tool_calls": [call_delta(0, "{}", "c1", "f")]}),
        chunk({"content": "after"}),
        chunk({}, finish="stop"),
    ]
    _, events = run(chunks)
    done = check_grammar(events)
    assert [d["type"] for d in done] == ["message", "function_call", "message"]
    assert done[2]["content"][0]["text"] == "after"


def test_refusal_streams_as_a_refusal_part() -> None:
    _, events = run(
        [chunk({"content": "Well"}), chunk({"refusal": "I can't"}), chunk({}, finish="stop")]
    )
    done = check_grammar(events)
    assert done[0]["content"] == [
        {"type": "output_text", "text": "Well", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "I can't"},
    ]
    assert [e["content_index"] for e in events if e["type"] == "response.refusal.delta"] == [1]


def test_other_choices_are_ignored() -> None:
    other = {"index": 1, "delta": {"content": "second choice"}, "finish_reason": None}
    first = chunk({"content": "first"})
    first["choices"].append(other)
    _, events = run([first, chunk({}, finish="stop")])
    assert list(text_of(events, "response.output_text.delta").values()) == ["first"]


def test_malformed_chunk_fails_the_stream() -> None:
    stream, events = run([chunk({"tool_calls": [{"index": "zero"}]})])
    assert events[-1]["type"] == "response.failed"
    assert stream.error is not None and "malformed" in stream.error["message"]


def test_request_fields_are_echoed_in_every_lifecycle_event() -> None:
    request = {"instructions": "Be brief.", "tools": [], "temperature": 0.1, "store": False}
    _, events = run([chunk({"content": "x"}), chunk({}, finish="stop")], request=request)
    for event in (events[0], events[1], events[-1]):
        assert event["response"]["instructions"] == "Be brief."
        assert event["response"]["temperature"] == 0.1
        assert event["response"]["id"] == "resp_1"
        assert event["response"]["model"] == "gpt-x"


def test_encode_sse_frames_each_event() -> None:
    raw = encode_sse([{"type": "response.created", "sequence_number": 0, "response": {"id": "r"}}])
    assert (
        raw
        == b'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"r"}}\n\n'
    )
    assert encode_sse([]) == b""


# -- generated chat streams ---------------------------------------------------------------

NAMES = ["f", "exec_command", "ns__g"]


@st.composite
def chat_streams(
    draw: st.DrawFn,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]], str | None, str]:
    """(chunks, expected items as (kind, text or arguments), finish_reason, usage mode)."""
    segments = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("text"), st.text(min_size=1, max_size=12)),
                st.tuples(st.just("reasoning"), st.text(min_size=1, max_size=12)),
                st.tuples(st.just("call"), st.text(max_size=16)),
            ),
            max_size=7,
        )
    )
    reuse_index = draw(st.booleans())
    chunks: list[dict[str, Any]] = [
        chunk({"role": "assistant", "content": draw(st.sampled_from(["", None]))})
    ]
    expected: list[tuple[str, str]] = []
    pending_calls: list[dict[str, Any]] = []  # tool call fragments to pack into chunks
    call_count = 0

    def flush_calls() -> None:
        while pending_calls:
            size = draw(st.integers(1, len(pending_calls)))
            chunks.append(chunk({"tool_calls": pending_calls[:size]}))
            del pending_calls[:size]

    for kind, text in segments:
        if kind == "call":
            index = 0 if reuse_index else call_count
            cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=4)))
            pieces = [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]
            name = draw(st.sampled_from(NAMES))
            pending_calls.append(call_delta(index, pieces[0], f"call_{call_count}", name))
            pending_calls.extend(call_delta(index, piece) for piece in pieces[1:])
            call_count += 1
            expected.append(("call", text))
            continue
        flush_calls()
        key = (
            "content"
            if kind == "text"
            else draw(st.sampled_from(["reasoning_content", "reasoning"]))
        )
        cuts = sorted(draw(st.sets(st.integers(1, len(text)), max_size=3)))
        for a, b in itertools.pairwise([0, *cuts, len(text)]):
            if a < b:
                chunks.append(chunk({key: text[a:b]}))
        if expected and expected[-1][0] == kind:
            expected[-1] = (kind, expected[-1][1] + text)
        else:
            expected.append((kind, text))
    flush_calls()
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", None]))
    usage_mode = draw(st.sampled_from(["trailing", "with_finish", "none"]))
    if finish is not None:
        if usage_mode == "with_finish":
            chunks.append(chunk({}, finish=finish, usage=USAGE))
        else:
            chunks.append(chunk({}, finish=finish))
            if usage_mode == "trailing":
                chunks.append(chunk(usage=USAGE))
    return chunks, expected, finish, usage_mode


@settings(max_examples=200, deadline=None)
@given(stream=chat_streams())
def test_any_chat_stream_gives_a_valid_responses_stream(
    stream: tuple[list[dict[str, Any]], list[tuple[str, str]], str | None, str],
) -> None:
    chunks, expected, finish, usage_mode = stream
    names = ToolNames((("ns__g", "g", "ns", "function"),))
    translated = translator(names)
    events: list[dict[str, Any]] = []
    for position, item in enumerate(chunks):
        fed = translated.feed(item)
        if position < len(chunks) - 1:  # nothing terminal before the last chunk
            assert not any(e["type"] in TERMINAL for e in fed)
        events += fed
    events += translated.finish()
    done = check_grammar(events)
    terminal = events[-1]
    if finish is None:
        assert terminal["type"] == "response.failed"
        return
    cut = finish in ("length", "content_filter")
    assert terminal["type"] == ("response.incomplete" if cut else "response.completed")
    response = terminal["response"]
    assert response["status"] == ("incomplete" if cut else "completed")
    assert (
        response["usage"] is None
        if usage_mode == "none"
        else response["usage"]["total_tokens"] == 18
    )
    got: list[tuple[str, str]] = []
    texts = text_of(events, "response.output_text.delta")
    thoughts = text_of(events, "response.reasoning_summary_text.delta")
    arguments = text_of(events, "response.function_call_arguments.delta")
    for item in done:
        if item["type"] == "message":
            assert texts[item["id"]] == item["content"][0]["text"]
            got.append(("text", texts[item["id"]]))
        elif item["type"] == "reasoning":
            assert thoughts[item["id"]] == item["summary"][0]["text"]
            got.append(("reasoning", thoughts[item["id"]]))
        else:
            assert arguments[item["id"]] == item["arguments"]
            got.append(("call", item["arguments"]))
            assert item["name"] in ("f", "exec_command", "g")
            assert ("namespace" in item) == (item["name"] == "g")
    assert got == [(kind, text or "{}" if kind == "call" else text) for kind, text in expected]
    calls = [item for item in done if item["type"] == "function_call"]
    assert [c["call_id"] for c in calls] == [f"call_{i}" for i in range(len(calls))]
