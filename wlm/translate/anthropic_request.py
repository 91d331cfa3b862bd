"""An OpenAI chat completion request as an Anthropic Messages request.

:func:`to_anthropic_request` is pure: a dict in, a dict out, or a
:class:`~wlm.errors.BadRequest` / :class:`~wlm.errors.UnsupportedParameter` naming
the offending field. The full mapping, with what is dropped and what is refused, is
in ``docs/providers/anthropic.md``; the rule of thumb is that a field which only
changes billing, storage or determinism hints is dropped, and a field whose meaning
Anthropic cannot honour is refused rather than silently ignored.
"""

from __future__ import annotations

from typing import Any

from wlm.errors import BadRequest, UnsupportedParameter
from wlm.translate.anthropic_messages import convert_messages
from wlm.translate.json_values import is_int, is_number

__all__ = ["ANSWER_ROOM", "REASONING_BUDGETS", "to_anthropic_request"]

# reasoning_effort -> thinking.budget_tokens. Anthropic's minimum budget is 1024.
REASONING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 32768,
}
# Tokens left for the answer on top of a thinking budget when the client set no limit.
ANSWER_ROOM = 4096
_MIN_BUDGET = 1024

# OpenAI fields that change billing, storage or best-effort hints but not the answer;
# Anthropic would reject them, so they are dropped.
_DROPPED = frozenset(
    {
        "stream_options",
        "store",
        "metadata",
        "seed",
        "service_tier",
        "prompt_cache_key",
        "prediction",
    }
)
# Fields with no Anthropic equivalent; refused unless they hold their neutral value.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "frequency_penalty": (None, 0),
    "presence_penalty": (None, 0),
    "logit_bias": (None, {}),
    "audio": (None,),
    "web_search_options": (None,),
    "functions": (None,),
    "function_call": (None,),
    "verbosity": (None, "medium"),
}
_HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "thinking",
        "user",
        "safety_identifier",
        "modalities",
    }
)


def to_anthropic_request(
    body: dict[str, Any], *, upstream_model: str, default_max_tokens: int
) -> dict[str, Any]:
    """Build the Anthropic Messages request for an OpenAI chat completion request.

    ``upstream_model`` is the Anthropic model id; ``default_max_tokens`` is used when
    the client sets neither ``max_completion_tokens`` nor ``max_tokens`` (Anthropic
    requires one). Raises :class:`BadRequest` for malformed input and
    :class:`UnsupportedParameter` for meaningful fields Anthropic cannot express;
    both carry ``param`` naming the field, e.g. ``messages[2].tool_calls[0].function.arguments``.

    >>> req = to_anthropic_request({"model": "c", "messages": [{"role": "user", "content": "Hi"}]},
    ...                            upstream_model="claude-x", default_max_tokens=1024)
    >>> req["model"], req["max_tokens"], req["messages"]
    ('claude-x', 1024, [{'role': 'user', 'content': [{'type': 'text', 'text': 'Hi'}]}])
    """
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    _refuse_unsupported(body)
    system, messages = convert_messages(body.get("messages"))
    out: dict[str, Any] = {"model": upstream_model}
    max_name, max_tokens = _max_tokens(body)
    out["max_tokens"] = max_tokens if max_tokens is not None else default_max_tokens
    out["messages"] = messages
    if system:
        if len(system) == 1 and "cache_control" not in system[0]:
            out["system"] = system[0]["text"]
        else:
            out["system"] = system
    thinking = _thinking(body, out, max_name)
    if thinking is not None:
        out["thinking"] = thinking
    _sampling(body, out)
    _tools(body, out)
    output_format = _response_format(body.get("response_format"))
    if output_format is not None:
        out["output_config"] = {"format": output_format}
    user_field = "user" if body.get("user") is not None else "safety_identifier"
    user = body.get(user_field)
    if user is not None:
        if not isinstance(user, str):
            raise BadRequest(f"'{user_field}' must be a string.", param=user_field)
        out["metadata"] = {"user_id": user}
    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be a boolean.", param="stream")
        out["stream"] = stream
    return out


# -- top-level fields ------------------------------------------------------------


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in _HANDLED or key in _DROPPED:
            continue
        if key in _NEUTRAL:
            if any(_same(value, neutral) for neutral in _NEUTRAL[key]):
                continue
            if key == "n" and isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise BadRequest("'n' must be at least 1.", param="n")
            raise UnsupportedParameter(f"'{key}' is not supported for Anthropic models.", param=key)
        raise UnsupportedParameter(
            f"Unrecognized request argument '{key}' cannot be sent to Anthropic models.",
            param=key,
        )
    modalities = body.get("modalities")
    if modalities is not None and (
        not isinstance(modalities, list) or any(m != "text" for m in modalities)
    ):
        raise UnsupportedParameter(
            "Anthropic models only produce text; 'modalities' must be [\"text\"].",
            param="modalities",
        )


def _same(value: Any, neutral: Any) -> bool:
    """Equal, without letting True stand for 1 or 0.0 fail to match 0."""
    if neutral is None:
        return value is None
    return value == neutral and isinstance(value, bool) == isinstance(neutral, bool)


