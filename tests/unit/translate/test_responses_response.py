"""chat_to_response and the usage converters: what a Responses client reads back."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from openai.types.responses import Response

from wlm.errors import UpstreamBroken
from wlm.translate.responses_request import ToolNames, responses_to_chat_request
from wlm.translate.responses_response import chat_to_response, response_usage_to_chat

USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 100},
    "completion_tokens_details": {"reasoning_tokens": 12},
}


def minting() -> Callable[[str], str]:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter)}"


def completion(message: dict[str, Any], finish: str = "stop", usage: Any = USAGE) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 5,
        "model": "upstream-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def respond(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "model": "gpt-x",
        "response_id": "resp_1",
        "created_at": 1_700_000_000,
        "tool_names": ToolNames(),
        "ids": minting(),
    }
    options.update(kwargs)
    response = chat_to_response(body, **options)
    Response.model_validate(response)  # the openai SDK's own schema accepts it
    return response


def test_text_answer() -> None:
    response = respond(completion({"content": "Hello!"}))
    assert response["object"] == "response"
    assert response["id"] == "resp_1"
    assert response["created_at"] == 1_700_000_000
    assert response["model"] == "gpt-x"
    assert response["status"] == "completed"
    assert response["incomplete_details"] is None
    assert response["error"] is None
    assert response["output"] == [
        {
            "id": "msg_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}
            ],
        }
    ]
    assert Response.model_validate(response).output_text == "Hello!"


def test_usage_maps_prompt_cache_and_reasoning_counts() -> None:
    assert respond(completion({"content": "x"}))["usage"] == {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 12},
        "total_tokens": 150,
    }


def test_cache_writes_reported_by_openrouter_or_anthropic_are_kept() -> None:
    usage = {**USAGE, "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 90}}
    details = respond(completion({"content": "x"}, usage=usage))["usage"]["input_tokens_details"]
    assert details == {"cached_tokens": 0, "cache_write_tokens": 90}
    assert response_usage_to_chat(
        {"input_tokens": 9, "output_tokens": 1, "input_tokens_details": details}
    )["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 90}


def test_usage_without_details_reports_zero_and_no_usage_reports_null() -> None:
    usage = respond(
        completion({"content": "x"}, usage={"prompt_tokens": 3, "completion_tokens": 2})
    )["usage"]
    assert usage == {
        "input_tokens": 3,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 5,
    }
    assert respond(completion({"content": "x"}, usage=None))["usage"] is None


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_reasoning_comes_first_as_a_summary(key: str) -> None:
    response = respond(completion({key: "Think first.", "content": "Answer."}))
    assert [item["type"] for item in response["output"]] == ["reasoning", "message"]
    assert response["output"][0]["id"] == "rs_1"
    assert response["output"][0]["summary"] == [{"type": "summary_text", "text": "Think first."}]


def test_tool_calls_keep_their_call_id_and_get_their_names_back() -> None:
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
                {"type": "custom", "name": "apply_patch", "description": "Edit files."},
            ],
        }
    )
    patch = "*** Begin Patch\n*** End Patch\n"
    body = completion(
        {
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "agents__spawn", "arguments": ""},
                },
                {
                    "id": "call_c",
                    "type": "function",
                    "function": {"name": "apply_patch", "arguments": json.dumps({"input": patch})},
                },
            ],
        },
        finish="tool_calls",
    )
    output = respond(body, tool_names=names)["output"]
    assert output == [
        {
            "id": "fc_1",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_a",
            "name": "exec_command",
            "arguments": '{"cmd":"ls"}',
        },
        {
            "id": "fc_2",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_b",
            "name": "spawn",
            "arguments": "{}",
            "namespace": "agents",
        },
        {
            "id": "ctc_3",
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": "call_c",
            "name": "apply_patch",
            "input": patch,
        },
    ]


def test_custom_tool_whose_model_skipped_the_json_wrapper_keeps_its_raw_input() -> None:
    names = ToolNames((("apply_patch", "apply_patch", None, "custom"),))
    body = completion(
        {
            "tool_calls": [
                {
                    "id": "c",
                    "type": "function",
                    "function": {"name": "apply_patch", "arguments": "raw patch"},
                }
            ]
        }
    )
    assert respond(body, tool_names=names)["output"][0]["input"] == "raw patch"


def test_length_is_incomplete_with_max_output_tokens() -> None:
    response = respond(completion({"content": "cut sh"}, finish="length"))
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


def test_request_fields_are_echoed() -> None:
    request = {
        "model": "gpt-x",
        "instructions": "Be brief.",
        "input": "hi",
        "tools": [
            {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
        ],
        "tool_choice": "required",
        "temperature": 0.2,
        "top_p": 0.5,
        "max_output_tokens": 64,
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low"},
        "store": False,
        "metadata": {"k": "v"},
    }
    response = respond(completion({"content": "x"}), request=request)
    for key in (
        "instructions",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "max_output_tokens",
        "store",
        "metadata",
    ):
        assert response[key] == request[key]
    assert response["parallel_tool_calls"] is False
    assert response["reasoning"] == {"effort": "low", "summary": None}


def test_defaults_without_a_request() -> None:
    response = respond(completion({"content": "x"}))
    assert response["tools"] == [] and response["tool_choice"] == "auto"
    assert response["parallel_tool_calls"] is True
    assert response["instructions"] is None


def test_refusal_is_a_refusal_part() -> None:
    content = respond(completion({"content": None, "refusal": "I can't."}))["output"][0]["content"]
    assert content == [{"type": "refusal", "refusal": "I can't."}]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"choices": []},
        {"choices": [{"index": 0}]},
        {"choices": [{"message": {"tool_calls": [3]}}]},
    ],
)
def test_a_body_that_is_not_a_completion_is_an_upstream_failure(body: dict[str, Any]) -> None:
    with pytest.raises(UpstreamBroken):
        chat_to_response(
            body, model="m", response_id="r", created_at=0, tool_names=ToolNames(), ids=minting()
        )


def test_response_usage_to_chat() -> None:
    usage = {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 12},
        "total_tokens": 150,
    }
    assert response_usage_to_chat(usage) == USAGE
    assert response_usage_to_chat({"input_tokens": 4, "output_tokens": 1}) == {
        "prompt_tokens": 4,
        "completion_tokens": 1,
        "total_tokens": 5,
    }
