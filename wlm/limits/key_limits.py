"""``WLM_KEY_LIMITS``: requests and tokens per minute, dollars per day and month, per key.

``WLM_KEY_LIMITS=alice:rpm=60;tpm=200000;usd_per_day=5,*:concurrency=8`` gives
each client key name (from ``WLM_API_KEYS``) its limits; ``*`` gives them to every
client, anonymous ones included. A key's own entry overrides the limits it names;
the others come from ``*``. Each key has its own counters (``*`` is not one pool
shared by all keys); anonymous clients share one.

The request path asks once when a request starts and reports once when it ends::

    headers = limiter.admit(client)        # raises RateLimited or BudgetExceeded (429)
    ...                                    # serve; add ``headers`` (raw ASGI) to the response
    limiter.finished(client, tokens=total_tokens, cost_usd=cost)

Both run on every request of a limited key, so each key's limits, windows and
spend sit together in one :class:`_Key`, found with one dictionary lookup, and a
budget's day is a monotonic deadline (:class:`~wlm.limits.budgets.SpendAccount`).

- ``rpm``: a request counts when it is let in; exactly ``rpm`` in any 60 seconds.
- ``tpm``: tokens count when the request ends; a request is let in while the last
  60 seconds used fewer than ``tpm`` (one request may overshoot; the next waits).
- ``usd_per_day``, ``usd_per_month``: spend counts when a request ends (UTC days and
  months); once spent, the next request is refused until the budget resets.

``concurrency`` is held by :class:`~wlm.limits.slots.ClientSlots`. Refusals carry
``retry-after`` and OpenAI's ``x-ratelimit-*`` headers; :attr:`KeyLimiter.refusals`
counts them by key and reason for ``/metrics``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

import attrs
from attrs import frozen

from wlm.config import KeyLimit
from wlm.errors import GatewayError
from wlm.limits.budgets import SpendAccount, SpendLedger, next_day, next_month, utc_now
from wlm.limits.windows import RequestWindow, TokenWindow, format_duration

__all__ = [
    "ANONYMOUS",
    "BudgetExceeded",
    "KeyLimiter",
    "KeyUsage",
    "RateLimited",
]

ANONYMOUS = "anonymous"  # how a client without a key is named in messages and metrics
_WINDOW_S = 60.0
Headers = list[tuple[bytes, bytes]]  # raw ASGI response headers


class RateLimited(GatewayError):
    """A key is over its requests or tokens per minute (429)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(GatewayError):
    """A key has spent its daily or monthly budget (429)."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


@frozen
class KeyUsage:
    """One key's use against its limits, for the settings page."""

    client: str  # the key name, or ANONYMOUS
    limits: KeyLimit
    requests_used: int | None  # in the last minute (None: no rpm limit)
    tokens_used: int | None  # in the last minute (None: no tpm limit)
    usd_today: float
    usd_this_month: float


class _Key:
    """One client's limits and the counters behind them.

    ``budget_left`` (dollars before the nearer of its budgets is spent) and
    ``budget_deadline`` (when its day ends, on the monotonic clock) let a request
    check both budgets with two comparisons; the account is read only past either.
    """

    __slots__ = (
        "account",
        "budget_deadline",
        "budget_left",
        "limits",
        "name",
        "requests",
        "requests_header",
        "tokens",
        "tokens_header",
    )

    def __init__(self, name: str, limits: KeyLimit, account: SpendAccount | None) -> None:
        self.name = name
        self.limits = limits
        self.requests = RequestWindow(limits.rpm, _WINDOW_S) if limits.rpm else None
        self.tokens = TokenWindow(limits.tpm, _WINDOW_S, 1.0) if limits.tpm else None
        self.requests_header = (b"x-ratelimit-limit-requests", str(limits.rpm).encode())
        self.tokens_header = (b"x-ratelimit-limit-tokens", str(limits.tpm).encode())
        self.account = account  # None: no budget
        self.budget_deadline = math.inf
        self.budget_left = math.inf
        if account is not None:
            self.settle(account)

    def settle(self, account: SpendAccount) -> None:
        """Recompute what is left of the budgets from ``account`` (fresh)."""
        day, month = self.limits.usd_per_day, self.limits.usd_per_month
        self.budget_left = min(
            math.inf if day is None else day - account.day_usd,
            math.inf if month is None else month - account.month_usd,
        )
        self.budget_deadline = account.deadline


