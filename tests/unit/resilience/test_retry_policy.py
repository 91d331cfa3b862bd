"""Which failures before the first byte are tried again, and after how long."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wlm.resilience.retry_policy as retry_policy
from wlm.errors import (
    BadRequest,
    ModelNotFound,
    ModelUnavailable,
    ProviderNotConfigured,
    UpstreamBroken,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from wlm.providers.openai_compat import openai_error
from wlm.resilience.retry_policy import (
    RETRYABLE_STATUSES,
    Decision,
    RetryPolicy,
    UpstreamFailure,
    parse_duration,
    server_wait_s,
)
from wlm.translate.anthropic_errors import anthropic_error_to_openai

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
POLICY = RetryPolicy(retries=2, max_wait_s=10.0)


def decide(failure: UpstreamFailure, retries_done: int = 0, rand: float = 0.0) -> Decision:
    return POLICY.decide(failure, retries_done, NOW, rand)


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(retry_policy).failed == 0


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
def test_transient_statuses_are_retried(status: int) -> None:
    assert decide(UpstreamFailure.of_status(status)).action == "retry"


@pytest.mark.parametrize("status", [400, 405, 406, 410, 413, 415, 422, 451])
def test_a_request_at_fault_is_never_retried_nor_sent_elsewhere(status: int) -> None:
    decision = decide(UpstreamFailure.of_status(status, {"retry-after": "1"}))
    assert decision == Decision("fail", reason="not_retryable")


@pytest.mark.parametrize("status", [401, 402, 403, 404, 501, 505])
def test_a_target_that_cannot_serve_goes_straight_to_the_next(status: int) -> None:
    assert decide(UpstreamFailure.of_status(status)) == Decision(
        "fallback", reason="target_unusable"
    )


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (UpstreamUnreachable("refused"), "retry"),
        (UpstreamTimeout("slow"), "retry"),
        (UpstreamBroken("cut off"), "fallback"),
        (ModelUnavailable("engine failed to load"), "fallback"),
        (ModelNotFound("nope"), "fallback"),
        (ProviderNotConfigured("no key"), "fallback"),
        (BadRequest("bad json"), "fail"),
    ],
)
def test_exceptions_before_the_first_byte(error: Exception, action: str) -> None:
    assert isinstance(error, Exception)
    failure = UpstreamFailure.of_error(error)  # type: ignore[arg-type]
    assert decide(failure).action == action


def test_retries_run_out_after_wlm_retries_then_the_fallback() -> None:
    failure = UpstreamFailure.of_status(503)
    assert [decide(failure, n).action for n in range(4)] == [
        "retry",
        "retry",
        "fallback",
        "fallback",
    ]
    assert decide(failure, 2).reason == "retries_exhausted"
    assert RetryPolicy(retries=0).decide(failure, 0, NOW, 0.0).action == "fallback"


def test_retry_after_in_seconds_milliseconds_and_as_a_date() -> None:
    assert decide(UpstreamFailure.of_status(429, {"Retry-After": "2"})).delay_s == 2.0
    assert decide(UpstreamFailure.of_status(429, {"retry-after-ms": "250"})).delay_s == 0.25
    date = format_datetime(NOW + timedelta(seconds=7), usegmt=True)
    assert decide(UpstreamFailure.of_status(503, {"retry-after": date})).delay_s == 7.0
    past = format_datetime(NOW - timedelta(seconds=7), usegmt=True)
    assert decide(UpstreamFailure.of_status(503, {"retry-after": past})).delay_s == 0.0


def test_a_wait_longer_than_the_maximum_skips_to_the_fallback() -> None:
    decision = decide(UpstreamFailure.of_status(429, {"retry-after": "11"}))
    assert decision == Decision("fallback", reason="wait_too_long")
    assert decide(UpstreamFailure.of_status(429, {"retry-after": "10"})).action == "retry"


def test_openai_reset_headers_of_an_exhausted_limit() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1.5s",
        "x-ratelimit-remaining-tokens": "1200",
        "x-ratelimit-reset-tokens": "6m0s",  # tokens are left: not a reason to wait
    }
    assert decide(UpstreamFailure.of_status(429, headers)).delay_s == 1.5
    headers["x-ratelimit-remaining-tokens"] = "0"
    assert decide(UpstreamFailure.of_status(429, headers)).reason == "wait_too_long"


def test_anthropic_reset_headers_of_an_exhausted_limit() -> None:
    headers = {
        "anthropic-ratelimit-requests-remaining": "10",
        "anthropic-ratelimit-requests-reset": "2025-06-01T12:05:00Z",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": "2025-06-01T12:00:04Z",
    }
    assert decide(UpstreamFailure.of_status(429, headers)).delay_s == 4.0


def test_without_a_hint_the_backoff_doubles_and_jitter_only_shortens() -> None:
    failure = UpstreamFailure.of_status(500)
    assert [decide(failure, n).delay_s for n in range(2)] == [0.5, 1.0]
    assert decide(failure, 1, rand=0.999).delay_s == pytest.approx(0.75, abs=1e-3)


def test_anthropic_overloaded_529_is_retried_with_its_own_headers() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    error = anthropic_error_to_openai(529, body, None)
    assert error.status == 503  # what an OpenAI client sees; the policy reads the 529
    headers = {"retry-after": "3", "anthropic-ratelimit-requests-remaining": "5"}
    failure = UpstreamFailure.of_error(error, headers.get)
    assert failure.status == 529
    assert decide(failure) == Decision("retry", 3.0, "retryable")


def test_openai_exhausted_quota_is_not_worth_a_retry() -> None:
    body = b'{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}'
    error = openai_error("openai", 429, body, None)
    assert decide(UpstreamFailure.of_error(error)).action == "fallback"
    rate_limited = openai_error("openai", 429, b'{"error":{"message":"slow down"}}', "2")
    assert decide(UpstreamFailure.of_error(rate_limited)) == Decision("retry", 2.0, "retryable")


def test_retryable_failures_are_the_ones_a_cooldown_counts() -> None:
    assert UpstreamFailure.of_error(UpstreamUnreachable("x")).retryable
    assert UpstreamFailure.of_status(529).retryable
    assert not UpstreamFailure.of_status(404).retryable
    assert not UpstreamFailure.of_status(400).retryable


@pytest.mark.parametrize(
    "value", ["soon", "", "-1", "nan", "inf", "Wed, 99 Foo 2025", "1x", "s", "1.2.3s"]
)
def test_malformed_hints_are_ignored(value: str) -> None:
    assert server_wait_s({"retry-after": value}.get, NOW) is None
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": value}
    assert server_wait_s(headers.get, NOW) is None
    headers = {
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": value,
    }
    assert server_wait_s(headers.get, NOW) is None


@given(
    hours=st.integers(0, 48),
    minutes=st.integers(0, 59),
    millis=st.integers(0, 59_999),
)
def test_go_durations_read_back(hours: int, minutes: int, millis: int) -> None:
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    text += f"{millis / 1000:g}s"
    expected = hours * 3600 + minutes * 60 + millis / 1000
    assert parse_duration(text) == pytest.approx(expected)


@given(seconds=st.integers(0, 86_400))
def test_dated_hints_read_back_to_the_second(seconds: int) -> None:
    when = NOW + timedelta(seconds=seconds)
    assert server_wait_s({"retry-after": format_datetime(when, usegmt=True)}.get, NOW) == seconds
    anthropic = {"anthropic-ratelimit-requests-reset": when.isoformat().replace("+00:00", "Z")}
    assert server_wait_s(anthropic.get, NOW) == seconds


@given(
    retries=st.integers(0, 5),
    max_wait=st.floats(0, 120),
    retries_done=st.integers(0, 10),
    rand=st.floats(0, 1, exclude_max=True),
    status=st.sampled_from(sorted(RETRYABLE_STATUSES)),
    hint=st.none() | st.floats(0, 1000),
)
def test_a_retry_never_waits_past_the_maximum_nor_exceeds_the_budget(
    retries: int,
    max_wait: float,
    retries_done: int,
    rand: float,
    status: int,
    hint: float | None,
) -> None:
    policy = RetryPolicy(retries=retries, max_wait_s=max_wait)
    headers = {} if hint is None else {"retry-after": repr(hint)}
    decision = policy.decide(UpstreamFailure.of_status(status, headers), retries_done, NOW, rand)
    if retries_done >= retries:
        assert decision.action == "fallback"
    elif hint is not None and hint > max_wait:
        assert decision == Decision("fallback", reason="wait_too_long")
    else:
        assert decision.action == "retry"
        assert 0 <= decision.delay_s <= max_wait
        if hint is not None:
            assert decision.delay_s == hint


@given(retries_done=st.integers(0, 20), rand=st.floats(0, 1))
def test_backoff_grows_and_jitter_takes_at_most_a_quarter(retries_done: int, rand: float) -> None:
    full = min(8.0, 0.5 * 2**retries_done)
    delay = POLICY.backoff_s(retries_done, rand)
    assert 0.75 * full - 1e-9 <= delay <= full
    assert POLICY.backoff_s(retries_done + 1, 0.0) >= POLICY.backoff_s(retries_done, 0.0)
