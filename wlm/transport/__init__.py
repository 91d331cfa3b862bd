"""The one seam to the network: a :class:`Transport` sends an :class:`UpstreamRequest`
and returns an :class:`UpstreamResponse`.

``PooledTransport`` (aiohttp, pooled per provider) is what the gateway uses;
``MockTransport(handler)`` answers in-process from a function, for tests. Every
upstream call goes through this seam: proxied requests, model lists, engine health.
"""

from wlm.transport.mock import MockResponse, MockTransport
from wlm.transport.pooled import PooledTransport, mapped_errors
from wlm.transport.protocol import (
    HeldResponse,
    Transport,
    TransportFactory,
    UpstreamRequest,
    UpstreamResponse,
    read_json,
)

__all__ = [
    "HeldResponse",
    "MockResponse",
    "MockTransport",
    "PooledTransport",
    "Transport",
    "TransportFactory",
    "UpstreamRequest",
    "UpstreamResponse",
    "mapped_errors",
    "read_json",
]
