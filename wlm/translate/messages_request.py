"""An Anthropic Messages request as an OpenAI chat completion request.

:func:`messages_to_chat_request` is pure: a dict in, a dict out, or a
:class:`~wlm.errors.BadRequest` naming the offending field in ``param`` (for
example ``messages[3].content[1].type``).

Mapped: ``system`` (minus Claude Code's ``x-anthropic-billing-header`` line, see
below) to a leading system message, ``role: "system"`` messages in place, text and
image blocks, ``tool_use`` to ``tool_calls`` (ids kept), ``tool_result`` to ``tool``
messages (before the user's own parts; images a tool returned follow in a user
message, since a tool message holds text only), documents (text as text, PDF as a
``file`` part), thinking text to ``reasoning_content``, custom ``tools`` and
``tool_choice``, ``max_tokens``, ``stop_sequences``, ``temperature``, ``top_p``,
``metadata.user_id`` (hashed when longer than OpenAI's 64 characters), ``stream``,
``thinking`` and ``output_config.effort`` (to ``reasoning_effort``).

Dropped, because a chat backend has no use for them or cannot take them:
``cache_control`` everywhere, thinking signatures and ``redacted_thinking`` (a chat
backend cannot verify them), ``top_k``, Anthropic-defined tools (any tool with a
``type`` other than ``custom``: server tools such as ``web_search_20250305`` run on
Anthropic's side), content blocks of other types (server-tool results, search
results, container uploads), and ``context_management``, ``container``,
``mcp_servers``, ``service_tier``, ``inference_geo`` and any other top-level field.

Claude Code puts ``x-anthropic-billing-header: cc_version=...; cch=<hash>;`` at the
start of the system prompt. It is billing metadata for Anthropic, not an
instruction, and its hash changes per request, which would defeat the prefix cache
of every local backend (llama.cpp, vLLM); so that line is removed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from wlm.errors import BadRequest, UnsupportedParameter
from wlm.translate.anthropic_response import tool_arguments
from wlm.translate.json_values import is_int, is_number

__all__ = ["BILLING_HEADER_PREFIX", "effort_for_budget", "messages_to_chat_request"]

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"

# thinking.budget_tokens -> reasoning_effort: below 4096 low, below 16384 medium, else
# high (the budgets wlm uses the other way, in anthropic_request.REASONING_BUDGETS).
_EFFORT_STEPS: tuple[tuple[int, str], ...] = ((4096, "low"), (16384, "medium"))
# output_config.effort -> reasoning_effort. "max" has no portable chat value.
_EFFORTS: dict[str, str] = {"low": "low", "medium": "medium", "high": "high", "max": "high"}
_MAX_USER = 64


def effort_for_budget(budget_tokens: int) -> str:
    """The ``reasoning_effort`` for an Anthropic thinking budget.

    >>> effort_for_budget(1024), effort_for_budget(8000), effort_for_budget(31999)
    ('low', 'medium', 'high')
    """
    for limit, effort in _EFFORT_STEPS:
        if budget_tokens < limit:
            return effort
    return "high"


def messages_to_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """Build the OpenAI chat request for an Anthropic Messages request body.

    ``model`` is copied unchanged (the caller rewrites it). ``max_tokens`` may be
    missing; the chat request then has none.

    >>> messages_to_chat_request({"model": "m", "max_tokens": 64, "system": "Be brief.",
    ...     "messages": [{"role": "user", "content": "Hi"}]})
    {'model': 'm', 'messages': [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}], 'max_tokens': 64}
    """
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a non-empty string.", param="model")
    out: dict[str, Any] = {"model": model}
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise BadRequest("'messages' must be a non-empty list.", param="messages")
    for i, message in enumerate(raw_messages):
        messages.extend(_message(message, f"messages[{i}]"))
    out["messages"] = messages
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if not is_int(max_tokens) or max_tokens < 1:
            raise BadRequest("'max_tokens' must be a positive integer.", param="max_tokens")
        out["max_tokens"] = max_tokens
    _sampling(body, out)
    _tools(body, out)
    _user(body, out)
    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be a boolean.", param="stream")
        out["stream"] = stream
        if stream:
            out["stream_options"] = {"include_usage": True}
    effort = _reasoning_effort(body)
    if effort is not None:
        out["reasoning_effort"] = effort
    return out


# -- helpers ------------------------------------------------------------------------


def _block_type(block: Any, param: str) -> str:
    if not isinstance(block, dict):
        raise BadRequest("Each content block must be an object.", param=param)
    kind = block.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadRequest("Each content block needs a 'type'.", param=f"{param}.type")
    return kind


def _text_of_block(block: dict[str, Any], param: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise BadRequest("A text block needs a string 'text'.", param=f"{param}.text")
    return text


def _strip_billing_header(text: str) -> str:
    if not text.startswith(BILLING_HEADER_PREFIX):
        return text
    _, _, rest = text.partition("\n")
    return rest


def _system_text(system: Any, param: str) -> str:
    """System text from a string or a list of text blocks, joined by newlines."""
    if system is None:
        return ""
    if isinstance(system, str):
        return _strip_billing_header(system)
    if not isinstance(system, list):
        raise BadRequest(f"'{param}' must be a string or a list of text blocks.", param=param)
    texts = []
    for j, block in enumerate(system):
        kind = _block_type(block, f"{param}[{j}]")
        if kind != "text":
            raise BadRequest(
                "System content may only hold text blocks.", param=f"{param}[{j}].type"
            )
        text = _strip_billing_header(_text_of_block(block, f"{param}[{j}]"))
        if text:
            texts.append(text)
    return "\n".join(texts)


def _image_url(block: dict[str, Any], param: str) -> str:
    source = block.get("source")
    if not isinstance(source, dict):
        raise BadRequest("An image block needs a 'source' object.", param=f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str):
            raise BadRequest(
                "A base64 image source needs 'media_type' and 'data'.", param=f"{param}.source"
            )
        return f"data:{media_type};base64,{data}"
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str):
            raise BadRequest("A url image source needs a 'url'.", param=f"{param}.source.url")
        return url
    raise UnsupportedParameter(
        f"Image sources of type {kind!r} cannot be sent to this model; use base64 or url.",
        param=f"{param}.source.type",
    )


def _image_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": _image_url(block, param)}}


def _document_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    """A document block as a chat part: plain text as text, a PDF as a ``file`` part."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise BadRequest("A document block needs a 'source' object.", param=f"{param}.source")
    kind = source.get("type")
    if kind == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if kind == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type") or "application/pdf"
        file: dict[str, Any] = {"file_data": f"data:{media_type};base64,{source['data']}"}
        if isinstance(block.get("title"), str):
            file["filename"] = block["title"]
        return {"type": "file", "file": file}
    raise UnsupportedParameter(
        f"Document sources of type {kind!r} cannot be sent to this model.",
        param=f"{param}.source.type",
    )


