"""OpenAI-compatible upstreams: OpenAI, OpenRouter, llama.cpp and any such URL.

Pass-through: only ``model`` is rewritten (and ``stream_options.include_usage``
added so telemetry learns streamed usage); every other field goes on untouched.
Responses and chunks are forwarded as the upstream's bytes, with ``model`` set
back to the name the client asked for.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import msgspec

from wlm.config import ProviderConfig
from wlm.errors import Failure, GatewayError, UpstreamError, render_error_event
from wlm.providers.accounting import ResponseAccount
from wlm.providers.base import (
    Call,
    ModelEntry,
    PassthroughRelay,
    Progress,
    StreamRelay,
    answer_object,
    broken_stream,
    decode_event_json,
    malformed_event,
)
from wlm.providers.chunks import decode_chunk
from wlm.sse import SSEEvent, SSEParser, plain_data
from wlm.translate.responses_response import response_usage_to_chat
from wlm.translate.responses_stream import error_event as responses_error_event
from wlm.transport import Transport, UpstreamRequest, UpstreamResponse, read_json

__all__ = ["OpenAICompatAdapter", "openai_error", "rewrite_model"]

_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
_decode = msgspec.json.decode
_encode = msgspec.json.encode
_LIST_TIMEOUT_S = 10.0


def rewrite_model(raw: bytes, model: str) -> bytes:
    """Set the first top-level-looking ``"model": "..."`` in ``raw`` to ``model``."""
    replacement = b'"model":' + _encode(model)
    return _MODEL_FIELD.sub(lambda _: replacement, raw, count=1)


def openai_error(provider: str, status: int, body: bytes, retry_after: str | None) -> GatewayError:
    """An upstream error body (OpenAI, OpenRouter or llama.cpp shape) as an UpstreamError."""
    message = None
    type_ = "upstream_error"
    code: str | None = None
    param = None
    try:
        parsed = _decode(body)
    except msgspec.DecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error = parsed["error"]
        message = error.get("message") if isinstance(error.get("message"), str) else None
        if isinstance(error.get("type"), str):
            type_ = error["type"]
        if error.get("code") is not None:
            code = str(error["code"])
        if isinstance(error.get("param"), str):
            param = error["param"]
        metadata = error.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("raw"), str):
            message = f"{message or 'Provider returned error'}: {metadata['raw'][:500]}"
    if not message:
        snippet = body[:200].decode("utf-8", "replace").strip()
        message = f"Provider '{provider}' returned HTTP {status}" + (
            f": {snippet}" if snippet else "."
        )
    if type_ == "upstream_error":
        type_ = _type_for_status(status)
    headers = {"retry-after": retry_after} if retry_after else {}
    return UpstreamError(
        message, status=status, type=type_, code=code, param=param, headers=headers
    )


def _type_for_status(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        408: "timeout",
        413: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error" if status >= 500 else "upstream_error")


class OpenAIRelay:
    """Forwards an OpenAI-shaped SSE stream event by event, learning from each chunk."""

    __slots__ = (
        "_model",
        "_model_json",
        "_parser",
        "_strip_usage",
        "account",
        "done",
        "token_seen",
    )

    def __init__(self, model: str, strip_usage: bool, account: ResponseAccount) -> None:
        self._model = model
        self._model_json = _encode(model)
        self._parser = SSEParser()
        self._strip_usage = strip_usage
        self.account = account
        self.done = False
        self.token_seen = False

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        event = self._event
        for block in self._parser.blocks(chunk):
            sent = event(block)
            if sent is not None:
                out.append(sent)
            if self.done:
                break
        return out

    def _event(self, block: bytes) -> bytes | None:
        """What the client gets for one upstream event (None: nothing)."""
        # The hot path: one "data: " line (checked inline: a call per event shows).
        if block.startswith(b"data: ") and block.find(b"\n", 6) == len(block) - 2:
            data: bytes | None = block[6:-2]
        else:
            data = plain_data(block)
        if data is None:
            data = SSEEvent(block).data_bytes()
            if data is None:  # comments only (OpenRouter's processing lines): keep-alives
                return block
        if data == b"[DONE]":
            self.done = True
            return block
        chunk = decode_chunk(data)
        if chunk is None:
            self.done = True
            return malformed_event(self.account)[0]
        if self.account.add_chunk(chunk):
            self.token_seen = True
        if chunk.error:
            self.done = True  # the stream ends at an error event
        elif self._strip_usage and not chunk.choices and chunk.usage is not None:
            return None  # the usage chunk we asked for on the client's behalf
        if chunk.model is not None and chunk.model != self._model:
            return rewrite_model(block, self._model)
        return block

    def fail(self, failure: Failure) -> list[bytes]:
        self.done = True
        return [render_error_event(failure)]

    def end(self) -> list[bytes]:
        out: list[bytes] = []
        for block in self._parser.finish_blocks():
            if not self.done:
                sent = self._event(block)
                if sent is not None:
                    out.append(sent)
        if self.done:
            return out
        self.done = True
        return out + broken_stream(self.account)


_USAGE_ON_REQUEST = ("chat/completions", "completions")


class ResponsesEvent(msgspec.Struct):
    """What wlm reads of a Responses stream event; the response object stays raw (it is
    decoded only on the lifecycle events that carry it)."""

    type: str = ""
    sequence_number: int | None = None
    delta: str | None = None
    response: msgspec.Raw | None = None
    message: str | None = None  # an ``error`` event's
    code: str | None = None


_responses_event = msgspec.json.Decoder(ResponsesEvent)


def decode_responses_event(data: bytes) -> ResponsesEvent | None:
    """The event in ``data``; None when it is not a JSON object (a malformed event)."""
    try:
        return _responses_event.decode(data)
    except msgspec.ValidationError:
        value = decode_event_json(data)  # odd field types: read what can be read
        if value is None:
            return None
        return ResponsesEvent(
            type=str(value.get("type") or ""),
            response=msgspec.Raw(msgspec.json.encode(value["response"]))
            if isinstance(value.get("response"), dict)
            else None,
            message=str(value.get("message") or ""),
        )
    except msgspec.DecodeError:
        return None


def account_response(account: ResponseAccount, response: dict[str, Any]) -> None:
    """Learn from a Responses ``response`` object (a whole answer, or the one
    ``response.completed`` carries): usage, model, status, text."""
    usage = response.get("usage")
    if isinstance(usage, dict):
        account.usage = response_usage_to_chat(usage)
    if isinstance(response.get("model"), str):
        account.upstream_model = response["model"]
    status = response.get("status")
    details = response.get("incomplete_details")
    if status == "completed":
        calls = [i for i in response.get("output") or () if isinstance(i, dict)]
        called = any(i.get("type") in ("function_call", "custom_tool_call") for i in calls)
        account.finish_reason = "tool_calls" if called else "stop"
    elif isinstance(details, dict) and details.get("reason") == "max_output_tokens":
        account.finish_reason = "length"
    if account.keep_content and not account.text:
        for item in response.get("output") or ():
            if isinstance(item, dict) and item.get("type") == "message":
                for part in item.get("content") or ():
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        account.add_text(part["text"])


class ResponsesPassthroughRelay(PassthroughRelay):
    """A native Responses stream, passed through event by event (``model`` set back to
    the client's name where the response object carries it), read for telemetry."""

    __slots__ = ("_model", "_sequence")

    def __init__(self, model: str, account: ResponseAccount) -> None:
        super().__init__(account)
        self._model = model
        self._sequence = 0

    def _read(self, block: bytes, data: bytes) -> bytes | None:
        event = decode_responses_event(data)
        if event is None:
            return None
        kind = event.type
        if event.sequence_number is not None:
            self._sequence = event.sequence_number + 1
        if kind == "response.output_text.delta" and event.delta:
            self.token_seen = True
            self.account.add_text(event.delta)
        elif kind in (
            "response.function_call_arguments.delta",
            "response.reasoning_summary_text.delta",
        ):
            self.token_seen = True
        if event.response is not None:
            # Only lifecycle events carry the response object: decoded when it matters.
            response = decode_event_json(event.response)
            if response is None:
                return block
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                self.done = True
                text_seen = self.account.text is not None
                usage = response.get("usage")
                if isinstance(usage, dict):
                    self.account.usage = response_usage_to_chat(usage)
                if not text_seen:
                    account_response(self.account, response)
                elif kind == "response.completed":
                    account_response(self.account, {**response, "output": []})
                if kind == "response.failed":
                    self.account.error = Failure.from_event(response.get("error") or "failed", str)
            if response.get("model") not in (self._model, None):
                return rewrite_model(block, self._model)
        elif kind == "error":
            self.done = True
            self.account.error = Failure.from_event(
                {"message": event.message, "code": event.code, "type": "upstream_error"}, str
            )
        return block

    def fail(self, failure: Failure) -> list[bytes]:
        self.done = True
        code = failure.code or failure.type
        return [responses_error_event(code, failure.message, failure.param, self._sequence)]


class OpenAICompatAdapter:
    """Adapter for any upstream speaking the OpenAI API."""

    def __init__(self, config: ProviderConfig, transport: Transport) -> None:
        self._config = config
        self.transport = transport
        headers = {"content-type": "application/json", "accept-encoding": "gzip, deflate"}
        headers.update(dict(config.extra_headers))
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._headers = headers
        # A client's OpenAI organization/project means nothing to another provider, and
        # the official SDK sends them whenever OPENAI_ORG_ID/OPENAI_PROJECT_ID are set.
        self._takes_openai_headers = config.name == "openai"

    @property
    def config(self) -> ProviderConfig:
        return self._config

    async def open(self, call: Call, progress: Progress) -> UpstreamResponse:
        return await self.transport.send(self.prepare(call, self._config.base_url))

    def prepare(self, call: Call, base_url: str) -> UpstreamRequest:
        """The upstream request for ``call`` to the OpenAI API rooted at ``base_url``."""
        body = call.raw
        changed = False
        payload = call.body
        if call.upstream_model != call.model:
            payload = {**payload, "model": call.upstream_model}
            changed = True
        if call.stream and not call.client_wants_usage and call.endpoint in _USAGE_ON_REQUEST:
            options = payload.get("stream_options")
            options = {**options} if isinstance(options, dict) else {}
            options["include_usage"] = True
            payload = {**payload, "stream_options": options}
            changed = True
        if changed:
            body = _encode(payload)
        headers = self._headers
        if call.forwarded_headers:
            forwarded = call.forwarded_headers
            if not self._takes_openai_headers:
                forwarded = tuple(h for h in forwarded if not h[0].startswith("openai-"))
            headers = {**headers, **dict(forwarded)}
        return UpstreamRequest("POST", f"{base_url}/{call.endpoint}", headers, body)

    def relay(self, call: Call, account: ResponseAccount) -> StreamRelay:
        if call.endpoint == "responses":
            return ResponsesPassthroughRelay(call.model, account)
        return OpenAIRelay(call.model, not call.client_wants_usage, account)

    def finish_response(self, call: Call, body: bytes, account: ResponseAccount) -> bytes:
        parsed = answer_object(body, f"Provider '{self._config.name}'")
        if call.endpoint == "responses":
            account_response(account, parsed)
            if parsed.get("model") not in (call.model, None):
                return rewrite_model(body, call.model)
            return body
        account.add_response(parsed)
        if parsed.get("model") not in (call.model, None):
            return rewrite_model(body, call.model)
        return body

    def upstream_error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        return openai_error(self._config.name, status, body, retry_after)

    async def list_models(self) -> list[ModelEntry]:
        headers = {k: v for k, v in self._headers.items() if k != "content-type"}
        request = UpstreamRequest(
            "GET", f"{self._config.base_url}/models", headers, timeout_s=_LIST_TIMEOUT_S
        )
        page = await read_json(self.transport, request)
        data: Any = (page.get("data") if isinstance(page, dict) else None) or []
        entries = []
        for item in data:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                created = item.get("created")
                entries.append(ModelEntry(item["id"], created if isinstance(created, int) else 0))
        return entries

    async def count_tokens(self, call: Call, progress: Progress) -> int | None:
        return None  # the OpenAI API has no counting endpoint for chat

    async def stored_response(self, response_id: str) -> bytes | None:
        if "responses" not in self._config.dialects:
            return None
        headers = {k: v for k, v in self._headers.items() if k != "content-type"}
        url = f"{self._config.base_url}/responses/{quote(response_id, safe='')}"
        response = await self.transport.send(
            UpstreamRequest("GET", url, headers, timeout_s=_LIST_TIMEOUT_S)
        )
        try:
            body = await response.read()
        finally:
            response.release()
        return body if response.status == 200 else None

    async def close(self) -> None:
        await self.transport.close()
