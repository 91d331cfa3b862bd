"""An OpenAI Responses request as a Chat Completions request.

:func:`responses_to_chat_request` is pure: a dict in, a chat request dict out, plus
the :class:`ToolNames` needed to give tool calls their Responses names back and a
tuple of notes saying what was dropped (for one log line). Malformed input raises
:class:`~wlm.errors.BadRequest` naming the field, e.g. ``input[3].call_id``.

Codex sends hosted tools (``web_search``, ``tool_search``) and storage hints every
turn; a chat backend cannot run them, so they are dropped with a note, never
refused. Tools a chat backend cannot name as they are (``namespace`` groups, names
outside ``^[a-zA-Z0-9_-]{1,64}$``) and freeform ``custom`` tools are renamed or
wrapped, and :class:`ToolNames` records how.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from attrs import frozen

from wlm.errors import BadRequest
from wlm.translate.json_values import is_number

__all__ = [
    "NAMESPACE_SEPARATOR",
    "ToolKind",
    "ToolNames",
    "chat_response_format",
    "responses_to_chat_request",
]

ToolKind = Literal["function", "custom"]

NAMESPACE_SEPARATOR = "__"
_CHAT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_NOT_NAME_CHAR = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_NAME = 64

# Hints about storage, caching, billing or presentation: no chat meaning, no note.
_SILENT = frozenset(
    {
        "store",
        "include",
        "prompt_cache_key",
        "prompt_cache_retention",
        "service_tier",
        "truncation",
        "client_metadata",
        "previous_response_id",  # the gateway rebuilds it as ``history``
        "stream_options",
    }
)
_HANDLED = frozenset(
    {
        "model",
        "instructions",
        "input",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "max_output_tokens",
        "temperature",
        "top_p",
        "reasoning",
        "user",
        "safety_identifier",
        "metadata",
        "stream",
    }
)
_EFFORTS = {"minimal": "low"}


@frozen
class ToolNames:
    """How tool names changed on the way to chat, to restore them on the way back.

    ``renamed`` holds ``(chat name, original name, namespace or None, kind)`` for each
    tool whose chat form differs from its Responses form: a namespaced or renamed
    function, or a ``custom`` tool (sent as a function taking one ``input`` string).
    Names not listed are plain functions that kept their name.

    >>> names = ToolNames((("ns__f", "f", "ns", "function"),))
    >>> names.restore("ns__f"), names.restore("other")
    (('f', 'ns', 'function'), ('other', None, 'function'))
    """

    renamed: tuple[tuple[str, str, str | None, ToolKind], ...] = ()

    def restore(self, chat_name: str) -> tuple[str, str | None, ToolKind]:
        """``(name, namespace or None, kind)`` of the Responses tool behind ``chat_name``."""
        for chat, name, namespace, kind in self.renamed:
            if chat == chat_name:
                return name, namespace, kind
        return chat_name, None, "function"

    def chat_name(self, name: str, namespace: str | None = None) -> str:
        """The chat name sent for a Responses tool (inverse of :meth:`restore`)."""
        for chat, original, original_namespace, _ in self.renamed:
            if original == name and original_namespace == namespace:
                return chat
        wanted = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name
        return wanted if _CHAT_NAME.match(wanted) else _sanitize(wanted)


def responses_to_chat_request(
    body: dict[str, Any], *, history: Sequence[dict[str, Any]] = ()
) -> tuple[dict[str, Any], ToolNames, tuple[str, ...]]:
    """Build the chat request for a Responses request.

    ``history`` holds the earlier turns as Responses input items (what the gateway
    stored for ``previous_response_id``); they go before ``input``. Returns the chat
    body, the tool name map, and notes about what was dropped.

    >>> chat, names, notes = responses_to_chat_request(
    ...     {"model": "m", "instructions": "Be brief.", "input": "Hi", "max_output_tokens": 9})
    >>> chat["messages"], chat["max_tokens"], notes
    ([{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}], 9, ())
    """
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    notes: list[str] = []
    out: dict[str, Any] = {}
    if "model" in body:
        out["model"] = body["model"]
    tools, names = _tools(body.get("tools"), notes)
    messages = _Messages(names, notes)
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BadRequest("'instructions' must be a string.", param="instructions")
        messages.system(instructions)
    for index, item in enumerate(history):
        messages.item(item, f"history[{index}]")
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        messages.user(raw_input)
    elif isinstance(raw_input, list):
        for index, item in enumerate(raw_input):
            messages.item(item, f"input[{index}]")
    elif raw_input is not None or not history:
        raise BadRequest("'input' must be a string or a list of input items.", param="input")
    out["messages"] = messages.finish()
    tools = _tool_choice(body.get("tool_choice"), tools, names, out, notes)
    if tools:
        out["tools"] = tools
        parallel = body.get("parallel_tool_calls")
        if parallel is not None:
            if not isinstance(parallel, bool):
                raise BadRequest(
                    "'parallel_tool_calls' must be a boolean.", param="parallel_tool_calls"
                )
            out["parallel_tool_calls"] = parallel
    _sampling(body, out)
    _text(body.get("text"), out)
    _reasoning(body.get("reasoning"), out)
    for key in ("user", "safety_identifier"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise BadRequest(f"'{key}' must be a string.", param=key)
            out[key] = value
    if body.get("metadata"):
        notes.append("metadata: not forwarded to a chat backend")
    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be a boolean.", param="stream")
        out["stream"] = stream
        if stream:
            out["stream_options"] = {"include_usage": True}
    for key in body:
        if key not in _HANDLED and key not in _SILENT and body[key] is not None:
            notes.append(f"{key}: no chat equivalent, dropped")
    return out, names, tuple(notes)


# -- input items -------------------------------------------------------------------


class _Messages:
    """Chat messages built item by item (merging what chat wants merged)."""

    def __init__(self, names: ToolNames, notes: list[str]) -> None:
        self.names = names
        self.notes = notes
        self.messages: list[dict[str, Any]] = []
        self.reasoning: list[str] = []  # waiting for the next assistant message
        self.reasoning_at = ""
        self.merge_assistant = False  # the last message may take more tool calls

    def finish(self) -> list[dict[str, Any]]:
        self._drop_reasoning()
        return self.messages

    def system(self, text: str) -> None:
        """A system message; leading ones merge into one (templates want one)."""
        self._drop_reasoning()
        self.merge_assistant = False
        if self.messages and all(m["role"] == "system" for m in self.messages):
            first = self.messages[0]
            first["content"] = f"{first['content']}\n\n{text}" if first["content"] else text
        else:
            self.messages.append({"role": "system", "content": text})

    def user(self, content: str | list[dict[str, Any]]) -> None:
        self._drop_reasoning()
        self.merge_assistant = False
        self.messages.append({"role": "user", "content": content})

    def item(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise BadRequest(f"'{where}' must be an object.", param=where)
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"
        if not isinstance(kind, str):
            raise BadRequest(f"'{where}' needs a 'type'.", param=f"{where}.type")
        if kind == "message":
            self._message(item, where)
        elif kind in ("function_call", "custom_tool_call"):
            self._call(item, where, kind)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self._output(item, where)
        elif kind == "reasoning":
            self._reasoning(item, where)
        elif kind == "item_reference":
            self.notes.append(f"{where}: item_reference dropped (no stored items)")
        else:
            self.notes.append(f"{where}: '{kind}' item dropped (no chat equivalent)")

    def _message(self, item: dict[str, Any], where: str) -> None:
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise BadRequest(
                f"'{where}.role' must be one of user, assistant, system, developer.",
                param=f"{where}.role",
            )
        parts = _content_parts(item.get("content"), f"{where}.content", self.notes)
        if role in ("system", "developer"):
            texts = [p["text"] for p in parts if p["type"] == "text"]
            if len(texts) < len(parts):
                self.notes.append(f"{where}: images dropped from a {role} message")
            self.system("\n\n".join(texts))
        elif role == "user":
            self.user(_chat_content(parts))
        else:
            if any(p["type"] != "text" for p in parts):
                self.notes.append(f"{where}: images dropped from an assistant message")
                parts = [p for p in parts if p["type"] == "text"]
            message = {"role": "assistant", "content": _chat_content(parts)}
            self._take_reasoning(message)
            self.messages.append(message)
            self.merge_assistant = True

    def _call(self, item: dict[str, Any], where: str, kind: str) -> None:
        call_id = _string(item, "call_id", where)
        name = _string(item, "name", where)
        namespace = item.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise BadRequest(f"'{where}.namespace' must be a string.", param=f"{where}.namespace")
        if kind == "custom_tool_call":
            arguments = json.dumps({"input": _string(item, "input", where)}, ensure_ascii=False)
        else:
            raw = item.get("arguments", "")
            if isinstance(raw, dict):
                raw = json.dumps(raw, ensure_ascii=False)
            if not isinstance(raw, str):
                raise BadRequest(
                    f"'{where}.arguments' must be a string.", param=f"{where}.arguments"
                )
            arguments = raw
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": self.names.chat_name(name, namespace), "arguments": arguments},
        }
        last = self.messages[-1] if self.messages else None
        if self.merge_assistant and last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
            self._take_reasoning(last)
        else:
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            self._take_reasoning(message)
            self.messages.append(message)
            self.merge_assistant = True

    def _output(self, item: dict[str, Any], where: str) -> None:
        call_id = _string(item, "call_id", where)
        self._drop_reasoning()
        self.merge_assistant = False
        self.messages.append(
            {
                "role": "tool",
                "tool_call_id": call_id,
                "content": _output_text(item.get("output"), f"{where}.output", self.notes),
            }
        )

    def _reasoning(self, item: dict[str, Any], where: str) -> None:
        texts: list[str] = []
        for key, part_type in (("content", "reasoning_text"), ("summary", "summary_text")):
            parts = item.get(key)
            if isinstance(parts, list):
                texts = [
                    p["text"]
                    for p in parts
                    if isinstance(p, dict)
                    and p.get("type") in (part_type, "text")
                    and isinstance(p.get("text"), str)
                ]
            if texts:
                break  # the full reasoning when present, else its summary
        text = "\n\n".join(t for t in texts if t)
        if text:
            if not self.reasoning:
                self.reasoning_at = where
            self.reasoning.append(text)
        elif item.get("encrypted_content"):
            self.notes.append(f"{where}: encrypted reasoning dropped (chat cannot carry it)")

    def _take_reasoning(self, message: dict[str, Any]) -> None:
        if not self.reasoning:
            return
        text = "\n\n".join(self.reasoning)
        previous = message.get("reasoning_content")
        message["reasoning_content"] = f"{previous}\n\n{text}" if previous else text
        self.reasoning = []

    def _drop_reasoning(self) -> None:
        if self.reasoning:
            self.notes.append(
                f"{self.reasoning_at}: reasoning with no assistant turn after it dropped"
            )
            self.reasoning = []


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"'{where}.{key}' must be a string.", param=f"{where}.{key}")
    return value


def _content_parts(content: Any, where: str, notes: list[str]) -> list[dict[str, Any]]:
    """Chat content parts (text and image_url) for Responses message content."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise BadRequest(f"'{where}' must be a string or a list of parts.", param=where)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise BadRequest(f"'{at}' must be an object with a 'type'.", param=at)
        kind = part["type"]
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": _string(part, "text", at)})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _string(part, "refusal", at)})
        elif kind == "input_image":
            url = part.get("image_url")
            if isinstance(url, str) and url:
                image: dict[str, Any] = {"url": url}
                if isinstance(part.get("detail"), str):
                    image["detail"] = part["detail"]
                parts.append({"type": "image_url", "image_url": image})
            else:
                notes.append(f"{at}: image by file_id dropped (no file store)")
        else:
            notes.append(f"{at}: '{kind}' part dropped (no chat equivalent)")
    return parts


