"""Dollars spent per client key this UTC day and this UTC month.

Spend is added when a request ends (its priced usage); a budget is checked when a
request starts, so the request that crosses a budget finishes (a stream is not
cut) and the next one is refused. At start the ledger is seeded with what
telemetry recorded for the current day and month
(:func:`wlm.telemetry.spend.read_spend`), so a restart forgets nothing.

>>> ledger = SpendLedger()
>>> now = datetime(2025, 6, 30, 23, 0, tzinfo=UTC)
>>> ledger.add("alice", 1.5, now)
>>> ledger.spent("alice", now), ledger.spent("alice", now + timedelta(hours=2))
(Spend(day_usd=1.5, month_usd=1.5), Spend(day_usd=0.0, month_usd=0.0))
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
from attrs import frozen

__all__ = ["Spend", "SpendLedger", "day_start", "month_start", "next_day", "next_month"]


@frozen
class Spend:
    """USD spent today and this month (UTC)."""

    day_usd: float = 0.0
    month_usd: float = 0.0


@attrs.define
class _Account:
    day_end: datetime  # the next UTC midnight: the day's spend resets then
    month_end: datetime
    day_usd: float = 0.0
    month_usd: float = 0.0

    @classmethod
    def starting(cls, now: datetime) -> _Account:
        return cls(next_day(now), next_month(now))

    def roll(self, now: datetime) -> None:
        # One comparison per request; the calendar only when a day has ended.
        if now < self.day_end:
            return
        self.day_end, self.day_usd = next_day(now), 0.0
        if now >= self.month_end:
            self.month_end, self.month_usd = next_month(now), 0.0


class SpendLedger:
    """Spend per client (key name; None for anonymous clients), rolling over at UTC midnight."""

    def __init__(self) -> None:
        self._accounts: dict[str | None, _Account] = {}

    def add(self, client: str | None, usd: float, now: datetime) -> None:
        """Count ``usd`` spent by ``client`` at ``now`` (aware); ignores nothing spent."""
        if not usd > 0:  # also NaN
            return
        account = self._account(client, now)
        account.day_usd += usd
        account.month_usd += usd

    def seed(self, client: str | None, day_usd: float, month_usd: float, now: datetime) -> None:
        """Add what telemetry recorded for ``now``'s day and month (at start)."""
        account = self._account(client, now)
        account.day_usd += max(0.0, day_usd)
        account.month_usd += max(0.0, month_usd)

    def spent(self, client: str | None, now: datetime) -> Spend:
        account = self._accounts.get(client)
        if account is None:
            return Spend()
        account.roll(now)
        return Spend(account.day_usd, account.month_usd)

    def _account(self, client: str | None, now: datetime) -> _Account:
        account = self._accounts.get(client)
        if account is None:
            account = self._accounts[client] = _Account.starting(now)
        else:
            account.roll(now)
        return account


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
