"""OpenAI chat ``messages`` as Anthropic ``system`` blocks and alternating turns.

Part of the request translation (:mod:`wlm.translate.anthropic_request`): system and
developer messages become ``system`` text blocks, ``tool`` messages become
``tool_result`` blocks at the front of a user turn, assistant ``tool_calls`` become
``tool_use`` blocks with parsed input, and consecutive same-role turns merge.
"""

from __future__ import annotations

import json
import re
from typing import Any

from wlm.errors import BadRequest, UnsupportedParameter

__all__ = ["convert_messages"]

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URI = re.compile(r"data:([^;,]+)((?:;[^;,]*)*);base64,(.*)", re.DOTALL)


class _Turns:
    """Anthropic turns; consecutive same-role messages merge into one turn, and in a
    user turn the tool results come first (Anthropic requires it)."""

    def __init__(self) -> None:
        self._turns: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []

    def add(
        self, role: str, blocks: list[dict[str, Any]], results: list[dict[str, Any]] | None = None
    ) -> None:
        results = results or []
        if not blocks and not results:
            return
        if self._turns and self._turns[-1][0] == role:
            self._turns[-1][1].extend(results)
            self._turns[-1][2].extend(blocks)
        else:
            self._turns.append((role, list(results), list(blocks)))

    def messages(self) -> list[dict[str, Any]]:
        turns: list[dict[str, Any]] = [
            {"role": role, "content": results + blocks} for role, results, blocks in self._turns
        ]
        if turns and turns[-1]["role"] == "assistant":
            # A final assistant turn is a prefill, and Anthropic rejects a prefill that
            # ends in whitespace.
            content = turns[-1]["content"]
            if content and content[-1]["type"] == "text":
                text = content[-1]["text"].rstrip()
                if text:
                    content[-1] = {**content[-1], "text": text}
                else:
                    content.pop()
            if not content:
                turns.pop()
        return turns


def convert_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system text blocks, Anthropic messages) from OpenAI ``messages``.

    Raises :class:`BadRequest` / :class:`UnsupportedParameter` with ``param`` set to
    the path of the offending field, e.g. ``messages[3].content[1].type``.
    """
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list.", param="messages")
    system: list[dict[str, Any]] = []
    turns = _Turns()
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest("Each message must be an object.", param=path)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{path}.content"))
        elif role == "user":
            turns.add("user", _user_blocks(message.get("content"), f"{path}.content"))
        elif role == "assistant":
            turns.add("assistant", _assistant_blocks(message, path))
        elif role == "tool":
            turns.add("user", [], [_tool_result(message, path)])
        elif role == "function":
            raise UnsupportedParameter(
                "Legacy 'function' messages are not supported; use 'tool' messages.",
                param=f"{path}.role",
            )
        else:
            raise BadRequest(f"Unknown message role {role!r}.", param=f"{path}.role")
    converted = turns.messages()
    if not converted:
        raise BadRequest(
            "Anthropic needs at least one non-empty user or assistant message.", param="messages"
        )
    return system, converted


def _text_block(text: str, part: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A text block, or None for text Anthropic rejects (empty or whitespace only)."""
    if not text.strip():
        return None
    block: dict[str, Any] = {"type": "text", "text": text}
    if part is not None and isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any, path: str) -> list[dict[str, Any]]:
    """Text-only content (system, developer): a string or a list of text parts."""
    blocks = []
    for j, part in _parts(content, path):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise BadRequest("Only text parts are allowed here.", param=f"{path}[{j}].type")
        block = _text_block(part["text"], part)
        if block is not None:
            blocks.append(block)
    return blocks


