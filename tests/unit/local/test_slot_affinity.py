"""Cache-aware slots: the prompt fingerprints, the pick among free slots, and the
dispatcher's slot accounting (wlm/local/slot_affinity.py, wlm/local/dispatch.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wlm.local.dispatch import Dispatcher
from wlm.local.slot_affinity import Choice, Prefix, pick, prefix_of, shared
from wlm.local.supervisor import Instance, InstanceState

CHAT = "chat/completions"


def turn(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": text}


def conversation(*texts: str) -> list[dict[str, Any]]:
    return [turn("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(texts)]


def fp(*texts: str, **fields: Any) -> Prefix:
    found = prefix_of(CHAT, {"model": "m", "messages": conversation(*texts), **fields})
    assert found is not None
    return found


# -- fingerprints ----------------------------------------------------------------------


def test_a_continued_conversation_shares_its_whole_earlier_prompt() -> None:
    earlier = fp("system and question " * 50, "answer")
    later = fp("system and question " * 50, "answer", "next question")
    assert shared(earlier, later) == earlier.size
    assert later.size == earlier.size + len("user") + len("next question")


def test_an_edited_message_or_other_tools_break_the_match_where_they_differ() -> None:
    base = fp("aaaa", "bbbb", "cccc")
    assert shared(base, fp("aaaa", "bbXb", "cccc")) == base.sizes[0]  # the first message
    assert shared(base, fp("Xaaa", "bbbb", "cccc")) == 0
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert shared(base, fp("aaaa", "bbbb", "cccc", tools=tools)) == 0
    # other request fields (sampling, stream) are not part of the prompt
    assert shared(base, fp("aaaa", "bbbb", "cccc", temperature=0.1, stream=True)) == base.size


def test_every_dialect_has_fingerprints_and_other_endpoints_none() -> None:
    messages = {"system": "be brief", "messages": [turn("user", "hi")]}
    assert prefix_of("messages", messages) is not None
    assert prefix_of("messages", {**messages, "system": "other"}) != prefix_of("messages", messages)
    assert prefix_of("responses", {"input": "hi"}) is not None
    assert prefix_of("responses", {"input": [turn("user", "hi")]}) is not None
    assert prefix_of("embeddings", {"input": "hi"}) is None
    assert prefix_of(CHAT, {"messages": []}) is None
    assert prefix_of(CHAT, {"messages": "not a list"}) is None


def test_structured_content_is_fingerprinted_by_value() -> None:
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]
    one = prefix_of(CHAT, {"messages": [{"role": "user", "content": parts}]})
    same = prefix_of(CHAT, {"messages": [{"role": "user", "content": [dict(p) for p in parts]}]})
    other = prefix_of(CHAT, {"messages": [{"role": "user", "content": parts[:1]}]})
    assert one == same != other


texts = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8)


@given(texts, texts)
def test_shared_is_the_size_of_the_longest_common_run_of_messages(
    a: list[str], b: list[str]
) -> None:
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    roles = ("user", "assistant") * 4
    head = 1  # the (absent) tools
    expected = (
        head + sum(len(r) + len(t) for r, t in zip(roles, a[:common], strict=False))
        if common
        else 0
    )
    pa, pb = fp(*a), fp(*b)
    assert shared(pa, pb) == shared(pb, pa) == expected
    assert shared(pa, pa) == pa.size


# -- the pick --------------------------------------------------------------------------


def test_a_continuation_goes_to_the_slot_holding_its_conversation() -> None:
    a, b = fp("conversation a " * 20), fp("conversation b " * 20)
    held = [a, b, None]
    a2 = fp("conversation a " * 20, "reply", "more")
    assert pick(a2, held, [5, 3, -1], [0, 1, 2]) == Choice(0, pin=True)
    b2 = fp("conversation b " * 20, "reply", "more")
    assert pick(b2, held, [5, 3, -1], [0, 1, 2]) == Choice(1, pin=True)


def test_with_no_match_the_engine_picks_and_the_pick_names_its_choice() -> None:
    held = [fp("a" * 100), None, fp("c" * 100)]
    # an empty slot first (never used), as llama.cpp's least-recently-used scan does
    assert pick(fp("new"), held, [4, -1, 2], [0, 1, 2]) == Choice(1, pin=False)
    # else the oldest release; the last id on a tie
    assert pick(fp("new"), held, [4, 7, 2], [0, 1, 2]) == Choice(2, pin=False)
    assert pick(None, held, [2, 7, 2], [0, 1, 2]) == Choice(2, pin=False)


def test_a_busy_slot_is_never_picked_and_a_small_share_is_not_worth_a_pin() -> None:
    system = "s" * 10
    a = fp(system, "conversation a " * 40)
    a2 = fp(system, "conversation a " * 40, "x", "y")
    held = [a, None]
    assert pick(a2, held, [1, -1], [1]) == Choice(1, pin=False)  # slot 0 busy
    # a new conversation sharing only a short system prompt leaves slot 0's cache be
    new = fp(system, "another conversation " * 40)
    assert pick(new, [a, fp("z")], [1, 0], [0, 1]) == Choice(1, pin=False)


slot_count = st.integers(min_value=1, max_value=6)


@given(st.data())
def test_pick_invariants(data: st.DataObject) -> None:
    count = data.draw(slot_count)
    pool = [fp(*t) for t in data.draw(st.lists(texts, min_size=1, max_size=5))]
    held = data.draw(st.lists(st.sampled_from([None, *pool]), min_size=count, max_size=count))
    used = data.draw(st.lists(st.integers(-1, 20), min_size=count, max_size=count))
    free = data.draw(st.sets(st.integers(0, count - 1), min_size=1))
    request = data.draw(st.sampled_from([None, *pool]))
    choice = pick(request, held, used, free)
    assert choice.slot in free
    best = 0
    if request is not None:
        best = max((shared(request, h) for s, h in enumerate(held) if s in free and h), default=0)
    if choice.pin:  # pinned: the longest share among the free slots, and a real one
        assert request is not None and held[choice.slot] is not None
        assert shared(request, held[choice.slot]) == best > 0  # type: ignore[arg-type]
    else:  # not pinned: no share worth one, and the least recently used
        assert request is None or best <= request.size * 0.1
        assert used[choice.slot] == min(used[s] for s in free)


# -- the dispatcher's slot accounting -------------------------------------------------


class _Engines:
    def __init__(self, model: str) -> None:
        self.instance = Instance(model, 10)
        self.instance.state = InstanceState.READY
        self.instance.starts = 1

    def instances(self) -> list[Instance]:
        return [self.instance]

    def get(self, model_id: str) -> Instance | None:
        return self.instance if model_id == self.instance.model_id else None


async def test_the_dispatcher_keeps_each_conversation_on_its_slot() -> None:
    engines = _Engines("m")
    queue = Dispatcher(engines, lambda _: 2, 1, affinity=True)
    a1, b1 = fp("conversation a " * 30), fp("conversation b " * 30)
    a2, b2 = fp("conversation a " * 30, "r", "q"), fp("conversation b " * 30, "r", "q")

    first_a = queue.enter("m", prefix=a1)
    first_b = queue.enter("m", prefix=b1)
    slots = {queue.take_slot(first_a, 1), queue.take_slot(first_b, 1)}
    assert slots == {None}  # nothing cached yet: the engine picks, wlm notes where
    assert {first_a.slot, first_b.slot} == {0, 1}
    queue.leave(first_a)
    queue.leave(first_b)

    # b's turn comes first this time: each still goes to its own slot, pinned
    second_b = queue.enter("m", prefix=b2)
    assert queue.take_slot(second_b, 1) == first_b.slot
    second_a = queue.enter("m", prefix=a2)
    assert queue.take_slot(second_a, 1) == first_a.slot
    queue.leave(second_a)
    queue.leave(second_b)

    # a restarted engine holds nothing: no pin
    engines.instance.starts = 2
    third_a = queue.enter("m", prefix=fp("conversation a " * 30, "r", "q", "r", "q"))
    assert queue.take_slot(third_a, 2) is None


async def test_no_pin_while_the_engine_placed_a_running_request_itself() -> None:
    engines = _Engines("m")
    queue = Dispatcher(engines, lambda _: 2, 1, affinity=True)
    a1 = fp("conversation a " * 30)
    first = queue.enter("m", prefix=a1)
    queue.take_slot(first, 1)
    queue.leave(first)  # slot first.slot now holds conversation a
    stranger = queue.enter("m", prefix=fp("another conversation " * 30))
    assert queue.take_slot(stranger, 1) is None  # llama.cpp picks: wlm only guesses where
    # a's next turn would be pinned to its slot, but that may be where llama.cpp put the
    # stranger (it picks by similarity): asking for it could queue a behind the stranger.
    second = queue.enter("m", prefix=fp("conversation a " * 30, "r", "q"))
    assert queue.take_slot(second, 1) is None
    queue.leave(stranger)
    queue.leave(second)
    third = queue.enter("m", prefix=fp("conversation a " * 30, "r", "q", "r", "q"))
    assert queue.take_slot(third, 1) is not None  # nothing guessed runs: pinned again


async def test_off_or_one_slot_pins_nothing() -> None:
    engines = _Engines("m")
    for queue in (
        Dispatcher(engines, lambda _: 2, 1, affinity=False),
        Dispatcher(engines, lambda _: 1, 1, affinity=True),
    ):
        for _ in range(2):
            ticket = queue.enter("m", prefix=fp("same conversation " * 10))
            assert queue.take_slot(ticket, 1) is None
            queue.leave(ticket)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.integers(1, 4)), max_size=40))
async def test_running_requests_never_share_a_slot(steps: list[tuple[bool, int, int]]) -> None:
    queue = Dispatcher(_Engines("m"), lambda _: 3, 1, affinity=True)
    running: list[Any] = []
    for arrive, conversation, turns in steps:
        if arrive and len(running) < 3:
            ticket = queue.enter("m", prefix=fp(*[f"c{conversation}"] * turns))
            queue.take_slot(ticket, 1)
            running.append(ticket)
        elif running:
            queue.leave(running.pop(conversation % len(running)))
        slots = [t.slot for t in running]
        assert None not in slots and len(set(slots)) == len(slots)
