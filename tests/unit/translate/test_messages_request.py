"""messages_to_chat_request: Anthropic Messages requests as OpenAI chat requests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from wlm.errors import BadRequest
from wlm.translate.messages_request import messages_to_chat_request

AGENTS = Path(__file__).resolve().parents[2] / "fixtures" / "wire" / "agents"


def recorded_bodies(name: str) -> list[dict[str, Any]]:
    """The request bodies Claude Code sent, in order (``HEAD /`` has none)."""
    records = [json.loads(line) for line in (AGENTS / f"{name}.jsonl").read_text().splitlines()]
    return [record["body_json"] for record in records if "body_json" in record]


def convert(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 100}
    body.update(fields)
    return messages_to_chat_request(body)


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


# -- what Claude Code really sends ----------------------------------------------------


def test_claude_code_first_turn() -> None:
    body = recorded_bodies("claude_text")[0]
    chat = messages_to_chat_request(body)

    assert chat["model"] == "claude-sonnet-4-5"
    assert chat["max_tokens"] == 32000
    assert chat["stream"] is True
    assert chat["stream_options"] == {"include_usage": True}
    assert chat["reasoning_effort"] == "high"  # thinking budget 31999
    system, first = chat["messages"]
    assert system["role"] == "system"
    # The billing header (a per-request hash) is gone; the real prompt is there.
    assert "x-anthropic-billing-header" not in system["content"]
    assert system["content"].startswith("You are a Claude agent")
    assert "You are an interactive agent" in system["content"]
    # Four user text blocks (three reminders and the prompt) stay four parts, in order.
    assert first["role"] == "user"
    assert [p["type"] for p in first["content"]] == ["text"] * 4
    assert first["content"][-1] == {"type": "text", "text": "say hi"}
    # 24 custom tools, each a function with its schema; nothing Anthropic-only leaks.
    assert len(chat["tools"]) == 24
    bash = next(t for t in chat["tools"] if t["function"]["name"] == "Bash")
    assert bash["type"] == "function"
    assert bash["function"]["parameters"] == body["tools"][1]["input_schema"]
    assert bash["function"]["description"].startswith("Executes")
    for dropped in ("system", "thinking", "context_management", "metadata", "cache_control"):
        assert dropped not in chat
    assert "cache_control" not in json.dumps(chat)


def test_claude_code_tool_round_trip() -> None:
    body = recorded_bodies("claude_tool_use")[1]
    chat = messages_to_chat_request(body)
    *_, call, result = chat["messages"]
    assert call == {
        "role": "assistant",
        "content": "Running a command.",
        "tool_calls": [
            {
                "id": "toolu_e4e098eb3d9e43b495b55ffa",
                "type": "function",
                "function": {
                    "name": "Bash",
                    "arguments": '{"command":"echo hi-from-tool","description":"say hi"}',
                },
            }
        ],
    }
    assert result == {
        "role": "tool",
        "tool_call_id": "toolu_e4e098eb3d9e43b495b55ffa",
        "content": "hi-from-tool",
    }


def test_claude_code_unknown_model() -> None:
    body = recorded_bodies("claude_unknown_model")[0]
    chat = messages_to_chat_request(body)
    assert chat["model"] == "local/qwen"
    # thinking adaptive + output_config.effort high: the explicit effort wins.
    assert chat["reasoning_effort"] == "high"
    roles = [m["role"] for m in chat["messages"]]
    # The system message Claude Code put inside `messages` stays where it was.
    assert roles == ["system", "user", "system"]
    assert chat["messages"][2]["content"].startswith("Available agent types")
    assert "output_config" not in chat
    # Claude Code's user id is ~150 characters; OpenAI takes at most 64.
    user_id = body["metadata"]["user_id"]
    assert len(user_id) > 64
    assert chat["user"] == hashlib.sha256(user_id.encode()).hexdigest()


# -- system -----------------------------------------------------------------------


def test_system_string_and_blocks() -> None:
    assert convert(system="Be brief.", messages=[user("Hi")])["messages"][0] == {
        "role": "system",
        "content": "Be brief.",
    }
    blocks = [
        {"type": "text", "text": "One.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Two."},
    ]
    chat = convert(system=blocks, messages=[user("Hi")])
    assert chat["messages"][0] == {"role": "system", "content": "One.\nTwo."}


def test_billing_header_line_is_removed_from_a_string_system() -> None:
    system = "x-anthropic-billing-header: cc_version=1; cch=abcde;\nBe brief."
    chat = convert(system=system, messages=[user("Hi")])
    assert chat["messages"][0]["content"] == "Be brief."


def test_no_system_no_system_message() -> None:
    assert convert(messages=[user("Hi")])["messages"] == [{"role": "user", "content": "Hi"}]


# -- content ----------------------------------------------------------------------


def test_images_become_image_url_parts() -> None:
    chat = convert(
        messages=[
            user(
                [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAA="},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                    {"type": "text", "text": "What is this?"},
                ]
            )
        ]
    )
    assert chat["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
        {"type": "text", "text": "What is this?"},
    ]


def test_one_text_block_is_plain_content() -> None:
    chat = convert(messages=[user([{"type": "text", "text": "Hi", "cache_control": {}}])])
    assert chat["messages"] == [{"role": "user", "content": "Hi"}]


def test_tool_results_come_first_one_message_each_in_order() -> None:
    chat = convert(
        messages=[
            user("go"),
            assistant(
                [
                    {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {"x": 1}},
                    {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}},
                ]
            ),
            user(
                [
                    {"type": "text", "text": "and now?"},
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": "1"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_b",
                        "content": [
                            {"type": "text", "text": "two"},
                            {"type": "text", "text": "lines"},
                        ],
                    },
                ]
            ),
        ]
    )
    messages = chat["messages"]
    assert messages[1]["tool_calls"][1] == {
        "id": "toolu_b",
        "type": "function",
        "function": {"name": "g", "arguments": "{}"},
    }
    assert messages[1]["content"] is None
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "toolu_a", "content": "1"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": "two\nlines"},
        {"role": "user", "content": "and now?"},
    ]


def test_tool_error_is_marked_in_the_text() -> None:
    chat = convert(
        messages=[
            user(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": "command not found",
                        "is_error": True,
                    },
                    {"type": "tool_result", "tool_use_id": "u", "is_error": True},
                ]
            )
        ]
    )
    assert [m["content"] for m in chat["messages"]] == ["Error: command not found", "Error"]


def test_images_in_a_tool_result_follow_in_a_user_message() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "B"}}
    chat = convert(
        messages=[user([{"type": "tool_result", "tool_use_id": "t", "content": [image]}])]
    )
    tool, follow = chat["messages"]
    assert tool["role"] == "tool" and tool["content"]
    assert follow["role"] == "user"
    assert follow["content"][-1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,B"},
    }


def test_thinking_goes_to_reasoning_content_and_signatures_are_dropped() -> None:
    chat = convert(
        messages=[
            user("q"),
            assistant(
                [
                    {"type": "thinking", "thinking": "Let me see.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Answer."},
                ]
            ),
        ]
    )
    assert chat["messages"][1] == {
        "role": "assistant",
        "content": "Answer.",
        "reasoning_content": "Let me see.",
    }
    assert "sig" not in json.dumps(chat) and "opaque" not in json.dumps(chat)


def test_pdf_document_becomes_a_file_part() -> None:
    doc = {
        "type": "document",
        "title": "a.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
    }
    chat = convert(messages=[user([doc, {"type": "text", "text": "summarise"}])])
    assert chat["messages"][0]["content"][0] == {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
    }


# -- tools and options ------------------------------------------------------------


def test_server_tools_are_dropped_and_custom_tools_kept() -> None:
    chat = convert(
        messages=[user("Hi")],
        tools=[
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
            {"type": "custom", "name": "f", "input_schema": {"type": "object"}},
            {"name": "g", "description": "G.", "input_schema": {"type": "object"}},
        ],
    )
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
        {
            "type": "function",
            "function": {"name": "g", "description": "G.", "parameters": {"type": "object"}},
        },
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    chat = convert(messages=[user("Hi")], tools=tools, tool_choice=choice)
    assert chat["tool_choice"] == expected
    assert "parallel_tool_calls" not in chat


def test_disable_parallel_tool_use() -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    chat = convert(
        messages=[user("Hi")],
        tools=tools,
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert chat["parallel_tool_calls"] is False


def test_tool_choice_without_tools_is_not_sent() -> None:
    # A chat backend rejects tool_choice and parallel_tool_calls when no tool is sent.
    chat = convert(
        messages=[user("Hi")],
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & chat.keys()


def test_sampling_and_limits() -> None:
    chat = convert(
        messages=[user("Hi")],
        stop_sequences=["END", "```"],
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "u-1"},
        stream=False,
    )
    assert chat == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 100,
        "stop": ["END", "```"],
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u-1",
        "stream": False,
    }


def test_missing_max_tokens_is_left_out() -> None:
    chat = messages_to_chat_request({"model": "m", "messages": [user("Hi")]})
    assert "max_tokens" not in chat


@pytest.mark.parametrize(
    ("fields", "effort"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 8000}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 16384}}, "high"),
        ({"thinking": {"type": "adaptive"}}, "medium"),
        ({"thinking": {"type": "disabled"}}, "none"),
        ({"output_config": {"effort": "low"}}, "low"),
        ({"output_config": {"effort": "max"}}, "high"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}, "low"),
        ({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}, "none"),
        ({}, None),
    ],
)
def test_reasoning_effort(fields: dict[str, Any], effort: str | None) -> None:
    assert convert(messages=[user("Hi")], **fields).get("reasoning_effort") == effort


def test_fields_a_chat_backend_cannot_take_are_dropped() -> None:
    chat = convert(
        messages=[user("Hi")],
        context_management={"edits": []},
        container="c",
        mcp_servers=[{"type": "url", "url": "https://x"}],
        service_tier="auto",
        inference_geo="us",
        cache_control={"type": "ephemeral"},
    )
    assert chat == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 100,
    }


# -- malformed requests -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": "Hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"model": None, "messages": [user("Hi")]}, "model"),
        ({"max_tokens": 0, "messages": [user("Hi")]}, "max_tokens"),
        ({"max_tokens": "9", "messages": [user("Hi")]}, "max_tokens"),
        ({"max_tokens": True, "messages": [user("Hi")]}, "max_tokens"),
        ({"messages": [user([{"text": "no type"}])]}, "messages[0].content[0].type"),
        ({"messages": [user("a"), {"role": "tool", "content": "x"}]}, "messages[1].role"),
        ({"messages": [user(7)]}, "messages[0].content"),
        (
            {"messages": [assistant([{"type": "tool_use", "id": "t", "name": "f", "input": []}])]},
            "messages[0].content[0].input",
        ),
        (
            {"messages": [user([{"type": "tool_result", "content": "x"}])]},
            "messages[0].content[0].tool_use_id",
        ),
        (
            {"messages": [user([{"type": "image", "source": {"type": "file", "file_id": "f"}}])]},
            "messages[0].content[0].source.type",
        ),
        ({"system": 5, "messages": [user("Hi")]}, "system"),
        ({"tools": {}, "messages": [user("Hi")]}, "tools"),
        ({"tools": [{"input_schema": {}}], "messages": [user("Hi")]}, "tools[0].name"),
        ({"tool_choice": {"type": "maybe"}, "messages": [user("Hi")]}, "tool_choice.type"),
        ({"stop_sequences": "END", "messages": [user("Hi")]}, "stop_sequences"),
        ({"temperature": "hot", "messages": [user("Hi")]}, "temperature"),
        ({"stream": "yes", "messages": [user("Hi")]}, "stream"),
        ({"thinking": {"type": "enabled"}, "messages": [user("Hi")]}, "thinking.budget_tokens"),
        ({"thinking": {"type": "deep"}, "messages": [user("Hi")]}, "thinking.type"),
        (
            {"output_config": {"effort": "extreme"}, "messages": [user("Hi")]},
            "output_config.effort",
        ),
        ({"metadata": {"user_id": 5}, "messages": [user("Hi")]}, "metadata.user_id"),
    ],
)
def test_malformed_body_names_the_field(fields: dict[str, Any], param: str) -> None:
    body: dict[str, Any] = {"model": "m", "max_tokens": 100, **fields}
    with pytest.raises(BadRequest) as caught:
        messages_to_chat_request(body)
    assert caught.value.param == param
    assert caught.value.status == 400


def test_body_must_be_an_object() -> None:
    with pytest.raises(BadRequest):
        messages_to_chat_request([])  # type: ignore[arg-type]