def _chat_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One text part as a plain string (what every chat template reads), else the list."""
    if not parts:
        return ""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _output_text(output: Any, where: str, notes: list[str]) -> str:
    """A tool result as the string a chat ``tool`` message carries."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts: list[str] = []
        for index, part in enumerate(output):
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                notes.append(f"{where}[{index}]: '{kind}' part dropped from a tool result")
        return "\n".join(texts)
    return json.dumps(output, ensure_ascii=False)


# -- tools ----------------------------------------------------------------------


def _sanitize(name: str) -> str:
    return _NOT_NAME_CHAR.sub("_", name)[:_MAX_NAME] or "tool"


class _ToolTable:
    def __init__(self) -> None:
        self.used: set[str] = set()
        self.renamed: list[tuple[str, str, str | None, ToolKind]] = []
        self.by_origin: dict[tuple[str | None, str], str] = {}

    def add(self, name: str, namespace: str | None, kind: ToolKind) -> str:
        wanted = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name
        chat = wanted if _CHAT_NAME.match(wanted) else _sanitize(wanted)
        counter = 2
        base = chat
        while chat in self.used:
            suffix = f"_{counter}"
            chat = base[: _MAX_NAME - len(suffix)] + suffix
            counter += 1
        self.used.add(chat)
        self.by_origin[(namespace, name)] = chat
        if chat != name or namespace is not None or kind != "function":
            self.renamed.append((chat, name, namespace, kind))
        return chat


