"""The proxied endpoints (chat/completions, completions, embeddings) at the raw ASGI level.

Why raw ASGI: the hot path must add well under a millisecond, and streams must go
out event by event with headers sent at once; Litestar's request/response layers
add cost and nothing we need here. The flow for one request:

    read body -> decode -> resolve model -> (local: ensure the engine) -> send upstream
    -> stream events / whole body back -> one telemetry record, whatever happened

A watcher listens for ``http.disconnect`` and cancels the request at once, which
closes the upstream connection (and frees a llama.cpp slot). The first byte sent to
the client is the commit point: before it, failures get their own status and an
OpenAI error body; after it, an error event ends the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import msgspec

from wlm.api.recording import Outcome, record_request
from wlm.auth import presented_key
from wlm.errors import (
    AuthenticationFailed,
    BadRequest,
    GatewayError,
    UpstreamBroken,
    UpstreamUnreachable,
)
from wlm.providers.accounting import ResponseAccount
from wlm.providers.base import FORWARDED_HEADERS, Call, error_event
from wlm.routing.resolve import LOCAL
from wlm.sse import SSEParser, encode_comment

if TYPE_CHECKING:
    from wlm.gateway import Gateway

__all__ = ["proxy_endpoint"]

log = logging.getLogger("wlm.proxy")

_decode = msgspec.json.decode
_LOADING_COMMENT_EVERY_S = 2.0
_DISCARD_TIMEOUT_S = 5.0
_JSON_HEADERS = [(b"content-type", b"application/json")]
_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientGone(Exception):
    """The client disconnected; the request was cancelled."""


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise GatewayError(
                    f"Request body is larger than the limit of {limit} bytes (WLM_MAX_BODY_BYTES).",
                    status=413,
                    type="invalid_request_error",
                    code="request_too_large",
                )
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _discard_body(receive: Any, limit: int) -> None:
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


def _parse(raw: bytes, endpoint: str) -> tuple[dict[str, Any], str, bool, bool]:
    if not raw:
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        body = _decode(raw)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise BadRequest(
            "Missing required field 'model'.", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(
            "Field 'model' must be a non-empty string.", param="model", code="invalid_type"
        )
    required = {"chat/completions": "messages", "completions": "prompt", "embeddings": "input"}[
        endpoint
    ]
    if required not in body:
        raise BadRequest(
            f"Missing required field '{required}'.",
            param=required,
            code="missing_required_parameter",
        )
    if endpoint == "chat/completions" and not isinstance(body["messages"], list):
        raise BadRequest(
            "Field 'messages' must be an array.", param="messages", code="invalid_type"
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("Field 'stream' must be a boolean.", param="stream", code="invalid_type")
    if endpoint == "embeddings":
        stream = False
    options = body.get("stream_options")
    wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    return body, model, stream, wants_usage


class _Exchange:
    """Per-request state shared by the steps below and read by telemetry at the end."""

    __slots__ = (
        "account",
        "attempts",
        "bytes_in",
        "bytes_out",
        "call",
        "client",
        "client_key",
        "endpoint",
        "gateway",
        "headers_sent",
        "model",
        "outcome",
        "record_id",
        "request_id",
        "route",
        "send",
        "started",
        "started_at",
        "stream",
        "ttft",
    )

    def __init__(self, gateway: Gateway, endpoint: str, send: Any, request_id: str) -> None:
        self.gateway = gateway
        self.endpoint = endpoint
        self.send = send
        self.request_id = request_id  # the x-request-id the client gets back
        self.record_id = request_id  # the telemetry row's id
        self.started = time.perf_counter()
        self.started_at = datetime.now(UTC)
        self.model: str | None = None
        self.client: str | None = None
        self.client_key: str | None = None
        self.attempts = 1
        self.route: Any = None
        self.call: Call | None = None
        self.stream = False
        self.account = ResponseAccount(gateway.settings.log_content)
        self.ttft: float | None = None
        self.headers_sent = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.outcome = Outcome()

    async def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        headers = [*headers, (b"x-request-id", self.request_id.encode())]
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        self.headers_sent = True
        self.outcome.http_status = status

    async def body(self, data: bytes, more: bool) -> None:
        self.bytes_out += len(data)
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def fail(self, error: GatewayError) -> None:
        """Report an error in the client's protocol, before or after the first byte."""
        redacted = self.gateway.redactor.text(error.message)
        self.outcome.error(error, redacted)
        if not self.headers_sent:
            body = GatewayError(
                redacted, status=error.status, type=error.type, param=error.param, code=error.code
            ).to_body()
            extra = [(k.encode(), v.encode()) for k, v in error.headers.items()]
            await self.start_response(error.status, _JSON_HEADERS + extra)
            await self.body(body, False)
        else:
            await self.body(error_event(redacted, error.type, error.code), False)


