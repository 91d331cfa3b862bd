"""A chat relay's output turned into another dialect's stream, event by event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from wlm.errors import Failure
from wlm.providers.accounting import ResponseAccount
from wlm.providers.base import StreamRelay
from wlm.sse import SSEParser, plain_data

__all__ = ["ChatStreamTranslator", "TranslatingRelay"]

E = TypeVar("E")
_decode = msgspec.json.decode


class ChatStreamTranslator(Protocol[E]):
    """Chat chunks in, another dialect's events out (wlm/translate/*_stream.py)."""

    done: bool

    def feed(self, chunk: dict[str, Any]) -> list[E]: ...

    def finish(self) -> list[E]: ...


class TranslatingRelay(Generic[E]):
    """Wraps the chat relay of a translated call: its chat events (already accounted
    for telemetry by the inner relay) are decoded and re-emitted in the client's dialect."""

    __slots__ = ("_encode", "_inner", "_parser", "_translator")

    def __init__(
        self,
        inner: StreamRelay,
        translator: ChatStreamTranslator[E],
        encode: Callable[[list[E]], bytes],
    ) -> None:
        self._inner = inner
        self._translator = translator
        self._encode = encode
        self._parser = SSEParser()

    @property
    def account(self) -> ResponseAccount:
        return self._inner.account

    @property
    def done(self) -> bool:
        # The translated answer may be whole before the chat terminator arrives: the
        # Responses translation completes at the usage chunk, before [DONE].
        return self._inner.done or self._translator.done

    @property
    def token_seen(self) -> bool:
        return self._inner.token_seen

    def _translate(self, chat: list[bytes]) -> list[bytes]:
        events: list[E] = []
        feed = self._translator.feed
        for out in chat:
            # The chat relay hands over whole events, almost always one "data:" line
            # each: read that directly, anything else through the parser.
            data = plain_data(out)
            for payload in (data,) if data is not None else self._payloads(out):
                if payload == b"[DONE]":
                    continue  # the chat terminator has no twin
                try:
                    chunk = _decode(payload)
                except msgspec.DecodeError:
                    continue
                if type(chunk) is dict:
                    events += feed(chunk)
        return [self._encode(events)] if events else []

    def _payloads(self, out: bytes) -> list[bytes]:
        """The data of each event in ``out``; keep-alive comments have no twin."""
        payloads = [plain_data(block) for block in self._parser.blocks(out)]
        return [p for p in payloads if p is not None]

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._translate(self._inner.feed(chunk))

    def end(self) -> list[bytes]:
        if self._translator.done:
            return []  # the client has its whole answer; a missing [DONE] changes nothing
        out = self._translate(self._inner.end())
        closing = self._translator.finish()
        return out + ([self._encode(closing)] if closing else [])

    def fail(self, failure: Failure) -> list[bytes]:
        events = self._translator.feed({"error": failure.to_dict()})
        events += self._translator.finish()
        return [self._encode(events)] if events else []
