"""LocalManager: the one object the gateway uses for local llama.cpp models.

Usage (the app's lifespan owns it)::

    manager = LocalManager(settings)
    await manager.start()                    # first scan, background tasks (periodic rescan)
    if model in manager.model_ids():         # cheap, cached: fine on every request
        lease = await manager.acquire(model)  # starts the engine if needed
        ...  # send the request to f"{lease.base_url}/v1/chat/completions"
        lease.release()
    await manager.close()                    # stops every engine

A lease (or ``use()``) counts the request as in flight until it is released, so an eviction, an
unload or the idle timer never stops the engine under it.

The models directory is rescanned in the background every ``WLM_LOCAL_RESCAN_S``
seconds (in a worker thread: the request path only reads the cached id sets), and on
demand with :meth:`LocalManager.rescan`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable

from wlm.config import Settings
from wlm.errors import ModelNotFound, ModelUnavailable
from wlm.local.discovery import DiscoveredModel, HeaderCache, log_scan_problems, scan_models
from wlm.local.dispatch import Dispatcher, Ticket
from wlm.local.engines import EngineCommand, EngineSpec, engine_command
from wlm.local.options import EngineOptions, OptionsError, OptionsTable, load_options
from wlm.local.protocol import EngineLease, LocalModel, QueueEntry, QueuePlace, ScanChanges
from wlm.local.supervisor import Instance, InstanceInfo, InstanceState, Supervisor
from wlm.redaction import Redactor

__all__ = ["InstanceInfo", "InstanceState", "LocalManager", "LocalModel", "ScanChanges"]

log = logging.getLogger("wlm.local")


class LocalManager:
    """Discovers local models and supervises their engines (see the module docstring).

    ``scan_interval_s`` is how often the models directory is checked for changes in
    the background (default ``settings.local_rescan_s``; 0 turns the background scan
    off). :meth:`load` of an unknown id rescans first, at most every
    ``unknown_rescan_s``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        scan_interval_s: float | None = None,
        unknown_rescan_s: float = 1.0,
    ) -> None:
        self._settings = settings
        self._root = settings.models_path
        self._scan_interval_s = (
            settings.local_rescan_s if scan_interval_s is None else scan_interval_s
        )
        self._unknown_rescan_s = unknown_rescan_s
        self._cache = HeaderCache()
        self._models: dict[str, DiscoveredModel] = {}
        self._ids: frozenset[str] = frozenset()
        self._all_ids: frozenset[str] = frozenset()
        self._scan_lock = asyncio.Lock()
        self._last_scan = 0.0
        self._options = OptionsTable()
        self._options_stamp: tuple[int, int] | None = None
        self._supervisor = Supervisor(
            self._command_for,
            max_loaded=settings.max_loaded_models,
            idle_unload_s=settings.idle_unload_s,
            load_timeout_s=settings.local_load_timeout_s,
            redact=Redactor(settings.secrets()).text,
        )
        # The queue in front of the engines (wlm/local/queue.py): it re-plans after every
        # change the supervisor makes.
        self._queue = Dispatcher(
            self._supervisor,
            lambda model_id: self.engine_options(model_id).parallel,
            settings.max_loaded_models,
            affinity=settings.local_slot_affinity,
        )
        self._supervisor.on_change = self._queue.dispatch
        self._poller: asyncio.Task[None] | None = None
        self._unloads: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Scan the models directory, read the options file, start the background tasks.

        Raises :class:`OptionsError` when ``WLM_LOCAL_OPTIONS`` names a bad file.
        """
        self._reload_options()
        if not self._root.is_dir():
            log.warning("models directory %s does not exist: no local models", self._root)
        await self.rescan()
        self._supervisor.start()
        if self._scan_interval_s > 0:
            self._poller = asyncio.create_task(self._poll(), name="wlm models scan")

    def on_engine_event(self, sink: Callable[[str, str, str], None] | None) -> None:
        """Tell ``sink(model_id, event, detail)`` of each crash and crash-loop hold."""
        self._supervisor.on_event = sink

    def kill_engines_now(self) -> list[int]:
        """SIGKILL every engine's process group at once, from any thread; their ids.

        For a worker whose ``wlm serve`` died: no graceful stop, nothing awaited.
        """
        return self._supervisor.groups.kill_all()

    async def close(self) -> None:
        """Stop every engine (in-flight requests get a few seconds) and the background tasks."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for task in list(self._unloads):
            task.cancel()
        await asyncio.gather(*self._unloads, return_exceptions=True)
        await self._supervisor.close()

    # -- discovery -----------------------------------------------------------------

    async def rescan(self) -> ScanChanges:
        """Scan the models directory now and return the ids that appeared or went.

        The scan runs in a worker thread; it reads the header only of a file that is new
        or changed (by size or mtime) and only stats the rest.
        A scan already running is waited for, then a new one starts, so a file written
        before the call is always seen. A model whose file is gone stops being listed
        and routed at once; its engine, if running, stops after its in-flight requests.
        """
        async with self._scan_lock:
            models = await asyncio.to_thread(scan_models, self._root, self._cache)
            self._last_scan = time.monotonic()
            if models == self._models:
                return ScanChanges()
            log_scan_problems(models, self._models)
            changes = ScanChanges(
                added=tuple(sorted(set(models) - set(self._models))),
                removed=tuple(sorted(set(self._models) - set(models))),
            )
            self._models = models
            self._ids = frozenset(m.id for m in models.values() if m.usable)
            self._all_ids = frozenset(models)
            if changes.added:
                log.info("local models found: %s", ", ".join(changes.added))
            if changes.removed:
                log.info("local models gone: %s", ", ".join(changes.removed))
            for model_id in changes.removed:  # a deleted file's engine goes once it is idle
                if self._supervisor.get(model_id) is not None:
                    gone = "its file is gone from the models directory"
                    task = asyncio.create_task(self._supervisor.unload(model_id, gone))
                    self._unloads.add(task)
                    task.add_done_callback(self._unloads.discard)
            return changes

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._scan_interval_s)
            try:
                await self.rescan()
            except Exception:  # a scan must never kill the poller
                log.exception("scanning %s failed", self._root)

    def model_ids(self) -> frozenset[str]:
        """The usable (not broken) local model ids; a cached set, cheap to call."""
        return self._ids

    def routable_ids(self) -> frozenset[str]:
        """Every discovered id, broken ones too: a request for a broken file gets a 503
        with the reason instead of falling through to another route."""
        return self._all_ids

    def has_model(self, model_id: str) -> bool:
        """True when ``model_id`` is a usable local model."""
        return model_id in self._ids

    def list_models(self) -> list[LocalModel]:
        """Every model found, broken ones included (with ``broken_reason``), sorted by id."""
        result = []
        for model in self._models.values():
            instance = self._supervisor.get(model.id)
            state = instance.state if instance is not None else InstanceState.STOPPED
            result.append(
                LocalModel(
                    id=model.id,
                    path=model.path,
                    size_bytes=model.size_bytes,
                    architecture=model.architecture,
                    parameters=model.parameters,
                    context_length=model.context_length,
                    quantization=model.quantization,
                    has_chat_template=model.has_chat_template,
                    projector=model.projector,
                    broken_reason=model.broken_reason,
                    state=str(state),
                )
            )
        return result

    # -- engines -------------------------------------------------------------------

    def _reload_options(self) -> None:
        """Re-read the options file when it changed. Raises :class:`OptionsError`."""
        path = self._settings.local_options_file
        if path is None:
            return
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._options_stamp:
            return
        self._options = load_options(path)
        self._options_stamp = stamp

    def engine_options(self, model_id: str) -> EngineOptions:
        """The options ``model_id``'s engine starts with (Settings defaults + options file)."""
        return self._options.resolve(model_id, EngineOptions.from_settings(self._settings))

    def _command_for(self, model_id: str) -> EngineCommand:
        model = self._models.get(model_id)
        if model is None:
            raise ModelUnavailable(f"Local model '{model_id}' is no longer in {self._root}.")
        try:
            self._reload_options()
        except OptionsError as exc:
            raise ModelUnavailable(f"Local model '{model_id}' cannot start: {exc}") from None
        spec = EngineSpec(
            model_id=model_id,
            model_path=model.path,
            options=self.engine_options(model_id),
            projector=model.projector,
        )
        return engine_command(self._settings.llama_server, spec)

    async def _known(self, model_id: str) -> DiscoveredModel:
        model = self._models.get(model_id)
        if model is None and time.monotonic() - self._last_scan >= self._unknown_rescan_s:
            # Maybe the file was just copied in. Only load() gets here with an unknown
            # id: requests reach use() only for ids the router found in routable_ids().
            await self.rescan()
            model = self._models.get(model_id)
        if model is None:
            raise ModelNotFound(model_id)
        if model.broken_reason is not None:
            raise ModelUnavailable(
                f"Local model '{model_id}' cannot be loaded: {model.broken_reason}"
            )
        return model

    def is_ready(self, model_id: str) -> bool:
        """True when ``model_id``'s engine is up and admitting requests (no load wait)."""
        instance = self._supervisor.get(model_id)
        return instance is not None and instance.state is InstanceState.READY

    async def acquire(
        self, model_id: str, *, max_wait_s: float | None = None, place: QueuePlace | None = None
    ) -> EngineLease:
        """Hold one slot of ``model_id``'s running engine for one request (starting it if
        needed), after waiting for its turn in the queue (``place``: who waits).

        The request counts as in flight until the lease is released. Raises
        :class:`ModelNotFound` for an unknown id and :class:`ModelUnavailable` (with the
        engine's reason) when it cannot start; every request waiting for that start
        gets the same error.

        With ``max_wait_s`` (a request that has somewhere else to go), the engine must
        be ready with one of its parallel slots free within that many seconds, else
        :class:`ModelUnavailable` says why (still loading, or every slot busy); a load
        this request began goes on for the next one.
        """
        await self._known(model_id)
        place = place or QueuePlace()
        ticket = self._queue.enter_place(model_id, place)
        try:
            if max_wait_s is None:
                instance = await self._through(ticket, place)
            else:
                try:
                    async with asyncio.timeout(max_wait_s):
                        instance = await self._through(ticket, place)
                except TimeoutError:
                    raise ModelUnavailable(
                        f"Local model '{model_id}' could not take the request within "
                        f"{max_wait_s:g} s (WLM_LOCAL_MAX_WAIT_S): {self._why_waiting(ticket)}."
                    ) from None
        except BaseException:
            self._queue.leave(ticket)
            raise
        assert instance.base_url is not None
        slot = self._queue.take_slot(ticket, instance.starts)
        release = functools.partial(self._release, instance, ticket)
        return EngineLease(instance.base_url, release, slot)

    async def _through(self, ticket: Ticket, place: QueuePlace) -> Instance:
        """Wait for ``ticket``'s turn (telling its position as it changes), then take
        its engine from the supervisor (which starts it when needed)."""
        await self._queue.wait_turn(ticket, place)
        try:
            return await self._supervisor.acquire(ticket.model, evict=ticket.evict)
        except ModelUnavailable as exc:
            self._queue.fail_waiting(ticket.model, exc)  # they waited for the same start
            raise

    def _why_waiting(self, ticket: Ticket) -> str:
        running = self._supervisor.get(ticket.model)
        ready = running is not None and running.state is InstanceState.READY
        if ready and ticket.waiting:
            slots = self.engine_options(ticket.model).parallel
            ahead = f" ({ticket.position[0] - 1} ahead of it)" if ticket.position else ""
            return f"all {slots} of its slots are busy{ahead}"
        if ticket.waiting:
            return "it waits for its turn to start the engine (another model's is in use)"
        return "it is still loading"

    def _release(self, instance: Instance, ticket: Ticket) -> None:
        self._supervisor.release(instance)
        self._queue.leave(ticket)

    def queue(self) -> list[QueueEntry]:
        """The requests running on the engines and waiting for them (running first)."""
        return self._queue.entries()

    def cancel_queued(self, request_id: str) -> QueueEntry | None:
        """Cancel a running or waiting request by its id; what it was, or None."""
        entries = {e.id: e for e in self._queue.entries()}
        ticket = self._queue.cancel(request_id)
        return entries.get(ticket.key) if ticket is not None else None

    @contextlib.asynccontextmanager
    async def use(self, model_id: str) -> AsyncIterator[str]:
        """Yield the base URL (``http://127.0.0.1:PORT``) of ``model_id``'s running engine.

        Starts the engine if needed (one load shared by all waiting requests, evicting
        the least recently used engine after its requests finish). The request counts
        as in flight until the block exits. Raises :class:`ModelNotFound` for an unknown
        id and :class:`ModelUnavailable` (with the engine's reason) when it cannot start.
        """
        lease = await self.acquire(model_id)
        try:
            yield lease.base_url
        finally:
            lease.release()

    async def load(self, model_id: str) -> None:
        """Start ``model_id``'s engine now (as a request would) and wait until it is ready."""
        await self._known(model_id)
        await self._supervisor.load(model_id)

    async def unload(self, model_id: str) -> None:
        """Stop ``model_id``'s engine after its in-flight requests finish.

        Raises :class:`ModelNotFound` when there is no such model or engine.
        """
        if model_id not in self._models and self._supervisor.get(model_id) is None:
            raise ModelNotFound(model_id)
        await self._supervisor.unload(model_id)

    def instances(self) -> list[InstanceInfo]:
        """One entry per model whose engine was started (running or not) or failed, by id."""
        found = [i.info() for i in self._supervisor.instances() if i.starts or i.last_error]
        return sorted(found, key=lambda info: info.model_id)

    def logs(self, model_id: str) -> list[str]:
        """The last lines (up to 500) of ``model_id``'s engine output, oldest first."""
        instance = self._supervisor.get(model_id)
        return instance.logs.lines() if instance is not None else []

    async def follow_logs(self, model_id: str, backlog: bool = True) -> AsyncIterator[str]:
        """Yield ``model_id``'s buffered log lines (when ``backlog``), then new ones live.

        Runs until the consumer stops (or :meth:`close`). Raises :class:`ModelNotFound`
        for an id that is neither a model nor a known engine.
        """
        if model_id not in self._models and self._supervisor.get(model_id) is None:
            raise ModelNotFound(model_id)
        async for line in self._supervisor.instance(model_id).logs.follow(backlog):
            yield line

    async def wait_for_state(self, model_id: str, *states: str, timeout: float = 30.0) -> str:
        """Wait until ``model_id``'s engine is in one of ``states``; the state reached.

        Raises TimeoutError after ``timeout`` seconds. Useful for pages and tests.
        """
        instance = self._supervisor.instance(model_id)
        await self._supervisor.wait_for(lambda: instance.state in states, timeout)
        return str(instance.state)
