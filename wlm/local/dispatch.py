"""The queue's moving parts: tickets for the requests that wait, run by :func:`plan`.

Every request for a local model takes a :class:`Ticket` in :class:`Dispatcher`; after
every change (a request arrives, ends or is cancelled; an engine becomes ready, stops
or crashes) the dispatcher asks :func:`wlm.local.queue.plan` what to do and lets the
chosen tickets through: to their ready engine, or to start theirs (the supervisor
then evicts the engine the plan named, after its running requests end). A ticket let
through stays counted as running on its engine until the request releases it, which
is how the queue knows the engine's free slots. With cache-aware slots on
(``WLM_LOCAL_SLOT_AFFINITY``), it also knows which: :meth:`Dispatcher.take_slot` gives
a request that got its engine one of the free slots, chosen by
:func:`wlm.local.slot_affinity.pick` from what each slot was last sent.

Everything runs on the event loop; :meth:`Dispatcher.dispatch` is synchronous and
only completes futures, so it may run from the supervisor's change notification.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Protocol

import attrs

from wlm.local.protocol import QueueEntry, QueuePlace
from wlm.local.queue import EngineView, Plan, Priority, Waiter, plan
from wlm.local.slot_affinity import Prefix, pick
from wlm.local.supervisor import Instance, InstanceState

__all__ = ["Dispatcher", "Engines", "Ticket"]


class Engines(Protocol):
    """What the queue reads of the engines (the :class:`Supervisor`)."""

    def instances(self) -> list[Instance]: ...

    def get(self, model_id: str) -> Instance | None: ...


@attrs.define(eq=False)
class Ticket:
    """One request's place in the queue (waiting, then running)."""

    key: str
    request_id: str
    model: str
    priority: Priority
    seq: int
    client: str | None = None
    stream: bool = False
    cancel: Callable[[], None] | None = None
    tokens: Callable[[], int | None] | None = None
    enqueued: float = attrs.field(factory=time.monotonic)
    enqueued_at: float = attrs.field(factory=time.time)
    started: float | None = None  # monotonic: when it was let through
    evict: str | None = None  # the engine its start evicts (the plan's choice)
    position: tuple[int, int] | None = None  # (position, of) while waiting
    prefix: Prefix | None = None  # its prompt, for cache-aware slots
    slot: int | None = None  # the engine slot it holds (cache-aware slots)
    granted: asyncio.Future[None] = attrs.field(
        factory=lambda: asyncio.get_running_loop().create_future()
    )
    moved: asyncio.Event = attrs.field(factory=asyncio.Event)

    @property
    def waiting(self) -> bool:
        return self.started is None

    def waited_s(self, now: float | None = None) -> float:
        end = self.started if self.started is not None else (now or time.monotonic())
        return max(0.0, end - self.enqueued)


@attrs.define
class _Slots:
    """One engine's slots (for one start of it): what each was last sent, when each
    was last released (on the dispatcher's clock; -1: never), who holds which."""

    starts: int
    held: list[Prefix | None]
    last_used: list[int]
    busy: dict[int, Ticket] = attrs.field(factory=dict)
    # Busy slots wlm did not ask for: where llama.cpp put those requests is a guess.
    guessed: set[int] = attrs.field(factory=set)

    @classmethod
    def empty(cls, starts: int, count: int) -> _Slots:
        return cls(starts, [None] * count, [-1] * count)


