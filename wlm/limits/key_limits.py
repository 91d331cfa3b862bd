"""``WLM_KEY_LIMITS``: requests and tokens per minute, dollars per day and month, per key.

``WLM_KEY_LIMITS=alice:rpm=60;tpm=200000;usd_per_day=5,*:concurrency=8`` gives
each client key name (from ``WLM_API_KEYS``) its limits; ``*`` gives them to every
client, anonymous ones included. A key's own entry overrides the limits it names;
the others come from ``*``. Each key has its own counters (``*`` is not one pool
shared by all keys); anonymous clients share one.

The request path asks once when a request starts and reports once when it ends::

    headers = limiter.admit(client)        # raises RateLimited or BudgetExceeded (429)
    ...                                    # serve; add ``headers`` to the response
    limiter.finished(client, tokens=total_tokens, cost_usd=cost)

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

import functools
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import attrs
from attrs import frozen

from wlm.config import KeyLimit
from wlm.errors import GatewayError
from wlm.limits.budgets import SpendLedger, next_day, next_month
from wlm.limits.windows import SlidingWindow, format_duration

__all__ = [
    "ANONYMOUS",
    "BudgetExceeded",
    "KeyLimiter",
    "KeyUsage",
    "RateLimited",
]

ANONYMOUS = "anonymous"  # how a client without a key is named in messages and metrics
_WINDOW_S = 60.0
Headers = tuple[tuple[str, str], ...]


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
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._named = {e.key: e for e in entries if e.key != "*"}
        self._star = next((e for e in entries if e.key == "*"), KeyLimit("*"))
        self._clock = clock
        self._wall = wall
        self._effective: dict[str | None, KeyLimit] = {}
        self._requests: dict[str | None, SlidingWindow] = {}
        self._tokens: dict[str | None, SlidingWindow] = {}
        self.spend = SpendLedger()
        self.refusals: Counter[tuple[str, str]] = Counter()  # (key name, reason)
        # Nothing to check per request when only concurrency (or nothing) is limited.
        self.enabled = any(e.rpm or e.tpm or e.usd_per_day or e.usd_per_month for e in entries)

    def limits_for(self, client: str | None) -> KeyLimit:
        """``client``'s limits: its own entry, completed by ``*``."""
        limits = self._effective.get(client)
        if limits is None:
            own = self._named.get(client) if client is not None else None
            limits = self._star if own is None else _merge(own, self._star)
            self._effective[client] = limits
        return limits

    # -- one request ----------------------------------------------------------------

    def admit(self, client: str | None) -> Headers:
        """Let one request of ``client`` in, or raise the 429 that says why and until when.

        Returns the ``x-ratelimit-*`` headers for the response (after counting it).
        """
        if not self.enabled:
            return ()
        limits = self.limits_for(client)
        if limits.usd_per_day or limits.usd_per_month:
            self._check_budgets(client, limits)
        now = self._clock()
        requests = self._window(self._requests, client, limits.rpm, 0.0)
        tokens = self._window(self._tokens, client, limits.tpm, 1.0)
        tokens_full = tokens is not None and not tokens.has_room(now)
        # The common case in one step: room for the tokens, and a request slot taken.
        if not tokens_full and (requests is None or requests.take(now)):
            return _headers(requests, tokens, now)
        # Refused: a full window (the tokens', or the requests' that take() found full)
        # says how long until it has room; the longer wait is the answer.
        wait, reason = max(
            (window.wait_s(now), reason)
            for window, reason in ((requests, "rpm"), (tokens, "tpm"))
            if window is not None and not window.has_room(now)
        )
        name = client or ANONYMOUS
        self.refusals[(name, reason)] += 1
        what = "requests" if reason == "rpm" else "tokens"
        limit = limits.rpm if reason == "rpm" else limits.tpm
        raise RateLimited(
            f"Rate limit reached for key '{name}': {limit} {what} per minute "
            f"({reason} in WLM_KEY_LIMITS). Try again in {math.ceil(wait)} s.",
            headers=dict(
                (
                    ("retry-after", str(max(1, math.ceil(wait)))),
                    *_headers(requests, tokens, now),
                )
            ),
        )

    def finished(self, client: str | None, *, tokens: int | None, cost_usd: float | None) -> None:
        """A request of ``client`` ended having used ``tokens`` and cost ``cost_usd``."""
        if not self.enabled:
            return
        limits = self.limits_for(client)
        if tokens and limits.tpm:
            window = self._window(self._tokens, client, limits.tpm, 1.0)
            assert window is not None
            window.add(self._clock(), tokens)
        if cost_usd and (limits.usd_per_day or limits.usd_per_month):
            self.spend.add(client, cost_usd, self._wall())

    def seed_spend(self, client: str | None, day_usd: float, month_usd: float) -> None:
        """Start from what telemetry recorded today and this month (once, at start)."""
        self.spend.seed(client, day_usd, month_usd, self._wall())

    # -- showing --------------------------------------------------------------------

    def usage(self, clients: Sequence[str | None]) -> tuple[KeyUsage, ...]:
        """Each of ``clients``' use against its limits (e.g. every key name, and None)."""
        now, wall = self._clock(), self._wall()
        result = []
        for client in clients:
            limits = self.limits_for(client)
            requests = self._requests.get(client)
            tokens = self._tokens.get(client)
            spent = self.spend.spent(client, wall)
            result.append(
                KeyUsage(
                    client or ANONYMOUS,
                    limits,
                    (requests.used(now) if requests else 0) if limits.rpm else None,
                    (tokens.used(now) if tokens else 0) if limits.tpm else None,
                    spent.day_usd,
                    spent.month_usd,
                )
            )
        return tuple(result)

    # -- inside ---------------------------------------------------------------------

    def _check_budgets(self, client: str | None, limits: KeyLimit) -> None:
        wall = self._wall()
        spent = self.spend.spent(client, wall)
        for reason, limit, used in (
            ("usd_per_day", limits.usd_per_day, spent.day_usd),
            ("usd_per_month", limits.usd_per_month, spent.month_usd),
        ):
            if limit is None or used < limit:
                continue
            resets = next_day(wall) if reason == "usd_per_day" else next_month(wall)
            name = client or ANONYMOUS
            self.refusals[(name, reason)] += 1
            period = "daily" if reason == "usd_per_day" else "monthly"
            when = resets.strftime("%Y-%m-%dT%H:%M:%SZ")
            raise BudgetExceeded(
                f"Key '{name}' has spent ${used:.2f} of its ${limit:.2f} {period} budget "
                f"({reason} in WLM_KEY_LIMITS); it resets at {when}.",
                headers={"retry-after": str(max(1, math.ceil((resets - wall).total_seconds())))},
            )

    def _window(
        self,
        windows: dict[str | None, SlidingWindow],
        client: str | None,
        limit: int | None,
        resolution_s: float,
    ) -> SlidingWindow | None:
        if not limit:
            return None
        window = windows.get(client)
        if window is None:
            window = windows[client] = SlidingWindow(limit, _WINDOW_S, resolution_s)
        return window


