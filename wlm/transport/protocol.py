"""The transport seam's protocols and the request value passed across it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import msgspec
from attrs import frozen

from wlm.errors import UpstreamBroken

__all__ = [
    "HeldResponse",
    "Transport",
    "TransportFactory",
    "UpstreamRequest",
    "UpstreamResponse",
    "read_json",
]


@frozen
class UpstreamRequest:
    """One HTTP request to an upstream. ``timeout_s`` bounds the whole exchange when set
    (health checks, model lists); proxied calls rely on the transport's read timeout."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None
    timeout_s: float | None = None


class UpstreamResponse(Protocol):
    """Status, headers and a body to read whole or chunk by chunk. Close or release it."""

    @property
    def status(self) -> int: ...

    def header(self, name: str) -> str | None: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """Bytes as they arrive, never waiting to fill a buffer."""
        ...

    def close(self) -> None:
        """Drop the connection (the upstream sees the client leave)."""

    def release(self) -> None:
        """Return the connection to the pool after a fully read body."""


class HeldResponse:
    """An upstream response that holds something until it is closed or released:
    ``done()`` runs once, after the first ``close()`` or ``release()``, even if that
    raises (a local engine's lease, a peer's count of requests in flight)."""

    __slots__ = ("_done", "_inner")

    def __init__(self, inner: UpstreamResponse, done: Callable[[], None]) -> None:
        self._inner = inner
        self._done: Callable[[], None] | None = done

    def _let_go(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done()

    @property
    def status(self) -> int:
        return self._inner.status

    def header(self, name: str) -> str | None:
        return self._inner.header(name)

    async def read(self) -> bytes:
        return await self._inner.read()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._inner.chunks()

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._let_go()

    def release(self) -> None:
        try:
            self._inner.release()
        finally:
            self._let_go()


class Transport(Protocol):
    """Sends requests to one upstream. Failures raise :mod:`wlm.errors` values only."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Returns once the status line and headers have arrived."""
        ...

    async def close(self) -> None: ...


class TransportFactory(Protocol):
    """Builds the transport of one provider (the gateway takes one, tests pass a mock)."""

    def __call__(
        self, name: str, /, *, connect_timeout_s: float, read_timeout_s: float
    ) -> Transport: ...


async def read_json(transport: Transport, request: UpstreamRequest) -> Any:
    """Send ``request`` and decode a 2xx JSON body; raises UpstreamBroken otherwise."""
    response = await transport.send(request)
    try:
        body = await response.read()
    finally:
        response.release()
    if not 200 <= response.status < 300:
        raise UpstreamBroken(f"{request.method} {request.url} answered HTTP {response.status}.")
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise UpstreamBroken(
            f"{request.method} {request.url} answered with invalid JSON."
        ) from None
