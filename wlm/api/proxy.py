"""The proxied endpoints (chat/completions, completions, embeddings) at the raw ASGI level.

Why raw ASGI: the hot path must add well under a millisecond, and streams must go
out event by event with headers sent at once; Litestar's request/response layers
add cost and nothing we need here. The flow for one request, whatever the provider:

    admit (key, client slot) -> read body -> parse -> wlm/api/attempts.py (route,
    adapter.open(), retries and fallbacks before the first byte, relay the stream or
    the whole body) -> one telemetry record, whatever happened

A watcher listens for ``http.disconnect`` and cancels the request at once, which
closes the upstream connection (and frees a llama.cpp slot). The first byte sent to
the client is the commit point: before it, a failure gets its own status and an
error body; after it, an error event ends the stream. Either way it is rendered from
one :class:`~wlm.errors.Failure`, redacted once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from wlm.api.attempts import JSON_HEADERS, STREAM_HEADERS, serve
from wlm.api.exchange import Exchange
from wlm.api.recording import record_exchange
from wlm.auth import presented_key
from wlm.config import ADMIN_CLIENT, PLAYGROUND_CLIENT
from wlm.deadlines import Deadline, Watchdog
from wlm.dialects import Dialect
from wlm.errors import (
    AuthenticationFailed,
    Failure,
    GatewayError,
    UpstreamBroken,
)
from wlm.limits import ClientBusy
from wlm.providers.accounting import ResponseAccount
from wlm.providers.base import FORWARDED_HEADERS
from wlm.resilience.fallbacks import FALLBACKS_HEADER
from wlm.sessions import playground_refusal
from wlm.sse import encode_comment
from wlm.tracecontext import start_span

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
_FALLBACKS_HEADER = FALLBACKS_HEADER.encode()
# What the playground page (wlm/web/playground.py) sends instead of a key.
_PLAYGROUND_HEADER = b"x-wlm-playground"
_COUNTS = [b"%d" % n for n in range(10)]
_READ_HEADERS = FORWARDED_HEADERS | {
    b"content-length",
    b"authorization",
    b"x-api-key",
    _PLAYGROUND_HEADER,
    _FALLBACKS_HEADER,
}


class ClientGone(Exception):
    """The client disconnected; the request was cancelled."""


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        f"Request body is larger than the limit of {limit} bytes (WLM_MAX_BODY_BYTES).",
        status=413,
        type="invalid_request_error",
        code="request_too_large",
    )


class _Headers:
    """What the proxy reads from a request's headers, found in one pass over them."""

    __slots__ = ("chain", "declared_length", "forwarded", "key", "playground", "request_id")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.declared_length: str | None = None  # content-length, as sent
        self.request_id: str | None = None  # the client's x-request-id
        self.key: str | None = None  # as wlm.auth.presented_key reads it
        self.playground = False  # x-wlm-playground: the playground page sent it
        self.chain: str | None = None  # x-wlm-fallbacks
        self.forwarded: list[tuple[str, str]] = []  # FORWARDED_HEADERS, sent upstream
        for name, value in headers:
            if name not in _READ_HEADERS:
                continue
            if name in FORWARDED_HEADERS:
                text = value.decode("latin-1")
                self.forwarded.append((name.decode(), text))
                if name == b"x-request-id" and not self.request_id:
                    self.request_id = text  # the first one that says something
            elif name == b"content-length":
                if self.declared_length is None:
                    self.declared_length = value.decode("latin-1")
            elif name == b"authorization" or name == b"x-api-key":
                if self.key is None:
                    self.key = presented_key(((name, value),))
            elif name == _PLAYGROUND_HEADER:
                self.playground = True
            elif name == _FALLBACKS_HEADER:
                self.chain = value.decode("latin-1")

    def too_large(self, limit: int) -> bool:
        declared = self.declared_length
        # isascii: "²" is a digit to str.isdigit, not to int()
        return (
            declared is not None
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > limit
        )


