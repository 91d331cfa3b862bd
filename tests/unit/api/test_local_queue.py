"""The queue in front of the local engines, through the proxy: priorities, positions on
a waiting stream, queue_ms, and cancelling from the API (in-process, real queue code)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest

from wlm.app import create_app
from wlm.config import load_settings
from wlm.local.queue import PRIORITIES
from wlm.providers.local import LocalAdapter, local_provider_config
from wlm.transport import MockResponse, MockTransport, UpstreamRequest

from .pipeline import ENV, ListSink, QueuedLocal, Reply, body, chunk, completion, drive, sse
from .pipeline import make_gateway as _make_gateway

ADMIN = "admin-key-for-queue-tests-0123"


def said(text: str) -> bytes:
    return body(model="tiny", messages=[{"role": "user", "content": text}])


def content(request: UpstreamRequest) -> str:
    return str(msgspec.json.decode(request.body or b"{}")["messages"][0]["content"])


async def settle(predicate: Callable[[], bool]) -> None:
    """Let the loop run until ``predicate()`` holds (no clock involved)."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("the state never came")


def holding(local: QueuedLocal, count: int) -> Callable[[], bool]:
    """True once ``count`` requests run on or wait for ``local``'s engines."""
    return lambda: len(local.queue()) == count


class Engine:
    """A mock engine whose answer to ``first`` waits until ``free`` is set."""

    def __init__(self, stream: bool = False) -> None:
        self.free = asyncio.Event()
        self.seen: list[str] = []
        self.stream = stream

    async def __call__(self, request: UpstreamRequest) -> MockResponse:
        text = content(request)
        self.seen.append(text)
        if text == "first":
            await self.free.wait()
        if msgspec.json.decode(request.body or b"{}").get("stream"):
            return MockResponse.sse(sse(chunk(text, "stop")))
        return completion(text)


def make_gateway(engine: Engine, local: QueuedLocal, **env: str) -> tuple[Any, ListSink]:
    gateway, transport, sink = _make_gateway(engine, env, local=local)
    gateway.adapters["local"] = LocalAdapter(
        local_provider_config(60.0), transport, local, loading_every_s=30.0
    )
    return gateway, sink