class Dispatcher:
    """The tickets of every local request, and the plan that lets them through.

    ``slots_for(model)``: an engine's parallel slots (read when it becomes ready).
    ``affinity``: cache-aware slots (:meth:`take_slot`).
    """

    def __init__(
        self,
        supervisor: Engines,
        slots_for: Callable[[str], int],
        max_loaded: int,
        *,
        affinity: bool = False,
    ) -> None:
        self._supervisor = supervisor
        self._slots_for = slots_for
        self._max_loaded = max(1, max_loaded)
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._tickets: dict[str, Ticket] = {}  # waiting and running, by key
        self._keys = itertools.count(1)
        # Per model: (the engine's start number, the last seq of its batch, its slots).
        self._ready: dict[str, tuple[int, int, int]] = {}
        self._evicting: dict[str, str] = {}  # a pending start's model -> the engine it evicts
        self.plans = 0  # how many times the plan ran (for tests)
        self._affinity = affinity
        self._slots: dict[str, _Slots] = {}  # per model, with cache-aware slots
        self._releases = itertools.count()  # the clock of slot releases

    # -- tickets -------------------------------------------------------------------

    def enter(
        self,
        model: str,
        *,
        request_id: str | None = None,
        client_request_id: str | None = None,
        priority: Priority = Priority.NORMAL,
        client: str | None = None,
        stream: bool = False,
        cancel: Callable[[], None] | None = None,
        tokens: Callable[[], int | None] | None = None,
        prefix: Prefix | None = None,
    ) -> Ticket:
        """Queue a request for ``model`` and run the plan (it may go through at once)."""
        seq = next(self._seq)
        self._last_seq = seq
        key = request_id or f"local-{next(self._keys)}"
        if key in self._tickets:  # a retry of the same request, or a reused id
            key = f"{key}#{seq}"
        ticket = Ticket(
            key,
            client_request_id or request_id or key,
            model,
            priority,
            seq,
            client=client,
            stream=stream,
            cancel=cancel,
            tokens=tokens,
            prefix=prefix,
        )
        self._tickets[key] = ticket
        self.dispatch()
        return ticket

    def enter_place(self, model: str, place: QueuePlace) -> Ticket:
        """:meth:`enter` for a request the proxy describes by its :class:`QueuePlace`."""
        return self.enter(
            model,
            request_id=place.request_id or None,
            client_request_id=place.client_request_id or None,
            priority=Priority.parse(place.priority),
            client=place.client,
            stream=place.stream,
            cancel=place.cancel,
            tokens=place.tokens,
            prefix=place.prefix,
        )

    async def wait_turn(self, ticket: Ticket, place: QueuePlace) -> None:
        """Wait until ``ticket`` is let through, telling ``place`` its position as it
        changes and, at the end, how long it waited. Raises the error of a start it
        waited for (:meth:`fail_waiting`)."""
        told: tuple[int, int] | None = None
        try:
            while not ticket.granted.done():
                position = ticket.position
                if place.on_position is not None and position is not None and position != told:
                    told = position
                    await place.on_position(*position)
                    continue
                ticket.moved.clear()
                if ticket.granted.done() or ticket.position != position:
                    continue
                await ticket.moved.wait()
            ticket.granted.result()
        finally:  # a request cancelled while it waited waited too
            if place.waited is not None:
                place.waited(ticket.waited_s())
        if told is not None and place.on_position is not None:
            await place.on_position(None, 0)

    def take_slot(self, ticket: Ticket, starts: int) -> int | None:
        """Give ``ticket``, let through to start ``starts`` of its engine, a free slot
        (cache-aware slots); the slot to ask llama.cpp for (``id_slot``), or None to
        let it pick (affinity off, one slot, no slot worth asking for)."""
        if not self._affinity or ticket.slot is not None:
            return None
        count = max(1, self._slots_for(ticket.model))
        slots = self._slots.get(ticket.model)
        if slots is None or slots.starts != starts or len(slots.held) != count:
            slots = self._slots[ticket.model] = _Slots.empty(starts, count)
        free = [slot for slot in range(count) if slot not in slots.busy]
        if count < 2 or not free:  # no choice to make, or more requests than slots
            return None
        choice = pick(ticket.prefix, slots.held, slots.last_used, free)
        # While llama.cpp placed a running request itself, the slot wlm would ask for may
        # be the one it took (its own pick is by similarity): asking could then queue
        # this request behind that one while another slot idles. Let it pick instead.
        pin = choice.pin and not slots.guessed
        slots.busy[choice.slot] = ticket
        if not pin:
            slots.guessed.add(choice.slot)
        if ticket.prefix is not None:  # else what the slot holds is not known to change
            slots.held[choice.slot] = ticket.prefix
        ticket.slot = choice.slot
        return choice.slot if pin else None

    def _free_slot(self, ticket: Ticket) -> None:
        slots = self._slots.get(ticket.model)
        if ticket.slot is None or slots is None or slots.busy.get(ticket.slot) is not ticket:
            return
        del slots.busy[ticket.slot]
        slots.guessed.discard(ticket.slot)
        if ticket.prefix is not None:  # token counts and embeddings leave no prompt
            slots.last_used[ticket.slot] = next(self._releases)

    def leave(self, ticket: Ticket) -> None:
        """The request is done with its ticket (it ended, failed or gave up waiting)."""
        self._free_slot(ticket)
        if self._tickets.get(ticket.key) is ticket:
            del self._tickets[ticket.key]
            if not ticket.granted.done():
                ticket.granted.cancel()
            self.dispatch()

    def fail_waiting(self, model: str, error: BaseException) -> None:
        """Every request still waiting for ``model`` gets ``error`` (its engine cannot start)."""
        for ticket in list(self._tickets.values()):
            if ticket.model == model and ticket.waiting and not ticket.granted.done():
                del self._tickets[ticket.key]
                ticket.granted.set_exception(error)
                ticket.granted.add_done_callback(_retrieved)  # its waiter may be gone
                ticket.moved.set()
        self.dispatch()

    def cancel(self, key: str) -> Ticket | None:
        """Cancel the request with this id (the telemetry id, or its x-request-id when
        that names one request only); the ticket, or None when there is none."""
        ticket = self._tickets.get(key)
        if ticket is None:
            found = [t for t in self._tickets.values() if t.request_id == key]
            if len(found) != 1:
                return None
            ticket = found[0]
        if ticket.cancel is None:
            return None
        ticket.cancel()
        if ticket.waiting:  # out of the queue at once (a running one holds its slot
            del self._tickets[ticket.key]  # until its request has unwound)
            self.dispatch()
        return ticket

    def entries(self) -> list[QueueEntry]:
        """Running requests first (oldest first), then the waiting ones by position."""
        now = time.monotonic()
        running = sorted((t for t in self._tickets.values() if not t.waiting), key=lambda t: t.seq)
        waiting = sorted(
            (t for t in self._tickets.values() if t.waiting),
            key=lambda t: t.position[0] if t.position else t.seq,
        )
        return [self._entry(t, now) for t in (*running, *waiting)]

    @staticmethod
    def _entry(ticket: Ticket, now: float) -> QueueEntry:
        tokens = None
        if ticket.tokens is not None and not ticket.waiting:
            tokens = ticket.tokens()
        return QueueEntry(
            id=ticket.key,
            request_id=ticket.request_id,
            model=ticket.model,
            priority=ticket.priority.label,
            state="waiting" if ticket.waiting else "running",
            position=ticket.position[0] if ticket.position and ticket.waiting else None,
            client=ticket.client,
            stream=ticket.stream,
            enqueued_at=ticket.enqueued_at,
            waited_s=ticket.waited_s(now),
            running_s=now - ticket.started if ticket.started is not None else None,
            tokens=tokens,
        )

    # -- the plan ------------------------------------------------------------------

    def _views(self) -> dict[str, EngineView]:
        running: dict[str, int] = {}
        for ticket in self._tickets.values():
            if not ticket.waiting:
                running[ticket.model] = running.get(ticket.model, 0) + 1
        views: dict[str, EngineView] = {}
        evicted = set(self._evicting.values())
        for instance in self._supervisor.instances():
            model = instance.model_id
            state = instance.state
            count = running.get(model, 0)
            if state is InstanceState.READY:
                known = self._ready.get(model)
                if known is None or known[0] != instance.starts:
                    # Just became ready: whoever waits for it now is its batch.
                    known = (instance.starts, self._last_seq, max(1, self._slots_for(model)))
                    self._ready[model] = known
                views[model] = EngineView(
                    model,
                    "stopping" if model in evicted else "ready",
                    known[2],
                    count,
                    known[1],
                    instance.last_used_mono,
                )
                continue
            self._ready.pop(model, None)
            if state is InstanceState.STARTING or (count and state is not InstanceState.STOPPING):
                views[model] = EngineView(model, "starting", running=count)
            elif state is InstanceState.STOPPING:
                views[model] = EngineView(model, "stopping", running=count)
        for model, count in running.items():
            if model not in views:  # let through to start it; the supervisor has not yet
                views[model] = EngineView(model, "starting", running=count)
        return views

    def dispatch(self) -> Plan:
        """Run the plan on the present state and let its tickets through."""
        self.plans += 1
        # A pending start is over once its engine is ready, or nothing waits on it.
        for model in list(self._evicting):
            instance = self._supervisor.get(model)
            pending = any(not t.waiting and t.model == model for t in self._tickets.values())
            if not pending or (instance is not None and instance.state is InstanceState.READY):
                del self._evicting[model]
        views = self._views()
        waiters = [
            Waiter(t.key, t.model, t.priority, t.seq)
            for t in self._tickets.values()
            if t.waiting and not t.granted.done()
        ]
        step = plan(waiters, views, self._max_loaded)
        now = time.monotonic()
        for key in step.admit:
            self._let_through(self._tickets[key], now)
        if step.start is not None:
            ticket = self._tickets[step.start]
            ticket.evict = step.evict
            if step.evict is not None:
                self._evicting[ticket.model] = step.evict
            self._let_through(ticket, now)
        total = len(step.waiting)
        for index, key in enumerate(step.waiting, 1):
            ticket = self._tickets[key]
            if ticket.position != (index, total):
                ticket.position = (index, total)
                ticket.moved.set()
        return step

    @staticmethod
    def _let_through(ticket: Ticket, now: float) -> None:
        ticket.started = now
        if not ticket.granted.done():
            ticket.granted.set_result(None)
        ticket.moved.set()


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
