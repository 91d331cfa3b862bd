"""``/playground``: try any model, compare two to four side by side, replay a logged request.

The page is a form and empty columns; ``web/static/playground.js`` sends the
conversation to wlm's own ``/v1/chat/completions`` (one request per column, streamed,
read with fetch and a ReadableStream) with the page's session cookie, its CSRF token
and ``x-wlm-playground: 1`` instead of a key (wlm/api/proxy.py admits it as client
``playground``), then shows each reply's figures from its telemetry row
(``/playground/figures?id=<request id>``), so they are what the analytics count.

``?from=<request id>`` fills the form from a logged request (its messages and settings,
when content logging kept them); ``&replay=<model>`` also shows the logged answer in a
column of its own and sends the same conversation to ``<model>``: at once when the
browser came from that request's page (:func:`from_request_page`), else on a click.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response, get

from wlm.routing.resolve import LOCAL
from wlm.sessions import playground_refusal
from wlm.web.access import gateway_of, session_of
from wlm.web.common import reader
from wlm.web.conversation import json_or_text
from wlm.web.data import NoTelemetry
from wlm.web.render import page, plain

__all__ = ["PLAYGROUND_ROUTES", "from_request_page", "model_choices", "seed_from"]

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


async def model_choices(
    request: Request[Any, Any, Any], *, wait: bool = True
) -> list[dict[str, Any]]:
    """The merged model list (what ``/v1/models`` lists), local engines with their state.

    ``wait=False`` takes the cached lists as they are, even stale, rather than wait for
    a provider's (a page where the list is an extra, not the point).
    """
    gateway = gateway_of(request)
    local_ids: dict[str, str] = {}
    if gateway.local is not None:
        for model in gateway.local.list_models():
            local_ids[model.id] = model.id
            local_ids[f"{LOCAL}/{model.id}"] = model.id
    choices = []
    for entry in await gateway.catalog.entries(wait=wait):
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
    body = json_or_text(row.get("request_json"))
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


def from_request_page(request: Request[Any, Any, Any]) -> bool:
    """Whether the browser says this page was opened from one of wlm's request pages.

    A replay sends requests as soon as the page loads, on the admin's session, so a link
    from anywhere else must not start one: another site's link (it may pass through
    ``/login?next=...`` first) could have the admin replay a prompt a client logged (its
    own x-request-id is a ``from=``) on an expensive model. Both must hold:

    - ``Sec-Fetch-Site: same-origin``: the browser sets it, no page can, and a
      navigation that began on another site stays ``cross-site`` through redirects;
    - a ``Referer`` whose path is a ``/requests/`` page (wlm's pages send it to
      themselves, ``referrer-policy: same-origin``): after logging in it is ``/login``.

    Without them (a typed URL, a bookmark, a browser that sends no fetch metadata, such
    as over plain http to a LAN address) the form loads and a click on Replay sends it.
    """
    headers = request.headers
    if headers.get("sec-fetch-site") != "same-origin":
        return False
    return urlsplit(headers.get("referer", "")).path.startswith("/requests/")


@get(["/playground", "/playground.json"])
async def playground_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """The playground; ``?from=<request id>`` loads a logged request, ``&replay=<model>``
    sends it to that model next to the logged answer (at once only when the browser came
    from the request's page, else on a click)."""
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
        "confirm_replay": False,  # a replay from a link: loaded, sent on a click
        "telemetry_error": None,
        # Why the proxy would refuse this session's requests (the same rule), or None.
        "refused": playground_refusal(
            session_of(request),
            admin_keys=bool(gateway.admin_keys),
            client_keys=bool(gateway.client_keys),
        ),
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
                runnable = bool(seed["messages"]) and not context["refused"]
                context["autorun"] = runnable and from_request_page(request)
                context["confirm_replay"] = runnable and not context["autorun"]
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
    The id is the row's own (the page sends no x-request-id, so its answer's
    ``x-request-id`` is the row id): each look is one query, not a second one for a
    client's own id.
    """
    request_id = request.query_params.get("id", "").strip()
    telemetry = reader(request)
    deadline = asyncio.get_running_loop().time() + FIGURES_WAIT_S
    row: dict[str, Any] | None = None
    error = None
    while request_id:
        try:
            row = await telemetry.request(request_id, client_ids=False)
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
