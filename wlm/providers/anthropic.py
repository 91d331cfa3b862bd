"""Anthropic Messages behind the OpenAI surface: the I/O shell around wlm.translate.

The adapter injects ``x-api-key`` and ``anthropic-version``, forwards a client's
``anthropic-beta`` unchanged, and leaves every mapping decision to the pure
functions in :mod:`wlm.translate` (documented in docs/providers/anthropic.md).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

import msgspec

from wlm.config import ProviderConfig
from wlm.errors import BadRequest, Failure, GatewayError, render_error_event
from wlm.providers.accounting import ResponseAccount
from wlm.providers.base import (
    Call,
    ModelEntry,
    PassthroughRelay,
    Progress,
    StreamRelay,
    answer_object,
    decode_event_json,
    malformed_event,
)
from wlm.providers.chunks import chunk_from_dict
from wlm.providers.openai_compat import rewrite_model
from wlm.sse import SSEEvent, SSEParser
from wlm.tracecontext import TRACE_HEADERS
from wlm.translate import (
    AnthropicStreamTranslator,
    anthropic_error_to_openai,
    from_anthropic_response,
    to_anthropic_request,
)
from wlm.translate.anthropic_response import finish_reason_from
from wlm.translate.messages_errors import messages_error_event
from wlm.translate.messages_native import for_anthropic
from wlm.translate.messages_response import chat_usage_of_messages
from wlm.transport import Transport, UpstreamRequest, UpstreamResponse, read_json

__all__ = ["ANTHROPIC_VERSION", "AnthropicAdapter"]

ANTHROPIC_VERSION = "2023-06-01"
_decode = msgspec.json.decode
_encode = msgspec.json.encode
_DONE = b"data: [DONE]\n\n"
# The forwarded client headers Anthropic gets (no OpenAI organization or project).
_PASSED_HEADERS = frozenset(("anthropic-beta", *TRACE_HEADERS))


class AnthropicRelay:
    """Anthropic events in, OpenAI chunks out, through the pure stream translator."""

    __slots__ = ("_parser", "_translator", "account", "done", "token_seen")

    def __init__(self, call: Call, account: ResponseAccount) -> None:
        self._translator = AnthropicStreamTranslator(
            model=call.model, created=int(time.time()), include_usage=call.client_wants_usage
        )
        self._parser = SSEParser()
        self.account = account
        self.done = False
        self.token_seen = False

    def _emit(self, chunks: list[dict[str, Any]]) -> list[bytes]:
        out = []
        for chunk in chunks:
            if self.account.add_chunk(chunk_from_dict(chunk)):
                self.token_seen = True
            out.append(b"data: " + _encode(chunk) + b"\n\n")
        translator = self._translator
        if translator.usage is not None:
            self.account.usage = translator.usage
        if translator.done and not self.done:
            self.done = True
            if translator.error is None:
                out.append(_DONE)
        return out

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        for event in self._parser.feed(chunk):
            out += self._event(event)
            if self.done:
                break
        return out

    def _event(self, event: SSEEvent) -> list[bytes]:
        data = event.data
        if data is None:
            return []
        payload = decode_event_json(data)
        if payload is None:
            self.done = True
            return malformed_event(self.account)
        if payload.get("type") == "message_start":
            # The chunks carry the client's model name; telemetry wants the one upstream.
            message = payload.get("message")
            if isinstance(message, dict) and isinstance(message.get("model"), str):
                self.account.upstream_model = message["model"]
        return self._emit(self._translator.feed(event.event, payload))

    def fail(self, failure: Failure) -> list[bytes]:
        self.done = True
        return [render_error_event(failure)]

    def end(self) -> list[bytes]:
        out: list[bytes] = []
        for event in self._parser.finish():
            if not self.done:
                out += self._event(event)
        if self.done:
            return out
        out += self._emit(self._translator.finish())
        self.done = True
        return out


class MessagesPassthroughRelay(PassthroughRelay):
    """A native Messages stream, passed through event by event (only ``model`` in
    ``message_start`` set back to the client's name), read on the way for telemetry:
    usage, stop reason, text, thinking and tool calls, straight from the events."""

    __slots__ = ("_model", "_tools", "_usage")

    def __init__(self, call: Call, account: ResponseAccount) -> None:
        super().__init__(account)
        self._model = call.model
        self._usage: dict[str, Any] = {}  # Anthropic's usage, merged as it is reported
        self._tools: dict[int, dict[str, Any]] = {}  # block index -> tool call

    def _read(self, block: bytes, data: bytes) -> bytes | None:
        payload = decode_event_json(data)
        if payload is None:
            return None
        return self._take(block, payload)

    def _take(self, block: bytes, payload: dict[str, Any]) -> bytes:
        """Account for one event (``payload``, decoded from ``block``); what the client gets."""
        kind = payload.get("type")
        if kind == "content_block_delta":
            self._delta(payload)
        elif kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                self._add_usage(message.get("usage"))
                if isinstance(message.get("model"), str):
                    self.account.upstream_model = message["model"]
                    if message["model"] != self._model:
                        return rewrite_model(block, self._model)
        elif kind == "content_block_start":
            content = payload.get("content_block")
            if isinstance(content, dict) and content.get("type") == "tool_use":
                self._tools[payload.get("index", 0)] = {
                    "id": content.get("id"),
                    "type": "function",
                    "function": {"name": content.get("name") or "", "arguments": ""},
                }
        elif kind == "message_delta":
            self._add_usage(payload.get("usage"))
            delta = payload.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.account.finish_reason = finish_reason_from(delta["stop_reason"])
        elif kind == "message_stop":
            self.done = True
            self._settle()
        elif kind == "error":
            self.done = True
            self._settle()
            self.account.error = Failure.from_event(payload.get("error"), str)
        return block

    def _delta(self, payload: dict[str, Any]) -> None:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        account = self.account
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            self.token_seen = True
            account.add_text(delta["text"])
        elif kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            self.token_seen = True
            account.add_reasoning(delta["thinking"])
        elif kind == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            self.token_seen = True
            call = self._tools.get(payload.get("index", 0))
            if call is not None:
                call["function"]["arguments"] += delta["partial_json"]

    def _add_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            self.account.usage = chat_usage_of_messages(self._usage)

    def _settle(self) -> None:
        if self._tools:
            self.account.add_tool_calls(self._tools[i] for i in sorted(self._tools))

    def fail(self, failure: Failure) -> list[bytes]:
        self.done = True
        return [messages_error_event(failure.status, failure.message, failure.type)]


class AnthropicAdapter:
    """Adapter for the Anthropic Messages API: chat calls translated, Messages native."""

    def __init__(
        self, config: ProviderConfig, transport: Transport, default_max_tokens: int = 4096
    ) -> None:
        self._config = config
        self.transport = transport
        self.default_max_tokens = default_max_tokens
        self._headers = {
            "content-type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            "accept-encoding": "gzip, deflate",
        }
        if config.api_key:
            self._headers["x-api-key"] = config.api_key

    @property
    def config(self) -> ProviderConfig:
        return self._config

    async def open(self, call: Call, progress: Progress) -> UpstreamResponse:
        return await self.transport.send(self.prepare(call))

    def prepare(self, call: Call) -> UpstreamRequest:
        headers = self._headers
        passed = [(k, v) for k, v in call.forwarded_headers if k in _PASSED_HEADERS and v]
        if passed:
            headers = {**headers, **dict(passed)}
        if call.endpoint in _NATIVE:
            fitted = for_anthropic(call.body, call.upstream_model)
            body = call.raw if fitted is None else _encode(fitted)
            url = f"{self._config.base_url}/v1/{call.endpoint}"
            return UpstreamRequest("POST", url, headers, body)
        if call.endpoint != "chat/completions":
            raise BadRequest(
                f"Provider '{self._config.name}' (Anthropic) has no /v1/{call.endpoint} endpoint; "
                "use /v1/chat/completions.",
                param="model",
                code="unsupported_endpoint",
            )
        payload = to_anthropic_request(
            call.body,
            upstream_model=call.upstream_model,
            default_max_tokens=self.default_max_tokens,
        )
        return UpstreamRequest(
            "POST", f"{self._config.base_url}/v1/messages", headers, _encode(payload)
        )

    def relay(self, call: Call, account: ResponseAccount) -> StreamRelay:
        if call.endpoint == "messages":
            return MessagesPassthroughRelay(call, account)
        return AnthropicRelay(call, account)

    def finish_response(self, call: Call, body: bytes, account: ResponseAccount) -> bytes:
        parsed = answer_object(body, "Anthropic")
        if call.endpoint == "messages/count_tokens":
            return body
        out = from_anthropic_response(parsed, model=call.model, created=int(time.time()))
        if call.endpoint == "messages":  # native: the body as it came, model set back
            account.add_response(out)
            account.upstream_model = _str(parsed.get("model"))
            if parsed.get("model") not in (call.model, None):
                return rewrite_model(body, call.model)
            return body
        account.add_response(out)
        account.upstream_model = (
            parsed.get("model") if isinstance(parsed.get("model"), str) else None
        )
        return _encode(out)

    def upstream_error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        return anthropic_error_to_openai(status, body, retry_after)

    async def list_models(self) -> list[ModelEntry]:
        headers = {k: v for k, v in self._headers.items() if k != "content-type"}
        entries: list[ModelEntry] = []
        query = "limit=1000"
        for _ in range(20):  # pages
            url = f"{self._config.base_url}/v1/models?{query}"
            page = await read_json(
                self.transport, UpstreamRequest("GET", url, headers, timeout_s=10.0)
            )
            if not isinstance(page, dict):
                break
            for item in page.get("data") or ():
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    entries.append(ModelEntry(item["id"], _epoch(item.get("created_at"))))
            last_id = page.get("last_id")
            if not page.get("has_more") or not isinstance(last_id, str) or not last_id:
                break
            query = f"limit=1000&after_id={quote(last_id, safe='')}"
        return entries

    async def count_tokens(self, call: Call, progress: Progress) -> int | None:
        return None  # Messages clients reach Anthropic's own count_tokens natively

    async def stored_response(self, response_id: str) -> bytes | None:
        return None  # Anthropic keeps no Responses objects

    async def close(self) -> None:
        await self.transport.close()


_NATIVE = ("messages", "messages/count_tokens")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _epoch(value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return 0
    return 0
