"""The running gateway: every long-lived part, built once per app from Settings.

Tests build one per test; nothing here is global. The Litestar lifespan calls
:meth:`Gateway.start` and :meth:`Gateway.close`. ``transports`` is the one seam to
the network: tests pass ``MockTransport(handler).factory`` to run every provider,
local engines included, in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import attrs

from wlm.auth import KeyRing
from wlm.catalog import ModelCatalog
from wlm.config import ADMIN_CLIENT, ClientKey, Settings
from wlm.deadlines import Watchdog
from wlm.dialects import ResponseStore, build_dialects
from wlm.hub import HubClient, PullManager
from wlm.limits import KeyLimiter, client_slots
from wlm.local.box_stats import BoxSample, BoxSampler
from wlm.local.protocol import LocalModels
from wlm.metrics import Metrics, Pulse
from wlm.providers.base import Adapter
from wlm.providers.peer import PeerDirectory
from wlm.providers.registry import build_adapters
from wlm.redaction import Redactor
from wlm.resilience.cooldowns import Cooldowns
from wlm.resilience.fallbacks import FallbackChains
from wlm.resilience.retry_policy import RetryPolicy
from wlm.routing.resolve import Router
from wlm.sessions import SessionSigner
from wlm.telemetry.pricing import Prices
from wlm.telemetry.records import BoxSampleRecord, EngineEventRecord
from wlm.telemetry.sink import TelemetrySink
from wlm.telemetry.spend import read_spend
from wlm.transport import PooledTransport, TransportFactory

__all__ = ["Gateway", "Pacing", "box_records"]

log = logging.getLogger("wlm")
# With a shared database (WLM_TELEMETRY_URL): how often budgets catch up with what the
# other replicas spent.
FLEET_SPEND_EVERY_S = 15.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


@attrs.frozen
class Pacing:
    """How the request path waits between tries, and the time and chance it reads for
    them (Retry-After dates, jitter): real by default; tests pass their own."""

    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    now: Callable[[], datetime] = _utc_now
    random: Callable[[], float] = random.random


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
            [ClientKey(ADMIN_CLIENT, settings.admin_key)] if settings.admin_key else []
        )
        self.local = local
        self.telemetry = telemetry
        # Other wlm boxes (WLM_PEERS): their local models, polled in the background.
        self.peers = PeerDirectory(
            settings.peers, transports, poll_s=settings.peer_poll_s, redactor=self.redactor
        )
        self.router = Router(
            settings,
            local.routable_ids if local is not None else frozenset,
            self.peers if self.peers else None,
        )
        self.adapters: dict[str, Adapter] = build_adapters(settings, transports, local)
        self.adapters.update(self.peers.adapters)
        self.responses = ResponseStore(enabled=settings.log_content)
        self.dialects = build_dialects(self.responses)
        self.metrics = Metrics()
        # The dashboard's last minutes, read off the metrics once a second.
        self.pulse = Pulse(self.metrics)
        self._pulse_task: asyncio.Task[None] | None = None
        self.client_slots = client_slots(settings)
        # When upstreams fail (wlm/api/attempts.py): one policy, one chain table, and the
        # cooldowns every request shares.
        self.retry_policy = RetryPolicy(settings.retries, settings.retry_max_wait_s)
        self.fallbacks = FallbackChains(settings.fallbacks)
        self.cooldowns = Cooldowns(settings.cooldown_failures, settings.cooldown_s)
        self.peers.watch(self.cooldowns)
        self.pacing = Pacing()
        # Body and disconnect deadlines of the requests in flight, on one coarse timer.
        self.watchdog = Watchdog()
        self.prices = Prices.from_settings(settings)
        self.key_limits = KeyLimiter(settings.key_limits)
        # The pages' session cookies; the proxy reads them for the playground's requests.
        self.sessions = SessionSigner()
        self._request_prefix = uuid.uuid4().hex[:12]
        self._request_counter = itertools.count(1)
        self.catalog = ModelCatalog(
            self.adapters,
            self.router,
            local,
            redactor=self.redactor,
            cache_s=settings.models_cache_s,
            peers=self.peers,
        )
        # Models from the Hugging Face Hub (wlm/hub/): pulled in background threads; a
        # finished pull rescans the models directory so the model is listed at once.
        self.pulls = PullManager(
            HubClient(settings),
            settings.models_path,
            on_pulled=local.rescan if local is not None else None,
        )
        self._fleet_spend: asyncio.Task[None] | None = None
        # The box's resources, sampled in the background every WLM_STATS_EVERY_S
        # seconds: the latest is read by GET /api/stats and the dashboard.
        self.box_sampler = BoxSampler(local)
        self.box: BoxSample | None = None
        self._box_task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()

    def new_request_id(self) -> str:
        """A unique id per request: a random per-process prefix and a counter (no syscall)."""
        return f"req_{self._request_prefix}{next(self._request_counter):08x}"

    async def start(self) -> None:
        if self.telemetry is not None:
            self.telemetry.start()
            if self.key_limits.enabled:
                await self._seed_spend(self.telemetry)
                if self.settings.telemetry_url:
                    self._fleet_spend = asyncio.create_task(
                        self._follow_fleet_spend(self.telemetry), name="wlm-fleet-spend"
                    )
        if self.local is not None:
            if self.telemetry is not None:
                self.local.on_engine_event(self._engine_event)
            await self.local.start()
        self.catalog.refresh_in_background()
        self.peers.start()
        self._pulse_task = asyncio.create_task(self._beat(), name="wlm-pulse")
        if self.settings.stats_every_s > 0:
            self._box_task = asyncio.create_task(
                self._sample_box(self.settings.stats_every_s), name="wlm-box-stats"
            )
        self.started.set()

    def _engine_event(self, model_id: str, event: str, detail: str) -> None:
        """A local engine crashed (or was held): an ``engine_events`` row, off the loop."""
        assert self.telemetry is not None
        at = datetime.now(UTC).replace(tzinfo=None)
        self.telemetry.submit_event(
            EngineEventRecord(at, socket.gethostname(), model_id, event, self.redactor.text(detail))
        )

    async def _beat(self) -> None:
        while True:
            self.pulse.beat(time.time())
            await asyncio.sleep(1.0)

    async def _sample_box(self, every_s: float) -> None:
        host = socket.gethostname()
        while True:
            try:
                sample = await self.box_sampler.sample()
                self.box = sample
                if self.telemetry is not None:
                    self.telemetry.submit_box(box_records(sample, host))
            except Exception:  # a bad sample is skipped; the next one may do
                log.exception("box stats: sampling failed")
            await asyncio.sleep(every_s)

    async def _seed_spend(self, telemetry: TelemetrySink) -> None:
        """Budgets count what was spent before a restart: today's and this month's spend
        per key, read back from telemetry (a file that cannot be read counts nothing)."""
        now = datetime.now(UTC)
        try:
            spent = await telemetry.read(lambda con: read_spend(con, now))
        except Exception as exc:
            log.warning("budgets start from zero: telemetry could not be read (%s)", exc)
            return
        for row in spent:
            self.key_limits.seed_spend(row.client, row.day_usd, row.month_usd)

    async def _follow_fleet_spend(self, telemetry: TelemetrySink) -> None:
        while True:
            await asyncio.sleep(FLEET_SPEND_EVERY_S)
            await self.catch_up_spend(telemetry)

    async def catch_up_spend(self, telemetry: TelemetrySink) -> None:
        """Budgets are fleet-wide: raise each key's spend today and this month to what the
        shared database holds for every replica (this one's written rows included, so
        nothing counts twice; what it has not written yet stays counted)."""
        now = datetime.now(UTC)
        try:
            fleet = await telemetry.read(lambda con: read_spend(con, now))
        except Exception as exc:
            log.debug("budgets: the fleet's spend could not be read (%s)", exc)
            return
        for row in fleet:
            mine = self.key_limits.usage([row.client])[0]
            day = max(0.0, row.day_usd - mine.usd_today)
            month = max(0.0, row.month_usd - mine.usd_this_month)
            if day or month:
                self.key_limits.seed_spend(row.client, day, month)

    async def close(self) -> None:
        if self._fleet_spend is not None:
            self._fleet_spend.cancel()
        if self._pulse_task is not None:
            self._pulse_task.cancel()
        if self._box_task is not None:
            # Awaited: a GPU tool it is running is killed before the server goes on.
            self._box_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._box_task
        await self.pulls.close()
        await self.peers.close()
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


def box_records(sample: BoxSample, host: str) -> list[BoxSampleRecord]:
    """A sample as ``box_samples`` rows: the cpu row, one per GPU, one per engine."""
    at = datetime.fromtimestamp(sample.at, UTC).replace(tzinfo=None)  # as stored: naive UTC
    rows = [
        BoxSampleRecord(
            at,
            host,
            "cpu",
            None,
            util_percent=sample.cpu_percent,
            mem_used_bytes=sample.mem_used_bytes,
            mem_total_bytes=sample.mem_total_bytes,
        )
    ]
    rows += [
        BoxSampleRecord(
            at,
            host,
            "gpu",
            gpu.name,
            gpu_index=gpu.index,
            util_percent=gpu.util_percent,
            mem_used_bytes=gpu.mem_used_bytes,
            mem_total_bytes=gpu.mem_total_bytes,
        )
        for gpu in sample.gpus
    ]
    rows += [
        BoxSampleRecord(
            at,
            host,
            "engine",
            engine.model,
            mem_used_bytes=engine.rss_bytes,
            slots_busy=engine.slots_busy,
        )
        for engine in sample.engines
    ]
    return rows
