"""chat_to_messages_response and the usage conversions, refereed by the anthropic SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from wlm.errors import UpstreamBroken
from wlm.translate.messages_response import (
    chat_to_messages_response,
    chat_usage_of_messages,
    messages_usage_of_chat,
)


def completion(
    message: dict[str, Any], finish: str | None = "stop", **extra: Any
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        **extra,
    }


def convert(body: dict[str, Any]) -> dict[str, Any]:
    out = chat_to_messages_response(body, model="claude-x", message_id="msg_1")
    anthropic.types.Message.model_validate(out)  # what an Anthropic client parses
    return out


def test_text_answer() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    out = convert(completion({"content": "Hello."}, usage=usage))
    assert out == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "Hello."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }


def test_reasoning_text_and_tool_calls_in_order() -> None:
    out = convert(
        completion(
            {
                "content": "Let me check.",
                "reasoning_content": "The user wants a listing.",
                "tool_calls": [
                    {
                        "id": "call_abc",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
                    },
                    {
                        "id": "call_def",
                        "type": "function",
                        "function": {"name": "Now", "arguments": ""},
                    },
                ],
            },
            "tool_calls",
        )
    )
    assert out["content"] == [
        {"type": "thinking", "thinking": "The user wants a listing.", "signature": ""},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_abc", "name": "Bash", "input": {"command": "ls"}},
        {"type": "tool_use", "id": "call_def", "name": "Now", "input": {}},
    ]
    assert out["stop_reason"] == "tool_use"


def test_openrouter_reasoning_field() -> None:
    out = convert(completion({"content": "Hi", "reasoning": "Greeting."}))
    assert out["content"][0] == {"type": "thinking", "thinking": "Greeting.", "signature": ""}


def test_arguments_that_are_not_an_object_are_not_lost() -> None:
    out = convert(
        completion(
            {
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "g", "arguments": "[1, 2]"},
                    },
                    {
                        "id": "c3",
                        "type": "function",
                        "function": {"name": "h", "arguments": '"{\\"x\\": 1}"'},
                    },
                ],
            },
            "tool_calls",
        )
    )
    kinds = [(b["type"], b.get("input")) for b in out["content"]]
    assert kinds == [
        ("text", None),
        ("tool_use", {}),
        ("text", None),
        ("tool_use", {}),
        ("tool_use", {"x": 1}),  # a JSON object encoded twice is unwrapped
    ]
    assert '{"a": 1' in out["content"][0]["text"] and "c1" in out["content"][0]["text"]
    assert "[1, 2]" in out["content"][2]["text"]


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons(finish: str | None, stop_reason: str) -> None:
    out = convert(completion({"content": "x"}, finish))
    assert out["stop_reason"] == stop_reason
    assert out["stop_sequence"] is None


def test_tool_calls_with_finish_stop_are_tool_use() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert convert(completion({"tool_calls": [call]}, "stop"))["stop_reason"] == "tool_use"


def test_refusal() -> None:
    out = convert(completion({"content": None, "refusal": "I can't help with that."}))
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"


def test_cached_and_written_prompt_tokens() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 800, "cache_write_tokens": 150},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }
    assert convert(completion({"content": "x"}, usage=usage))["usage"] == {
        "input_tokens": 50,
        "output_tokens": 50,
        "cache_read_input_tokens": 800,
        "cache_creation_input_tokens": 150,
    }


def test_unknown_usage_is_zero_only_where_anthropic_requires_a_number() -> None:
    assert convert(completion({"content": "x"}))["usage"] == {"input_tokens": 0, "output_tokens": 0}


@pytest.mark.parametrize("body", [{}, {"choices": []}, {"choices": [{"message": None}]}])
def test_no_choice_is_a_broken_upstream(body: dict[str, Any]) -> None:
    with pytest.raises(UpstreamBroken):
        chat_to_messages_response(body, model="m", message_id="msg_1")


def test_messages_usage_of_chat_round_trips_through_chat_usage_of_messages() -> None:
    chat = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "prompt_tokens_details": {"cached_tokens": 800, "cache_write_tokens": 150},
    }
    assert chat_usage_of_messages(messages_usage_of_chat(chat)) == chat


def test_chat_usage_of_messages_for_telemetry() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 40,
        "cache_read_input_tokens": 500,
        "cache_creation_input_tokens": 90,
        "output_tokens_details": {"thinking_tokens": 25},
    }
    assert chat_usage_of_messages(usage) == {
        "prompt_tokens": 600,
        "completion_tokens": 40,
        "total_tokens": 640,
        "prompt_tokens_details": {"cached_tokens": 500, "cache_write_tokens": 90},
        "completion_tokens_details": {"reasoning_tokens": 25},
    }


def test_chat_usage_of_messages_reports_no_made_up_cache_counts() -> None:
    # llama.cpp's Anthropic endpoint sends only input and output tokens.
    assert chat_usage_of_messages({"input_tokens": 7, "output_tokens": 3}) == {
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
    }
    assert chat_usage_of_messages(
        {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": None}
    ) == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
