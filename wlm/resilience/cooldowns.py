"""Targets that failed too often in a row rest for a while, then one probe tests them.

A target is a (provider, upstream model) pair. After ``WLM_COOLDOWN_FAILURES``
consecutive retryable failures it *cools down* for ``WLM_COOLDOWN_S``: requests
skip it for the next option in their chain, unless it is the last option left
(no later option would be tried: so a chain whose options all cool still tries
them, in order, rather than refusing the request).
When the time is up, exactly one request (the *probe*) is let through: its success
clears the target, its failure starts another cooldown. Any other answer that is
not a retryable failure (a 400 included: the upstream is up) clears it too.

The request path asks and reports::

    last = cooldowns.none_admitted(targets[i + 1 :])
    admission = cooldowns.admit(target, last=last)
    if admission is Admission.SKIP: ...  # on to the next target
    ...
    cooldowns.succeeded(target)            # or failed(target, admission)
                                           # or released(target, admission)

The state lives in one :class:`Cooldowns` owned by the gateway (asyncio runs the
request path on one thread: no locks). The clock is passed in.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Literal

import attrs
from attrs import frozen

__all__ = ["Admission", "CooldownState", "Cooldowns", "Target"]

Target = tuple[str, str]  # (provider, upstream model)


class Admission(enum.Enum):
    """What :meth:`Cooldowns.admit` allows for one try."""

    GO = "go"  # not cooling: try it
    PROBE = "probe"  # its cooldown is up: this try is the one probe
    FORCED = "forced"  # cooling, but the last option left: try it anyway
    SKIP = "skip"  # cooling: go on to the next option


@frozen
class CooldownState:
    """One target as the dashboard and ``/metrics`` show it.

    ``state`` is ``failing`` (failures counted, still used), ``cooling`` (skipped for
    ``remaining_s`` more), ``probe_due`` (the next request is the probe) or
    ``probing`` (the probe is out).
    """

    provider: str
    model: str
    failures: int
    state: Literal["failing", "cooling", "probe_due", "probing"]
    remaining_s: float


@attrs.define
class _Entry:
    failures: int = 0
    until: float | None = None  # cooling until this clock reading
    probe_at: float | None = None  # when the probe went out


class Cooldowns:
    """The cooldown state of every target that failed lately (a bounded number of them)."""

    def __init__(
        self,
        failures: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 4096,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[Target, _Entry] = {}
        self.started: Counter[str] = Counter()  # cooldowns started (or re-armed), by provider
        self.skipped: Counter[str] = Counter()  # tries skipped, by provider

    # -- asking -------------------------------------------------------------------

    @property
    def quiet(self) -> bool:
        """No target has failures on record: every admission is GO (the common case, which
        the request path checks first to ask and report nothing)."""
        return not self._entries

    def would_admit(self, target: Target) -> bool:
        """Whether ``target`` would be tried now (no side effect)."""
        entry = self._entries.get(target)
        if entry is None or entry.until is None:
            return True
        return self._probe_free(entry, self._clock())

    def none_admitted(self, targets: Iterable[Target]) -> bool:
        """Whether no target of ``targets`` would be tried: the one before them is the last."""
        return not any(self.would_admit(t) for t in targets)

    def admit(self, target: Target, *, last: bool = False) -> Admission:
        """May this try go to ``target``? A PROBE must be reported back."""
        entry = self._entries.get(target)
        if entry is None or entry.until is None:
            return Admission.GO
        now = self._clock()
        if self._probe_free(entry, now):
            entry.probe_at = now
            return Admission.PROBE
        if last:
            return Admission.FORCED
        self.skipped[target[0]] += 1
        return Admission.SKIP

    # -- reporting ----------------------------------------------------------------

    def succeeded(self, target: Target) -> None:
        """``target`` answered (anything but a retryable failure): it is healthy."""
        self._entries.pop(target, None)

    def failed(self, target: Target, admission: Admission) -> bool:
        """A retryable failure of a try admitted as ``admission``.

        True when this failure started a cooldown (or, for a probe, another one).
        A forced try's failure changes nothing: the target is cooling already.
        """
        now = self._clock()
        entry = self._entries.get(target)
        if entry is None:
            self._make_room()
            entry = self._entries[target] = _Entry()
        if admission is Admission.PROBE:
            entry.until = now + self.cooldown_s
            entry.probe_at = None
            self.started[target[0]] += 1
            return True
        if entry.until is not None:
            return False  # cooling already (started by a try that ended first)
        entry.failures += 1
        if entry.failures >= self.failures:
            entry.until = now + self.cooldown_s
            self.started[target[0]] += 1
            return True
        return False

    def released(self, target: Target, admission: Admission) -> None:
        """A try that ended without a verdict (the client left): a probe may go again."""
        if admission is Admission.PROBE:
            entry = self._entries.get(target)
            if entry is not None:
                entry.probe_at = None

    # -- showing ------------------------------------------------------------------

    def snapshot(self) -> tuple[CooldownState, ...]:
        """Every target with failures on record, cooling ones first."""
        now = self._clock()
        states = []
        for (provider, model), entry in self._entries.items():
            if entry.until is None:
                state: Literal["failing", "cooling", "probe_due", "probing"] = "failing"
                remaining = 0.0
            elif now < entry.until:
                state, remaining = "cooling", entry.until - now
            elif self._probe_free(entry, now):
                state, remaining = "probe_due", 0.0
            else:
                state, remaining = "probing", 0.0
            states.append(CooldownState(provider, model, entry.failures, state, remaining))
        states.sort(key=lambda s: (s.state == "failing", -s.remaining_s))
        return tuple(states)

    def cooling(self) -> int:
        """How many targets are skipped right now (for a gauge)."""
        now = self._clock()
        return sum(
            1
            for entry in self._entries.values()
            if entry.until is not None and not self._probe_free(entry, now)
        )

    # -- inside -------------------------------------------------------------------

    def _probe_free(self, entry: _Entry, now: float) -> bool:
        """Cooling time up, and no probe out (one that never reported is forgotten
        after another cooldown period)."""
        assert entry.until is not None
        if now < entry.until:
            return False
        return entry.probe_at is None or now - entry.probe_at >= self.cooldown_s

    def _make_room(self) -> None:
        """At the cap, forget the oldest target that is not cooling (else the oldest)."""
        if len(self._entries) < self._max_entries:
            return
        victim = next(
            (t for t, e in self._entries.items() if e.until is None),
            next(iter(self._entries)),
        )
        del self._entries[victim]
