"""from_anthropic_response: message, finish reason and usage mapping."""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletion

from wlm.translate import from_anthropic_response


def message(content: list[dict], stop_reason: str = "end_turn", **usage: int) -> dict:
    return {
        "id": "msg_01ABC",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 34, **usage},
    }


def test_text_tool_use_and_thinking() -> None:
    body = message(
        [
            {"type": "thinking", "thinking": "Weather needs a tool.", "signature": "sig=="},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Checking "},
            {"type": "text", "text": "Paris."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris", "units": ["c"]},
            },
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
            {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {"q": "x"}},
        ],
        stop_reason="tool_use",
    )
    out = from_anthropic_response(body, model="my-claude", created=1234)
    assert out["id"] == "chatcmpl-msg_01ABC"
    assert out["object"] == "chat.completion"
    assert out["created"] == 1234
    assert out["model"] == "my-claude"
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Checking Paris.",
        "refusal": None,
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris","units":["c"]}'},
            },
            {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ],
        "reasoning_content": "Weather needs a tool.",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "Weather needs a tool.", "signature": "sig=="},
            {"type": "redacted_thinking", "data": "opaque"},
        ],
    }
    # The official SDK accepts it, and the arguments parse back to the input.
    parsed = ChatCompletion.model_validate(out)
    assert json.loads(parsed.choices[0].message.tool_calls[0].function.arguments) == {
        "city": "Paris",
        "units": ["c"],
    }


def test_no_text_means_null_content_and_no_extension_fields() -> None:
    out = from_anthropic_response(
        message([{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "tool_use"),
        model="m",
        created=0,
    )
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    ChatCompletion.model_validate(out)


def test_non_ascii_arguments_are_kept_verbatim() -> None:
    out = from_anthropic_response(
        message([{"type": "tool_use", "id": "t", "name": "f", "input": {"city": "Zürich 🦅"}}]),
        model="m",
        created=0,
    )
    assert (
        out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        == '{"city":"Zürich 🦅"}'
    )


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
        (None, "stop"),
    ],
)
def test_stop_reason_mapping(stop_reason, finish_reason) -> None:
    out = from_anthropic_response(
        message([{"type": "text", "text": "x"}], stop_reason), model="m", created=0
    )
    assert out["choices"][0]["finish_reason"] == finish_reason


def test_usage_counts_cache_tokens_as_prompt_tokens() -> None:
    body = message(
        [{"type": "text", "text": "x"}],
        input_tokens=10,
        cache_creation_input_tokens=200,
        cache_read_input_tokens=3000,
        output_tokens=40,
    )
    usage = from_anthropic_response(body, model="m", created=0)["usage"]
    assert usage == {
        "prompt_tokens": 3210,
        "completion_tokens": 40,
        "total_tokens": 3250,
        "prompt_tokens_details": {"cached_tokens": 3000, "cache_write_tokens": 200},
    }


def test_usage_reports_reasoning_tokens_only_when_anthropic_does() -> None:
    body = message([{"type": "text", "text": "x"}])
    body["usage"]["output_tokens_details"] = {"thinking_tokens": 30}
    usage = from_anthropic_response(body, model="m", created=0)["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 30}
    usage = from_anthropic_response(message([{"type": "text", "text": "x"}]), model="m", created=0)[
        "usage"
    ]
    assert "completion_tokens_details" not in usage
    assert usage["prompt_tokens"] == 12
