"""``/playground``: try any model, compare two to four side by side, replay a logged request.

The page is a form and empty columns; ``web/static/playground.js`` sends the
conversation to wlm's own ``/v1/chat/completions`` (one request per column, streamed,
read with fetch and a ReadableStream) with the page's session cookie, its CSRF token
and ``x-wlm-playground: 1`` instead of a key (wlm/api/proxy.py admits it as client
``playground``), then shows each reply's figures from its telemetry row
(``/playground/figures?id=<request id>``), so they are what the analytics count.

``?from=<request id>`` fills the form from a logged request (its messages and settings,
when content logging kept them); ``&replay=<model>`` also shows the logged answer in a
column of its own and sends the same conversation to ``<model>`` at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from litestar import Request, Response, get

from wlm.routing.resolve import LOCAL
from wlm.web.access import gateway_of
from wlm.web.common import reader
from wlm.web.data import NoTelemetry
from wlm.web.render import page, plain

__all__ = ["PLAYGROUND_ROUTES", "model_choices", "seed_from"]

MAX_COLUMNS = 4
DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 512
_ROLES = ("user", "assistant")
_SYSTEM_ROLES = ("system", "developer")
# The record's figures a logged column shows, as the request page names them.
_FIGURES = ("ttft_ms", "tokens_per_s", "completion_tokens", "cost_usd", "latency_ms")
# What /playground/figures answers with, and how long it waits for the row to be written.
_FIGURE_FIELDS = (
    "id",
    "model",
    "provider",
    "client",
    "status",
    "prompt_tokens",
    *_FIGURES,
)
FIGURES_WAIT_S = 10.0
_FIGURES_POLL_S = 0.2


async def model_choices(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    """The merged model list (what ``/v1/models`` lists), local engines with their state."""
    gateway = gateway_of(request)
    local_ids: dict[str, str] = {}
    if gateway.local is not None:
        for model in gateway.local.list_models():
            local_ids[model.id] = model.id
            local_ids[f"{LOCAL}/{model.id}"] = model.id
    choices = []
    for entry in await gateway.catalog.entries():
        provider = str(entry.get("provider") or "")
        local_id = local_ids.get(entry["id"]) if provider == LOCAL else None
        choices.append(
            {
                "id": entry["id"],
                "provider": provider,
                "state": entry.get("state"),
                "local_id": local_id,
            }
        )
    return choices


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return None


def _text(content: Any) -> tuple[str, int]:
    """A message's text and how many of its parts are not text (left out)."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 1
    texts, others = [], 0
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
            texts.append(str(part.get("text") or ""))
        else:
            others += 1
    return "\n".join(texts), others


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def seed_from(row: dict[str, Any]) -> dict[str, Any]:
    """What the playground's form starts with, from a logged request's row.

    The system prompt, the user and assistant messages as text, the temperature and the
    token limit, whatever dialect the client spoke (chat, Anthropic messages, Responses,
    completions). What a text form cannot hold (images, tool calls and their results) is
    left out and counted in ``left_out``. ``messages`` is empty when no content was kept.
    """
    body = _loads(row.get("request_json"))
    seed: dict[str, Any] = {
        "system": "",
        "messages": [],
        "temperature": None,
        "max_tokens": None,
        "left_out": 0,
    }
    if not isinstance(body, dict):
        if isinstance(body, str) and body:
            seed["messages"] = [{"role": "user", "content": body}]
        return seed
    systems: list[str] = []
    messages: list[dict[str, str]] = []
    left_out = 0

    def add(role: str, content: Any) -> None:
        nonlocal left_out
        text, others = _text(content)
        left_out += others
        if role in _SYSTEM_ROLES:
            if text:
                systems.append(text)
        elif role in _ROLES and text:
            messages.append({"role": role, "content": text})
        elif role not in _ROLES:
            left_out += 1  # a tool result, an unknown role

    for key in ("system", "instructions"):  # Anthropic messages, Responses
        if body.get(key):
            add("system", body[key])
    listed = body.get("messages")
    if listed is None:
        listed = body.get("input")  # Responses
    if isinstance(listed, str):
        add("user", listed)
    elif isinstance(listed, list):
        for message in listed:
            if not isinstance(message, dict):
                left_out += 1
                continue
            add(str(message.get("role") or "user"), message.get("content"))
            calls = message.get("tool_calls")
            left_out += len(calls) if isinstance(calls, list) else 0
    prompt = body.get("prompt")  # completions
    if isinstance(prompt, str) and prompt:
        add("user", prompt)
    seed["system"] = "\n\n".join(systems)
    seed["messages"] = messages
    seed["temperature"] = _number(body.get("temperature"))
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        if _number(body.get(key)) is not None:
            seed["max_tokens"] = int(body[key])
            break
    seed["left_out"] = left_out
    return seed


