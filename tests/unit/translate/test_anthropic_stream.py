"""AnthropicStreamTranslator against recorded Anthropic streams and generated ones."""

from __future__ import annotations

import itertools
import json
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wlm.translate import AnthropicStreamTranslator, usage_from

from ._helpers import (
    RECORDED_STREAMS,
    anthropic_sdk_message,
    events_of,
    openai_sdk_completion,
    recorded_bytes,
    translate,
)

STREAM_IDS = [path.name for path in RECORDED_STREAMS]

# -- recorded streams, refereed by both official SDKs ---------------------------------


@pytest.mark.parametrize("path", RECORDED_STREAMS, ids=STREAM_IDS)
def test_openai_sdk_reads_what_anthropic_sdk_reads(path) -> None:
    raw = recorded_bytes(path)
    expected = anthropic_sdk_message(raw)
    translator, chunks = translate(events_of(raw))
    completion = openai_sdk_completion(chunks)

    message = completion.choices[0].message
    texts = [block.text for block in expected.content if block.type == "text"]
    # The first chunk carries content "" (as required), so no text reads as "".
    assert (message.content or "") == "".join(texts)
    tools = [block for block in expected.content if block.type == "tool_use"]
    assert [(c.id, c.function.name) for c in message.tool_calls or []] == [
        (t.id, t.name) for t in tools
    ]
    assert [json.loads(c.function.arguments) for c in message.tool_calls or []] == [
        t.input for t in tools
    ]
    thinking = "".join(b.thinking for b in expected.content if b.type == "thinking")
    assert (message.model_extra or {}).get("reasoning_content", "") == thinking
    assert (
        completion.choices[0].finish_reason
        == {"end_turn": "stop", "tool_use": "tool_calls"}[expected.stop_reason]
    )
    assert completion.usage.model_dump(exclude_none=True) == usage_from(expected.usage.model_dump())
    assert completion.id == f"chatcmpl-{expected.id}"
    assert completion.model == "claude"
    # What the adapter reads for telemetry agrees with what the client saw.
    assert translator.text == (message.content or "")
    assert translator.reasoning == thinking
    assert translator.tool_calls == [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.function.name, "arguments": c.function.arguments},
        }
        for c in message.tool_calls or []
    ]
    assert translator.done
    assert translator.error is None


@pytest.mark.parametrize("path", RECORDED_STREAMS, ids=STREAM_IDS)
def test_every_chunk_is_well_formed(path) -> None:
    _, chunks = translate(events_of(recorded_bytes(path)))
    first = chunks[0]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    ids = {chunk["id"] for chunk in chunks}
    assert len(ids) == 1
    assert ids.pop().startswith("chatcmpl-msg_")
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 1_700_000_000
        assert chunk["model"] == "claude"
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1
    assert finish[0]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])


