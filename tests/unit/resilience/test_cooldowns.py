"""A target that keeps failing is skipped for a while, then probed by exactly one request."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wlm.resilience.cooldowns import Admission, Cooldowns, CooldownState

A = ("openai", "gpt-4o")
B = ("openrouter", "openai/gpt-4o")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cooldowns(failures: int = 3, cooldown_s: float = 30.0) -> tuple[Cooldowns, Clock]:
    clock = Clock()
    return Cooldowns(failures, cooldown_s, clock), clock


def fail(c: Cooldowns, target: tuple[str, str], times: int) -> None:
    for _ in range(times):
        c.failed(target, c.admit(target))


def test_three_failures_in_a_row_cool_a_target_for_thirty_seconds() -> None:
    c, clock = cooldowns()
    fail(c, A, 2)
    assert c.admit(A) is Admission.GO
    assert c.failed(A, Admission.GO)  # the third: a cooldown starts
    assert c.admit(A) is Admission.SKIP
    assert c.admit(B) is Admission.GO  # other targets are not affected
    clock.now += 29.9
    assert c.admit(A) is Admission.SKIP
    assert c.skipped["openai"] == 2
    assert c.started["openai"] == 1


def test_a_success_between_failures_starts_the_count_again() -> None:
    c, _ = cooldowns()
    fail(c, A, 2)
    c.succeeded(A)
    fail(c, A, 2)
    assert c.admit(A) is Admission.GO


def test_the_last_option_left_is_tried_even_while_cooling() -> None:
    c, _ = cooldowns()
    fail(c, A, 3)
    chain = [A, B]
    assert c.admit(A, last=c.none_admitted(chain[1:])) is Admission.SKIP  # B may answer
    assert c.admit(B, last=c.none_admitted(chain[2:])) is Admission.GO
    # With every option cooling, the first in the chain is the last one left to try.
    fail(c, B, 3)
    assert c.admit(A, last=c.none_admitted(chain[1:])) is Admission.FORCED
    assert c.admit(B, last=c.none_admitted(chain[2:])) is Admission.FORCED
    # A forced try that fails does not extend the cooldown; one that answers clears it.
    assert not c.failed(B, Admission.FORCED)
    c.succeeded(B)
    assert c.admit(B) is Admission.GO


def test_one_probe_when_the_time_is_up_its_success_clears() -> None:
    c, clock = cooldowns()
    fail(c, A, 3)
    clock.now += 30
    assert c.admit(A) is Admission.PROBE
    assert c.admit(A) is Admission.SKIP  # exactly one probe at a time
    assert c.admit(A, last=True) is Admission.FORCED
    c.succeeded(A)
    assert [c.admit(A) for _ in range(3)] == [Admission.GO] * 3
    assert c.snapshot() == ()


def test_a_failed_probe_cools_the_target_again() -> None:
    c, clock = cooldowns()
    fail(c, A, 3)
    clock.now += 30
    probe = c.admit(A)
    assert c.failed(A, probe)
    assert c.started["openai"] == 2
    clock.now += 29
    assert c.admit(A) is Admission.SKIP
    clock.now += 1
    assert c.admit(A) is Admission.PROBE


def test_a_probe_whose_client_left_lets_the_next_request_probe() -> None:
    c, clock = cooldowns()
    fail(c, A, 3)
    clock.now += 30
    c.released(A, c.admit(A))
    assert c.admit(A) is Admission.PROBE


def test_a_probe_that_never_reports_is_forgotten_after_another_period() -> None:
    c, clock = cooldowns()
    fail(c, A, 3)
    clock.now += 30
    assert c.admit(A) is Admission.PROBE
    clock.now += 29
    assert c.admit(A) is Admission.SKIP
    clock.now += 1
    assert c.admit(A) is Admission.PROBE


def test_failures_of_tries_admitted_before_the_cooldown_do_not_extend_it() -> None:
    c, clock = cooldowns()
    in_flight = [c.admit(A) for _ in range(5)]  # five concurrent requests
    assert c.failed(A, in_flight[0]) is False
    assert c.failed(A, in_flight[1]) is False
    assert c.failed(A, in_flight[2]) is True
    clock.now += 20
    assert c.failed(A, in_flight[3]) is False
    assert c.failed(A, in_flight[4]) is False
    clock.now += 10
    assert c.admit(A) is Admission.PROBE


def test_the_snapshot_shows_each_state_with_the_time_left() -> None:
    c, clock = cooldowns()
    fail(c, A, 3)
    fail(c, B, 1)
    clock.now += 10
    assert c.snapshot() == (
        CooldownState("openai", "gpt-4o", 3, "cooling", 20.0),
        CooldownState("openrouter", "openai/gpt-4o", 1, "failing", 0.0),
    )
    assert c.cooling() == 1
    clock.now += 20
    assert c.snapshot()[0].state == "probe_due"
    assert c.cooling() == 0
    c.admit(A)
    assert c.snapshot()[0].state == "probing"
    assert c.cooling() == 1


def test_the_number_of_targets_remembered_is_bounded_cooling_ones_kept() -> None:
    clock = Clock()
    c = Cooldowns(2, 30.0, clock, max_entries=3)
    fail(c, A, 2)  # cooling
    for i in range(10):
        c.failed(("x", f"m{i}"), Admission.GO)
    assert len(c.snapshot()) == 3
    assert c.admit(A) is Admission.SKIP


@given(
    threshold=st.integers(1, 5),
    outcomes=st.lists(st.booleans(), max_size=30),
    gaps=st.lists(st.floats(0, 20), min_size=30, max_size=30),
)
def test_a_target_is_skipped_only_after_enough_failures_in_a_row(
    threshold: int, outcomes: list[bool], gaps: list[float]
) -> None:
    """Against a plain reading of the rule: N failures in a row, then 30 s off, then a probe."""
    c, clock = cooldowns(threshold)
    streak = 0
    until: float | None = None
    for ok, gap in zip(outcomes, gaps, strict=False):
        clock.now += gap
        admission = c.admit(A)
        assert admission is not Admission.FORCED
        assert c.admit(A, last=True) is not Admission.SKIP  # the last option always goes
        if until is None:
            assert admission is Admission.GO
        elif clock.now < until:
            assert admission is Admission.SKIP
            continue
        else:
            assert admission is Admission.PROBE
        if ok:
            c.succeeded(A)
            streak, until = 0, None
        else:
            streak += 1
            started = c.failed(A, admission)
            if admission is Admission.PROBE or streak == threshold:
                assert started
                until = clock.now + 30.0
            else:
                assert not started
