"""Deadlines of requests in flight, on one coarse timer rather than a timer each.

A request body that stops arriving must end in a 408, and a stream's client that leaves
must be noticed; most requests finish long before either matters. ``asyncio.timeout()``
or ``call_later()`` per request costs a timer handle, a heap push, its cancel and, for a
body, a push back per part: about 7 µs of the event loop a request, a seventh of the
proxy's own work (docs/performance.md). Here a deadline joins a dict and leaves it; one
callback, armed only while a deadline is live, looks at them every ``tick_s``. A deadline
fires between its due time and one tick later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

__all__ = ["Deadline", "Watchdog"]

TICK_S = 0.025

log = logging.getLogger(__name__)


class Deadline:
    """One deadline: ``fire`` runs once, on the event loop, when it has passed."""

    __slots__ = ("_watchdog", "due", "fire", "fired")

    def __init__(self, watchdog: Watchdog, due: float, fire: Callable[[], object]) -> None:
        self._watchdog = watchdog
        self.due = due
        self.fire = fire
        self.fired = False

    def push_back(self, delay_s: float) -> None:
        """Due ``delay_s`` from now (e.g. a part of the body came)."""
        self.due = self._watchdog.loop_time() + delay_s

    def cancel(self) -> None:
        """It will not fire (a no-op once it has)."""
        self._watchdog.live.pop(self, None)


class Watchdog:
    """The deadlines of one event loop's requests, looked at every ``tick_s``."""

    __slots__ = ("_armed", "_loop", "live", "tick_s")

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self.live: dict[Deadline, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed = False

    def start(self, delay_s: float, fire: Callable[[], object]) -> Deadline:
        """A deadline ``delay_s`` from now; call it from the event loop."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the first call, or a new loop (tests): arm on this one
            self._loop = loop
            self._armed = False
            self.live.clear()  # the old loop's requests are gone with it
        deadline = Deadline(self, loop.time() + delay_s, fire)
        self.live[deadline] = None
        if not self._armed:
            self._armed = True
            loop.call_later(self.tick_s, self._tick, loop)
        return deadline

    @property
    def armed(self) -> bool:
        """Whether the timer is set (it is not while no deadline is live)."""
        return self._armed

    def loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return  # a loop left behind (tests): start() on the new one dropped its deadlines
        now = loop.time()
        due = [deadline for deadline in self.live if deadline.due <= now]
        for deadline in due:
            if self.live.pop(deadline, 0) is None:  # not cancelled by an earlier fire
                deadline.fired = True
                try:
                    deadline.fire()
                except Exception:  # one request's trouble must not stop the others' deadlines
                    log.exception("a request deadline failed")
        if self.live:
            loop.call_later(self.tick_s, self._tick, loop)
        else:
            self._armed = False
