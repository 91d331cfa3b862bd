"""The sliding windows admit exactly their limit in any window and say when the next fits."""

from __future__ import annotations

import copy
import doctest
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wlm.limits.budgets as budgets
import wlm.limits.windows as windows
from wlm.limits.windows import RequestWindow, TokenWindow, format_duration
from wlm.resilience.retry_policy import parse_duration


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(windows).failed == 0
    assert doctest.testmod(budgets).failed == 0


def test_fifty_per_minute_lets_exactly_fifty_in_then_says_when_the_next_fits() -> None:
    window = RequestWindow(50, 60.0)
    admitted = 0
    for i in range(200):
        now = i * 0.01  # 200 requests within two seconds
        if window.take(now) >= 0:
            admitted += 1
    assert admitted == 50
    assert window.wait_s(2.0) == pytest.approx(58.0)  # the first one ages out at 60 s
    assert not window.has_room(59.99)
    assert window.has_room(60.0)
    assert window.reset_s(2.0) == pytest.approx(58.49)


@given(
    limit=st.integers(1, 10),
    gaps=st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=60),
)
def test_never_more_than_the_limit_in_any_window_and_never_fewer(
    limit: int, gaps: list[float]
) -> None:
    window = RequestWindow(limit, 60.0)
    times = list(itertools.accumulate(gaps))
    admitted: list[float] = []
    for now in times:
        in_window = [t for t in admitted if t + 60.0 > now]
        if window.has_room(now):
            # Admitted only when the last 60 s hold fewer than the limit...
            assert len(in_window) < limit
            assert window.take(now) == limit - len(in_window) - 1
            admitted.append(now)
        else:
            # ...and refused only when they hold exactly the limit; the wait is exact.
            assert len(in_window) == limit
            assert window.take(now) == -1
            wait = window.wait_s(now)
            assert wait == pytest.approx(in_window[0] + 60.0 - now)
            assert copy.deepcopy(window).has_room(now + wait)
        assert window.remaining(now) == limit - len([t for t in admitted if t + 60.0 > now])


@given(
    limit=st.integers(1, 300),
    gaps=st.lists(st.floats(0, 1.5, allow_nan=False), min_size=1, max_size=600),
)
def test_a_busy_window_counts_like_the_plain_list(limit: int, gaps: list[float]) -> None:
    # Hundreds of requests a minute, most of them expiring while others arrive.
    window = RequestWindow(limit, 60.0)
    admitted: list[float] = []
    for now in itertools.accumulate(gaps):
        in_window = [t for t in admitted if t + 60.0 > now]
        left = window.take(now)
        if len(in_window) < limit:
            assert left == limit - len(in_window) - 1
            admitted.append(now)
            in_window.append(now)
        else:
            assert left == -1
            assert window.wait_s(now) == pytest.approx(in_window[0] + 60.0 - now)
        assert window.state(now) == (
            limit - len(in_window),
            pytest.approx(in_window[-1] + 60.0 - now) if in_window else 0.0,
        )


@given(
    limit=st.integers(100, 10_000),
    spends=st.lists(
        st.tuples(st.floats(0, 20, allow_nan=False), st.integers(1, 5_000)), max_size=40
    ),
)
def test_tokens_may_overshoot_and_the_wait_is_until_enough_have_aged_out(
    limit: int, spends: list[tuple[float, int]]
) -> None:
    window = TokenWindow(limit, 60.0, resolution_s=1.0)
    now = 0.0
    for gap, tokens in spends:
        now += gap
        window.add(now, tokens)
    wait = window.wait_s(now)
    if wait > 0:
        assert wait <= 61.0
        # Merging entries within a second may hold tokens up to a second longer, no more.
        assert not copy.deepcopy(window).has_room(now + wait - 1.001)
    assert window.has_room(now + wait)


@given(millis=st.integers(0, 10 * 3_600_000))
def test_reset_durations_read_back_as_openai_clients_parse_them(millis: int) -> None:
    text = format_duration(millis / 1000)
    assert parse_duration(text) == pytest.approx(millis / 1000)


@given(seconds=st.floats(0, 100_000, allow_nan=False))
def test_a_reset_duration_is_never_early(seconds: float) -> None:
    parsed = parse_duration(format_duration(seconds))
    assert parsed is not None
    assert seconds <= parsed + 1e-9 <= seconds + 0.001 + 1e-9