async def _read_body(
    receive: Receive,
    limit: int,
    idle_timeout_s: float,
    watchdog: Watchdog,
    task: asyncio.Task[Any],
) -> bytes:
    """The whole body; 413 past ``limit``, 408 when no part of it comes for ``idle_timeout_s``
    (``task``, the request's, is cancelled then)."""
    chunks: list[bytes] = []
    size = 0
    cancelling = task.cancelling()
    # One deadline for the whole body, pushed back as each part arrives (Granian hands
    # over even a small body as a part and an empty last one).
    idle = watchdog.start(idle_timeout_s, task.cancel)
    try:
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
            idle.push_back(idle_timeout_s)
    except asyncio.CancelledError:
        # Ours only when the deadline fired and nobody else cancelled the request too.
        if not idle.fired or task.uncancel() > cancelling:
            raise
        raise GatewayError(
            f"The request body stopped arriving (nothing for {idle_timeout_s:g} s).",
            status=408,
            type="invalid_request_error",
            code="request_timeout",
        ) from None
    finally:
        idle.cancel()


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

    __slots__ = (
        "before_end",
        "dialect",
        "exchange",
        "extra_headers",
        "headers_sent",
        "request_headers",
        "send",
    )

    def __init__(
        self, send: Send, exchange: Exchange, dialect: Dialect, request_headers: Any = ()
    ) -> None:
        self.send = send
        self.exchange = exchange
        self.dialect = dialect
        # The client's headers, read again only by a local request (x-wlm-priority).
        self.request_headers: Iterable[tuple[bytes, bytes]] = request_headers
        self.headers_sent = False
        self.extra_headers: list[tuple[bytes, bytes]] = []  # e.g. a key's x-ratelimit-*
        # Called just before the body's last part goes out (see proxy_endpoint).
        self.before_end: Callable[[], None] | None = None

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        exchange = self.exchange
        request_id = exchange.request_id.encode()
        attempts = exchange.attempts
        headers = [
            *headers,
            (b"x-request-id", request_id),
            (b"x-wlm-attempts", _COUNTS[attempts] if attempts < 10 else b"%d" % attempts),
            *self.extra_headers,
        ]
        route = exchange.route
        if route is not None:  # who answered (or failed last)
            headers.append((b"x-wlm-provider", route.provider.encode()))
        if self.dialect.name == "messages":
            headers.append((b"request-id", request_id))  # what Anthropic's clients read
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        self.headers_sent = True
        self.exchange.http_status = status

    async def body(self, data: bytes, more: bool) -> None:
        exchange = self.exchange
        exchange.bytes_out += len(data)
        if not more:
            # The last part is handed over: a client that hangs up as soon as it has it
            # (Codex, after response.completed) has had its whole answer.
            exchange.answered = True
            if self.before_end is not None:
                self.before_end()
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def fail(self, failure: Failure) -> None:
        """Report a failure in the client's protocol, before or after the first byte."""
        self.exchange.failed(failure)
        if not self.headers_sent:
            status, body = self.dialect.error_body(failure)
            extra = [(k.encode(), v.encode()) for k, v in failure.headers]
            await self.start(status, JSON_HEADERS + extra)
            await self.body(body, False)
        else:
            await self.body(self.dialect.error_event(failure), False)

    # -- Progress ----------------------------------------------------------------------

    async def loading(self, model_id: str) -> None:
        """A stream learns the engine is loading through SSE comments (keep-alives)."""
        if not self.exchange.stream:
            return
        if not self.headers_sent:
            await self.start(200, STREAM_HEADERS)
        await self.body(encode_comment(f"loading {model_id} ..."), True)

    async def queued(self, position: int, total: int) -> None:
        """A stream learns its place in the local engines' queue through SSE comments."""
        if not self.exchange.stream:
            return
        if not self.headers_sent:
            await self.start(200, STREAM_HEADERS)
        await self.body(b": queued position=%d of %d\n\n" % (position, total), True)

    def retrying(self, error: GatewayError) -> None:
        exchange = self.exchange
        route = exchange.route
        assert route is not None
        exchange.end_try(route.provider, route.upstream_model, None, error, "retry")
        exchange.begin_try()


class _DisconnectWatch:
    """Cancels the request's task when the client disconnects.

    ``receive()`` is awaited through a done-callback rather than a task per request:
    Granian returns a future-like object, and a task (plus its cancellation) measured
    about 0.1 ms of CPU per request (docs/performance.md). Listening starts only once the
    request has run for :data:`_WATCH_AFTER_S`: most answers are done before that, and a
    client that left earlier is seen as soon as listening starts.
    """

    __slots__ = ("_pending", "_receive", "_task", "_timer", "gone")

    def __init__(self, receive: Receive, task: asyncio.Task[Any], watchdog: Watchdog) -> None:
        self._receive = receive
        self._task = task
        self.gone = False
        self._pending: Any = None
        self._timer: Deadline | None = watchdog.start(_WATCH_AFTER_S, self._start)

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
    headers = _Headers(scope["headers"])
    record_id = gateway.new_request_id()
    exchange = Exchange(
        endpoint,
        headers.request_id or record_id,
        record_id,
        ResponseAccount(settings.log_content),
    )
    reply = _Reply(send, exchange, gateway.dialects[endpoint], scope["headers"])
    telemetry = gateway.telemetry
    if telemetry is not None and telemetry.durable:
        # Its row reaches the journal before the answer's last part goes out, so a crash
        # never loses the row of an answer a client has in full. Without a journal, rows
        # wait in memory either way, and the client does not wait for its row.
        reply.before_end = functools.partial(_settle, gateway, exchange)
    task = asyncio.current_task()
    assert task is not None
    watch: _DisconnectWatch | None = None
    body_pending = True
    slots = gateway.client_slots
    held_by: str | None = None  # the client whose concurrency slot this request holds
    gateway.metrics.in_flight += 1
    try:
        if headers.too_large(settings.max_body_bytes):
            body_pending = False  # not worth reading: the connection closes after the 413
            raise _too_large(settings.max_body_bytes)
        _identify(gateway, exchange, scope, headers)
        if gateway.key_limits.enabled:
            # x-ratelimit-* for the answer, or a 429 that says why
            reply.extra_headers = gateway.key_limits.admit(exchange.client)
        if slots.limited:
            client = exchange.client or _address(scope)
            if slots.take(client):
                held_by = client
        body_pending = False
        raw = await _read_body(
            receive, settings.max_body_bytes, settings.body_timeout_s, gateway.watchdog, task
        )
        exchange.bytes_in = len(raw)
        watch = _DisconnectWatch(receive, task, gateway.watchdog)
        await _serve(gateway, exchange, reply, raw, headers)
    except ClientGone:
        exchange.cancelled()
    except asyncio.CancelledError:
        stopped = exchange.queue.stopped if exchange.queue is not None else None
        if stopped is not None and (watch is None or not watch.gone):
            # An administrator cancelled it (DELETE /api/queue/{id}): the client is told.
            task.uncancel()
            exchange.stopped_by_admin()  # first: the error's last part may record it
            await _fail_quietly(reply, Failure.of(stopped, str))
        elif watch is None or not watch.gone:
            raise
        else:
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
        if held_by is not None:
            slots.release(held_by)
        gateway.metrics.in_flight -= 1
        _settle(gateway, exchange)


