"""OpenAI and OpenRouter wire formats for the fake upstream (shared/wire/WIRE.md sections 1 and 4).

OpenRouter speaks OpenAI's dialect with its own ids, extra fields (`provider`,
`native_finish_reason`, `cost`), processing comments, error bodies and model list, so
`OpenRouterDialect` subclasses `OpenAIDialect` and overrides only those parts.
"""

from __future__ import annotations

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
from tests.fakes.scenarios import Reply

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