def _parts_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Chat content: a plain string for one text part, else the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _message(message: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise BadRequest("Each message must be an object.", param=param)
    role = message.get("role")
    content = message.get("content")
    if role == "system":
        # Claude Code sends one mid-conversation for models it does not know.
        return [{"role": "system", "content": _system_text(content, f"{param}.content")}]
    if role not in ("user", "assistant"):
        raise BadRequest("'role' must be 'user', 'assistant' or 'system'.", param=f"{param}.role")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise BadRequest(
            "'content' must be a string or a list of blocks.", param=f"{param}.content"
        )
    if role == "user":
        return _user_message(content, f"{param}.content")
    return [_assistant_message(content, f"{param}.content")]


def _user_message(blocks: list[Any], param: str) -> list[dict[str, Any]]:
    """Tool results first (one ``tool`` message each, in order), then the user's parts."""
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    result_images: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"{param}[{j}]"
        kind = _block_type(block, where)
        if kind == "text":
            parts.append({"type": "text", "text": _text_of_block(block, where)})
        elif kind == "image":
            parts.append(_image_part(block, where))
        elif kind == "document":
            parts.append(_document_part(block, where))
        elif kind == "tool_result":
            message, images = _tool_result(block, where)
            tools.append(message)
            if images:
                result_images.append(
                    {"type": "text", "text": f"[Images from tool result {message['tool_call_id']}]"}
                )
                result_images.extend(images)
        elif kind in ("tool_use", "thinking", "redacted_thinking"):
            raise BadRequest(f"A user message cannot hold a '{kind}' block.", param=f"{where}.type")
        # Other block types (search results, server-tool output...) have no chat form.
    # A tool message holds text only, so images a tool returned follow in a user message.
    parts = result_images + parts
    out = tools
    if parts:
        out = [*tools, {"role": "user", "content": _parts_content(parts)}]
    return out


def _tool_result(block: dict[str, Any], param: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``tool`` message for a ``tool_result``, and any images it held."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("A tool_result needs a 'tool_use_id'.", param=f"{param}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, inner in enumerate(content):
            where = f"{param}.content[{k}]"
            kind = _block_type(inner, where)
            if kind == "text":
                texts.append(_text_of_block(inner, where))
            elif kind == "image":
                images.append(_image_part(inner, where))
            elif kind == "document":
                part = _document_part(inner, where)
                if part["type"] == "text":
                    texts.append(part["text"])
                else:
                    images.append(part)  # a PDF: a file part, which a tool message cannot hold
    elif content is not None:
        raise BadRequest(
            "A tool_result's 'content' must be a string or a list of blocks.",
            param=f"{param}.content",
        )
    text = "\n".join(texts)
    if not text and images:
        text = "[The result is in the images that follow.]"
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise BadRequest("'is_error' must be a boolean.", param=f"{param}.is_error")
    if is_error:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _assistant_message(blocks: list[Any], param: str) -> dict[str, Any]:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"{param}[{j}]"
        kind = _block_type(block, where)
        if kind == "text":
            texts.append(_text_of_block(block, where))
        elif kind == "tool_use":
            calls.append(_tool_call(block, where))
        elif kind == "thinking":
            thinking = block.get("thinking")
            if isinstance(thinking, str) and thinking:
                reasoning.append(thinking)
        elif kind in ("tool_result", "image"):
            raise BadRequest(
                f"An assistant message cannot hold a '{kind}' block.", param=f"{where}.type"
            )
        # redacted_thinking and server-tool blocks have no chat form.
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "\n".join(reasoning)
    return message


def _tool_call(block: dict[str, Any], param: str) -> dict[str, Any]:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("A tool_use block needs an 'id'.", param=f"{param}.id")
    if not isinstance(name, str) or not name:
        raise BadRequest("A tool_use block needs a 'name'.", param=f"{param}.name")
    tool_input = block.get("input")
    if tool_input is None:
        tool_input = {}
    if not isinstance(tool_input, dict):
        raise BadRequest("A tool_use 'input' must be an object.", param=f"{param}.input")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": tool_arguments(tool_input)},
    }


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if not is_number(value) or value < 0:
            raise BadRequest(f"'{name}' must be a non-negative number.", param=name)
        out[name] = value
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest("'stop_sequences' must be a list of strings.", param="stop_sequences")
        if stop:
            out["stop"] = list(stop)


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("'tools' must be a list.", param="tools")
    converted = []
    for j, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise BadRequest("Each tool must be an object.", param=f"tools[{j}]")
        if tool.get("type", "custom") not in ("custom", None):
            continue  # Anthropic-defined and server tools
        converted.append(_tool(tool, j))
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, dict):
        raise BadRequest("'tool_choice' must be an object.", param="tool_choice")
    chat_choice = _tool_choice(choice) if choice is not None else None
    if not converted:
        return  # a chat backend refuses tool_choice and parallel_tool_calls without tools
    out["tools"] = converted
    if chat_choice is not None:
        out["tool_choice"] = chat_choice
    if choice is not None and choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


