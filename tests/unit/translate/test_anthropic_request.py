"""to_anthropic_request: what maps, how, and what is refused."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wlm.errors import BadRequest, UnsupportedParameter
from wlm.translate import ANSWER_ROOM, REASONING_BUDGETS, to_anthropic_request

from ._helpers import WIRE


def translate(body: dict[str, Any], default_max_tokens: int = 4096) -> dict[str, Any]:
    body = {"model": "claude", **body}
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return to_anthropic_request(
        body, upstream_model="claude-up", default_max_tokens=default_max_tokens
    )


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def test_minimal_request() -> None:
    assert translate({}) == {
        "model": "claude-up",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [text("Hi")]}],
    }


def test_recorded_tool_round_trip_request_is_reproduced() -> None:
    """The OpenAI form of the recorded second turn translates to what was sent."""
    sent = json.loads(
        (WIRE / "extracted/anthropic_stream_parallel_tool_use_roundtrip.1.request.json").read_text()
    )
    calls = [
        {
            "id": block["id"],
            "type": "function",
            "function": {"name": block["name"], "arguments": "{}"},
        }
        for block in sent["messages"][1]["content"]
        if block["type"] == "tool_use"
    ]
    body = {
        "messages": [
            {"role": "user", "content": "Two names for a pet pelican"},
            {"role": "assistant", "content": "Sure:", "tool_calls": calls},
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "Charles"},
            {"role": "tool", "tool_call_id": calls[1]["id"], "content": "Sammy"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "pelican_name_generator",
                    "description": "",
                    "parameters": {"properties": {}, "type": "object"},
                },
            }
        ],
        "temperature": 1.0,
        "stream": True,
        "max_tokens": 8192,
    }
    out = to_anthropic_request(body, upstream_model=sent["model"], default_max_tokens=1)
    assert out["tools"] == sent["tools"]
    assert out["messages"][2] == sent["messages"][2]
    assert out["messages"][1]["content"][1:] == sent["messages"][1]["content"][1:]
    assert {k: out[k] for k in ("model", "max_tokens", "temperature", "stream")} == {
        k: sent[k] for k in ("model", "max_tokens", "temperature", "stream")
    }


# -- messages ------------------------------------------------------------------------


def test_system_and_developer_messages_become_system_blocks_in_order() -> None:
    out = translate(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": [text("Use French."), text("  ")]},
            ]
        }
    )
    assert out["system"] == [text("Be brief."), text("Use French.")]
    assert out["messages"] == [{"role": "user", "content": [text("Hi")]}]


def test_single_system_message_is_a_string_unless_it_carries_cache_control() -> None:
    assert (
        translate(
            {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]}
        )["system"]
        == "S"
    )
    cached = {"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}
    out = translate(
        {"messages": [{"role": "system", "content": [cached]}, {"role": "user", "content": "Hi"}]}
    )
    assert out["system"] == [cached]


def test_consecutive_same_role_messages_merge() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": [text("b")]},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": "d"},
                {"role": "user", "content": "e"},
            ]
        }
    )
    assert out["messages"] == [
        {"role": "user", "content": [text("a"), text("b")]},
        {"role": "assistant", "content": [text("c"), text("d")]},
        {"role": "user", "content": [text("e")]},
    ]


def test_tool_results_come_first_in_their_user_turn() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "user", "content": "also this"},
                {"role": "tool", "tool_call_id": "call_1", "content": [text("42")]},
            ]
        }
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}}],
    }
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": [text("42")]},
            text("also this"),
        ],
    }


def test_empty_tool_result_has_no_content_and_empty_arguments_are_an_empty_object() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c", "content": ""},
            ]
        }
    )
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c", "name": "f", "input": {}}
    ]
    assert out["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "c"}]


@pytest.mark.parametrize("arguments", ['{"a": ', "[1, 2]", "nope"])
def test_bad_tool_call_arguments_are_a_bad_request_naming_the_field(arguments) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [call]}]
    with pytest.raises(BadRequest) as caught:
        translate({"messages": messages})
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"
    assert caught.value.status == 400
    assert not isinstance(caught.value, UnsupportedParameter)


def test_images_data_uri_and_url() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    out = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        text("What is this?"),
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{png}", "detail": "high"},
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAAA"}},
                    ],
                }
            ]
        }
    )
    assert out["messages"][0]["content"] == [
        text("What is this?"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
    ]


def test_pdf_file_part_becomes_a_document() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
    }
    out = translate({"messages": [{"role": "user", "content": [part]}]})
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        }
    ]


@pytest.mark.parametrize(
    ("part", "param", "error"),
    [
        (
            {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}},
            "messages[0].content[0].image_url.url",
            UnsupportedParameter,
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}},
            "messages[0].content[0].image_url.url",
            BadRequest,
        ),
        (
            {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}},
            "messages[0].content[0].image_url.url",
            BadRequest,
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}},
            "messages[0].content[0].type",
            UnsupportedParameter,
        ),
        (
            {"type": "file", "file": {"file_id": "file-abc"}},
            "messages[0].content[0].file",
            UnsupportedParameter,
        ),
    ],
)
def test_unsupported_content_parts_are_refused(part, param, error) -> None:
    with pytest.raises(error) as caught:
        translate({"messages": [{"role": "user", "content": [part]}]})
    assert caught.value.param == param


def test_final_assistant_prefill_loses_trailing_whitespace() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "The answer is \n"},
            ]
        }
    )
    assert out["messages"][-1] == {"role": "assistant", "content": [text("The answer is")]}


def test_signed_thinking_blocks_are_echoed_first_and_bare_reasoning_is_dropped() -> None:
    thinking = {"type": "thinking", "thinking": "Let me think", "signature": "sig=="}
    redacted = {"type": "redacted_thinking", "data": "opaque"}
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {
                    "role": "assistant",
                    "content": "ok",
                    "reasoning_content": "Let me think",
                    "thinking_blocks": [thinking, redacted],
                    "tool_calls": [call],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "done"},
                {"role": "assistant", "content": "fine", "reasoning_content": "unsigned thoughts"},
                {"role": "user", "content": "next"},
            ]
        }
    )
    assert out["messages"][1]["content"] == [
        thinking,
        redacted,
        text("ok"),
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
    ]
    assert out["messages"][3]["content"] == [text("fine")]
    assert "unsigned thoughts" not in json.dumps(out)


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([{"role": "system", "content": "only system"}], "messages"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
        (
            [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "https://a/b.png"}}],
                }
            ],
            "messages[0].content[0].type",
        ),
        (
            [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {}}],
                },
            ],
            "messages[1].tool_calls[0].function.name",
        ),
    ],
)
def test_malformed_messages_are_bad_requests(messages, param) -> None:
    with pytest.raises(BadRequest) as caught:
        translate({"messages": messages})
    assert caught.value.param == param


# -- top-level fields -----------------------------------------------------------------


def test_sampling_stop_user_stream_and_dropped_fields() -> None:
    out = translate(
        {
            "temperature": 0.3,
            "top_p": 0.9,
            "top_k": 40,
            "stop": "END",
            "user": "user-7",
            "stream": True,
            "stream_options": {"include_usage": True},
            "seed": 1,
            "store": False,
            "metadata": {"tag": "x"},
            "service_tier": "auto",
            "n": 1,
            "logprobs": False,
            "frequency_penalty": 0.0,
            "presence_penalty": 0,
            "modalities": ["text"],
            "parallel_tool_calls": True,
        }
    )
    assert out == {
        "model": "claude-up",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [text("Hi")]}],
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-7"},
        "stream": True,
    }


def test_stop_list_and_safety_identifier() -> None:
    out = translate({"stop": ["a", "b"], "safety_identifier": "hash-1"})
    assert out["stop_sequences"] == ["a", "b"]
    assert out["metadata"] == {"user_id": "hash-1"}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200, "max_tokens": 100}, 200),
    ],
)
def test_max_tokens(fields, expected) -> None:
    assert translate(fields)["max_tokens"] == expected


def test_tools_and_tool_choice() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "now"}},
    ]
    out = translate({"tools": tools, "tool_choice": "auto"})
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert out["tool_choice"] == {"type": "auto"}


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "f"}},
            False,
            {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        ),
        ("none", False, {"type": "none"}),
        (None, None, None),
    ],
)
def test_tool_choice_mapping(choice, parallel, expected) -> None:
    body: dict[str, Any] = {"tools": TOOLS}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert translate(body).get("tool_choice") == expected


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in translate({"tool_choice": "none"})
    with pytest.raises(BadRequest) as caught:
        translate({"tool_choice": "required"})
    assert caught.value.param == "tool_choice"


def test_json_schema_response_format_becomes_output_config() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    out = translate(
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema, "strict": True},
            }
        }
    )
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in translate({"response_format": {"type": "text"}})


@pytest.mark.parametrize(("effort", "budget"), sorted(REASONING_BUDGETS.items()))
def test_reasoning_effort_sets_a_thinking_budget_and_room_for_the_answer(effort, budget) -> None:
    out = translate({"reasoning_effort": effort})
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] == max(4096, budget + ANSWER_ROOM)
    assert out["max_tokens"] > budget


def test_reasoning_effort_fits_under_the_clients_limit() -> None:
    out = translate({"reasoning_effort": "high", "max_completion_tokens": 3000})
    assert out["max_tokens"] == 3000
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2999}
    with pytest.raises(BadRequest) as caught:
        translate({"reasoning_effort": "low", "max_tokens": 1024})
    assert caught.value.param == "max_tokens"


def test_reasoning_effort_none_disables_thinking() -> None:
    assert translate({"reasoning_effort": "none"})["thinking"] == {"type": "disabled"}


def test_explicit_thinking_passes_through() -> None:
    out = translate({"thinking": {"type": "enabled", "budget_tokens": 2048}})
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert out["max_tokens"] == 2048 + ANSWER_ROOM
    assert translate({"thinking": {"type": "adaptive"}})["thinking"] == {"type": "adaptive"}
    with pytest.raises(BadRequest) as caught:
        translate(
            {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_completion_tokens": 2048}
        )
    assert caught.value.param == "max_completion_tokens"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning_effort": "low", "thinking": {"type": "disabled"}}, "reasoning_effort"),
        ({"thinking": "on"}, "thinking"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "10"}, "max_completion_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 2}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"stop": 5}, "stop"),
        ({"n": 0}, "n"),
        ({"user": 7}, "user"),
        ({"stream": "yes"}, "stream"),
        ({"tools": {"f": 1}}, "tools"),
        ({"tool_choice": "sometimes", "tools": TOOLS}, "tool_choice"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_malformed_fields_are_bad_requests(fields, param) -> None:
    with pytest.raises(BadRequest) as caught:
        translate(fields)
    assert caught.value.param == param
    assert not isinstance(caught.value, UnsupportedParameter)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"temperature": 1.5}, "temperature"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"verbosity": "low"}, "verbosity"),
        ({"stop": ["\n"]}, "stop"),
        ({"min_p": 0.1}, "min_p"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}},
            "tool_choice",
        ),
    ],
)
def test_refused_parameters(fields, param) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        translate(fields)
    assert caught.value.param == param
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.status == 400


# -- nothing is lost: random conversations ---------------------------------------------

words = (
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=15)
    .map(str.strip)
    .filter(bool)
)
tool_names = st.from_regex(r"[a-zA-Z0-9_-]{1,20}", fullmatch=True)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
image_urls = st.one_of(
    st.builds(
        lambda name: f"https://example.com/{name}.png",
        st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
    ),
    st.builds(
        lambda mime, data: f"data:{mime};base64,{base64.b64encode(data).decode()}",
        st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"]),
        st.binary(min_size=1, max_size=20),
    ),
)


@st.composite
def conversations(draw) -> tuple[list[dict], dict[str, list]]:
    """OpenAI messages plus everything the translation must carry over."""
    expected: dict[str, list] = {
        "system": [],
        "user_text": [],
        "assistant_text": [],
        "images": [],
        "tool_uses": [],
        "tool_results": [],
    }
    messages: list[dict] = []
    counter = 0

    def user_message() -> dict:
        parts: list[dict] = []
        for _ in range(draw(st.integers(1, 3))):
            if draw(st.booleans()):
                value = draw(words)
                parts.append(text(value))
                expected["user_text"].append(value)
            else:
                url = draw(image_urls)
                parts.append({"type": "image_url", "image_url": {"url": url}})
                expected["images"].append(url)
        if len(parts) == 1 and parts[0]["type"] == "text" and draw(st.booleans()):
            return {"role": "user", "content": parts[0]["text"]}
        return {"role": "user", "content": parts}

    messages.append(user_message())
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["system", "user", "assistant", "tool_round"]))
        if kind == "system":
            value = draw(words)
            messages.append(
                {"role": draw(st.sampled_from(["system", "developer"])), "content": value}
            )
            expected["system"].append(value)
        elif kind == "user":
            messages.append(user_message())
        elif kind == "assistant":
            value = draw(words)
            messages.append({"role": "assistant", "content": value})
            expected["assistant_text"].append(value)
        else:
            calls = []
            for _ in range(draw(st.integers(1, 3))):
                counter += 1
                call_id, name, args = f"call_{counter}", draw(tool_names), draw(json_objects)
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args)},
                    }
                )
                expected["tool_uses"].append((call_id, name, args))
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": calls}
            if draw(st.booleans()):
                value = draw(words)
                message["content"] = value
                expected["assistant_text"].append(value)
            messages.append(message)
            for call in calls:
                result = draw(words)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
                expected["tool_results"].append((call["id"], result))
    return messages, expected


@settings(max_examples=150, deadline=None)
@given(conversation=conversations())
def test_request_translation_loses_nothing(conversation) -> None:
    messages, expected = conversation
    out = to_anthropic_request(
        {"model": "x", "messages": messages}, upstream_model="claude", default_max_tokens=1000
    )

    system = out.get("system", [])
    system_texts = [system] if isinstance(system, str) else [block["text"] for block in system]
    assert system_texts == expected["system"]

    found: dict[str, list] = {key: [] for key in expected if key != "system"}
    roles = [turn["role"] for turn in out["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles)), "turns must alternate"
    previous_tool_ids: set[str] = set()
    for turn in out["messages"]:
        kinds = [block["type"] for block in turn["content"]]
        assert kinds, "no empty turns"
        if turn["role"] == "user":
            results = kinds.count("tool_result")
            assert kinds[:results] == ["tool_result"] * results, "tool results come first"
        for block in turn["content"]:
            if block["type"] == "text":
                found[f"{turn['role']}_text"].append(block["text"])
            elif block["type"] == "image":
                source = block["source"]
                found["images"].append(
                    source["url"]
                    if source["type"] == "url"
                    else f"data:{source['media_type']};base64,{source['data']}"
                )
            elif block["type"] == "tool_use":
                found["tool_uses"].append((block["id"], block["name"], block["input"]))
            elif block["type"] == "tool_result":
                assert block["tool_use_id"] in previous_tool_ids, "result follows its call"
                found["tool_results"].append((block["tool_use_id"], block["content"]))
        previous_tool_ids = {b["id"] for b in turn["content"] if b["type"] == "tool_use"}
    assert found == {key: value for key, value in expected.items() if key != "system"}


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_FIELDS = (
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "thinking",
    "user",
    "metadata",
    "response_format",
    "n",
    "messages",
)


@settings(max_examples=400, deadline=None)
@given(body=st.dictionaries(st.sampled_from(_FIELDS), _JSON_VALUES, max_size=4))
def test_any_value_in_any_field_is_translated_or_refused_with_a_400(body: dict[str, Any]) -> None:
    """Whatever a client puts in a field, the answer is a request or a clear 400, never a crash."""
    refused: BadRequest | UnsupportedParameter | None = None
    try:
        translate(body)
    except (BadRequest, UnsupportedParameter) as exc:
        refused = exc
    assert refused is None or refused.status == 400