def prio(priority: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-wlm-priority", priority.encode())]


async def test_waiting_requests_get_the_slot_by_priority_then_arrival() -> None:
    local = QueuedLocal(slots=1)
    engine = Engine()
    gateway, sink = make_gateway(engine, local)
    first = asyncio.create_task(drive(gateway, said("first")))
    await settle(lambda: engine.seen == ["first"])
    waiting = []
    for text, priority in [
        ("batch", "batch"),
        ("normal-1", "normal"),
        ("interactive", "Interactive"),
        ("normal-2", ""),
    ]:
        headers = prio(priority) if priority else []
        waiting.append(asyncio.create_task(drive(gateway, said(text), headers=headers)))
        await settle(holding(local, len(waiting) + 1))

    entries = local.queue()
    assert [(e.state, e.priority, e.position) for e in entries] == [
        ("running", "normal", None),
        ("waiting", "interactive", 1),
        ("waiting", "normal", 2),
        ("waiting", "normal", 3),
        ("waiting", "batch", 4),
    ]
    engine.free.set()
    replies: list[Reply] = await asyncio.gather(first, *waiting)

    assert engine.seen == ["first", "interactive", "normal-1", "normal-2", "batch"]
    assert all(r.status == 200 and not r.body.startswith(b":") for r in replies)
    rows = [r for r, _ in sink.rows]
    assert len(rows) == 5 and all(r.queue_ms is not None for r in rows)
    waited = sorted(r.queue_ms or 0.0 for r in rows)
    assert waited[0] < waited[-1]  # the first one did not wait, the last ones did
    assert local.queue() == [] and local.leased == 0


async def test_a_keys_default_priority_and_the_header_that_overrides_it() -> None:
    local = QueuedLocal(slots=4)
    engine = Engine()
    engine.free.set()
    gateway, sink = make_gateway(
        engine,
        local,
        WLM_API_KEYS="ci:key-ci-0123456789,alice:key-alice-0123456789",
        WLM_KEY_PRIORITY="ci:batch,*:interactive",
    )

    def key(name: str) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", f"Bearer key-{name}-0123456789".encode())]

    await drive(gateway, said("a"), headers=key("ci"))
    await drive(gateway, said("b"), headers=key("alice"))
    await drive(gateway, said("c"), headers=[*key("ci"), *prio("normal")])
    assert [(p.client, p.priority) for p in local.places if p] == [
        ("ci", "batch"),
        ("alice", "interactive"),
        ("ci", "normal"),
    ]
    assert [r.status for r, _ in sink.rows] == ["ok"] * 3


async def test_a_bad_priority_header_is_a_400_that_names_the_choices() -> None:
    local = QueuedLocal()
    gateway, _ = make_gateway(Engine(), local)
    reply = await drive(gateway, said("x"), headers=prio("urgent"))
    assert reply.status == 400
    assert reply.error["code"] == "invalid_priority"
    assert all(p in reply.error["message"] for p in PRIORITIES)
    assert local.places == []


async def test_cloud_requests_take_no_ticket_read_no_priority_and_record_no_wait() -> None:
    local = QueuedLocal()
    gateway, sink = make_gateway(Engine(), local)
    # WLM_ROUTES sends gpt-* to openai, on the same mock transport; the header is not read.
    reply = await drive(
        gateway,
        body(model="gpt-4o", messages=[{"role": "user", "content": "x"}]),
        headers=prio("not-even-a-priority"),
    )
    assert reply.status == 200
    assert local.places == [] and sink.only.queue_ms is None


async def test_a_waiting_stream_is_told_its_position_as_it_changes() -> None:
    local = QueuedLocal(slots=1)
    engine = Engine()
    gateway, sink = make_gateway(engine, local)
    first = asyncio.create_task(drive(gateway, said("first")))
    await settle(lambda: engine.seen == ["first"])
    later: list[asyncio.Task[Reply]] = []

    def on_part(part: bytes) -> None:
        if part == b": queued position=1 of 1\n\n" and not later:
            # Someone more urgent arrives: the stream moves back to 2 of 2.
            later.append(
                asyncio.create_task(drive(gateway, said("urgent"), headers=prio("interactive")))
            )
        elif part == b": queued position=2 of 2\n\n":
            engine.free.set()

    stream = await drive(
        gateway,
        body(model="tiny", messages=[{"role": "user", "content": "streamed"}], stream=True),
        on_part=on_part,
    )
    await asyncio.gather(first, *later)

    assert stream.status == 200
    comments = [p for p in stream.parts if p.startswith(b":")]
    told = [c for i, c in enumerate(comments) if i == 0 or comments[i - 1] != c]
    assert told[:2] == [b": queued position=1 of 1\n\n", b": queued position=2 of 2\n\n"]
    first_data = next(i for i, p in enumerate(stream.parts) if p.startswith(b"data:"))
    assert all(p.startswith(b":") for p in stream.parts[:first_data])
    assert stream.body.endswith(b"data: [DONE]\n\n")
    assert engine.seen == ["first", "urgent", "streamed"]
    row = next(r for r, _ in sink.rows if r.stream)
    assert row.status == "ok" and row.queue_ms is not None and row.queue_ms > 0


class PageSink(ListSink):
    """A list sink the pages can ask how telemetry is doing (well)."""

    def stats(self) -> Any:
        return SimpleNamespace(spool_full=False, spooled_bytes=0, dropped=0)


@pytest.fixture(params=[False, True], ids=["in-memory", "journaled"])
async def app_and_local(request: pytest.FixtureRequest) -> Any:
    local = QueuedLocal(slots=1)
    engine = Engine()
    transport = MockTransport(engine)
    sink = PageSink()
    sink.durable = request.param  # journaled: each row is submitted before its last part
    settings = load_settings({**ENV, "WLM_ADMIN_KEY": ADMIN})
    app = create_app(settings, local=local, telemetry=sink, transports=transport.factory)
    gateway = app.state.gateway
    gateway.adapters["local"] = LocalAdapter(
        local_provider_config(60.0), transport, local, loading_every_s=30.0
    )
    # The app without its lifespan: the pages and /api need nothing it starts.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://127.0.0.1",
        headers={"authorization": f"Bearer {ADMIN}"},
    ) as client:
        yield client, gateway, local, engine, sink


