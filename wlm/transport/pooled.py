"""The network transport: a pooled aiohttp session per provider.

httpx's default transport measured at a third of aiohttp's throughput under
concurrency here (docs/performance.md), so every upstream call (proxied requests,
model lists, engine health checks) goes through aiohttp. Foreign exceptions are
mapped to :mod:`wlm.errors` in exactly one place, :func:`mapped_errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
from yarl import URL

from wlm.errors import GatewayError, UpstreamBroken, UpstreamTimeout, UpstreamUnreachable
from wlm.transport.protocol import UpstreamRequest

__all__ = ["PooledResponse", "PooledTransport", "mapped_errors"]


@contextmanager
def mapped_errors(provider: str) -> Iterator[None]:
    """Turn aiohttp/asyncio failures into GatewayErrors naming the provider."""
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ConnectionTimeoutError) as exc:
        raise UpstreamTimeout(f"Provider '{provider}' did not answer in time.") from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnreachable(
            f"Provider '{provider}' is unreachable: {exc.os_error.strerror or 'connection failed'}."
        ) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise UpstreamBroken(f"Provider '{provider}' closed the connection.") from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
        raise UpstreamBroken(f"Provider '{provider}' sent a broken response.") from exc
    except (aiohttp.ClientOSError, ConnectionError) as exc:
        raise UpstreamUnreachable(f"Provider '{provider}' connection failed.") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamBroken(f"Provider '{provider}' request failed.") from exc


class PooledResponse:
    """An aiohttp response behind the UpstreamResponse protocol."""

    __slots__ = ("_reading", "_response", "provider")

    def __init__(self, response: aiohttp.ClientResponse, provider: str) -> None:
        self._response = response
        self.provider = provider
        self._reading = True  # False while the consumer handles a chunk (not waiting for one)

    @property
    def status(self) -> int:
        return self._response.status

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def read(self) -> bytes:
        with mapped_errors(self.provider):
            return await self._response.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Bytes as they arrive, never waiting to fill a buffer."""
        content = self._response.content
        with mapped_errors(self.provider):
            while True:
                self._reading = True
                chunk = await content.readany()
                self._reading = False
                if not chunk:
                    return
                yield chunk

    def received(self) -> tuple[int, bool]:
        """(body bytes received so far, counted as they arrive; whether the consumer is
        waiting for more rather than busy with a chunk). For the local stall watchdog,
        which reads it every few seconds instead of timing each chunk."""
        return self._response.content.total_bytes, self._reading

    def fail(self, error: GatewayError) -> None:
        """End a read that waits, and every later one, with ``error`` (the consumer then
        closes the response, which drops the connection: the upstream sees it leave)."""
        self._response.content.set_exception(error)

    def close(self) -> None:
        """Drop the connection (the upstream sees the client leave)."""
        self._response.close()

    def release(self) -> None:
        """Return the connection to the pool after a fully read body."""
        self._response.release()


class PooledTransport:
    """A long-lived pooled aiohttp client for one provider."""

    def __init__(
        self,
        provider: str,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_connections: int = 256,
    ) -> None:
        self.provider = provider
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # Parsing the same few upstream URLs on every request is measurable on the hot path.
        self._urls: dict[str, URL] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=30,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                read_bufsize=2**16,
            )
        return self._session

    async def send(self, request: UpstreamRequest) -> PooledResponse:
        """Send a request; returns once the status line and headers have arrived."""
        session = self._get_session()
        url = request.url
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 256:  # local engines come and go on new ports
                self._urls.clear()
            parsed = self._urls[url] = URL(url)
        timeout = (
            self._timeout
            if request.timeout_s is None
            else aiohttp.ClientTimeout(total=request.timeout_s)
        )
        with mapped_errors(self.provider):
            response = await session.request(
                request.method,
                parsed,
                data=request.body,
                headers=request.headers,
                allow_redirects=False,
                timeout=timeout,
            )
        return PooledResponse(response, self.provider)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            # Let aiohttp's SSL transports finish closing (documented aiohttp advice).
            await asyncio.sleep(0)
