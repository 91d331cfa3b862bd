"""The queue in front of the local engines: who goes next, and when a swap may begin.

Pure: no I/O, no clock, no event loop. :func:`plan` reads the waiting requests and
the engines, and says which requests go to their engine now, which one may start
its model's engine (evicting which other), and the order of those left waiting
(their positions). :mod:`wlm.local.dispatch` runs it after every change.

The rules (docs/local-models.md, "Queue and priorities"):

- Requests are ranked by priority (``interactive`` before ``normal`` before
  ``batch``), then by arrival: first come, first served within a priority.
- One exception keeps agents from thrashing swaps: the requests for a model that
  were already waiting when its engine became ready are its *batch*. They rank
  ahead of every later request of their priority, so the engine serves them all
  before it is swapped out for work of the same priority. Work of a higher
  priority still goes first.
- A request goes to its model's ready engine when one of its slots is free.
- The first request in rank order whose model has no engine may start it: at once
  when fewer than ``max_loaded`` engines run, else by evicting a ready engine
  that has no waiting request ranked ahead of it (idle engines first, then the
  one with the fewest running requests, then the least recently used). Running
  requests are never cut off: the evicted engine drains them first. While it
  drains, its later requests wait, then start it again in their turn.
- One engine starts at a time.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Literal

from attrs import frozen

__all__ = ["PRIORITIES", "EngineView", "Plan", "Priority", "Waiter", "plan", "rank"]


class Priority(enum.IntEnum):
    """A request's priority in the queue: lower goes first."""

    INTERACTIVE = 0
    NORMAL = 1
    BATCH = 2

    @classmethod
    def parse(cls, text: str) -> Priority:
        """``interactive``, ``normal`` or ``batch`` (any case); ValueError otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown priority {text.strip()!r}: use {', '.join(PRIORITIES)}"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


PRIORITIES: tuple[str, ...] = tuple(p.label for p in Priority)

EngineState = Literal["ready", "starting", "stopping"]


@frozen
class Waiter:
    """A request waiting for its model's engine; ``seq`` is its place in arrival order."""

    key: str
    model: str
    priority: Priority
    seq: int


@frozen
class EngineView:
    """One model's engine as the queue sees it.

    ``running``: requests let through to it and not finished. ``batch``: the waiters
    of this model with ``seq <= batch`` arrived before it was ready (its batch).
    ``last_used``: any clock, larger is later.
    """

    model: str
    state: EngineState
    slots: int = 1
    running: int = 0
    batch: int = -1
    last_used: float = 0.0


@frozen
class Plan:
    """What to do now.

    ``admit``: waiters that go to their ready engine. ``start``: a waiter whose model's
    engine may start (it is let through to wait for the load). ``evict``: the model
    whose engine makes room for that start (None: there is room). ``waiting``: the
    keys still waiting, in rank order (position 1 first).
    """

    admit: tuple[str, ...] = ()
    start: str | None = None
    evict: str | None = None
    waiting: tuple[str, ...] = ()


def rank(waiter: Waiter, engines: Mapping[str, EngineView]) -> tuple[int, int, int]:
    """The sort key of ``waiter``: priority, its engine's batch first, then arrival."""
    engine = engines.get(waiter.model)
    in_batch = engine is not None and engine.state == "ready" and waiter.seq <= engine.batch
    return (int(waiter.priority), 0 if in_batch else 1, waiter.seq)


def plan(waiters: Iterable[Waiter], engines: Mapping[str, EngineView], max_loaded: int) -> Plan:
    """The next step for ``waiters`` given ``engines`` (one entry per model that has an
    engine, or a start under way) and at most ``max_loaded`` engines."""
    ordered = sorted(waiters, key=lambda w: rank(w, engines))
    free = {m: e.slots - e.running for m, e in engines.items() if e.state == "ready"}
    starting = any(e.state == "starting" for e in engines.values())
    admit: list[str] = []
    waiting: list[Waiter] = []
    start: Waiter | None = None
    evict: str | None = None
    held: str | None = None  # the engine being swapped out: its later waiters wait
    decided = starting  # one start at a time; each plan decides at most one
    for waiter in ordered:
        if waiter.model != held and free.get(waiter.model, 0) > 0:
            free[waiter.model] -= 1
            admit.append(waiter.key)
            continue
        if not decided and _needs_start(waiter, engines):
            decided = True
            room, victim = _room(waiter, engines, waiting, max_loaded)
            if room:
                start, evict, held = waiter, victim, victim
                continue
        waiting.append(waiter)
    return Plan(
        admit=tuple(admit),
        start=start.key if start is not None else None,
        evict=evict,
        waiting=tuple(w.key for w in waiting),
    )


def _needs_start(waiter: Waiter, engines: Mapping[str, EngineView]) -> bool:
    engine = engines.get(waiter.model)
    return engine is None or engine.state == "stopping"


def _room(
    head: Waiter,
    engines: Mapping[str, EngineView],
    ahead: list[Waiter],
    max_loaded: int,
) -> tuple[bool, str | None]:
    """Whether ``head`` may start its engine now, and the engine to evict for it."""
    staying = [e for e in engines.values() if e.state != "stopping" and e.model != head.model]
    if len(staying) < max_loaded:
        return True, None
    busy = {w.model for w in ahead}  # engines with a waiter ranked ahead of the head
    candidates = [e for e in staying if e.state == "ready" and e.model not in busy]
    if not candidates:
        return False, None
    victim = min(candidates, key=lambda e: (e.running > 0, e.running, e.last_used, e.model))
    return True, victim.model
