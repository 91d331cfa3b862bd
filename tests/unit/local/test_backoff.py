"""The crash backoff (wlm/local/backoff.py): pure, on a fake clock."""

from __future__ import annotations

from wlm.local.backoff import CrashBackoff


def test_two_crashes_in_a_minute_do_not_hold() -> None:
    backoff = CrashBackoff()
    assert not backoff.crashed(0.0)
    assert not backoff.crashed(10.0)
    assert backoff.held(10.0) is None
    assert backoff.recent(10.0) == 2


def test_three_crashes_in_a_minute_hold_for_a_minute_then_expire() -> None:
    backoff = CrashBackoff()
    backoff.crashed(0.0)
    backoff.crashed(20.0)
    assert backoff.crashed(59.0)
    assert backoff.held(59.0) == 60.0
    assert backoff.held(100.0) == 19.0
    assert backoff.held(119.0) is None  # expired: the next request restarts it
    assert backoff.held(119.5) is None


def test_crashes_further_apart_than_the_window_never_hold() -> None:
    backoff = CrashBackoff()
    for t in (0.0, 31.0, 62.0, 93.0, 124.0):
        assert not backoff.crashed(t)
    assert backoff.held(124.0) is None


def test_holds_in_a_row_double_up_to_the_cap_and_reset_after_a_quiet_spell() -> None:
    backoff = CrashBackoff(hold_s=60.0, max_hold_s=200.0)
    now = 0.0
    lengths = []
    for _ in range(4):
        for _ in range(3):
            backoff.crashed(now)
            now += 1.0
        left = backoff.held(now - 1.0)
        assert left is not None
        lengths.append(left)
        now += left  # the hold runs out, and it crashes at once again
    assert lengths == [60.0, 120.0, 200.0, 200.0]
    now += 200.0  # a crash-free spell as long as the cap: back to the first hold's length
    for _ in range(3):
        backoff.crashed(now)
    assert backoff.held(now) == 60.0


def test_clear_forgets_the_hold_and_the_history() -> None:
    backoff = CrashBackoff()
    for t in (0.0, 1.0, 2.0):
        backoff.crashed(t)
    assert backoff.held(2.0) is not None
    backoff.clear()
    assert backoff.held(2.0) is None
    assert not backoff.crashed(3.0)
    assert not backoff.crashed(4.0)
    assert backoff.crashed(5.0)
    assert backoff.held(5.0) == 60.0  # the first hold again, not the second


def test_a_crash_loop_of_weeks_still_holds_for_the_longest_hold() -> None:
    policy = CrashBackoff()
    assert policy.hold_for(5_000) == policy.max_hold_s  # no OverflowError
