"""The proxied endpoints (chat/completions, completions, embeddings) at the raw ASGI level.

Why raw ASGI: the hot path must add well under a millisecond, and streams must go
out event by event with headers sent at once; Litestar's request/response layers
add cost and nothing we need here. The flow for one request, whatever the provider:

    admit (key, client slot) -> read body -> parse -> route -> adapter.open()
    -> relay the stream / the whole body -> one telemetry record, whatever happened

A watcher listens for ``http.disconnect`` and cancels the request at once, which
closes the upstream connection (and frees a llama.cpp slot). The first byte sent to
the client is the commit point: before it, a failure gets its own status and an
error body; after it, an error event ends the stream. Either way it is rendered from
one :class:`~wlm.errors.Failure`, redacted once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import attrs
import msgspec

from wlm.api.exchange import Exchange
from wlm.api.recording import record_exchange
from wlm.auth import presented_key
from wlm.dialects import AS_SENT, Dialect, Passage, Translation
from wlm.errors import (
    AuthenticationFailed,
    Failure,
    GatewayError,
    UpstreamBroken,
)
from wlm.limits import ClientBusy
from wlm.providers.accounting import ResponseAccount
from wlm.providers.base import FORWARDED_HEADERS, Adapter, Call, StreamRelay
from wlm.routing.resolve import Route
from wlm.sse import encode_comment
from wlm.transport import UpstreamResponse

if TYPE_CHECKING:
    from wlm.gateway import Gateway

__all__ = ["Receive", "Scope", "Send", "proxy_endpoint"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("wlm.proxy")

_DISCARD_TIMEOUT_S = 5.0
# How long a request runs before wlm listens for its client leaving: listening costs a
# future in the server per request, most answers take less, and a stream or a slow answer
# that outlives it is still cancelled within this much of the client's leaving.
_WATCH_AFTER_S = 0.05
_JSON_HEADERS = [(b"content-type", b"application/json")]
_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientGone(Exception):
    """The client disconnected; the request was cancelled."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        f"Request body is larger than the limit of {limit} bytes (WLM_MAX_BODY_BYTES).",
        status=413,
        type="invalid_request_error",
        code="request_too_large",
    )


def _declared_too_large(scope: Scope, limit: int) -> bool:
    declared = _header(scope, b"content-length")
    return declared is not None and declared.isdigit() and int(declared) > limit


async def _read_body(receive: Receive, limit: int, idle_timeout_s: float) -> bytes:
    """The whole body; 413 past ``limit``, 408 when no part of it comes for ``idle_timeout_s``."""
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    try:
        # One timer for the whole body, pushed back as each part arrives (Granian hands
        # over even a small body as a part and an empty last one).
        async with asyncio.timeout(idle_timeout_s) as idle:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
                idle.reschedule(loop.time() + idle_timeout_s)
    except TimeoutError:
        raise GatewayError(
            f"The request body stopped arriving (nothing for {idle_timeout_s:g} s).",
            status=408,
            type="invalid_request_error",
            code="request_timeout",
        ) from None


async def _discard_body(receive: Receive, limit: int) -> None:
    """Read and drop a body we answer without using (a rejected key, a full client slot).

    Granian closes a keep-alive connection whose request body is still unread when the
    response ends, so the client's next request on it would fail with "server disconnected".
    Reading is bounded by the body limit and a few seconds; past either, the connection
    closes, which is the honest outcome for a client still pushing data at a rejection.
    """
    size = 0
    try:
        async with asyncio.timeout(_DISCARD_TIMEOUT_S):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                size += len(message.get("body", b""))
                if size > limit or not message.get("more_body", False):
                    return
    except TimeoutError:
        return


class _Reply:
    """The response to the client: headers once, then body parts; also the adapter's
    :class:`~wlm.providers.base.Progress` (loading comments, attempt count)."""

    __slots__ = ("dialect", "exchange", "extra_headers", "headers_sent", "send")

    def __init__(self, send: Send, exchange: Exchange, dialect: Dialect) -> None:
        self.send = send
        self.exchange = exchange
        self.dialect = dialect
        self.headers_sent = False
        self.extra_headers: list[tuple[bytes, bytes]] = []  # e.g. a key's x-ratelimit-*

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        request_id = self.exchange.request_id.encode()
        headers = [*headers, (b"x-request-id", request_id), *self.extra_headers]
        if self.dialect.name == "messages":
            headers.append((b"request-id", request_id))  # what Anthropic's clients read
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        self.headers_sent = True
        self.exchange.http_status = status

    async def body(self, data: bytes, more: bool) -> None:
        self.exchange.bytes_out += len(data)
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def fail(self, failure: Failure) -> None:
        """Report a failure in the client's protocol, before or after the first byte."""
        self.exchange.failed(failure)
        if not self.headers_sent:
            status, body = self.dialect.error_body(failure)
            extra = [(k.encode(), v.encode()) for k, v in failure.headers]
            await self.start(status, _JSON_HEADERS + extra)
            await self.body(body, False)
        else:
            await self.body(self.dialect.error_event(failure), False)

    # -- Progress ----------------------------------------------------------------------

    async def loading(self, model_id: str) -> None:
        """A stream learns the engine is loading through SSE comments (keep-alives)."""
        if not self.exchange.stream:
            return
        if not self.headers_sent:
            await self.start(200, _STREAM_HEADERS)
        await self.body(encode_comment(f"loading {model_id} ..."), True)

    def attempt(self, number: int) -> None:
        self.exchange.attempts = number


