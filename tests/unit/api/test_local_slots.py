"""Cache-aware slots through the proxy (in-process, real queue code): a continued
conversation asks its engine for the slot that served it (``id_slot``), with the
prompt cache on, and nothing else is added to what the engine is sent."""

from __future__ import annotations

from typing import Any

import msgspec

from wlm.providers.local import LocalAdapter, local_provider_config
from wlm.transport import MockResponse, UpstreamRequest

from .pipeline import QueuedLocal, body, completion, drive
from .pipeline import make_gateway as _make_gateway


class Engine:
    """Answers every chat with a fixed reply and keeps the bodies it was sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: UpstreamRequest) -> MockResponse:
        self.bodies.append(msgspec.json.decode(request.body or b"{}"))
        return completion("ok")


def gateway(affinity: bool) -> tuple[Any, Engine]:
    engine = Engine()
    local = QueuedLocal(slots=2, affinity=affinity)
    gateway, transport, _ = _make_gateway(engine, {}, local=local)
    gateway.adapters["local"] = LocalAdapter(
        local_provider_config(60.0), transport, local, loading_every_s=30.0, slot_affinity=affinity
    )
    return gateway, engine


def turns(name: str, count: int) -> list[dict[str, str]]:
    said = [{"role": "user", "content": f"conversation {name} " * 40}]
    for i in range(1, count):
        said += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": f"turn {i}"}]
    return said


async def test_each_conversation_asks_for_the_slot_that_served_it() -> None:
    proxy, engine = gateway(affinity=True)
    for messages in (turns("a", 1), turns("b", 1), turns("b", 2), turns("a", 2), turns("a", 3)):
        reply = await drive(proxy, body(model="tiny", messages=messages))
        assert reply.status == 200
    first_a, first_b, second_b, second_a, third_a = engine.bodies
    # first turns: nothing cached yet, the engine picks
    assert "id_slot" not in first_a and "id_slot" not in first_b
    assert second_b["id_slot"] != second_a["id_slot"]
    assert second_a["id_slot"] == third_a["id_slot"]
    assert all(b["cache_prompt"] is True for b in (second_b, second_a, third_a))
    assert second_a["messages"] == turns("a", 2)  # the request itself is untouched


async def test_a_clients_own_slot_and_cache_choice_stand() -> None:
    proxy, engine = gateway(affinity=True)
    await drive(proxy, body(model="tiny", messages=turns("a", 1)))
    mine = body(model="tiny", messages=turns("a", 2), id_slot=7, cache_prompt=False)
    await drive(proxy, mine)
    assert engine.bodies[1]["id_slot"] == 7 and engine.bodies[1]["cache_prompt"] is False
    theirs = body(model="tiny", messages=turns("a", 3), cache_prompt=False)
    await drive(proxy, theirs)
    assert engine.bodies[2]["cache_prompt"] is False and "id_slot" in engine.bodies[2]


async def test_off_the_engine_is_sent_what_the_client_sent() -> None:
    proxy, engine = gateway(affinity=False)
    for messages in (turns("a", 1), turns("a", 2)):
        await drive(proxy, body(model="tiny", messages=messages))
    assert all("id_slot" not in b and "cache_prompt" not in b for b in engine.bodies)