def _tools(raw: Any, notes: list[str]) -> tuple[list[dict[str, Any]], ToolNames]:
    if raw is None:
        return [], ToolNames()
    if not isinstance(raw, list):
        raise BadRequest("'tools' must be a list.", param="tools")
    table = _ToolTable()
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(raw):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise BadRequest(f"'{where}' must be an object with a 'type'.", param=where)
        kind = tool["type"]
        if kind == "namespace":
            namespace = _string(tool, "name", where)
            members = tool.get("tools")
            if not isinstance(members, list):
                raise BadRequest(f"'{where}.tools' must be a list.", param=f"{where}.tools")
            for member_index, member in enumerate(members):
                at = f"{where}.tools[{member_index}]"
                if not isinstance(member, dict):
                    raise BadRequest(f"'{at}' must be an object.", param=at)
                converted = _tool(member, at, namespace, table, notes)
                if converted is not None:
                    tools.append(converted)
        else:
            converted = _tool(tool, where, None, table, notes)
            if converted is not None:
                tools.append(converted)
    return tools, ToolNames(tuple(table.renamed))


def _tool(
    tool: dict[str, Any],
    where: str,
    namespace: str | None,
    table: _ToolTable,
    notes: list[str],
) -> dict[str, Any] | None:
    kind = tool.get("type")
    if kind == "function":
        name = _string(tool, "name", where)
        function: dict[str, Any] = {"name": table.add(name, namespace, "function")}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        parameters = tool.get("parameters")
        function["parameters"] = (
            parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}
        )
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        return {"type": "function", "function": function}
    if kind == "custom":
        name = _string(tool, "name", where)
        raw_description = tool.get("description")
        description = raw_description if isinstance(raw_description, str) else ""
        return {
            "type": "function",
            "function": {
                "name": table.add(name, namespace, "custom"),
                "description": _custom_description(description, tool.get("format")),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "input": {"type": "string", "description": "The raw input of the tool."}
                    },
                    "required": ["input"],
                    "additionalProperties": False,
                },
            },
        }
    notes.append(f"{where}: '{kind}' tool dropped (a chat backend cannot run it)")
    return None


