"""Sliding windows: at most ``limit`` units in any ``window_s`` seconds.

:class:`RequestWindow` counts requests one by one at the time they were let in, so a
window of 60 requests a minute admits exactly 60 in any 60 seconds, never a 61st, and
says exactly when the next one fits (:meth:`RequestWindow.wait_s`).

:class:`TokenWindow` counts tokens when a request ends; they may overshoot the limit
(a stream is not cut), and the window is then full until enough of them are older
than ``window_s``. Entries closer than ``resolution_s`` are merged (one a second, so
memory stays bounded however many requests end); a merged entry takes the later
time, so it may count a little longer than exact, never shorter.

Both keep each entry as the time it expires (``when + window_s``): checking whether
the oldest is gone is then one comparison, and a request window needs no count
beside its entries. Both run on every request of a limited key.

>>> window = RequestWindow(2, 60.0)
>>> window.take(0.0), window.take(10.0), window.take(30.0)
(1, 0, -1)
>>> window.wait_s(30.0), window.reset_s(30.0)
(30.0, 40.0)
>>> window.has_room(60.0)
True
>>> tokens = TokenWindow(1000, 60.0, resolution_s=1.0)
>>> tokens.add(0.0, 1500)
>>> tokens.state(30.0), tokens.wait_s(30.0)
((0, 30.0), 30.0)
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["RequestWindow", "TokenWindow", "format_duration"]


class RequestWindow:
    """Requests let in over the last ``window_s`` seconds, against ``limit``."""

    __slots__ = ("_expiries", "limit", "window_s")

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        _check(limit, window_s)
        self.limit = limit
        self.window_s = window_s
        self._expiries: deque[float] = deque()  # one per request, oldest first

    def take(self, now: float) -> int:
        """Count one request at ``now`` if it fits: how many more fit after it, or -1
        (not counted)."""
        expiries = self._expiries
        if expiries and expiries[0] <= now:
            self._expire(now)
        used = len(expiries)
        if used >= self.limit:
            return -1
        expiries.append(now + self.window_s)
        return self.limit - used - 1

    def used(self, now: float) -> int:
        """Requests counted in the window ending at ``now``."""
        self._expire(now)
        return len(self._expiries)

    def remaining(self, now: float) -> int:
        return max(0, self.limit - self.used(now))

    def has_room(self, now: float) -> bool:
        return self.used(now) < self.limit

    def wait_s(self, now: float) -> float:
        """Seconds until one more request fits (0: it fits now)."""
        excess = self.used(now) + 1 - self.limit
        return 0.0 if excess <= 0 else _until(now, self._expiries[excess - 1])

    def state(self, now: float) -> tuple[int, float]:
        """(:meth:`remaining`, :meth:`reset_s`) at ``now``, the window expired once."""
        used = self.used(now)
        if not used:
            return self.limit, 0.0
        return max(0, self.limit - used), _until(now, self._expiries[-1])

    def reset_s(self, now: float) -> float:
        """Seconds until the window is empty again (OpenAI's ``x-ratelimit-reset-*``)."""
        return self.state(now)[1]

    def _expire(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0] <= now:
            expiries.popleft()


class TokenWindow:
    """Tokens used over the last ``window_s`` seconds, against ``limit``."""

    __slots__ = ("_amounts", "_expiries", "_used", "limit", "resolution_s", "window_s")

    def __init__(self, limit: int, window_s: float = 60.0, resolution_s: float = 1.0) -> None:
        _check(limit, window_s)
        self.limit = limit
        self.window_s = window_s
        self.resolution_s = resolution_s
        # Entries, oldest first, as two queues (a list per entry is work for the
        # garbage collector); _used is their sum.
        self._expiries: deque[float] = deque()
        self._amounts: deque[int] = deque()
        self._used = 0

    def add(self, now: float, amount: int) -> None:
        """Count ``amount`` tokens at ``now`` (whether or not they fit: they may overshoot).

        ``now`` never goes back (a monotonic clock): a merged entry takes the later time.
        """
        if amount <= 0:
            return
        expiry = now + self.window_s
        expiries = self._expiries
        if expiries and expiry - expiries[-1] < self.resolution_s:
            expiries[-1] = expiry  # the common case: a request ended within the second
            self._amounts[-1] += amount
        else:
            if expiries and expiries[0] <= now:
                self._expire(now)
            expiries.append(expiry)
            self._amounts.append(amount)
        self._used += amount

    def state(self, now: float) -> tuple[int, float]:
        """(:meth:`remaining`, :meth:`reset_s`) at ``now``, the window expired once."""
        expiries = self._expiries
        if expiries and expiries[0] <= now:
            self._expire(now)
        if not expiries:
            return self.limit, 0.0
        then = expiries[-1]
        wait = then - now
        if now + wait < then:  # float rounding: never early
            wait = _until(now, then)
        left = self.limit - self._used
        return (left if left > 0 else 0), wait

    def used(self, now: float) -> int:
        """Tokens counted in the window ending at ``now``."""
        self._expire(now)
        return self._used

    def remaining(self, now: float) -> int:
        return self.state(now)[0]

    def has_room(self, now: float, amount: int = 1) -> bool:
        """Whether ``amount`` more tokens fit now."""
        return self.used(now) + amount <= self.limit

    def wait_s(self, now: float, amount: int = 1) -> float:
        """Seconds until ``amount`` more tokens fit (0: they fit now; inf: never)."""
        if amount > self.limit:
            return math.inf
        excess = self.used(now) + amount - self.limit
        if excess <= 0:
            return 0.0
        for expiry, count in zip(self._expiries, self._amounts, strict=True):
            excess -= count
            if excess <= 0:
                return _until(now, expiry)
        return math.inf  # not reached: every entry expires eventually

    def reset_s(self, now: float) -> float:
        """Seconds until the window is empty again (OpenAI's ``x-ratelimit-reset-*``)."""
        return self.state(now)[1]

    def _expire(self, now: float) -> None:
        expiries, amounts = self._expiries, self._amounts
        while expiries and expiries[0] <= now:
            expiries.popleft()
            self._used -= amounts.popleft()


def _check(limit: int, window_s: float) -> None:
    if limit < 1 or window_s <= 0:
        raise ValueError("a window needs a limit of at least 1 and a positive length")


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