class KeyLimiter:
    """The per-key limits of ``WLM_KEY_LIMITS`` and the counters behind them.

    ``clock`` (monotonic seconds) times the windows; ``wall`` (aware UTC datetime)
    dates the spend. Owned by the gateway; the request path runs on one thread.
    """

    def __init__(
        self,
        entries: Sequence[KeyLimit],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utc_now,
    ) -> None:
        self._named = {e.key: e for e in entries if e.key != "*"}
        self._star = next((e for e in entries if e.key == "*"), KeyLimit("*"))
        self._clock = clock
        self._wall = wall
        self._keys: dict[str | None, _Key] = {}
        self.spend = SpendLedger(clock=clock, wall=wall)
        self.refusals: Counter[tuple[str, str]] = Counter()  # (key name, reason)
        # Nothing to check per request when only concurrency (or nothing) is limited.
        self.enabled = any(e.rpm or e.tpm or e.usd_per_day or e.usd_per_month for e in entries)

    def limits_for(self, client: str | None) -> KeyLimit:
        """``client``'s limits: its own entry, completed by ``*``."""
        return self._key(client).limits

    # -- one request ----------------------------------------------------------------

    def admit(self, client: str | None) -> Headers:
        """Let one request of ``client`` in, or raise the 429 that says why and until when.

        Returns the ``x-ratelimit-*`` headers for the response (after counting it).
        """
        if not self.enabled:
            return []
        key = self._keys.get(client) or self._key(client)
        now = self._clock()
        if now >= key.budget_deadline or key.budget_left <= 0:
            self._check_budgets(key, now)
        headers: Headers = []
        tokens = key.tokens
        if tokens is not None:
            tokens_left, reset_s = tokens.state(now)
            if tokens_left < 1:
                self._refuse(key, now, "tpm")
            headers = [
                key.tokens_header,
                (_REMAINING_TOKENS, b"%d" % tokens_left),
                (_RESET_TOKENS, _reset(reset_s)),
            ]
        requests = key.requests
        if requests is not None:
            requests_left = requests.take(now)
            if requests_left < 0:
                self._refuse(key, now, "rpm")
            # The request just counted is the newest: the window empties a minute from now.
            headers += (
                key.requests_header,
                (_REMAINING_REQUESTS, b"%d" % requests_left),
                _REQUESTS_RESET,
            )
        return headers

    def finished(self, client: str | None, *, tokens: int | None, cost_usd: float | None) -> None:
        """A request of ``client`` ended having used ``tokens`` and cost ``cost_usd``."""
        if not self.enabled:
            return
        key = self._keys.get(client) or self._key(client)
        if tokens and key.tokens is not None:
            key.tokens.add(self._clock(), tokens)
        account = key.account
        if account is not None and cost_usd and cost_usd > 0:
            now = self._clock()
            if now >= key.budget_deadline:  # a new day: start from the account's
                key.settle(account.fresh(now, self._wall))
            account.add(cost_usd)
            key.budget_left -= cost_usd

    def seed_spend(self, client: str | None, day_usd: float, month_usd: float) -> None:
        """Start from what telemetry recorded today and this month (once, at start)."""
        self.spend.seed(client, day_usd, month_usd)
        key = self._key(client)
        if key.account is not None:
            key.settle(key.account)

    # -- showing --------------------------------------------------------------------

    def usage(self, clients: Sequence[str | None]) -> tuple[KeyUsage, ...]:
        """Each of ``clients``' use against its limits (e.g. every key name, and None)."""
        now = self._clock()
        result = []
        for client in clients:
            key = self._key(client)
            spent = self.spend.spent(client)
            result.append(
                KeyUsage(
                    key.name,
                    key.limits,
                    key.requests.used(now) if key.requests else None,
                    key.tokens.used(now) if key.tokens else None,
                    spent.day_usd,
                    spent.month_usd,
                )
            )
        return tuple(result)

    # -- inside ---------------------------------------------------------------------

    def _key(self, client: str | None) -> _Key:
        key = self._keys.get(client)
        if key is None:
            own = self._named.get(client) if client is not None else None
            limits = self._star if own is None else _merge(own, self._star)
            budgeted = bool(limits.usd_per_day or limits.usd_per_month)
            account = self.spend.account(client) if budgeted else None
            key = self._keys[client] = _Key(client or ANONYMOUS, limits, account)
        return key

    def _check_budgets(self, key: _Key, now: float) -> None:
        """A day may have ended or a budget been spent: settle, and refuse if spent."""
        account = key.account
        if account is None:
            return
        key.settle(account.fresh(now, self._wall))
        day_limit, month_limit = key.limits.usd_per_day, key.limits.usd_per_month
        if day_limit is not None and account.day_usd >= day_limit:
            self._refuse_budget(key, "usd_per_day", day_limit, account.day_usd)
        if month_limit is not None and account.month_usd >= month_limit:
            self._refuse_budget(key, "usd_per_month", month_limit, account.month_usd)

    def _refuse_budget(self, key: _Key, reason: str, limit: float, used: float) -> None:
        wall = self._wall()
        resets = next_day(wall) if reason == "usd_per_day" else next_month(wall)
        self.refusals[(key.name, reason)] += 1
        period = "daily" if reason == "usd_per_day" else "monthly"
        when = resets.strftime("%Y-%m-%dT%H:%M:%SZ")
        raise BudgetExceeded(
            f"Key '{key.name}' has spent ${used:.2f} of its ${limit:.2f} {period} budget "
            f"({reason} in WLM_KEY_LIMITS); it resets at {when}.",
            headers={"retry-after": str(max(1, math.ceil((resets - wall).total_seconds())))},
        )

    def _refuse(self, key: _Key, now: float, reason: str) -> None:
        """Raise the 429 for a full window: the longer wait of the full ones is the answer."""
        wait = max(
            window.wait_s(now)
            for window in (key.requests, key.tokens)
            if window is not None and not window.has_room(now)
        )
        self.refusals[(key.name, reason)] += 1
        what, limit = (
            ("requests", key.limits.rpm) if reason == "rpm" else ("tokens", key.limits.tpm)
        )
        headers = {"retry-after": str(max(1, math.ceil(wait)))}
        for window, kind in ((key.requests, "requests"), (key.tokens, "tokens")):
            if window is not None:
                remaining, reset_s = window.state(now)
                headers[f"x-ratelimit-limit-{kind}"] = str(window.limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
                headers[f"x-ratelimit-reset-{kind}"] = _reset(reset_s).decode()
        raise RateLimited(
            f"Rate limit reached for key '{key.name}': {limit} {what} per minute "
            f"({reason} in WLM_KEY_LIMITS). Try again in {math.ceil(wait)} s.",
            headers=headers,
        )


def _merge(own: KeyLimit, star: KeyLimit) -> KeyLimit:
    """``own``'s limits, with those it leaves unset taken from ``star``."""
    fields = {
        f.name: getattr(own, f.name) if getattr(own, f.name) is not None else getattr(star, f.name)
        for f in attrs.fields(KeyLimit)
        if f.name != "key"
    }
    return KeyLimit(own.key, **fields)


def _reset(seconds: float) -> bytes:
    """A reset header's value: to the millisecond under a second, else rounded up to the
    whole second (never early), which repeats from request to request: from a table."""
    if seconds < 1:
        return format_duration(seconds).encode()
    whole = math.ceil(seconds)
    return _WHOLE_SECONDS[whole] if whole < len(_WHOLE_SECONDS) else format_duration(whole).encode()


# A window's reset is at most its length away: these cover every whole second of it.
_WHOLE_SECONDS = tuple(format_duration(s).encode() for s in range(int(_WINDOW_S) + 2))
_REQUESTS_RESET = (b"x-ratelimit-reset-requests", _WHOLE_SECONDS[int(_WINDOW_S)])
_REMAINING_REQUESTS = b"x-ratelimit-remaining-requests"
_REMAINING_TOKENS = b"x-ratelimit-remaining-tokens"
_RESET_TOKENS = b"x-ratelimit-reset-tokens"