def _settle(gateway: Gateway, exchange: Exchange) -> None:
    """Count the exchange, submit its telemetry and charge its key: the first call of a
    request does it, later ones do nothing."""
    if exchange.recorded:
        return
    exchange.recorded = True
    counts = record_exchange(
        exchange,
        metrics=gateway.metrics,
        telemetry=gateway.telemetry,
        redactor=gateway.redactor,
        log_content=gateway.settings.log_content,
        prices=gateway.prices,
    )
    if gateway.key_limits.enabled and counts is not None:
        try:
            gateway.key_limits.finished(
                exchange.client, tokens=counts["total_tokens"], cost_usd=counts["cost_usd"]
            )
        except Exception:  # it may run before the answer's last part: never in its way
            log.exception("could not count request %s against its key", exchange.request_id)


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def _identify(gateway: Gateway, exchange: Exchange, scope: Scope, headers: _Headers) -> None:
    """Name the client by its key; a 401 when keys are on and it has none that fits.

    A request from the playground page (``x-wlm-playground`` and no key) is named
    ``playground`` when it carries a page session and that session's CSRF token, else
    refused: see :func:`_playground`.
    """
    key = headers.key
    if not gateway.client_keys:
        if headers.playground and key is None:
            _playground(gateway, exchange, scope)
        return
    if key is None and headers.playground:
        _playground(gateway, exchange, scope)
        return
    ring = gateway.client_keys
    client = ring.identify(key)
    if client is None and gateway.admin_keys.identify(key) is not None:
        ring, client = gateway.admin_keys, ADMIN_CLIENT
    if client is None:
        gateway.metrics.rejected["auth"] += 1
        raise AuthenticationFailed(
            "Missing or invalid API key: send 'Authorization: Bearer <key>' "
            "with a key from WLM_API_KEYS."
        )
    exchange.client = client
    if client in ring.hashed:
        # A key configured as a sha256: hash is unknown to the redactor until a client
        # presents it; this request's records leave it out too.
        exchange.client_key = key


def _playground(gateway: Gateway, exchange: Exchange, scope: Scope) -> None:
    """Admit a request the playground page sent with the browser's session, not a key.

    It needs a valid session cookie and that session's CSRF token (which a cross-site
    page can send neither of), and the session must pass the rule the page applies too
    (:func:`wlm.sessions.playground_refusal`: an admin's whenever wlm has keys).
    """
    session = gateway.sessions.from_headers(scope["headers"])
    refusal = playground_refusal(
        session, admin_keys=bool(gateway.admin_keys), client_keys=bool(gateway.client_keys)
    )
    if refusal is not None:
        gateway.metrics.rejected["auth"] += 1
        raise AuthenticationFailed(f"This playground request was refused: {refusal}.")
    exchange.client = PLAYGROUND_CLIENT


async def _fail_quietly(reply: _Reply, failure: Failure) -> None:
    try:
        await reply.fail(failure)
    except Exception:  # the client may be gone already
        reply.exchange.cancelled()


def _serve(
    gateway: Gateway, exchange: Exchange, reply: _Reply, raw: bytes, headers: _Headers
) -> Awaitable[object]:
    """Parse the body and hand the request over: the awaitable that serves it (one
    coroutine frame fewer for every wait of the request)."""
    request = reply.dialect.parse(raw, exchange.endpoint)
    exchange.request = request
    forwarded = headers.forwarded
    if gateway.settings.otlp is not None:  # wlm's span, the client's its parent, upstream's child
        exchange.trace, forwarded = start_span(forwarded)
    return serve(gateway, reply, request, tuple(forwarded), headers.chain)