class _DisconnectWatch:
    """Cancels the request's task when the client disconnects.

    ``receive()`` is awaited through a done-callback rather than a task per request:
    Granian returns a future-like object, and a task (plus its cancellation) measured
    about 0.1 ms of CPU per request (docs/performance.md).
    """

    __slots__ = ("_pending", "_receive", "_task", "gone")

    def __init__(self, receive: Any, task: asyncio.Task[Any]) -> None:
        self._receive = receive
        self._task = task
        self.gone = False
        self._pending: Any = None
        self._listen()

    def _listen(self) -> None:
        pending = self._receive()
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
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()


async def proxy_endpoint(
    gateway: Gateway, endpoint: str, scope: dict[str, Any], receive: Any, send: Any
) -> None:
    """Serve one POST to a proxied endpoint, whatever happens."""
    client_request_id = _header(scope, b"x-request-id")
    exchange = _Exchange(gateway, endpoint, send, client_request_id or gateway.new_request_id())
    if client_request_id:
        # The client's id is echoed and stored in request_id; the row's own id stays
        # unique even when clients reuse or collide on theirs.
        exchange.record_id = gateway.new_request_id()
    task = asyncio.current_task()
    assert task is not None
    watch: _DisconnectWatch | None = None
    limit = gateway.settings.max_concurrency_per_client
    load_key: str | None = None
    body_pending = True
    gateway.metrics.in_flight += 1
    try:
        if gateway.client_keys:
            key = presented_key(scope["headers"])
            exchange.client = gateway.client_keys.identify(key)
            if exchange.client is None and gateway.admin_keys.identify(key) is not None:
                exchange.client = "admin"
            # A key configured as a sha256: hash is unknown to the redactor until a client
            # presents it; this request's records leave it out too.
            exchange.client_key = key if exchange.client is not None else None
            if exchange.client is None:
                gateway.metrics.rejected["auth"] += 1
                raise AuthenticationFailed(
                    "Missing or invalid API key: send 'Authorization: Bearer <key>' "
                    "with a key from WLM_API_KEYS."
                )
        if limit is not None:
            client = scope.get("client")
            key = exchange.client or (client[0] if client else "-")
            if gateway.client_load.get(key, 0) >= limit:
                gateway.metrics.rejected["concurrency"] += 1
                raise GatewayError(
                    f"Too many concurrent requests from this client (limit {limit}, "
                    "WLM_MAX_CONCURRENCY_PER_CLIENT).",
                    status=429,
                    type="rate_limit_error",
                    code="concurrency_limit",
                    headers={"retry-after": "1"},
                )
            load_key = key
            gateway.client_load[key] = gateway.client_load.get(key, 0) + 1
        body_pending = False
        raw = await _read_body(receive, gateway.settings.max_body_bytes)
        exchange.bytes_in = len(raw)
        watch = _DisconnectWatch(receive, task)
        await _serve(exchange, raw, scope)
    except ClientGone:
        exchange.outcome.cancelled()
    except asyncio.CancelledError:
        if watch is None or not watch.gone:
            raise
        task.uncancel()
        exchange.outcome.cancelled()
    except GatewayError as error:
        if body_pending:
            await _discard_body(receive, gateway.settings.max_body_bytes)
        await _fail_quietly(exchange, error)
    except Exception as exc:  # never a traceback to the client
        log.error("unexpected error serving %s: %s", endpoint, gateway.redactor.text(repr(exc)))
        log.debug("traceback", exc_info=True)
        await _fail_quietly(exchange, UpstreamBroken("The gateway failed to handle this request."))
    finally:
        if watch is not None:
            watch.stop()
        gateway.metrics.in_flight -= 1
        if load_key is not None:
            remaining = gateway.client_load[load_key] - 1
            if remaining:
                gateway.client_load[load_key] = remaining
            else:
                del gateway.client_load[load_key]
        record_request(exchange)


async def _fail_quietly(exchange: _Exchange, error: GatewayError) -> None:
    try:
        await exchange.fail(error)
    except Exception:  # the client may be gone already
        exchange.outcome.cancelled()


