"""OpenAI and OpenRouter wire formats for the fake upstream (shared/wire/WIRE.md sections 1 and 4).

OpenRouter speaks OpenAI's dialect with its own ids, extra fields (`provider`,
`native_finish_reason`, `cost`), processing comments, error bodies and model list, so
`OpenRouterDialect` subclasses `OpenAIDialect` and overrides only those parts.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

from tests.fakes.dialect import (
    COMPLETION_TOKENS,
    DONE,
    PROMPT_TOKENS,
    TOOL_CALLS,
    Headers,
    StreamPlan,
    compact,
    data_event,
    model_of,
    pretty,
    random_id,
    tool_name,
)
from tests.fakes.embeddings import embeddings_body
from tests.fakes.scenarios import AGENT_TOOL, Reply, agent_tool_answer, agent_tool_call

_RATE_LIMITS: Headers = (
    ("x-ratelimit-limit-requests", "30000"),
    ("x-ratelimit-limit-tokens", "150000000"),
    ("x-ratelimit-remaining-requests", "29999"),
    ("x-ratelimit-remaining-tokens", "149999993"),
    ("x-ratelimit-reset-requests", "2ms"),
    ("x-ratelimit-reset-tokens", "0s"),
)
_OA_ERRORS: dict[str, tuple[str, str, str | None, str | None]] = {
    # key: (message, type, param, code)
    "400": (
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 130017 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
    ),
    "403": (
        "Country, region, or territory not supported",
        "request_forbidden",
        None,
        "unsupported_country_region_territory",
    ),
    "404": (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        None,
        "model_not_found",
    ),
    "429": (
        "Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
        "requests",
        None,
        "rate_limit_exceeded",
    ),
    "429-quota": (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        None,
        "insufficient_quota",
    ),
    "500": (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
        None,
    ),
    "503": (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
        None,
    ),
}
_KEY_HELP = "You can find your API key at https://platform.openai.com/account/api-keys."
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted for "
    "a username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
_RETRY_STATUSES = frozenset({429, 503, 529})


def _mask(key: str) -> str:
    """OpenAI's partial echo of a wrong key: a short prefix, stars, the last four."""
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def bearer_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer <key>`, or None when absent or malformed."""
    value = headers.get("authorization", "")
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


@frozen
class ChunkContext:
    """Per-stream constants shared by every chunk of one answer."""

    cid: str
    created: int
    model: str
    usage: bool  # put "usage": null on every chunk


class OpenAIDialect:
    """OpenAI Chat Completions, legacy Completions, Embeddings and Models."""

    flavor = "openai"
    prefix = "/v1"
    chat_route = "/chat/completions"
    other_routes = frozenset({"/completions", "/embeddings"})
    retry_after = "1"

    # ---- identity and headers -------------------------------------------------------
    def _new_id(self, created: int) -> str:
        return "chatcmpl-" + random_id(29)

    def _text(self) -> str:
        return f"Hello from fake-{self.flavor}"

    def _headers(
        self, content_type: str, *, stream: bool = False, response_id: str = ""
    ) -> Headers:
        return (
            ("content-type", content_type),
            ("access-control-expose-headers", "X-Request-ID"),
            ("openai-organization", "user-fake0openai0org"),
            ("openai-processing-ms", "23"),
            ("openai-version", "2020-10-01"),
            *_RATE_LIMITS,
            ("x-request-id", "req_" + random_id(32).lower()),
        )

    def _json(self, obj: Any) -> bytes:
        return pretty(obj)

    def _reply(self, obj: Any, *, response_id: str = "") -> Reply:
        headers = self._headers("application/json", response_id=response_id)
        return Reply(200, headers, self._json(obj))

    # ---- auth and errors -------------------------------------------------------------
    def auth_error(self, headers: Mapping[str, str], api_key: str) -> Reply | None:
        """401 with OpenAI's missing-key or incorrect-key body."""
        key = bearer_key(headers)
        if key is None:
            return self.error(401, message=_NO_KEY)
        if key != api_key:
            return self.error(401, key=key)
        return None

    def _error_body(
        self, status: int, variant: str, model: str, key: str, message: str
    ) -> dict[str, Any]:
        if status == 401:
            shown = key if variant == "echo" else _mask(key)
            text = message or f"Incorrect API key provided: {shown}. {_KEY_HELP}"
            code = None if message else "invalid_api_key"
            return {
                "error": {
                    "message": text,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": code,
                }
            }
        if status == 502:
            return {
                "error": {
                    "code": 502,
                    "message": "Bad gateway.",
                    "param": None,
                    "type": "cf_bad_gateway",
                }
            }
        spec_key = f"{status}-{variant}" if variant else str(status)
        default = (
            f"Fake upstream error {status}.",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
            None,
        )
        text, kind, param, code = _OA_ERRORS.get(spec_key, _OA_ERRORS.get(str(status), default))
        return {
            "error": {
                "message": message or text.format(model=model or "gpt-4o-mini"),
                "type": kind,
                "param": param,
                "code": code,
            }
        }

    def error(
        self, status: int, *, variant: str = "", model: str = "", key: str = "", message: str = ""
    ) -> Reply:
        """The vendor's error body for `status`; `retry-after` on 429/503/529."""
        headers = self._headers("application/json")
        if status in _RETRY_STATUSES:
            headers = (*headers, ("retry-after", self.retry_after))
        body = self._error_body(status, variant, model, key, message)
        return Reply(status, headers, self._json(body))

    def not_found(self, method: str, path: str) -> Reply:
        """OpenAI's `Invalid URL` 404."""
        error = {
            "message": f"Invalid URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return Reply(404, self._headers("application/json"), self._json({"error": error}))

    # ---- chat completions ------------------------------------------------------------
    def _usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _tool_calls(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        name = tool_name(body)
        return [
            {
                "id": "call_" + random_id(24),
                "type": "function",
                "function": {"name": name, "arguments": compact(arguments).decode()},
            }
            for arguments, _ in TOOL_CALLS
        ]

    def _choice(self, message: dict[str, Any], finish: str) -> dict[str, Any]:
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}

    def _completion(self, cid: str, created: int, model: str, choice: dict[str, Any]) -> dict:
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": self._usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_fake0000",
        }

    def chat(self, body: Mapping[str, Any], *, tools: bool, stop_reason: str = "") -> Reply:
        """A `chat.completion`: text, or two parallel tool calls with `finish_reason` tool_calls."""
        if model_of(body) == AGENT_TOOL:
            return agent_tool_chat(self, body)
        created = int(time.time())
        cid = self._new_id(created)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if tools else self._text(),
            "refusal": None,
            "annotations": [],
        }
        if tools:
            message["tool_calls"] = self._tool_calls(body)
        choice = self._choice(message, stop_reason or ("tool_calls" if tools else "stop"))
        return self._reply(self._completion(cid, created, model_of(body), choice), response_id=cid)

    def _wants_usage(self, body: Mapping[str, Any]) -> bool:
        options = body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    def _chunk(self, ctx: ChunkContext, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": ctx.cid,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake0000",
            "choices": choices,
        }
        if ctx.usage or usage is not None:
            chunk["usage"] = usage
        return data_event(chunk)

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def _role_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": "", "refusal": None}

    def _content_delta(self, text: str) -> dict[str, Any]:
        return {"content": text}

    def _preamble(self) -> tuple[bytes, ...]:
        return ()

    def _stream_content_type(self) -> str:
        return "text/event-stream; charset=utf-8"

    def _tool_events(self, ctx: ChunkContext, body: Mapping[str, Any]) -> tuple[bytes, list[bytes]]:
        """First chunk (role + first call header, as observed) and the fragment chunks."""
        calls = self._tool_calls(body)
        headers = [
            {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            for i, call in enumerate(calls)
        ]
        first = self._chunk(
            ctx,
            [
                self._delta(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [headers[0]],
                        "refusal": None,
                    }
                )
            ],
        )
        fragments: list[bytes] = []
        for index, (_, pieces) in enumerate(TOOL_CALLS):
            if index:
                fragments.append(self._chunk(ctx, [self._delta({"tool_calls": [headers[index]]})]))
            for piece in pieces:
                call = {"index": index, "function": {"arguments": piece}}
                fragments.append(self._chunk(ctx, [self._delta({"tool_calls": [call]})]))
        return first, fragments

    def _midstream_error(self, ctx: ChunkContext) -> tuple[bytes, ...]:
        error = {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        return (data_event({"error": error}),)

    def chat_stream(
        self, body: Mapping[str, Any], pieces: Sequence[str], *, tools: bool, stop_reason: str = ""
    ) -> StreamPlan:
        """Role chunk, content (or tool fragments), finish chunk, optional usage chunk, [DONE]."""
        if model_of(body) == AGENT_TOOL:
            return agent_tool_stream(self, body)
        created = int(time.time())
        ctx = ChunkContext(self._new_id(created), created, model_of(body), self._null_usage(body))
        if tools:
            first, content = self._tool_events(ctx, body)
        else:
            first = self._chunk(ctx, [self._delta(self._role_delta())])
            content = [self._chunk(ctx, [self._delta(self._content_delta(p))]) for p in pieces]
        finish = stop_reason or ("tool_calls" if tools else "stop")
        tail = [self._chunk(ctx, [self._delta(self._finish_delta(), finish)])]
        if self._wants_usage(body):
            tail.append(self._chunk(ctx, [], usage=self._usage()))
        return StreamPlan(
            headers=self._headers(self._stream_content_type(), stream=True, response_id=ctx.cid),
            preamble=self._preamble(),
            head=(first,),
            content=tuple(content),
            tail=(*tail, DONE),
            terminator=(DONE,),
            midstream_error=self._midstream_error(ctx),
        )

    def _null_usage(self, body: Mapping[str, Any]) -> bool:
        # OpenAI puts "usage":null on every chunk once include_usage is set (observed).
        return self._wants_usage(body)

    def _finish_delta(self) -> dict[str, Any]:
        return {}

    # ---- models, completions, embeddings ---------------------------------------------
    def _model_entry(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1721172741, "owned_by": "system"}

    def _entries(self, models: Sequence[str | Mapping[str, Any]]) -> list[Any]:
        return [self._model_entry(m) if isinstance(m, str) else dict(m) for m in models]

    def models(self, models: Sequence[str | Mapping[str, Any]]) -> Reply:
        """`{object: list, data: [...]}`."""
        return self._reply({"object": "list", "data": self._entries(models)})

    def model(self, model_id: str, models: Sequence[str | Mapping[str, Any]]) -> Reply:
        """`GET /models/{id}`: the entry, or a 404 `model_not_found`."""
        for entry in self._entries(models):
            if entry.get("id") == model_id:
                return self._reply(entry)
        return self.error(404, model=model_id, message=f"The model '{model_id}' does not exist")

    def other(self, route: str, body: Mapping[str, Any]) -> Reply | StreamPlan | None:
        """Legacy completions and embeddings; None for anything else."""
        if route == "/completions":
            return self._text_completion(body)
        if route == "/embeddings":
            return self._reply(embeddings_body(body, model_of(body)))
        return None

    def _text_completion(self, body: Mapping[str, Any]) -> Reply | StreamPlan:
        created = int(time.time())
        cid = "cmpl-" + random_id(29)
        model = model_of(body)

        def choice(text: str, finish: str | None) -> dict[str, Any]:
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

        def frame(choices: list[Any]) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": choices,
            }

        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
        if body.get("stream") is not True:
            return self._reply({**frame([choice(" " + self._text(), "stop")]), "usage": usage})
        pieces = (" Hello", " from", " fake", "-", self.flavor)
        tail = [data_event(frame([choice("", "stop")]))]
        if self._wants_usage(body):
            tail.append(data_event({**frame([]), "usage": usage}))
        return StreamPlan(
            headers=self._headers(self._stream_content_type(), stream=True),
            preamble=self._preamble(),
            head=(),
            content=tuple(data_event(frame([choice(p, None)])) for p in pieces),
            tail=(*tail, DONE),
            terminator=(DONE,),
            midstream_error=(),
        )

    # ---- responses (POST /v1/responses, GET /v1/responses/{id}) ----------------------
    responses_route = "/responses"

    def responses(
        self, body: Mapping[str, Any], *, tools: bool, stop_reason: str = ""
    ) -> tuple[Reply, dict[str, Any]]:
        """A whole `response` object (what `stream: false` returns), and the object."""
        if model_of(body) == AGENT_TOOL:
            answer = AgentToolAnswer(body)
            return self._reply(answer.final, response_id=answer.id), answer.final
        answer = ResponsesAnswer(body, self._text(), tools, stop_reason)
        return self._reply(answer.final, response_id=answer.id), answer.final

    def responses_stream(
        self, body: Mapping[str, Any], pieces: Sequence[str], *, tools: bool, stop_reason: str = ""
    ) -> tuple[StreamPlan, dict[str, Any]]:
        """The event plan of a streamed response, and the response object it ends with."""
        if model_of(body) == AGENT_TOOL:
            answer = AgentToolAnswer(body)
            headers = self._headers(self._stream_content_type(), stream=True, response_id=answer.id)
            return answer.plan((answer.text,), headers), answer.final
        answer = ResponsesAnswer(body, "".join(pieces), tools, stop_reason)
        plan = answer.plan(
            pieces, self._headers(self._stream_content_type(), stream=True, response_id=answer.id)
        )
        return plan, answer.final

    def stored_response(self, response: Mapping[str, Any]) -> Reply:
        """`GET /v1/responses/{id}` of a response the fake kept."""
        return self._reply(dict(response))

    def response_not_found(self, response_id: str) -> Reply:
        """OpenAI's 404 for an unknown (or `store: false`) response id."""
        error = {
            "message": f"Response with id '{response_id}' not found.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return Reply(404, self._headers("application/json"), self._json({"error": error}))

    def previous_response_not_found(self, response_id: str) -> Reply:
        """OpenAI's 400 for a `previous_response_id` it does not know."""
        error = {
            "message": f"Previous response with id '{response_id}' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }
        return Reply(400, self._headers("application/json"), self._json({"error": error}))


# ---- OpenAI Responses ------------------------------------------------------------------
# Incomplete stop reasons: the chat finish_reason or the Responses reason both work.
_INCOMPLETE = {
    "length": "max_output_tokens",
    "max_output_tokens": "max_output_tokens",
    "content_filter": "content_filter",
}
_FAILED_MESSAGE = (
    "An error occurred while processing your request. You can retry your request, or contact "
    "us through our help center at help.openai.com if the error persists. Please include the "
    "request ID {request_id} in your message."
)


def _hex_id(prefix: str) -> str:
    """OpenAI's Responses ids: a prefix and 48 hex digits (`resp_`, `msg_`, `fc_`)."""
    return f"{prefix}_{secrets.token_hex(24)}"


def responses_tool_name(body: Mapping[str, Any]) -> str:
    """The name of the request's first `function` tool (Responses' flat shape)."""
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "function":
            name = tool.get("name")
            if isinstance(name, str) and name:
                return name
    return "get_weather"


def responses_usage() -> dict[str, Any]:
    """The usage every fake response reports (the same counts as chat)."""
    return {
        "input_tokens": PROMPT_TOKENS,
        "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": 0},
        "output_tokens": COMPLETION_TOKENS,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def _echoed_tools(body: Mapping[str, Any]) -> list[Any]:
    """The request's tools as OpenAI echoes them (function tools gain `strict: true`)."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    echoed: list[Any] = []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "function":
            echoed.append({"description": None, "parameters": None, "strict": True, **tool})
        else:
            echoed.append(tool)
    return echoed


def _option(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    return value if isinstance(value, dict) else {}


def response_object(
    body: Mapping[str, Any],
    response_id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    *,
    usage: dict[str, Any] | None = None,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `response` object in OpenAI's field order, echoing the request's settings."""
    reasoning = _option(body, "reasoning")
    text = _option(body, "text")
    tier = body.get("service_tier")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": bool(body.get("background", False)),
        "completed_at": created_at if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model_of(body),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "prompt_cache_retention": body.get("prompt_cache_retention"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default" if tier in (None, "auto") else tier,
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {
            "format": text.get("format") or {"type": "text"},
            "verbosity": text.get("verbosity") or "medium",
        },
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": _echoed_tools(body),
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def sse_event(event: Mapping[str, Any]) -> bytes:
    """One Responses SSE event: `event: <type>` and its compact `data:` line."""
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + compact(event) + b"\n\n"


class ResponsesAnswer:
    """One fake answer in the Responses dialect: text, or two function calls.

    `final` is the finished response object (what `stream: false` returns, what
    `response.completed` carries and what GET answers); `plan` the stream of events
    that builds it, grouped like every other dialect's stream so the scenarios can
    pace, cut or break it.
    """

    def __init__(self, body: Mapping[str, Any], text: str, tools: bool, stop_reason: str) -> None:
        self.body = body
        self.id = _hex_id("resp")
        self.created_at = int(time.time())
        self.text = text
        self.tools = tools
        self.incomplete = None if tools else _INCOMPLETE.get(stop_reason)
        self.message_id = _hex_id("msg")
        name = responses_tool_name(body)
        self.calls = [
            {
                "id": _hex_id("fc"),
                "type": "function_call",
                "status": "completed",
                "arguments": compact(arguments).decode(),
                "call_id": "call_" + random_id(24),
                "name": name,
            }
            for arguments, _ in TOOL_CALLS
        ]
        status = "incomplete" if self.incomplete else "completed"
        self.final = self._response(status, self._output(), usage=responses_usage())
        self._sequence = 0
        self._obfuscate = _option(body, "stream_options").get("include_obfuscation") is not False

    def _response(self, status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return response_object(
            self.body, self.id, self.created_at, status, output, incomplete=self.incomplete, **extra
        )

    def _message(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [self._part(text)]
        return {
            "id": self.message_id,
            "type": "message",
            "status": status,
            "content": content,
            "role": "assistant",
        }

    def _part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def _output(self) -> list[dict[str, Any]]:
        if self.tools:
            return [dict(call) for call in self.calls]
        return [self._message("incomplete" if self.incomplete else "completed", self.text)]

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return sse_event(event)

    def _delta(self, kind: str, **fields: Any) -> bytes:
        if self._obfuscate:
            fields["obfuscation"] = random_id(max(1, 16 - len(str(fields.get("delta", "")))))
        return self._event(kind, **fields)

    def plan(self, pieces: Sequence[str], headers: Headers) -> StreamPlan:
        """created, in_progress, the item events, then completed (or incomplete)."""
        lifecycle = self._response("in_progress", [])
        lifecycle["incomplete_details"] = None
        head = [
            self._event("response.created", response=lifecycle),
            self._event("response.in_progress", response=lifecycle),
        ]
        content: list[bytes] = []
        tail: list[bytes] = []
        if self.tools:
            for index, (call, (_, fragments)) in enumerate(
                zip(self.calls, TOOL_CALLS, strict=True)
            ):
                added = self._event(
                    "response.output_item.added",
                    output_index=index,
                    item={**call, "status": "in_progress", "arguments": ""},
                )
                (content if index else head).append(added)
                content += [
                    self._delta(
                        "response.function_call_arguments.delta",
                        item_id=call["id"],
                        output_index=index,
                        delta=piece,
                    )
                    for piece in fragments
                ]
                last = index == len(self.calls) - 1
                (tail if last else content).extend(
                    [
                        self._event(
                            "response.function_call_arguments.done",
                            item_id=call["id"],
                            output_index=index,
                            arguments=call["arguments"],
                        ),
                        self._event("response.output_item.done", output_index=index, item=call),
                    ]
                )
        else:
            where = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
            head += [
                self._event(
                    "response.output_item.added",
                    output_index=0,
                    item=self._message("in_progress", None),
                ),
                self._event("response.content_part.added", **where, part=self._part("")),
            ]
            content += [
                self._delta("response.output_text.delta", **where, delta=piece, logprobs=[])
                for piece in pieces
            ]
            tail += [
                self._event("response.output_text.done", **where, text=self.text, logprobs=[]),
                self._event("response.content_part.done", **where, part=self._part(self.text)),
                self._event(
                    "response.output_item.done", output_index=0, item=self.final["output"][0]
                ),
            ]
        ending = "response.incomplete" if self.incomplete else "response.completed"
        tail.append(self._event(ending, response=self.final))
        return StreamPlan(
            headers=headers,
            preamble=(),
            head=tuple(head),
            content=tuple(content),
            tail=tuple(tail),
            terminator=(),
            midstream_error=(self._failed(len(head) + min(2, len(content))),),
        )

    def _failed(self, sequence: int) -> bytes:
        """`response.failed` as the event after the first two content events."""
        request_id = "req_" + random_id(32).lower()
        error = {"code": "server_error", "message": _FAILED_MESSAGE.format(request_id=request_id)}
        response = self._response("failed", [], error=error)
        response["incomplete_details"] = None
        event = {"type": "response.failed", "sequence_number": sequence, "response": response}
        return sse_event(event)


# ---- agent-tool (tests.fakes.scenarios): one shell tool round trip, chat flavor ----------
def _agent_tool_call(body: Mapping[str, Any]) -> dict[str, Any] | None:
    call = agent_tool_call(body)
    if call is None:
        return None
    name, arguments = call
    function = {"name": name, "arguments": compact(arguments).decode()}
    return {"id": "call_" + random_id(24), "type": "function", "function": function}


def agent_tool_chat(dialect: OpenAIDialect, body: Mapping[str, Any]) -> Reply:
    """A `chat.completion` calling the agent's shell tool, or quoting its result."""
    created = int(time.time())
    cid = dialect._new_id(created)
    call = _agent_tool_call(body)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if call else agent_tool_answer(body),
        "refusal": None,
        "annotations": [],
    }
    if call:
        message["tool_calls"] = [call]
    choice = dialect._choice(message, "tool_calls" if call else "stop")
    completion = dialect._completion(cid, created, model_of(body), choice)
    return dialect._reply(completion, response_id=cid)


def agent_tool_stream(dialect: OpenAIDialect, body: Mapping[str, Any]) -> StreamPlan:
    """The same answer streamed; the call's arguments arrive in two pieces."""
    created = int(time.time())
    ctx = ChunkContext(dialect._new_id(created), created, model_of(body), dialect._null_usage(body))
    call = _agent_tool_call(body)
    first = dialect._chunk(ctx, [dialect._delta(dialect._role_delta())])
    if call:
        arguments = call["function"]["arguments"]
        header = {**call, "index": 0, "function": {**call["function"], "arguments": ""}}
        content = [dialect._chunk(ctx, [dialect._delta({"tool_calls": [header]})])]
        content += [
            dialect._chunk(
                ctx, [dialect._delta({"tool_calls": [{"index": 0, "function": {"arguments": a}}]})]
            )
            for a in (arguments[:9], arguments[9:])
        ]
    else:
        content = [dialect._chunk(ctx, [dialect._delta({"content": agent_tool_answer(body)})])]
    finish = "tool_calls" if call else "stop"
    tail = [dialect._chunk(ctx, [dialect._delta({}, finish)])]
    if dialect._wants_usage(body):
        tail.append(dialect._chunk(ctx, [], usage=dialect._usage()))
    return StreamPlan(
        headers=dialect._headers(dialect._stream_content_type(), stream=True, response_id=ctx.cid),
        preamble=dialect._preamble(),
        head=(first,),
        content=tuple(content),
        tail=(*tail, DONE),
        terminator=(DONE,),
        midstream_error=(),
    )


class AgentToolAnswer(ResponsesAnswer):
    """The agent-tool scenario in the Responses grammar: one shell `function_call`, or text."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        call = agent_tool_call(body)
        super().__init__(body, agent_tool_answer(body), False, "")
        self.call: dict[str, Any] | None = None
        if call is not None:
            name, arguments = call
            self.call = {
                "id": _hex_id("fc"),
                "type": "function_call",
                "status": "completed",
                "arguments": compact(arguments).decode(),
                "call_id": "call_" + random_id(24),
                "name": name,
            }
            self.final = self._response("completed", [self.call], usage=responses_usage())

    def plan(self, pieces: Sequence[str], headers: Headers) -> StreamPlan:
        """The text answer as usual; the call as added, two argument deltas, done, completed."""
        call = self.call
        if call is None:
            return super().plan(pieces, headers)
        lifecycle = self._response("in_progress", [])
        lifecycle["incomplete_details"] = None
        arguments = call["arguments"]
        where = {"item_id": call["id"], "output_index": 0}
        added = {**call, "status": "in_progress", "arguments": ""}
        return StreamPlan(
            headers=headers,
            preamble=(),
            head=(
                self._event("response.created", response=lifecycle),
                self._event("response.in_progress", response=lifecycle),
                self._event("response.output_item.added", output_index=0, item=added),
            ),
            content=tuple(
                self._delta("response.function_call_arguments.delta", **where, delta=piece)
                for piece in (arguments[:9], arguments[9:])
            ),
            tail=(
                self._event("response.function_call_arguments.done", **where, arguments=arguments),
                self._event("response.output_item.done", output_index=0, item=call),
                self._event("response.completed", response=self.final),
            ),
            terminator=(),
            midstream_error=(),
        )
