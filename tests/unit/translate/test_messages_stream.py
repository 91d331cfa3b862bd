"""ChatToMessagesStream: chat completion chunks in, Anthropic Messages events out.

Recorded OpenAI and OpenRouter streams are replayed and the result read by the
official ``anthropic`` SDK, which must assemble what the ``openai`` SDK assembles
from the original chunks. Generated streams check the Messages grammar.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wlm.translate.messages_stream import ChatToMessagesStream, encode_sse

from ._helpers import WIRE, anthropic_sdk_message, openai_sdk_completion

Event = tuple[str, dict[str, Any]]

RECORDED = sorted((WIRE / "extracted").glob("open*_stream_*.response.sse"))
RECORDED_OK = [p for p in RECORDED if "error" not in p.name]


def chunks_of(path: Path) -> list[dict[str, Any]]:
    """The chat chunks of a recorded SSE body (comments and ``[DONE]`` skipped)."""
    chunks = []
    for block in path.read_text().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    return chunks


def run(chunks: list[dict[str, Any]], **kw: Any) -> tuple[ChatToMessagesStream, list[Event]]:
    stream = ChatToMessagesStream(model=kw.get("model", "claude-x"), message_id="msg_test")
    events: list[Event] = []
    for chunk in chunks:
        events += stream.feed(chunk)
    events += stream.finish()
    return stream, events


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
        **extra,
    }


def usage_chunk(prompt: int = 10, completion: int = 5, cached: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"id": "chatcmpl-1", "choices": [], "usage": usage}


def call(
    index: int, id: str | None = None, name: str | None = None, args: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if id is not None:
        out["id"] = id
        out["type"] = "function"
    if name is not None:
        out["function"]["name"] = name
    return out


def names(events: list[Event]) -> list[str]:
    return [name for name, _ in events]


def check_grammar(events: list[Event]) -> None:
    """The Anthropic Messages stream grammar, as the SDKs and Claude Code rely on it."""
    assert names(events)[:2] == ["message_start", "ping"]
    assert names(events).count("message_start") == 1
    message = events[0][1]["message"]
    assert message["content"] == [] and message["stop_reason"] is None
    open_block: tuple[int, str] | None = None
    last_index = -1
    delta_kinds = {
        "text": "text_delta",
        "thinking": "thinking_delta",
        "tool_use": "input_json_delta",
    }
    for position, (name, data) in enumerate(events):
        assert data["type"] == name
        if name == "content_block_start":
            assert open_block is None, "a block started while another was open"
            assert data["index"] == last_index + 1, "block indexes must be 0, 1, 2..."
            last_index = data["index"]
            open_block = (data["index"], data["content_block"]["type"])
        elif name == "content_block_delta":
            assert open_block is not None and data["index"] == open_block[0]
            assert data["delta"]["type"] == delta_kinds[open_block[1]]
        elif name == "content_block_stop":
            assert open_block is not None and data["index"] == open_block[0]
            open_block = None
        elif name == "message_delta":
            assert open_block is None, "message_delta while a block is open"
            assert names(events)[position + 1 :] == ["message_stop"]
        elif name == "error":
            assert position == len(events) - 1, "nothing may follow an error"
        else:
            assert name in ("message_start", "ping", "message_stop")
    last = names(events)[-1]
    assert last in ("message_stop", "error")
    if last == "message_stop":
        assert open_block is None


def blocks(events: list[Event]) -> list[dict[str, Any]]:
    """Each content block with its concatenated deltas."""
    out: list[dict[str, Any]] = []
    for name, data in events:
        if name == "content_block_start":
            out.append({**data["content_block"], "deltas": []})
        elif name == "content_block_delta":
            delta = data["delta"]
            text = delta.get("text", delta.get("thinking", delta.get("partial_json")))
            out[-1]["deltas"].append(text)
    for block in out:
        block["joined"] = "".join(block.pop("deltas"))
    return out


def message_delta(events: list[Event]) -> dict[str, Any]:
    return next(data for name, data in events if name == "message_delta")


# -- recorded streams ---------------------------------------------------------------


@pytest.mark.parametrize("path", RECORDED_OK, ids=[p.name for p in RECORDED_OK])
def test_anthropic_sdk_reads_what_openai_sdk_reads(path: Path) -> None:
    chunks = chunks_of(path)
    expected = openai_sdk_completion(chunks).choices[0]
    stream, events = run(chunks)
    check_grammar(events)
    message = anthropic_sdk_message(encode_sse(events))

    assert message.id == "msg_test"
    assert message.model == "claude-x"
    texts = "".join(b.text for b in message.content if b.type == "text")
    assert texts == (expected.message.content or "")
    tools = [b for b in message.content if b.type == "tool_use"]
    assert [(t.id, t.name, t.input) for t in tools] == [
        (c.id, c.function.name, json.loads(c.function.arguments))
        for c in expected.message.tool_calls or []
    ]
    assert (
        message.stop_reason
        == {"stop": "end_turn", "tool_calls": "tool_use"}[expected.finish_reason]
    )
    # The usage the client sees is the upstream's, in Anthropic's terms.
    usage = chunks[-1]["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert message.usage.input_tokens == usage["prompt_tokens"] - cached
    assert message.usage.output_tokens == usage["completion_tokens"]
    assert message.usage.cache_read_input_tokens == cached
    assert stream.usage == usage
    assert stream.done and stream.error is None


def test_recorded_tool_call_events() -> None:
    path = WIRE / "extracted" / "openai_stream_tool_call_include_usage.0.response.sse"
    chunks = chunks_of(path)
    stream = ChatToMessagesStream(model="claude-x", message_id="msg_test")
    events: list[Event] = []
    for c in chunks[:-1]:
        events += stream.feed(c)
    # After finish_reason the turn is held open for the usage chunk that follows it.
    assert names(events)[-1] == "content_block_stop"
    assert not stream.done
    events += stream.feed(chunks[-1])
    assert stream.done
    assert stream.finish() == []
    assert names(events) == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * 11,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[2][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1EYWDzueHEp8OsB8jJSEp7WB",
        "name": "multiply",
        "input": {},
    }
    assert blocks(events)[0]["joined"] == '{"a":1231,"b":2331}'
    assert message_delta(events) == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 20, "input_tokens": 54, "cache_read_input_tokens": 0},
    }


def test_recorded_openrouter_midstream_error() -> None:
    path = WIRE / "extracted" / "openrouter_stream_midstream_error.0.response.sse"
    stream, events = run(chunks_of(path))
    check_grammar(events)
    assert blocks(events)[0]["type"] == "thinking"
    assert blocks(events)[0]["joined"] == "We need to respond to a greeting. The user"
    assert events[-1] == (
        "error",
        {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "Token limit reached"},
        },
    )
    assert stream.error == events[-1][1]
    assert stream.usage is not None and stream.usage["completion_tokens"] == 10
    with pytest.raises(anthropic.APIStatusError, match="Token limit reached"):
        anthropic_sdk_message(encode_sse(events))


def test_recorded_openrouter_usage_with_cache_write() -> None:
    path = WIRE / "extracted" / "openrouter_stream_usage_cost.0.response.sse"
    _, events = run(chunks_of(path))
    assert message_delta(events)["usage"] == {
        "output_tokens": 5,
        "input_tokens": 254,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }


# -- blocks -------------------------------------------------------------------------


def test_the_chunk_that_switches_block_kind_is_not_dropped() -> None:
    _, events = run(
        [
            chunk({"role": "assistant", "content": None}),
            chunk({"reasoning_content": "Think."}),
            chunk({"reasoning_content": " More.", "content": "Answer"}),
            chunk({"content": " done.", "tool_calls": [call(0, "call_1", "f", '{"a":1}')]}),
            chunk({}, "tool_calls"),
            usage_chunk(),
        ]
    )
    check_grammar(events)
    assert [(b["type"], b["joined"]) for b in blocks(events)] == [
        ("thinking", "Think. More."),
        ("text", "Answer done."),
        ("tool_use", '{"a":1}'),
    ]
    # The thinking block carries the empty signature a chat backend can give, and no
    # signature_delta follows.
    assert events[2][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert all(d[1].get("delta", {}).get("type") != "signature_delta" for d in events)


def test_openrouter_reasoning_field_is_thinking() -> None:
    _, events = run([chunk({"reasoning": "Hmm", "content": ""}), chunk({}, "stop")])
    assert [(b["type"], b["joined"]) for b in blocks(events)] == [("thinking", "Hmm")]


def test_empty_content_opens_no_block() -> None:
    _, events = run([chunk({"role": "assistant", "content": ""}), chunk({}, "stop")])
    check_grammar(events)
    assert blocks(events) == []
    assert message_delta(events)["delta"]["stop_reason"] == "end_turn"


def test_text_after_a_tool_call_gets_the_next_index() -> None:
    _, events = run(
        [
            chunk({"tool_calls": [call(0, "call_1", "f", "{}")]}),
            chunk({"content": "and text"}),
            chunk({}, "tool_calls"),
        ]
    )
    check_grammar(events)
    assert [(b["type"], b["joined"]) for b in blocks(events)] == [
        ("tool_use", "{}"),
        ("text", "and text"),
    ]


# -- parallel tool calls -------------------------------------------------------------


def tool_blocks(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(b["id"], b["name"], b["joined"]) for b in blocks(events) if b["type"] == "tool_use"]


def test_several_calls_in_one_chunk_with_all_arguments() -> None:
    _, events = run(
        [
            chunk(
                {
                    "tool_calls": [
                        call(0, "call_a", "f", '{"x":1}'),
                        call(1, "call_b", "g", '{"y":2}'),
                    ]
                }
            ),
            chunk({}, "tool_calls"),
        ]
    )
    check_grammar(events)
    assert tool_blocks(events) == [("call_a", "f", '{"x":1}'), ("call_b", "g", '{"y":2}')]


def test_headers_first_then_arguments_at_the_end() -> None:
    _, events = run(
        [
            chunk({"tool_calls": [call(0, "call_a", "f"), call(1, "call_b", "g")]}),
            chunk({"tool_calls": [call(0, args='{"x":')]}),
            chunk({"tool_calls": [call(0, args="1}")]}),
            chunk({"tool_calls": [call(1, args='{"y":2}')]}),
            chunk({}, "tool_calls"),
        ]
    )
    check_grammar(events)
    assert tool_blocks(events) == [("call_a", "f", '{"x":1}'), ("call_b", "g", '{"y":2}')]


def test_a_call_without_arguments_still_gets_its_block() -> None:
    _, events = run(
        [
            chunk({"tool_calls": [call(0, "call_a", "f", '{"x":1}'), call(1, "call_b", "now")]}),
            chunk({}, "tool_calls"),
        ]
    )
    check_grammar(events)
    assert tool_blocks(events) == [("call_a", "f", '{"x":1}'), ("call_b", "now", "")]
    message = anthropic_sdk_message(encode_sse(events))
    assert [b.input for b in message.content] == [{"x": 1}, {}]


def test_reused_index_with_a_new_id_is_a_new_call() -> None:
    _, events = run(
        [
            chunk({"tool_calls": [call(0, "call_a", "f", "{}")]}),
            chunk({"tool_calls": [call(0, "call_b", "g", '{"z":3}')]}),
            chunk({}, "tool_calls"),
        ]
    )
    check_grammar(events)
    assert tool_blocks(events) == [("call_a", "f", "{}"), ("call_b", "g", '{"z":3}')]


def test_calls_without_index() -> None:
    def bare(**fields: Any) -> dict[str, Any]:
        out = call(0, **fields)
        del out["index"]
        return out

    _, events = run(
        [
            chunk({"tool_calls": [bare(id="call_a", name="f", args='{"a"')]}),
            chunk({"tool_calls": [bare(args=":1}")]}),
            chunk({"tool_calls": [bare(id="call_b", name="g", args="{}")]}),
            chunk({}, "tool_calls"),
        ]
    )
    check_grammar(events)
    assert tool_blocks(events) == [("call_a", "f", '{"a":1}'), ("call_b", "g", "{}")]


def test_interleaved_arguments_end_in_an_error_not_in_wrong_arguments() -> None:
    stream, events = run(
        [
            chunk({"tool_calls": [call(0, "call_a", "f", '{"x":')]}),
            chunk({"tool_calls": [call(1, "call_b", "g", '{"y":')]}),
            chunk({"tool_calls": [call(0, args="1}")]}),
            chunk({}, "tool_calls"),
        ]
    )
    check_grammar(events)
    assert events[-1][0] == "error"
    assert stream.error is not None and "interleaved" in stream.error["error"]["message"]


def test_missing_id_gets_one_made_from_the_message_id() -> None:
    _, events = run(
        [chunk({"tool_calls": [call(0, name="f", args="{}")]}), chunk({}, "tool_calls")]
    )
    assert tool_blocks(events) == [("toolu_msg_test_0", "f", "{}")]


# -- the end of the turn -------------------------------------------------------------


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("something_new", "end_turn"),
    ],
)
def test_stop_reasons(finish: str, stop_reason: str) -> None:
    stream, events = run([chunk({"content": "x"}), chunk({}, finish), usage_chunk()])
    assert message_delta(events)["delta"] == {"stop_reason": stop_reason, "stop_sequence": None}
    assert stream.stop_reason == stop_reason


def test_tool_calls_ending_with_stop_are_tool_use() -> None:
    # Some backends end a tool-calling turn with "stop"; the client must still run them.
    _, events = run([chunk({"tool_calls": [call(0, "c", "f", "{}")]}), chunk({}, "stop")])
    assert message_delta(events)["delta"]["stop_reason"] == "tool_use"


def test_message_delta_waits_for_the_usage_chunk() -> None:
    stream = ChatToMessagesStream(model="m", message_id="msg_1")
    stream.feed(chunk({"content": "Hi"}))
    held = stream.feed(chunk({}, "stop"))
    assert names(held) == ["content_block_stop"]
    assert not stream.done
    tail = stream.feed(usage_chunk(prompt=100, completion=7, cached=60))
    assert names(tail) == ["message_delta", "message_stop"]
    assert tail[0][1]["usage"] == {
        "output_tokens": 7,
        "input_tokens": 40,
        "cache_read_input_tokens": 60,
    }
    assert stream.usage == usage_chunk(prompt=100, completion=7, cached=60)["usage"]
    assert stream.feed(chunk({"content": "late"})) == []


def test_usage_in_the_finish_chunk_ends_the_turn_at_once() -> None:
    stream = ChatToMessagesStream(model="m", message_id="msg_1")
    stream.feed(chunk({"content": "Hi"}))
    last = stream.feed(chunk({}, "stop", usage={"prompt_tokens": 3, "completion_tokens": 1}))
    assert names(last) == ["content_block_stop", "message_delta", "message_stop"]
    assert stream.done


def test_no_usage_chunk_finish_sends_the_turn_end() -> None:
    # llama.cpp without include_usage: no usage chunk; output_tokens must still be a number.
    stream = ChatToMessagesStream(model="m", message_id="msg_1")
    stream.feed(chunk({"content": "Hi"}))
    stream.feed(chunk({}, "stop"))
    tail = stream.finish()
    assert names(tail) == ["message_delta", "message_stop"]
    assert tail[0][1]["usage"] == {"output_tokens": 0}
    assert stream.usage is None
    assert stream.error is None


def test_a_stream_that_breaks_off_ends_in_an_error_event() -> None:
    stream, events = run([chunk({"content": "Hel"})])
    check_grammar(events)
    assert names(events)[-1] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert stream.error == events[-1][1]
    assert stream.done
    with pytest.raises(anthropic.APIStatusError):
        anthropic_sdk_message(encode_sse(events))


def test_an_empty_stream_is_an_error_too() -> None:
    stream, events = run([])
    assert names(events) == ["error"]
    assert stream.error is not None


def test_upstream_error_chunk_first_sends_only_the_error() -> None:
    stream, events = run([{"error": {"message": "Rate limited", "code": 429}}])
    assert events == [
        (
            "error",
            {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited"}},
        )
    ]
    assert stream.done


def test_openai_error_chunk_mid_stream() -> None:
    _, events = run(
        [
            chunk({"content": "Hi"}),
            {"error": {"message": "boom", "type": "server_error", "code": None}},
        ]
    )
    check_grammar(events)
    assert events[-1][1] == {"type": "error", "error": {"type": "api_error", "message": "boom"}}


def test_openrouter_finish_reason_error_is_an_error() -> None:
    _, events = run([chunk({"content": "Hi"}), chunk({}, "error")])
    assert names(events)[-1] == "error"


def test_message_start_shape() -> None:
    _, events = run([chunk({"content": "Hi"}), chunk({}, "stop")], model="claude-sonnet-4-5")
    assert events[0] == (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        },
    )
    assert events[1] == ("ping", {"type": "ping"})


def test_encode_sse() -> None:
    raw = encode_sse([("ping", {"type": "ping"}), ("message_stop", {"type": "message_stop"})])
    assert raw == (
        b'event: ping\ndata: {"type":"ping"}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert encode_sse([]) == b""


# -- generated streams -----------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_arguments = st.one_of(
    st.just(""), st.dictionaries(_text, _json_values, max_size=4).map(json.dumps)
)


@st.composite
def _split(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=5)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def chat_streams(draw: st.DrawFn) -> dict[str, Any]:
    """A chat stream: segments of reasoning, text and parallel tool calls, a finish
    reason (or none: a broken stream) and usage in its own chunk, in the finish
    chunk, or not at all."""
    chunks: list[dict[str, Any]] = [
        chunk({"role": "assistant", "content": draw(st.sampled_from(["", None]))})
    ]
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[str, tuple[str, str]] = {}
    next_index = 0
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "reasoning", "tools"]))
        if kind in ("text", "reasoning"):
            key = "content" if kind == "text" else "reasoning_content"
            for piece in draw(_split(draw(_text))):
                (text if kind == "text" else reasoning).append(piece)
                chunks.append(chunk({key: piece}))
            continue
        group = []
        for _ in range(draw(st.integers(1, 3))):
            call_id = f"call_{len(calls)}"
            name = draw(st.sampled_from(["Bash", "Read", "Write"]))
            arguments = draw(_arguments)
            calls[call_id] = (name, arguments)
            index = 0 if draw(st.booleans()) and draw(st.booleans()) else next_index
            next_index = max(next_index, index) + 1
            group.append((index, call_id, name, draw(_split(arguments))))
        mode = draw(st.sampled_from(["sequential", "headers_first", "one_chunk"]))
        if mode == "one_chunk":
            chunks.append(
                chunk({"tool_calls": [call(i, c, n, "".join(p)) for i, c, n, p in group]})
            )
        elif mode == "headers_first":
            # Reusing an index is only unambiguous when each call is whole before the next.
            group = [(next_index + k, c, n, p) for k, (_, c, n, p) in enumerate(group)]
            next_index += len(group)
            chunks.append(chunk({"tool_calls": [call(i, c, n) for i, c, n, _ in group]}))
            for i, _, _, pieces in group:
                chunks.extend(chunk({"tool_calls": [call(i, args=p)]}) for p in pieces)
        else:
            for i, c, n, pieces in group:
                chunks.append(chunk({"tool_calls": [call(i, c, n, pieces[0])]}))
                chunks.extend(chunk({"tool_calls": [call(i, args=p)]}) for p in pieces[1:])
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter", None]))
    usage_mode = draw(st.sampled_from(["chunk", "finish", "none"]))
    usage = {
        "prompt_tokens": 50,
        "completion_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": 20},
    }
    if finish is not None:
        extra = {"usage": usage} if usage_mode == "finish" else {"usage": None}
        chunks.append(chunk({}, finish, **extra))
        if usage_mode == "chunk":
            chunks.append({"choices": [], "usage": usage})
    return {
        "chunks": chunks,
        "text": "".join(text),
        "reasoning": "".join(reasoning),
        "calls": calls,
        "finish": finish,
        "usage": usage if finish is not None and usage_mode != "none" else None,
    }


@settings(max_examples=300, deadline=None)
@given(chat_streams())
def test_generated_streams_keep_the_messages_grammar(case: dict[str, Any]) -> None:
    stream, events = run(case["chunks"])
    check_grammar(events)
    found = blocks(events)
    assert "".join(b["joined"] for b in found if b["type"] == "text") == case["text"]
    assert "".join(b["joined"] for b in found if b["type"] == "thinking") == case["reasoning"]
    tools = {b["id"]: (b["name"], b["joined"]) for b in found if b["type"] == "tool_use"}
    assert all(b["joined"] for b in found if b["type"] != "tool_use"), "no empty text blocks"
    assert stream.done
    if case["finish"] is None:
        # Broken off: what was streamed is right, and the client is told it broke.
        assert tools.items() <= case["calls"].items()
        assert names(events)[-1] == "error"
        assert stream.error is not None
        return
    assert tools == case["calls"]
    assert stream.error is None
    expected = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
    reason = expected.get(case["finish"], "refusal")
    if case["calls"] and reason == "end_turn":
        reason = "tool_use"
    final = message_delta(events)
    assert final["delta"]["stop_reason"] == reason
    if case["usage"] is None:
        assert final["usage"] == {"output_tokens": 0}
    else:
        assert final["usage"] == {
            "output_tokens": 9,
            "input_tokens": 30,
            "cache_read_input_tokens": 20,
        }
