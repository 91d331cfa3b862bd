"""Anthropic Messages (``POST /v1/messages``, ``/v1/messages/count_tokens``): what Claude
Code and the ``anthropic`` SDK send. Native to Anthropic; translated through chat to
every other backend (wlm/translate/messages_*.py)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from wlm.config import ProviderConfig
from wlm.dialects.base import AS_SENT, ParsedRequest, Passage, Translation, chat_answer
from wlm.dialects.chat import decode_object, optional_stream, required_model
from wlm.dialects.translating_relay import TranslatingRelay
from wlm.errors import BadRequest, Failure
from wlm.providers.base import StreamRelay
from wlm.translate.messages_errors import messages_error, messages_error_event
from wlm.translate.messages_request import messages_to_chat_request
from wlm.translate.messages_response import chat_to_messages_response
from wlm.translate.messages_stream import ChatToMessagesStream, encode_sse

__all__ = ["MessagesDialect", "estimate_input_tokens"]

_encode = msgspec.json.encode


def _status(failure: Failure) -> int:
    # An Anthropic upstream's own status (500 api_error, 529 overloaded_error), which
    # wlm's OpenAI surface maps to 502 and 503, reaches a Messages client unchanged.
    return failure.upstream_status or failure.status


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """A labelled estimate for count_tokens where no backend can count: one token per
    four characters of the system prompt, messages and tools as JSON (docs/clients.md)."""
    counted = {k: body[k] for k in ("system", "messages", "tools") if k in body}
    return max(1, len(_encode(counted)) // 4)


def _no_relay(inner: StreamRelay) -> StreamRelay:
    raise AssertionError("count_tokens does not stream")  # pragma: no cover


def _no_response(body: bytes) -> bytes:
    raise AssertionError("count_tokens is answered locally")  # pragma: no cover


class MessagesDialect:
    """Anthropic Messages: Anthropic's error bodies and ``event: error`` mid-stream."""

    name = "messages"

    def parse(self, raw: bytes, endpoint: str) -> ParsedRequest:
        body = decode_object(raw)
        model = required_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise BadRequest("'messages' must be an array.", param="messages", code="invalid_type")
        stream = optional_stream(body) and endpoint == "messages"
        return ParsedRequest(endpoint, body, raw, model, stream, False, "messages")

    def pass_through(self, request: ParsedRequest, config: ProviderConfig) -> Passage | None:
        return AS_SENT if self.name in config.dialects else None

    def translate(self, request: ParsedRequest) -> Translation:
        if request.endpoint == "messages/count_tokens":
            estimate = {"input_tokens": estimate_input_tokens(request.body)}
            return Translation(
                messages_to_chat_request(request.body),
                _no_relay,
                _no_response,
                local_answer=_encode(estimate),
                counts_tokens=True,
            )
        chat_body = messages_to_chat_request(request.body)
        model = request.model
        message_id = f"msg_{uuid.uuid4().hex[:24]}"

        def relay(inner: StreamRelay) -> StreamRelay:
            stream = ChatToMessagesStream(model=model, message_id=message_id)
            return TranslatingRelay(inner, stream, encode_sse)

        def response(body: bytes) -> bytes:
            answer = chat_to_messages_response(
                chat_answer(body), model=model, message_id=message_id
            )
            return _encode(answer)

        return Translation(chat_body, relay, response)

    def error_body(self, failure: Failure) -> tuple[int, bytes]:
        status, body = messages_error(_status(failure), failure.message, failure.type)
        return status, _encode(body)

    def error_event(self, failure: Failure) -> bytes:
        return messages_error_event(_status(failure), failure.message, failure.type)
