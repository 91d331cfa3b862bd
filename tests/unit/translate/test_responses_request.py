"""responses_to_chat_request: what a chat backend receives for a Responses request."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from wlm.errors import BadRequest
from wlm.translate.responses_request import ToolNames, responses_to_chat_request

WIRE = Path(__file__).resolve().parents[2] / "fixtures" / "wire"
CHAT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def codex_bodies(name: str) -> list[dict[str, Any]]:
    """Request bodies Codex really sent (see fixtures/wire/responses_codex_README.md)."""
    path = WIRE / f"responses_{name}"
    return [json.loads(line)["body_json"] for line in path.read_text().splitlines() if line]


def chat(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return responses_to_chat_request(body, **kwargs)[0]


def fn_tool(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "function", "name": name, "parameters": {"type": "object"}, **extra}


# -- Codex's recorded requests ------------------------------------------------------


def test_codex_first_turn_becomes_one_system_message_then_the_user_turns() -> None:
    body = codex_bodies("codex_text.jsonl")[0]
    out, _, notes = responses_to_chat_request(body)
    messages = out["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "user"]
    developer = [i for i in body["input"] if i.get("role") == "developer"]
    for item in developer:
        for part in item["content"]:
            assert part["text"] in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "say hi"}
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}
    assert out["model"] == "gpt-5-codex"
    assert out["tool_choice"] == "auto"
    assert out["parallel_tool_calls"] is True
    for key in ("store", "include", "prompt_cache_key", "client_metadata", "reasoning", "input"):
        assert key not in out
    # web_search cannot run on a chat backend: dropped with a note, not refused.
    assert any("'web_search' tool dropped" in note for note in notes)
    assert not any("store" in note or "include" in note for note in notes)


def test_codex_namespace_tools_are_flattened_and_restorable() -> None:
    body = codex_bodies("codex_text.jsonl")[0]
    out, names, _ = responses_to_chat_request(body)
    sent = [t["function"]["name"] for t in out["tools"]]
    assert all(CHAT_NAME.match(name) for name in sent)
    assert len(set(sent)) == len(sent)
    namespace = next(t for t in body["tools"] if t["type"] == "namespace")
    for member in namespace["tools"]:
        chat_name = f"{namespace['name']}__{member['name']}"
        assert chat_name in sent
        assert names.restore(chat_name) == (member["name"], namespace["name"], "function")
    assert "exec_command" in sent
    assert names.restore("exec_command") == ("exec_command", None, "function")
    exec_tool = next(t for t in out["tools"] if t["function"]["name"] == "exec_command")
    assert exec_tool["function"]["strict"] is False
    assert exec_tool["function"]["description"].startswith("Runs a command")


def test_codex_known_model_custom_tool_search_and_effort() -> None:
    body = codex_bodies("codex_known_model.jsonl")[0]
    out, names, notes = responses_to_chat_request(body)
    assert out["reasoning_effort"] == "medium"
    assert "verbosity" not in out and "text" not in out
    patch = next(t for t in out["tools"] if t["function"]["name"] == "apply_patch")["function"]
    assert patch["parameters"]["required"] == ["input"]
    assert patch["parameters"]["properties"]["input"]["type"] == "string"
    assert "FREEFORM tool" in patch["description"]
    assert "lark grammar" in patch["description"]
    assert "*** Begin Patch" in patch["description"]
    assert names.restore("apply_patch") == ("apply_patch", None, "custom")
    assert any("'tool_search' tool dropped" in note for note in notes)
    assert any("'web_search' tool dropped" in note for note in notes)
    assert all(t["type"] == "function" for t in out["tools"])


def test_codex_second_turn_carries_the_call_and_its_output() -> None:
    body = codex_bodies("codex_tool_use.jsonl")[1]
    out = chat(body)
    call_item = next(i for i in body["input"] if i["type"] == "function_call")
    output_item = next(i for i in body["input"] if i["type"] == "function_call_output")
    assistant, tool = out["messages"][-2:]
    assert assistant == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_item["call_id"],
                "type": "function",
                "function": {"name": "exec_command", "arguments": call_item["arguments"]},
            }
        ],
    }
    assert tool == {
        "role": "tool",
        "tool_call_id": call_item["call_id"],
        "content": output_item["output"],
    }


# -- top-level fields ------------------------------------------------------------------


def test_string_input_and_instructions() -> None:
    out, names, notes = responses_to_chat_request(
        {"model": "m", "instructions": "Be terse.", "input": "Hello"}
    )
    assert out == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hello"},
        ],
    }
    assert names == ToolNames()
    assert notes == ()


def test_sampling_limits_and_identity_fields() -> None:
    out, _, notes = responses_to_chat_request(
        {
            "input": "x",
            "max_output_tokens": 200,
            "temperature": 0.3,
            "top_p": 0.9,
            "user": "u1",
            "safety_identifier": "s1",
            "metadata": {"k": "v"},
            "service_tier": "auto",
            "truncation": "auto",
            "store": True,
            "prompt_cache_key": "abc",
        }
    )
    assert out["max_tokens"] == 200
    assert (out["temperature"], out["top_p"]) == (0.3, 0.9)
    assert (out["user"], out["safety_identifier"]) == ("u1", "s1")
    for key in ("metadata", "service_tier", "truncation", "store", "prompt_cache_key"):
        assert key not in out
    assert notes == ("metadata: not forwarded to a chat backend",)


def test_unknown_top_level_fields_are_noted() -> None:
    _, _, notes = responses_to_chat_request({"input": "x", "background": True})
    assert notes == ("background: no chat equivalent, dropped",)


@pytest.mark.parametrize(
    ("effort", "expected"),
    [("minimal", "low"), ("low", "low"), ("high", "high"), ("none", "none"), ("xhigh", "xhigh")],
)
def test_reasoning_effort(effort: str, expected: str) -> None:
    out = chat({"input": "x", "reasoning": {"effort": effort, "summary": "auto"}})
    assert out["reasoning_effort"] == expected


def test_reasoning_summary_alone_sets_no_effort() -> None:
    assert "reasoning_effort" not in chat({"input": "x", "reasoning": {"summary": "auto"}})


def test_stream_false_has_no_stream_options() -> None:
    out = chat({"input": "x", "stream": False})
    assert out["stream"] is False
    assert "stream_options" not in out


def test_text_format_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = chat(
        {
            "input": "x",
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "thing",
                    "schema": schema,
                    "strict": True,
                },
                "verbosity": "low",
            },
        }
    )
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }


def test_text_format_json_object_and_text() -> None:
    assert chat({"input": "x", "text": {"format": {"type": "json_object"}}})["response_format"] == {
        "type": "json_object"
    }
    assert "response_format" not in chat({"input": "x", "text": {"format": {"type": "text"}}})


# -- input items ----------------------------------------------------------------------


def test_message_roles_and_parts() -> None:
    out, _, notes = responses_to_chat_request(
        {
            "input": [
                {"role": "user", "content": "plain"},  # EasyInputMessage: no type
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AA"},
                        {"type": "input_image", "file_id": "file_1"},
                    ],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "seen", "annotations": []}],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "no"}],
                },
                {"type": "message", "role": "developer", "content": "mid-list rule"},
            ]
        }
    )
    assert out["messages"] == [
        {"role": "user", "content": "plain"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
            ],
        },
        {"role": "assistant", "content": "seen"},
        {"role": "assistant", "content": "no"},
        {"role": "system", "content": "mid-list rule"},
    ]
    assert notes == ("input[1].content[2]: image by file_id dropped (no file store)",)


def test_consecutive_function_calls_merge_into_the_assistant_message() -> None:
    out = chat(
        {
            "input": [
                {"role": "user", "content": "go"},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "plan"}]},
                {"type": "message", "role": "assistant", "content": "on it"},
                {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "b", "arguments": '{"x":1}'},
                {"type": "function_call_output", "call_id": "c1", "output": "A"},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [
                        {"type": "input_text", "text": "B1"},
                        {"type": "input_text", "text": "B2"},
                    ],
                },
            ]
        }
    )
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": "on it",
            "reasoning_content": "plan",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": '{"x":1}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "A"},
        {"role": "tool", "tool_call_id": "c2", "content": "B1\nB2"},
    ]


def test_calls_after_a_tool_result_start_a_new_assistant_message() -> None:
    out = chat(
        {
            "input": [
                {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "A"},
                {"type": "function_call", "call_id": "c2", "name": "a", "arguments": "{}"},
            ]
        }
    )
    assert [m["role"] for m in out["messages"]] == ["assistant", "tool", "assistant"]
    assert out["messages"][2]["tool_calls"][0]["id"] == "c2"


def test_reasoning_content_prefers_full_text_and_is_dropped_without_a_following_turn() -> None:
    out, _, notes = responses_to_chat_request(
        {
            "input": [
                {
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": "short"}],
                    "content": [{"type": "reasoning_text", "text": "long thoughts"}],
                    "encrypted_content": "opaque",
                },
                {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "A"},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "orphan"}]},
                {"role": "user", "content": "next"},
                {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},
            ]
        }
    )
    assert out["messages"][0]["reasoning_content"] == "long thoughts"
    assert all("orphan" not in json.dumps(m) for m in out["messages"])
    assert notes == (
        "input[3]: reasoning with no assistant turn after it dropped",
        "input[5]: encrypted reasoning dropped (chat cannot carry it)",
    )


def test_custom_tool_call_round_trip_shapes() -> None:
    out = chat(
        {
            "tools": [{"type": "custom", "name": "apply_patch", "description": "Patch files."}],
            "input": [
                {
                    "type": "custom_tool_call",
                    "call_id": "c9",
                    "name": "apply_patch",
                    "input": "*** Begin Patch\n",
                },
                {"type": "custom_tool_call_output", "call_id": "c9", "output": "Done!"},
            ],
        }
    )
    call = out["messages"][0]["tool_calls"][0]
    assert call["function"]["name"] == "apply_patch"
    assert json.loads(call["function"]["arguments"]) == {"input": "*** Begin Patch\n"}
    assert out["messages"][1] == {"role": "tool", "tool_call_id": "c9", "content": "Done!"}


def test_history_goes_before_input() -> None:
    out = chat(
        {"instructions": "sys", "input": "second"},
        history=[
            {"role": "user", "content": "first"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "ok"}],
            },
        ],
    )
    assert out["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]


def test_namespaced_call_in_history_uses_the_flat_name() -> None:
    tools = [{"type": "namespace", "name": "agents", "tools": [fn_tool("spawn")]}]
    out = chat(
        {
            "tools": tools,
            "input": [
                {
                    "type": "function_call",
                    "call_id": "c",
                    "name": "spawn",
                    "namespace": "agents",
                    "arguments": "{}",
                }
            ],
        }
    )
    assert out["messages"][0]["tool_calls"][0]["function"]["name"] == "agents__spawn"
    assert out["tools"][0]["function"]["name"] == "agents__spawn"


def test_item_reference_and_unknown_items_are_dropped_with_notes() -> None:
    out, _, notes = responses_to_chat_request(
        {
            "input": [
                {"type": "item_reference", "id": "msg_1"},
                {"type": "web_search_call", "id": "ws_1", "status": "completed"},
                {"role": "user", "content": "hi"},
            ]
        }
    )
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    assert notes == (
        "input[0]: item_reference dropped (no stored items)",
        "input[1]: 'web_search_call' item dropped (no chat equivalent)",
    )


def test_function_call_output_that_is_an_object_becomes_json() -> None:
    out = chat(
        {
            "input": [
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": {"ok": True}},
            ]
        }
    )
    assert json.loads(out["messages"][1]["content"]) == {"ok": True}


# -- tools and tool_choice -------------------------------------------------------------


def test_tool_names_are_made_valid_and_unique() -> None:
    long_namespace = "n" * 60
    out, names, _ = responses_to_chat_request(
        {
            "input": "x",
            "tools": [
                fn_tool("my.tool"),
                fn_tool("my_tool"),
                {
                    "type": "namespace",
                    "name": long_namespace,
                    "tools": [fn_tool("alpha"), fn_tool("alphb")],
                },
            ],
        }
    )
    sent = [t["function"]["name"] for t in out["tools"]]
    assert all(CHAT_NAME.match(n) for n in sent)
    assert len(set(sent)) == 4
    assert names.restore(sent[0]) == ("my.tool", None, "function")
    assert names.restore(sent[1]) == ("my_tool", None, "function")
    assert names.restore(sent[2]) == ("alpha", long_namespace, "function")
    assert names.restore(sent[3]) == ("alphb", long_namespace, "function")


def test_function_tool_keeps_strict_and_gets_parameters() -> None:
    out = chat({"input": "x", "tools": [{"type": "function", "name": "f", "strict": True}]})
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            },
        }
    ]


@pytest.mark.parametrize("kind", ["file_search", "computer_use_preview", "mcp", "image_generation"])
def test_hosted_tools_are_dropped_never_refused(kind: str) -> None:
    out, _, notes = responses_to_chat_request(
        {
            "input": "x",
            "tools": [{"type": kind}],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        }
    )
    assert "tools" not in out and "tool_choice" not in out and "parallel_tool_calls" not in out
    assert notes == (
        f"tools[0]: '{kind}' tool dropped (a chat backend cannot run it)",
        "tool_choice: dropped, no tool left to choose",
    )


def test_tool_choice_forms() -> None:
    tools = [fn_tool("a"), {"type": "namespace", "name": "ns", "tools": [fn_tool("b")]}]
    assert (
        chat({"input": "x", "tools": tools, "tool_choice": "required"})["tool_choice"] == "required"
    )
    assert chat({"input": "x", "tools": tools, "tool_choice": {"type": "function", "name": "a"}})[
        "tool_choice"
    ] == {"type": "function", "function": {"name": "a"}}
    named = {"type": "function", "name": "b", "namespace": "ns"}
    assert chat({"input": "x", "tools": tools, "tool_choice": named})["tool_choice"] == {
        "type": "function",
        "function": {"name": "ns__b"},
    }
    out, _, notes = responses_to_chat_request(
        {"input": "x", "tools": tools, "tool_choice": {"type": "web_search_preview"}}
    )
    assert "tool_choice" not in out
    assert notes == ("tool_choice: 'web_search_preview' has no chat equivalent, dropped",)


def test_allowed_tools_narrows_the_tool_list() -> None:
    tools = [fn_tool("a"), fn_tool("b"), fn_tool("c")]
    out = chat(
        {
            "input": "x",
            "tools": tools,
            "tool_choice": {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "b"}, {"type": "function", "name": "c"}],
            },
        }
    )
    assert [t["function"]["name"] for t in out["tools"]] == ["b", "c"]
    assert out["tool_choice"] == "required"


# -- malformed input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 3}, "input"),
        ({}, "input"),
        ({"input": [{"content": "no type nor role"}]}, "input[0].type"),
        ({"input": ["text"]}, "input[0]"),
        ({"input": [{"type": "message", "role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "x", "instructions": ["a"]}, "instructions"),
        ({"input": "x", "tools": {"type": "function"}}, "tools"),
        ({"input": "x", "tools": [{"name": "f"}]}, "tools[0]"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "temperature": "hot"}, "temperature"),
        ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"input": "x", "reasoning": "high"}, "reasoning"),
        ({"input": "x", "stream": "yes"}, "stream"),
    ],
)
def test_malformed_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        responses_to_chat_request(body)
    assert caught.value.param == param
    assert caught.value.status == 400


def test_body_must_be_an_object() -> None:
    with pytest.raises(BadRequest):
        responses_to_chat_request([])  # type: ignore[arg-type]
