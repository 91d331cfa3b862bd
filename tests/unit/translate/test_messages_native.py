"""Native Messages to and from a llama.cpp engine. Its stream with one content block
open at a time: a stream recorded from the embedded engine
(tests/fixtures/wire/llama_cpp/), and the block layouts its formatter gives thinking
and tool calls (which the tiny test model cannot produce), read by the anthropic SDK's
own stream accumulator. The request: text documents as text, no billing line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from wlm.translate.messages_native import MendMessagesStream, for_llama_cpp

from ._helpers import anthropic_sdk_message, events_of

LLAMA = Path(__file__).resolve().parents[2] / "fixtures" / "wire" / "llama_cpp"


def mended(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    mend = MendMessagesStream()
    out: list[dict[str, Any]] = []
    for event in events:
        fixed = mend.feed(event)
        out += [event] if fixed is None else fixed
    return out


def sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def check_blocks(events: list[dict[str, Any]]) -> list[str]:
    """One block open at a time, numbered from 0 in order; returns the block types."""
    kinds: list[str] = []
    open_index: int | None = None
    for event in events:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None, "a block started while another was open"
            assert event["index"] == len(kinds)
            open_index = event["index"]
            kinds.append(event["content_block"]["type"])
        elif kind == "content_block_delta":
            assert event["index"] == open_index, event
        elif kind == "content_block_stop":
            assert event["index"] == open_index, event
            open_index = None
        elif kind in ("message_delta", "message_stop"):
            assert open_index is None
    return kinds


def start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": fields}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


MESSAGE_START = {
    "type": "message_start",
    "message": {
        "id": "chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "tiny",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 0},
    },
}
END = [
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 20},
    },
    {"type": "message_stop"},
]


def test_a_recorded_stream_goes_through_untouched() -> None:
    raw = (LLAMA / "messages_stream_stop.response.sse").read_bytes()
    events = [data for _, data in events_of(raw)]
    mend = MendMessagesStream()
    assert all(mend.feed(event) is None for event in events)
    assert check_blocks(events) == ["text"]


def test_thinking_text_and_tool_calls_close_one_by_one() -> None:
    """The engine's layout: thinking 0, text 1, tools 2 and 3, all stopped at the end
    (the thinking block's empty signature too)."""
    engine = [
        MESSAGE_START,
        start(0, {"type": "thinking", "thinking": ""}),
        delta(0, type="thinking_delta", thinking="Weather? "),
        delta(0, type="thinking_delta", thinking="Use the tool."),
        start(1, {"type": "text", "text": ""}),
        delta(1, type="text_delta", text="Checking."),
        start(2, {"type": "tool_use", "id": "t1", "name": "get_weather"}),
        delta(2, type="input_json_delta", partial_json='{"city": "Paris"}'),
        start(3, {"type": "tool_use", "id": "t2", "name": "get_weather"}),
        delta(3, type="input_json_delta", partial_json='{"city": "Oslo"}'),
        delta(0, type="signature_delta", signature=""),
        stop(0),
        stop(1),
        stop(2),
        stop(3),
        *END,
    ]

    events = mended(engine)

    assert check_blocks(events) == ["thinking", "text", "tool_use", "tool_use"]
    message = anthropic_sdk_message(sse(events))
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[0].thinking == "Weather? Use the tool."
    assert message.content[0].signature == ""
    assert message.content[1].text == "Checking."
    assert [(b.id, b.input) for b in message.content[2:]] == [
        ("t1", {"city": "Paris"}),
        ("t2", {"city": "Oslo"}),
    ]
    assert message.stop_reason == "tool_use"


def test_text_after_a_tool_call_gets_a_block_of_its_own() -> None:
    """The engine numbers text 0 and the tool (0 + text started) 1; text that comes
    after the tool call would be sent to index 0, a block already closed."""
    engine = [
        MESSAGE_START,
        start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="First. "),
        start(1, {"type": "tool_use", "id": "t1", "name": "get_weather"}),
        delta(1, type="input_json_delta", partial_json="{}"),
        delta(0, type="text_delta", text="And after."),
        stop(0),
        stop(1),
        *END,
    ]

    events = mended(engine)

    assert check_blocks(events) == ["text", "tool_use", "text"]
    message = anthropic_sdk_message(sse(events))
    assert [getattr(b, "text", None) for b in message.content] == ["First. ", None, "And after."]


def test_blocks_left_open_close_before_the_message_ends() -> None:
    engine = [
        MESSAGE_START,
        start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hi"),
        *END,
    ]
    events = mended(engine)
    assert check_blocks(events) == ["text"]
    assert anthropic_sdk_message(sse(events)).content[0].text == "Hi"


def test_an_engine_error_mid_stream_becomes_anthropics_error_event() -> None:
    engine = [
        MESSAGE_START,
        start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hi"),
        {"error": {"code": 500, "message": "slot failed", "type": "server_error"}},
    ]
    events = mended(engine)
    assert events[-2] == stop(0)
    assert events[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "slot failed"},
    }


def test_plain_text_documents_reach_the_engine_as_text() -> None:
    text_doc = {
        "type": "document",
        "source": {"type": "text", "data": "notes", "media_type": "text/plain"},
    }
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
    }
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [text_doc, pdf, {"type": "text", "text": "read"}]},
            {"role": "assistant", "content": "ok"},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": [text_doc]}],
            },
        ],
    }

    fitted = for_llama_cpp(body)

    assert fitted is not None
    first, second, third = fitted["messages"]
    assert first["content"] == [
        {"type": "text", "text": "notes"},
        pdf,
        {"type": "text", "text": "read"},
    ]
    assert second is body["messages"][1]
    assert third["content"][0]["content"] == [{"type": "text", "text": "notes"}]
    assert body["messages"][0]["content"][0] is text_doc  # the client's body stays as it was
    assert for_llama_cpp({"model": "m", "messages": [{"role": "user", "content": "hi"}]}) is None


@pytest.mark.parametrize(
    ("system", "kept"),
    [
        (
            [
                {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=a1b2;"},
                {
                    "type": "text",
                    "text": "You are Claude Code.",
                    "cache_control": {"type": "ephemeral"},
                },
            ],
            [
                {
                    "type": "text",
                    "text": "You are Claude Code.",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        ),
        (
            "x-anthropic-billing-header: cc_version=2.1; cch=a1b2;\nYou are Claude Code.",
            "You are Claude Code.",
        ),
    ],
)
def test_claude_codes_billing_line_never_reaches_the_engine(system: Any, kept: Any) -> None:
    """Its hash changes per request: left in, the engine's prompt cache misses every turn."""
    fitted = for_llama_cpp({"model": "m", "system": system, "messages": []})
    assert fitted is not None and fitted["system"] == kept
    assert for_llama_cpp({"model": "m", "system": kept, "messages": []}) is None
