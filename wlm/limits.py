"""The per-client concurrency limit (``WLM_MAX_CONCURRENCY_PER_CLIENT``) as a context manager."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from wlm.errors import GatewayError

__all__ = ["ClientBusy", "ClientSlots"]

_UNLIMITED: AbstractContextManager[None] = nullcontext()  # no limit: nothing to count


class ClientBusy(GatewayError):
    """A client already has its limit of requests in flight (429)."""

    status = 429
    type = "rate_limit_error"
    code = "concurrency_limit"


class ClientSlots:
    """Requests in flight per client; :meth:`hold` refuses one past the limit with a 429."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._in_flight: dict[str, int] = {}

    def in_flight(self, client: str) -> int:
        return self._in_flight.get(client, 0)

    def hold(self, client: str) -> AbstractContextManager[None]:
        """Count one request of ``client`` for the block; raises the 429 when full."""
        return _UNLIMITED if self.limit is None else self._held(client, self.limit)

    @contextmanager
    def _held(self, client: str, limit: int) -> Iterator[None]:
        count = self._in_flight.get(client, 0)
        if count >= limit:
            raise ClientBusy(
                f"Too many concurrent requests from this client (limit {limit}, "
                "WLM_MAX_CONCURRENCY_PER_CLIENT).",
                headers={"retry-after": "1"},
            )
        self._in_flight[client] = count + 1
        try:
            yield
        finally:
            remaining = self._in_flight[client] - 1
            if remaining:
                self._in_flight[client] = remaining
            else:
                del self._in_flight[client]