def _custom_description(description: str, fmt: Any) -> str:
    text = description.strip()
    lead = "Pass the tool's whole input as the string argument 'input'."
    text = f"{text}\n\n{lead}" if text else lead
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        syntax = fmt.get("syntax") if isinstance(fmt.get("syntax"), str) else "formal"
        definition = fmt.get("definition")
        if isinstance(definition, str) and definition:
            text += f" It must match this {syntax} grammar:\n{definition}"
    return text


def _tool_choice(
    choice: Any,
    tools: list[dict[str, Any]],
    names: ToolNames,
    out: dict[str, Any],
    notes: list[str],
) -> list[dict[str, Any]]:
    """Set ``out["tool_choice"]``; returns the tools to send (allowed_tools filters)."""
    if choice is None:
        return tools
    if not tools:
        if choice not in ("auto", "none"):
            notes.append("tool_choice: dropped, no tool left to choose")
        return tools
    if choice in ("auto", "none", "required"):
        out["tool_choice"] = choice
        return tools
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("function", "custom") and isinstance(choice.get("name"), str):
            namespace = (
                choice.get("namespace") if isinstance(choice.get("namespace"), str) else None
            )
            chat = names.chat_name(choice["name"], namespace)
            if any(t["function"]["name"] == chat for t in tools):
                out["tool_choice"] = {"type": "function", "function": {"name": chat}}
            else:
                notes.append(f"tool_choice: '{choice['name']}' is not a tool sent, dropped")
            return tools
        if kind == "allowed_tools" and isinstance(choice.get("tools"), list):
            allowed = {
                names.chat_name(t["name"], t.get("namespace"))
                for t in choice["tools"]
                if isinstance(t, dict) and isinstance(t.get("name"), str)
            }
            kept = [t for t in tools if t["function"]["name"] in allowed]
            mode = choice.get("mode")
            if kept:
                out["tool_choice"] = mode if mode in ("auto", "required") else "auto"
            return kept
        notes.append(f"tool_choice: '{kind}' has no chat equivalent, dropped")
        return tools
    raise BadRequest(
        "'tool_choice' must be none, auto, required or an object.", param="tool_choice"
    )


