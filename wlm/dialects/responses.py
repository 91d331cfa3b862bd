"""OpenAI Responses (``POST /v1/responses``): what Codex and ``client.responses`` send.
Native to OpenAI and to local engines; translated through chat to every other backend
(wlm/translate/responses_*.py). Where the backend keeps no responses (a translation,
a local engine), wlm keeps them (:mod:`wlm.dialects.response_store`) and rebuilds
``previous_response_id`` from them."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from wlm.config import ProviderConfig
from wlm.dialects.base import AS_SENT, ParsedRequest, Passage, Translation, chat_answer
from wlm.dialects.chat import decode_object, optional_stream, required_model
from wlm.dialects.response_store import ResponseStore
from wlm.dialects.translating_relay import TranslatingRelay
from wlm.errors import BadRequest, Failure, render_error
from wlm.providers.accounting import ResponseAccount
from wlm.providers.base import StreamRelay
from wlm.sse import SSEParser
from wlm.translate.responses_llama import unsupported_type
from wlm.translate.responses_request import responses_to_chat_request
from wlm.translate.responses_response import chat_to_response
from wlm.translate.responses_stream import ChatToResponsesStream, encode_sse, error_event

__all__ = ["ResponsesDialect", "input_items"]

_encode = msgspec.json.encode


def _mint(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items (a string is one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class _RememberingRelay(TranslatingRelay[dict[str, Any]]):
    """Keeps the finished response (for previous_response_id and GET) once it ends."""

    __slots__ = ("_remember", "_stream")

    def __init__(
        self,
        inner: StreamRelay,
        stream: ChatToResponsesStream,
        remember: Any,
    ) -> None:
        super().__init__(inner, stream, encode_sse)
        self._stream = stream
        self._remember = remember

    def end(self) -> list[bytes]:
        out = super().end()
        if self._stream.response is not None and self._stream.error is None:
            self._remember(self._stream.response)
        return out


_FINAL = (b"event: response.completed", b"event: response.incomplete")


def _final_response(out: bytes) -> dict[str, Any] | None:
    """The response object of a ``response.completed`` (or ``incomplete``) event in
    ``out``, a relay's output; None when it holds none."""
    if not any(marker in out for marker in _FINAL):
        return None
    parser = SSEParser()
    for event in [*parser.feed(out), *parser.finish()]:
        if event.event in ("response.completed", "response.incomplete") and event.data:
            try:
                value = msgspec.json.decode(event.data)
            except msgspec.DecodeError:
                return None
            response = value.get("response") if isinstance(value, dict) else None
            return response if isinstance(response, dict) else None
    return None


class _KeepingRelay:
    """A native Responses stream passed on as its relay sends it; the finished response
    is kept (for previous_response_id and GET) once it went by."""

    __slots__ = ("_inner", "_remember")

    def __init__(self, inner: StreamRelay, remember: Any) -> None:
        self._inner = inner
        self._remember = remember

    @property
    def account(self) -> ResponseAccount:
        return self._inner.account

    @property
    def done(self) -> bool:
        return self._inner.done

    @property
    def token_seen(self) -> bool:
        return self._inner.token_seen

    def _keep(self, outs: list[bytes]) -> list[bytes]:
        for out in outs:
            response = _final_response(out)
            if response is not None:
                self._remember(response)
        return outs

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._keep(self._inner.feed(chunk))

    def end(self) -> list[bytes]:
        return self._keep(self._inner.end())

    def fail(self, failure: Failure) -> list[bytes]:
        return self._inner.fail(failure)


class ResponsesDialect:
    """OpenAI Responses: OpenAI's error bodies; ``response.failed`` once streaming."""

    name = "responses"

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    def parse(self, raw: bytes, endpoint: str) -> ParsedRequest:
        body = decode_object(raw)
        model = required_model(body)
        value = body.get("input")
        if value is None and not body.get("previous_response_id"):
            raise BadRequest(
                "Missing required field 'input'.", param="input", code="missing_required_parameter"
            )
        if value is not None and not isinstance(value, str | list):
            raise BadRequest(
                "Field 'input' must be a string or an array.", param="input", code="invalid_type"
            )
        return ParsedRequest(endpoint, body, raw, model, optional_stream(body), False, "input")

    def _history(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        previous = body.get("previous_response_id")
        if previous is None:
            return []
        if not isinstance(previous, str):
            raise BadRequest(
                "'previous_response_id' must be a string.", param="previous_response_id"
            )
        if not self.store.enabled:
            raise BadRequest(
                "This backend does not keep responses, and wlm keeps them only while "
                "content logging is on (WLM_LOG_CONTENT): resend the conversation in 'input'.",
                param="previous_response_id",
            )
        stored = self.store.get(previous)
        if stored is None:
            raise BadRequest(
                f"No response '{previous}' is known to wlm (it keeps the last ones it "
                "answered, in memory, unless they were sent with store: false).",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return stored.history()

    def pass_through(self, request: ParsedRequest, config: ProviderConfig) -> Passage | None:
        if self.name not in config.dialects:
            return None
        body = request.body
        # A provider that keeps nothing gets the history from wlm.
        history = [] if config.keeps_responses else self._history(body)
        types = config.responses_types
        if types is not None and unsupported_type(body, types, history) is not None:
            return None  # the provider would skip or refuse it: chat carries it
        if config.keeps_responses:
            return AS_SENT
        # wlm keeps what the provider answers, and sends it the history in ``input``
        # (``previous_response_id`` stays for the answer to echo; such a provider
        # takes the conversation from ``input`` alone).
        inputs = [*history, *input_items(body)]
        # Nothing to watch when nothing is kept (content logging off, or store: false).
        keep = self.store.enabled and body.get("store") is not False

        def remember(response: dict[str, Any]) -> None:
            if response.get("status") in ("completed", "incomplete"):
                self.store.put(response, inputs)

        def relay(inner: StreamRelay) -> StreamRelay:
            return _KeepingRelay(inner, remember)

        def response(out: bytes) -> bytes:
            answer = msgspec.json.decode(out)
            if isinstance(answer, dict):
                remember(answer)
            return out

        sent = {**body, "input": inputs} if history else None
        return Passage(sent, relay if keep else None, response if keep else None)

    def translate(self, request: ParsedRequest) -> Translation:
        body = request.body
        history = self._history(body)
        chat_body, tool_names, notes = responses_to_chat_request(body, history=history)
        model = request.model
        response_id = _mint("resp")
        created_at = int(time.time())
        inputs = [*history, *input_items(body)]
        keep = body.get("store") is not False

        def remember(response: dict[str, Any]) -> None:
            if keep:
                self.store.put(response, inputs)

        def relay(inner: StreamRelay) -> StreamRelay:
            stream = ChatToResponsesStream(
                model=model,
                response_id=response_id,
                created_at=created_at,
                tool_names=tool_names,
                ids=_mint,
                request=body,
            )
            return _RememberingRelay(inner, stream, remember)

        def response(chat: bytes) -> bytes:
            answer = chat_to_response(
                chat_answer(chat),
                model=model,
                response_id=response_id,
                created_at=created_at,
                tool_names=tool_names,
                request=body,
                ids=_mint,
            )
            remember(answer)
            return _encode(answer)

        return Translation(chat_body, relay, response, notes)

    def error_body(self, failure: Failure) -> tuple[int, bytes]:
        return failure.status, render_error(failure)

    def error_event(self, failure: Failure) -> bytes:
        # Nothing of the stream was relayed yet (it broke while an engine loaded).
        return error_event(failure.code or failure.type, failure.message, failure.param, 0)
