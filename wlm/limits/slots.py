"""Requests in flight per client: one too many is refused (429).

The limit is ``WLM_MAX_CONCURRENCY_PER_CLIENT`` and ``*:concurrency=N`` from
``WLM_KEY_LIMITS`` (the lower of the two), unless the client's key has a
``concurrency`` of its own in ``WLM_KEY_LIMITS``, which wins.
"""

from __future__ import annotations

from collections.abc import Mapping

from wlm.config import Settings
from wlm.errors import GatewayError

__all__ = ["ClientBusy", "ClientSlots", "client_slots"]

_KEY_SOURCE = "concurrency in WLM_KEY_LIMITS"


class ClientBusy(GatewayError):
    """A client already has its limit of requests in flight (429)."""

    status = 429
    type = "rate_limit_error"
    code = "concurrency_limit"


class ClientSlots:
    """Requests in flight per client; :meth:`hold` refuses one past the limit with a 429.

    ``limit`` applies to every client, ``per_client`` (key name -> limit) to the
    clients it names instead; ``source`` names the setting of ``limit`` in the 429.
    """

    def __init__(
        self,
        limit: int | None,
        per_client: Mapping[str, int] | None = None,
        source: str = "WLM_MAX_CONCURRENCY_PER_CLIENT",
    ) -> None:
        self.limit = limit
        self._per_client = dict(per_client or {})
        self._source = source
        self._in_flight: dict[str, int] = {}
        # Whether any client has a limit (if not, the request path counts nothing).
        self.limited = limit is not None or bool(self._per_client)

    def in_flight(self, client: str) -> int:
        return self._in_flight.get(client, 0)

    def limit_for(self, client: str) -> int | None:
        """The number of requests ``client`` may have in flight (None: no limit)."""
        return self._per_client.get(client, self.limit)

    def take(self, client: str) -> bool:
        """Count one request of ``client``; raises the 429 when full. True when counted
        (then :meth:`release` it), False when ``client`` has no limit."""
        limit = self._per_client.get(client, self.limit) if self._per_client else self.limit
        if limit is None:
            return False
        count = self._in_flight.get(client, 0)
        if count >= limit:
            source = _KEY_SOURCE if client in self._per_client else self._source
            raise ClientBusy(
                f"Too many concurrent requests from this client (limit {limit}, {source}).",
                headers={"retry-after": "1"},
            )
        self._in_flight[client] = count + 1
        return True

    def release(self, client: str) -> None:
        """A request :meth:`take` counted has ended."""
        remaining = self._in_flight[client] - 1
        if remaining:
            self._in_flight[client] = remaining
        else:
            del self._in_flight[client]


def client_slots(settings: Settings) -> ClientSlots:
    """The slots for ``settings``: the general limit, and each key's own."""
    general = settings.max_concurrency_per_client
    source = "WLM_MAX_CONCURRENCY_PER_CLIENT"
    per_client: dict[str, int] = {}
    for entry in settings.key_limits:
        if entry.concurrency is None:
            continue
        if entry.key != "*":
            per_client[entry.key] = entry.concurrency
        elif general is None or entry.concurrency < general:
            general, source = entry.concurrency, _KEY_SOURCE
    return ClientSlots(general, per_client, source)
