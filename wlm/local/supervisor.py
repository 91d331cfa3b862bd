"""Per-model engine lifecycle: start on demand, share one load, evict LRU, unload when idle.

States of one model's instance::

    stopped ──acquire──> starting ──healthy──> ready ──unload/evict/idle──> stopping ──> stopped
                            │                    │
                            └──fails──> failed <─┘ (the engine exited by itself)
    failed ──acquire──> starting   (a crashed or failed engine is retried on the next request)

A model whose engine crashes three times within a minute is held (wlm/local/backoff.py):
it stays failed, with its last log lines as the reason, and requests get that reason
instead of a restart until the hold expires or an explicit :meth:`Supervisor.load`.

Rules (each one a lesson from llama-swap and llama.cpp's router, docs/local-models.md):
- single flight: every request for a loading model waits for the same load;
- a request counts as in flight from the moment it waits for the load until it
  releases the instance; an instance is stopped only after its in-flight count
  drains to zero, so a swap never cuts a request off (the newcomer waits);
- at most ``max_loaded`` engines run; starting another stops the least recently used
  one (idle instances first). Starts are serialised in FIFO order by one lock, and
  requests for an instance that is being stopped wait for the stop, then queue;
- ``load_timeout_s`` bounds the engine's start (spawn to ``/health`` 200), not the
  wait for a slot.

Everything runs on one event loop; state changes happen between awaits, so no lock
guards the counters. Engines are spawned from the loop's own thread (see engine_process.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from attrs import frozen

from wlm.errors import ModelUnavailable
from wlm.lifeline import ProcessGroups
from wlm.local.backoff import CrashBackoff
from wlm.local.engine_process import EngineProcess, EngineStartError
from wlm.local.engines import EngineCommand, EngineNotFound
from wlm.local.logbuffer import LogBuffer
from wlm.transport import PooledTransport, Transport, TransportFactory

__all__ = ["Instance", "InstanceInfo", "InstanceState", "Supervisor"]

log = logging.getLogger("wlm.local")


class InstanceState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


@frozen
class InstanceInfo:
    """A snapshot of one model's engine, for the management API and pages."""

    model_id: str
    state: str
    pid: int | None
    port: int | None
    engine: str | None  # "llama-server" or "embedded"
    started_at: float | None  # epoch seconds
    uptime_s: float | None
    rss_bytes: int | None
    in_flight: int
    last_used: float | None  # epoch seconds
    restarts: int
    last_error: str | None
    crashes: int = 0  # times its engine exited by itself since wlm started
    held_s: float | None = None  # crash backoff: seconds until a request may restart it


class Instance:
    """One model's engine across its restarts (owned and mutated by :class:`Supervisor`)."""

    def __init__(
        self, model_id: str, log_lines: int, redact: Callable[[str], str] | None = None
    ) -> None:
        self.model_id = model_id
        self.state = InstanceState.STOPPED
        self.engine: EngineProcess | None = None
        self.in_flight = 0
        self.last_used: float | None = None
        self.last_used_mono = 0.0
        self.restarts = 0
        self.last_error: str | None = None
        self.logs = LogBuffer(log_lines, redact=redact)
        self.load: asyncio.Task[None] | None = None
        self.crashed = False
        self.starts = 0
        self.evict: str | None = None  # the engine its next start evicts (the queue's choice)
        self.backoff = CrashBackoff()
        self.crashes = 0

    @property
    def base_url(self) -> str | None:
        return self.engine.base_url if self.engine is not None else None

    def touch(self) -> None:
        self.last_used = time.time()
        self.last_used_mono = time.monotonic()

    def info(self) -> InstanceInfo:
        engine = self.engine
        live = engine if engine is not None and engine.returncode is None else None
        return InstanceInfo(
            model_id=self.model_id,
            state=str(self.state),
            pid=live.pid if live else None,
            port=live.port if live else None,
            engine=engine.command.kind if engine is not None else None,
            started_at=live.started_at if live else None,
            uptime_s=time.monotonic() - live.started_mono if live else None,
            rss_bytes=live.rss_bytes() if live else None,
            in_flight=self.in_flight,
            last_used=self.last_used,
            restarts=self.restarts,
            last_error=self.last_error,
            crashes=self.crashes,
            held_s=self.backoff.held(time.monotonic()),
        )

    def held_error(self, left: float) -> ModelUnavailable:
        """The error a request gets while the crash backoff holds the engine."""
        head, _, tail = (self.last_error or "").partition("\n")
        return ModelUnavailable(
            f"{head} It is not restarted for another {left:.0f} s, or until it is loaded "
            f"explicitly (POST /api/models/{self.model_id}/load, or Load on the Models "
            "page)." + (f"\n{tail}" if tail else ""),
            headers={"retry-after": str(max(1, round(left)))},
        )