async def _serve(exchange: _Exchange, raw: bytes, scope: dict[str, Any]) -> None:
    gateway = exchange.gateway
    body, model, stream, wants_usage = _parse(raw, exchange.endpoint)
    exchange.model = model
    exchange.stream = stream
    route = gateway.router.resolve(model)
    exchange.route = route
    adapter = gateway.adapters[route.provider]
    forwarded = tuple(
        (name.decode(), value.decode("latin-1"))
        for name, value in scope["headers"]
        if name in FORWARDED_HEADERS
    )
    call = Call(
        endpoint=exchange.endpoint,
        body=body,
        raw=raw,
        model=model,
        upstream_model=route.upstream_model,
        stream=stream,
        client_wants_usage=wants_usage,
        forwarded_headers=forwarded,
        request_id=exchange.request_id,
    )
    exchange.call = call
    if route.provider != LOCAL:
        await _answer(exchange, adapter, call, await _send(adapter, call))
        return
    for attempt in (1, 2):
        exchange.attempts = attempt
        async with AsyncExitStack() as stack:
            base_url = await _local_instance(exchange, stack, route.upstream_model)
            local_call = attrs.evolve(call, base_url=base_url)
            exchange.call = local_call
            try:
                response = await _send(adapter, local_call)
            except (UpstreamUnreachable, UpstreamBroken):
                if attempt == 2:
                    raise
            else:
                await _answer(exchange, adapter, local_call, response)
                return
        # The engine died after the supervisor last saw it ready (its socket lingers for
        # a moment): nothing reached the client yet, so wait for the crash to be noticed
        # and go round once more, which restarts it.
        try:
            await gateway.local.wait_for_state(
                route.upstream_model, "failed", "stopped", timeout=2.0
            )
        except (TimeoutError, GatewayError):
            pass


async def _send(adapter: Any, call: Call) -> Any:
    request = adapter.prepare(call)
    return await adapter.transport.send(request.method, request.url, request.headers, request.body)


async def _answer(exchange: _Exchange, adapter: Any, call: Call, response: Any) -> None:
    """Relay the upstream's answer (error status, stream or whole body) to the client."""
    completed = False
    try:
        if response.status >= 400:
            payload = await response.read()
            completed = True
            raise adapter.upstream_error(response.status, payload, response.header("retry-after"))
        if response.status >= 300 or response.status < 200:
            # Redirects are not followed (the key would go with them); a redirect almost
            # always means a wrong base URL, e.g. http:// for an https:// server.
            location = exchange.gateway.redactor.text(response.header("location") or "nowhere")
            raise UpstreamBroken(
                f"Provider '{adapter.config.name}' answered {response.status} "
                f"(redirecting to {location}); check {adapter.config.base_url_variable}."
            )
        if call.stream:
            await _relay_stream(exchange, adapter, call, response)
        else:
            payload = await response.read()
            completed = True
            out = adapter.finish_response(call, payload, exchange.account)
            out = exchange.gateway.redactor.bytes(out)
            await exchange.start_response(response.status, _JSON_HEADERS)
            exchange.ttft = time.perf_counter() - exchange.started
            await exchange.body(out, False)
        completed = True
    finally:
        if completed:
            response.release()
        else:
            response.close()


async def _local_instance(exchange: _Exchange, stack: AsyncExitStack, model_id: str) -> str:
    """Enter the local model's instance; a stream gets loading comments meanwhile."""
    local = exchange.gateway.local
    entering = asyncio.ensure_future(stack.enter_async_context(local.use(model_id)))
    if not exchange.stream or local.is_ready(model_id):
        try:
            return await entering
        except asyncio.CancelledError:
            entering.cancel()
            raise
    try:
        while True:
            done, _ = await asyncio.wait({entering}, timeout=_LOADING_COMMENT_EVERY_S)
            if done:
                return entering.result()
            if not exchange.headers_sent:
                await exchange.start_response(200, _STREAM_HEADERS)
            await exchange.body(encode_comment(f"loading {model_id} ..."), True)
    except asyncio.CancelledError:
        entering.cancel()
        raise


async def _relay_stream(exchange: _Exchange, adapter: Any, call: Call, response: Any) -> None:
    relay = adapter.relay(call, exchange.account, exchange.gateway.redactor)
    parser = SSEParser()
    if not exchange.headers_sent:
        await exchange.start_response(200, _STREAM_HEADERS)
    send_body = exchange.body
    try:
        async for chunk in response.chunks():
            for event in parser.feed(chunk):
                for out in relay.feed(event):
                    if exchange.ttft is None and relay.token_seen:
                        exchange.ttft = time.perf_counter() - exchange.started
                    await send_body(out, True)
                if relay.done:
                    break
            if relay.done:
                break
        for event in parser.finish():
            for out in relay.feed(event):
                await send_body(out, True)
        tail = relay.end()
    except GatewayError as error:
        exchange.account.error = {"message": error.message, "type": error.type, "code": error.code}
        tail = [error_event(exchange.gateway.redactor.text(error.message), error.type, error.code)]
    for out in tail:
        await send_body(out, True)
    await send_body(b"", False)
    if exchange.account.error:
        error = exchange.account.error
        code = error.get("code")
        exchange.outcome.stream_error(
            str(error.get("type") or "upstream_error"),
            None if code is None else str(code),
            exchange.gateway.redactor.text(str(error.get("message") or "")),
        )
