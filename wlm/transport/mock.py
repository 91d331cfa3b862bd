"""An in-process transport built from a function, for fast tests (like httpx's MockTransport).

    def handler(request: UpstreamRequest) -> MockResponse:
        return MockResponse.json({"id": "x", "choices": []})

    transport = MockTransport(handler)

The handler may be sync or async, may raise any :mod:`wlm.errors` value (as the
real transport does for a refused connection or a timeout), and sees every request
in ``transport.requests``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import attrs
import msgspec

from wlm.errors import GatewayError
from wlm.transport.protocol import UpstreamRequest

__all__ = ["MockResponse", "MockTransport"]

Handler = Callable[[UpstreamRequest], "MockResponse | Awaitable[MockResponse]"]


@attrs.define
class MockResponse:
    """A canned answer: a whole body, or chunks that may end in an error (a broken stream)."""

    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    body_chunks: Sequence[bytes] = ()
    fail_after: GatewayError | None = None  # raised once every chunk was yielded
    stall_after: bool = False  # then wait forever (a stalled upstream) instead of ending
    closed: bool = False
    released: bool = False

    @classmethod
    def json(
        cls, value: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> MockResponse:
        return cls(
            status,
            {"content-type": "application/json", **(headers or {})},
            [msgspec.json.encode(value)],
        )

    @classmethod
    def sse(
        cls,
        events: Sequence[bytes],
        fail_after: GatewayError | None = None,
        *,
        stall_after: bool = False,
    ) -> MockResponse:
        """A text/event-stream body, one chunk per item of ``events``."""
        return cls(
            200, {"content-type": "text/event-stream"}, list(events), fail_after, stall_after
        )

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    async def read(self) -> bytes:
        body = b"".join(self.body_chunks)
        if self.fail_after is not None:
            raise self.fail_after
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self.body_chunks:
            yield chunk
        if self.fail_after is not None:
            raise self.fail_after
        if self.stall_after:
            await asyncio.Event().wait()

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


class MockTransport:
    """A transport that answers every request by calling ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[UpstreamRequest] = []
        self.responses: list[MockResponse] = []
        self.closed = False

    async def send(self, request: UpstreamRequest) -> MockResponse:
        self.requests.append(request)
        answer = self._handler(request)
        response = await answer if inspect.isawaitable(answer) else answer
        self.responses.append(response)
        return response

    async def close(self) -> None:
        self.closed = True

    def factory(
        self, name: str, *, connect_timeout_s: float, read_timeout_s: float
    ) -> MockTransport:
        """A TransportFactory that hands this one transport to every provider."""
        return self