CommandFactory = Callable[[str], EngineCommand]
# Told (model id, event, detail) when an engine crashes ("crash") or is held ("held").
EventSink = Callable[[str, str, str], None]
# Log lines in the reason of a held model (an error message is cut at 1000 characters).
_HELD_TAIL = 5
_HELD_LINE = 150


class Supervisor:
    """Runs at most ``max_loaded`` engines; see the module docstring for the rules.

    ``command_for(model_id)`` builds the engine command (it may raise
    :class:`ModelUnavailable` or :class:`EngineNotFound`). ``idle_unload_s <= 0``
    disables idle unloading.
    """

    def __init__(
        self,
        command_for: CommandFactory,
        *,
        max_loaded: int = 1,
        idle_unload_s: float = 600.0,
        load_timeout_s: float = 120.0,
        stop_grace_s: float = 5.0,
        log_lines: int = 500,
        redact: Callable[[str], str] | None = None,
        groups: ProcessGroups | None = None,
        transports: TransportFactory = PooledTransport,
    ) -> None:
        self._command_for = command_for
        self._transports = transports
        self._redact = redact
        self.groups = groups or ProcessGroups()  # every engine's process group
        self._max_loaded = max(1, max_loaded)
        self._idle_unload_s = idle_unload_s
        self._load_timeout_s = load_timeout_s
        self._stop_grace_s = stop_grace_s
        self._log_lines = log_lines
        self._instances: dict[str, Instance] = {}
        self._slots = asyncio.Lock()  # serialises starts (FIFO) and eviction decisions
        self._changed = asyncio.Event()
        self._health: Transport | None = None  # engine health checks
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle_task: asyncio.Task[None] | None = None
        self._closing = False
        # Called (synchronously) after every state change: the queue re-plans.
        self.on_change: Callable[[], object] | None = None
        self.on_event: EventSink | None = None  # crashes, for telemetry

    # -- observation ---------------------------------------------------------------

    def instance(self, model_id: str) -> Instance:
        """The (possibly never started) instance record of ``model_id``."""
        instance = self._instances.get(model_id)
        if instance is None:
            instance = self._instances[model_id] = Instance(model_id, self._log_lines, self._redact)
        return instance

    def get(self, model_id: str) -> Instance | None:
        return self._instances.get(model_id)

    def instances(self) -> list[Instance]:
        return list(self._instances.values())

    def _notify(self) -> None:
        """Wake everyone waiting in :meth:`wait_for` (they re-check their condition)."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()
        if self.on_change is not None:
            self.on_change()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until ``predicate()`` is true after some state change; TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    # -- requests ------------------------------------------------------------------

    async def acquire(
        self, model_id: str, *, slots: int | None = None, evict: str | None = None
    ) -> Instance:
        """Count one request on ``model_id``'s engine, starting it first if needed.

        Returns the ready instance; call :meth:`release` exactly once afterwards.
        Raises :class:`ModelUnavailable` when the engine cannot be started. With
        ``slots`` (the engine's parallel slots), a ready engine with that many requests
        in flight is waited on until one ends, rather than queued inside the engine.
        ``evict``: the engine to stop first if a start needs room (the queue's choice;
        else the least recently used one).
        """
        instance = self.instance(model_id)
        instance.evict = evict
        while True:
            if self._closing:
                raise ModelUnavailable("The local model manager is shutting down.")
            if instance.state is InstanceState.READY:
                engine = instance.engine
                if engine is not None and engine.has_exited():
                    # It died a moment ago (kill -9, crash) and its watcher has not run
                    # yet: sending the request there would fail. Let the watcher record
                    # the crash, then start the engine again.
                    def replaced(
                        dead: EngineProcess = engine, waiting: Instance = instance
                    ) -> bool:
                        return waiting.engine is not dead or self._closing

                    await self.wait_for(replaced)
                    continue
                if slots is not None and instance.in_flight >= slots:
                    # Every slot is taken: wait for one to free (the caller bounds it).
                    def free(waiting: Instance = instance, limit: int = slots) -> bool:
                        return waiting.in_flight < limit or waiting.state is not InstanceState.READY

                    await self.wait_for(free)
                    continue
                instance.in_flight += 1
                instance.touch()
                return instance
            if instance.state is InstanceState.STOPPING:
                await self.wait_for(lambda: instance.state is not InstanceState.STOPPING)
                continue
            if instance.state in (InstanceState.STOPPED, InstanceState.FAILED):
                left = instance.backoff.held(time.monotonic())
                if left is not None:
                    raise instance.held_error(left)
                self._begin_load(instance)
            load = instance.load
            assert load is not None
            # Reserved before the load finishes, so nothing evicts the model between
            # the load completing and this request using it.
            instance.in_flight += 1
            try:
                await asyncio.shield(load)
            except BaseException:
                self._release_count(instance)
                raise
            if instance.engine is not None and instance.state in (
                InstanceState.READY,
                InstanceState.STOPPING,  # chosen for eviction, but it waits for us
            ):
                instance.touch()
                return instance
            self._release_count(instance)

    def release(self, instance: Instance) -> None:
        """End one request counted by :meth:`acquire`."""
        instance.touch()
        self._release_count(instance)

    def _release_count(self, instance: Instance) -> None:
        instance.in_flight -= 1
        self._notify()

    # -- starting ------------------------------------------------------------------

    def _begin_load(self, instance: Instance) -> None:
        instance.state = InstanceState.STARTING
        instance.load = asyncio.create_task(self._load(instance), name=f"load {instance.model_id}")
        # A load whose waiters all left still must not log "exception never retrieved".
        instance.load.add_done_callback(lambda task: task.cancelled() or task.exception())
        self._notify()

    async def _load(self, instance: Instance) -> None:
        try:
            async with self._slots:
                await self._make_room(instance)
                await self._start(instance)
        except asyncio.CancelledError:
            instance.state = InstanceState.STOPPED
            instance.engine = None
            raise
        except ModelUnavailable as exc:
            instance.state = InstanceState.FAILED
            instance.engine = None
            instance.last_error = exc.message.split("\n", 1)[0]  # the tail stays in logs()
            log.warning("%s", instance.last_error)
            raise
        finally:
            self._notify()

    async def _make_room(self, newcomer: Instance) -> None:
        """Stop least recently used engines until one more fits (draining each first)."""
        while True:
            loaded = [
                i for i in self._instances.values() if i is not newcomer and i.engine is not None
            ]
            if len(loaded) < self._max_loaded:
                return
            candidates = [i for i in loaded if i.state is InstanceState.READY]
            if not candidates:  # the others are stopping already: wait for one to exit
                event = self._changed
                await event.wait()
                continue
            chosen = newcomer.evict
            victim = min(
                candidates,
                key=lambda i: (i.model_id != chosen, i.in_flight > 0, i.last_used_mono),
            )
            newcomer.logs.append(f"wlm: waiting for {victim.model_id} to unload")
            await self._stop(victim, f"evicted to make room for {newcomer.model_id}")

    async def _start(self, instance: Instance) -> None:
        if instance.crashed:
            instance.restarts += 1
            instance.crashed = False
        try:
            command = self._command_for(instance.model_id)
        except EngineNotFound as exc:
            raise ModelUnavailable(
                f"Local model '{instance.model_id}' cannot start: {exc}"
            ) from None
        if self._health is None:
            self._health = self._transports(
                "local-health", connect_timeout_s=2.0, read_timeout_s=2.0
            )
        try:
            engine = await EngineProcess.spawn(command, instance.logs, self.groups)
            instance.starts += 1
            instance.engine = engine
            self._notify()
            await engine.wait_ready(self._load_timeout_s, self._health)
        except EngineStartError as exc:
            for line in exc.tail:
                log.debug("%s engine: %s", instance.model_id, line)
            message = f"Local model '{instance.model_id}' failed to start: {exc.reason}"
            if exc.tail:
                message += "\nLast engine log lines:\n" + "\n".join(exc.tail)
            raise ModelUnavailable(message) from None
        instance.state = InstanceState.READY
        instance.last_error = None
        instance.touch()
        log.info(
            "local model %s ready at %s (pid %d)", instance.model_id, engine.base_url, engine.pid
        )
        self._watch(instance, engine)

    def _watch(self, instance: Instance, engine: EngineProcess) -> None:
        """Notice an engine that exits by itself (crash, OOM kill, kill -9)."""

        async def watch() -> None:
            code = await engine.wait()
            if instance.engine is not engine or instance.state is not InstanceState.READY:
                return  # a stop we asked for
            reason = engine.exit_reason(code)
            instance.state = InstanceState.FAILED
            instance.engine = None
            instance.crashed = True
            instance.crashes += 1
            instance.last_error = reason
            instance.logs.append(f"wlm: {reason}")
            log.warning("local model %s: %s", instance.model_id, reason)
            backoff = instance.backoff
            now = time.monotonic()
            held = backoff.crashed(now)
            if held:
                tail = [
                    line[:_HELD_LINE] for line in instance.logs.tail(_HELD_TAIL + 1)[:-1] if line
                ]
                left = backoff.held(now) or 0.0
                instance.last_error = (
                    f"Local model '{instance.model_id}' crashed {backoff.threshold} times "
                    f"within {backoff.window_s:g} s (last: {reason}); held for {left:.0f} s."
                    + ("\nLast engine log lines:\n" + "\n".join(tail) if tail else "")
                )
                instance.logs.append(f"wlm: crashed {backoff.threshold} times, held {left:.0f} s")
                log.warning("local model %s: crash loop, held for %.0f s", instance.model_id, left)
            if self.on_event is not None:
                self.on_event(instance.model_id, "crash", reason)
                if held:
                    self.on_event(instance.model_id, "held", instance.last_error)
            self._notify()

        self._spawn_task(watch(), f"watch {instance.model_id}")

    def _spawn_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- stopping ------------------------------------------------------------------

    async def _stop(self, instance: Instance, reason: str) -> None:
        """Drain ``instance`` (wait for its in-flight requests), then stop its engine."""
        if instance.state is InstanceState.STARTING and instance.load is not None:
            await asyncio.wait({instance.load})  # never raises the load's own error
        if instance.state is InstanceState.STOPPING:
            await self.wait_for(lambda: instance.state is not InstanceState.STOPPING)
            return
        engine = self._mark_stopping(instance, reason)
        if engine is not None:
            await self._drain_and_stop(instance, engine, reason)

    def _mark_stopping(self, instance: Instance, reason: str) -> EngineProcess | None:
        """Turn a ready instance to stopping (no await: nobody can slip in); its engine."""
        if instance.state is not InstanceState.READY or instance.engine is None:
            return None
        instance.state = InstanceState.STOPPING
        instance.logs.append(f"wlm: stopping ({reason})")
        self._notify()
        return instance.engine

    async def _drain_and_stop(
        self,
        instance: Instance,
        engine: EngineProcess,
        reason: str,
        drain_timeout: float | None = None,
    ) -> None:
        try:
            await self.wait_for(lambda: instance.in_flight <= 0, drain_timeout)
        except TimeoutError:
            instance.logs.append(
                f"wlm: {instance.in_flight} request(s) still running, stopping anyway"
            )
        code = await engine.stop(self._stop_grace_s)
        instance.logs.append(f"wlm: engine stopped (exit code {code})")
        log.info("local model %s stopped (%s)", instance.model_id, reason)
        if instance.engine is engine:
            instance.engine = None
            instance.state = InstanceState.STOPPED
        self._notify()

    async def unload(self, model_id: str, reason: str = "unloaded on request") -> None:
        """Stop ``model_id``'s engine once its in-flight requests finish (no-op if not running).

        ``reason`` goes into the engine's log (``wlm: stopping (<reason>)``).
        """
        instance = self._instances.get(model_id)
        if instance is not None:
            await self._stop(instance, reason)

    async def load(self, model_id: str) -> None:
        """Start ``model_id``'s engine if needed and wait until it is ready.

        An explicit load: it clears the crash backoff's hold and history first.
        """
        existing = self._instances.get(model_id)
        if existing is not None:
            existing.backoff.clear()
        instance = await self.acquire(model_id)
        self.release(instance)

    # -- background ----------------------------------------------------------------

    def start(self) -> None:
        """Start the idle-unload task (call from the running event loop)."""
        if self._idle_task is None and self._idle_unload_s > 0:
            self._idle_task = asyncio.create_task(self._idle_loop(), name="wlm idle unload")

    async def _idle_loop(self) -> None:
        while True:
            now = time.monotonic()
            next_due: float | None = None
            for instance in list(self._instances.values()):
                if instance.state is not InstanceState.READY or instance.in_flight > 0:
                    continue
                due = instance.last_used_mono + self._idle_unload_s
                if due <= now:
                    engine = self._mark_stopping(instance, "idle")
                    if engine is not None:
                        stop = self._drain_and_stop(instance, engine, "idle")
                        self._spawn_task(stop, f"idle stop {instance.model_id}")
                else:
                    next_due = due if next_due is None else min(next_due, due)
            event = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if next_due is None else next_due - now):
                    await event.wait()

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Stop every engine (requests get ``drain_timeout`` seconds to finish) and wait."""
        self._closing = True
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
        loads = [
            i.load for i in self._instances.values() if i.load is not None and not i.load.done()
        ]
        for load in loads:
            load.cancel()
        await asyncio.gather(*loads, return_exceptions=True)
        stops = []
        for instance in self._instances.values():
            engine = instance.engine
            if engine is None:
                continue
            # Ready ones become stopping; one already stopping (an eviction cut short
            # by the cancelled load above) is stopped here all the same.
            self._mark_stopping(instance, "shutdown")
            stops.append(self._drain_and_stop(instance, engine, "shutdown", drain_timeout))
        await asyncio.gather(*stops, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for instance in self._instances.values():
            instance.logs.close()
        if self._health is not None:
            await self._health.close()
            self._health = None
        self._notify()
