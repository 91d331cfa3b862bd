"""In-process harness for the request pipeline: a Gateway on a MockTransport, driven
through the proxy's ASGI entry point with no server, no socket and no subprocess."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import msgspec

from wlm.api.proxy import Message, proxy_endpoint
from wlm.config import load_settings
from wlm.errors import ModelUnavailable
from wlm.gateway import Gateway, Pacing
from wlm.local.dispatch import Dispatcher
from wlm.local.protocol import EngineLease, QueueEntry, QueuePlace
from wlm.local.supervisor import Instance, InstanceState
from wlm.telemetry.records import (
    AttemptRecord,
    BoxSampleRecord,
    ConversationRecord,
    RequestRecord,
)
from wlm.transport import MockResponse, MockTransport, UpstreamRequest

ENV = {
    "OPENAI_API_KEY": "sk-openai-secret-1234",
    "ANTHROPIC_API_KEY": "sk-ant-secret-5678",
    "WLM_ROUTES": "gpt-*=openai,claude-*=anthropic",
}


class ListSink:
    """A TelemetrySink that keeps records in a list."""

    def __init__(self) -> None:
        self.durable = False  # True: as a journal, the proxy submits before the last part
        self.rows: list[tuple[RequestRecord, ConversationRecord | None]] = []
        self.attempts: list[AttemptRecord] = []
        self.box: list[BoxSampleRecord] = []

    def start(self) -> None: ...

    async def aclose(self, timeout_s: float = 10.0) -> None: ...

    def submit(
        self,
        record: RequestRecord,
        conversation: ConversationRecord | None = None,
        attempts: Sequence[AttemptRecord] = (),
    ) -> bool:
        self.rows.append((record, conversation))
        self.attempts.extend(attempts)
        return True

    def submit_box(self, rows: Sequence[BoxSampleRecord]) -> bool:
        self.box.extend(rows)
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def stats(self) -> Any:
        raise NotImplementedError

    async def read(self, fn: Any) -> Any:
        raise NotImplementedError

    async def query(self, sql: str, params: Any = None, **_: Any) -> Any:
        raise NotImplementedError

    @property
    def only(self) -> RequestRecord:
        assert len(self.rows) == 1, self.rows
        return self.rows[0][0]


class FakeLocal:
    """LocalModels with engines that 'start' when the test lets them (``ready`` event)."""

    def __init__(self, ids: frozenset[str] = frozenset({"tiny"})) -> None:
        self.ids = ids
        self.ready = asyncio.Event()
        self.ready.set()
        self.leased = 0
        self.acquired = 0
        self.slot_free = asyncio.Event()  # cleared: every slot busy (for a bounded wait)
        self.slot_free.set()
        self.failed_to_load: str | None = None  # set: the engine cannot start, and why
        self.bounded: list[float] = []  # the max_wait_s of each bounded acquire
        self.url = "http://127.0.0.1:9"
        self.places: list[QueuePlace | None] = []  # what each acquire was told

    def queue(self) -> list[QueueEntry]:
        return []

    def cancel_queued(self, request_id: str) -> QueueEntry | None:
        return None

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def kill_engines_now(self) -> list[int]:
        return []

    def on_engine_event(self, sink: Callable[[str, str, str], None] | None) -> None: ...

    def model_ids(self) -> frozenset[str]:
        return self.ids

    def routable_ids(self) -> frozenset[str]:
        return self.ids

    def has_model(self, model_id: str) -> bool:
        return model_id in self.ids

    def list_models(self) -> list[Any]:
        return []

    async def rescan(self) -> Any:
        raise NotImplementedError

    def is_ready(self, model_id: str) -> bool:
        return self.ready.is_set()

    async def acquire(
        self, model_id: str, *, max_wait_s: float | None = None, place: QueuePlace | None = None
    ) -> EngineLease:
        self.places.append(place)
        if max_wait_s is not None:
            self.bounded.append(max_wait_s)
            if self.failed_to_load is not None:
                raise ModelUnavailable(self.failed_to_load)
            try:
                async with asyncio.timeout(max_wait_s):
                    await self.ready.wait()
                    await self.slot_free.wait()
            except TimeoutError:
                raise ModelUnavailable(f"Local model '{model_id}' is busy.") from None
        elif self.failed_to_load is not None:
            raise ModelUnavailable(self.failed_to_load)
        await self.ready.wait()
        self.acquired += 1
        self.leased += 1

        def release() -> None:
            self.leased -= 1

        return EngineLease(self.url, release)

    async def load(self, model_id: str) -> None: ...

    async def unload(self, model_id: str) -> None: ...

    def instances(self) -> list[Any]:
        return []

    def logs(self, model_id: str) -> list[str]:
        return []

    async def follow_logs(self, model_id: str, backlog: bool = True) -> AsyncIterator[str]:
        return
        yield  # pragma: no cover

    async def wait_for_state(self, model_id: str, *states: str, timeout: float = 30.0) -> str:
        return "failed"


class _ReadyEngines:
    """The engines a :class:`QueuedLocal` has: always ready, never loading."""

    def __init__(self, ids: frozenset[str]) -> None:
        self._instances = {}
        for model_id in sorted(ids):
            instance = Instance(model_id, 10)
            instance.state = InstanceState.READY
            instance.starts = 1
            self._instances[model_id] = instance

    def instances(self) -> list[Instance]:
        return list(self._instances.values())

    def get(self, model_id: str) -> Instance | None:
        return self._instances.get(model_id)


class QueuedLocal(FakeLocal):
    """Ready engines of ``slots`` slots each, behind the real queue (wlm/local/dispatch.py):
    a request that finds every slot held waits for its turn. ``affinity``: cache-aware
    slots (the lease names the slot that holds the request's conversation)."""

    def __init__(
        self, ids: frozenset[str] = frozenset({"tiny"}), slots: int = 1, affinity: bool = False
    ) -> None:
        super().__init__(ids)
        self.engines = _ReadyEngines(ids)
        self.dispatcher = Dispatcher(
            self.engines, lambda _: slots, max_loaded=len(ids), affinity=affinity
        )
        self.through: list[str] = []  # request ids, in the order they got a slot

    def queue(self) -> list[QueueEntry]:
        return self.dispatcher.entries()

    def cancel_queued(self, request_id: str) -> QueueEntry | None:
        entries = {e.id: e for e in self.dispatcher.entries()}
        ticket = self.dispatcher.cancel(request_id)
        return entries.get(ticket.key) if ticket is not None else None

    async def acquire(
        self, model_id: str, *, max_wait_s: float | None = None, place: QueuePlace | None = None
    ) -> EngineLease:
        self.places.append(place)
        place = place or QueuePlace()
        ticket = self.dispatcher.enter_place(model_id, place)
        try:
            await self.dispatcher.wait_turn(ticket, place)
        except BaseException:
            self.dispatcher.leave(ticket)
            raise
        self.through.append(ticket.request_id)
        self.acquired += 1
        self.leased += 1

        def release() -> None:
            self.leased -= 1
            self.dispatcher.leave(ticket)

        return EngineLease(self.url, release, self.dispatcher.take_slot(ticket, 1))


@attrs.define
class Reply:
    status: int
    headers: dict[str, str]
    parts: list[bytes]

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)

    def json(self) -> Any:
        return msgspec.json.decode(self.body)

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.json()["error"]
        return error