def _max_tokens(body: dict[str, Any]) -> tuple[str | None, int | None]:
    """(field name, value) of the client's output limit, if it set one."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not is_int(value) or value < 1:
            raise BadRequest(f"'{name}' must be a positive integer.", param=name)
        return name, value
    return None, None


def _thinking(body: dict[str, Any], out: dict[str, Any], max_name: str | None) -> Any:
    """The Anthropic ``thinking`` object; may raise ``out["max_tokens"]`` to fit it."""
    effort = body.get("reasoning_effort")
    thinking = body.get("thinking")
    if effort is not None and thinking is not None:
        raise BadRequest(
            "Send either 'reasoning_effort' or 'thinking', not both.", param="reasoning_effort"
        )
    if thinking is not None:
        if not isinstance(thinking, dict) or not isinstance(thinking.get("type"), str):
            raise BadRequest("'thinking' must be an object with a 'type'.", param="thinking")
        budget = thinking.get("budget_tokens")
        if thinking["type"] == "enabled" and is_int(budget):
            if max_name is not None and out["max_tokens"] <= budget:
                raise BadRequest(
                    f"'{max_name}' must be greater than thinking.budget_tokens ({budget}).",
                    param=max_name,
                )
            if max_name is None:
                out["max_tokens"] = max(out["max_tokens"], budget + ANSWER_ROOM)
        return dict(thinking)
    if effort is None:
        return None
    if effort == "none":
        return {"type": "disabled"}
    if not isinstance(effort, str) or effort not in REASONING_BUDGETS:
        raise BadRequest(
            f"'reasoning_effort' must be one of none, {', '.join(REASONING_BUDGETS)}.",
            param="reasoning_effort",
        )
    budget = REASONING_BUDGETS[effort]
    if max_name is None:
        out["max_tokens"] = max(out["max_tokens"], budget + ANSWER_ROOM)
    else:
        # The client's limit is a hard cap and covers thinking, as in OpenAI.
        budget = min(budget, out["max_tokens"] - 1)
        if budget < _MIN_BUDGET:
            raise BadRequest(
                f"With 'reasoning_effort', '{max_name}' must be more than {_MIN_BUDGET} "
                "(Anthropic's smallest thinking budget).",
                param=max_name,
            )
    return {"type": "enabled", "budget_tokens": budget}


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        if not is_number(temperature) or temperature < 0:
            raise BadRequest("'temperature' must be a number from 0 to 2.", param="temperature")
        if temperature > 1:
            raise UnsupportedParameter(
                "Anthropic models accept a temperature from 0 to 1.", param="temperature"
            )
        out["temperature"] = temperature
    top_p = body.get("top_p")
    if top_p is not None:
        if not is_number(top_p) or not 0 <= top_p <= 1:
            raise BadRequest("'top_p' must be a number from 0 to 1.", param="top_p")
        out["top_p"] = top_p
    top_k = body.get("top_k")
    if top_k is not None:
        if not is_int(top_k) or top_k < 0:
            raise BadRequest("'top_k' must be a non-negative integer.", param="top_k")
        out["top_k"] = top_k
    stop = body.get("stop")
    if stop is None:
        return
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise BadRequest("'stop' must be a string or a list of strings.", param="stop")
    if any(not s.strip() for s in sequences):
        raise UnsupportedParameter(
            "Anthropic rejects stop sequences that are empty or only whitespace.", param="stop"
        )
    if sequences:
        out["stop_sequences"] = sequences


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("'tools' must be a list.", param="tools")
    converted = [_tool(tool, j) for j, tool in enumerate(tools or ())]
    choice = _tool_choice(body.get("tool_choice"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise BadRequest("'parallel_tool_calls' must be a boolean.", param="parallel_tool_calls")
    if not converted:
        if choice is not None and choice["type"] not in ("auto", "none"):
            raise BadRequest("'tool_choice' needs 'tools'.", param="tool_choice")
        return
    out["tools"] = converted
    if parallel is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        out["tool_choice"] = choice


def _tool(tool: Any, j: int) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise BadRequest("Each tool must be an object.", param=f"tools[{j}]")
    if tool.get("type", "function") != "function":
        raise UnsupportedParameter(
            "Only 'function' tools can be sent to Anthropic models.", param=f"tools[{j}].type"
        )
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadRequest("A function tool needs a name.", param=f"tools[{j}].function.name")
    schema = function.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    elif not isinstance(schema, dict):
        raise BadRequest(
            "'parameters' must be a JSON Schema object.", param=f"tools[{j}].function.parameters"
        )
    elif "type" not in schema:
        schema = {"type": "object", **schema}
    converted: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        converted["description"] = function["description"]
    converted["input_schema"] = schema
    if isinstance(tool.get("cache_control"), dict):
        converted["cache_control"] = tool["cache_control"]
    return converted


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    simple = {"auto": "auto", "required": "any", "none": "none"}
    if isinstance(choice, str) and choice in simple:
        return {"type": simple[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return {"type": "tool", "name": function["name"]}
        raise BadRequest("'tool_choice.function.name' is required.", param="tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("type"), str):
        raise UnsupportedParameter(
            f"tool_choice type '{choice['type']}' is not supported for Anthropic models.",
            param="tool_choice",
        )
    raise BadRequest(
        "'tool_choice' must be 'auto', 'required', 'none' or a function.", param="tool_choice"
    )


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise BadRequest(
                "'response_format.json_schema.schema' is required.",
                param="response_format.json_schema.schema",
            )
        return {"type": "json_schema", "schema": spec["schema"]}
    if kind == "json_object":
        raise UnsupportedParameter(
            "Anthropic has no free-form JSON mode; use response_format type 'json_schema'.",
            param="response_format",
        )
    raise BadRequest("Unknown 'response_format' type.", param="response_format.type")
