"""When an engine that keeps crashing is restarted again: the crash backoff (pure).

An engine that exits by itself is restarted by the next request. One that crashes
``threshold`` times within ``window_s`` is *held*: no request restarts it for
``hold_s`` seconds, doubled for each hold in a row (up to ``max_hold_s``). A hold
ends when it expires (the next request tries again) or when it is cleared (an
explicit load). The hold count starts over once the engine has gone ``max_hold_s``
without crashing (a hold itself does not count), or on a clear.

Times are monotonic seconds passed in by the caller, so the policy is tested with
a fake clock (tests/unit/local/test_backoff.py).
"""

from __future__ import annotations

from collections import deque

__all__ = ["CrashBackoff"]


class CrashBackoff:
    """One model's crash history and whether its engine may be restarted now."""

    __slots__ = (
        "_crashes",
        "_held_until",
        "_holds",
        "_quiet_from",
        "hold_s",
        "max_hold_s",
        "threshold",
        "window_s",
    )

    def __init__(
        self,
        *,
        threshold: int = 3,
        window_s: float = 60.0,
        hold_s: float = 60.0,
        max_hold_s: float = 900.0,
    ) -> None:
        self.threshold = max(1, threshold)
        self.window_s = window_s
        self.hold_s = hold_s
        self.max_hold_s = max(hold_s, max_hold_s)
        self._crashes: deque[float] = deque()
        self._held_until: float | None = None
        self._holds = 0
        self._quiet_from: float | None = None  # a crash-free spell counts from here

    def crashed(self, now: float) -> bool:
        """Count a crash at ``now``; True when it starts a hold."""
        if self._quiet_from is not None and now - self._quiet_from >= self.max_hold_s:
            self._holds = 0  # long enough without a crash: a fresh start
        self._quiet_from = now
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] >= self.window_s:
            self._crashes.popleft()
        if len(self._crashes) < self.threshold:
            return False
        self._holds += 1
        self._held_until = now + self.hold_for(self._holds)
        self._quiet_from = self._held_until  # no crash can happen while it is held
        self._crashes.clear()  # the next hold needs as many crashes again
        return True

    def hold_for(self, holds: int) -> float:
        """How long the ``holds``-th hold in a row lasts."""
        # The exponent is capped: a crash loop of weeks would overflow a float.
        return float(min(self.hold_s * 2 ** min(max(0, holds - 1), 32), self.max_hold_s))

    def held(self, now: float) -> float | None:
        """Seconds left of the present hold; None when a restart is allowed."""
        if self._held_until is None:
            return None
        left = self._held_until - now
        if left <= 0:
            self._held_until = None  # expired: the next request restarts it
            return None
        return left

    def recent(self, now: float) -> int:
        """Crashes within the window before ``now`` (since the last hold began)."""
        return sum(1 for t in self._crashes if now - t < self.window_s)

    def clear(self) -> None:
        """Forget the history and any hold (an explicit load)."""
        self._crashes.clear()
        self._held_until = None
        self._holds = 0
        self._quiet_from = None