def make_gateway(
    handler: Callable[[UpstreamRequest], Any],
    env: dict[str, str] | None = None,
    *,
    local: FakeLocal | None = None,
    **overrides: Any,
) -> tuple[Gateway, MockTransport, ListSink]:
    transport = MockTransport(handler)
    sink = ListSink()
    settings = load_settings({**ENV, **(env or {})}, **overrides)
    gateway = Gateway(settings, local=local, telemetry=sink, transports=transport.factory)
    gateway.pacing = Pacing(sleep=Waits(), random=lambda: 0.0)
    return gateway, transport, sink


class Waits:
    """The waits between tries, recorded and not waited (the loop turns once)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def waits(gateway: Gateway) -> list[float]:
    """The waits ``gateway`` would have made between tries, in order."""
    sleep = gateway.pacing.sleep
    assert isinstance(sleep, Waits)
    return sleep.delays


def body(**fields: Any) -> bytes:
    return msgspec.json.encode(fields)


async def drive(
    gateway: Gateway,
    payload: bytes,
    *,
    endpoint: str = "chat/completions",
    headers: list[tuple[bytes, bytes]] | None = None,
    leave_after_parts: int | None = None,
    receive: Callable[[], Any] | None = None,
    on_part: Callable[[bytes], None] | None = None,
) -> Reply:
    """POST ``payload`` to ``endpoint``; ``leave_after_parts`` disconnects after that many
    body parts reached the client."""
    gone = asyncio.Event()
    messages = [{"type": "http.request", "body": payload, "more_body": False}]

    async def default_receive() -> Message:
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    reply = Reply(0, {}, [])

    loop = asyncio.get_running_loop()

    async def send(message: Message) -> None:
        # A real server's send is I/O: it completes on a later turn of the loop, where a
        # pending cancellation (the client left) is delivered.
        written = loop.create_future()
        loop.call_soon(written.set_result, None)
        await written
        if message["type"] == "http.response.start":
            reply.status = message["status"]
            reply.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            reply.parts.append(message["body"])
            if on_part is not None:
                on_part(message["body"])
            if leave_after_parts is not None and len(reply.parts) >= leave_after_parts:
                gone.set()

    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/v1/{endpoint}",
        "headers": [(b"content-type", b"application/json"), *(headers or [])],
        "client": ("127.0.0.1", 40000),
    }
    await proxy_endpoint(gateway, endpoint, scope, receive or default_receive, send)
    return reply


def sse(*chunks: dict[str, Any], done: bool = True) -> list[bytes]:
    events = [b"data: " + msgspec.json.encode(c) + b"\n\n" for c in chunks]
    return [*events, b"data: [DONE]\n\n"] if done else events


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-upstream",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def completion(text: str = "hi") -> MockResponse:
    return MockResponse.json(
        {
            "id": "x",
            "object": "chat.completion",
            "model": "gpt-4o-2024",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    )