def _tool(tool: dict[str, Any], j: int) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("A tool needs a 'name'.", param=f"tools[{j}].name")
    schema = tool.get("input_schema")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    elif not isinstance(schema, dict):
        raise BadRequest(
            "'input_schema' must be a JSON Schema object.", param=f"tools[{j}].input_schema"
        )
    function: dict[str, Any] = {"name": name}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    function["parameters"] = schema
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> str | dict[str, Any]:
    kind = choice.get("type")
    simple = {"auto": "auto", "any": "required", "none": "none"}
    if isinstance(kind, str) and kind in simple:
        return simple[kind]
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("'tool_choice.name' is required.", param="tool_choice.name")
        return {"type": "function", "function": {"name": name}}
    raise BadRequest(
        "'tool_choice.type' must be 'auto', 'any', 'tool' or 'none'.", param="tool_choice.type"
    )


def _user(body: dict[str, Any], out: dict[str, Any]) -> None:
    metadata = body.get("metadata")
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise BadRequest("'metadata' must be an object.", param="metadata")
    user_id = metadata.get("user_id")
    if user_id is None:
        return
    if not isinstance(user_id, str):
        raise BadRequest("'metadata.user_id' must be a string.", param="metadata.user_id")
    # OpenAI takes at most 64 characters (OpenRouter 128); Claude Code sends ~150 (a
    # JSON object with device and session ids). A longer id goes as its SHA-256, which
    # keeps one id per value and fits everywhere.
    if len(user_id) > _MAX_USER:
        user_id = hashlib.sha256(user_id.encode()).hexdigest()
    out["user"] = user_id


def _reasoning_effort(body: dict[str, Any]) -> str | None:
    """``thinking`` and ``output_config.effort`` as one ``reasoning_effort``.

    Thinking ``disabled`` wins (``none``); otherwise an explicit effort wins over the
    one implied by the thinking budget (``adaptive`` implies ``medium``).
    """
    thinking = body.get("thinking")
    implied: str | None = None
    if thinking is not None:
        if not isinstance(thinking, dict):
            raise BadRequest("'thinking' must be an object.", param="thinking")
        kind = thinking.get("type")
        if kind == "disabled":
            return "none"
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
                raise BadRequest(
                    "'thinking.budget_tokens' must be a positive integer.",
                    param="thinking.budget_tokens",
                )
            implied = effort_for_budget(budget)
        elif kind == "adaptive":
            implied = "medium"
        else:
            raise BadRequest(
                "'thinking.type' must be 'enabled', 'adaptive' or 'disabled'.",
                param="thinking.type",
            )
    config = body.get("output_config")
    if config is None:
        return implied
    if not isinstance(config, dict):
        raise BadRequest("'output_config' must be an object.", param="output_config")
    effort = config.get("effort")
    if effort is None:
        return implied
    if not isinstance(effort, str) or effort not in _EFFORTS:
        raise BadRequest(
            f"'output_config.effort' must be one of {', '.join(_EFFORTS)}.",
            param="output_config.effort",
        )
    return _EFFORTS[effort]