def test_tool_index_counts_tool_calls_not_blocks() -> None:
    path = next(p for p in RECORDED_STREAMS if p.name == "anthropic_stream_text_then_tool_use.sse")
    _, chunks = translate(events_of(recorded_bytes(path)))
    fragments = [
        call
        for chunk in chunks
        if chunk["choices"]
        for call in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    # The tool is Anthropic block 1 (after a text block) but OpenAI tool call 0.
    assert {f["index"] for f in fragments} == {0}
    assert fragments[0] == {
        "index": 0,
        "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(f) == {"index", "function"} for f in fragments[1:])
    assert "".join(f["function"]["arguments"] for f in fragments) == '{"location": "Paris"}'


def test_tools_with_only_empty_input_get_empty_object_arguments() -> None:
    path = next(p for p in RECORDED_STREAMS if "parallel_tool_use_roundtrip.0" in p.name)
    translator, chunks = translate(events_of(recorded_bytes(path)))
    arguments: dict[int, str] = {}
    for chunk in chunks:
        for call in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []:
            arguments[call["index"]] = (
                arguments.get(call["index"], "") + call["function"]["arguments"]
            )
    assert arguments == {0: "{}", 1: "{}"}
    assert translator.finish_reason == "tool_calls"


def test_thinking_signature_is_kept_but_not_sent() -> None:
    path = next(p for p in RECORDED_STREAMS if "thinking" in p.name)
    translator, chunks = translate(events_of(recorded_bytes(path)))
    assert "EuYDCmMIDBgC" not in json.dumps(chunks)
    [block] = translator.thinking_blocks
    assert block["type"] == "thinking"
    assert block["signature"].startswith("EuYDCmMIDBgC")
    assert block["thinking"] == translator.reasoning
    assert translator.reasoning.startswith("The user wants two names")


@pytest.mark.parametrize("path", RECORDED_STREAMS, ids=STREAM_IDS)
def test_without_include_usage_no_usage_chunk_but_usage_is_tracked(path) -> None:
    translator, chunks = translate(events_of(recorded_bytes(path)), include_usage=False)
    assert all(chunk["choices"] for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)
    assert translator.usage is not None
    assert translator.usage["completion_tokens"] > 1


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_split_of_the_bytes_gives_the_same_chunks(data) -> None:
    path = data.draw(st.sampled_from(RECORDED_STREAMS))
    raw = recorded_bytes(path)
    reads = data.draw(st.lists(st.integers(0, len(raw)), max_size=40))
    _, whole = translate(events_of(raw))
    _, split = translate(events_of(raw, reads))
    assert split == whole


# -- generated streams -----------------------------------------------------------------


def _start(**usage: int) -> tuple[str, dict[str, Any]]:
    usage = {"input_tokens": 10, "output_tokens": 1, **usage}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": usage}
    return "message_start", {"type": "message_start", "message": message}


def _event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **fields}


def _tool_block(index: int, tool_id: str, fragments: list[str]) -> list[tuple[str, dict]]:
    start = {"type": "tool_use", "id": tool_id, "name": f"tool_{index}", "input": {}}
    events = [_event("content_block_start", index=index, content_block=start)]
    for fragment in fragments:
        delta = {"type": "input_json_delta", "partial_json": fragment}
        events.append(_event("content_block_delta", index=index, delta=delta))
    events.append(_event("content_block_stop", index=index))
    return events


def _text_block(index: int, text: str) -> list[tuple[str, dict]]:
    return [
        _event("content_block_start", index=index, content_block={"type": "text", "text": ""}),
        _event("content_block_delta", index=index, delta={"type": "text_delta", "text": text}),
        _event("content_block_stop", index=index),
    ]


def _end(stop_reason: str = "end_turn", **usage: int) -> list[tuple[str, dict]]:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    return [
        _event("message_delta", delta=delta, usage={"output_tokens": 20, **usage}),
        _event("message_stop"),
    ]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@st.composite
def split_json(draw) -> tuple[dict, list[str]]:
    value = draw(json_objects)
    text = json.dumps(
        value, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1]))
    )
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return value, [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=150, deadline=None)
@given(tools=st.lists(split_json(), min_size=1, max_size=3), leading_text=st.booleans())
def test_argument_fragments_concatenate_to_the_tool_input(tools, leading_text) -> None:
    events = [_start()]
    index = 0
    if leading_text:
        events += _text_block(0, "Let me look.")
        index = 1
    for k, (_, fragments) in enumerate(tools):
        events += _tool_block(index + k, f"toolu_{k}", fragments)
    events += _end("tool_use")
    translator, chunks = translate(events)

    arguments: dict[int, str] = {}
    for chunk in chunks:
        for call in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []:
            arguments[call["index"]] = (
                arguments.get(call["index"], "") + call["function"]["arguments"]
            )
    assert sorted(arguments) == list(range(len(tools)))
    for k, (value, _) in enumerate(tools):
        assert json.loads(arguments[k]) == value
        assert json.loads(translator.tool_calls[k]["function"]["arguments"]) == value
        assert translator.tool_calls[k]["id"] == f"toolu_{k}"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        ("a_reason_from_the_future", "stop"),
    ],
)
def test_stop_reason_becomes_finish_reason(stop_reason, finish_reason) -> None:
    translator, chunks = translate([_start(), *_text_block(0, "Hi"), *_end(stop_reason)])
    assert chunks[-2]["choices"][0]["finish_reason"] == finish_reason
    assert translator.finish_reason == finish_reason


def test_usage_is_cumulative_and_keeps_start_counts() -> None:
    events = [
        _start(input_tokens=100, cache_creation_input_tokens=20, cache_read_input_tokens=300),
        *_text_block(0, "Hi"),
        _event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 7}),
        _event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 9}),
        _event("message_stop"),
    ]
    translator, chunks = translate(events)
    expected = {
        "prompt_tokens": 420,
        "completion_tokens": 9,
        "total_tokens": 429,
        "prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 20},
    }
    assert translator.usage == expected
    assert chunks[-1] == {
        "id": "chatcmpl-msg_1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "claude",
        "choices": [],
        "usage": expected,
    }
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]) == 1


def test_message_delta_input_count_replaces_a_zero_from_message_start() -> None:
    # Some Anthropic-compatible gateways send input_tokens 0 first, the real value last.
    events = [_start(input_tokens=0), *_text_block(0, "Hi"), *_end(input_tokens=55)]
    translator, _ = translate(events)
    assert translator.usage["prompt_tokens"] == 55
    assert translator.usage["completion_tokens"] == 20


