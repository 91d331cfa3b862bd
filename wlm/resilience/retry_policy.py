"""Whether a failed upstream try is worth another, and how long to wait before it.

Only failures before the first byte reaches the client count: after it, the answer
is committed and a failure becomes an error event. The request path turns what it
has into an :class:`UpstreamFailure` (an exception from the adapter or transport,
and the upstream response's headers when there was one) and asks
:meth:`RetryPolicy.decide`, which answers with a :class:`Decision`:

``retry``
    A transient failure (connection error, timeout, 408, 409, 429, 500, 502, 503,
    504, 529) with retries left: wait ``delay_s``, then try the same target again.
    The wait is the upstream's own hint when it gave one (``Retry-After``,
    ``retry-after-ms``, OpenAI's ``x-ratelimit-reset-*`` or Anthropic's
    ``anthropic-ratelimit-*-reset`` of an exhausted limit), else exponential backoff
    with jitter.
``fallback``
    This target will not answer soon, another may: the retries are used up, the
    upstream asked for a wait longer than ``max_wait_s``, or the target itself is
    unusable (401, 402, 403, 404, other 5xx, an exhausted quota, a local engine that
    cannot start, a broken answer, a model that does not route).
``fail``
    The request itself is at fault (400, 413, 422 and every other 4xx): any other
    target would refuse it too, so the client gets this error now.

>>> policy = RetryPolicy(retries=2, max_wait_s=10)
>>> now = datetime(2025, 1, 1, tzinfo=UTC)
>>> policy.decide(UpstreamFailure.of_status(429, {"retry-after": "3"}), 0, now, 0.0)
Decision(action='retry', delay_s=3.0, reason='retryable')
>>> policy.decide(UpstreamFailure.of_status(429, {"retry-after": "30"}), 0, now, 0.0)
Decision(action='fallback', delay_s=0.0, reason='wait_too_long')
>>> policy.decide(UpstreamFailure.of_status(400), 0, now, 0.0).action
'fail'
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from attrs import frozen

from wlm.errors import (
    GatewayError,
    ModelNotFound,
    ModelUnavailable,
    ProviderNotConfigured,
    UpstreamBroken,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

__all__ = [
    "HINT_HEADERS",
    "RETRYABLE_STATUSES",
    "Decision",
    "FailureKind",
    "RetryPolicy",
    "UpstreamFailure",
    "parse_duration",
    "server_wait_s",
]

# Transient by nature: the same request may well succeed a moment later.
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# This target cannot serve the request (credentials, credit, permission, no such
# model here), but another target might: no retry, straight to the next.
_TARGET_STATUSES = frozenset({401, 402, 403, 404})
# Error codes that say "not now, and not soon" even on a retryable status: OpenAI's
# exhausted quota (429), OpenRouter's and Anthropic's spend limits.
_EXHAUSTED_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})

# Rate-limit families whose reset time is a hint when that limit is exhausted.
_OPENAI_FAMILIES = ("requests", "tokens")
_ANTHROPIC_FAMILIES = ("requests", "tokens", "input-tokens", "output-tokens")
HINT_HEADERS: tuple[str, ...] = (
    "retry-after",
    "retry-after-ms",
    *(f"x-ratelimit-{part}-{f}" for f in _OPENAI_FAMILIES for part in ("remaining", "reset")),
    *(
        f"anthropic-ratelimit-{f}-{part}"
        for f in _ANTHROPIC_FAMILIES
        for part in ("remaining", "reset")
    ),
)

FailureKind = Literal[
    "status", "connect", "timeout", "unavailable", "broken", "unroutable", "rejected"
]
Action = Literal["retry", "fallback", "fail"]


@frozen
class UpstreamFailure:
    """What went wrong on one try, in the terms the policy needs.

    ``kind`` is ``status`` (the upstream answered ``status``), ``connect``,
    ``timeout``, ``unavailable`` (a local engine cannot start), ``broken`` (an answer
    that broke off or was not understood), ``unroutable`` (the model name leads
    nowhere usable) or ``rejected`` (wlm itself refused the request). ``headers``
    holds the upstream's hint headers (lowercase names) and ``code`` the error's code.
    """

    kind: FailureKind
    status: int | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of_status(
        cls,
        status: int,
        headers: Mapping[str, str] | Callable[[str], str | None] | None = None,
        code: str | None = None,
    ) -> UpstreamFailure:
        """An error status, with the response's headers (a mapping or a lookup function)."""
        return cls("status", status, code, _hints(headers or {}))

    @classmethod
    def of_error(
        cls,
        error: GatewayError,
        headers: Mapping[str, str] | Callable[[str], str | None] | None = None,
    ) -> UpstreamFailure:
        """The exception a try raised (from the adapter, the transport or the router).

        ``headers`` are the upstream response's, when there was one (``response.header``);
        without them only the ``retry-after`` the error kept is known.
        """
        hints = _hints(headers if headers is not None else error.headers)
        # Most specific first: the timeout and connection errors are UpstreamErrors too.
        if isinstance(error, UpstreamTimeout):
            return cls("timeout", code=error.code)
        if isinstance(error, UpstreamUnreachable):
            return cls("connect", code=error.code)
        if isinstance(error, UpstreamBroken):
            return cls("broken", code=error.code)
        if isinstance(error, ModelUnavailable):
            return cls("unavailable", code=error.code)
        if isinstance(error, ModelNotFound | ProviderNotConfigured):
            return cls("unroutable", code=error.code)
        if isinstance(error, UpstreamError):
            # Anthropic's own status (529) rather than the one its clients are shown (503).
            return cls("status", error.upstream_status or error.status, error.code, hints)
        return cls("rejected", error.status, error.code)

    @property
    def retryable(self) -> bool:
        """Transient: worth another try on the same target (and counts towards a cooldown)."""
        if self.kind in ("connect", "timeout"):
            return True
        return (
            self.kind == "status"
            and self.status in RETRYABLE_STATUSES
            and self.code not in _EXHAUSTED_CODES
        )

    @property
    def target_unusable(self) -> bool:
        """Not transient, but about this target rather than the request: try the next."""
        if self.kind in ("unavailable", "broken", "unroutable"):
            return True
        if self.kind != "status" or self.status is None:
            return False
        return (
            self.status in _TARGET_STATUSES or self.status >= 500 or self.code in _EXHAUSTED_CODES
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@frozen
class Decision:
    """What to do after a failed try: ``retry`` after ``delay_s``, ``fallback`` or ``fail``.

    ``reason`` says why, for the attempts telemetry: ``retryable``,
    ``retries_exhausted``, ``wait_too_long``, ``target_unusable`` or ``not_retryable``.
    """

    action: Action
    delay_s: float = 0.0
    reason: str = ""


@frozen
class RetryPolicy:
    """``WLM_RETRIES`` more tries on one target, waits of at most ``WLM_RETRY_MAX_WAIT_S``.

    Backoff before retry ``n`` (0-based) is ``min(max_delay_s, base_delay_s * 2**n)``
    less up to ``jitter`` of itself at random, and never more than ``max_wait_s``.
    """

    retries: int = 2
    max_wait_s: float = 10.0
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.25

    def decide(
        self, failure: UpstreamFailure, retries_done: int, now: datetime, rand: float
    ) -> Decision:
        """The next step after ``failure``, ``retries_done`` retries into this target.

        ``now`` (aware, UTC) reads dated hints; ``rand`` in [0, 1) draws the jitter.
        """
        if not failure.retryable:
            if failure.target_unusable:
                return Decision("fallback", reason="target_unusable")
            return Decision("fail", reason="not_retryable")
        if retries_done >= self.retries:
            return Decision("fallback", reason="retries_exhausted")
        hint = server_wait_s(failure.header, now)
        if hint is not None:
            if hint > self.max_wait_s:
                return Decision("fallback", reason="wait_too_long")
            return Decision("retry", hint, "retryable")
        return Decision("retry", self.backoff_s(retries_done, rand), "retryable")

    def backoff_s(self, retries_done: int, rand: float) -> float:
        """The wait before retry number ``retries_done`` (0-based) when the upstream gave none."""
        exponent = min(retries_done, 60)  # 2**60 * anything is past every cap already
        delay = min(self.max_delay_s, self.base_delay_s * 2.0**exponent, self.max_wait_s)
        return delay * (1.0 - self.jitter * min(max(rand, 0.0), 1.0))


def server_wait_s(header: Callable[[str], str | None], now: datetime) -> float | None:
    """How long the upstream asked to wait, in seconds (None: it did not say).

    ``retry-after-ms`` and ``Retry-After`` (seconds or an HTTP date) win; else the
    latest reset among the rate limits that are exhausted (remaining 0, or not
    reported): OpenAI's ``x-ratelimit-reset-requests``/``-tokens`` (durations such as
    ``1s``, ``6m0s``, ``20ms``) and Anthropic's ``anthropic-ratelimit-*-reset``
    (RFC 3339 times). A reset of a limit with requests or tokens left is no reason
    to wait.
    """
    millis = _number(header("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    retry_after = header("retry-after")
    if retry_after is not None:
        seconds = _number(retry_after)
        if seconds is not None:
            return seconds
        when = _http_date(retry_after)
        if when is not None:
            return max(0.0, (when - now).total_seconds())
    waits: list[float] = []
    for family in _OPENAI_FAMILIES:
        if _exhausted(header(f"x-ratelimit-remaining-{family}")):
            wait = parse_duration(header(f"x-ratelimit-reset-{family}"))
            if wait is not None:
                waits.append(wait)
    for family in _ANTHROPIC_FAMILIES:
        if _exhausted(header(f"anthropic-ratelimit-{family}-remaining")):
            when = _rfc3339(header(f"anthropic-ratelimit-{family}-reset"))
            if when is not None:
                waits.append(max(0.0, (when - now).total_seconds()))
    return max(waits) if waits else None


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|μs|ns)")
_UNIT_S = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ns": 1e-9,
}


def parse_duration(text: str | None) -> float | None:
    """A Go-style duration (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) in seconds; None if not one.

    >>> parse_duration("6m0s"), parse_duration("20ms"), parse_duration("soon")
    (360.0, 0.02, None)
    """
    if text is None:
        return None
    text = text.strip()
    if text == "0":
        return 0.0
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text) or not math.isfinite(total):
        return None
    return total


def _hints(
    headers: Mapping[str, str] | Callable[[str], str | None],
) -> tuple[tuple[str, str], ...]:
    if isinstance(headers, Mapping):
        lowered = {k.lower(): v for k, v in headers.items()}
        lookup: Callable[[str], str | None] = lowered.get
    else:
        lookup = headers
    found = []
    for name in HINT_HEADERS:
        value = lookup(name)
        if value is not None:
            found.append((name, value))
    return tuple(found)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _exhausted(remaining: str | None) -> bool:
    """A limit counts as exhausted when it says 0 left, or does not say."""
    if remaining is None:
        return True
    value = _number(remaining)
    return value is not None and value <= 0


def _http_date(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _rfc3339(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
