"""WLM_KEY_LIMITS: requests and tokens per minute, budgets per day and month, per key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from wlm.config import KeyLimit, load_settings
from wlm.limits import ClientBusy, ClientSlots, client_slots
from wlm.limits.key_limits import BudgetExceeded, KeyLimiter, KeyUsage, RateLimited


class Clocks:
    """A monotonic clock and a wall clock that move together."""

    def __init__(self) -> None:
        self.seconds = 5000.0
        self.start = datetime(2025, 6, 30, 23, 59, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds - 5000.0)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


def limiter(*entries: KeyLimit) -> tuple[KeyLimiter, Clocks]:
    clocks = Clocks()
    return KeyLimiter(entries, clock=clocks.monotonic, wall=clocks.wall), clocks


def test_rpm_admits_exactly_the_limit_then_429s_with_a_correct_retry_after() -> None:
    keys, clocks = limiter(KeyLimit("alice", rpm=50))
    outcomes = []
    for _ in range(200):
        try:
            keys.admit("alice")
            outcomes.append("ok")
        except RateLimited as refused:
            outcomes.append(refused)
        clocks.advance(0.01)
    assert outcomes.count("ok") == 50
    refused = outcomes[-1]
    assert isinstance(refused, RateLimited)
    assert (refused.status, refused.type, refused.code) == (
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    )
    assert "50 requests per minute" in refused.message
    # The first request (at 0 s) ages out at 60 s; it is now 1.99 s: 58.01 s, rounded up.
    assert refused.headers["retry-after"] == "59"
    assert refused.headers["x-ratelimit-limit-requests"] == "50"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    clocks.seconds = 5000.0 + 60.0 - 1e-3  # the first request came at 5000.0
    with pytest.raises(RateLimited):
        keys.admit("alice")
    clocks.seconds = 5000.0 + 60.0
    keys.admit("alice")  # as soon as the first request is a minute old
    assert keys.refusals[("alice", "rpm")] == 151


def test_a_response_says_what_is_left() -> None:
    keys, _ = limiter(KeyLimit("alice", rpm=3, tpm=1000))
    first = {k.decode(): v.decode() for k, v in keys.admit("alice")}
    second = {k.decode(): v.decode() for k, v in keys.admit("alice")}
    assert first["x-ratelimit-remaining-requests"] == "2"
    assert second["x-ratelimit-remaining-requests"] == "1"
    assert second["x-ratelimit-reset-requests"] == "1m0s"
    assert second["x-ratelimit-limit-tokens"] == "1000"
    assert second["x-ratelimit-remaining-tokens"] == "1000"


def test_tpm_lets_one_request_overshoot_and_refuses_the_next_until_tokens_age_out() -> None:
    keys, clocks = limiter(KeyLimit("alice", tpm=1000))
    keys.admit("alice")
    keys.finished("alice", tokens=1500, cost_usd=None)  # a long stream is not cut
    clocks.advance(10)
    with pytest.raises(RateLimited) as info:
        keys.admit("alice")
    assert "1000 tokens per minute" in info.value.message
    assert info.value.headers["retry-after"] == "50"
    assert info.value.headers["x-ratelimit-remaining-tokens"] == "0"
    clocks.advance(50)
    keys.admit("alice")


def test_a_daily_budget_refuses_the_next_request_until_utc_midnight() -> None:
    keys, clocks = limiter(KeyLimit("alice", usd_per_day=5))
    keys.admit("alice")
    keys.finished("alice", tokens=None, cost_usd=4.0)
    keys.admit("alice")  # $4 of $5: still in
    keys.finished("alice", tokens=None, cost_usd=1.5)  # this one crossed the budget
    with pytest.raises(BudgetExceeded) as info:
        keys.admit("alice")
    error = info.value
    assert (error.status, error.type, error.code) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert "$5.50 of its $5.00 daily budget (usd_per_day" in error.message
    assert "resets at 2025-07-01T00:00:00Z" in error.message
    assert error.headers["retry-after"] == "60"  # it is 23:59:00
    clocks.advance(60)
    keys.admit("alice")
    assert keys.refusals[("alice", "usd_per_day")] == 1


def test_a_monthly_budget_resets_on_the_first() -> None:
    keys, clocks = limiter(KeyLimit("alice", usd_per_month=20))
    keys.finished("alice", tokens=None, cost_usd=25.0)
    with pytest.raises(BudgetExceeded, match="monthly budget"):
        keys.admit("alice")
    clocks.advance(60)  # July 1st
    keys.admit("alice")


def test_spend_read_back_at_start_still_counts_after_a_restart() -> None:
    keys, _ = limiter(KeyLimit("alice", usd_per_day=5), KeyLimit("*", usd_per_month=100))
    keys.seed_spend("alice", day_usd=5.0, month_usd=12.0)
    keys.seed_spend(None, day_usd=1.0, month_usd=100.0)
    with pytest.raises(BudgetExceeded, match="daily"):
        keys.admit("alice")
    with pytest.raises(BudgetExceeded, match=r"Key 'anonymous'.*monthly"):
        keys.admit(None)


def test_star_limits_every_key_on_its_own_and_a_keys_entry_overrides_what_it_names() -> None:
    keys, _ = limiter(KeyLimit("alice", rpm=3), KeyLimit("*", rpm=1, tpm=500))
    assert keys.limits_for("alice") == KeyLimit("alice", rpm=3, tpm=500)
    assert keys.limits_for("bob") == KeyLimit("*", rpm=1, tpm=500)
    keys.admit("bob")
    keys.admit(None)  # anonymous clients have their own counter (shared among them)
    with pytest.raises(RateLimited):
        keys.admit("bob")
    for _ in range(3):
        keys.admit("alice")
    with pytest.raises(RateLimited):
        keys.admit(None)


def test_without_rates_or_budgets_nothing_is_counted() -> None:
    keys, _ = limiter(KeyLimit("*", concurrency=8))
    assert not keys.enabled
    assert keys.admit("alice") == []
    keys.finished("alice", tokens=10**9, cost_usd=10**6)
    assert keys.admit("alice") == []


def test_usage_shows_each_key_against_its_limits() -> None:
    keys, _ = limiter(KeyLimit("alice", rpm=60, usd_per_day=5))
    keys.admit("alice")
    keys.finished("alice", tokens=100, cost_usd=0.25)
    assert keys.usage(["alice", None]) == (
        KeyUsage("alice", KeyLimit("alice", rpm=60, usd_per_day=5), 1, None, 0.25, 0.25),
        KeyUsage("anonymous", KeyLimit("*"), None, None, 0.0, 0.0),
    )


@contextmanager
def held(slots: ClientSlots, client: str) -> Iterator[None]:
    """One of ``client``'s slots for the block, as the proxy takes and gives it back."""
    assert slots.take(client)
    try:
        yield
    finally:
        slots.release(client)


def test_per_key_concurrency_overrides_the_general_limit() -> None:
    settings = load_settings(
        {
            "WLM_API_KEYS": "alice:sk-alice-1234,bob:sk-bob-12345",
            "WLM_KEY_LIMITS": "alice:concurrency=2,*:concurrency=1",
            "WLM_MAX_CONCURRENCY_PER_CLIENT": "4",
        }
    )
    slots = client_slots(settings)
    alice_busy = pytest.raises(ClientBusy, match="limit 2, concurrency in WLM_KEY_LIMITS")
    with held(slots, "alice"), held(slots, "alice"), alice_busy:
        slots.take("alice")
    bob_busy = pytest.raises(ClientBusy, match="limit 1, concurrency in WLM_KEY_LIMITS")
    with held(slots, "bob"), bob_busy:
        slots.take("bob")
    assert slots.in_flight("alice") == slots.in_flight("bob") == 0
    general = client_slots(load_settings({"WLM_MAX_CONCURRENCY_PER_CLIENT": "4"}))
    assert general.limit_for("127.0.0.1") == 4
