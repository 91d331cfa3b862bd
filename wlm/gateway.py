"""The running gateway: every long-lived part, built once per app from Settings.

Tests build one per test; nothing here is global. The Litestar lifespan calls
:meth:`Gateway.start` and :meth:`Gateway.close`. ``transports`` is the one seam to
the network: tests pass ``MockTransport(handler).factory`` to run every provider,
local engines included, in-process.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid

from wlm.auth import KeyRing
from wlm.catalog import ModelCatalog
from wlm.config import ClientKey, Settings
from wlm.dialects import ResponseStore, build_dialects
from wlm.limits import client_slots
from wlm.local.protocol import LocalModels
from wlm.metrics import Metrics
from wlm.providers.base import Adapter
from wlm.providers.registry import build_adapters
from wlm.redaction import Redactor
from wlm.routing.resolve import Router
from wlm.telemetry.pricing import Prices
from wlm.telemetry.sink import TelemetrySink
from wlm.transport import PooledTransport, TransportFactory

__all__ = ["Gateway"]

log = logging.getLogger("wlm")


class Gateway:
    """Settings plus the parts built from them: router, adapters, catalog, telemetry, local."""

    def __init__(
        self,
        settings: Settings,
        *,
        local: LocalModels | None = None,
        telemetry: TelemetrySink | None = None,
        transports: TransportFactory = PooledTransport,
    ) -> None:
        self.settings = settings
        self.redactor = Redactor(settings.secrets())
        self.client_keys = KeyRing(settings.api_keys)
        self.admin_keys = KeyRing(
            [ClientKey("admin", settings.admin_key)] if settings.admin_key else []
        )
        self.local = local
        self.telemetry = telemetry
        self.router = Router(settings, local.routable_ids if local is not None else frozenset)
        self.adapters: dict[str, Adapter] = build_adapters(settings, transports, local)
        self.responses = ResponseStore(enabled=settings.log_content)
        self.dialects = build_dialects(self.responses)
        self.metrics = Metrics()
        self.client_slots = client_slots(settings)
        self.prices = Prices.from_settings(settings)
        self._request_prefix = uuid.uuid4().hex[:12]
        self._request_counter = itertools.count(1)
        self.catalog = ModelCatalog(
            self.adapters,
            self.router,
            local,
            redactor=self.redactor,
            cache_s=settings.models_cache_s,
        )
        self.started = asyncio.Event()

    def new_request_id(self) -> str:
        """A unique id per request: a random per-process prefix and a counter (no syscall)."""
        return f"req_{self._request_prefix}{next(self._request_counter):08x}"

    async def start(self) -> None:
        if self.telemetry is not None:
            self.telemetry.start()
        if self.local is not None:
            await self.local.start()
        self.catalog.refresh_in_background()
        self.started.set()

    async def close(self) -> None:
        await self.catalog.close()
        if self.local is not None:
            try:
                await self.local.close()
            except Exception:
                log.exception("stopping local engines failed")
        for adapter in self.adapters.values():
            await adapter.close()
        if self.telemetry is not None:
            await self.telemetry.aclose()