def _merge(own: KeyLimit, star: KeyLimit) -> KeyLimit:
    """``own``'s limits, with those it leaves unset taken from ``star``."""
    fields = {
        f.name: getattr(own, f.name) if getattr(own, f.name) is not None else getattr(star, f.name)
        for f in attrs.fields(KeyLimit)
        if f.name != "key"
    }
    return KeyLimit(own.key, **fields)


def _headers(requests: SlidingWindow | None, tokens: SlidingWindow | None, now: float) -> Headers:
    """OpenAI's rate-limit headers for the limits that apply."""
    out: list[tuple[str, str]] = []
    for names, window in ((_REQUEST_HEADERS, requests), (_TOKEN_HEADERS, tokens)):
        if window is None:
            continue
        remaining, reset_s = window.state(now)
        limit_name, remaining_name, reset_name = names
        out += [
            (limit_name, str(window.limit)),
            (remaining_name, str(remaining)),
            (reset_name, _reset(reset_s)),
        ]
    return tuple(out)


def _reset(seconds: float) -> str:
    """A reset header's value: to the millisecond under a second, else rounded up to the
    whole second (never early), which repeats from request to request and is cached."""
    return format_duration(seconds) if seconds < 1 else _whole_seconds(math.ceil(seconds))


@functools.lru_cache(maxsize=4096)
def _whole_seconds(seconds: int) -> str:
    return format_duration(seconds)


_REQUEST_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)
_TOKEN_HEADERS = (
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)
