"""The requests' deadlines on one coarse timer (wlm/deadlines.py)."""

from __future__ import annotations

import asyncio

from wlm.deadlines import Watchdog


async def test_a_deadline_fires_once_when_due_and_not_before() -> None:
    watchdog = Watchdog(tick_s=0.005)
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    done = asyncio.Event()

    def fire() -> None:
        fired.append(loop.time())
        done.set()

    deadline = watchdog.start(0.02, fire)
    due = deadline.due
    await done.wait()
    assert fired[0] >= due
    assert deadline.fired
    # Once fired it is gone: a later deadline fires alone.
    later = asyncio.Event()
    watchdog.start(0.01, later.set)
    await later.wait()
    assert len(fired) == 1


async def test_a_cancelled_deadline_never_fires() -> None:
    watchdog = Watchdog(tick_s=0.005)
    cancelled = watchdog.start(0.01, lambda: pytest_fail("a cancelled deadline fired"))
    cancelled.cancel()
    after = asyncio.Event()
    watchdog.start(0.03, after.set)
    await after.wait()
    assert not cancelled.fired


async def test_pushing_a_deadline_back_lets_an_earlier_one_fire_first() -> None:
    watchdog = Watchdog(tick_s=0.005)
    order: list[str] = []
    both = asyncio.Event()

    def note(name: str) -> None:
        order.append(name)
        if len(order) == 2:
            both.set()

    pushed = watchdog.start(0.01, lambda: note("pushed"))
    watchdog.start(0.03, lambda: note("steady"))
    pushed.push_back(0.2)
    await both.wait()
    assert order == ["steady", "pushed"]


async def test_it_sleeps_when_idle_and_wakes_for_the_next_deadline() -> None:
    watchdog = Watchdog(tick_s=0.005)
    first = asyncio.Event()
    watchdog.start(0.005, first.set)
    await first.wait()
    # Nothing is live: the timer is not re-armed (no wake-ups on an idle server), and a
    # new deadline arms it again.
    assert not watchdog.live
    assert not watchdog.armed
    second = asyncio.Event()
    watchdog.start(0.005, second.set)
    await second.wait()


async def test_a_failing_deadline_does_not_stop_the_others() -> None:
    watchdog = Watchdog(tick_s=0.005)

    def broken() -> None:
        raise RuntimeError("boom")

    watchdog.start(0.005, broken)
    fine = asyncio.Event()
    watchdog.start(0.02, fine.set)
    await fine.wait()


def pytest_fail(message: str) -> None:
    raise AssertionError(message)