async def test_cancel_from_the_api_ends_waiting_and_running_requests_in_their_dialect(
    app_and_local: Any,
) -> None:
    client, gateway, local, engine, sink = app_and_local
    running = asyncio.create_task(drive(gateway, said("first")))
    await settle(lambda: engine.seen == ["first"])
    told = asyncio.Event()
    stream = asyncio.create_task(
        drive(
            gateway,
            body(model="tiny", messages=[{"role": "user", "content": "s"}], stream=True),
            on_part=lambda part: told.set() if part.startswith(b": queued") else None,
        )
    )
    await told.wait()
    messages = asyncio.create_task(
        drive(
            gateway,
            body(model="tiny", messages=[{"role": "user", "content": "m"}], max_tokens=5),
            endpoint="messages",
        )
    )
    await settle(lambda: len(local.queue()) == 3)

    listed = (await client.get("/api/queue")).json()["data"]
    assert [(e["state"], e["position"], e["stream"]) for e in listed] == [
        ("running", None, False),
        ("waiting", 1, True),
        ("waiting", 2, False),
    ]
    assert all(e["model"] == "tiny" and e["priority"] == "normal" for e in listed)
    assert (await client.delete("/api/queue/req_nope")).status_code == 404
    refused = await client.delete(f"/api/queue/{listed[1]['id']}", headers={"authorization": ""})
    assert refused.status_code == 401

    for entry in listed[1:]:
        answer = await client.delete(f"/api/queue/{entry['id']}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["cancelled"]["id"] == entry["id"]
    streamed, anthropic = await asyncio.gather(stream, messages)
    answer = await client.delete(f"/api/queue/{listed[0]['id']}")
    assert answer.json()["cancelled"]["state"] == "running"
    whole = await running

    # The stream had its 200 and a position: it ends with an error event.
    assert streamed.status == 200
    assert b"request_cancelled" in streamed.parts[-1]
    assert b"cancelled by an administrator" in streamed.parts[-1]
    # The Messages client gets Anthropic's error shape; the chat client OpenAI's.
    assert anthropic.status == 503
    assert anthropic.json()["type"] == "error"
    assert anthropic.headers["x-should-retry"] == "false"
    assert (whole.status, whole.error["type"]) == (503, "request_cancelled")
    assert engine.seen == ["first"]  # the waiting ones never reached the engine
    rows = [r for r, _ in sink.rows]
    assert len(rows) == 3
    assert {(r.status, r.error_type, r.error_code) for r in rows} == {
        ("cancelled", "request_cancelled", "cancelled_by_admin")
    }
    # The ones cancelled while they waited are recorded with their wait.
    assert all(
        r.queue_ms is not None and r.queue_ms > 0
        for r in rows
        if r.stream or r.endpoint == "messages"
    )
    assert local.queue() == [] and local.leased == 0


async def test_the_instances_page_lists_each_engines_requests_and_cancels_one(
    app_and_local: Any,
) -> None:
    client, gateway, local, engine, _ = app_and_local
    running = asyncio.create_task(drive(gateway, said("first")))
    await settle(lambda: engine.seen == ["first"])
    waiting = asyncio.create_task(drive(gateway, said("later"), headers=prio("batch")))
    await settle(holding(local, 2))

    page = await client.get("/instances", headers={"hx-request": "true"})
    assert page.status_code == 200
    html = page.text
    assert 'id="instances-table"' in html and 'hx-trigger="every 2s"' in html
    assert "<code>tiny</code>: 1 running, 1 waiting" in html
    [waiting_id] = [e.id for e in local.queue() if e.state == "waiting"]
    assert f'data-request="{waiting_id}" data-state="waiting" data-priority="batch"' in html

    answer = await client.post("/instances/cancel", data={"id": waiting_id})
    assert answer.status_code == 200
    assert "1 running, 0 waiting" in answer.text
    cancelled = await waiting
    assert (cancelled.status, cancelled.error["code"]) == (503, "cancelled_by_admin")
    engine.free.set()
    assert (await running).status == 200
    listed = (await client.get("/instances.json")).json()
    assert listed["queue"] == []
    assert "No request is running on a local engine" in (await client.get("/instances")).text


async def test_a_running_stream_shows_its_tokens_so_far_with_content_logging_off() -> None:
    local = QueuedLocal(slots=1)
    said_three = sse(chunk("one"), chunk(" two"), chunk(" three"), done=False)
    transport = MockTransport(lambda _: MockResponse.sse(said_three, stall_after=True))
    settings = load_settings({**ENV, "WLM_ADMIN_KEY": ADMIN, "WLM_LOG_CONTENT": "false"})
    app = create_app(settings, local=local, telemetry=PageSink(), transports=transport.factory)
    gateway = app.state.gateway
    gateway.adapters["local"] = LocalAdapter(
        local_provider_config(60.0), transport, local, loading_every_s=30.0
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://127.0.0.1",
        headers={"authorization": f"Bearer {ADMIN}"},
    ) as client:
        parts: list[bytes] = []
        stream = asyncio.create_task(
            drive(
                gateway,
                body(model="tiny", messages=[{"role": "user", "content": "s"}], stream=True),
                on_part=parts.append,
            )
        )
        await settle(lambda: sum(b"three" in p for p in parts) == 1)
        listed = (await client.get("/api/queue")).json()["data"]
        assert [(e["state"], e["tokens"]) for e in listed] == [("running", 3)]
        await client.delete(f"/api/queue/{listed[0]['id']}")
        assert b"request_cancelled" in (await stream).parts[-1]


class Quiet:
    """A Progress that tells nobody anything."""

    async def loading(self, model_id: str) -> None: ...

    async def queued(self, position: int, total: int) -> None: ...

    def retrying(self, error: Any) -> None: ...


async def test_a_wait_for_the_engine_closed_at_shutdown_ends_cleanly() -> None:
    """A waiting request's coroutine closed (the server stopping, or its task collected)
    leaves the queue without awaiting anything, which a closed coroutine may not."""
    local = QueuedLocal(slots=1)
    engine = Engine()
    gateway, _ = make_gateway(engine, local)
    running = asyncio.create_task(drive(gateway, said("first")))
    await settle(lambda: engine.seen == ["first"])
    adapter = gateway.adapters["local"]
    waiting = adapter._acquire("tiny", Quiet())
    waiting.send(None)  # it is in the queue now, waiting for the slot
    await settle(lambda: len(local.queue()) == 2)
    waiting.close()  # raised "coroutine ignored GeneratorExit" when it awaited here
    await settle(lambda: len(local.queue()) == 1)
    engine.free.set()
    assert (await running).status == 200
    assert local.queue() == [] and local.leased == 0
