"""Anthropic Messages wire format for the fake upstream (shared/wire/WIRE.md section 2).

Named SSE events, no `[DONE]`, `{"type": "ping"}` with its odd spacing, and the whitespace
Anthropic pads inside the closing brace of most event payloads (observed in every
recording). Bodies are compact JSON; errors carry `request_id`; rate-limit headers use
RFC 3339 reset times.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from tests.fakes.dialect import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    TOOL_CALLS,
    Headers,
    StreamPlan,
    compact,
    model_of,
    random_id,
    tool_name,
)
from tests.fakes.scenarios import (
    AGENT_TOOL,
    AGENT_TOOL_PREAMBLE,
    Reply,
    agent_tool_answer,
    agent_tool_call,
)

PING = b'event: ping\ndata: {"type": "ping"}\n\n'
# Space counts seen before the closing brace in the recordings, cycled deterministically.
_PADS = (2, 13, 5, 4, 12, 8, 15, 7, 3, 10, 6)
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "messages: at least one message is required"),
    401: ("authentication_error", "invalid x-api-key"),
    402: (
        "billing_error",
        "Your credit balance is too low to access the Anthropic API. Please "
        "go to Plans & Billing to upgrade or purchase credits.",
    ),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization (fake) of 50 "
        "requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. "
        "You can see the response headers for current usage. Please reduce the prompt length "
        "or the maximum tokens requested, or try again later.",
    ),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
_RETRY_STATUSES = frozenset({429, 503, 529})
_NO_RETRY_STATUSES = frozenset({401, 403, 404})
_DISPLAY_NAMES = {
    "claude-sonnet-4-5-20250929": ("Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    "claude-haiku-4-5-20251001": ("Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
    "claude-opus-4-1-20250805": ("Claude Opus 4.1", "2025-08-05T00:00:00Z"),
}
_TOOL_PREAMBLE = "I'll check both cities."
_STOP_SEQUENCE = "###"
# The `thinking` scenario, shaped like the recorded thinking stream: the thinking text in
# pieces, then an empty `thinking_delta` and the `signature_delta` (observed just before
# the thinking block stops), then the answer in a second block.
THINKING_PIECES = ("The user wants", " a greeting.", "\n\nOne short line will do.")
THINKING_SIGNATURE = "EuYDCmMIDBgCKkBfakeSignature0123456789+/abcdefghijklmnopqrstuvwxyz=="
THINKING_ANSWER = ("Hello from fake-anthropic,", " after some thought.")


def _usage(output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": PROMPT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
        "inference_geo": "not_available",
    }


def _padded(obj: Any, pad: int) -> bytes:
    """Compact JSON with `pad` spaces before the final brace, like Anthropic's events."""
    return compact(obj)[:-1] + b" " * pad + b"}"


class _Events:
    """Builds one stream's named events, cycling the padding widths."""

    def __init__(self) -> None:
        self._count = 0

    def __call__(self, obj: dict[str, Any]) -> bytes:
        pad = _PADS[self._count % len(_PADS)]
        self._count += 1
        return b"event: " + obj["type"].encode() + b"\ndata: " + _padded(obj, pad) + b"\n\n"


