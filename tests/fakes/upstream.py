"""Fake cloud providers: real HTTP servers on 127.0.0.1 that speak the vendors' wire formats.

`FakeUpstream("openai" | "openrouter" | "anthropic")` runs an aiohttp server in its own
thread and event loop, so it serves sync SDK clients, async tests and subprocesses alike.
It records every request, checks credentials the vendor's way, and picks its behaviour
from the request's `model` field (see `tests.fakes.scenarios`). It also notes when a
client goes away before the answer is complete, so a test can assert that a proxy closes
its upstream connection after its own client disconnects.

    with FakeUpstream("openai") as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key)
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert fake.last_request.json["model"] == "gpt-4o-mini"
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from attrs import define, frozen
from multidict import CIMultiDict

from tests.fakes.anthropic_dialect import AnthropicDialect, presented_key
from tests.fakes.dialect import Dialect, StreamPlan, model_of, truncate_event
from tests.fakes.openai_dialect import OpenAIDialect, bearer_key
from tests.fakes.openrouter_dialect import OpenRouterDialect
from tests.fakes.scenarios import (
    STREAM_ONLY,
    WIRE_DIR,
    Kind,
    Reply,
    Scenario,
    ScenarioError,
    load_replay,
    parse_scenario,
    split_sse_events,
)

FLAVORS = ("openai", "openrouter", "anthropic")
DEFAULT_KEYS = {
    "openai": "sk-fake-openai-0123456789abcdef",
    "openrouter": "sk-or-v1-fake-openrouter-0123456789abcdef",
    "anthropic": "sk-ant-api03-fake-anthropic-0123456789abcdef",
}
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small"),
    "openrouter": (
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet-4.5",
        "meta-llama/llama-3.3-70b-instruct:free",
    ),
    "anthropic": (
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5-20251001",
        "claude-opus-4-1-20250805",
    ),
}


@frozen
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lowercased
    body: bytes
    json: Any  # the parsed body, or None when it is not JSON
    received_at: float  # time.monotonic() when the request line and headers arrived


# ---- what a response does, step by step ----------------------------------------------
@frozen
class _Comment:
    data: bytes


@frozen
class _Event:
    data: bytes


@frozen
class _Pause:
    seconds: float


@frozen
class _Abort:
    pass


@frozen
class _Hold:
    pass


_Step = _Comment | _Event | _Pause | _Abort | _Hold

# Streamed scenarios that never reach their stream's final event.
_CUT_SHORT = frozenset({Kind.HANG_BODY, Kind.RESET, Kind.MIDSTREAM_ERROR, Kind.MALFORMED})


@define
class _Observation:
    """Per-request progress, written by the server thread under the fake's lock."""

    received_at: float
    finished: bool = False
    closed_at: float | None = None


def _dialect_for(flavor: str) -> Dialect:
    if flavor == "openai":
        return OpenAIDialect()
    if flavor == "openrouter":
        return OpenRouterDialect()
    if flavor == "anthropic":
        return AnthropicDialect()
    raise ValueError(f"unknown fake flavor {flavor!r}; expected one of {FLAVORS}")


def _response(reply: Reply) -> web.Response:
    return web.Response(status=reply.status, headers=CIMultiDict(reply.headers), body=reply.body)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _plan_steps(plan: StreamPlan, scenario: Scenario) -> list[_Step]:
    """The writes (and pauses) a streamed scenario makes from the dialect's event plan."""
    steps: list[_Step] = [_Comment(c) for c in plan.preamble]
    if scenario.kind is Kind.HANG_BODY:
        return [_Hold()]
    if scenario.kind is Kind.RESET:
        return [*steps, *(_Event(e) for e in plan.events[: scenario.chunks]), _Abort()]
    steps += [_Event(e) for e in plan.head]
    if scenario.kind is Kind.MIDSTREAM_ERROR:
        events = (*plan.content[:2], *plan.midstream_error)
    elif scenario.kind is Kind.MALFORMED:
        events = (truncate_event(plan.content[0]), *plan.terminator)
    elif scenario.kind is Kind.PACED:
        pause = _Pause(scenario.interval_ms / 1000)
        for event in plan.content:
            steps += [pause, _Event(event)]
        events = plan.tail
    else:
        events = (*plan.content, *plan.tail)
    return [*steps, *(_Event(e) for e in events)]


def _replay_steps(reply: Reply) -> list[_Step]:
    return [_Comment(p) if p.startswith(b":") else _Event(p) for p in split_sse_events(reply.body)]


