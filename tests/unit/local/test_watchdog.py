"""The stall watchdog's verdicts (wlm/local/watchdog.py), in process: what an engine's
``/slots`` says decides whether a suspect request is ended. The sweep's timing and a
real frozen engine are in tests/e2e/test_local_guards_e2e.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wlm.errors import GatewayError, ModelUnavailable
from wlm.local.watchdog import LocalStalled, SlotsView, Watch, Watchdog
from wlm.transport import UpstreamRequest
from wlm.transport.mock import MockResponse, MockTransport

URL = "http://127.0.0.1:9"


def slot(task: int, decoded: int | None, processing: bool = True) -> dict[str, Any]:
    found: dict[str, Any] = {"id": task, "n_ctx": 512, "is_processing": processing}
    if processing:
        found["id_task"] = task
        found["next_token"] = [{"has_next_token": True, "n_decoded": decoded}]
    return found


class Engine:
    """Answers /slots with whatever the test sets (None: it does not answer)."""

    def __init__(self) -> None:
        self.slots: list[dict[str, Any]] | None = []
        self.transport = MockTransport(self.answer)

    async def answer(self, request: UpstreamRequest) -> MockResponse:
        assert request.url == f"{URL}/slots"
        if self.slots is None:
            await asyncio.Event().wait()  # frozen: the probe's timeout ends it
        return MockResponse.json(self.slots)


class Stream:
    """A response the watch reads progress from, and ends with ``fail``."""

    def __init__(self) -> None:
        self.failed: GatewayError | None = None

    def received(self) -> tuple[int, bool]:
        return 10, True

    def fail(self, error: GatewayError) -> None:
        self.failed = error


async def look(engine: Engine, dog: Watchdog) -> tuple[Watch, Stream]:
    watch = dog.watch("tiny", URL)
    assert watch is not None
    stream = Stream()
    watch.attach(stream)
    await dog._look(URL, [watch])
    return watch, stream


@pytest.fixture
def engine() -> Engine:
    return Engine()


@pytest.fixture
async def dog(engine: Engine) -> Any:
    watchdog = Watchdog(engine.transport, 60.0, probe_s=0.05)
    yield watchdog
    await watchdog.close()


def test_slots_view_reads_prompt_reading_and_decoded_counts() -> None:
    view = SlotsView([slot(0, 0), slot(1, 7), slot(2, None, processing=False)])
    assert view.prompt and view.working == 2
    assert view.decoded == ((0, 0), (1, 7))
    idle = SlotsView([slot(0, None, processing=False)])
    assert not idle.prompt and idle.working == 0
    assert SlotsView("not a list").working == 0


async def test_a_slot_reading_its_prompt_is_not_a_stall(engine: Engine, dog: Watchdog) -> None:
    engine.slots = [slot(0, 0)]
    watch, stream = await look(engine, dog)
    assert not watch.stalled and stream.failed is None


async def test_an_engine_working_on_nothing_is_a_stall(engine: Engine, dog: Watchdog) -> None:
    engine.slots = [slot(0, None, processing=False)]
    watch, stream = await look(engine, dog)
    assert watch.stalled
    assert isinstance(stream.failed, LocalStalled)
    assert isinstance(stream.failed, ModelUnavailable)  # not retried on the same engine
    assert stream.failed.status == 504 and stream.failed.code == "local_stalled"
    assert "working on no request" in stream.failed.message
    assert dog.stalls == 1


async def test_decoded_counts_that_move_are_progress_and_standing_still_is_a_stall(
    engine: Engine, dog: Watchdog
) -> None:
    engine.slots = [slot(3, 40)]
    first, _ = await look(engine, dog)  # no earlier look at this engine: wait once more
    assert not first.stalled
    engine.slots = [slot(3, 55)]
    moved, _ = await look(engine, dog)
    assert not moved.stalled
    still, stream = await look(engine, dog)  # 55 again
    assert still.stalled
    assert stream.failed is not None and "decoded nothing" in stream.failed.message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_engine_silent_for_twice_the_stall_time_is_a_stall(engine: Engine) -> None:
    clock = Clock()
    dog = Watchdog(engine.transport, 60.0, probe_s=0.05, clock=clock)
    try:
        engine.slots = None
        # One batch of a long prompt keeps llama.cpp from answering /slots for a while:
        # one silent look is not a stall, nor a second one within twice the stall time.
        first, stream = await look(engine, dog)
        assert not first.stalled and stream.failed is None
        clock.now += 119.0
        second, stream = await look(engine, dog)
        assert not second.stalled and stream.failed is None
        clock.now += 1.0
        third, stream = await look(engine, dog)
        assert third.stalled
        assert stream.failed is not None
        assert "has not answered /slots for 120 s" in stream.failed.message
    finally:
        await dog.close()


async def test_an_engine_that_answers_again_is_forgiven_its_silence(engine: Engine) -> None:
    clock = Clock()
    dog = Watchdog(engine.transport, 60.0, probe_s=0.05, clock=clock)
    try:
        engine.slots = None
        await look(engine, dog)
        clock.now += 100.0
        engine.slots = [slot(0, 0)]  # it answers: reading its prompt
        await look(engine, dog)
        clock.now += 30.0
        engine.slots = None  # silent again: counted from now, not from the first look
        again, stream = await look(engine, dog)
        assert not again.stalled and stream.failed is None
    finally:
        await dog.close()


async def test_a_send_still_waiting_for_the_answer_ends_with_the_stall(
    engine: Engine, dog: Watchdog
) -> None:
    watch = dog.watch("tiny", URL)
    assert watch is not None
    never = asyncio.get_running_loop().create_future()
    guarded = asyncio.ensure_future(watch.guard(never))
    watch.stall(LocalStalled("stuck"))
    with pytest.raises(LocalStalled):
        await guarded
    assert never.cancelled()  # the request to the engine was dropped


async def test_off_when_stall_s_is_zero(engine: Engine) -> None:
    assert Watchdog(engine.transport, 0.0).watch("tiny", URL) is None