class AnthropicDialect:
    """Anthropic Messages, count_tokens and Models."""

    flavor = "anthropic"
    prefix = "/v1"
    chat_route = "/messages"
    other_routes = frozenset({"/messages/count_tokens"})
    retry_after = "1"

    def _headers(self, content_type: str, *, stream: bool = False, request_id: str = "") -> Headers:
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        headers: list[tuple[str, str]] = [("content-type", content_type)]
        if stream:
            headers.append(("cache-control", "no-cache"))
        headers.append(("request-id", request_id or _request_id()))
        headers.append(("anthropic-organization-id", "00000000-fake-4455-b901-3f7d54e9a012"))
        for family, limit in (
            ("input-tokens", 4000000),
            ("output-tokens", 800000),
            ("requests", 20000),
            ("tokens", 4800000),
        ):
            headers += [
                (f"anthropic-ratelimit-{family}-limit", str(limit)),
                (f"anthropic-ratelimit-{family}-remaining", str(limit - 1)),
                (f"anthropic-ratelimit-{family}-reset", reset),
            ]
        headers.append(("x-robots-tag", "none"))
        return tuple(headers)

    def _reply(self, obj: Any) -> Reply:
        return Reply(200, self._headers("application/json"), compact(obj))

    # ---- auth and errors -------------------------------------------------------------
    def auth_error(self, headers: Mapping[str, str], api_key: str) -> Reply | None:
        """401 for a missing or wrong key; 400 when `anthropic-version` is missing.

        The key may come as `x-api-key` (the documented header, what proxies send) or as
        `Authorization: Bearer` (what the installed anthropic SDK 2.x sends).
        """
        key = presented_key(headers)
        if not key:
            return self.error(401, message="x-api-key header is required")
        if key != api_key:
            return self.error(401)
        if not headers.get("anthropic-version"):
            return self.error(400, message="anthropic-version: header is required")
        return None

    def error(
        self, status: int, *, variant: str = "", model: str = "", key: str = "", message: str = ""
    ) -> Reply:
        """`{"type":"error","error":{type,message},"request_id"}` with matching headers."""
        default = (
            "api_error" if status >= 500 else "invalid_request_error",
            f"Fake upstream error {status}.",
        )
        kind, text = _ERRORS.get(status, default)
        if status == 401 and variant == "echo":
            text = f"invalid x-api-key: {key}"
        text = message or text.replace("{model}", model or "claude-unknown")
        request_id = _request_id()
        headers = self._headers("application/json", request_id=request_id)
        if status in _RETRY_STATUSES:
            headers = (*headers, ("retry-after", self.retry_after))
        if status in _NO_RETRY_STATUSES:
            headers = (*headers, ("x-should-retry", "false"))
        body = {"type": "error", "error": {"type": kind, "message": text}, "request_id": request_id}
        return Reply(status, headers, compact(body))

    def not_found(self, method: str, path: str) -> Reply:
        """Anthropic's 404 for an unknown route."""
        return self.error(404, message="Not Found")

    # ---- messages --------------------------------------------------------------------
    def _tool_blocks(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        name = tool_name(body)
        return [
            {
                "type": "tool_use",
                "id": "toolu_01" + random_id(22),
                "name": name,
                "input": arguments,
                "caller": {"type": "direct"},
            }
            for arguments, _ in TOOL_CALLS
        ]

    def chat(self, body: Mapping[str, Any], *, tools: bool, stop_reason: str = "") -> Reply:
        """A `message`: one text block, or text plus two `tool_use` blocks."""
        if model_of(body) == AGENT_TOOL:
            blocks, reason = self._agent_tool_blocks(body)
            return self._reply(_message(body, blocks, reason, COMPLETION_TOKENS))
        text = _TOOL_PREAMBLE if tools else f"Hello from fake-{self.flavor}"
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if tools:
            content += self._tool_blocks(body)
        reason = stop_reason or ("tool_use" if tools else "end_turn")
        return self._reply(_message(body, content, reason, COMPLETION_TOKENS))

    def chat_stream(
        self, body: Mapping[str, Any], pieces: Sequence[str], *, tools: bool, stop_reason: str = ""
    ) -> StreamPlan:
        """message_start, text block (+ tool_use blocks), message_delta, message_stop."""
        if model_of(body) == AGENT_TOOL:
            return self._agent_tool_stream(body)
        event = _Events()
        message = _message(body, [], None, 1)
        head = (
            event({"type": "message_start", "message": message}),
            event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                }
            ),
            PING,
        )

        def delta(index: int, payload: dict[str, Any]) -> bytes:
            return event({"type": "content_block_delta", "index": index, "delta": payload})

        def stop(index: int) -> bytes:
            return event({"type": "content_block_stop", "index": index})

        content: list[bytes] = []
        if tools:
            content += [delta(0, {"type": "text_delta", "text": _TOOL_PREAMBLE}), stop(0)]
            for offset, block in enumerate(self._tool_blocks(body)):
                index = offset + 1
                start = {**block, "input": {}}
                content.append(
                    event({"type": "content_block_start", "index": index, "content_block": start})
                )
                content.append(delta(index, {"type": "input_json_delta", "partial_json": ""}))
                content += [
                    delta(index, {"type": "input_json_delta", "partial_json": piece})
                    for piece in TOOL_CALLS[offset][1]
                ]
                content.append(stop(index))
        else:
            content += [delta(0, {"type": "text_delta", "text": piece}) for piece in pieces]
        usage = {
            "input_tokens": PROMPT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": COMPLETION_TOKENS,
        }
        reason = stop_reason or ("tool_use" if tools else "end_turn")
        finish = event(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": reason,
                    "stop_sequence": _stop_sequence(reason),
                    "stop_details": None,
                },
                "usage": usage,
            }
        )
        message_stop = event({"type": "message_stop"})
        tail = (finish, message_stop) if tools else (stop(0), finish, message_stop)
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return StreamPlan(
            headers=self._headers("text/event-stream; charset=utf-8", stream=True),
            preamble=(),
            head=head,
            content=tuple(content),
            tail=tail,
            terminator=(message_stop,),
            midstream_error=(b"event: error\ndata: " + compact(error) + b"\n\n",),
        )

    # ---- agent-tool (tests.fakes.scenarios) ------------------------------------------
    def _agent_tool_blocks(self, body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """Text and a shell `tool_use` while no tool result came back, else text quoting it."""
        call = agent_tool_call(body)
        if call is None:
            return [{"type": "text", "text": agent_tool_answer(body)}], "end_turn"
        name, arguments = call
        use = {"type": "tool_use", "id": "toolu_01" + random_id(22), "name": name}
        text = {"type": "text", "text": AGENT_TOOL_PREAMBLE}
        return [text, {**use, "input": arguments}], "tool_use"

    def _agent_tool_stream(self, body: Mapping[str, Any]) -> StreamPlan:
        """The agent-tool answer streamed: one block after the other, arguments in pieces."""
        event = _Events()
        blocks, reason = self._agent_tool_blocks(body)
        content: list[bytes] = []
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                start: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": block["text"]}]
            else:
                arguments = compact(block["input"]).decode()
                start = {**block, "input": {}}
                deltas = [
                    {"type": "input_json_delta", "partial_json": piece}
                    for piece in (arguments[:9], arguments[9:])
                ]
            content.append(
                event({"type": "content_block_start", "index": index, "content_block": start})
            )
            content += [
                event({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
            ]
            content.append(event({"type": "content_block_stop", "index": index}))
        usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}
        finish = event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None, "stop_details": None},
                "usage": usage,
            }
        )
        message_stop = event({"type": "message_stop"})
        return StreamPlan(
            headers=self._headers("text/event-stream; charset=utf-8", stream=True),
            preamble=(),
            head=(event({"type": "message_start", "message": _message(body, [], None, 1)}),),
            content=tuple(content),
            tail=(finish, message_stop),
            terminator=(message_stop,),
            midstream_error=(),
        )

    # ---- thinking ---------------------------------------------------------------------
    def thinking_chat(self, body: Mapping[str, Any]) -> Reply:
        """A `message` with a signed `thinking` block, then a `text` block, ending end_turn."""
        content = [
            {
                "type": "thinking",
                "thinking": "".join(THINKING_PIECES),
                "signature": THINKING_SIGNATURE,
            },
            {"type": "text", "text": "".join(THINKING_ANSWER)},
        ]
        return self._reply(_message(body, content, "end_turn", COMPLETION_TOKENS))

    def thinking_stream(self, body: Mapping[str, Any]) -> StreamPlan:
        """The same answer streamed: thinking block 0 (deltas, signature), text block 1."""
        event = _Events()
        message = _message(body, [], None, 1)

        def start(index: int, block: dict[str, Any]) -> bytes:
            return event({"type": "content_block_start", "index": index, "content_block": block})

        def delta(index: int, payload: dict[str, Any]) -> bytes:
            return event({"type": "content_block_delta", "index": index, "delta": payload})

        def stop(index: int) -> bytes:
            return event({"type": "content_block_stop", "index": index})

        head = (
            event({"type": "message_start", "message": message}),
            start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            PING,
        )
        content = [
            *(delta(0, {"type": "thinking_delta", "thinking": p}) for p in THINKING_PIECES),
            delta(0, {"type": "thinking_delta", "thinking": ""}),
            delta(0, {"type": "signature_delta", "signature": THINKING_SIGNATURE}),
            stop(0),
            start(1, {"type": "text", "text": ""}),
            *(delta(1, {"type": "text_delta", "text": p}) for p in THINKING_ANSWER),
        ]
        usage = {
            "input_tokens": PROMPT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": COMPLETION_TOKENS,
        }
        finish = event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None, "stop_details": None},
                "usage": usage,
            }
        )
        message_stop = event({"type": "message_stop"})
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return StreamPlan(
            headers=self._headers("text/event-stream; charset=utf-8", stream=True),
            preamble=(),
            head=head,
            content=tuple(content),
            tail=(stop(1), finish, message_stop),
            terminator=(message_stop,),
            midstream_error=(b"event: error\ndata: " + compact(error) + b"\n\n",),
        )

    # ---- models and count_tokens -----------------------------------------------------
    def _entry(self, model: str | Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(model, str):
            return dict(model)
        name, created = _DISPLAY_NAMES.get(model, (model, "2025-01-01T00:00:00Z"))
        return {"type": "model", "id": model, "display_name": name, "created_at": created}

    def models(self, models: Sequence[str | Mapping[str, Any]]) -> Reply:
        """`{data, has_more, first_id, last_id}`, newest first as given."""
        data = [self._entry(m) for m in models]
        return self._reply(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    def model(self, model_id: str, models: Sequence[str | Mapping[str, Any]]) -> Reply:
        """`GET /v1/models/{id}`, or `not_found_error`."""
        for entry in (self._entry(m) for m in models):
            if entry.get("id") == model_id:
                return self._reply(entry)
        return self.error(404, model=model_id)

    def other(self, route: str, body: Mapping[str, Any]) -> Reply | StreamPlan | None:
        """`POST /v1/messages/count_tokens`; None for anything else."""
        if route == "/messages/count_tokens":
            return self._reply({"input_tokens": PROMPT_TOKENS})
        return None


def presented_key(headers: Mapping[str, str]) -> str:
    """The API key from `x-api-key`, else from `Authorization: Bearer`, else ""."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, bearer = headers.get("authorization", "").partition(" ")
    return bearer.strip() if scheme.lower() == "bearer" else ""


def _stop_sequence(stop_reason: str) -> str | None:
    """The matched sequence Anthropic reports with `stop_sequence`, else None."""
    return _STOP_SEQUENCE if stop_reason == "stop_sequence" else None


def _message(
    body: Mapping[str, Any],
    content: list[dict[str, Any]],
    stop_reason: str | None,
    output_tokens: int,
) -> dict[str, Any]:
    """A `message` as Anthropic sends it: whole, or empty in `message_start`."""
    return {
        "model": model_of(body),
        "id": _message_id(),
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": _stop_sequence(stop_reason) if stop_reason else None,
        "stop_details": None,
        "usage": _usage(output_tokens),
    }


def _message_id() -> str:
    return "msg_01" + random_id(22)


def _request_id() -> str:
    return "req_011C" + random_id(20)
