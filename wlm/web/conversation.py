"""A stored conversation, from its JSON columns to what the request page shows.

Pure functions over the ``request_log`` row: the client's request body (messages,
prompt or input), the reply text, the reasoning and the tool calls. Whatever does not
parse is shown as the raw text rather than dropped; nothing here builds HTML, so the
template's autoescaping covers every byte a client or a model wrote.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypedDict

__all__ = [
    "ConversationView",
    "MessageView",
    "Part",
    "ToolCall",
    "conversation_view",
    "json_or_text",
]


class Part(TypedDict):
    """A piece of a message's content."""

    kind: Literal["text", "image", "json"]
    text: str


class ToolCall(TypedDict):
    id: str
    name: str
    arguments: str


class MessageView(TypedDict):
    """One message as the page shows it; every key present, so the template may test any."""

    role: str
    name: str | None
    tool_call_id: str | None
    parts: list[Part]
    tool_calls: list[ToolCall]


class ConversationView(TypedDict):
    logged: bool
    messages: list[MessageView]
    prompt: str | None
    input: str | None
    response_text: str | None
    reasoning_text: str | None
    tool_calls: list[ToolCall]


def json_or_text(text: Any) -> Any:
    """A stored JSON column parsed; the text itself when it does not parse (shown, or
    loaded into the playground, as it is); anything not a string as it is (None)."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _dump(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def _parts(content: Any) -> list[Part]:
    """A message's content as parts: text, image (its URL, data URLs shortened) or JSON."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"kind": "text", "text": content}]
    if not isinstance(content, list):
        return [{"kind": "json", "text": _dump(content)}]
    parts: list[Part] = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append({"kind": "text", "text": str(part.get("text", ""))})
        elif isinstance(part, dict) and part.get("type") == "image_url":
            url = part.get("image_url", {})
            url = url.get("url", "") if isinstance(url, dict) else str(url)
            if url.startswith("data:"):
                url = url[: url.find(",") + 1] + "…" if "," in url else "data:…"
            parts.append({"kind": "image", "text": url})
        else:
            parts.append({"kind": "json", "text": _dump(part)})
    return parts


def _tool_calls(calls: Any) -> list[ToolCall]:
    """OpenAI-shaped tool calls as (id, name, arguments pretty-printed when JSON)."""
    if not isinstance(calls, list):
        return [] if calls is None else [{"id": "", "name": "", "arguments": _dump(calls)}]
    out: list[ToolCall] = []
    for call in calls:
        if not isinstance(call, dict):
            out.append({"id": "", "name": "", "arguments": _dump(call)})
            continue
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        arguments = function.get("arguments", call.get("arguments", ""))
        parsed = json_or_text(arguments)
        out.append(
            {
                "id": str(call.get("id") or ""),
                "name": str(function.get("name") or call.get("name") or ""),
                "arguments": _dump(parsed) if parsed not in (None, "") else "",
            }
        )
    return out


def _unknown(value: Any) -> MessageView:
    """Something in place of a message (or of the message list), shown as it is."""
    return {
        "role": "?",
        "name": None,
        "tool_call_id": None,
        "parts": _parts(_dump(value)),
        "tool_calls": [],
    }


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _messages(messages: Any) -> list[MessageView]:
    if not isinstance(messages, list):
        return [_unknown(messages)]
    out: list[MessageView] = []
    for message in messages:
        if not isinstance(message, dict):
            out.append(_unknown(message))
            continue
        out.append(
            {
                "role": str(message.get("role", "?")),
                "name": _text_or_none(message.get("name")),
                "tool_call_id": _text_or_none(message.get("tool_call_id")),
                "parts": _parts(message.get("content")),
                "tool_calls": _tool_calls(message.get("tool_calls")),
            }
        )
    return out


def conversation_view(row: dict[str, Any]) -> ConversationView:
    """What the request page shows of ``row``'s conversation (``logged`` False when none)."""
    request = json_or_text(row.get("request_json"))
    logged = any(
        row.get(key) is not None
        for key in ("request_json", "response_text", "reasoning_text", "tool_calls_json")
    )
    view: ConversationView = {
        "logged": logged,
        "messages": [],
        "prompt": None,
        "input": None,
        "response_text": row.get("response_text"),
        "reasoning_text": row.get("reasoning_text"),
        "tool_calls": _tool_calls(json_or_text(row.get("tool_calls_json"))),
    }
    if isinstance(request, dict):
        # Anthropic's system and the Responses instructions sit beside the messages.
        system = [
            {"role": "system", "content": request[key]}
            for key in ("system", "instructions")
            if request.get(key)
        ]
        messages = request.get("messages")
        if isinstance(messages, list):
            view["messages"] = _messages(system + messages)
        elif "messages" in request:
            view["messages"] = _messages(messages)
        elif system:
            view["messages"] = _messages(system)
        if "prompt" in request:
            view["prompt"] = _dump(request["prompt"])
        if "input" in request:
            view["input"] = _dump(request["input"])
    elif request is not None:
        view["prompt"] = _dump(request)
    return view