class _DisconnectWatch:
    """Cancels the request's task when the client disconnects.

    ``receive()`` is awaited through a done-callback rather than a task per request:
    Granian returns a future-like object, and a task (plus its cancellation) measured
    about 0.1 ms of CPU per request (docs/performance.md). Listening starts only once the
    request has run for :data:`_WATCH_AFTER_S`: most answers are done before that, and a
    client that left earlier is seen as soon as listening starts.
    """

    __slots__ = ("_pending", "_receive", "_task", "_timer", "gone")

    def __init__(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        self._receive = receive
        self._task = task
        self.gone = False
        self._pending: Any = None
        self._timer: asyncio.TimerHandle | None = task.get_loop().call_later(
            _WATCH_AFTER_S, self._start
        )

    def _start(self) -> None:
        self._timer = None
        self._listen()

    def _listen(self) -> None:
        pending: Any = self._receive()
        if not hasattr(pending, "add_done_callback"):  # another ASGI server: a coroutine
            pending = asyncio.ensure_future(pending)
        self._pending = pending
        pending.add_done_callback(self._received)

    def _received(self, pending: Any) -> None:
        if pending.cancelled() or pending is not self._pending:
            return
        if pending.exception() is not None:
            return
        if pending.result().get("type") == "http.disconnect":
            self.gone = True
            self._task.cancel()
        else:
            self._listen()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()


async def proxy_endpoint(
    gateway: Gateway, endpoint: str, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve one POST to a proxied endpoint, whatever happens."""
    settings = gateway.settings
    client_request_id = _header(scope, b"x-request-id")
    record_id = gateway.new_request_id()
    exchange = Exchange(
        endpoint,
        client_request_id or record_id,
        record_id,
        ResponseAccount(settings.log_content),
    )
    reply = _Reply(send, exchange, gateway.dialects[endpoint])
    task = asyncio.current_task()
    assert task is not None
    watch: _DisconnectWatch | None = None
    body_pending = True
    gateway.metrics.in_flight += 1
    try:
        if _declared_too_large(scope, settings.max_body_bytes):
            body_pending = False  # not worth reading: the connection closes after the 413
            raise _too_large(settings.max_body_bytes)
        _identify(gateway, exchange, scope)
        if gateway.key_limits.enabled:
            admitted = gateway.key_limits.admit(exchange.client)  # or a 429 that says why
            reply.extra_headers = [(k.encode(), v.encode()) for k, v in admitted]
        with gateway.client_slots.hold(exchange.client or _address(scope)):
            body_pending = False
            raw = await _read_body(receive, settings.max_body_bytes, settings.body_timeout_s)
            exchange.bytes_in = len(raw)
            watch = _DisconnectWatch(receive, task)
            await _serve(gateway, exchange, reply, raw, scope)
    except ClientGone:
        exchange.cancelled()
    except asyncio.CancelledError:
        if watch is None or not watch.gone:
            raise
        task.uncancel()
        exchange.cancelled()
    except GatewayError as error:
        if isinstance(error, ClientBusy):
            gateway.metrics.rejected["concurrency"] += 1
        if body_pending:
            await _discard_body(receive, settings.max_body_bytes)
        await _fail_quietly(reply, Failure.of(error, exchange.redactor(gateway.redactor).text))
    except Exception as exc:  # never a traceback to the client
        log.error("unexpected error serving %s: %s", endpoint, gateway.redactor.text(repr(exc)))
        log.debug("traceback", exc_info=True)
        internal = UpstreamBroken("The gateway failed to handle this request.")
        await _fail_quietly(reply, Failure.of(internal, str))
    finally:
        if watch is not None:
            watch.stop()
        gateway.metrics.in_flight -= 1
        counts = record_exchange(
            exchange,
            metrics=gateway.metrics,
            telemetry=gateway.telemetry,
            redactor=gateway.redactor,
            log_content=settings.log_content,
            prices=gateway.prices,
        )
        if gateway.key_limits.enabled and counts is not None:
            gateway.key_limits.finished(
                exchange.client, tokens=counts["total_tokens"], cost_usd=counts["cost_usd"]
            )


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def _identify(gateway: Gateway, exchange: Exchange, scope: Scope) -> None:
    """Name the client by its key; a 401 when keys are on and it has none that fits."""
    if not gateway.client_keys:
        return
    key = presented_key(scope["headers"])
    client = gateway.client_keys.identify(key)
    if client is None and gateway.admin_keys.identify(key) is not None:
        client = "admin"
    if client is None:
        gateway.metrics.rejected["auth"] += 1
        raise AuthenticationFailed(
            "Missing or invalid API key: send 'Authorization: Bearer <key>' "
            "with a key from WLM_API_KEYS."
        )
    exchange.client = client
    # A key configured as a sha256: hash is unknown to the redactor until a client
    # presents it; this request's records leave it out too.
    exchange.client_key = key


async def _fail_quietly(reply: _Reply, failure: Failure) -> None:
    try:
        await reply.fail(failure)
    except Exception:  # the client may be gone already
        reply.exchange.cancelled()


async def _serve(
    gateway: Gateway, exchange: Exchange, reply: _Reply, raw: bytes, scope: Scope
) -> None:
    dialect = reply.dialect
    request = dialect.parse(raw, exchange.endpoint)
    exchange.request = request
    route = gateway.router.resolve(request.model)
    exchange.route = route
    adapter = gateway.adapters[route.provider]
    forwarded = tuple(
        (name.decode(), value.decode("latin-1"))
        for name, value in scope["headers"]
        if name in FORWARDED_HEADERS
    )
    translation = None
    # The backend speaks the client's dialect: the request goes as it came (or as the
    # dialect fitted it), else it is translated.
    passage = AS_SENT if dialect.name == "chat" else dialect.pass_through(request, adapter.config)
    if passage is not None:
        sent = passage.body
        call = Call(
            endpoint=exchange.endpoint,
            body=request.body if sent is None else sent,
            raw=raw if sent is None else msgspec.json.encode(sent),
            model=request.model,
            upstream_model=route.upstream_model,
            stream=request.stream,
            client_wants_usage=request.wants_usage,
            forwarded_headers=forwarded,
            request_id=exchange.request_id,
        )
    else:
        # The backend does not speak the client's dialect: Chat Completions, the hub
        # every adapter speaks, carries it there and back.
        translation = dialect.translate(request)
        for note in translation.notes:
            log.info("%s via chat to %s: %s", exchange.endpoint, route.provider, note)
        if translation.local_answer is not None:
            await _answer_locally(gateway, reply, adapter, route, translation)
            return
        chat_body = {**translation.chat_body, "model": route.upstream_model}
        call = Call(
            endpoint="chat/completions",
            body=chat_body,
            raw=msgspec.json.encode(chat_body),
            # The chat answer is only read by the translation, which names the client's
            # model itself: nothing to rewrite on the way.
            model=route.upstream_model,
            upstream_model=route.upstream_model,
            stream=request.stream,
            client_wants_usage=True,  # the translation needs the usage chunk
            forwarded_headers=forwarded,
            request_id=exchange.request_id,
        )
    exchange.upstream_endpoint = call.endpoint
    response = await adapter.open(call, reply)
    if translation is not None and response.status == 400 and _OPTIONAL in call.body:
        response, call = await _without_optional(adapter, call, reply, response)
    await _answer(gateway, reply, adapter, call, response, translation or passage)


async def _answer_locally(
    gateway: Gateway, reply: _Reply, adapter: Adapter, route: Route, translation: Translation
) -> None:
    """count_tokens where the backend has no such endpoint: its exact count when it can
    give one (a local engine), else wlm's estimate, marked as such."""
    counted = None
    if translation.counts_tokens:
        chat = {**translation.chat_body, "model": route.upstream_model}
        call = Call(
            "chat/completions", chat, b"", route.upstream_model, route.upstream_model, False, False
        )
        counted = await adapter.count_tokens(call, reply)
        reply.exchange.upstream_endpoint = "tokenize" if counted is not None else None
    if counted is not None:
        await reply.start(200, _JSON_HEADERS)
        await reply.body(msgspec.json.encode({"input_tokens": counted}), False)
        return
    assert translation.local_answer is not None
    await reply.start(200, [*_JSON_HEADERS, (b"x-wlm-estimate", b"true")])
    await reply.body(translation.local_answer, False)


# What a translation adds that some chat models refuse: Claude Code and Codex always ask
# for reasoning, which OpenAI's non-reasoning models answer with a 400.
_OPTIONAL = "reasoning_effort"


async def _without_optional(
    adapter: Adapter, call: Call, reply: _Reply, response: UpstreamResponse
) -> tuple[UpstreamResponse, Call]:
    """A 400 that names the optional field: ask once more without it (nothing was sent
    to the client yet). Any other 400 stands, read back into a fresh response."""
    body = await response.read()
    response.release()
    if _OPTIONAL.encode() not in body:
        return _Replayed(400, body, response), call
    payload = {k: v for k, v in call.body.items() if k != _OPTIONAL}
    call = attrs.evolve(call, body=payload, raw=msgspec.json.encode(payload))
    reply.attempt(reply.exchange.attempts + 1)
    return await adapter.open(call, reply), call


class _Replayed:
    """An upstream response already read, answering again from memory."""

    __slots__ = ("_body", "_original", "status")

    def __init__(self, status: int, body: bytes, original: UpstreamResponse) -> None:
        self.status = status
        self._body = body
        self._original = original

    def header(self, name: str) -> str | None:
        return self._original.header(name)

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._body

    def close(self) -> None:
        pass

    def release(self) -> None:
        pass


async def _answer(
    gateway: Gateway,
    reply: _Reply,
    adapter: Adapter,
    call: Call,
    response: UpstreamResponse,
    wrap: Translation | Passage | None,
) -> None:
    """Relay the upstream's answer (error status, stream or whole body) to the client,
    through the translation or the watchers of a passage (``wrap``)."""
    completed = False
    try:
        if response.status >= 400:
            payload = await response.read()
            completed = True
            raise adapter.upstream_error(response.status, payload, response.header("retry-after"))
        if response.status >= 300 or response.status < 200:
            # Redirects are not followed (the key would go with them); a redirect almost
            # always means a wrong base URL, e.g. http:// for an https:// server.
            location = gateway.redactor.text(response.header("location") or "nowhere")
            raise UpstreamBroken(
                f"Provider '{adapter.config.name}' answered {response.status} "
                f"(redirecting to {location}); check {adapter.config.base_url_variable}."
            )
        if call.stream:
            # A stream that broke off leaves its connection unusable: drop it, never pool it.
            relay = adapter.relay(call, reply.exchange.account)
            if wrap is not None and wrap.relay is not None:
                relay = wrap.relay(relay)
            completed = await _relay_stream(gateway, reply, relay, response)
            return
        payload = await response.read()
        completed = True
        exchange = reply.exchange
        redact = exchange.redactor(gateway.redactor).bytes
        out = adapter.finish_response(call, payload, exchange.account)
        if wrap is not None and wrap.response is not None:
            out = wrap.response(out)
        out = redact(out)
        await reply.start(response.status, _JSON_HEADERS)
        exchange.ttft = time.perf_counter() - exchange.started
        await reply.body(out, False)
    finally:
        if completed:
            response.release()
        else:
            response.close()


async def _relay_stream(
    gateway: Gateway, reply: _Reply, relay: StreamRelay, response: UpstreamResponse
) -> bool:
    """Relay the stream as it arrives; True when it ended cleanly upstream."""
    exchange = reply.exchange
    # The one redaction point for a stream: each send, not each event (an upstream may
    # echo a key anywhere; the client's own key, maybe known only as a hash, counts too).
    redact = exchange.redactor(gateway.redactor).bytes
    if not reply.headers_sent:
        await reply.start(200, _STREAM_HEADERS)
    send_body = reply.body
    try:
        async for chunk in response.chunks():
            # What arrived in one read leaves in one send: nothing waits for anything
            # (it was all here), and a send per event costs more than the event's own
            # work (docs/performance.md).
            outs = relay.feed(chunk)
            if exchange.ttft is None and relay.token_seen:
                exchange.ttft = time.perf_counter() - exchange.started
            # The last event is handed over: a client that hangs up as soon as it has it
            # (Codex, after response.completed) has had its whole answer.
            exchange.answered = relay.done
            if outs:
                await send_body(redact(outs[0] if len(outs) == 1 else b"".join(outs)), True)
            if relay.done:
                break
        clean = relay.done
        tail = relay.end()
    except GatewayError as error:
        clean = False
        failure = Failure.of(error, gateway.redactor.text)
        exchange.account.error = failure
        tail = relay.fail(failure)
    await send_body(redact(b"".join(tail)), False)  # the end of the body, with what remains
    exchange.settle_stream()
    return clean