def _logged(row: dict[str, Any]) -> dict[str, Any]:
    """The logged answer a replay compares with: its text and its record's figures."""
    return {
        "id": row["id"],
        "model": row.get("model"),
        "provider": row.get("provider"),
        "status": row.get("status"),
        "response_text": row.get("response_text"),
        **{key: row.get(key) for key in _FIGURES},
    }


@get(["/playground", "/playground.json"])
async def playground_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """The playground; ``?from=<request id>`` loads a logged request, ``&replay=<model>``
    sends it to that model next to the logged answer."""
    gateway = gateway_of(request)
    params = request.query_params
    from_id = params.get("from", "").strip()
    replay = [m.strip() for m in params.getall("replay", []) if m.strip()][: MAX_COLUMNS - 1]
    choices = await model_choices(request)
    context: dict[str, Any] = {
        "models": choices,
        "max_columns": MAX_COLUMNS,
        "selected": [m.strip() for m in params.getall("model", []) if m.strip()][:MAX_COLUMNS],
        "system": "",
        "messages": [{"role": "user", "content": ""}],
        "temperature": DEFAULT_TEMPERATURE,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "source": None,
        "logged": None,
        "left_out": 0,
        "autorun": False,
        "telemetry_error": None,
        # With client keys but no admin key nobody can log in, and no session may stand
        # in for a key: the proxy refuses the playground's requests (docs/playground.md).
        "refused": bool(gateway.client_keys) and not gateway.admin_keys,
        "log_content": gateway.settings.log_content,
    }
    if from_id:
        context["source"] = {"id": from_id, "found": False, "content": False}
        try:
            row = await reader(request).request(from_id)
        except NoTelemetry as exc:
            row = None
            context["telemetry_error"] = str(exc)
        if row is not None:
            seed = seed_from(row)
            context["source"] = {
                "id": row["id"],
                "found": True,
                "content": bool(seed["messages"]),
                "model": row.get("model"),
            }
            context["system"] = seed["system"]
            context["left_out"] = seed["left_out"]
            if seed["messages"]:
                context["messages"] = seed["messages"]
            context["temperature"] = seed["temperature"]
            context["max_tokens"] = seed["max_tokens"]
            if replay:
                context["selected"] = replay
                context["logged"] = _logged(row)
                context["autorun"] = bool(seed["messages"]) and not context["refused"]
            elif not context["selected"] and row.get("model"):
                context["selected"] = [row["model"]]
    if not context["selected"] and choices:
        context["selected"] = [choices[0]["id"]]
    return page(request, "playground.html", context, active="/playground")


@get("/playground/figures")
async def playground_figures(request: Request[Any, Any, Any]) -> Response[Any]:
    """``?id=<request id>``: the figures of that request's telemetry row, once written.

    The row is written a moment after the answer ends, so this waits for it (up to
    :data:`FIGURES_WAIT_S`) rather than have the page poll and log a 404 for each miss.
    ``record`` is None when it did not come in time or telemetry is off (``error``).
    """
    request_id = request.query_params.get("id", "").strip()
    telemetry = reader(request)
    deadline = asyncio.get_running_loop().time() + FIGURES_WAIT_S
    row: dict[str, Any] | None = None
    error = None
    while request_id:
        try:
            row = await telemetry.request(request_id)
        except NoTelemetry as exc:
            error = str(exc)
            break
        if row is not None or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(_FIGURES_POLL_S)
    record = None
    if row is not None:
        record = {key: row.get(key) for key in _FIGURE_FIELDS}
    body = {"id": request_id, "record": plain(record), "error": error}
    return Response(content=body, media_type="application/json")


PLAYGROUND_ROUTES = [playground_page, playground_figures]
