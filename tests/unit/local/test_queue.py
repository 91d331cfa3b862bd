"""The queue's plan (wlm/local/queue.py): its ordering invariants, by example and by
hypothesis over random queues and engines."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wlm.local.queue import PRIORITIES, EngineView, Plan, Priority, Waiter, plan, rank

INT, N, B = Priority.INTERACTIVE, Priority.NORMAL, Priority.BATCH
MODELS = ("a", "b", "c")


def w(key: str, model: str, priority: Priority, seq: int) -> Waiter:
    return Waiter(key, model, priority, seq)


def test_priorities_parse_and_refuse() -> None:
    assert [Priority.parse(p) for p in ("interactive", " Normal ", "BATCH")] == [INT, N, B]
    assert PRIORITIES == ("interactive", "normal", "batch")
    with pytest.raises(
        ValueError, match="unknown priority 'urgent': use interactive, normal, batch"
    ):
        Priority.parse("urgent")


def test_one_engine_serves_by_priority_then_arrival() -> None:
    engines = {"a": EngineView("a", "ready", slots=2, running=0)}
    waiters = [w("b1", "a", B, 1), w("n2", "a", N, 2), w("i3", "a", INT, 3), w("n4", "a", N, 4)]
    step = plan(waiters, engines, 1)
    assert step.admit == ("i3", "n2")
    assert step.waiting == ("n4", "b1")
    assert step.start is None


def test_a_swap_waits_for_higher_priority_work_of_the_loaded_model() -> None:
    engines = {"a": EngineView("a", "ready", slots=1, running=1)}
    waiters = [w("b-normal", "b", N, 1), w("a-interactive", "a", INT, 2)]
    step = plan(waiters, engines, 1)
    assert step == Plan(waiting=("a-interactive", "b-normal"))  # no swap yet
    # Once the interactive request has its slot, the swap may begin (a drains first).
    step = plan([waiters[0]], engines, 1)
    assert (step.start, step.evict) == ("b-normal", "a")


def test_lower_priority_work_of_the_loaded_model_waits_behind_a_swap() -> None:
    engines = {"a": EngineView("a", "ready", slots=4, running=1)}
    waiters = [w("b-normal", "b", N, 1), w("a-batch", "a", B, 2)]
    step = plan(waiters, engines, 1)
    assert (step.start, step.evict, step.admit, step.waiting) == ("b-normal", "a", (), ("a-batch",))


def test_the_batch_a_model_was_loaded_for_goes_before_a_swap_of_the_same_priority() -> None:
    # a became ready while a2 and a4 waited (batch up to seq 4); b3 came between them.
    engines = {"a": EngineView("a", "ready", slots=1, running=1, batch=4)}
    waiters = [w("a2", "a", N, 2), w("b3", "b", N, 3), w("a4", "a", N, 4), w("a5", "a", N, 5)]
    assert plan(waiters, engines, 1).waiting == ("a2", "a4", "b3", "a5")
    # Higher priority still beats a batch.
    urgent = [*waiters, w("b6", "b", INT, 6)]
    step = plan(urgent, {"a": EngineView("a", "ready", slots=1, running=1, batch=4)}, 1)
    assert step.waiting[0] == "b6" or step.start == "b6"


def test_room_for_another_engine_starts_it_without_eviction() -> None:
    engines = {"a": EngineView("a", "ready", slots=1, running=1)}
    step = plan([w("b1", "b", N, 1)], engines, 2)
    assert (step.start, step.evict) == ("b1", None)


def test_one_start_at_a_time() -> None:
    engines = {"a": EngineView("a", "starting", running=1)}
    step = plan([w("b1", "b", INT, 1), w("c2", "c", INT, 2)], engines, 3)
    assert step.start is None
    assert step.waiting == ("b1", "c2")


def test_an_idle_engine_is_evicted_before_a_busy_one() -> None:
    engines = {
        "a": EngineView("a", "ready", slots=1, running=1, last_used=1.0),
        "c": EngineView("c", "ready", slots=1, running=0, last_used=5.0),
    }
    assert plan([w("b1", "b", N, 1)], engines, 2).evict == "c"


# -- invariants over random queues ------------------------------------------------------


@st.composite
def scenes(draw: Any) -> tuple[list[Waiter], dict[str, EngineView], int]:
    count = draw(st.integers(0, 12))
    seqs = draw(st.lists(st.integers(1, 1000), min_size=count, max_size=count, unique=True))
    waiters = [
        Waiter(f"w{seq}", draw(st.sampled_from(MODELS)), draw(st.sampled_from(list(Priority))), seq)
        for seq in seqs
    ]
    engines: dict[str, EngineView] = {}
    for model in MODELS:
        state = draw(st.sampled_from([None, "ready", "starting", "stopping"]))
        if state is None:
            continue
        slots = draw(st.integers(1, 3))
        running = draw(st.integers(0, slots if state == "ready" else 2))
        engines[model] = EngineView(
            model,
            state,
            slots,
            running,
            batch=draw(st.integers(-1, 1000)),
            last_used=draw(st.floats(0, 100)),
        )
    max_loaded = draw(st.integers(1, 3))
    return waiters, engines, max_loaded


@settings(max_examples=400, deadline=None)
@given(scenes())
def test_plan_invariants(scene: tuple[list[Waiter], dict[str, EngineView], int]) -> None:
    waiters, engines, max_loaded = scene
    step = plan(waiters, engines, max_loaded)
    by_key = {x.key: x for x in waiters}

    # Every waiter is in exactly one place.
    placed = [*step.admit, *step.waiting, *([step.start] if step.start else [])]
    assert sorted(placed) == sorted(by_key)

    # Admitted only to ready engines, never past their free slots.
    for model in MODELS:
        taken = [k for k in step.admit if by_key[k].model == model]
        if taken:
            engine = engines[model]
            assert engine.state == "ready"
            assert len(taken) <= engine.slots - engine.running

    # The waiting list is in rank order (the positions clients are told).
    ranks = [rank(by_key[k], engines) for k in step.waiting]
    assert ranks == sorted(ranks)

    # Per model, nobody is admitted while a better-ranked waiter of that model waits.
    for key in step.admit:
        admitted = by_key[key]
        for later in step.waiting:
            if by_key[later].model == admitted.model:
                assert rank(by_key[later], engines) > rank(admitted, engines)

    # Work-conserving: a waiter left waiting has no free slot on its ready engine,
    # unless that engine is being swapped out for the start.
    for key in step.waiting:
        waiter = by_key[key]
        found = engines.get(waiter.model)
        if found is not None and found.state == "ready" and waiter.model != step.evict:
            used = sum(1 for k in step.admit if by_key[k].model == waiter.model)
            assert found.running + used >= found.slots

    if step.start is None:
        assert step.evict is None
        return
    head = by_key[step.start]
    # One start at a time, for a model without a ready or starting engine.
    assert not any(e.state == "starting" for e in engines.values())
    assert engines.get(head.model) is None or engines[head.model].state == "stopping"
    # It is the best-ranked waiter that needs a start.
    for key in step.waiting:
        other = by_key[key]
        needs = engines.get(other.model) is None or engines[other.model].state == "stopping"
        if needs:
            assert rank(other, engines) > rank(head, engines)
    staying = [e for e in engines.values() if e.state != "stopping" and e.model != head.model]
    if step.evict is None:
        assert len(staying) < max_loaded
    else:
        victim = engines[step.evict]
        assert victim.state == "ready"
        assert victim.model != head.model
        assert len(staying) >= max_loaded
        # The swap waits for better-ranked work of the engine it evicts.
        for key in step.waiting:
            if by_key[key].model == step.evict:
                assert rank(by_key[key], engines) > rank(head, engines)


# -- a small simulation: requests run to the end, one step at a time -----------------------


def simulate(
    arrivals: list[tuple[str, Priority]], slots: int, max_loaded: int
) -> tuple[list[str], list[str]]:
    """Every request waits from the start. Each step, running requests end, a starting
    engine becomes ready (its start request begins), a stopping one is gone, then the
    plan runs. The requests in the order they began, and the models started in order."""
    waiters = [Waiter(f"r{i}", m, p, i) for i, (m, p) in enumerate(arrivals, 1)]
    by_key = {x.key: x for x in waiters}
    last_seq = len(waiters)
    engines: dict[str, EngineView] = {}
    pending: dict[str, str] = {}  # a starting model -> the request that started it
    began: list[str] = []
    starts: list[str] = []
    for clock in range(1, 10 * len(waiters) + 10):
        if not waiters and not pending:
            break
        for model, engine in list(engines.items()):
            if engine.state == "stopping":
                del engines[model]
            elif engine.state == "starting":
                engines[model] = EngineView(model, "ready", slots, 1, last_seq, float(clock))
                began.append(pending.pop(model))
            else:
                engines[model] = EngineView(
                    model, "ready", slots, 0, engine.batch, engine.last_used
                )
        step = plan(waiters, engines, max_loaded)
        for key in step.admit:
            began.append(key)
            model = by_key[key].model
            engine = engines[model]
            engines[model] = EngineView(
                model, "ready", slots, engine.running + 1, engine.batch, float(clock)
            )
        if step.start is not None:
            model = by_key[step.start].model
            if step.evict is not None:
                engines[step.evict] = EngineView(step.evict, "stopping")
            engines[model] = EngineView(model, "starting", running=1)
            pending[model] = step.start
            starts.append(model)
        gone = {*step.admit, step.start}
        waiters = [x for x in waiters if x.key not in gone]
    return began, starts


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(MODELS), st.just(N)), min_size=1, max_size=15))
def test_no_swap_thrash_one_start_per_model_for_what_waits(arrivals: Any) -> None:
    """Interleaved requests of one priority, all waiting: each model starts once."""
    began, starts = simulate(arrivals, slots=1, max_loaded=1)
    assert len(began) == len(arrivals)
    assert sorted(starts) == sorted({m for m, _ in arrivals})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(Priority)), min_size=1, max_size=15))
def test_one_model_serves_in_priority_then_arrival_order(priorities: list[Priority]) -> None:
    arrivals = [("a", p) for p in priorities]
    began, _ = simulate(arrivals, slots=1, max_loaded=1)
    # The first request starts the engine; the rest go by priority, then arrival.
    order = [int(k[1:]) for k in began[1:]]
    assert order == sorted(order, key=lambda i: (priorities[i - 1], i))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(MODELS), st.sampled_from(list(Priority))), max_size=15))
def test_swaps_follow_priority_classes(arrivals: Any) -> None:
    """However requests interleave, every one is served, and a model is started at most
    once per priority class present (the batches keep swaps from thrashing)."""
    began, starts = simulate(arrivals, slots=2, max_loaded=1)
    assert sorted(began) == sorted(f"r{i}" for i in range(1, len(arrivals) + 1))
    classes = len({p for _, p in arrivals})
    for model in {m for m, _ in arrivals}:
        assert starts.count(model) <= classes