class FakeUpstream:
    """A fake OpenAI, OpenRouter or Anthropic API on 127.0.0.1 (see the module docstring).

    Attributes a test may read or set: `api_key`, `models` (ids or raw entries served by
    `GET .../models`), `retry_after` (header value on 429/503/529), `requests`
    (every `RecordedRequest`, in arrival order) and `sent_at` (request index -> monotonic
    time of each SSE event written, comments excluded).

    The openai flavor also speaks OpenAI Responses (`POST /v1/responses`, `GET
    /v1/responses/{id}`) unless `serves_responses` is set to False (then those routes are
    404s, as on a chat-only OpenAI-compatible server). It keeps every response it
    finished that was not sent with `store: false` in `stored_responses` (id -> response
    object): those answer GET and may be named as `previous_response_id`; any other
    `previous_response_id` is OpenAI's 400 `previous_response_not_found`.
    """

    def __init__(self, flavor: str, api_key: str | None = None, *, wire_dir: Path = WIRE_DIR):
        self.flavor = flavor
        self._dialect = _dialect_for(flavor)
        self.api_key: str | None = api_key or DEFAULT_KEYS[flavor]
        self.models: list[str | Mapping[str, Any]] = list(DEFAULT_MODELS[flavor])
        self.requests: list[RecordedRequest] = []
        self.sent_at: dict[int, list[float]] = {}
        self.serves_responses = flavor == "openai"
        self.stored_responses: dict[str, dict[str, Any]] = {}
        self._wire_dir = wire_dir
        self._lock = threading.Condition()
        self._observations: list[_Observation] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self._port = 0

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeUpstream:
        """Start serving on 127.0.0.1 on a free port; returns self once it accepts."""
        if self._thread is not None:
            raise RuntimeError("fake upstream already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"fake-{self.flavor}", daemon=True
        )
        self._thread.start()
        try:
            self._port = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Release hanging requests, close the server and its thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client disconnect cancels the handler at once, which is
        # how a hanging or pacing handler learns that the client went away.
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._release = asyncio.Event()
        return int(runner.addresses[0][1])

    async def _shutdown(self) -> None:
        with self._lock:
            for observation in self._observations:
                observation.finished = True  # closes from here on are ours, not the client's
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- addresses -------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (0 before start)."""
        return self._port

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT` with no path."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """What a user would set as OPENAI_/OPENROUTER_/ANTHROPIC_BASE_URL."""
        return self.origin + ("" if self.flavor == "anthropic" else self._dialect.prefix)

    @property
    def retry_after(self) -> str:
        """The `retry-after` value sent with 429, 503 and 529 errors (default "1")."""
        return self._dialect.retry_after

    @retry_after.setter
    def retry_after(self, value: str) -> None:
        self._dialect.retry_after = value

    # ---- observations ----------------------------------------------------------------
    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request; LookupError when none arrived yet."""
        with self._lock:
            if not self.requests:
                raise LookupError("the fake upstream has received no request")
            return self.requests[-1]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `n` requests arrived; TimeoutError otherwise."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"fake {self.flavor} got {len(self.requests)} of {n} requests")
            return list(self.requests)

    def wait_closed(self, request_index: int, timeout: float = 5.0) -> float | None:
        """Seconds from the request's arrival until the client closed the connection.

        Only a close seen before the fake finished answering counts (a client giving up on
        a hanging, pacing or streaming answer). None when the answer completed normally or
        no close was seen within `timeout`.
        """

        def settled() -> bool:
            if request_index >= len(self._observations):
                return False
            observation = self._observations[request_index]
            return observation.closed_at is not None or observation.finished

        with self._lock:
            if not self._lock.wait_for(settled, timeout):
                return None
            observation = self._observations[request_index]
            if observation.closed_at is None:
                return None
            return observation.closed_at - observation.received_at

    async def wait_for_requests_async(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """`wait_for_requests` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_for_requests, n, timeout)

    async def wait_closed_async(self, request_index: int, timeout: float = 5.0) -> float | None:
        """`wait_closed` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_closed, request_index, timeout)

    def clear(self) -> None:
        """Forget recorded requests and kept responses (only while none is in flight)."""
        with self._lock:
            self.stored_responses.clear()
            self.requests.clear()
            self._observations.clear()
            self.sent_at.clear()

    def _record(self, request: web.Request, body: bytes, received_at: float) -> int:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=_parse_json(body),
            received_at=received_at,
        )
        with self._lock:
            self.requests.append(recorded)
            self._observations.append(_Observation(received_at))
            self._lock.notify_all()
            return len(self.requests) - 1

    def _settle(self, index: int, *, closed: bool) -> None:
        with self._lock:
            observation = self._observations[index]
            if closed and not observation.finished:
                observation.closed_at = time.monotonic()
            observation.finished = True
            self._lock.notify_all()

    # ---- request handling ------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received_at = time.monotonic()
        body = await request.read()
        index = self._record(request, body, received_at)
        try:
            response = await self._dispatch(request, index)
        except asyncio.CancelledError:
            self._settle(index, closed=True)
            raise
        self._settle(index, closed=False)
        return response

    async def _dispatch(self, request: web.Request, index: int) -> web.StreamResponse:
        dialect = self._dialect
        recorded = self.requests[index]
        denied = dialect.auth_error(recorded.headers, self.api_key) if self.api_key else None
        if denied is not None:
            return _response(denied)
        path = request.path
        if not path.startswith(dialect.prefix + "/"):
            return _response(dialect.not_found(request.method, path))
        route = path[len(dialect.prefix) :]
        if request.method == "GET" and route == "/models":
            return _response(dialect.models(self.models))
        if request.method == "GET" and route.startswith("/models/"):
            return _response(dialect.model(route[len("/models/") :], self.models))
        responses = self._responses_dialect()
        if responses is not None and request.method == "GET" and route.startswith("/responses/"):
            return _response(self._stored(responses, route[len("/responses/") :]))
        known = route == dialect.chat_route or route in dialect.other_routes
        known = known or (responses is not None and route == responses.responses_route)
        if request.method != "POST" or not known:
            return _response(dialect.not_found(request.method, path))
        data = recorded.json
        if not isinstance(data, dict):
            return _response(dialect.error(400, message="the request body is not a JSON object"))
        try:
            scenario = parse_scenario(model_of(data))
            return await self._answer(request, index, route, data, scenario)
        except ScenarioError as exc:
            return _response(dialect.error(400, message=f"fake upstream: {exc}"))

    async def _answer(
        self,
        request: web.Request,
        index: int,
        route: str,
        data: dict[str, Any],
        scenario: Scenario,
    ) -> web.StreamResponse:
        dialect = self._dialect
        if scenario.kind is Kind.ERROR:
            key = self._presented_key(self.requests[index].headers)
            # The scenario name is not a model name: messages use the dialect's default.
            reply = dialect.error(scenario.status, variant=scenario.variant, key=key)
            return _response(reply)
        if scenario.kind is Kind.FLAKY:
            model = model_of(data)
            with self._lock:
                before = sum(
                    isinstance(r.json, dict) and model_of(r.json) == model
                    for r in self.requests[:index]
                )
            if before < scenario.failures:
                key = self._presented_key(self.requests[index].headers)
                return _response(dialect.error(scenario.status, key=key))
            scenario = Scenario(Kind.ORDINARY)
        if scenario.kind is Kind.HANG:
            await self._hold()
            return _response(dialect.error(503, message="fake upstream stopped"))
        if scenario.kind is Kind.SLOW_FIRST:
            await asyncio.sleep(scenario.delay_ms / 1000)
        if scenario.kind is Kind.REPLAY:
            reply = load_replay(scenario.fixture, self._wire_dir)
            if not reply.is_event_stream:
                return _response(reply)
            return await self._play(
                request, index, reply.status, reply.headers, _replay_steps(reply)
            )
        responses = self._responses_dialect()
        if responses is not None and route == responses.responses_route:
            return await self._respond(request, index, responses, data, scenario)
        if scenario.kind is Kind.THINKING and route == dialect.chat_route:
            return await self._thinking(request, index, data)
        if route != dialect.chat_route:
            answer = dialect.other(route, data)
            if isinstance(answer, StreamPlan):
                steps = _plan_steps(answer, Scenario(Kind.ORDINARY))
                return await self._play(request, index, 200, answer.headers, steps)
            assert answer is not None  # `known` routes always have an answer
            return _response(answer)
        tools = scenario.kind is Kind.TOOLS
        stop = scenario.stop_reason
        if data.get("stream") is not True and scenario.kind not in STREAM_ONLY:
            return _response(dialect.chat(data, tools=tools, stop_reason=stop))
        plan = dialect.chat_stream(data, self._pieces(scenario), tools=tools, stop_reason=stop)
        return await self._play(request, index, 200, plan.headers, _plan_steps(plan, scenario))

    def _responses_dialect(self) -> OpenAIDialect | None:
        """The dialect when this fake speaks OpenAI Responses, else None."""
        dialect = self._dialect
        if self.serves_responses and type(dialect) is OpenAIDialect:
            return dialect
        return None

    def _stored(self, dialect: OpenAIDialect, response_id: str) -> Reply:
        with self._lock:
            stored = self.stored_responses.get(response_id)
        if stored is None:
            return dialect.response_not_found(response_id)
        return dialect.stored_response(stored)

    def _keep(self, data: Mapping[str, Any], response: dict[str, Any]) -> None:
        if data.get("store") is not False:
            with self._lock:
                self.stored_responses[response["id"]] = response

    async def _respond(
        self,
        request: web.Request,
        index: int,
        dialect: OpenAIDialect,
        data: dict[str, Any],
        scenario: Scenario,
    ) -> web.StreamResponse:
        """`POST /v1/responses`: the same scenarios as chat, in the Responses grammar."""
        previous = data.get("previous_response_id")
        if previous is not None:
            with self._lock:
                known = isinstance(previous, str) and previous in self.stored_responses
            if not known:
                return _response(dialect.previous_response_not_found(str(previous)))
        if scenario.kind is Kind.THINKING:
            message = "fake upstream: the thinking scenario is for the anthropic flavor only"
            return _response(dialect.error(400, message=message))
        tools = scenario.kind is Kind.TOOLS
        stop = scenario.stop_reason
        if data.get("stream") is not True and scenario.kind not in STREAM_ONLY:
            reply, final = dialect.responses(data, tools=tools, stop_reason=stop)
            self._keep(data, final)
            return _response(reply)
        plan, final = dialect.responses_stream(
            data, self._pieces(scenario), tools=tools, stop_reason=stop
        )
        if scenario.kind not in _CUT_SHORT:  # the stream ends in response.completed
            self._keep(data, final)
        return await self._play(request, index, 200, plan.headers, _plan_steps(plan, scenario))

    async def _thinking(
        self, request: web.Request, index: int, data: dict[str, Any]
    ) -> web.StreamResponse:
        """The `thinking` scenario: an Anthropic answer with a signed thinking block."""
        dialect = self._dialect
        if not isinstance(dialect, AnthropicDialect):
            message = "fake upstream: the thinking scenario is for the anthropic flavor only"
            return _response(dialect.error(400, message=message))
        if data.get("stream") is not True:
            return _response(dialect.thinking_chat(data))
        plan = dialect.thinking_stream(data)
        steps = _plan_steps(plan, Scenario(Kind.ORDINARY))
        return await self._play(request, index, 200, plan.headers, steps)

    def _pieces(self, scenario: Scenario) -> Sequence[str]:
        if scenario.kind is Kind.PACED:
            return tuple(f"chunk{i} " for i in range(scenario.chunks))
        return ("Hello", " from", " fake", "-", self.flavor)

    def _presented_key(self, headers: Mapping[str, str]) -> str:
        if self.flavor == "anthropic":
            return presented_key(headers)
        return bearer_key(headers) or ""

    async def _hold(self) -> None:
        assert self._release is not None
        await self._release.wait()

    async def _play(
        self,
        request: web.Request,
        index: int,
        status: int,
        headers: Sequence[tuple[str, str]],
        steps: Sequence[_Step],
    ) -> web.StreamResponse:
        """Send the headers, then each step; event write times go to `sent_at[index]`."""
        response = web.StreamResponse(status=status, headers=CIMultiDict(headers))
        sent = self.sent_at.setdefault(index, [])
        try:
            await response.prepare(request)
            for step in steps:
                if isinstance(step, _Pause):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, _Hold):
                    await self._hold()
                elif isinstance(step, _Abort):
                    self._settle(index, closed=False)  # the fake cut it, not the client
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                else:
                    await response.write(step.data)
                    if isinstance(step, _Event):
                        sent.append(time.monotonic())
            await response.write_eof()
        except ConnectionResetError:
            # A write failed because the client is gone; aiohttp tolerates the dead response.
            self._settle(index, closed=True)
        return response


def serve_fake(flavor: str, api_key: str | None = None) -> Iterator[FakeUpstream]:
    """Generator for pytest fixtures: `yield from serve_fake("openai")` starts and stops one."""
    fake = FakeUpstream(flavor, api_key).start()
    try:
        yield fake
    finally:
        fake.stop()
