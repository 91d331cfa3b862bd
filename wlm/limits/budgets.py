"""Dollars spent per client key this UTC day and this UTC month.

Spend is added when a request ends (its priced usage); a budget is checked when a
request starts, so the request that crosses a budget finishes (a stream is not
cut) and the next one is refused. At start the ledger is seeded with what
telemetry recorded for the current day and month
(:func:`wlm.telemetry.spend.read_spend`), so a restart forgets nothing.

The day ends at UTC midnight. An account turns that into a deadline on the
monotonic clock when it is armed, so checking a budget is one float comparison
and the wall clock is read only once the deadline has passed (then the calendar
decides: a wall clock set back re-arms the deadline without starting a new day).

>>> start, elapsed = datetime(2025, 6, 30, 23, 0, tzinfo=UTC), [0.0]
>>> ledger = SpendLedger(clock=lambda: elapsed[0],
...                     wall=lambda: start + timedelta(seconds=elapsed[0]))
>>> ledger.add("alice", 1.5)
>>> ledger.spent("alice")
Spend(day_usd=1.5, month_usd=1.5)
>>> elapsed[0] = 7200.0  # two hours later: July 1st
>>> ledger.spent("alice")
Spend(day_usd=0.0, month_usd=0.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from attrs import frozen

__all__ = [
    "Spend",
    "SpendAccount",
    "SpendLedger",
    "day_start",
    "month_start",
    "next_day",
    "next_month",
    "utc_now",
]


def utc_now() -> datetime:
    return datetime.now(UTC)


@frozen
class Spend:
    """USD spent today and this month (UTC)."""

    day_usd: float = 0.0
    month_usd: float = 0.0


class SpendAccount:
    """One client's spend today and this month, rolling over at UTC midnight."""

    __slots__ = ("day_end", "day_usd", "deadline", "month_end", "month_usd")

    def __init__(self, wall: datetime, now: float) -> None:
        self.day_usd = 0.0
        self.month_usd = 0.0
        self.day_end = next_day(wall)
        self.month_end = next_month(wall)
        self.deadline = now + (self.day_end - wall).total_seconds()

    def fresh(self, now: float, wall: Callable[[], datetime]) -> SpendAccount:
        """This account at monotonic ``now``: a day (or month) that has ended is reset."""
        if now >= self.deadline:
            self._roll(wall(), now)
        return self

    def add(self, usd: float) -> None:
        if usd > 0:  # not NaN, nothing negative
            self.day_usd += usd
            self.month_usd += usd

    def _roll(self, wall: datetime, now: float) -> None:
        if wall >= self.day_end:
            self.day_end, self.day_usd = next_day(wall), 0.0
            if wall >= self.month_end:
                self.month_end, self.month_usd = next_month(wall), 0.0
        self.deadline = now + (self.day_end - wall).total_seconds()


class SpendLedger:
    """Spend per client (key name; None for anonymous clients).

    ``clock`` (monotonic seconds) times the deadlines; ``wall`` (aware UTC datetime)
    dates the days and months.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utc_now,
    ) -> None:
        self._clock = clock
        self.wall = wall
        self._accounts: dict[str | None, SpendAccount] = {}

    def account(self, client: str | None) -> SpendAccount:
        """``client``'s account, opened when first asked for (check it with ``fresh``)."""
        account = self._accounts.get(client)
        if account is None:
            account = self._accounts[client] = SpendAccount(self.wall(), self._clock())
        return account

    def add(self, client: str | None, usd: float) -> None:
        """Count ``usd`` spent by ``client`` now; ignores nothing spent."""
        self.account(client).fresh(self._clock(), self.wall).add(usd)

    def seed(self, client: str | None, day_usd: float, month_usd: float) -> None:
        """Add what telemetry recorded for today and this month (at start)."""
        account = self.account(client).fresh(self._clock(), self.wall)
        account.day_usd += max(0.0, day_usd)
        account.month_usd += max(0.0, month_usd)

    def spent(self, client: str | None) -> Spend:
        account = self._accounts.get(client)
        if account is None:
            return Spend()
        account.fresh(self._clock(), self.wall)
        return Spend(account.day_usd, account.month_usd)


def day_start(now: datetime) -> datetime:
    """The UTC midnight that began ``now``'s day."""
    now = now.astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def next_day(now: datetime) -> datetime:
    return day_start(now) + timedelta(days=1)


def month_start(now: datetime) -> datetime:
    """The UTC midnight that began ``now``'s month."""
    return day_start(now).replace(day=1)


def next_month(now: datetime) -> datetime:
    start = month_start(now)
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
