"""The running gateway: every long-lived part, built once per app from Settings.

Tests build one per test; nothing here is global. The Litestar lifespan calls
:meth:`Gateway.start` and :meth:`Gateway.close`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from typing import Any

import httpx

from wlm.auth import KeyRing
from wlm.catalog import ModelCatalog
from wlm.config import ClientKey, ProviderConfig, Settings
from wlm.metrics import Metrics
from wlm.providers.base import Adapter, Redactor
from wlm.providers.openai_compat import OpenAICompatAdapter
from wlm.providers.transport import Transport
from wlm.routing.resolve import LOCAL, Router

__all__ = ["Gateway"]

log = logging.getLogger("wlm")


def _make_adapter(config: ProviderConfig, settings: Settings) -> Adapter:
    transport = Transport(
        config.name,
        connect_timeout_s=config.connect_timeout_s,
        read_timeout_s=config.read_timeout_s,
    )
    if config.kind == "anthropic":
        from wlm.providers.anthropic import AnthropicAdapter

        return AnthropicAdapter(config, transport, settings.anthropic_max_tokens)
    return OpenAICompatAdapter(config, transport)


class Gateway:
    """Settings plus the parts built from them: router, adapters, catalog, telemetry, local."""

    def __init__(self, settings: Settings, *, local: Any = None, telemetry: Any = None) -> None:
        self.settings = settings
        self.redactor = Redactor(settings.secrets())
        self.client_keys = KeyRing(settings.api_keys)
        self.admin_keys = KeyRing(
            [ClientKey("admin", settings.admin_key)] if settings.admin_key else []
        )
        self.local = local
        self.telemetry = telemetry
        local_ids = local.routable_ids if local is not None else frozenset
        self.router = Router(settings, local_ids)
        self.adapters: dict[str, Adapter] = {
            p.name: _make_adapter(p, settings) for p in settings.providers if p.configured
        }
        local_config = ProviderConfig(
            name=LOCAL,
            kind="local",
            base_url="http://127.0.0.1",
            keyless=True,
            connect_timeout_s=10.0,
            # A local engine may take long over a long prompt on a CPU.
            read_timeout_s=max(600.0, settings.local_load_timeout_s),
        )
        self.adapters[LOCAL] = _make_adapter(local_config, settings)
        self.metrics = Metrics()
        self.client_load: dict[str, int] = {}  # requests in flight per client (limits)
        self._request_prefix = uuid.uuid4().hex[:12]
        self._request_counter = itertools.count(1)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
        self.catalog = ModelCatalog(self)
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
            await adapter.transport.close()
        await self.http.aclose()
        if self.telemetry is not None:
            await self.telemetry.aclose()