def _parts(content: Any, path: str) -> list[tuple[int, dict[str, Any]]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [(0, {"type": "text", "text": content})]
    if not isinstance(content, list):
        raise BadRequest("'content' must be a string or a list of parts.", param=path)
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise BadRequest("Each content part must be an object.", param=f"{path}[{j}]")
    return list(enumerate(content))


def _user_blocks(content: Any, path: str) -> list[dict[str, Any]]:
    blocks = []
    for j, part in _parts(content, path):
        kind = part.get("type")
        part_path = f"{path}[{j}]"
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise BadRequest("A text part needs 'text'.", param=f"{part_path}.text")
            block = _text_block(part["text"], part)
        elif kind == "image_url":
            block = _image_block(part, part_path)
        elif kind == "file":
            block = _file_block(part, part_path)
        else:
            raise UnsupportedParameter(
                f"Content parts of type {kind!r} are not supported for Anthropic models.",
                param=f"{part_path}.type",
            )
        if block is not None:
            blocks.append(block)
    return blocks


def _image_block(part: dict[str, Any], path: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise BadRequest("An image part needs 'image_url.url'.", param=f"{path}.image_url.url")
    block: dict[str, Any]
    if url.startswith(("http://", "https://")):
        block = {"type": "image", "source": {"type": "url", "url": url}}
    else:
        block = _data_uri_block(url, f"{path}.image_url.url")
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _file_block(part: dict[str, Any], path: str) -> dict[str, Any]:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str):
        # A file_id names a file stored at OpenAI; Anthropic cannot read it.
        raise UnsupportedParameter(
            "Only inline 'file.file_data' (a PDF data URI) can be sent to Anthropic models.",
            param=f"{path}.file",
        )
    return _data_uri_block(data, f"{path}.file.file_data")


def _data_uri_block(uri: str, param: str) -> dict[str, Any]:
    match = _DATA_URI.fullmatch(uri)
    if match is None:
        raise BadRequest("Expected an http(s) URL or a base64 data URI.", param=param)
    media_type = match.group(1).strip().lower()
    if media_type == "image/jpg":
        media_type = "image/jpeg"
    source = {"type": "base64", "media_type": media_type, "data": match.group(3)}
    if media_type in _IMAGE_TYPES:
        return {"type": "image", "source": source}
    if media_type == "application/pdf":
        return {"type": "document", "source": source}
    raise UnsupportedParameter(
        f"Anthropic models accept JPEG, PNG, GIF, WebP images and PDF files, not {media_type}.",
        param=param,
    )


def _assistant_blocks(message: dict[str, Any], path: str) -> list[dict[str, Any]]:
    if message.get("function_call") is not None:
        raise UnsupportedParameter(
            "Legacy 'function_call' is not supported; use 'tool_calls'.",
            param=f"{path}.function_call",
        )
    blocks = _thinking_blocks(message.get("thinking_blocks"), f"{path}.thinking_blocks")
    for j, part in _parts(message.get("content"), f"{path}.content"):
        kind = part.get("type")
        key = "refusal" if kind == "refusal" else "text"
        if kind not in ("text", "refusal") or not isinstance(part.get(key), str):
            raise BadRequest(
                "Assistant content parts must be text or refusal.",
                param=f"{path}.content[{j}].type",
            )
        block = _text_block(part[key], part)
        if block is not None:
            blocks.append(block)
    if message.get("content") is None and isinstance(message.get("refusal"), str):
        block = _text_block(message["refusal"])
        if block is not None:
            blocks.append(block)
    tool_calls = message.get("tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, list):
        raise BadRequest("'tool_calls' must be a list.", param=f"{path}.tool_calls")
    for j, call in enumerate(tool_calls or ()):
        blocks.append(_tool_use(call, f"{path}.tool_calls[{j}]"))
    return blocks


def _thinking_blocks(value: Any, path: str) -> list[dict[str, Any]]:
    """Signed thinking blocks a client echoes back (as returned in ``thinking_blocks``)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("'thinking_blocks' must be a list.", param=path)
    blocks = []
    for j, block in enumerate(value):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "thinking" and all(
            isinstance(block.get(k), str) for k in ("thinking", "signature")
        ):
            blocks.append(
                {"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]}
            )
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
        else:
            raise BadRequest(
                "A thinking block needs type 'thinking' (thinking, signature) or "
                "'redacted_thinking' (data).",
                param=f"{path}[{j}]",
            )
    return blocks


def _tool_use(call: Any, path: str) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise BadRequest("Each tool call must be an object.", param=path)
    if call.get("type", "function") != "function":
        raise UnsupportedParameter(
            "Only 'function' tool calls are supported.", param=f"{path}.type"
        )
    if not isinstance(call.get("id"), str):
        raise BadRequest("A tool call needs an 'id'.", param=f"{path}.id")
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadRequest("A tool call needs 'function.name'.", param=f"{path}.function.name")
    arguments = function.get("arguments")
    param = f"{path}.function.arguments"
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        tool_input: Any = {}
    elif isinstance(arguments, str):
        try:
            tool_input = json.loads(arguments)
        except ValueError:
            raise BadRequest("Tool call arguments are not valid JSON.", param=param) from None
    else:
        tool_input = arguments
    if not isinstance(tool_input, dict):
        raise BadRequest("Tool call arguments must be a JSON object.", param=param)
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": tool_input}


def _tool_result(message: dict[str, Any], path: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str):
        raise BadRequest("A tool message needs 'tool_call_id'.", param=f"{path}.tool_call_id")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            result["content"] = content
    else:
        blocks = _user_blocks(content, f"{path}.content")
        if blocks:
            result["content"] = blocks
    return result
