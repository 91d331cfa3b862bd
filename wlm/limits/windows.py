"""A sliding window: at most ``limit`` units in any ``window_s`` seconds.

Requests are counted one by one at the time they were let in, so a window of 60
requests a minute admits exactly 60 in any 60 seconds, never a 61st, and says
exactly when the next one fits (:meth:`SlidingWindow.wait_s`). Tokens, counted
when a request ends, may overshoot the limit (a stream is not cut); the window is
then full until enough of them are older than ``window_s``.

``resolution_s`` merges entries that close together (tokens: one entry per second,
so memory stays bounded however many requests end); a merged entry takes the later
time, so it may count a little longer than exact, never shorter.

>>> window = SlidingWindow(2, 60.0)
>>> window.add(0.0); window.add(10.0)
>>> window.has_room(30.0), window.wait_s(30.0), window.reset_s(30.0)
(False, 30.0, 40.0)
>>> window.has_room(60.0)
True
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SlidingWindow", "format_duration"]


class SlidingWindow:
    """Units let in over the last ``window_s`` seconds, against ``limit``."""

    __slots__ = ("_amounts", "_times", "_used", "limit", "resolution_s", "window_s")

    def __init__(self, limit: int, window_s: float = 60.0, resolution_s: float = 0.0) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a window needs a limit of at least 1 and a positive length")
        self.limit = limit
        self.window_s = window_s
        self.resolution_s = resolution_s
        # Entries, oldest first, as two queues of floats: a long window of small entries
        # is then no work for the garbage collector (a list per entry was).
        self._times: deque[float] = deque()
        self._amounts: deque[float] = deque()
        self._used = 0.0

    def used(self, now: float) -> int:
        """Units counted in the window ending at ``now``."""
        self._expire(now)
        return int(self._used)

    def remaining(self, now: float) -> int:
        return self.state(now)[0]

    def has_room(self, now: float, amount: int = 1) -> bool:
        """Whether ``amount`` more units fit now."""
        return self.used(now) + amount <= self.limit

    def add(self, now: float, amount: int = 1) -> None:
        """Count ``amount`` units at ``now`` (whether or not they fit: tokens may overshoot)."""
        if amount <= 0:
            return
        times = self._times
        if times and times[0] + self.window_s <= now:
            self._expire(now)
        if times and self.resolution_s > 0 and now - times[-1] < self.resolution_s:
            if now > times[-1]:
                times[-1] = now
            self._amounts[-1] += amount
        else:
            times.append(now)
            self._amounts.append(float(amount))
        self._used += amount

    def take(self, now: float) -> int:
        """Count one unit at ``now`` if it fits: what is left after it, or -1 (not counted)."""
        times = self._times
        if times and times[0] + self.window_s <= now:
            self._expire(now)
        used = self._used + 1
        if used > self.limit:
            return -1
        times.append(now)
        self._amounts.append(1.0)
        self._used = used
        return self.limit - int(used)

    def wait_s(self, now: float, amount: int = 1) -> float:
        """Seconds until ``amount`` more units fit (0: they fit now; inf: never)."""
        if amount > self.limit:
            return math.inf
        self._expire(now)
        excess = self._used + amount - self.limit
        if excess <= 0:
            return 0.0
        for when, count in zip(self._times, self._amounts, strict=True):
            excess -= count
            if excess <= 0:
                return _until(now, when + self.window_s)
        return math.inf  # not reached: every entry expires eventually

    def state(self, now: float) -> tuple[int, float]:
        """(:meth:`remaining`, :meth:`reset_s`) at ``now``, the window expired once."""
        times = self._times
        if times and times[0] + self.window_s <= now:
            self._expire(now)
        if not times:
            return self.limit, 0.0
        then = times[-1] + self.window_s
        wait = then - now
        return max(0, self.limit - int(self._used)), wait if now + wait >= then else _until(
            now, then
        )

    def reset_s(self, now: float) -> float:
        """Seconds until the window is empty again (OpenAI's ``x-ratelimit-reset-*``)."""
        return self.state(now)[1]

    def _expire(self, now: float) -> None:
        times, amounts = self._times, self._amounts
        window_s = self.window_s
        while times and times[0] + window_s <= now:
            times.popleft()
            self._used -= amounts.popleft()
        if not times:
            self._used = 0.0  # no drift from float sums


def _until(now: float, then: float) -> float:
    """``then - now``, nudged up so that ``now + result >= then`` despite float rounding."""
    wait = then - now
    while now + wait < then:
        wait = math.nextafter(wait, math.inf)
    return wait


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes its reset headers: ``20ms``, ``1s``, ``6m0s``, ``1h2m3.5s``.

    Rounded up to the millisecond, so a client waiting that long is never early.

    >>> format_duration(0.02), format_duration(1), format_duration(360), format_duration(3723.5)
    ('20ms', '1s', '6m0s', '1h2m3.5s')
    """
    millis = max(0, math.ceil(round(seconds * 1000, 6)))
    if millis < 1000:
        return f"{millis}ms"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs = f"{millis / 1000:.3f}".rstrip("0").rstrip(".")
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return out + f"{secs}s"