def test_thinking_token_count_becomes_reasoning_tokens() -> None:
    events = [
        _start(),
        *_text_block(0, "Hi"),
        _event(
            "message_delta",
            delta={"stop_reason": "end_turn"},
            usage={"output_tokens": 50, "output_tokens_details": {"thinking_tokens": 30}},
        ),
        _event("message_stop"),
    ]
    translator, _ = translate(events)
    assert translator.usage["completion_tokens_details"] == {"reasoning_tokens": 30}


def test_pings_and_unknown_events_send_nothing() -> None:
    translator = AnthropicStreamTranslator(model="m", created=0, include_usage=False)
    assert translator.feed("ping", {"type": "ping"}) == []
    translator.feed(*_start())
    assert translator.feed("ping", {"type": "ping"}) == []
    assert translator.feed("brand_new_event", {"type": "brand_new_event", "x": 1}) == []
    block = {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}}
    assert translator.feed(*_event("content_block_start", index=0, content_block=block)) == []
    delta = {"type": "input_json_delta", "partial_json": '{"q": "x"}'}
    assert translator.feed(*_event("content_block_delta", index=0, delta=delta)) == []
    assert translator.feed(*_event("content_block_stop", index=0)) == []
    assert translator.tool_calls == []
    assert not translator.done


def test_midstream_error_event_becomes_one_error_chunk_and_ends() -> None:
    translator = AnthropicStreamTranslator(model="m", created=0, include_usage=True)
    translator.feed(*_start())
    for event in _text_block(0, "Partial"):
        translator.feed(*event)
    error = {"type": "overloaded_error", "message": "Overloaded"}
    chunks = translator.feed("error", {"type": "error", "error": error})
    assert chunks == [
        {
            "error": {
                "message": "Overloaded",
                "type": "service_unavailable",
                "param": None,
                "code": "overloaded_error",
            }
        }
    ]
    assert translator.done
    assert translator.error == chunks[0]["error"]
    assert translator.text == "Partial"
    assert translator.feed(*_event("message_stop")) == []
    assert translator.finish() == []


def test_openai_sdk_raises_on_the_error_chunk() -> None:
    events = [
        _start(),
        *_text_block(0, "Partial"),
        ("error", {"type": "error", "error": {"type": "api_error", "message": "Internal"}}),
    ]
    _, chunks = translate(events)
    with pytest.raises(openai.APIError, match="Internal") as caught:
        openai_sdk_completion(chunks)
    assert caught.value.body == {
        "message": "Internal",
        "type": "server_error",
        "param": None,
        "code": "api_error",
    }


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([], id="empty"),
        pytest.param([_start(), *_text_block(0, "Hi")], id="no-message-delta"),
        pytest.param([_start(), *_text_block(0, "Hi"), _end()[0]], id="no-message-stop"),
    ],
)
def test_stream_ending_without_message_stop_ends_in_an_error(events) -> None:
    translator, chunks = translate(events)
    assert chunks[-1] == {
        "error": {
            "message": "The Anthropic stream ended before 'message_stop'.",
            "type": "upstream_error",
            "param": None,
            "code": "upstream_broken",
        }
    }
    assert translator.done
    assert translator.error == chunks[-1]["error"]


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(_text_block(0, "Hi"), id="content-before-message-start"),
        pytest.param([_start(), _event("content_block_stop", index=3)], id="unknown-block"),
        pytest.param([_start(), _event("content_block_start", index=0)], id="no-content-block"),
        pytest.param([_start(), _start()], id="two-message-starts"),
    ],
)
def test_malformed_streams_end_in_an_error(events) -> None:
    translator, chunks = translate(events)
    assert chunks[-1]["error"]["type"] == "upstream_error"
    assert chunks[-1]["error"]["message"].startswith("The Anthropic stream was malformed")
    assert translator.done


def test_a_payload_that_is_not_an_object_ends_in_an_error() -> None:
    translator = AnthropicStreamTranslator(model="m", created=0, include_usage=False)
    translator.feed(*_start())
    [chunk] = translator.feed("content_block_delta", ["not", "an", "object"])
    assert chunk["error"]["code"] == "upstream_broken"
    assert translator.done


def test_tool_input_sent_whole_in_block_start_is_not_lost() -> None:
    start = {"type": "tool_use", "id": "toolu_x", "name": "f", "input": {"a": [1, 2]}}
    events = [
        _start(),
        _event("content_block_start", index=0, content_block=start),
        _event("content_block_stop", index=0),
        *_end("tool_use"),
    ]
    translator, _ = translate(events)
    assert translator.tool_calls == [
        {"id": "toolu_x", "type": "function", "function": {"name": "f", "arguments": '{"a":[1,2]}'}}
    ]