# -- scalars -------------------------------------------------------------------------


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadRequest(
                "'max_output_tokens' must be a positive integer.", param="max_output_tokens"
            )
        out["max_tokens"] = limit
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if not is_number(value):
                raise BadRequest(f"'{key}' must be a number.", param=key)
            out[key] = value


def _text(text: Any, out: dict[str, Any]) -> None:
    response_format = chat_response_format(text)
    if response_format is not None:
        out["response_format"] = response_format


def chat_response_format(text: Any) -> dict[str, Any] | None:
    """The chat ``response_format`` for a Responses ``text`` field (None: plain text).

    >>> chat_response_format({"format": {"type": "json_object"}})
    {'type': 'json_object'}
    """
    if text is None:
        return None
    if not isinstance(text, dict):
        raise BadRequest("'text' must be an object.", param="text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise BadRequest("'text.format' must be an object.", param="text.format")
    kind = fmt.get("type")
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise BadRequest("'text.format.schema' must be an object.", param="text.format.schema")
        spec: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": schema}
        if isinstance(fmt.get("description"), str):
            spec["description"] = fmt["description"]
        if isinstance(fmt.get("strict"), bool):
            spec["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": spec}
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "text":
        raise BadRequest(
            "'text.format.type' must be text, json_object or json_schema.",
            param="text.format.type",
        )
    return None


def _reasoning(reasoning: Any, out: dict[str, Any]) -> None:
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise BadRequest("'reasoning' must be an object.", param="reasoning")
    effort = reasoning.get("effort")
    if effort is None:
        return
    if not isinstance(effort, str):
        raise BadRequest("'reasoning.effort' must be a string.", param="reasoning.effort")
    out["reasoning_effort"] = _EFFORTS.get(effort, effort)
